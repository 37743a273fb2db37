import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { storesOnS3 } from '../helpers/deployment.js';
import { api, md5Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// Wharf behind a reverse proxy that ends TLS (nginx in front, as docs/deployment.md shows):
// clients reach https://wharf.test:22443, the proxy passes their Host through and speaks plain
// HTTP to Wharf's loopback port. The test plays the proxy: it connects to that port itself,
// with the Host the client used.

const PUBLIC_URL = 'https://wharf.test:22443';
const PUBLIC_HOST = new URL(PUBLIC_URL).host;

let w: TestWharf;
/** Where the proxy connects: Wharf's own plain-HTTP address, not its public URL. */
let origin: string;
before(async () => {
  w = await startWharf({ env: { WHARF_PUBLIC_URL: PUBLIC_URL } });
  origin = `http://127.0.0.1:${(w.wharf.app.server.address() as AddressInfo).port}`;
});
after(async () => {
  await w?.close();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A request for `url` (under the public URL) as the proxy forwards it: plain HTTP, Host kept. */
function forwarded(
  url: string,
  method: string,
  headers: Record<string, string> = {},
  body?: Uint8Array,
): Promise<Answer> {
  const target = new URL(url);
  assert.equal(target.origin, PUBLIC_URL, 'a URL of the public site');
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${origin}${target.pathname}${target.search}`,
      {
        method,
        headers: {
          ...headers,
          host: PUBLIC_HOST,
          ...(body && { 'content-length': String(body.byteLength) }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('the storage endpoint’s Location behind a proxy', () => {
  const skip = storesOnS3 && "Wharf's own /s3 endpoint; this server stores on S3, which names its own URLs";

  /** One S3 request signed by POST /v1/s3/sign (as Uppy asks for it), sent through the proxy. */
  async function s3(request: Record<string, unknown>, body?: Uint8Array) {
    const signed = await api(origin, w.key, 'POST', '/v1/s3/sign', request);
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const res = await forwarded(signed.body.url, signed.body.method, signed.body.headers, body);
    return { signed: signed.body, res };
  }

  test('CompleteMultipartUpload’s <Location> is under WHARF_PUBLIC_URL, not the request’s scheme', {
    skip,
  }, async () => {
    const created = await s3({ method: 'POST', key: 'video.bin', contentType: 'application/octet-stream' });
    assert.equal(created.res.status, 200, created.res.body);
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created.res.body)?.[1];
    assert.ok(uploadId, created.res.body);
    const { key } = created.signed;
    const bytes = randomBytes(1000);
    const part = await s3({ method: 'PUT', key, uploadId, partNumber: 1 }, bytes);
    assert.equal(part.res.status, 200, part.res.body);
    assert.equal(part.res.headers.etag, `"${md5Hex(bytes)}"`);
    const completion = Buffer.from(
      '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>' +
        `<ETag>"${md5Hex(bytes)}"</ETag></Part></CompleteMultipartUpload>`,
    );
    const done = await s3({ method: 'POST', key, uploadId }, completion);
    assert.equal(done.res.status, 200, done.res.body);
    const location = /<Location>([^<]+)<\/Location>/.exec(done.res.body)?.[1];
    assert.equal(location, `${PUBLIC_URL}/s3/wharf/${key}`);
  });

  test('a POST form’s Location is under WHARF_PUBLIC_URL, not the request’s scheme', { skip }, async () => {
    const principal = await w.wharf.core.keys.authenticate(w.key);
    const { upload, post } = await w.wharf.core.uploads.createPost(principal, { name: 'photo.jpg' });
    assert.equal(post.url, `${PUBLIC_URL}/s3/wharf/`);
    const form = new FormData();
    for (const [name, value] of Object.entries(post.fields)) form.append(name, value);
    form.append('file', new Blob([new Uint8Array(randomBytes(500))], { type: 'image/jpeg' }), 'photo.jpg');
    const encoded = new Request(post.url, { method: 'POST', body: form });
    const body = new Uint8Array(await encoded.arrayBuffer());
    const res = await forwarded(
      post.url,
      'POST',
      { 'content-type': encoded.headers.get('content-type')! },
      body,
    );
    assert.equal(res.status, 204, res.body);
    assert.equal(res.headers.location, `${PUBLIC_URL}/s3/wharf/${upload.storageKey}`);
  });
});
