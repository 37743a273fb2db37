import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { crc32, deflateSync } from 'node:zlib';
import exifr from 'exifr';
import sharp from 'sharp';
import { ImageService } from '../../src/core/images.js';
import type { BlobStore } from '../../src/core/ports.js';
import { MAX_FRAMES } from '../../src/core/transforms.js';
import { deriveKey } from '../../src/core/wharf.js';
import { dbQuery, eventually, serverSecret, uploadRaw } from '../helpers/assets.js';
import { onS3, removeStoredObject, storedKeys } from '../helpers/deployment.js';
import { api, sha256Hex } from '../helpers/http.js';
import { LogCollector, WARN } from '../helpers/observe.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * GET /v1/assets/{id}/image: every parameter, format negotiation, signed URLs, caching and
 * Range, EXIF, refusals of hostile input, limits, derivatives shared by two nodes and freed
 * with their asset, presets. Real HTTP against a real server on either deployment.
 */

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown> };
}

interface Fetched {
  status: number;
  headers: Headers;
  bytes: Buffer;
  json?: ErrorBody;
}

async function get(path: string, headers: Record<string, string> = {}, key: string | null = w.key) {
  const res = await fetch(w.url + path, { headers: { ...(key ? { 'x-api-key': key } : {}), ...headers } });
  const bytes = Buffer.from(await res.arrayBuffer());
  const fetched: Fetched = { status: res.status, headers: res.headers, bytes };
  if (res.headers.get('content-type')?.startsWith('application/json'))
    fetched.json = JSON.parse(bytes.toString());
  return fetched;
}

async function image(id: string, query: string, headers: Record<string, string> = {}) {
  const res = await get(`/v1/assets/${id}/image${query ? `?${query}` : ''}`, headers);
  assert.equal(res.status, 200, `${query}: ${res.bytes.toString().slice(0, 300)}`);
  return res;
}

async function meta(bytes: Buffer) {
  return sharp(bytes).metadata();
}

/** A photo-like JPEG (noise, so sizes and qualities make a difference) with optional EXIF. */
async function photo(width: number, height: number, exif?: Record<string, Record<string, string>>) {
  const noise = await sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } })
    .blur(1.5)
    .png()
    .toBuffer();
  const image = sharp(noise).jpeg({ quality: 90 });
  return exif ? image.withExif(exif).toBuffer() : image.toBuffer();
}

async function upload(name: string, bytes: Buffer, contentType: string, key = w.key) {
  const res = await uploadRaw(w, key, name, bytes, { contentType });
  assert.ok(res.status === 201 || res.status === 200, JSON.stringify(res.body));
  return res.body.asset as { id: string; name: string };
}

async function derivatives(id: string) {
  const res = await api(w.url, w.key, 'GET', `/v1/assets/${id}/derivatives`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data as Array<{
    params: string;
    sha256: string;
    size: number;
    content_type: string;
    created_at: string;
  }>;
}

const GPS_EXIF = {
  IFD0: { Make: 'Wharf', Model: 'Test camera' },
  IFD3: {
    GPSLatitudeRef: 'N',
    GPSLatitude: '52/1 31/1 1234/100',
    GPSLongitudeRef: 'W',
    GPSLongitude: '13/1 24/1 3600/100',
  },
};

describe('sizes and fits', () => {
  let id: string;
  before(async () => {
    id = (await upload('landscape.jpg', await photo(640, 480), 'image/jpeg')).id;
  });

  test('w alone: width rounded up to a multiple of 16, aspect kept', async () => {
    const res = await image(id, 'w=100&format=jpeg');
    assert.equal(res.headers.get('content-type'), 'image/jpeg');
    const m = await meta(res.bytes);
    assert.equal(m.format, 'jpeg');
    assert.equal(m.width, 112);
    assert.equal(m.height, 84);
  });

  test('h alone', async () => {
    const m = await meta((await image(id, 'h=60&format=png')).bytes);
    assert.equal(m.height, 64);
    assert.equal(m.width, 85);
  });

  test('fit=cover fills the box, contain letterboxes (transparent in PNG), inside fits within', async () => {
    const cover = await meta((await image(id, 'w=160&h=160&fit=cover&format=png')).bytes);
    assert.deepEqual([cover.width, cover.height], [160, 160]);
    const contained = await image(id, 'w=160&h=160&fit=contain&format=png');
    const contain = await meta(contained.bytes);
    assert.deepEqual([contain.width, contain.height], [160, 160]);
    // The bands above and below the picture are transparent.
    const { data, info } = await sharp(contained.bytes)
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    assert.equal(data[info.channels - 1], 0, 'the top-left pixel is transparent');
    const middle = (80 * 160 + 80) * info.channels;
    assert.equal(data[middle + info.channels - 1], 255, 'the centre is the opaque picture');
    const inside = await meta((await image(id, 'w=160&h=160&fit=inside&format=png')).bytes);
    assert.deepEqual([inside.width, inside.height], [160, 120]);
    // Without fit, both sides given means inside.
    const fallback = await image(id, 'w=160&h=160&format=png');
    assert.equal(
      fallback.headers.get('etag'),
      (await image(id, 'w=160&h=160&fit=inside&format=png')).headers.get('etag'),
    );
  });

  test('dpr multiplies the size before rounding; dpr outside 1–3 is refused', async () => {
    const m = await meta((await image(id, 'w=100&dpr=2&format=jpeg')).bytes);
    assert.equal(m.width, 208);
    // The same canonical rendering as asking for 208 directly: one stored object, one ETag.
    const direct = await image(id, 'w=208&format=jpeg');
    const viaDpr = await image(id, 'w=104&dpr=2&format=jpeg');
    assert.equal(direct.headers.get('etag'), viaDpr.headers.get('etag'));
    for (const dpr of ['0.5', '4', 'abc']) {
      const res = await get(`/v1/assets/${id}/image?w=100&dpr=${dpr}`);
      assert.equal(res.status, 400, dpr);
      assert.equal(res.json?.error.code, 'VALIDATION_FAILED');
    }
  });

  test('never enlarged: a width beyond the original gives the original size', async () => {
    const m = await meta((await image(id, 'w=1600&format=png')).bytes);
    assert.deepEqual([m.width, m.height], [640, 480]);
  });

  test('sizes are clamped to 4096, however large the request or the dpr', async () => {
    const wide = (
      await upload(
        'strip.png',
        await sharp({ create: { width: 5000, height: 20, channels: 3, background: '#123' } })
          .png()
          .toBuffer(),
        'image/png',
      )
    ).id;
    const m = await meta((await image(wide, 'w=3000&dpr=3&format=png')).bytes);
    assert.equal(m.width, 4096);
    // And without w, the longest side is bounded by 4096 too.
    const whole = await meta((await image(wide, 'format=png')).bytes);
    assert.equal(whole.width, 4096);
    const list = await derivatives(wide);
    assert.ok(
      list.some((d) => d.params === 'w4096-png'),
      JSON.stringify(list),
    );
  });

  test('q is rounded to a multiple of 5 and changes the bytes; PNG takes none', async () => {
    const low = await image(id, 'w=320&format=webp&q=12');
    const high = await image(id, 'w=320&format=webp&q=90');
    assert.ok(low.bytes.length < high.bytes.length, `${low.bytes.length} < ${high.bytes.length}`);
    const same = await image(id, 'w=320&format=webp&q=8');
    assert.equal(same.headers.get('etag'), low.headers.get('etag'), 'q=8 and q=12 both round to 10');
    const params = (await derivatives(id)).map((d) => d.params);
    assert.ok(params.includes('w320-q10-webp'), params.join(' '));
    assert.ok(params.includes('w320-q90-webp'), params.join(' '));
    const png = await image(id, 'w=320&format=png&q=10');
    assert.equal(png.headers.get('etag'), (await image(id, 'w=320&format=png')).headers.get('etag'));
  });

  test('every format is what it says', async () => {
    const expected = { jpeg: 'jpeg', png: 'png', webp: 'webp', avif: 'heif' } as const;
    for (const [format, sharpName] of Object.entries(expected)) {
      const res = await image(id, `w=64&format=${format}`);
      assert.equal(res.headers.get('content-type'), `image/${format}`);
      assert.equal((await meta(res.bytes)).format, sharpName);
      // An explicit format does not depend on Accept.
      assert.equal(res.headers.get('vary'), null);
      assert.match(
        res.headers.get('content-disposition') ?? '',
        /^inline; filename="landscape\.(jpg|png|webp|avif)"$/,
      );
    }
  });

  test('bad parameters are refused with VALIDATION_FAILED', async () => {
    for (const query of [
      'w=0',
      'w=-5',
      'w=1.5',
      'fit=fill',
      'format=gif',
      'q=0',
      'q=101',
      'preset=thumb&w=10',
      'x=1',
      // Numbers other than in plain decimal, which Number() would read.
      'w=0x10',
      'w=1e3',
      'w=%20100',
      'h=%2B50',
      'q=8e1',
      'dpr=0x2',
      'dpr=2.',
      // One number written one way only: no leading zeros, no trailing fraction zeros.
      'w=0300',
      'h=00',
      'q=080',
      'dpr=2.0',
      'dpr=1.50',
      'dpr=01.5',
    ]) {
      const res = await get(`/v1/assets/${id}/image?${query}`);
      assert.equal(res.status, 400, `${query}: ${res.bytes}`);
      assert.equal(res.json?.error.code, 'VALIDATION_FAILED', query);
    }
    const q = await get(`/v1/assets/${id}/image?q=080`);
    assert.match(String(q.json?.error.message), /e\.g\. 80\)/, 'a quality as an example, within 1–100');
    // A value outside a set of choices names them (it said "must be equal to constant" thrice).
    const fit = await get(`/v1/assets/${id}/image?fit=fill`);
    assert.equal(
      fit.json?.error.message,
      'querystring/fit must be one of "cover", "contain", "inside"',
      String(fit.bytes),
    );
    const format = await get(`/v1/assets/${id}/image?format=gif`);
    assert.match(
      String(format.json?.error.message),
      /querystring\/format must be one of "auto", "webp", "avif", "jpeg", "png"/,
    );
  });
});

