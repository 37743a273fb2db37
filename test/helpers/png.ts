import { once } from 'node:events';
import { crc32, createDeflate } from 'node:zlib';
import sharp from 'sharp';

/** A PNG chunk: length, type, data, CRC (what a file's metadata is hand-built from in tests). */
export function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const framed = Buffer.alloc(body.length + 8);
  framed.writeUInt32BE(data.length, 0);
  body.copy(framed, 4);
  framed.writeUInt32BE(crc32(body), body.length + 4);
  return framed;
}

/** `size` zero bytes, deflated a MiB at a time (never all held at once). */
async function deflatedZeros(size: number): Promise<Buffer> {
  const deflate = createDeflate({ level: 9 });
  const out: Buffer[] = [];
  deflate.on('data', (piece: Buffer) => out.push(piece));
  const zeros = Buffer.alloc(1024 * 1024);
  for (let written = 0; written < size; written += zeros.length)
    if (!deflate.write(zeros)) await once(deflate, 'drain');
  deflate.end();
  await once(deflate, 'end');
  return Buffer.concat(out);
}

/**
 * The PNG with an iCCP chunk after its IHDR whose colour profile (deflated, as the chunk
 * stores it) inflates to `inflated` bytes: about a thousandth of that is sent.
 */
export async function withProfileBomb(png: Buffer, inflated: number): Promise<Buffer> {
  const afterIhdr = 8 + 25;
  const profile = pngChunk(
    'iCCP',
    Buffer.concat([Buffer.from('bomb\0\0', 'latin1'), await deflatedZeros(inflated)]),
  );
  return Buffer.concat([png.subarray(0, afterIhdr), profile, png.subarray(afterIhdr)]);
}

/**
 * A plain PNG whose eXIf chunk puts it at 52°31'12.34" N, 13°24'36" W (what the metadata
 * bomb tests expect analysis still to find behind the colour profile).
 */
export function pngWithGps(width: number, height: number, background: string): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background } })
    .png()
    .withExif({
      IFD3: {
        GPSLatitudeRef: 'N',
        GPSLatitude: '52/1 31/1 1234/100',
        GPSLongitudeRef: 'W',
        GPSLongitude: '13/1 24/1 3600/100',
      },
    })
    .toBuffer();
}
