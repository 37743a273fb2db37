import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { countAssets, objectFiles, tmpFiles } from '../helpers/assets.js';
import { curl } from '../helpers/curl.js';
import { storesOnS3 } from '../helpers/deployment.js';
import { api, b64, md5Hex, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// The real curl binary is an independent HTTP client: what it sends is what users send.
const LIMIT = 256 * 1024;
let w: TestWharf;
let dir: string;
before(async () => {
  w = await startWharf({ env: { WHARF_MAX_FILE_SIZE: String(LIMIT) } });
  dir = await mkdtemp(join(tmpdir(), 'wharf-curl-'));
});
after(async () => {
  await w?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function file(name: string, bytes: Buffer | string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

/** The last response's headers from curl's -D output (there may be a 100 Continue first). */
function headersOf(raw: string): Map<string, string> {
  const blocks = raw.split(/\r?\n\r?\n/).filter((b) => /^HTTP\//.test(b.trim()));
  const last = blocks.at(-1) ?? '';
  const map = new Map<string, string>();
  for (const line of last.split(/\r?\n/).slice(1)) {
    const at = line.indexOf(':');
    if (at > 0) map.set(line.slice(0, at).trim().toLowerCase(), line.slice(at + 1).trim());
  }
  return map;
}

const key = () => ['-H', `x-api-key: ${w.key}`];
const json = (body: string) => JSON.parse(body);

describe('curl -F (multipart/form-data)', () => {
  test('curl -F file=@hello.txt creates an asset named and typed from the file', async () => {
    const bytes = Buffer.from('hello from curl\n');
    const path = await file('hello.txt', bytes);
    const res = await curl([...key(), '-F', `file=@${path}`, `${w.url}/v1/assets`]);
    assert.equal(res.status, 201, res.body);
    const { status, asset } = json(res.body);
    assert.equal(status, 'created');
    assert.equal(asset.name, 'hello.txt');
    assert.equal(asset.content_type, 'text/plain');
    assert.equal(asset.size, bytes.length);
    assert.equal(asset.sha256, sha256Hex(bytes));
    assert.equal(asset.md5, md5Hex(bytes));
  });

  test(';type= and ;filename= set the type and a Unicode name, which round-trips to the download', async () => {
    const bytes = randomBytes(50_000);
    const path = await file('upload.bin', bytes);
    const name = 'résumé 📄.png';
    const res = await curl([
      ...key(),
      '-F',
      `file=@${path};type=image/png;filename="${name}"`,
      `${w.url}/v1/assets`,
    ]);
    assert.equal(res.status, 201, res.body);
    const { asset } = json(res.body);
    assert.equal(asset.name, name);
    assert.equal(asset.content_type, 'image/png');

    const out = join(dir, 'downloaded.bin');
    const dl = await curl([...key(), '-o', out, `${w.url}/v1/assets/${asset.id}/content`]);
    assert.equal(dl.status, 200);
    assert.ok((await readFile(out)).equals(bytes), 'the bytes come back identical');
    const headers = headersOf(dl.headers);
    assert.equal(headers.get('content-type'), 'image/png');
    assert.equal(headers.get('etag'), `"${sha256Hex(bytes)}"`);
    const star = /filename\*=UTF-8''([^;\s]+)/i.exec(headers.get('content-disposition') ?? '')?.[1];
    assert.equal(decodeURIComponent(star ?? ''), name);
  });

  test('a path in ;filename= is refused as INVALID_NAME, not stored as its last part', async () => {
    const path = await file('innocent.txt', 'x');
    const before = countAssets(w);
    const res = await curl([...key(), '-F', `file=@${path};filename=../etc/passwd`, `${w.url}/v1/assets`]);
    assert.equal(res.status, 400, res.body);
    assert.equal(json(res.body).error.code, 'INVALID_NAME');
    assert.equal(countAssets(w), before);
  });

  test('a file in another field is refused', async () => {
    const path = await file('wrong-field.txt', 'x');
    const res = await curl([...key(), '-F', `upload=@${path}`, `${w.url}/v1/assets`]);
    assert.equal(res.status, 400);
    assert.equal(json(res.body).error.code, 'VALIDATION_FAILED');
  });

  test('a file over the limit is 413 FILE_TOO_LARGE and leaves nothing', async () => {
    const path = await file('too-big.bin', randomBytes(LIMIT + 1));
    const objects = await objectFiles(w);
    const before = countAssets(w);
    const res = await curl([...key(), '-F', `file=@${path}`, `${w.url}/v1/assets`]);
    assert.equal(res.status, 413, res.body);
    assert.equal(json(res.body).error.code, 'FILE_TOO_LARGE');
    assert.equal(countAssets(w), before);
    assert.deepEqual(await objectFiles(w), objects);
    assert.deepEqual(await tmpFiles(w), []);
  });
});

describe('curl --data-binary (raw body)', () => {
  test('with ?name= and a Content-Type', async () => {
    const bytes = randomBytes(10_000);
    const path = await file('doc.pdf', bytes);
    const res = await curl([
      ...key(),
      '-H',
      'Content-Type: application/pdf',
      '--data-binary',
      `@${path}`,
      `${w.url}/v1/assets?name=doc.pdf`,
    ]);
    assert.equal(res.status, 201, res.body);
    assert.equal(json(res.body).asset.content_type, 'application/pdf');
    assert.equal(json(res.body).asset.sha256, sha256Hex(bytes));
  });

  test('with a matching Content-MD5 and Repr-Digest; the same bytes again answer 200 "exists"', async () => {
    const bytes = randomBytes(2000);
    const path = await file('digests.bin', bytes);
    const args = [
      ...key(),
      '-H',
      `Content-MD5: ${b64(md5Hex(bytes))}`,
      '-H',
      `Repr-Digest: sha-256=:${b64(sha256Hex(bytes))}:`,
      '-H',
      'Content-Type: application/octet-stream',
      '--data-binary',
      `@${path}`,
      `${w.url}/v1/assets?name=digests.bin`,
    ];
    const first = await curl(args);
    assert.equal(first.status, 201, first.body);
    const second = await curl(args);
    assert.equal(second.status, 200);
    assert.equal(json(second.body).status, 'exists');
    assert.equal(json(second.body).asset.id, json(first.body).asset.id);
  });

  test('a wrong Content-MD5 is 400 CHECKSUM_MISMATCH and stores nothing', async () => {
    const path = await file('bad-md5.bin', randomBytes(3000));
    const before = countAssets(w);
    const objects = await objectFiles(w);
    const res = await curl([
      ...key(),
      '-H',
      `Content-MD5: ${b64(md5Hex('not these bytes'))}`,
      '--data-binary',
      `@${path}`,
      `${w.url}/v1/assets?name=bad-md5.bin`,
    ]);
    assert.equal(res.status, 400, res.body);
    assert.equal(json(res.body).error.code, 'CHECKSUM_MISMATCH');
    assert.equal(countAssets(w), before);
    assert.deepEqual(await objectFiles(w), objects);
  });

  test('chunked transfer encoding: under the limit is stored, over it is 413', async () => {
    const small = randomBytes(100_000);
    const ok = await curl([
      ...key(),
      '-H',
      'Transfer-Encoding: chunked',
      '--data-binary',
      `@${await file('chunked.bin', small)}`,
      `${w.url}/v1/assets?name=chunked.bin`,
    ]);
    assert.equal(ok.status, 201, ok.body);
    assert.equal(json(ok.body).asset.sha256, sha256Hex(small));

    const before = countAssets(w);
    const big = await curl([
      ...key(),
      '-H',
      'Transfer-Encoding: chunked',
      '--data-binary',
      `@${await file('chunked-big.bin', randomBytes(LIMIT + 10))}`,
      `${w.url}/v1/assets?name=chunked-big.bin`,
    ]);
    assert.equal(big.status, 413, big.body);
    assert.equal(json(big.body).error.code, 'FILE_TOO_LARGE');
    assert.equal(countAssets(w), before);
    assert.deepEqual(await tmpFiles(w), []);
  });

  test('Authorization: Bearer works as well as x-api-key', async () => {
    const res = await curl(['-H', `Authorization: Bearer ${w.key}`, `${w.url}/v1/assets?limit=1`]);
    assert.equal(res.status, 200);
    assert.ok(Array.isArray(json(res.body).data));
    const none = await curl([`${w.url}/v1/assets`]);
    assert.equal(none.status, 401);
    assert.equal(json(none.body).error.code, 'UNAUTHORIZED');
  });
});

describe('curl --upload-file to a presigned URL', () => {
  async function intentFor(body: Record<string, unknown>, server = w) {
    const res = await curl([
      '-H',
      `x-api-key: ${server.key}`,
      '-H',
      'Content-Type: application/json',
      '--data-raw',
      JSON.stringify(body),
      `${server.url}/v1/uploads`,
    ]);
    assert.equal(res.status, 201, res.body);
    return json(res.body) as { id: string; url: string; headers: Record<string, string> };
  }
  const headerArgs = (headers: Record<string, string>) =>
    Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);

  test('declare with digests, PUT with exactly the returned headers, complete', async () => {
    const bytes = randomBytes(LIMIT); // Exactly the limit: the largest file allowed.
    const path = await file('presigned.bin', bytes);
    const intent = await intentFor({
      name: 'presigned.bin',
      content_type: 'application/octet-stream',
      size: bytes.length,
      sha256: sha256Hex(bytes),
      md5: md5Hex(bytes),
    });
    assert.deepEqual(Object.keys(intent.headers).sort(), [
      'Content-MD5',
      'Content-Type',
      // On S3 the URL is write-once; Wharf's own endpoint knows when an upload is done.
      ...(storesOnS3 ? ['If-None-Match'] : []),
      'x-amz-checksum-sha256',
    ]);

    const put = await curl([...headerArgs(intent.headers), '--upload-file', path, intent.url]);
    assert.equal(put.status, 200, put.body);
    assert.equal(headersOf(put.headers).get('etag'), `"${md5Hex(bytes)}"`);

    const done = await curl([...key(), '-X', 'POST', `${w.url}/v1/uploads/${intent.id}/complete`]);
    assert.equal(done.status, 200, done.body);
    assert.equal(json(done.body).status, 'created');
    assert.equal(json(done.body).asset.sha256, sha256Hex(bytes));
  });

  test('another Content-Type than the signed one is 403 SignatureDoesNotMatch', async () => {
    const path = await file('typed.txt', 'typed');
    const intent = await intentFor({ name: 'typed.txt', content_type: 'text/plain', size: 5 });
    const res = await curl(['-H', 'Content-Type: text/html', '--upload-file', path, intent.url]);
    assert.equal(res.status, 403);
    assert.match(res.body, /<Code>SignatureDoesNotMatch<\/Code>/);
    assert.equal(headersOf(res.headers).get('content-type'), 'application/xml');
  });

  test('omitting the signed headers is 403 too', async () => {
    const path = await file('bare.txt', 'bare!');
    const intent = await intentFor({ name: 'bare.txt', content_type: 'text/plain', size: 5 });
    const res = await curl(['--upload-file', path, intent.url]);
    assert.equal(res.status, 403);
    assert.match(res.body, /<Code>SignatureDoesNotMatch<\/Code>/);
  });

  test('a different file of the same size is refused (BadDigest, on S3 at completion); nothing completes', async () => {
    const good = randomBytes(4096);
    const objects = await objectFiles(w);
    const intent = await intentFor({ name: 'bd.bin', size: good.length, sha256: sha256Hex(good) });
    const res = await curl([
      ...headerArgs(intent.headers),
      '--upload-file',
      await file('forged.bin', randomBytes(4096)),
      intent.url,
    ]);
    const done = await curl([...key(), '-X', 'POST', `${w.url}/v1/uploads/${intent.id}/complete`]);
    if (storesOnS3) {
      // This S3 server does not check x-amz-checksum-sha256; completion hashes the bytes.
      assert.equal(res.status, 200, res.body);
      assert.equal(done.status, 400, done.body);
      assert.equal(json(done.body).error.code, 'CHECKSUM_MISMATCH');
    } else {
      assert.equal(res.status, 400);
      assert.match(res.body, /<Code>BadDigest<\/Code>/);
      assert.equal(done.status, 409);
      assert.equal(json(done.body).error.code, 'UPLOAD_INCOMPLETE');
    }
    assert.deepEqual(await objectFiles(w), objects, 'the forged bytes are not kept');
  });

  test('after the URL expires curl gets 403 AccessDenied', async () => {
    // Signed 16 minutes ago by the server's clock; then the clock is the real time again,
    // which is what an S3 server judges expiry by.
    const clock = new ManualClock(Date.now() - 16 * 60_000);
    const past = await startWharf({ clock });
    try {
      const path = await file('late.bin', 'late');
      const intent = await intentFor({ name: 'late.bin', size: 4 }, past);
      clock.set(Date.now());
      const res = await curl([...headerArgs(intent.headers), '--upload-file', path, intent.url]);
      assert.equal(res.status, 403);
      assert.match(res.body, /<Code>AccessDenied<\/Code>/);
      assert.deepEqual(await objectFiles(past), []);
    } finally {
      await past.close();
    }
  });
});

describe('curl downloads', () => {
  let id: string;
  const bytes = Buffer.from('The quick brown fox jumps over the lazy dog');
  before(async () => {
    const res = await curl([
      ...key(),
      '-H',
      'Content-Type: text/plain',
      '--data-binary',
      `@${await file('fox.txt', bytes)}`,
      `${w.url}/v1/assets?name=fox.txt`,
    ]);
    id = json(res.body).asset.id;
  });

  test('curl -r 4-8 gets 206 and exactly those bytes', async () => {
    const res = await curl([...key(), '-r', '4-8', `${w.url}/v1/assets/${id}/content`]);
    assert.equal(res.status, 206);
    assert.equal(res.body, 'quick');
    assert.equal(headersOf(res.headers).get('content-range'), `bytes 4-8/${bytes.length}`);
  });

  test('curl -I (HEAD) shows the headers', async () => {
    const res = await curl([...key(), '-I', `${w.url}/v1/assets/${id}/content`]);
    assert.equal(res.status, 200);
    const headers = headersOf(res.headers);
    assert.equal(headers.get('content-length'), String(bytes.length));
    assert.equal(headers.get('x-content-type-options'), 'nosniff');
  });

  test('a signed URL downloads with plain curl and no key', async () => {
    const signed = await api(w.url, w.key, 'POST', `/v1/assets/${id}/signed-url`, { expires_in: 300 });
    const res = await curl([signed.body.url]);
    assert.equal(res.status, 200);
    assert.equal(res.body, bytes.toString());
    // Another first character (a fixed one would equal the real one now and then).
    const tampered = await curl([
      signed.body.url.replace(
        /signature=(.)/,
        (_: string, c: string) => `signature=${c === 'A' ? 'B' : 'A'}`,
      ),
    ]);
    assert.equal(tampered.status, 403);
    assert.equal(json(tampered.body).error.code, 'INVALID_SIGNATURE');
  });

  test('conditional GET with the ETag is 304', async () => {
    const res = await curl([
      ...key(),
      '-H',
      `If-None-Match: "${sha256Hex(bytes)}"`,
      `${w.url}/v1/assets/${id}/content`,
    ]);
    assert.equal(res.status, 304);
    assert.equal(res.body, '');
  });

  test('curl -X DELETE removes the asset and frees its file', async () => {
    const before = await objectFiles(w);
    const res = await curl([...key(), '-X', 'DELETE', `${w.url}/v1/assets/${id}`]);
    assert.equal(res.status, 204);
    const after = await objectFiles(w);
    assert.equal(after.length, before.length - 1);
    const gone = await curl([...key(), `${w.url}/v1/assets/${id}/content`]);
    assert.equal(gone.status, 404);
  });
});