describe('format=auto negotiates from Accept', () => {
  let jpg: string;
  let png: string;
  before(async () => {
    jpg = (await upload('negotiate.jpg', await photo(200, 150), 'image/jpeg')).id;
    png = (
      await upload(
        'negotiate.png',
        await sharp({ create: { width: 100, height: 100, channels: 4, background: '#f008' } })
          .png()
          .toBuffer(),
        'image/png',
      )
    ).id;
  });

  const cases: Array<[string, string, string]> = [
    ['image/avif,image/webp,image/apng,*/*;q=0.8', 'jpg', 'image/avif'],
    ['image/webp,*/*', 'jpg', 'image/webp'],
    ['image/avif;q=0, image/webp;q=0.5', 'jpg', 'image/webp'],
    ['*/*', 'jpg', 'image/jpeg'],
    ['image/*', 'jpg', 'image/jpeg'],
    ['', 'jpg', 'image/jpeg'],
    ['*/*', 'png', 'image/png'],
    ['image/webp', 'png', 'image/webp'],
  ];
  for (const [accept, source, type] of cases) {
    test(`Accept "${accept}" for a ${source}: ${type}, with Vary: Accept`, async () => {
      const res = await image(source === 'jpg' ? jpg : png, 'w=64', accept ? { accept } : {});
      assert.equal(res.headers.get('content-type'), type);
      assert.equal(res.headers.get('vary'), 'Accept');
    });
  }

  test('no parameters at all: the original size, re-encoded per Accept', async () => {
    const res = await image(jpg, '', { accept: 'image/webp' });
    assert.equal(res.headers.get('content-type'), 'image/webp');
    const m = await meta(res.bytes);
    assert.deepEqual([m.width, m.height], [200, 150]);
  });
});

describe('what a rendering carries', () => {
  test('EXIF orientation is applied and no EXIF (so no GPS) survives, in any format', async () => {
    // 60×30 pixels stored, orientation 6: displayed as 30×60.
    const bytes = await sharp(await photo(60, 30))
      .withExif(GPS_EXIF)
      .withMetadata({ orientation: 6 })
      .jpeg()
      .toBuffer();
    assert.equal((await meta(bytes)).orientation, 6);
    const original = await exifr.parse(bytes, { gps: true });
    assert.ok(original.latitude, 'the original has a GPS position');
    const { id } = await upload('sideways.jpg', bytes, 'image/jpeg');
    for (const format of ['jpeg', 'png', 'webp', 'avif']) {
      const res = await image(id, `format=${format}`);
      const m = await meta(res.bytes);
      assert.deepEqual([m.width, m.height], [30, 60], format);
      assert.equal(m.exif, undefined, `${format}: no EXIF block`);
      assert.equal(m.xmp, undefined, `${format}: no XMP`);
      assert.ok(!m.orientation || m.orientation === 1, `${format}: orientation ${m.orientation}`);
      if (format === 'jpeg' || format === 'png') {
        const gps = await exifr.gps(res.bytes).catch(() => undefined);
        assert.equal(gps, undefined, `${format}: exifr finds no GPS`);
      }
    }
  });

  test('strong ETag (the rendering’s SHA-256), If-None-Match, and Range like the content', async () => {
    const { id } = await upload('range.jpg', await photo(300, 200), 'image/jpeg');
    const whole = await image(id, 'w=200&format=png');
    const etag = whole.headers.get('etag');
    assert.equal(etag, `"${sha256Hex(whole.bytes)}"`);
    assert.equal(whole.headers.get('accept-ranges'), 'bytes');
    assert.equal(Number(whole.headers.get('content-length')), whole.bytes.length);

    const part = await get(`/v1/assets/${id}/image?w=200&format=png`, { range: 'bytes=10-29' });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 10-29/${whole.bytes.length}`);
    assert.deepEqual(part.bytes, whole.bytes.subarray(10, 30));

    const beyond = await get(`/v1/assets/${id}/image?w=200&format=png`, {
      range: `bytes=${whole.bytes.length + 5}-`,
    });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.json?.error.code, 'RANGE_NOT_SATISFIABLE');

    const cached = await get(`/v1/assets/${id}/image?w=200&format=png`, { 'if-none-match': etag! });
    assert.equal(cached.status, 304);
    assert.equal(cached.bytes.length, 0);

    // Last-Modified is when the rendering was made; the conditions on it work as for the content.
    const [made] = await derivatives(id);
    const lastModified = new Date(Math.floor(Date.parse(made!.created_at) / 1000) * 1000).toUTCString();
    assert.equal(whole.headers.get('last-modified'), lastModified);
    assert.equal(part.headers.get('last-modified'), lastModified);
    assert.equal(cached.headers.get('last-modified'), lastModified);
    const since = await get(`/v1/assets/${id}/image?w=200&format=png`, { 'if-modified-since': lastModified });
    assert.equal(since.status, 304);
    const refused = await get(`/v1/assets/${id}/image?w=200&format=png`, { 'if-match': '"another"' });
    assert.equal(refused.status, 412);
    assert.equal(refused.json?.error.code, 'PRECONDITION_FAILED');
    const stale = await get(`/v1/assets/${id}/image?w=200&format=png`, {
      range: 'bytes=10-29',
      'if-range': new Date(Date.parse(lastModified) - 1000).toUTCString(),
    });
    assert.equal(stale.status, 200);
    assert.deepEqual(stale.bytes, whole.bytes);
  });

  test('a rendering is made once: asking again serves the stored one', async () => {
    const { id } = await upload('once.jpg', await photo(300, 200), 'image/jpeg');
    const before = w.wharf.core.images.rendered;
    const first = await image(id, 'w=96&format=webp');
    assert.equal(w.wharf.core.images.rendered, before + 1);
    for (let i = 0; i < 3; i += 1) {
      const again = await image(id, 'w=96&format=webp');
      assert.equal(again.headers.get('etag'), first.headers.get('etag'));
    }
    assert.equal(w.wharf.core.images.rendered, before + 1, 'no second rendering');
    assert.equal((await derivatives(id)).length, 1);
  });

  test('identical renderings of an asset share one stored object', async () => {
    const { id } = await upload(
      'small.png',
      await sharp({ create: { width: 50, height: 40, channels: 3, background: '#0a0' } })
        .png()
        .toBuffer(),
      'image/png',
    );
    // Both are larger than the original, so both are the original size: the same bytes.
    const a = await image(id, 'w=800&format=png');
    const b = await image(id, 'w=1600&format=png');
    assert.equal(a.headers.get('etag'), b.headers.get('etag'));
    const list = await derivatives(id);
    assert.equal(list.length, 2);
    const objects = (await storedKeys(w)).filter((k) => k.includes(`derivatives/${id}/`));
    assert.equal(objects.length, 1, objects.join(' '));
  });
});

describe('a rendering whose stored object vanished', () => {
  test('is made again, and its twins with it', async () => {
    const { id } = await upload(
      'vanishing.png',
      await sharp({ create: { width: 60, height: 30, channels: 3, background: '#a0a' } })
        .png()
        .toBuffer(),
      'image/png',
    );
    const first = await image(id, 'w=800&format=png');
    const twin = await image(id, 'w=1600&format=png'); // the same bytes: one object for both
    const [object] = (await storedKeys(w)).filter((k) => k.includes(`derivatives/${id}/`));
    assert.ok(object);
    await removeStoredObject(w, object);

    const again = await image(id, 'w=800&format=png');
    assert.equal(again.status, 200, again.bytes.toString());
    assert.ok(again.bytes.equals(first.bytes), 'the same rendering, made again');
    assert.equal(again.headers.get('etag'), first.headers.get('etag'));
    const twinAgain = await image(id, 'w=1600&format=png');
    assert.equal(twinAgain.status, 200, twinAgain.bytes.toString());
    assert.ok(twinAgain.bytes.equals(twin.bytes));
    // Stored again, once, and listed.
    assert.equal((await storedKeys(w)).filter((k) => k.includes(`derivatives/${id}/`)).length, 1);
    assert.deepEqual((await derivatives(id)).map((d) => d.params).length, 2);
  });
});

/** A small PNG of content no other test uploads (its own asset, not a deduplicated one). */
function unique(width: number, height: number): Promise<Buffer> {
  return sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

describe('an original that goes while it is rendered', () => {
  test('deleted at the same moment: 200 or 404, never a 500', async () => {
    for (let round = 0; round < 16; round++) {
      const { id } = await upload(`racing-${round}.png`, await unique(40, 30), 'image/png');
      const [rendered, deleted] = await Promise.all([
        get(`/v1/assets/${id}/image?w=${20 + round}&format=png`),
        api(w.url, w.key, 'DELETE', `/v1/assets/${id}`),
      ]);
      assert.equal(deleted.status, 204);
      assert.ok(
        rendered.status === 200 || rendered.status === 404,
        `round ${round}: ${rendered.status} ${rendered.bytes.toString().slice(0, 200)}`,
      );
      if (rendered.status === 404) assert.equal(rendered.json?.error.code, 'NOT_FOUND');
    }
  });

  test('a stored rendering looked up just before a delete (on any node) reads as 404, not as bytes lost', async () => {
    const { id } = await upload('deleted-under-read.png', await unique(40, 30), 'image/png');
    assert.equal((await get(`/v1/assets/${id}/image?w=24&format=png`)).status, 200);
    const principal = await w.wharf.core.keys.authenticate(w.key);
    const [rendering] = await w.wharf.core.images.list(principal, id);
    assert.ok(rendering);
    const original = await w.wharf.core.assets.get(principal, id);
    // What a download or a rendering's read on another node holds while this one deletes.
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${id}`)).status, 204);
    for (const read of [
      () => w.wharf.core.images.read(rendering),
      () => w.wharf.core.assets.read(original),
    ]) {
      await assert.rejects(read(), (err: unknown) => {
        assert.equal((err as { code?: string }).code, 'NOT_FOUND');
        return true;
      });
    }
  });

  test('removed behind Wharf’s back: BYTES_MISSING, which names the asset', async () => {
    const { id } = await upload('vanished-original.png', await unique(40, 30), 'image/png');
    const [row] = dbQuery<{ storage_key: string }>(w, 'select storage_key from assets where id = ?', id);
    await removeStoredObject(w, row!.storage_key);
    const res = await get(`/v1/assets/${id}/image?w=20&format=png`);
    assert.equal(res.status, 500);
    assert.equal(res.json?.error.code, 'BYTES_MISSING');
    assert.equal(res.json?.error.details.asset_id, id);
  });
});

