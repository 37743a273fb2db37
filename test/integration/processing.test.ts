import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { dbQuery, presignedUpload, readJson, uploadRaw } from '../helpers/assets.js';
import { api } from '../helpers/http.js';
import { pngWithGps, withProfileBomb } from '../helpers/png.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

// 52°31'12.34" N, 13°24'36" W, 34.5 m: written as EXIF GPS rationals by sharp (libvips).
const LATITUDE = 52 + 31 / 60 + 12.34 / 3600;
const LONGITUDE = -(13 + 24 / 60 + 36 / 3600);

async function photoWithGps(width = 640, height = 480, background = '#888'): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background } })
    .jpeg()
    .withExif({
      IFD0: { Make: 'Wharf', Model: 'Test camera' },
      IFD3: {
        GPSLatitudeRef: 'N',
        GPSLatitude: '52/1 31/1 1234/100',
        GPSLongitudeRef: 'W',
        GPSLongitude: '13/1 24/1 3600/100',
        GPSAltitudeRef: '0',
        GPSAltitude: '345/10',
      },
    })
    .toBuffer();
}

async function asset(id: string) {
  const res = await api(w.url, w.key, 'GET', `/v1/assets/${id}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

async function upload(name: string, bytes: Buffer | string, contentType: string) {
  const res = await uploadRaw(w, w.key, name, bytes, { contentType });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.asset;
}

function near(actual: unknown, expected: number, label: string): void {
  assert.equal(typeof actual, 'number', `${label} is a number`);
  assert.ok(Math.abs((actual as number) - expected) < 1e-4, `${label}: ${actual} is not ${expected}`);
}

describe('processing of a JPEG with EXIF GPS', () => {
  let id: string;
  let bytes: Buffer;
  before(async () => {
    bytes = await photoWithGps();
  });

  test('until jobs run, the asset is pending and has no analysis', async () => {
    const created = await upload('holiday.jpg', bytes, 'image/jpeg');
    id = created.id;
    assert.equal(created.processing, 'pending');
    assert.deepEqual(created.analysis, {});
    const read = await asset(id);
    assert.equal(read.processing, 'pending');
    assert.deepEqual(read.analysis, {});
  });

  test('after the jobs ran: done, format jpg, 640×480, GPS location', async () => {
    const ran = await w.wharf.core.jobs.drain();
    assert.ok(ran >= 1, `ran ${ran} jobs`);
    const read = await asset(id);
    assert.equal(read.processing, 'done');
    assert.equal(read.analysis.format, 'jpg');
    assert.equal(read.analysis.mime, 'image/jpeg');
    assert.equal(read.analysis.width, 640);
    assert.equal(read.analysis.height, 480);
    near(read.analysis.location?.latitude, LATITUDE, 'latitude');
    near(read.analysis.location?.longitude, LONGITUDE, 'longitude');
    near(read.analysis.location?.altitude, 34.5, 'altitude');
    // The bytes themselves are untouched by processing.
    const res = await fetch(read.content_url, { headers: { 'x-api-key': w.key } });
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
  });

  test('the listing shows the same analysis', async () => {
    const res = await api(w.url, w.key, 'GET', '/v1/assets?prefix=holiday');
    const listed = res.body.data.find((a: { id: string }) => a.id === id);
    assert.ok(listed);
    assert.equal(listed.processing, 'done');
    assert.equal(listed.analysis.width, 640);
  });

  test('uploading the same content again queues no new work and keeps the analysis', async () => {
    const again = await uploadRaw(w, w.key, 'copy.jpg', bytes, { contentType: 'image/jpeg' });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.status, 'exists');
    assert.equal(again.body.asset.id, id);
    assert.equal(again.body.asset.processing, 'done');
    assert.equal(await w.wharf.core.jobs.drain(), 0);
  });
});

describe('processing sniffs the content', () => {
  test('a PNG gets format png and its dimensions (and no location)', async () => {
    const png = await sharp({ create: { width: 31, height: 17, channels: 4, background: '#f00a' } })
      .png()
      .toBuffer();
    const created = await upload('pixel.png', png, 'image/png');
    assert.equal(created.processing, 'pending');
    await w.wharf.core.jobs.drain();
    const read = await asset(created.id);
    assert.equal(read.processing, 'done');
    assert.equal(read.analysis.format, 'png');
    assert.equal(read.analysis.mime, 'image/png');
    assert.equal(read.analysis.width, 31);
    assert.equal(read.analysis.height, 17);
    assert.equal(read.analysis.location, undefined);
  });

  // exifr reads no WebP or HEIF container: the position was never reported (hunts found it, for
  // AVIF once the location scrubber, reading it through sharp, refused to strip it).
  for (const format of ['webp', 'avif'] as const) {
    test(`a ${format} photo gets its EXIF GPS location, as a JPEG does`, async () => {
      const bytes = await sharp(await photoWithGps(96, 64, '#357'))
        .toFormat(format)
        .keepExif()
        .toBuffer();
      const created = await upload(`holiday.${format}`, bytes, `image/${format}`);
      await w.wharf.core.jobs.drain();
      const read = await asset(created.id);
      assert.equal(read.processing, 'done');
      assert.equal(read.analysis.format, format);
      assert.deepEqual([read.analysis.width, read.analysis.height], [96, 64]);
      near(read.analysis.location?.latitude, LATITUDE, 'latitude');
      near(read.analysis.location?.longitude, LONGITUDE, 'longitude');
      near(read.analysis.location?.altitude, 34.5, 'altitude');
    });
  }

  test('a text file is processed: done, with no image facts', async () => {
    const created = await upload(
      'notes.txt',
      `plain text, nothing else ${randomBytes(4).toString('hex')}\n`,
      'text/plain',
    );
    await w.wharf.core.jobs.drain();
    const read = await asset(created.id);
    assert.equal(read.processing, 'done');
    assert.equal(read.analysis.width, undefined);
    assert.equal(read.analysis.height, undefined);
    assert.equal(read.analysis.location, undefined);
  });

  test('a file named .png (and sent as image/png) that is really text is not reported as a PNG', async () => {
    const created = await upload(
      'fake.png',
      `not a png at all ${randomBytes(4).toString('hex')}\n`,
      'image/png',
    );
    await w.wharf.core.jobs.drain();
    const read = await asset(created.id);
    assert.equal(read.processing, 'done');
    assert.notEqual(read.analysis.format, 'png');
    assert.notEqual(read.analysis.mime, 'image/png');
    assert.equal(read.analysis.width, undefined);
    assert.equal(read.analysis.height, undefined);
    // What the client declared is kept as it was declared; the analysis is a separate fact.
    assert.equal(read.content_type, 'image/png');
  });

  test('a PNG named .jpg is reported as the PNG it is', async () => {
    const png = await sharp({ create: { width: 9, height: 5, channels: 3, background: '#0f0' } })
      .png()
      .toBuffer();
    const created = await upload('disguised.jpg', png, 'image/jpeg');
    await w.wharf.core.jobs.drain();
    const read = await asset(created.id);
    assert.equal(read.analysis.format, 'png');
    assert.equal(read.analysis.width, 9);
    assert.equal(read.analysis.height, 5);
  });

  test('an empty file is processed without reading anything', async () => {
    const res = await uploadRaw(w, w.key, `empty-${randomBytes(4).toString('hex')}.bin`, Buffer.alloc(0), {
      contentType: 'application/octet-stream',
    });
    assert.ok(res.status === 201 || res.status === 200, JSON.stringify(res.body));
    await w.wharf.core.jobs.drain();
    const read = await asset(res.body.asset.id);
    assert.equal(read.processing, 'done');
    assert.deepEqual(read.analysis, {});
  });
});

describe('an asset deleted before its processing ran', () => {
  test('its job ends quietly as done, not as a job given up (what operators alert on)', async () => {
    const created = await upload(
      'short-lived.txt',
      `gone soon ${randomBytes(4).toString('hex')}\n`,
      'text/plain',
    );
    const deleted = await api(w.url, w.key, 'DELETE', `/v1/assets/${created.id}`);
    assert.equal(deleted.status, 204);
    await w.wharf.core.jobs.drain();
    const jobs = dbQuery<{ status: string; kind: string }>(
      w,
      "select status, kind from jobs where payload like ? and kind = 'process-asset'",
      `%${created.id}%`,
    );
    assert.deepEqual(jobs, [{ status: 'done', kind: 'process-asset' }]);
  });
});

describe('every upload path is processed', () => {
  test('a presigned upload (declare, PUT, complete) is processed once completed', async () => {
    const jpeg = await photoWithGps(120, 80, '#246');
    const done = await presignedUpload(w, w.key, 'presigned.jpg', jpeg, 'image/jpeg');
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.status, 'created');
    const id = done.body.asset.id as string;
    assert.equal((await asset(id)).processing, 'pending');
    await w.wharf.core.jobs.drain();
    const read = await asset(id);
    assert.equal(read.processing, 'done');
    assert.equal(read.analysis.format, 'jpg');
    assert.equal(read.analysis.width, 120);
    assert.equal(read.analysis.height, 80);
    near(read.analysis.location?.latitude, LATITUDE, 'latitude');
    near(read.analysis.location?.longitude, LONGITUDE, 'longitude');
  });

  test('a named file version is processed', async () => {
    const png = await sharp({ create: { width: 44, height: 33, channels: 3, background: '#123' } })
      .png()
      .toBuffer();
    const put = await readJson(
      fetch(`${w.url}/v1/files/images/logo.png`, {
        method: 'PUT',
        headers: { 'x-api-key': w.key, 'content-type': 'image/png' },
        body: new Uint8Array(png),
      }),
    );
    assert.equal(put.status, 201, JSON.stringify(put.body));
    assert.equal(put.body.asset.processing, 'pending');
    await w.wharf.core.jobs.drain();
    const file = await api(w.url, w.key, 'GET', '/v1/files/images/logo.png');
    assert.equal(file.body.asset.processing, 'done');
    assert.equal(file.body.asset.analysis.format, 'png');
    assert.equal(file.body.asset.analysis.width, 44);
    assert.equal(file.body.asset.analysis.height, 33);
  });
});

describe('hostile files do not stall processing', () => {
  test('a HEIC-branded file whose boxes never reach `meta` is processed, not looped on forever', async () => {
    // exifr's HEIF parser adds each box's length to its offset until it meets `meta`; a box
    // of length 0 used to spin it forever on the main thread (the whole server froze).
    const ftyp = Buffer.alloc(24);
    ftyp.writeUInt32BE(24, 0);
    ftyp.write('ftypheic', 4, 'latin1');
    ftyp.write('mif1heic', 16, 'latin1');
    const zeroLengthBox = Buffer.from('00000000free', 'latin1');
    zeroLengthBox.writeUInt32BE(0, 0);
    for (const tail of [zeroLengthBox, randomBytes(512)]) {
      const created = await upload(
        `loop-${randomBytes(3).toString('hex')}.heic`,
        Buffer.concat([ftyp, tail]),
        'image/heic',
      );
      await w.wharf.core.jobs.drain();
      const read = await asset(created.id);
      assert.equal(read.processing, 'done');
      assert.equal(read.analysis.mime, 'image/heic');
      assert.equal(read.analysis.location, undefined);
    }
  });

  test('a PNG whose colour profile inflates to 256 MiB is processed and transformed, its EXIF position found', async () => {
    // exifr inflated an iCCP chunk's profile whole on the main thread, whatever its options:
    // a 1 MB upload took the server to 1.5 GB and stalled every request. The memory it no
    // longer takes is measured in test/unit/metadata-bombs.test.ts (a process of its own).
    const plain = await pngWithGps(40, 30, '#0f0');
    const bomb = await withProfileBomb(plain, 256 * 1024 * 1024);
    assert.ok(bomb.length < 512 * 1024, `${bomb.length} bytes`);
    const created = await upload('profile-bomb.png', bomb, 'image/png');
    await w.wharf.core.jobs.drain();
    const read = await asset(created.id);
    assert.equal(read.processing, 'done');
    assert.equal(read.analysis.format, 'png');
    assert.deepEqual([read.analysis.width, read.analysis.height], [40, 30]);
    near(read.analysis.location?.latitude, LATITUDE, 'latitude');
    near(read.analysis.location?.longitude, LONGITUDE, 'longitude');
    // sharp (libspng) skips a profile that large: the transform is not affected either.
    const res = await fetch(`${w.url}/v1/assets/${created.id}/image?w=16&format=png`, {
      headers: { 'x-api-key': w.key },
    });
    assert.equal(res.status, 200);
    const rendered = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    assert.deepEqual([rendered.format, rendered.width], ['png', 16]);
  });
});
