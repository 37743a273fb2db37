import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { deflateSync } from 'node:zlib';
import exifr from 'exifr';
import sharp from 'sharp';
import { complete, declare, putPresigned, uploadRaw } from '../helpers/assets.js';
import { storedKeys } from '../helpers/deployment.js';
import { api, md5Hex, sha256Hex } from '../helpers/http.js';
import { pngChunk } from '../helpers/png.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * The account setting strip_gps: new images are stored without their location. The upload
 * is verified as sent; the asset's digests describe what is stored; `analysis.uploaded`
 * keeps what was sent. Other accounts' images are untouched.
 */

let w: TestWharf;
/** An account that strips locations (admin key). */
let key: string;
before(async () => {
  w = await startWharf();
  ({ key } = await w.newAccount('private'));
  const member = await w.newKey('member');
  const denied = await api(w.url, member.key, 'PATCH', '/v1/account/settings', { strip_gps: true });
  assert.equal(denied.status, 403, 'only an admin key changes settings');
  const set = await api(w.url, key, 'PATCH', '/v1/account/settings', { strip_gps: true });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  assert.deepEqual(set.body, { strip_gps: true });
  assert.deepEqual((await api(w.url, w.key, 'GET', '/v1/account/settings')).body, { strip_gps: false });
});
after(async () => {
  await w?.close();
});

const GPS = {
  GPSLatitudeRef: 'N',
  GPSLatitude: '52/1 31/1 1234/100',
  GPSLongitudeRef: 'W',
  GPSLongitude: '13/1 24/1 3600/100',
  GPSAltitudeRef: '0',
  GPSAltitude: '345/10',
};
const XMP_WITH_PLACE = `<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" exif:GPSLatitude="52,31.2N" exif:GPSLongitude="13,24.6W" photoshop:City="Berlin"/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>`;

async function picture(
  format: 'jpeg' | 'png' | 'webp' | 'avif',
  options: { gps?: boolean; xmp?: boolean } = {},
) {
  const { width, height } = { width: 96, height: 64 };
  let image = sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } }).toFormat(
    format,
  );
  image = image.withExif({
    IFD0: { Make: 'Wharf', Model: 'Test camera' },
    ...(options.gps !== false && { IFD3: GPS }),
  });
  if (options.xmp) image = image.withXmp(XMP_WITH_PLACE);
  return image.toBuffer();
}

