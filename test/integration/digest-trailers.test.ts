import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { api, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * RFC 9530 lets a client that hashes as it streams send Content-Digest (and Repr-Digest) as a
 * trailer of its chunked body, announced by `Trailer`. Every flow that checks the header form
 * checks the trailer the same way, before the bytes are kept: sent by node:http's addTrailers,
 * a real chunked body with real trailer fields.
 */

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The JSON error's code, when the answer is one. */
  code: string | undefined;
}

/**
 * `body` sent chunked (in two chunks), then `trailers`; the Trailer header announces `announce`
 * (the trailers' names unless told).
 */
function sendWithTrailers(
  url: string,
  method: string,
  headers: Record<string, string>,
  body: Buffer,
  trailers: Record<string, string>,
  announce: string[] = Object.keys(trailers),
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      method,
      headers: { ...headers, ...(announce.length > 0 && { Trailer: announce.join(', ') }) },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let code: string | undefined;
        try {
          code = JSON.parse(text)?.error?.code;
        } catch {
          code = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, code });
      });
    });
    const half = Math.floor(body.length / 2);
    req.write(body.subarray(0, half));
    req.write(body.subarray(half));
    req.addTrailers(trailers);
    req.end();
  });
}

const contentDigest = (bytes: Buffer) => `sha-256=:${createHash('sha256').update(bytes).digest('base64')}:`;
const contentMd5 = (bytes: Buffer) => createHash('md5').update(bytes).digest('base64');
const OTHER = Buffer.from('not these bytes');

