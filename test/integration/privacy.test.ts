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