async function download(id: string, as = key): Promise<Buffer> {
  const res = await fetch(`${w.url}/v1/assets/${id}/content`, { headers: { 'x-api-key': as } });
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

async function pixels(bytes: Buffer): Promise<Buffer> {
  return sharp(bytes).raw().toBuffer();
}

async function location(bytes: Buffer) {
  const tags = (await exifr
    .parse(bytes, { gps: true, xmp: true, iptc: true, tiff: true })
    .catch(() => undefined)) as Record<string, unknown> | undefined;
  return {
    latitude: tags?.latitude,
    gps: Object.keys(tags ?? {}).filter((k) => k.startsWith('GPS')),
    city: tags?.City,
    make: tags?.Make,
  };
}

/** The PNG with one more chunk just before its first IDAT. */
function withChunk(png: Buffer, type: string, data: Buffer): Buffer {
  const at = png.indexOf('IDAT', 8, 'latin1') - 4;
  return Buffer.concat([png.subarray(0, at), pngChunk(type, data), png.subarray(at)]);
}

/**
 * A little-endian RGB TIFF laid out as libtiff writes it: header, pixels (zero), then IFD0
 * and, with `gps`, a GPS IFD (48°51'24.6" N, 2°17'40.2" E) and their out-of-line values.
 */
function tiff(width: number, height: number, gps: boolean): Buffer {
  const pixels = width * height * 3;
  const ifdAt = 8 + pixels + (pixels % 2);
  // tag, type (3 SHORT, 4 LONG), value (or offset, filled in below)
  const entries: [number, number, number, number][] = [
    [256, 4, 1, width],
    [257, 4, 1, height],
    [258, 3, 3, 0], // BitsPerSample 8, 8, 8: out of line
    [259, 3, 1, 1],
    [262, 3, 1, 2],
    [273, 4, 1, 8],
    [277, 3, 1, 3],
    [278, 4, 1, height],
    [279, 4, 1, pixels],
    ...(gps ? [[0x8825, 4, 1, 0] as [number, number, number, number]] : []),
  ];
  const ifd0Size = 2 + entries.length * 12 + 4;
  const gpsAt = ifdAt + ifd0Size;
  const gpsEntries: [number, number, number, number | string][] = [
    [0, 1, 4, 0x00000202],
    [1, 2, 2, 'N'],
    [2, 5, 3, 0],
    [3, 2, 2, 'E'],
    [4, 5, 3, 0],
  ];
  const valuesAt = gpsAt + (gps ? 2 + gpsEntries.length * 12 + 4 : 0);
  const values = Buffer.alloc(6 + 48);
  values.writeUInt16LE(8, 0);
  values.writeUInt16LE(8, 2);
  values.writeUInt16LE(8, 4);
  for (const [i, v] of [48, 1, 51, 1, 2460, 100, 2, 1, 17, 1, 4020, 100].entries())
    values.writeUInt32LE(v, 6 + i * 4);
  const ifd = (list: [number, number, number, number | string][], offsets: Record<number, number>) => {
    const out = Buffer.alloc(2 + list.length * 12 + 4);
    out.writeUInt16LE(list.length, 0);
    list.forEach(([tag, type, count, value], i) => {
      const at = 2 + i * 12;
      out.writeUInt16LE(tag, at);
      out.writeUInt16LE(type, at + 2);
      out.writeUInt32LE(count, at + 4);
      if (tag in offsets) out.writeUInt32LE(offsets[tag]!, at + 8);
      else if (typeof value === 'string') out.write(value, at + 8, 'latin1');
      else if (type === 3 && count === 1) out.writeUInt16LE(value, at + 8);
      else out.writeUInt32LE(value, at + 8);
    });
    return out;
  };
  const header = Buffer.from('II*\0\0\0\0\0', 'latin1');
  header.writeUInt32LE(ifdAt, 4);
  return Buffer.concat([
    header,
    Buffer.alloc(ifdAt - 8),
    ifd(entries, { 258: valuesAt, 34853: gpsAt }),
    gps ? ifd(gpsEntries, { 2: valuesAt + 6, 4: valuesAt + 30 }) : Buffer.alloc(0),
    values,
  ]);
}

/** A GIF of `frames` 1 × 1 frames, then XMP (as an "XMP DataXMP" application extension) saying where. */
function gifWithXmp(frames: number): Buffer {
  // LZW, minimum code size 2: clear (4), index 0, end (5), in 3-bit codes: 0x44 0x01.
  const frame = Buffer.from([0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0x02, 0x02, 0x44, 0x01, 0x00]);
  // XMP's "magic trailer": whatever byte a reader takes for a sub-block length, it lands here.
  const trailer = Buffer.from([1, ...Array.from({ length: 256 }, (_, i) => 255 - i), 0]);
  return Buffer.concat([
    Buffer.from('GIF89a', 'latin1'),
    Buffer.from([1, 0, 1, 0, 0x80, 0, 0]),
    randomBytes(6),
    Buffer.alloc(frames * frame.length, frame),
    Buffer.from('\x21\xff\x0bXMP DataXMP', 'latin1'),
    Buffer.from(XMP_WITH_PLACE),
    trailer,
    Buffer.from([0x3b]),
  ]);
}

describe('an account with strip_gps', () => {
  test('a JPEG with GPS is stored without it, losslessly; the asset describes what is stored', async () => {
    const sent = await picture('jpeg');
    assert.ok((await location(sent)).latitude, 'the upload carries a position');
    const res = await uploadRaw(w, key, 'holiday.jpg', sent, { contentType: 'image/jpeg' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const asset = res.body.asset;
    assert.notEqual(asset.sha256, sha256Hex(sent));
    assert.equal(asset.analysis.had_gps, true);
    assert.deepEqual(asset.analysis.uploaded, {
      sha256: sha256Hex(sent),
      md5: md5Hex(sent),
      size: sent.length,
    });

    const stored = await download(asset.id);
    assert.equal(sha256Hex(stored), asset.sha256, 'sha256 is of the stored bytes');
    assert.equal(md5Hex(stored), asset.md5);
    assert.equal(stored.length, sent.length, 'same length: patched in place');
    const found = await location(stored);
    assert.equal(found.latitude, undefined);
    assert.deepEqual(found.gps, []);
    assert.equal(found.make, 'Wharf', 'the rest of EXIF is kept');
    assert.deepEqual(await pixels(stored), await pixels(sent), 'the picture itself is untouched');

    // Processing finds no location, and keeps the completion's facts.
    await w.wharf.core.jobs.drain();
    const read = await api(w.url, key, 'GET', `/v1/assets/${asset.id}`);
    assert.equal(read.body.analysis.location, undefined);
    assert.equal(read.body.analysis.had_gps, true);
    assert.equal(read.body.analysis.uploaded.sha256, sha256Hex(sent));
    assert.equal(read.body.analysis.width, 96);

    // The original with its position is nowhere in storage.
    const keys = (await storedKeys(w)).filter(
      (k) => k.includes(asset.id) || k.includes('/nogps/') || k.endsWith('.jpg'),
    );
    assert.ok(
      keys.every((k) => k.includes('/nogps/') || k.includes('/derivatives/')),
      keys.join(' '),
    );

    // Sending the same photo again finds the asset (its stored copy is the same).
    const again = await uploadRaw(w, key, 'holiday-again.jpg', sent, { contentType: 'image/jpeg' });
    assert.equal(again.status, 200);
    assert.equal(again.body.status, 'exists');
    assert.equal(again.body.asset.id, asset.id);
    // And so does the stripped copy itself.
    const copy = await uploadRaw(w, key, 'copy.jpg', stored, { contentType: 'image/jpeg' });
    assert.equal(copy.body.asset.id, asset.id);
  });

  test('XMP positions and place names go too (the packet is replaced by an empty one)', async () => {
    const sent = await picture('jpeg', { xmp: true });
    const before = await location(sent);
    assert.equal(before.city, 'Berlin');
    const res = await uploadRaw(w, key, 'xmp.jpg', sent, { contentType: 'image/jpeg' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const stored = await download(res.body.asset.id);
    const after = await location(stored);
    assert.equal(after.latitude, undefined);
    assert.equal(after.city, undefined);
    assert.deepEqual(after.gps, []);
    assert.ok(!stored.toString('latin1').includes('Berlin'));
    assert.deepEqual(await pixels(stored), await pixels(sent));
  });

  test('PNG (eXIf, CRC recomputed) and WebP (EXIF chunk) are stripped too', async () => {
    for (const format of ['png', 'webp'] as const) {
      const sent = await picture(format);
      const res = await uploadRaw(w, key, `photo.${format}`, sent, { contentType: `image/${format}` });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal(res.body.asset.analysis.had_gps, true, format);
      const stored = await download(res.body.asset.id);
      // sharp (libspng) refuses a PNG chunk whose CRC is wrong: decoding proves it is right.
      assert.deepEqual(await pixels(stored), await pixels(sent), format);
      const exif = (await sharp(stored).metadata()).exif;
      assert.ok(exif, `${format} keeps its EXIF block`);
      const tiff = exif.subarray(exif.indexOf('Exif\0\0') === 0 ? 6 : 0);
      const tags = (await exifr.parse(tiff, { gps: true, tiff: true })) as Record<string, unknown>;
      assert.equal(tags.Make, 'Wharf', format);
      assert.equal(tags.latitude, undefined, format);
      assert.deepEqual(
        Object.keys(tags).filter((k) => k.startsWith('GPS')),
        [],
        format,
      );
    }
  });

  test('a presigned upload is verified as sent, then stripped; confirming again with the sent digest still agrees', async () => {
    const sent = await picture('jpeg');
    const intent = await declare(w, key, {
      name: 'presigned.jpg',
      content_type: 'image/jpeg',
      size: sent.length,
      sha256: sha256Hex(sent),
    });
    const put = await putPresigned(intent, sent);
    assert.equal(put.status, 200, await put.text());
    const done = await complete(w, key, intent.id);
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.asset.analysis.had_gps, true);
    assert.equal(done.body.asset.analysis.uploaded.sha256, sha256Hex(sent));
    assert.equal((await location(await download(done.body.asset.id))).latitude, undefined);
    const again = await api(w.url, key, 'POST', `/v1/uploads/${intent.id}/complete`, {
      sha256: sha256Hex(sent),
      size: sent.length,
    });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.asset.id, done.body.asset.id);
  });

  test('an image without a location is stored exactly as sent', async () => {
    const sent = await picture('jpeg', { gps: false });
    const res = await uploadRaw(w, key, 'nowhere.jpg', sent, { contentType: 'image/jpeg' });
    assert.equal(res.status, 201);
    assert.equal(res.body.asset.sha256, sha256Hex(sent));
    assert.equal(res.body.asset.analysis.had_gps, undefined);
    assert.deepEqual(await download(res.body.asset.id), sent);
  });

  test('files over 16 MiB: a WebP EXIF chunk and a PNG eXIf after the image data are found and stripped', async () => {
    // Both formats may keep metadata after the pixels (WebP's spec puts EXIF last), so the
    // whole file is walked, not just its head. 2600 × 2400 noise, stored uncompressed enough
    // to pass 16 MiB.
    const [width, height] = [2600, 2400];
    const noise = () => sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } });
    const exif = { IFD0: { Make: 'Wharf' }, IFD3: GPS };
    const webp = await noise().webp({ lossless: true, effort: 0 }).withExif(exif).toBuffer();
    const plainPng = await noise().png({ compressionLevel: 0 }).toBuffer();
    const withExif = (await sharp(await picture('png')).metadata()).exif!; // Make 'Wharf', GPS
    const iend = plainPng.length - 12;
    const png = Buffer.concat([
      plainPng.subarray(0, iend),
      pngChunk('eXIf', withExif.subarray(withExif.indexOf('Exif\0\0') === 0 ? 6 : 0)),
      plainPng.subarray(iend),
    ]);
    for (const [format, sent] of [
      ['webp', webp],
      ['png', png],
    ] as const) {
      assert.ok(sent.length > 16 * 1024 * 1024, `${format}: ${sent.length} bytes`);
      assert.ok(
        sent.lastIndexOf('II*\0', sent.length, 'latin1') > 16 * 1024 * 1024 ||
          sent.lastIndexOf('MM\0*', sent.length, 'latin1') > 16 * 1024 * 1024,
        `${format}: EXIF after 16 MiB`,
      );
      const res = await uploadRaw(w, key, `large.${format}`, sent, { contentType: `image/${format}` });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal(res.body.asset.analysis.had_gps, true, format);
      const stored = await download(res.body.asset.id);
      assert.equal(stored.length, sent.length, format);
      assert.equal(res.body.asset.sha256, sha256Hex(stored), format);
      // libspng reads no eXIf after the image data; exifr does, so PNGs are read with it.
      const tags = async (bytes: Buffer) => {
        const block = format === 'webp' ? (await sharp(bytes).metadata()).exif : bytes;
        assert.ok(block, `${format} keeps its EXIF block`);
        const tiff = block.indexOf('Exif\0\0') === 0 ? block.subarray(6) : block;
        return (await exifr.parse(tiff, { gps: true, tiff: true })) as Record<string, unknown>;
      };
      const gpsOf = (t: Record<string, unknown>) =>
        Object.keys(t).filter((k) => k.startsWith('GPS') || k === 'latitude');
      assert.ok(gpsOf(await tags(sent)).length > 0, `${format}: the sent file has a position`);
      const kept = await tags(stored);
      assert.equal(kept.Make, 'Wharf', format);
      assert.deepEqual(gpsOf(kept), [], format);
      // Only the metadata changed: the pixels are the ones sent (sharp checks PNG CRCs).
      assert.ok((await pixels(stored)).equals(await pixels(sent)), format);
    }
    // Without a location, a large file is kept exactly as sent.
    const clean = await uploadRaw(w, key, 'large-clean.png', plainPng, { contentType: 'image/png' });
    assert.equal(clean.status, 201, JSON.stringify(clean.body));
    assert.equal(clean.body.asset.sha256, sha256Hex(plainPng));
    assert.equal(clean.body.asset.analysis.had_gps, undefined);
  });

  test('files over 16 MiB: a TIFF whose IFDs follow the pixels, a GIF whose XMP follows the frames are refused, as small ones are', async () => {
    // Both formats are refused when they carry a location (they cannot be patched in place);
    // libtiff writes the IFDs, GPS included, after the pixel data, and GIF's XMP follows the
    // frames: a check of the first 16 MiB alone let large ones through with their position.
    const large = 16 * 1024 * 1024 + 4096;
    const cases: [string, string, () => Buffer][] = [
      ['small.tiff', 'image/tiff', () => tiff(100, 100, true)],
      ['large.tiff', 'image/tiff', () => tiff(2400, Math.ceil(large / 7200), true)],
      ['small.gif', 'image/gif', () => gifWithXmp(1)],
      ['large.gif', 'image/gif', () => gifWithXmp(Math.ceil(large / 15))],
    ];
    for (const [name, contentType, make] of cases) {
      const sent = make();
      if (name.startsWith('large')) assert.ok(sent.length > large, `${name}: ${sent.length} bytes`);
      if (contentType === 'image/tiff') {
        const tags = (await exifr.parse(sent, { gps: true })) as Record<string, unknown>;
        assert.ok(Math.abs((tags.latitude as number) - 48.857) < 0.001, `${name} carries a position`);
      }
      const before = await storedKeys(w);
      const res = await uploadRaw(w, key, name, sent, { contentType });
      assert.equal(res.status, 422, `${name}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'LOCATION_NOT_REMOVABLE', name);
      assert.deepEqual(await storedKeys(w), before, name);
    }
    // The same large TIFF without a GPS IFD is stored as sent.
    const clean = tiff(2400, Math.ceil(large / 7200), false);
    const res = await uploadRaw(w, key, 'large-clean.tiff', clean, { contentType: 'image/tiff' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.asset.sha256, sha256Hex(clean));
    assert.equal(res.body.asset.analysis.had_gps, undefined);
  });

  test('a location Wharf cannot rewrite in place is refused: compressed XMP, EXIF as hex text, UTF-16 XMP, SVG metadata', async () => {
    const png = await picture('png', { gps: false });
    const exif = (await sharp(await picture('png')).metadata()).exif!;
    const rawProfile = `\nexif\n${String(exif.length).padStart(8)}\n${exif.toString('hex').replace(/(.{72})/g, '$1\n')}\n`;
    const utf16 = Buffer.from(XMP_WITH_PLACE, 'utf16le');
    const jpeg = await picture('jpeg', { gps: false });
    const app1 = Buffer.concat([Buffer.from('http://ns.adobe.com/xap/1.0/\0', 'latin1'), utf16]);
    const segment = Buffer.concat([
      Buffer.from([0xff, 0xe1, (app1.length + 2) >> 8, (app1.length + 2) & 0xff]),
      app1,
    ]);
    const cases: [string, string, Buffer][] = [
      [
        'xmp-compressed.png',
        'image/png',
        withChunk(
          png,
          'iTXt',
          Buffer.concat([
            Buffer.from('XML:com.adobe.xmp\0\x01\0\0\0', 'latin1'),
            deflateSync(XMP_WITH_PLACE),
          ]),
        ),
      ],
      [
        'raw-profile.png',
        'image/png',
        withChunk(
          png,
          'zTXt',
          Buffer.concat([Buffer.from('Raw profile type exif\0\0', 'latin1'), deflateSync(rawProfile)]),
        ),
      ],
      [
        'raw-profile-text.png',
        'image/png',
        withChunk(png, 'tEXt', Buffer.from(`Raw profile type exif\0${rawProfile}`, 'latin1')),
      ],
      ['utf16-xmp.jpg', 'image/jpeg', Buffer.concat([jpeg.subarray(0, 2), segment, jpeg.subarray(2)])],
      [
        'place.svg',
        'image/svg+xml',
        Buffer.from(
          `<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"><metadata>${XMP_WITH_PLACE}</metadata></svg>`,
        ),
      ],
    ];
    for (const [name, contentType, sent] of cases) {
      const before = await storedKeys(w);
      const res = await uploadRaw(w, key, name, sent, { contentType });
      assert.equal(res.status, 422, `${name}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'LOCATION_NOT_REMOVABLE', name);
      assert.deepEqual(await storedKeys(w), before, name);
    }
    // The same chunks without a place are welcome and kept as sent.
    const harmless = withChunk(
      png,
      'zTXt',
      Buffer.concat([Buffer.from('Comment\0\0', 'latin1'), deflateSync('taken on a walk')]),
    );
    const res = await uploadRaw(w, key, 'comment.png', harmless, { contentType: 'image/png' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.asset.sha256, sha256Hex(harmless));
  });

  test('an AVIF with a position cannot be stripped without re-encoding: 422 LOCATION_NOT_REMOVABLE, nothing kept', async () => {
    const sent = await picture('avif');
    const before = await storedKeys(w);
    const res = await uploadRaw(w, key, 'photo.avif', sent, { contentType: 'image/avif' });
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'LOCATION_NOT_REMOVABLE');
    assert.deepEqual(await storedKeys(w), before);
    const listed = await api(w.url, key, 'GET', '/v1/assets?prefix=photo.avif');
    assert.deepEqual(listed.body.data, []);
    // Without a position it is welcome.
    const clean = await uploadRaw(w, key, 'clean.avif', await picture('avif', { gps: false }), {
      contentType: 'image/avif',
    });
    assert.equal(clean.status, 201, JSON.stringify(clean.body));
  });

  test('renderings of a stripped image are made from the stored copy', async () => {
    const sent = await picture('jpeg');
    const res = await uploadRaw(w, key, 'render.jpg', sent, { contentType: 'image/jpeg' });
    const image = await fetch(`${w.url}/v1/assets/${res.body.asset.id}/image?w=48&format=jpeg`, {
      headers: { 'x-api-key': key },
    });
    assert.equal(image.status, 200);
    assert.equal((await location(Buffer.from(await image.arrayBuffer()))).latitude, undefined);
  });
});

describe('an account without it', () => {
  test('keeps the image exactly as sent, position included', async () => {
    const sent = await picture('jpeg');
    const res = await uploadRaw(w, w.key, 'kept.jpg', sent, { contentType: 'image/jpeg' });
    assert.equal(res.status, 201);
    assert.equal(res.body.asset.sha256, sha256Hex(sent));
    assert.equal(res.body.asset.analysis.had_gps, undefined);
    const stored = await download(res.body.asset.id, w.key);
    assert.deepEqual(stored, sent);
    assert.ok((await location(stored)).latitude);
  });
});
