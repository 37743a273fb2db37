import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { chunksOf, type ImageChunk, webpFrames } from '../../src/processing/image-chunks.js';
import { pngChunk } from '../helpers/png.js';

function riffChunk(type: string, data: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.write(type, 0, 'latin1');
  header.writeUInt32LE(data.length, 4);
  return Buffer.concat([header, data, Buffer.alloc(data.length % 2)]);
}

async function* pieces(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

async function walk(container: 'png' | 'webp', bytes: Buffer, size: number, maxHeld = 1000) {
  const seen: ImageChunk[] = [];
  for await (const chunk of chunksOf(container, pieces(bytes, size), maxHeld)) seen.push(chunk);
  return seen.map((c) => ({ ...c, data: c.data?.toString('hex') }));
}

describe('the chunks of a PNG or WebP, streamed', () => {
  const png = Buffer.concat([
    Buffer.from('89504e470d0a1a0a', 'hex'),
    pngChunk('IHDR', Buffer.alloc(13, 1)),
    pngChunk('IDAT', Buffer.alloc(3000, 7)),
    pngChunk('tEXt', Buffer.from('Comment\0hello', 'latin1')),
    pngChunk('IEND', Buffer.alloc(0)),
    Buffer.from('appended'),
  ]);

  test('PNG: every chunk at its offset; image data not held; the CRC follows held data; bytes after IEND are trailing', async () => {
    const whole = await walk('png', png, png.length);
    assert.deepEqual(
      whole.map((c) => [c.type, c.offset, c.length, c.data === undefined]),
      [
        ['IHDR', 16, 13, false],
        ['IDAT', 41, 3000, true],
        ['tEXt', 3053, 13, false],
        ['IEND', 3078, 0, false],
        ['trailing', 3082, 8, false],
      ],
    );
    assert.equal(whole[2]!.data, png.subarray(3053, 3053 + 13 + 4).toString('hex'));
    assert.equal(whole[4]!.data, Buffer.from('appended').toString('hex'));
    // However the stream is cut, the walk is the same.
    for (const size of [1, 2, 3, 5, 7, 64, 1024])
      assert.deepEqual(await walk('png', png, size), whole, `pieces of ${size}`);
  });

  test('PNG: a chunk longer than maxHeld is passed over, not held; a file cut inside a chunk yields what is there', async () => {
    // 16 bytes: IHDR and tEXt (13 + a 4-byte CRC) are too long to hold.
    const walked = await walk('png', png, 5, 16);
    assert.deepEqual(
      walked.map((c) => [c.type, c.data === undefined]),
      [
        ['IHDR', true],
        ['IDAT', true],
        ['tEXt', true],
        ['IEND', false],
        ['trailing', false],
      ],
    );
    const cut = await walk('png', png.subarray(0, 3060), 3);
    assert.deepEqual(cut.at(-1), {
      type: 'tEXt',
      offset: 3053,
      length: 13,
      data: png.subarray(3053, 3060).toString('hex'),
    });
  });

  test('WebP: odd lengths are padded, the RIFF size ends the chunks, what follows is trailing', async () => {
    const chunks = Buffer.concat([
      riffChunk('VP8X', Buffer.alloc(10)),
      riffChunk('VP8L', Buffer.alloc(501, 9)),
      riffChunk('EXIF', Buffer.from('abc')),
    ]);
    const header = Buffer.from('RIFF\0\0\0\0WEBP', 'latin1');
    header.writeUInt32LE(chunks.length + 4, 4);
    const webp = Buffer.concat([header, chunks, Buffer.from('tail')]);
    const whole = await walk('webp', webp, webp.length);
    assert.deepEqual(
      whole.map((c) => [c.type, c.offset, c.length, c.data]),
      [
        ['VP8X', 20, 10, '00'.repeat(10)],
        ['VP8L', 38, 501, undefined],
        ['EXIF', 548, 3, '61626300'],
        ['trailing', 552, 4, Buffer.from('tail').toString('hex')],
      ],
    );
    for (const size of [1, 3, 4, 9])
      assert.deepEqual(await walk('webp', webp, size), whole, `pieces of ${size}`);
  });

  test('WebP frames: counted from the ANMF headers, stopping past the limit; the canvas from VP8X', async () => {
    const vp8x = Buffer.alloc(10);
    vp8x[0] = 0x02;
    vp8x.writeUIntLE(639, 4, 3);
    vp8x.writeUIntLE(479, 7, 3);
    const frames = (n: number) => Array.from({ length: n }, () => riffChunk('ANMF', Buffer.alloc(41, 3)));
    const webp = (n: number) => {
      const chunks = Buffer.concat([
        riffChunk('VP8X', vp8x),
        riffChunk('ANIM', Buffer.alloc(6)),
        ...frames(n),
      ]);
      const header = Buffer.from('RIFF\0\0\0\0WEBP', 'latin1');
      header.writeUInt32LE(chunks.length + 4, 4);
      return Buffer.concat([header, chunks]);
    };
    const canvas = { width: 640, height: 480 };
    assert.deepEqual(await webpFrames(pieces(webp(7), 5), 10), { frames: 7, canvas });
    assert.deepEqual(await webpFrames(pieces(webp(10), 64), 10), { frames: 10, canvas });
    // Past the limit the walk stops: what follows is never read.
    let read = 0;
    async function* counted(bytes: Buffer) {
      for await (const piece of pieces(bytes, 100)) {
        read += piece.length;
        yield piece;
      }
    }
    const long = webp(1000);
    assert.deepEqual(await webpFrames(counted(long), 10), { frames: 11, canvas });
    assert.ok(read < long.length / 10, `${read} of ${long.length} bytes read`);
    // A simple (still) WebP has no frames and no VP8X.
    const still = Buffer.concat([
      Buffer.from('RIFF\x12\0\0\0WEBP', 'latin1'),
      riffChunk('VP8L', Buffer.alloc(5)),
    ]);
    assert.deepEqual(await webpFrames(pieces(still, 7), 10), { frames: 0 });
  });
});