describe('signed transform URLs', () => {
  let id: string;
  before(async () => {
    id = (await upload('signed.jpg', await photo(320, 240), 'image/jpeg')).id;
  });

  async function sign(body: Record<string, unknown>, assetId = id) {
    const res = await api(w.url, w.key, 'POST', `/v1/assets/${assetId}/image-url`, body);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body as { url: string; expires_at: string; params: Record<string, unknown> };
  }

  test('work without a key, with canonical parameters, long public caching and cross-origin embedding', async () => {
    const signed = await sign({ w: 150, h: 100, fit: 'cover', format: 'webp', q: 72, expires_in: 3600 });
    assert.deepEqual(signed.params, { w: 160, h: 112, fit: 'cover', format: 'webp', q: 70 });
    const url = new URL(signed.url);
    assert.equal(url.searchParams.get('w'), '160');
    const res = await fetch(signed.url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/webp');
    assert.match(res.headers.get('cache-control') ?? '', /^public, max-age=(3599|3600), immutable$/);
    assert.equal(res.headers.get('cross-origin-resource-policy'), 'cross-origin');
    const m = await meta(Buffer.from(await res.arrayBuffer()));
    assert.deepEqual([m.width, m.height], [160, 112]);
  });

  test('format=auto in a signed URL still negotiates, and says Vary: Accept', async () => {
    const signed = await sign({ w: 64 });
    const avif = await fetch(signed.url, { headers: { accept: 'image/avif' } });
    assert.equal(avif.headers.get('content-type'), 'image/avif');
    assert.equal(avif.headers.get('vary'), 'Accept');
    const plain = await fetch(signed.url);
    assert.equal(plain.headers.get('content-type'), 'image/jpeg');
  });

  test('a tampered parameter, signature or asset id is refused (403 INVALID_SIGNATURE)', async () => {
    const signed = await sign({ w: 64, format: 'webp' });
    const other = await upload('other.jpg', await photo(64, 64), 'image/jpeg');
    const otherKey = await w.newKey('admin');
    assert.ok(new URL(signed.url).searchParams.get('signer'), 'the URL names its signer');
    const tamper = (edit: (u: URL) => void) => {
      const u = new URL(signed.url);
      edit(u);
      return u.toString();
    };
    const variants = [
      tamper((u) => u.searchParams.set('w', '640')),
      tamper((u) => u.searchParams.set('format', 'png')),
      tamper((u) => u.searchParams.set('q', '5')),
      tamper((u) => u.searchParams.set('expires', String(Number(u.searchParams.get('expires')) + 3600))),
      tamper((u) => u.searchParams.set('signature', `${u.searchParams.get('signature')!.slice(0, -2)}AA`)),
      tamper((u) => {
        u.pathname = u.pathname.replace(id, other.id);
      }),
      // The signer is signed too: another key's id, or none.
      tamper((u) => u.searchParams.set('signer', otherKey.id)),
      tamper((u) => u.searchParams.delete('signer')),
    ];
    for (const url of variants) {
      const res = await fetch(url);
      assert.equal(res.status, 403, url);
      assert.equal(((await res.json()) as ErrorBody).error.code, 'INVALID_SIGNATURE', url);
    }
    const half = tamper((u) => u.searchParams.delete('signature'));
    const res = await fetch(half);
    assert.equal(res.status, 403);
  });

  test('a URL handed out before URLs named their signer (no signer parameter) still works', async () => {
    // Signed as every transform URL was before: asset id, canonical parameters and expiry.
    const expires = Math.floor(w.clock.now() / 1000) + 600;
    const subject = ImageService.subject({ kind: 'params', input: { w: 48, format: 'png' } });
    const signature = createHmac('sha256', deriveKey(serverSecret(w), 'transforms'))
      .update(`image\n${id}\n${subject}\n${expires}`)
      .digest('base64url');
    const res = await get(
      `/v1/assets/${id}/image?${subject}&expires=${expires}&signature=${signature}`,
      {},
      null,
    );
    assert.equal(res.status, 200, res.bytes.toString().slice(0, 300));
    assert.equal(res.headers.get('content-type'), 'image/png');
  });

  test('an expired URL is refused (403 URL_EXPIRED)', async () => {
    const signed = await sign({ w: 48, format: 'png', expires_in: 60 });
    assert.equal((await fetch(signed.url)).status, 200);
    w.clock.advance(61_000);
    const res = await fetch(signed.url);
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as ErrorBody).error.code, 'URL_EXPIRED');
  });

  /** A photo uploaded with a fresh ten-minute upload token: the token (minted), its secret and the upload's answer. */
  async function tokenPhoto(name: string) {
    const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', { expires_in: 600 });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const token = minted.body.secret as string;
    const mine = await uploadRaw(w, token, name, await photo(64, 48), { contentType: 'image/jpeg' });
    assert.equal(mine.status, 201, JSON.stringify(mine.body));
    return { minted, token, mine };
  }

  test('a URL an upload token signs never outlives the token', async () => {
    const { minted, token, mine } = await tokenPhoto('token-photo.jpg');
    const signed = await api(w.url, token, 'POST', `/v1/assets/${mine.body.asset.id}/image-url`, {
      w: 32,
      expires_in: 365 * 86400,
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    assert.ok(
      signed.body.expires_at <= minted.body.token.expires_at,
      `${signed.body.expires_at} is past the token`,
    );
    assert.equal(
      new URL(signed.body.url).searchParams.get('expires'),
      String(Date.parse(signed.body.expires_at) / 1000),
    );
  });

  test('expires_at: the same moment gives the same URL on every signing; it works through that second, then URL_EXPIRED', async () => {
    // The end of the next whole minute, as a page would round to the end of the hour or day.
    const at = (Math.floor(w.clock.now() / 60_000) + 2) * 60_000;
    const body = { w: 64, format: 'webp', expires_at: new Date(at).toISOString() };
    const first = await sign(body);
    w.clock.advance(1500);
    const second = await sign(body);
    assert.equal(second.url, first.url, 'a second later, the same URL (one cache key)');
    assert.equal(first.expires_at, new Date(at).toISOString());
    assert.equal(new URL(first.url).searchParams.get('expires'), String(at / 1000));
    // A moment inside that second is taken to the second: the same URL again.
    assert.equal((await sign({ ...body, expires_at: new Date(at + 400).toISOString() })).url, first.url);
    // Another spelling of the moment (an offset) is the same moment.
    const offset = new Date(at + 2 * 3600_000).toISOString().replace('Z', '+02:00');
    assert.equal((await sign({ ...body, expires_at: offset })).url, first.url);
    assert.equal((await fetch(first.url)).status, 200);
    w.clock.set(at + 999);
    assert.equal((await fetch(first.url)).status, 200, 'valid through its last second');
    w.clock.set(at + 1000);
    const expired = await fetch(first.url);
    assert.equal(expired.status, 403);
    assert.equal(((await expired.json()) as ErrorBody).error.code, 'URL_EXPIRED');
  });

  test('expires_at with expires_in, in the past or beyond a year is 400 VALIDATION_FAILED', async () => {
    const now = w.clock.now();
    const second = Math.floor(now / 1000) * 1000;
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['both', { expires_in: 60, expires_at: new Date(now + 60_000).toISOString() }, /not both/],
      [
        'in the past',
        { expires_at: new Date(now - 60_000).toISOString() },
        /expires_at must be in the future/,
      ],
      ['this very second', { expires_at: new Date(second).toISOString() }, /in the future/],
      [
        'beyond a year',
        { expires_at: new Date(second + (365 * 86400 + 1) * 1000).toISOString() },
        /at most 31536000 seconds from now/,
      ],
      ['not a date-time', { expires_at: 'tomorrow' }, /expires_at/],
      ['without a time zone', { expires_at: '2030-01-01T00:00:00' }, /expires_at/],
    ];
    for (const [label, body, message] of cases) {
      const res = await api(w.url, w.key, 'POST', `/v1/assets/${id}/image-url`, { w: 10, ...body });
      assert.equal(res.status, 400, label);
      assert.equal(res.body.error.code, 'VALIDATION_FAILED', label);
      assert.match(res.body.error.message, message, label);
    }
    const year = await sign({ w: 10, expires_at: new Date(second + 365 * 86400 * 1000).toISOString() });
    assert.equal(Date.parse(year.expires_at), second + 365 * 86400 * 1000, 'a year ahead is the maximum');
    await sign({ w: 10, expires_at: new Date(second + 1000).toISOString() }); // the next second is the minimum
  });

  test('an expires_at past an upload token’s expiry is cut to it: the same URL, never outliving the token', async () => {
    const { minted, token, mine } = await tokenPhoto('token-moment.jpg');
    const body = { w: 32, expires_at: new Date(w.clock.now() + 30 * 86400_000).toISOString() };
    const path = `/v1/assets/${mine.body.asset.id}/image-url`;
    const first = await api(w.url, token, 'POST', path, body);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const tokenExpires = Date.parse(minted.body.token.expires_at);
    assert.equal(Date.parse(first.body.expires_at), Math.floor(tokenExpires / 1000) * 1000);
    w.clock.advance(2000);
    const second = await api(w.url, token, 'POST', path, body);
    assert.equal(second.body.url, first.body.url, 'cut to the same second on every signing');
    w.clock.set(Math.floor(tokenExpires / 1000) * 1000 + 1000);
    const expired = await fetch(first.body.url);
    assert.equal(expired.status, 403);
    assert.equal(((await expired.json()) as ErrorBody).error.code, 'URL_EXPIRED');
  });

  test('only the URL handed out works: parameters that round alike, added ones or another spelling of expires are refused', async () => {
    const signed = await sign({ w: 150, h: 100, fit: 'cover', format: 'webp', expires_in: 3600 });
    assert.equal((await fetch(signed.url)).status, 200);
    const edits: Array<[string, (u: URL) => void]> = [
      ['w rounding to the same width', (u) => u.searchParams.set('w', '150')],
      ['an added q', (u) => u.searchParams.set('q', '70')],
      ['a default spelled out', (u) => u.searchParams.set('dpr', '1')],
      [
        'expires with a leading zero',
        (u) => u.searchParams.set('expires', `0${u.searchParams.get('expires')}`),
      ],
      ['a trailing &', (u) => (u.search = `${u.search}&`)],
      ['an empty parameter between two', (u) => (u.search = u.search.replace('&expires=', '&&expires='))],
      ['a letter escaped', (u) => (u.search = u.search.replace('format=webp', 'format=%77ebp'))],
      [
        'the signature with a character escaped',
        (u) => {
          const signature = u.searchParams.get('signature')!;
          const escaped = `%${signature.charCodeAt(0).toString(16).toUpperCase()}${signature.slice(1)}`;
          u.search = u.search.replace(`signature=${signature}`, `signature=${escaped}`);
        },
      ],
      ['the asset id in upper case', (u) => (u.pathname = u.pathname.replace(id, id.toUpperCase()))],
      [
        'the parameters reordered',
        (u) => {
          const w = u.searchParams.get('w')!;
          u.searchParams.delete('w');
          u.searchParams.append('w', w);
        },
      ],
    ];
    for (const [label, edit] of edits) {
      const u = new URL(signed.url);
      edit(u);
      const res = await fetch(u);
      assert.equal(res.status, 403, label);
      assert.equal(
        ((await res.json()) as { error: { code: string } }).error.code,
        'INVALID_SIGNATURE',
        label,
      );
    }
  });

  test('412 and 416 answers carry no Cache-Control: no shared cache keeps them as it keeps the rendering', async () => {
    const signed = await sign({ w: 48, format: 'png', expires_in: 3600 });
    const whole = await fetch(signed.url);
    assert.equal(whole.status, 200);
    const size = (await whole.arrayBuffer()).byteLength;
    const etag = whole.headers.get('etag')!;
    const made = await api(w.url, w.key, 'PATCH', `/v1/assets/${id}`, { access: 'public' });
    assert.equal(made.status, 200);
    try {
      const open = `${w.url}/v1/assets/${id}/image?w=48&format=png`;
      for (const url of [signed.url, open]) {
        const failed = await fetch(url, { headers: { 'if-match': '"another"' } });
        assert.equal(failed.status, 412, url);
        assert.equal(failed.headers.get('cache-control'), null, url);
        const beyond = await fetch(url, { headers: { range: `bytes=${size + 5}-` } });
        assert.equal(beyond.status, 416, url);
        assert.equal(beyond.headers.get('cache-control'), null, url);
        // A 304 is the rendering still: it says how to cache it.
        const same = await fetch(url, { headers: { 'if-none-match': etag } });
        assert.equal(same.status, 304, url);
        assert.match(same.headers.get('cache-control') ?? '', /^public, max-age=\d+, immutable$/, url);
      }
    } finally {
      await api(w.url, w.key, 'PATCH', `/v1/assets/${id}`, { access: 'private' });
    }
  });

  test('expires_in beyond a year is refused; another account’s asset cannot be signed', async () => {
    const long = await api(w.url, w.key, 'POST', `/v1/assets/${id}/image-url`, {
      w: 10,
      expires_in: 400 * 86400,
    });
    assert.equal(long.status, 400);
    assert.equal(long.body.error.message, 'body/expires_in must be <= 31536000');
    const tenant = await w.newAccount();
    const res = await api(w.url, tenant.key, 'POST', `/v1/assets/${id}/image-url`, { w: 10 });
    assert.equal(res.status, 404);
    const read = await get(`/v1/assets/${id}/image?w=10`, {}, tenant.key);
    assert.equal(read.status, 404);
  });

  test('without key or signature: 401 for a private asset; a public one is served with public caching', async () => {
    const res = await get(`/v1/assets/${id}/image?w=64`, {}, null);
    assert.equal(res.status, 401);
    assert.equal(res.json?.error.code, 'UNAUTHORIZED');
    const made = await api(w.url, w.key, 'PATCH', `/v1/assets/${id}`, { access: 'public' });
    assert.equal(made.status, 200);
    const open = await get(`/v1/assets/${id}/image?w=64&format=png`, {}, null);
    assert.equal(open.status, 200);
    assert.equal(open.headers.get('cache-control'), 'public, max-age=86400, immutable');
    assert.equal(open.headers.get('cross-origin-resource-policy'), 'cross-origin');
    await api(w.url, w.key, 'PATCH', `/v1/assets/${id}`, { access: 'private' });
    assert.equal((await get(`/v1/assets/${id}/image?w=64&format=png`, {}, null)).status, 401);
  });
});