describe('tus', () => {
  const tusHeaders = () => ({ 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${w.key}` });

  async function create(length: number): Promise<string> {
    const res = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        ...tusHeaders(),
        'Upload-Length': String(length),
        'Upload-Metadata': `filename ${Buffer.from('trailed.bin').toString('base64')}`,
      },
    });
    assert.equal(res.status, 201);
    return new URL(res.headers.get('location')!, w.url).href;
  }

  async function offsetOf(url: string): Promise<string | null> {
    const res = await fetch(url, { method: 'HEAD', headers: tusHeaders() });
    return res.headers.get('upload-offset');
  }

  const patch = (
    url: string,
    offset: number,
    body: Buffer,
    trailers: Record<string, string>,
    announce?: string[],
  ) =>
    sendWithTrailers(
      url,
      'PATCH',
      { ...tusHeaders(), 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(offset) },
      body,
      trailers,
      announce,
    );

  test('a PATCH whose Content-Digest or Content-MD5 trailer is wrong is 460 and writes nothing; a right one is written', async () => {
    const bytes = randomBytes(3000);
    const url = await create(bytes.length);
    const first = bytes.subarray(0, 1000);

    const wrong = await patch(url, 0, first, { 'Content-Digest': contentDigest(OTHER) });
    assert.equal(wrong.status, 460, wrong.text);
    assert.equal(wrong.code, 'CHECKSUM_MISMATCH');
    assert.equal(await offsetOf(url), '0', 'nothing of the refused body was written');

    const wrongMd5 = await patch(url, 0, first, { 'Content-MD5': contentMd5(OTHER) });
    assert.equal(wrongMd5.status, 460, wrongMd5.text);
    assert.equal(wrongMd5.code, 'CHECKSUM_MISMATCH');
    assert.equal(await offsetOf(url), '0');

    const ok = await patch(url, 0, first, { 'Content-Digest': contentDigest(first) });
    assert.equal(ok.status, 204, ok.text);
    assert.equal(ok.headers['upload-offset'], '1000');

    // Announced and never sent (a proxy that drops trailers): refused, not read as "none".
    const second = bytes.subarray(1000, 2000);
    const missing = await patch(url, 1000, second, {}, ['Content-Digest']);
    assert.equal(missing.status, 400, missing.text);
    assert.equal(missing.code, 'INVALID_DIGEST');
    assert.equal(await offsetOf(url), '1000');

    const rest = bytes.subarray(1000);
    const done = await patch(url, 1000, rest, {
      'Content-Digest': contentDigest(rest),
      'Content-MD5': contentMd5(rest),
    });
    assert.equal(done.status, 204, done.text);
    const asset = await api(w.url, w.key, 'GET', `/v1/assets/${done.headers['wharf-asset-id']}`);
    assert.equal(asset.body.sha256, sha256Hex(bytes));
  });

  test('a creation with upload whose trailer is wrong is 460 and makes nothing', async () => {
    const bytes = randomBytes(500);
    const name = `trailed-${randomBytes(4).toString('hex')}.bin`;
    const creation = (trailers: Record<string, string>) =>
      sendWithTrailers(
        `${w.url}/v1/tus/`,
        'POST',
        {
          ...tusHeaders(),
          'Content-Type': 'application/offset+octet-stream',
          'Upload-Length': String(bytes.length),
          'Upload-Metadata': `filename ${Buffer.from(name).toString('base64')}`,
        },
        bytes,
        trailers,
      );
    const wrong = await creation({ 'Content-Digest': contentDigest(OTHER) });
    assert.equal(wrong.status, 460, wrong.text);
    assert.equal(wrong.code, 'CHECKSUM_MISMATCH');
    assert.equal(wrong.headers.location, undefined);
    const good = await creation({ 'Content-Digest': contentDigest(bytes) });
    assert.equal(good.status, 201, good.text);
    assert.equal(good.headers['upload-offset'], String(bytes.length));
  });

  test('Repr-Digest announced as a trailer is refused before the body is read', async () => {
    const bytes = randomBytes(100);
    const url = await create(bytes.length);
    const res = await patch(url, 0, bytes, { 'Repr-Digest': contentDigest(bytes) });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.code, 'VALIDATION_FAILED');
    assert.equal(await offsetOf(url), '0');
  });
});

describe('Resumable Uploads for HTTP', () => {
  const headers = () => ({ 'x-api-key': w.key, 'Upload-Draft-Interop-Version': '8' });

  async function open(length: number): Promise<string> {
    const res = await fetch(`${w.url}/v1/resumable/?name=trailed.bin`, {
      method: 'POST',
      headers: { ...headers(), 'Upload-Complete': '?0', 'Upload-Length': String(length) },
    });
    assert.equal(res.status, 201, await res.text());
    return res.headers.get('location')!;
  }

  async function offsetOf(url: string): Promise<string | null> {
    const res = await fetch(url, { method: 'HEAD', headers: headers() });
    return res.headers.get('upload-offset');
  }

  const append = (
    url: string,
    offset: number,
    body: Buffer,
    complete: boolean,
    trailers: Record<string, string>,
    announce?: string[],
  ) =>
    sendWithTrailers(
      url,
      'PATCH',
      {
        ...headers(),
        'Content-Type': 'application/partial-upload',
        'Upload-Offset': String(offset),
        'Upload-Complete': complete ? '?1' : '?0',
      },
      body,
      trailers,
      announce,
    );

  test('an append whose trailer is wrong is 400 CHECKSUM_MISMATCH and appends nothing; a right one is appended', async () => {
    const bytes = randomBytes(2000);
    const url = await open(bytes.length);
    const first = bytes.subarray(0, 1000);

    const wrong = await append(url, 0, first, false, { 'Content-Digest': contentDigest(OTHER) });
    assert.equal(wrong.status, 400, wrong.text);
    assert.equal(wrong.code, 'CHECKSUM_MISMATCH');
    assert.equal(wrong.headers['upload-complete'], '?0');
    assert.equal(await offsetOf(url), '0', 'nothing appended');

    const wrongMd5 = await append(url, 0, first, false, { 'Content-MD5': contentMd5(OTHER) });
    assert.equal(wrongMd5.status, 400, wrongMd5.text);
    assert.equal(wrongMd5.code, 'CHECKSUM_MISMATCH');
    assert.equal(await offsetOf(url), '0');

    const ok = await append(url, 0, first, false, { 'Content-Digest': contentDigest(first) });
    assert.equal(ok.status, 204, ok.text);
    assert.equal(ok.headers['upload-offset'], '1000');

    const last = bytes.subarray(1000);
    const missing = await append(url, 1000, last, true, {}, ['Content-Digest']);
    assert.equal(missing.status, 400, missing.text);
    assert.equal(missing.code, 'INVALID_DIGEST');
    assert.equal(await offsetOf(url), '1000');

    const done = await append(url, 1000, last, true, { 'Content-Digest': contentDigest(last) });
    assert.equal(done.status, 201, done.text);
    assert.equal(JSON.parse(done.text).asset.sha256, sha256Hex(bytes));
  });

  test('a creation with its whole file and a wrong trailer keeps nothing; Repr-Digest as a trailer is refused', async () => {
    const bytes = randomBytes(800);
    const creation = (trailers: Record<string, string>) =>
      sendWithTrailers(
        `${w.url}/v1/resumable/?name=whole.bin`,
        'POST',
        { ...headers(), 'Upload-Complete': '?1', 'Upload-Length': String(bytes.length) },
        bytes,
        trailers,
      );
    const wrong = await creation({ 'Content-Digest': contentDigest(OTHER) });
    assert.equal(wrong.status, 400, wrong.text);
    assert.equal(wrong.code, 'CHECKSUM_MISMATCH');
    assert.equal(await offsetOf(wrong.headers.location as string), '0');

    const repr = await creation({ 'Repr-Digest': contentDigest(bytes) });
    assert.equal(repr.status, 400, repr.text);
    assert.equal(repr.code, 'VALIDATION_FAILED');

    const good = await creation({ 'Content-Digest': contentDigest(bytes) });
    assert.equal(good.status, 201, good.text);
    assert.equal(JSON.parse(good.text).asset.sha256, sha256Hex(bytes));
  });
});

describe('native API', () => {
  test('POST /v1/assets (raw) checks Content-Digest, Repr-Digest and Content-MD5 trailers', async () => {
    const bytes = randomBytes(4000);
    const raw = (name: string, trailers: Record<string, string>, announce?: string[]) =>
      sendWithTrailers(
        `${w.url}/v1/assets?name=${name}`,
        'POST',
        { 'x-api-key': w.key, 'Content-Type': 'application/octet-stream' },
        bytes,
        trailers,
        announce,
      );
    for (const field of ['Content-Digest', 'Repr-Digest']) {
      const wrong = await raw('wrong.bin', { [field]: contentDigest(OTHER) });
      assert.equal(wrong.status, 400, `${field}: ${wrong.text}`);
      assert.equal(wrong.code, 'CHECKSUM_MISMATCH');
    }
    const wrongMd5 = await raw('wrong.bin', { 'Content-MD5': contentMd5(OTHER) });
    assert.equal(wrongMd5.status, 400, wrongMd5.text);
    assert.equal(wrongMd5.code, 'CHECKSUM_MISMATCH');
    const missing = await raw('missing.bin', {}, ['Content-Digest']);
    assert.equal(missing.status, 400, missing.text);
    assert.equal(missing.code, 'INVALID_DIGEST');
    const listed = await api(w.url, w.key, 'GET', `/v1/assets?limit=100`);
    assert.ok(
      !listed.body.data.some((a: { sha256: string }) => a.sha256 === sha256Hex(bytes)),
      'nothing refused was stored',
    );

    const good = await raw('good.bin', {
      'Content-Digest': contentDigest(bytes),
      'Content-MD5': contentMd5(bytes),
    });
    assert.equal(good.status, 201, good.text);
    assert.equal(JSON.parse(good.text).asset.sha256, sha256Hex(bytes));
  });

  test('PUT /v1/files checks a Content-Digest trailer', async () => {
    const bytes = randomBytes(1000);
    const put = (trailers: Record<string, string>) =>
      sendWithTrailers(
        `${w.url}/v1/files/docs/trailed.bin`,
        'PUT',
        { 'x-api-key': w.key, 'Content-Type': 'application/octet-stream' },
        bytes,
        trailers,
      );
    const wrong = await put({ 'Content-Digest': contentDigest(OTHER) });
    assert.equal(wrong.status, 400, wrong.text);
    assert.equal(wrong.code, 'CHECKSUM_MISMATCH');
    const good = await put({ 'Content-Digest': contentDigest(bytes) });
    assert.equal(good.status, 201, good.text);
  });

  test('a multipart form is checked against its Content-Digest trailer, which covers the whole form', async () => {
    const file = randomBytes(1500);
    const boundary = `trailed${randomBytes(6).toString('hex')}`;
    const form = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="form.bin"\r\n` +
          'Content-Type: application/octet-stream\r\n\r\n',
      ),
      file,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const send = (trailers: Record<string, string>) =>
      sendWithTrailers(
        `${w.url}/v1/assets`,
        'POST',
        { 'x-api-key': w.key, 'Content-Type': `multipart/form-data; boundary=${boundary}` },
        form,
        trailers,
      );
    // The file's digest is not the form's: refused, as the header form is.
    const wrong = await send({ 'Content-Digest': contentDigest(file) });
    assert.equal(wrong.status, 400, wrong.text);
    assert.equal(wrong.code, 'CHECKSUM_MISMATCH');
    const good = await send({ 'Content-Digest': contentDigest(form) });
    assert.equal(good.status, 201, good.text);
    assert.equal(JSON.parse(good.text).asset.sha256, sha256Hex(file));
  });
});
