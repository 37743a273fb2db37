import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { createAsset, declare, putPresigned } from '../helpers/assets.js';
import { storesOnS3 } from '../helpers/deployment.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// CORS as a browser meets it, sent by hand over real HTTP: fetch in Node is not bound by
// CORS, so every Origin and preflight header here is exactly what a browser would send.

const PAGE = 'http://app.example.test:5173';
const OTHER_PAGE = 'http://other.example.test';
const STRANGER = 'http://evil.example.test';

const TUS_EXPOSED = [
  'upload-offset',
  'upload-length',
  'upload-metadata',
  'upload-expires',
  'tus-resumable',
  'tus-version',
  'tus-extension',
  'tus-max-size',
  'wharf-asset-id',
];

/** What a page resuming over Resumable Uploads for HTTP reads (each interop version's). */
const RUFH_EXPOSED = [
  'upload-complete',
  'upload-incomplete',
  'upload-offset',
  'upload-limit',
  'upload-draft-interop-version',
  'accept-patch',
  'repr-digest',
];

function list(value: string | null): string[] {
  return (value ?? '')
    .split(',')
    .map((item) => item.trim().toLowerCase())
    .filter((item) => item !== '');
}

function corsHeaders(res: Response): string[] {
  return [...res.headers.keys()].filter((name) => name.startsWith('access-control-'));
}

function preflight(
  w: TestWharf,
  path: string,
  origin: string,
  method: string,
  headers: string[],
): Promise<Response> {
  return fetch(w.url + path, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': method,
      ...(headers.length > 0 && { 'access-control-request-headers': headers.join(',') }),
    },
  });
}

function get(w: TestWharf, path: string, headers: Record<string, string>): Promise<Response> {
  return fetch(w.url + path, { headers });
}