/** A RIFF chunk: type, little-endian length, data, a pad byte after odd data. */
function riffChunk(type: string, data: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.write(type, 0, 'latin1');
  header.writeUInt32LE(data.length, 4);
  return Buffer.concat([header, data, Buffer.alloc(data.length % 2)]);
}

function uint24(value: number): Buffer {
  const bytes = Buffer.alloc(3);
  bytes.writeUIntLE(value, 0, 3);
  return bytes;
}

/**
 * An animated WebP of `frames` frames of 4 × 3: the first of `color`, the others black.
 * Written chunk by chunk, as a long animation is: an encoder would merge the identical frames.
 */
async function animatedWebp(frames: number, color: { r: number; g: number; b: number }): Promise<Buffer> {
  const frame = async (background: typeof color) => {
    const still = await sharp({ create: { width: 4, height: 3, channels: 3, background } })
      .webp({ lossless: true })
      .toBuffer();
    assert.equal(still.toString('latin1', 12, 16), 'VP8L', 'a simple lossless WebP');
    // x, y (in halves), width - 1, height - 1, duration (ms), flags; then the frame's image chunk.
    const header = Buffer.concat([uint24(0), uint24(0), uint24(3), uint24(2), uint24(40), Buffer.from([0])]);
    return riffChunk('ANMF', Buffer.concat([header, still.subarray(12)]));
  };
  const first = await frame(color);
  const other = await frame({ r: 0, g: 0, b: 0 });
  const body = Buffer.concat([
    Buffer.from('WEBP', 'latin1'),
    // Animation flag; canvas width - 1 and height - 1.
    riffChunk('VP8X', Buffer.concat([Buffer.from([0x02, 0, 0, 0]), uint24(3), uint24(2)])),
    riffChunk('ANIM', Buffer.alloc(6)),
    first,
    ...Array.from({ length: frames - 1 }, () => other),
  ]);
  const riff = Buffer.from('RIFF\0\0\0\0', 'latin1');
  riff.writeUInt32LE(body.length, 4);
  return Buffer.concat([riff, body]);
}

/** An animated GIF of `frames` 1 × 1 frames (a two-colour palette, every pixel index 0). */
function animatedGif(frames: number): Buffer {
  // LZW, minimum code size 2: clear (4), index 0, end (5), in 3-bit codes: 0x44 0x01.
  const frame = Buffer.from([0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0x02, 0x02, 0x44, 0x01, 0x00]);
  return Buffer.concat([
    Buffer.from('GIF89a', 'latin1'),
    // 1 × 1 screen, a global palette of 2 colours (random: each file is new content).
    Buffer.from([1, 0, 1, 0, 0x80, 0, 0]),
    randomBytes(6),
    ...Array.from({ length: frames }, () => frame),
    Buffer.from([0x3b]),
  ]);
}

describe('inputs that are not transformed', () => {
  async function refused(
    name: string,
    bytes: Buffer,
    type: string,
    status: number,
    code: string,
    drain = false,
  ) {
    const { id } = await upload(name, bytes, type);
    if (drain) await w.wharf.core.jobs.drain();
    const res = await get(`/v1/assets/${id}/image?w=64`);
    assert.equal(res.status, status, `${name}: ${res.bytes}`);
    assert.equal(res.json?.error.code, code, name);
    return res.json!.error;
  }

  test('a text file: 415 UNSUPPORTED_IMAGE, before and after processing', async () => {
    await refused(
      'notes.txt',
      Buffer.from(`hello ${randomBytes(4).toString('hex')}`),
      'text/plain',
      415,
      'UNSUPPORTED_IMAGE',
    );
    await refused(
      'notes2.txt',
      Buffer.from(`hello ${randomBytes(4).toString('hex')}`),
      'text/plain',
      415,
      'UNSUPPORTED_IMAGE',
      true,
    );
  });

  test('SVG is never rasterised: 415 UNSUPPORTED_IMAGE', async () => {
    const svg = Buffer.from(
      `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10"><image xlink:href="file:///etc/passwd"/><!-- ${randomBytes(4).toString('hex')} --></svg>`,
    );
    await refused('logo.svg', svg, 'image/svg+xml', 415, 'UNSUPPORTED_IMAGE');
  });

  test('HEIC: 415 UNSUPPORTED_IMAGE that says why', async () => {
    // An ISO-BMFF header with the heic brand: what an iPhone photo starts with.
    const ftyp = Buffer.alloc(32);
    ftyp.writeUInt32BE(24, 0);
    ftyp.write('ftypheic', 4, 'latin1');
    ftyp.write('mif1heic', 16, 'latin1');
    const heic = Buffer.concat([ftyp, randomBytes(512)]);
    const error = await refused('IMG_0001.HEIC', heic, 'image/heic', 415, 'UNSUPPORTED_IMAGE');
    assert.match(error.message, /HEIC/);
  });

  test('a truncated JPEG: 422 IMAGE_UNDECODABLE, never a 500', async () => {
    const whole = await photo(400, 300);
    await refused(
      'cut.jpg',
      whole.subarray(0, Math.floor(whole.length / 2)),
      'image/jpeg',
      422,
      'IMAGE_UNDECODABLE',
    );
    const garbage = Buffer.concat([whole.subarray(0, 200), randomBytes(2000)]);
    await refused('garbage.jpg', garbage, 'image/jpeg', 422, 'IMAGE_UNDECODABLE');
  });

  test('an animation of more frames than transforms take: 422 IMAGE_TOO_LARGE, found before the decoder reads them', async () => {
    // libwebp's header read costs the square of the frame count (4.8 MB of 100,000 frames
    // held a transform slot for 90 s, past every timeout): the frames are counted first.
    const color = { r: 200, g: 40, b: randomBytes(1)[0]! };
    const { id } = await upload('longest.webp', await animatedWebp(MAX_FRAMES, color), 'image/webp');
    // At the limit it renders, and only its first frame counts.
    const still = await image(id, 'format=png');
    const { data, info } = await sharp(still.bytes).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, info.pages ?? 1], [4, 3, 1]);
    assert.deepEqual([...data.subarray(0, 3)], [color.r, color.g, color.b]);

    const error = await refused(
      'too-long.webp',
      await animatedWebp(MAX_FRAMES + 1, color),
      'image/webp',
      422,
      'IMAGE_TOO_LARGE',
      true,
    );
    assert.equal(error.details.limit_frames, MAX_FRAMES);
    // Processing took its size from the VP8X chunk, and made no placeholder from it.
    const listed = await api(w.url, w.key, 'GET', '/v1/assets?prefix=too-long.webp');
    const analysis = listed.body.data[0].analysis;
    assert.deepEqual([analysis.width, analysis.height], [4, 3], JSON.stringify(analysis));
    assert.equal(analysis.placeholder, undefined);
    assert.equal(analysis.placeholder_error, 'IMAGE_TOO_LARGE');

    // GIF's decoder reads its frames in linear time, but the one limit holds for every format.
    const gif = await refused(
      'too-long.gif',
      animatedGif(MAX_FRAMES + 1),
      'image/gif',
      422,
      'IMAGE_TOO_LARGE',
    );
    assert.deepEqual(gif.details, { frames: MAX_FRAMES + 1, limit_frames: MAX_FRAMES });
  });

  test('a decompression bomb (a small PNG declaring 100000×100000) is refused from its header', async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } })
      .png()
      .toBuffer();
    const bomb = Buffer.from(png);
    bomb.writeUInt32BE(100_000, 16);
    bomb.writeUInt32BE(100_000, 20);
    const rss = process.memoryUsage().rss;
    // Before processing: the renderer reads the header and stops.
    const error = await refused('bomb.png', bomb, 'image/png', 422, 'IMAGE_TOO_LARGE');
    assert.equal(error.details.width, 100_000);
    // After processing (which records the declared size): refused before a byte is read.
    const bomb2 = Buffer.from(bomb);
    bomb2.writeUInt32BE(99_999, 16);
    await refused('bomb2.png', bomb2, 'image/png', 422, 'IMAGE_TOO_LARGE', true);
    // Decoding 10^10 pixels would take 30 GB; the process has not grown by even a fraction.
    const grown = process.memoryUsage().rss - rss;
    assert.ok(grown < 100 * 1024 * 1024, `RSS grew by ${grown} bytes`);
  });

  test('an image beyond sharp’s own pixel limit (17000×17000) gets its size, and is refused without a transform slot', async () => {
    const { id } = await upload('huge.png', declaredPng(17_000, 17_000), 'image/png');
    await w.wharf.core.jobs.drain();
    const asset = await api(w.url, w.key, 'GET', `/v1/assets/${id}`);
    assert.equal(asset.body.processing, 'done', JSON.stringify(asset.body));
    assert.equal(asset.body.analysis.width, 17_000, JSON.stringify(asset.body.analysis));
    assert.equal(asset.body.analysis.height, 17_000);
    // Refused from the recorded size: no request for a slot (nor a lock, nor a copy) first.
    const slots = w.wharf.core.images.slots;
    const acquire = slots.acquire;
    let asked = 0;
    slots.acquire = (accountId, queueAlways) => {
      if (!queueAlways) asked += 1;
      return acquire.call(slots, accountId, queueAlways);
    };
    try {
      const res = await get(`/v1/assets/${id}/image?w=64`);
      assert.equal(res.status, 422, res.bytes.toString());
      assert.equal(res.json?.error.code, 'IMAGE_TOO_LARGE');
      assert.equal(typeof res.json?.error.details.limit_pixels, 'number');
    } finally {
      slots.acquire = acquire;
    }
    assert.equal(asked, 0, 'no transform slot was asked for');
  });
});

/** A PNG of a few hundred bytes that declares `width` × `height` (its data holds one row). */
function declaredPng(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // 8 bits per sample, greyscale
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    // Random text: each file is new content.
    chunk('tEXt', Buffer.from(`Comment\0${randomBytes(8).toString('hex')}`, 'latin1')),
    chunk('IDAT', deflateSync(Buffer.alloc(width + 1))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

test('limits lowered after a rendering was made: the stored one is still served, a new one is refused', async () => {
  const id = (await upload('lowered.jpg', await photo(400, 300), 'image/jpeg')).id;
  const first = await image(id, 'w=64&format=webp');
  // Another node of the same deployment, started with limits the original is over.
  const lowered = await startWharf({
    sharing: w,
    env: { WHARF_IMAGE_MAX_INPUT: '1000', WHARF_IMAGE_MAX_PIXELS: '1000' },
  });
  try {
    const ask = (query: string) =>
      fetch(`${lowered.url}/v1/assets/${id}/image?${query}`, { headers: { 'x-api-key': w.key } });
    const stored = await ask('w=64&format=webp');
    assert.equal(stored.status, 200, await stored.clone().text());
    assert.deepEqual(Buffer.from(await stored.arrayBuffer()), first.bytes);
    const fresh = await ask('w=32&format=webp');
    assert.equal(fresh.status, 422);
    assert.equal(((await fresh.json()) as { error: { code: string } }).error.code, 'IMAGE_TOO_LARGE');
  } finally {
    await lowered.close();
  }
});

describe('limits (a server with small ones)', () => {
  let small: TestWharf;
  const logs = new LogCollector();
  before(async () => {
    small = await startWharf({
      logStream: logs.stream,
      env: {
        WHARF_IMAGE_MAX_INPUT: '60000',
        WHARF_IMAGE_MAX_PIXELS: '1000000',
        WHARF_IMAGE_CONCURRENCY: '1',
        WHARF_IMAGE_QUEUE: '1',
        WHARF_IMAGE_MAX_VARIANTS: '3',
      },
    });
  });
  after(async () => {
    await small?.close();
  });

  async function put(bytes: Buffer, name: string) {
    const res = await uploadRaw(small, small.key, name, bytes, { contentType: 'image/png' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body.asset.id as string;
  }
  async function ask(id: string, query: string) {
    const res = await fetch(`${small.url}/v1/assets/${id}/image?${query}`, {
      headers: { 'x-api-key': small.key },
    });
    const body = Buffer.from(await res.arrayBuffer());
    return {
      status: res.status,
      headers: res.headers,
      body,
      error: res.ok ? undefined : JSON.parse(body.toString()).error,
    };
  }

  test('an original over WHARF_IMAGE_MAX_INPUT bytes: 422 IMAGE_TOO_LARGE, nothing read into memory', async () => {
    const noisy = await sharp(randomBytes(200 * 200 * 3), { raw: { width: 200, height: 200, channels: 3 } })
      .png()
      .toBuffer();
    assert.ok(noisy.length > 60000);
    const res = await ask(await put(noisy, 'noisy.png'), 'w=64');
    assert.equal(res.status, 422);
    assert.equal(res.error.code, 'IMAGE_TOO_LARGE');
    assert.equal(res.error.details.limit_bytes, 60000);
  });

  test('more pixels than WHARF_IMAGE_MAX_PIXELS: 422 IMAGE_TOO_LARGE', async () => {
    const big = await sharp({ create: { width: 1100, height: 1000, channels: 3, background: '#333' } })
      .png()
      .toBuffer();
    const res = await ask(await put(big, 'big.png'), 'w=64');
    assert.equal(res.status, 422);
    assert.equal(res.error.code, 'IMAGE_TOO_LARGE');
    assert.equal(res.error.details.limit_pixels, 1_000_000);
  });

  test('past WHARF_IMAGE_MAX_VARIANTS new renderings are refused; stored ones are still served', async () => {
    const id = await put(
      await sharp({ create: { width: 300, height: 300, channels: 3, background: '#246' } })
        .png()
        .toBuffer(),
      'v.png',
    );
    for (const width of [32, 48, 64]) assert.equal((await ask(id, `w=${width}&format=png`)).status, 200);
    const fourth = await ask(id, 'w=80&format=png');
    assert.equal(fourth.status, 422);
    assert.equal(fourth.error.code, 'TOO_MANY_VARIANTS');
    assert.equal((await ask(id, 'w=48&format=png')).status, 200);
  });

  test("keyless requests make only the public share of a public asset's renderings; a key still makes the rest", async () => {
    const id = await put(
      await sharp({ create: { width: 120, height: 90, channels: 3, background: '#264' } })
        .png()
        .toBuffer(),
      'public-share.png',
    );
    const made = await api(small.url, small.key, 'PATCH', `/v1/assets/${id}`, { access: 'public' });
    assert.equal(made.status, 200, JSON.stringify(made.body));
    const keyless = async (query: string) => {
      const res = await fetch(`${small.url}/v1/assets/${id}/image?${query}`);
      const body = Buffer.from(await res.arrayBuffer());
      return { status: res.status, error: res.ok ? undefined : JSON.parse(body.toString()).error };
    };
    // WHARF_IMAGE_MAX_VARIANTS is 3 here: visitors may make half, rounded down (1), the owner
    // the other 2.
    const share = 1;
    const widths = [16, 32, 48, 64];
    for (const width of widths.slice(0, share)) {
      assert.equal((await keyless(`w=${width}&format=png`)).status, 200);
    }
    const refused = await keyless(`w=${widths[share]}&format=png`);
    assert.equal(refused.status, 422);
    assert.equal(refused.error.code, 'TOO_MANY_VARIANTS');
    assert.deepEqual(refused.error.details, { limit: share, scope: 'public' });
    // A key of another account is a visitor's: it gets the public share, no more.
    const stranger = await small.newAccount();
    const strangers = await fetch(`${small.url}/v1/assets/${id}/image?w=${widths[share]}&format=png`, {
      headers: { 'x-api-key': stranger.key },
    });
    assert.equal(strangers.status, 422);
    assert.equal(((await strangers.json()) as { error: { code: string } }).error.code, 'TOO_MANY_VARIANTS');
    const seen = await fetch(`${small.url}/v1/assets/${id}/image?w=${widths[0]}&format=png`, {
      headers: { 'x-api-key': stranger.key },
    });
    assert.equal(seen.status, 200);
    assert.match(seen.headers.get('cache-control') ?? '', /^public, /);
    await seen.arrayBuffer();
    // With a key the owner still renders up to the full limit, the size a visitor was refused too.
    assert.equal((await ask(id, `w=${widths[share]}&format=png`)).status, 200);
    assert.equal((await ask(id, `w=${widths[share + 1]}&format=png`)).status, 200);
    // Stored renderings are served without a key, whoever made them.
    assert.equal((await keyless(`w=${widths[0]}&format=png`)).status, 200);
    assert.equal((await keyless(`w=${widths[share]}&format=png`)).status, 200);
    const stored = await api(small.url, small.key, 'GET', `/v1/assets/${id}/derivatives`);
    assert.equal(stored.body.data.length, 3);
  });

  test('eager presets stop at WHARF_IMAGE_MAX_VARIANTS too: their job ends done, and a request is refused after', async () => {
    // Two eager presets in format auto: six renderings of every new image, for a limit of 3.
    for (const [name, width] of [
      ['eager-a', 32],
      ['eager-b', 48],
    ] as const) {
      const put = await api(small.url, small.key, 'PUT', `/v1/image-presets/${name}`, {
        w: width,
        format: 'auto',
        eager: true,
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
    }
    try {
      const id = await put(
        await sharp({ create: { width: 120, height: 90, channels: 3, background: '#2a6' } })
          .png()
          .toBuffer(),
        'eager-limit.png',
      );
      await small.wharf.core.jobs.drain();
      const stored = await api(small.url, small.key, 'GET', `/v1/assets/${id}/derivatives`);
      assert.equal(stored.body.data.length, 3, JSON.stringify(stored.body.data));
      const jobs = dbQuery<{ status: string }>(
        small,
        "select status from jobs where kind = 'derive-image' and payload like ?",
        `%${id}%`,
      );
      assert.deepEqual(
        jobs.map((j) => j.status),
        ['done', 'done'],
      );
      const more = await ask(id, 'w=80&format=png');
      assert.equal(more.status, 422);
      assert.equal(more.error.code, 'TOO_MANY_VARIANTS');
    } finally {
      for (const name of ['eager-a', 'eager-b'])
        await api(small.url, small.key, 'DELETE', `/v1/image-presets/${name}`);
    }
  });

  test('new renderings asked all at once stop at WHARF_IMAGE_MAX_VARIANTS too', async () => {
    // A queue long enough for all of them: the limit, not the queue, must refuse the rest.
    const roomy = await startWharf({ env: { WHARF_IMAGE_MAX_VARIANTS: '3', WHARF_IMAGE_QUEUE: '32' } });
    try {
      const png = await sharp({ create: { width: 300, height: 300, channels: 3, background: '#462' } })
        .png()
        .toBuffer();
      const id = (await uploadRaw(roomy, roomy.key, 'burst.png', png, { contentType: 'image/png' })).body
        .asset.id;
      const answers = await Promise.all(
        [32, 48, 64, 80, 96, 112, 128, 144].map((width) =>
          fetch(`${roomy.url}/v1/assets/${id}/image?w=${width}&format=png`, {
            headers: { 'x-api-key': roomy.key },
          }).then(async (res) => ({
            status: res.status,
            body: res.ok ? undefined : ((await res.json()) as { error: { code: string } }),
          })),
        ),
      );
      const statuses = answers.map((a) => a.status).join(',');
      assert.equal(answers.filter((a) => a.status === 200).length, 3, statuses);
      assert.ok(
        answers.every((a) => a.status === 200 || a.body?.error.code === 'TOO_MANY_VARIANTS'),
        statuses,
      );
      const stored = await api(roomy.url, roomy.key, 'GET', `/v1/assets/${id}/derivatives`);
      assert.equal(stored.body.data.length, 3);
    } finally {
      await roomy.close();
    }
  });

  test('a full queue answers 503 TRANSFORMS_BUSY with Retry-After; the stored ones still come', async () => {
    const id = await put(
      await sharp({ create: { width: 100, height: 100, channels: 3, background: '#642' } })
        .png()
        .toBuffer(),
      'q.png',
    );
    assert.equal((await ask(id, 'w=32&format=png')).status, 200);
    const slots = small.wharf.core.images.slots;
    // Hold the one slot and the one queue place, as two slow transforms would.
    const running = await slots.acquire('someone');
    const queued = slots.acquire('someone');
    try {
      const res = await ask(id, 'w=48&format=png');
      assert.equal(res.status, 503);
      assert.equal(res.error.code, 'TRANSFORMS_BUSY');
      assert.equal(res.headers.get('retry-after'), '2');
      // Load shedding as documented: a warning, not an error with a stack, for each refusal.
      const line = await logs.waitFor(
        (l) => l.reqId === res.headers.get('x-request-id') && l.level >= WARN,
        'of the refusal',
      );
      assert.equal(line.level, WARN, JSON.stringify(line));
      assert.equal((line.err as { stack?: string } | undefined)?.stack, undefined);
      // A stored rendering needs no slot.
      assert.equal((await ask(id, 'w=32&format=png')).status, 200);
    } finally {
      running();
      (await queued)();
    }
    assert.equal((await ask(id, 'w=48&format=png')).status, 200);
  });
});

/**
 * Holds the server's own store at the seal of the first write whose key `matches` (every byte
 * written, before it is recorded), as a slow fsync or upload would hold it, until `resume()`.
 */
function holdAtSeal(server: TestWharf, matches: (key: string) => boolean) {
  const blobs = (server.wharf.core.images as unknown as { blobs: BlobStore }).blobs;
  const write = blobs.write;
  let reached!: () => void;
  const sealing = new Promise<void>((resolve) => {
    reached = resolve;
  });
  let resume!: () => void;
  const resumed = new Promise<void>((resolve) => {
    resume = resolve;
  });
  blobs.write = (key, source, seal) =>
    write.call(blobs, key, source, async () => {
      if (matches(key)) {
        reached();
        await resumed;
      }
      return seal();
    });
  return { sealing, resume, restore: () => (blobs.write = write) };
}

describe('slots are for pixels', () => {
  test('a rendering being flushed to storage holds no slot: the next transform runs meanwhile', async () => {
    const small = await startWharf({ env: { WHARF_IMAGE_CONCURRENCY: '1', WHARF_IMAGE_QUEUE: '1' } });
    // The server's own store, held at its seal (every byte written, before it is recorded),
    // as a slow fsync or upload would hold it.
    const { sealing, resume, restore } = holdAtSeal(
      small,
      (key) => key.includes('/derivatives/') && key.includes('w32-'),
    );
    try {
      const res = await uploadRaw(
        small,
        small.key,
        'slots.png',
        await sharp({ create: { width: 100, height: 100, channels: 3, background: '#468' } })
          .png()
          .toBuffer(),
        { contentType: 'image/png' },
      );
      const id = res.body.asset.id as string;
      const ask = (query: string) =>
        fetch(`${small.url}/v1/assets/${id}/image?${query}`, { headers: { 'x-api-key': small.key } });
      const first = ask('w=32&format=png');
      await sealing;
      assert.deepEqual(small.wharf.core.images.slots.stats, { running: 0, queued: 0 });
      const second = await ask('w=48&format=png');
      assert.equal(second.status, 200, 'rendered while the first one is still being stored');
      resume();
      assert.equal((await first).status, 200);
    } finally {
      resume();
      restore();
      await small.close();
    }
  });
});

describe('a transform past WHARF_IMAGE_TIMEOUT', () => {
  test('AVIF, whose encoder cannot be stopped: 503 TRANSFORM_TIMEOUT at the deadline, its slot held until it ends, nothing of it kept', async () => {
    const logs = new LogCollector();
    const slow = await startWharf({
      logStream: logs.stream,
      env: { WHARF_IMAGE_TIMEOUT: '1', WHARF_IMAGE_CONCURRENCY: '1', WHARF_IMAGE_QUEUE: '1' },
    });
    try {
      // A flat 4096 × 4096 PNG decodes in a fraction of the second, where sharp's own timeout
      // watches; AV1 then compresses it at q=100 for several seconds, where nothing does.
      const flat = await sharp({
        create: { width: 4096, height: 4096, channels: 3, background: '#3366cc' },
      })
        .png()
        .toBuffer();
      const uploaded = await uploadRaw(slow, slow.key, 'flat.png', flat, { contentType: 'image/png' });
      assert.equal(uploaded.status, 201, JSON.stringify(uploaded.body));
      const id = uploaded.body.asset.id as string;
      const slots = slow.wharf.core.images.slots;
      const res = await fetch(`${slow.url}/v1/assets/${id}/image?format=avif&q=100`, {
        headers: { 'x-api-key': slow.key },
      });
      const answer = Buffer.from(await res.arrayBuffer());
      assert.equal(res.status, 503, `${res.headers.get('content-type')}, ${answer.length} bytes`);
      assert.equal((JSON.parse(answer.toString()) as ErrorBody).error.code, 'TRANSFORM_TIMEOUT');
      assert.equal(res.headers.get('retry-after'), '5');
      // A documented refusal, not a fault: a warning without a stack, never an error.
      const line = await logs.waitFor(
        (l) => l.reqId === res.headers.get('x-request-id') && l.level >= WARN,
        'of the timeout',
      );
      assert.equal(line.level, WARN, JSON.stringify(line));
      assert.equal(line.code, 'TRANSFORM_TIMEOUT');
      assert.equal((line.err as { stack?: string } | undefined)?.stack, undefined);
      // Answered while the encoder still runs: it keeps the one slot, so no other encode starts.
      assert.deepEqual(slots.stats, { running: 1, queued: 0 });
      await eventually(() => slots.stats.running === 0, 'the abandoned encode ended', {
        every: 100,
        tries: 1200,
      });
      // The late result was thrown away: no rendering, no object, no scratch file left.
      const listed = await api(slow.url, slow.key, 'GET', `/v1/assets/${id}/derivatives`);
      assert.deepEqual(listed.body.data, []);
      assert.deepEqual(
        (await storedKeys(slow)).filter((k) => k.includes(`derivatives/${id}/`)),
        [],
      );
      const scratch = await readdir(join(slow.dataDir, 'work'), { recursive: true, withFileTypes: true });
      assert.deepEqual(
        scratch.filter((entry) => entry.isFile()).map((entry) => entry.name),
        [],
      );
    } finally {
      await slow.close();
    }
  });
});

describe('the transform queue is shared between accounts', () => {
  test("one account's flood is refused past its share; another's request is queued and served in turn", async () => {
    // One slot, four queue places: an account may hold two of them.
    const server = await startWharf({ env: { WHARF_IMAGE_CONCURRENCY: '1', WHARF_IMAGE_QUEUE: '4' } });
    const blobs = (server.wharf.core.images as unknown as { blobs: BlobStore }).blobs;
    const write = blobs.write;
    try {
      const other = await server.newAccount();
      const png = (background: string) =>
        sharp({ create: { width: 100, height: 100, channels: 3, background } })
          .png()
          .toBuffer();
      const a = (
        await uploadRaw(server, server.key, 'a.png', await png('#864'), { contentType: 'image/png' })
      ).body.asset.id as string;
      const b = (await uploadRaw(server, other.key, 'b.png', await png('#468'), { contentType: 'image/png' }))
        .body.asset.id as string;
      // The order renderings start writing is the order their transforms got the slot.
      const started: string[] = [];
      blobs.write = (key, source, seal) => {
        const width = /\/derivatives\/[^/]+\/w(\d+)-/.exec(key)?.[1];
        if (width) started.push(`${key.includes(a) ? 'a' : 'b'}${width}`);
        return write.call(blobs, key, source, seal);
      };
      const ask = (id: string, key: string, query: string) =>
        fetch(`${server.url}/v1/assets/${id}/image?${query}`, { headers: { 'x-api-key': key } }).then(
          async (res) => ({ status: res.status, headers: res.headers, body: await res.text() }),
        );
      const slots = server.wharf.core.images.slots;
      const until = async (done: () => boolean) => {
        for (
          const end = Date.now() + 10_000;
          !done();
          await new Promise((resolve) => setTimeout(resolve, 5))
        ) {
          if (Date.now() > end) throw new Error('the requests did not queue');
        }
      };
      const queued = (n: number) => until(() => slots.stats.queued >= n);
      // Hold the slot, as a long transform would, while the requests queue behind it.
      const holder = await slots.acquire('someone-else');
      let held = true;
      try {
        const a32 = ask(a, server.key, 'w=32&format=png');
        await queued(1);
        const a48 = ask(a, server.key, 'w=48&format=png');
        await queued(2);
        const b64 = ask(b, other.key, 'w=64&format=png');
        await queued(3);
        // A holds its share: refused at once, though the queue has a place left.
        const a80 = ask(a, server.key, 'w=80&format=png');
        let answered = false;
        void a80.then(() => {
          answered = true;
        });
        // Refused (its answer comes) or, without a share per account, queued behind the slot.
        await until(() => answered || slots.stats.queued >= 4);
        holder();
        held = false;
        const refused = await a80;
        assert.equal(refused.status, 503, 'queued and rendered beyond its share');
        assert.equal(JSON.parse(refused.body).error.code, 'TRANSFORMS_BUSY');
        assert.equal(refused.headers.get('retry-after'), '2');
        for (const res of await Promise.all([a32, a48, b64])) assert.equal(res.status, 200, res.body);
        // B's one request came before A's second.
        assert.deepEqual(started, ['a32', 'b64', 'a48']);
        assert.deepEqual(slots.stats, { running: 0, queued: 0 });
      } finally {
        if (held) holder();
      }
    } finally {
      blobs.write = write;
      await server.close();
    }
  });
});

describe('a request whose client leaves while it waits for a transform slot', () => {
  test('gives up its queue place, and its rendering is not made; one another request still waits for is', async () => {
    // One slot, four queue places: an account may hold two of them.
    const logs = new LogCollector();
    const server = await startWharf({
      logStream: logs.stream,
      env: { WHARF_IMAGE_CONCURRENCY: '1', WHARF_IMAGE_QUEUE: '4' },
    });
    const images = server.wharf.core.images;
    const slots = images.slots;
    // Hold the slot, as a long transform would, while the requests queue behind it.
    let holder: (() => void) | undefined = await slots.acquire('someone-else');
    try {
      const uploaded = await uploadRaw(
        server,
        server.key,
        'left.png',
        await sharp({ create: { width: 100, height: 100, channels: 3, background: '#486' } })
          .png()
          .toBuffer(),
        { contentType: 'image/png' },
      );
      const id = uploaded.body.asset.id as string;
      const ask = (query: string, signal?: AbortSignal) =>
        fetch(`${server.url}/v1/assets/${id}/image?${query}`, {
          headers: { 'x-api-key': server.key },
          ...(signal && { signal }),
        }).then(
          async (res) => ({ status: res.status, body: await res.text() }),
          (err: unknown) => ({ status: 0, body: String(err) }),
        );
      const queued = (n: number, what: string) =>
        eventually(() => slots.stats.queued === n, what, { every: 5, tries: 2000 });
      const rendered = images.rendered;

      // The account's whole share of the queue, both clients then gone.
      const left = [new AbortController(), new AbortController()];
      const gone = [ask('w=32&format=png', left[0]!.signal)];
      await queued(1, 'the first request queued');
      gone.push(ask('w=48&format=png', left[1]!.signal));
      await queued(2, 'the second request queued');
      for (const controller of left) controller.abort();
      await Promise.all(gone);
      await queued(0, 'the requests whose clients left gave up their queue places');
      // Routine: logged at info, never as a failure.
      await logs.waitFor(
        (l) => l.msg === 'client closed the connection before the answer',
        'of a client that left',
      );

      // Two requests for one new rendering share it: the first one's client leaving does not
      // give it up while the second still waits.
      const leaving = new AbortController();
      const shared = ask('w=64&format=png', leaving.signal);
      await queued(1, 'the shared rendering queued');
      const staying = ask('w=64&format=png');
      leaving.abort();
      await shared;
      // A third, left too: once its place is given up, the first's leaving has been seen.
      const third = new AbortController();
      const thirdGone = ask('w=80&format=png', third.signal);
      await queued(2, 'the third request queued');
      third.abort();
      await thirdGone;
      await queued(1, 'the third request gave up its place; the shared one kept its own');

      // The queue is free: the account's next request is queued (not refused) and served.
      const next = ask('w=96&format=png');
      await queued(2, 'the next request queued');
      holder();
      holder = undefined;
      const [stayed, served] = await Promise.all([staying, next]);
      assert.equal(stayed.status, 200, stayed.body);
      assert.equal(served.status, 200, served.body);
      assert.deepEqual(slots.stats, { running: 0, queued: 0 });

      // Only the renderings someone waited for were made.
      assert.equal(images.rendered - rendered, 2);
      const listed = await api(server.url, server.key, 'GET', `/v1/assets/${id}/derivatives`);
      assert.deepEqual(
        (listed.body.data as Array<{ params: string }>).map((d) => /^w(\d+)-/.exec(d.params)?.[1]).sort(),
        ['64', '96'],
        JSON.stringify(listed.body.data),
      );
      assert.deepEqual(
        logs.lines.filter((l) => l.level >= 50),
        [],
        'no client that left is logged as an error',
      );
    } finally {
      holder?.();
      await server.close();
    }
  });

  test('a wait for a slot ends after WHARF_IMAGE_TIMEOUT with 503 TRANSFORMS_BUSY and Retry-After', async () => {
    const server = await startWharf({
      env: { WHARF_IMAGE_CONCURRENCY: '1', WHARF_IMAGE_QUEUE: '2', WHARF_IMAGE_TIMEOUT: '1' },
    });
    const slots = server.wharf.core.images.slots;
    let holder: (() => void) | undefined = await slots.acquire('someone-else');
    try {
      const uploaded = await uploadRaw(
        server,
        server.key,
        'waits.png',
        await sharp({ create: { width: 100, height: 100, channels: 3, background: '#684' } })
          .png()
          .toBuffer(),
        { contentType: 'image/png' },
      );
      const id = uploaded.body.asset.id as string;
      const ask = () =>
        fetch(`${server.url}/v1/assets/${id}/image?w=32&format=png`, {
          headers: { 'x-api-key': server.key },
        });
      // The slot stays held: without a bound, the request would wait for as long.
      const res = await Promise.race([ask(), sleep(20_000, undefined, { ref: false })]);
      assert.ok(res, 'answered while the slot was still held');
      assert.equal(res.status, 503, await res.clone().text());
      assert.equal(((await res.json()) as ErrorBody).error.code, 'TRANSFORMS_BUSY');
      assert.equal(res.headers.get('retry-after'), '2');
      assert.deepEqual(slots.stats, { running: 1, queued: 0 });
      holder();
      holder = undefined;
      assert.equal((await ask()).status, 200);
    } finally {
      holder?.();
      await server.close();
    }
  });
});

describe('an asset deleted while a rendering of it is being stored', () => {
  test('the rendering answers 404, the deletion 204, and nothing is left under the asset', async () => {
    const { sealing, resume, restore } = holdAtSeal(
      w,
      (key) => key.includes('/derivatives/') && key.includes('w48-') && key.endsWith('.png'),
    );
    try {
      const { id } = await upload('deleted-while-rendered.jpg', await photo(300, 200), 'image/jpeg');
      // One rendering stored first: its directory exists, and this process knows it does.
      await image(id, 'w=24&format=png');
      // Widths are rounded up to the allowed ones: this is a 48 px rendering.
      const held = fetch(`${w.url}/v1/assets/${id}/image?w=40&format=png`, {
        headers: { 'x-api-key': w.key },
      });
      await sealing;
      assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${id}`)).status, 204);
      resume();
      const res = await held;
      assert.equal(res.status, 404, await res.text());
      assert.deepEqual(
        (await storedKeys(w)).filter((k) => k.includes(`derivatives/${id}/`)),
        [],
      );
      if (!onS3(w)) {
        // Nor its directories, which the rendering's write made again after the deletion (a
        // bucket has none to leave).
        const left = (await readdir(join(w.dataDir, 'blobs'), { recursive: true })).filter((p) =>
          p.includes(id),
        );
        assert.deepEqual(left, []);
      }
    } finally {
      resume();
      restore();
    }
  });
});

describe('two nodes, one rendering', () => {
  test('concurrent first requests on two nodes store the derivative once', async () => {
    const second = await startWharf({ sharing: w });
    try {
      const { id } = await upload('shared.jpg', await photo(1200, 900), 'image/jpeg');
      const rendered = () => w.wharf.core.images.rendered + second.wharf.core.images.rendered;
      const before = rendered();
      const urls = [w.url, second.url];
      const responses = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          fetch(`${urls[i % 2]}/v1/assets/${id}/image?w=640&format=webp`, {
            headers: { 'x-api-key': w.key },
          }),
        ),
      );
      const etags = new Set<string | null>();
      for (const res of responses) {
        assert.equal(res.status, 200);
        etags.add(res.headers.get('etag'));
        await res.arrayBuffer();
      }
      assert.equal(etags.size, 1);
      assert.equal(rendered() - before, 1, 'rendered exactly once across both nodes');
      assert.equal((await derivatives(id)).length, 1);
      const objects = (await storedKeys(w)).filter((k) => k.includes(`derivatives/${id}/`));
      assert.equal(objects.length, 1, objects.join(' '));
    } finally {
      await second.close();
    }
  });
});

describe('derivatives go with their asset', () => {
  test('deleting the asset frees every stored rendering', async () => {
    const { id } = await upload('doomed.jpg', await photo(200, 200), 'image/jpeg');
    await image(id, 'w=64&format=webp');
    await image(id, 'w=128&format=png');
    const under = async () => (await storedKeys(w)).filter((k) => k.includes(`derivatives/${id}/`));
    assert.equal((await under()).length, 2);
    const del = await api(w.url, w.key, 'DELETE', `/v1/assets/${id}`);
    assert.equal(del.status, 204);
    assert.deepEqual(await under(), []);
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${id}/derivatives`)).status, 404);
    assert.equal((await get(`/v1/assets/${id}/image?w=64&format=webp`)).status, 404);
  });

  test('a node that has served a rendering refuses it once another node deleted the asset', async () => {
    // Each node remembers the renderings it has served; the asset's own lookup must still
    // decide, on every request and every node, whether there is anything to serve.
    const second = await startWharf({ sharing: w });
    try {
      const { id } = await upload('remembered.jpg', await photo(300, 200), 'image/jpeg');
      const signed = await api(w.url, w.key, 'POST', `/v1/assets/${id}/image-url`, { w: 64, format: 'webp' });
      assert.equal(signed.status, 200, JSON.stringify(signed.body));
      const onSecond = new URL(signed.body.url);
      onSecond.host = new URL(second.url).host;
      for (let i = 0; i < 2; i += 1) {
        assert.equal(
          (
            await fetch(`${second.url}/v1/assets/${id}/image?w=64&format=webp`, {
              headers: { 'x-api-key': w.key },
            })
          ).status,
          200,
        );
        assert.equal((await fetch(onSecond)).status, 200);
      }
      assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${id}`)).status, 204);
      const keyed = await fetch(`${second.url}/v1/assets/${id}/image?w=64&format=webp`, {
        headers: { 'x-api-key': w.key },
      });
      assert.equal(keyed.status, 404);
      assert.equal((await keyed.json()).error.code, 'NOT_FOUND');
      assert.equal((await fetch(onSecond)).status, 404);
    } finally {
      await second.close();
    }
  });
});

describe('presets', () => {
  let id: string;
  before(async () => {
    id = (await upload('preset.jpg', await photo(500, 400), 'image/jpeg')).id;
  });

  test('CRUD: admin only for changes, parameters stored canonical', async () => {
    const member = await w.newKey('member');
    const denied = await api(w.url, member.key, 'PUT', '/v1/image-presets/thumb', { w: 100 });
    assert.equal(denied.status, 403);
    const put = await api(w.url, w.key, 'PUT', '/v1/image-presets/thumb', {
      w: 100,
      h: 100,
      fit: 'cover',
      q: 73,
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.deepEqual(put.body.params, { w: 112, h: 112, fit: 'cover', format: 'auto', q: 75 });
    assert.equal(put.body.eager, false);
    const listed = await api(w.url, member.key, 'GET', '/v1/image-presets');
    assert.deepEqual(
      listed.body.data.map((p: { name: string }) => p.name),
      ['thumb'],
    );
    const replaced = await api(w.url, w.key, 'PUT', '/v1/image-presets/thumb', {
      w: 96,
      h: 96,
      fit: 'cover',
    });
    assert.deepEqual(replaced.body.params, { w: 96, h: 96, fit: 'cover', format: 'auto' });
    assert.equal(replaced.body.created_at, put.body.created_at);
    const bad = await api(w.url, w.key, 'PUT', '/v1/image-presets/Bad%20Name', { w: 10 });
    assert.equal(bad.status, 400);
    // Presets are per account.
    const tenant = await w.newAccount();
    assert.equal((await api(w.url, tenant.key, 'GET', '/v1/image-presets/thumb')).status, 404);
  });

  test('?preset= renders exactly what its parameters render; dpr may be added', async () => {
    const viaPreset = await image(id, 'preset=thumb', { accept: 'image/webp' });
    const viaParams = await image(id, 'w=96&h=96&fit=cover', { accept: 'image/webp' });
    assert.equal(viaPreset.headers.get('etag'), viaParams.headers.get('etag'));
    const m = await meta((await image(id, 'preset=thumb&dpr=2')).bytes);
    assert.deepEqual([m.width, m.height], [192, 192]);
    const unknown = await get(`/v1/assets/${id}/image?preset=nothere`);
    assert.equal(unknown.status, 404);
    const signed = await api(w.url, w.key, 'POST', `/v1/assets/${id}/image-url`, { preset: 'thumb' });
    assert.equal(signed.status, 200);
    assert.deepEqual(signed.body.params, { w: 96, h: 96, fit: 'cover', format: 'auto' });
    assert.match(signed.body.url, /\?w=96&h=96&fit=cover&format=auto&expires=/);
    const viaSigned = await fetch(signed.body.url, { headers: { accept: 'image/webp' } });
    assert.equal(viaSigned.status, 200);
    assert.equal(viaSigned.headers.get('etag'), viaPreset.headers.get('etag'));
  });

  test('a URL signed from a preset serves what was signed, immutable, after the preset is replaced; ?preset= itself revalidates', async () => {
    const first = await api(w.url, w.key, 'PUT', '/v1/image-presets/card-v', { w: 100, format: 'webp' });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const signed = await api(w.url, w.key, 'POST', `/v1/assets/${id}/image-url`, {
      preset: 'card-v',
      dpr: 2,
      expires_in: 3600,
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    // The preset's parameters (w 112), dpr applied, as any signed URL carries them: not its name.
    assert.deepEqual(signed.body.params, { w: 224, format: 'webp' });
    const url = new URL(signed.body.url);
    assert.equal(url.searchParams.get('preset'), null);
    assert.equal(url.searchParams.get('w'), '224');
    const before = await fetch(signed.body.url);
    assert.equal(before.status, 200);
    assert.match(before.headers.get('cache-control') ?? '', /^public, max-age=(3599|3600), immutable$/);
    const bytes = Buffer.from(await before.arrayBuffer());
    assert.equal((await meta(bytes)).format, 'webp');

    const replaced = await api(w.url, w.key, 'PUT', '/v1/image-presets/card-v', { w: 400, format: 'jpeg' });
    assert.equal(replaced.status, 200);
    const after = await fetch(signed.body.url);
    assert.equal(after.status, 200);
    assert.match(after.headers.get('cache-control') ?? '', /immutable/);
    assert.deepEqual(Buffer.from(await after.arrayBuffer()), bytes, 'the bytes that were signed');

    // ?preset= follows the preset: every cache asks again, and a 304 answers while it holds.
    const keyed = await image(id, 'preset=card-v');
    assert.equal(keyed.headers.get('content-type'), 'image/jpeg');
    assert.equal(keyed.headers.get('cache-control'), 'private, no-cache');
    const unchanged = await get(`/v1/assets/${id}/image?preset=card-v`, {
      'if-none-match': keyed.headers.get('etag')!,
    });
    assert.equal(unchanged.status, 304);
    assert.equal(unchanged.headers.get('cache-control'), 'private, no-cache');
    assert.equal((await api(w.url, w.key, 'PATCH', `/v1/assets/${id}`, { access: 'public' })).status, 200);
    try {
      const open = await get(`/v1/assets/${id}/image?preset=card-v`, {}, null);
      assert.equal(open.status, 200);
      assert.equal(open.headers.get('cache-control'), 'public, no-cache');
      // Parameters still name one rendering for good.
      const plain = await get(`/v1/assets/${id}/image?w=400&format=jpeg`, {}, null);
      assert.equal(plain.headers.get('cache-control'), 'public, max-age=86400, immutable');
    } finally {
      await api(w.url, w.key, 'PATCH', `/v1/assets/${id}`, { access: 'private' });
    }

    // A URL signed with the preset's name, as they were before: it still works, and revalidates.
    const expires = Math.floor(w.clock.now() / 1000) + 600;
    const subject = ImageService.subject({ kind: 'preset', name: 'card-v' });
    const signature = createHmac('sha256', deriveKey(serverSecret(w), 'transforms'))
      .update(`image\n${id}\n${subject}\n${expires}`)
      .digest('base64url');
    const old = await get(
      `/v1/assets/${id}/image?${subject}&expires=${expires}&signature=${signature}`,
      {},
      null,
    );
    assert.equal(old.status, 200, old.bytes.toString().slice(0, 300));
    assert.equal(old.headers.get('content-type'), 'image/jpeg');
    assert.equal(old.headers.get('cache-control'), 'public, no-cache');
    assert.equal((await api(w.url, w.key, 'DELETE', '/v1/image-presets/card-v')).status, 204);
  });

  test('an eager preset is rendered by a job when an image arrives, in every format auto may pick', async () => {
    const put = await api(w.url, w.key, 'PUT', '/v1/image-presets/card', {
      w: 240,
      format: 'auto',
      eager: true,
    });
    assert.equal(put.status, 200);
    const { id: fresh } = await upload('eager.jpg', await photo(600, 400), 'image/jpeg');
    assert.deepEqual(await derivatives(fresh), []);
    await w.wharf.core.jobs.drain();
    const made = (await derivatives(fresh)).map((d) => d.params).sort();
    assert.deepEqual(made, ['w240-q50-avif', 'w240-q80-jpeg', 'w240-q80-webp']);
    const before = w.wharf.core.images.rendered;
    const signed = await api(w.url, w.key, 'POST', `/v1/assets/${fresh}/image-url`, { preset: 'card' });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    for (const accept of ['image/avif', 'image/webp', '*/*']) {
      await image(fresh, 'preset=card', { accept });
      // A URL signed from the preset carries its parameters: the same renderings.
      assert.equal((await fetch(signed.body.url, { headers: { accept } })).status, 200, accept);
    }
    assert.equal(w.wharf.core.images.rendered, before, 'every request was served from storage');
    // A text file queues nothing.
    const txt = await upload('eager.txt', Buffer.from(randomBytes(8).toString('hex')), 'text/plain');
    await w.wharf.core.jobs.drain();
    assert.deepEqual(await derivatives(txt.id), []);
    assert.equal((await api(w.url, w.key, 'DELETE', '/v1/image-presets/card')).status, 204);
    assert.equal((await api(w.url, w.key, 'DELETE', '/v1/image-presets/card')).status, 404);
  });

  test('an eager preset of an image that cannot be rendered: the job ends done, not retried and given up', async () => {
    const put = await api(w.url, w.key, 'PUT', '/v1/image-presets/eager-thumb', {
      w: 40,
      format: 'webp',
      eager: true,
    });
    assert.equal(put.status, 200);
    // A PNG whose header promises pixels its data does not hold.
    const png = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#00aa00' } })
      .png()
      .toBuffer();
    const truncated = png.subarray(0, 60);
    const { id } = await upload('broken-eager.png', truncated, 'image/png');
    await w.wharf.core.jobs.drain();
    const jobs = dbQuery<{ status: string; attempts: number }>(
      w,
      "select status, attempts from jobs where kind = 'derive-image' and payload like ?",
      `%${id}%`,
    );
    assert.equal(jobs.length, 1, JSON.stringify(jobs));
    assert.equal(jobs[0]!.status, 'done', JSON.stringify(jobs));
    assert.equal(Number(jobs[0]!.attempts), 1);
    assert.equal((await api(w.url, w.key, 'DELETE', '/v1/image-presets/eager-thumb')).status, 204);
  });
});