describe('CORS with listed origins', () => {
  let w: TestWharf;
  before(async () => {
    // The other one as an operator may write it: browsers send it lower-case, with no slash.
    w = await startWharf({ env: { WHARF_CORS_ORIGINS: ` ${PAGE} ,http://Other.Example.test/` } });
  });
  after(async () => {
    await w?.close();
  });

  test('an allowed origin is named back, may read ETag, Location, the tus and RUFH headers', async () => {
    for (const origin of [PAGE, OTHER_PAGE]) {
      const res = await get(w, '/v1/assets', { origin, authorization: `Bearer ${w.key}` });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('access-control-allow-origin'), origin);
      assert.ok(list(res.headers.get('vary')).includes('origin'), 'caches keep answers per origin');
      const exposed = list(res.headers.get('access-control-expose-headers'));
      for (const name of ['etag', 'location', 'x-request-id', ...TUS_EXPOSED, ...RUFH_EXPOSED]) {
        assert.ok(exposed.includes(name), `${name} is exposed: ${exposed}`);
      }
      assert.equal(res.headers.get('access-control-allow-credentials'), null, 'no cookies are involved');
    }
  });

  test('a ranged download exposes where its slice sits, that ranges work, the file’s name; Retry-After too', async () => {
    const asset = await createAsset(w, w.key, 'report 1.txt', '0123456789abcdefghij', 'text/plain');
    const res = await get(w, `/v1/assets/${asset.id}/content`, {
      origin: PAGE,
      authorization: `Bearer ${w.key}`,
      range: 'bytes=0-9',
    });
    assert.equal(res.status, 206);
    assert.equal(await res.text(), '0123456789');
    assert.equal(res.headers.get('access-control-allow-origin'), PAGE);
    assert.equal(res.headers.get('content-range'), 'bytes 0-9/20');
    assert.equal(res.headers.get('accept-ranges'), 'bytes');
    assert.match(res.headers.get('content-disposition') ?? '', /filename="report 1\.txt"/);
    const exposed = list(res.headers.get('access-control-expose-headers'));
    // Without them a page sees the 206 but neither the total size nor the name, and a loader
    // such as pdf.js does not use ranges at all; Retry-After is what 429 and 503 say to wait.
    for (const name of [
      'content-range',
      'accept-ranges',
      'content-disposition',
      'etag',
      'repr-digest',
      'retry-after',
    ]) {
      assert.ok(exposed.includes(name), `${name} is exposed: ${exposed}`);
    }
  });

  test('a rendering negotiated by Accept varies on Origin too, for the origin it names', async () => {
    const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#246' } })
      .png()
      .toBuffer();
    const asset = await createAsset(w, w.key, 'cors.png', png, 'image/png');
    for (const headers of [{ origin: PAGE }, {}] as Record<string, string>[]) {
      const res = await get(w, `/v1/assets/${asset.id}/image?w=20&format=auto`, {
        ...headers,
        authorization: `Bearer ${w.key}`,
        accept: 'image/webp,*/*',
      });
      await res.arrayBuffer();
      assert.equal(res.status, 200);
      const vary = list(res.headers.get('vary'));
      assert.ok(vary.includes('accept'), `${vary}`);
      assert.ok(vary.includes('origin'), `caches keep answers per origin: ${vary}`);
    }
  });

  test('an error answer carries the headers too, so the page can read why', async () => {
    const res = await get(w, '/v1/assets', { origin: PAGE, authorization: 'Bearer wrong-key-wrong-key' });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('access-control-allow-origin'), PAGE);
  });

  test('a preflight of the API is answered before authentication, which it never carries', async () => {
    const res = await preflight(w, '/v1/uploads', PAGE, 'POST', ['authorization', 'content-type']);
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), PAGE);
    const methods = list(res.headers.get('access-control-allow-methods'));
    for (const method of ['get', 'head', 'post', 'put', 'patch', 'delete']) {
      assert.ok(methods.includes(method), `${method} allowed: ${methods}`);
    }
    assert.deepEqual(list(res.headers.get('access-control-allow-headers')), [
      'authorization',
      'content-type',
    ]);
    const maxAge = Number(res.headers.get('access-control-max-age'));
    assert.ok(maxAge >= 60 && maxAge <= 7200, `preflights are cached a while: ${maxAge}`);
    assert.equal(await res.text(), '');
  });

  test('a preflight of a tus request may send the tus headers', async () => {
    const tus = [
      'tus-resumable',
      'upload-length',
      'upload-metadata',
      'upload-offset',
      'upload-checksum',
      'upload-defer-length',
      'upload-concat',
      'x-http-method-override',
      'authorization',
    ];
    for (const method of ['POST', 'PATCH', 'HEAD', 'DELETE']) {
      const res = await preflight(w, '/v1/tus/', PAGE, method, tus);
      assert.equal(res.status, 204);
      assert.equal(res.headers.get('access-control-allow-origin'), PAGE);
      assert.deepEqual(list(res.headers.get('access-control-allow-headers')), tus);
    }
  });

  test('an OPTIONS that is not a preflight reaches its route: tus discovery, readable by the page', async () => {
    const res = await fetch(`${w.url}/v1/tus/`, { method: 'OPTIONS', headers: { origin: PAGE } });
    assert.equal(res.status, 204, await res.text());
    assert.equal(res.headers.get('access-control-allow-origin'), PAGE);
    assert.match(res.headers.get('tus-version') ?? '', /1\.0\.0/);
    assert.ok(list(res.headers.get('access-control-expose-headers')).includes('tus-extension'));
  });

  test('a preflight of a storage PUT may send the S3 headers a presigned URL signs', async () => {
    const headers = [
      'content-type',
      'content-md5',
      'x-amz-checksum-sha256',
      'if-none-match',
      'x-amz-meta-origin',
      'x-amz-date',
    ];
    for (const method of ['PUT', 'POST', 'GET', 'DELETE']) {
      const res = await preflight(w, '/s3/wharf/default/some-upload.bin?partNumber=1', PAGE, method, headers);
      assert.equal(res.status, 204);
      assert.equal(res.headers.get('access-control-allow-origin'), PAGE);
      assert.deepEqual(list(res.headers.get('access-control-allow-headers')), headers);
    }
  });

  test('an allowed page may send the headers its client adds (Rails’ X-Requested-With, any x-…)', async () => {
    // Rails' DirectUpload sends X-Requested-With with every blob it creates; a fixed list of
    // headers made its preflight fail, and the upload with it.
    const rails = ['accept', 'content-type', 'x-requested-with', 'x-api-key'];
    const res = await preflight(w, '/api/v1/upload/direct', PAGE, 'POST', rails);
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), PAGE);
    assert.deepEqual(list(res.headers.get('access-control-allow-headers')), rails);
    const other = await preflight(w, '/v1/assets', PAGE, 'POST', ['content-type', 'x-apps-own-header']);
    assert.deepEqual(list(other.headers.get('access-control-allow-headers')), [
      'content-type',
      'x-apps-own-header',
    ]);
  });

  test('a malformed header name in a preflight is not echoed back', async () => {
    const res = await preflight(w, '/v1/assets', PAGE, 'POST', ['content-type', 'bad header', 'x(y)']);
    assert.equal(res.status, 204);
    assert.deepEqual(list(res.headers.get('access-control-allow-headers')), ['content-type']);
  });

  test('another origin gets no CORS headers at all, and no preflight (X-Requested-With or not)', async () => {
    const res = await get(w, '/v1/assets', { origin: STRANGER, authorization: `Bearer ${w.key}` });
    assert.equal(res.status, 200, 'the server still answers; the browser withholds it from the page');
    assert.deepEqual(corsHeaders(res), []);
    for (const path of ['/v1/uploads', '/s3/wharf/default/x.bin', '/api/v1/upload/direct']) {
      const pre = await preflight(w, path, STRANGER, 'PUT', ['content-type', 'x-requested-with']);
      assert.equal(pre.status, 404, path);
      assert.deepEqual(corsHeaders(pre), [], path);
    }
    // A lookalike of an allowed origin is another origin.
    const lookalike = await preflight(w, '/v1/uploads', `${PAGE}.evil.test`, 'POST', []);
    assert.equal(lookalike.status, 404);
    assert.deepEqual(corsHeaders(lookalike), []);
  });

  test('a request without Origin (not from a page of another origin) gets none', async () => {
    const res = await get(w, '/healthz', {});
    assert.equal(res.status, 200);
    assert.deepEqual(corsHeaders(res), []);
  });

  test('a presigned PUT to the storage endpoint from a page exposes its ETag', {
    skip: storesOnS3 && 'this server stores on S3: the bucket answers presigned PUTs, not Wharf',
  }, async () => {
    const bytes = Buffer.from('bytes a page PUTs to a presigned URL\n');
    const intent = await declare(w, w.key, {
      name: 'page.txt',
      content_type: 'text/plain',
      size: bytes.length,
    });
    const res = await putPresigned(intent, bytes, { origin: PAGE });
    assert.equal(res.status, 200, await res.text());
    assert.equal(res.headers.get('access-control-allow-origin'), PAGE);
    assert.match(res.headers.get('etag') ?? '', /^"[0-9a-f]{32}"$/);
    assert.ok(list(res.headers.get('access-control-expose-headers')).includes('etag'));
  });
});

describe('CORS with any origin (*)', () => {
  let w: TestWharf;
  before(async () => {
    w = await startWharf({ env: { WHARF_CORS_ORIGINS: '*' } });
  });
  after(async () => {
    await w?.close();
  });

  test('every page may call, with the Authorization header named explicitly', async () => {
    const res = await get(w, '/v1/assets', { origin: STRANGER, authorization: `Bearer ${w.key}` });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.ok(list(res.headers.get('access-control-expose-headers')).includes('etag'));
    // `Access-Control-Allow-Headers: *` would not cover Authorization; the names are listed.
    const pre = await preflight(w, '/v1/uploads', STRANGER, 'POST', ['authorization', 'content-type']);
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    assert.deepEqual(list(pre.headers.get('access-control-allow-headers')), [
      'authorization',
      'content-type',
    ]);
  });
});

describe('CORS unset (the default)', () => {
  let w: TestWharf;
  before(async () => {
    w = await startWharf({ env: { WHARF_CORS_ORIGINS: '' } });
  });
  after(async () => {
    await w?.close();
  });

  test('same-origin only: no page of another origin gets headers or a preflight', async () => {
    const res = await get(w, '/v1/assets', { origin: PAGE, authorization: `Bearer ${w.key}` });
    assert.equal(res.status, 200);
    assert.deepEqual(corsHeaders(res), []);
    const pre = await preflight(w, '/v1/uploads', PAGE, 'POST', ['authorization']);
    assert.equal(pre.status, 404);
    assert.deepEqual(corsHeaders(pre), []);
  });
});
