import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { createAsset, dbQuery, rawMultipart, readJson } from '../helpers/assets.js';
import { curl } from '../helpers/curl.js';
import { onS3 } from '../helpers/deployment.js';
import { api, b64, md5Hex, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * Seed 003: the namespaced file service with versions (Capillary's
 * `POST /api_gateway/file-service/{namespace}/{file name}`), driven with the document's own
 * curl command and real HTTP clients.
 */

const PREFIX = '/api_gateway/file-service';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const FILE_KEYS = [
  'acl',
  'content_type',
  'fileSize',
  'file_handle',
  'last_modified',
  'latest_version',
  'name',
  'namespace',
  's3_token',
  's3_url',
  'version',
];

let w: TestWharf;
let dir: string;
/** A member key of the default account: Basic user = its id, password = its secret. */
let keyId: string;
let secret: string;

before(async () => {
  w = await startWharf();
  dir = await mkdtemp(join(tmpdir(), 'wharf-file-service-'));
  const created = await w.newKey('member');
  keyId = created.id;
  secret = created.key;
});
after(async () => {
  await w?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function png(width: number, colour: { r: number; g: number; b: number }): Promise<Buffer> {
  return sharp({ create: { width, height: 8, channels: 3, background: colour } })
    .png()
    .toBuffer();
}

async function fixture(name: string, bytes: Buffer): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

function basic(id = keyId, password = secret): string {
  return `Basic ${Buffer.from(`${id}:${password}`).toString('base64')}`;
}

/** "YYYY-MM-DD HH:MM:SS" in UTC, as the document shows `last_modified`. */
function documentTime(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(0, 19).replace('T', ' ');
}

function storageKeyOf(assetId: string): string {
  return dbQuery<{ storage_key: string }>(w, 'select storage_key from assets where id = ?', assetId)[0]!
    .storage_key;
}

async function download(url: string): Promise<{ status: number; bytes: Buffer }> {
  const res = await fetch(url);
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
}

/** Every field of a success answer, by type and value. */
function assertFileAnswer(
  body: any,
  expected: {
    message: string;
    namespace: string;
    name: string;
    version: number;
    latest: number;
    size: number;
    contentType: string;
    at: number;
  },
): void {
  assert.deepEqual(Object.keys(body).sort(), ['code', 'file', 'message', 'secureFilePath', 'status']);
  assert.equal(body.code, 200);
  assert.equal(body.status, 'true');
  assert.equal(body.message, expected.message);
  const file = body.file;
  assert.deepEqual(Object.keys(file).sort(), FILE_KEYS);
  assert.equal(file.name, expected.name);
  assert.equal(file.namespace, expected.namespace);
  assert.equal(file.version, expected.version);
  assert.equal(file.latest_version, expected.latest);
  assert.equal(file.acl, 'PRIVATE');
  assert.equal(file.fileSize, String(expected.size), 'fileSize is a string');
  assert.match(file.file_handle, UUID);
  assert.equal(file.content_type, expected.contentType);
  assert.equal(file.s3_token, storageKeyOf(file.file_handle));
  // The bucket the bytes are in: Wharf's own ("wharf") or the S3 store's.
  const bucket = onS3(w) ? w.backingEnv.WHARF_S3_BUCKET : 'wharf';
  assert.equal(file.s3_url, `s3://${bucket}/${file.s3_token}`);
  assert.equal(file.last_modified, documentTime(expected.at));
  assert.equal(typeof body.secureFilePath, 'string');
  const secure = new URL(body.secureFilePath);
  assert.equal(secure.searchParams.get('expires'), String(Math.floor(w.clock.now() / 1000) + 3600));
}

function assertError(res: { status: number; body: any }, status: number, errorCode: string): void {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.deepEqual(Object.keys(res.body).sort(), ['code', 'error_code', 'message', 'status']);
  assert.equal(res.body.code, status);
  assert.equal(res.body.status, 'false');
  assert.equal(res.body.error_code, errorCode);
  assert.equal(typeof res.body.message, 'string');
}

async function get(path: string, headers: Record<string, string> = { authorization: basic() }) {
  return readJson(fetch(`${w.url}${PREFIX}${path}`, { headers }));
}

describe('the document’s example: curl -X POST -u keyid:secret -F "file=@/path/test.png"', () => {
  let v1: Buffer;
  let v2: Buffer;
  let first: any;
  let second: any;

  test('uploads test.png into "rewards" as version 1', async () => {
    v1 = await png(16, { r: 200, g: 10, b: 10 });
    const path = await fixture('test.png', v1);
    const res = await curl([
      '-X',
      'POST',
      '-u',
      `${keyId}:${secret}`,
      '-F',
      `file=@${path}`,
      `${w.url}${PREFIX}/rewards/test.png`,
    ]);
    assert.equal(res.status, 200, res.body);
    assert.match(res.headers, /content-type: application\/json/i);
    first = JSON.parse(res.body);
    assertFileAnswer(first, {
      message: 'Successfully uploaded file',
      namespace: 'rewards',
      name: 'test.png',
      version: 1,
      latest: 1,
      size: v1.length,
      contentType: 'image/png',
      at: w.clock.now(),
    });
  });

  test('secureFilePath downloads the exact bytes without credentials', async () => {
    const res = await download(first.secureFilePath);
    assert.equal(res.status, 200);
    assert.equal(sha256Hex(res.bytes), sha256Hex(v1));
  });

  test('the same name again is version 2; latest_version says so', async () => {
    w.clock.advance(61_000);
    v2 = await png(24, { r: 10, g: 200, b: 10 });
    await mkdir(join(dir, 'v2'));
    const path = await fixture('v2/test.png', v2);
    const res = await curl([
      '-X',
      'POST',
      '-u',
      `${keyId}:${secret}`,
      '-F',
      `file=@${path}`,
      `${w.url}${PREFIX}/rewards/test.png`,
    ]);
    assert.equal(res.status, 200, res.body);
    second = JSON.parse(res.body);
    assertFileAnswer(second, {
      message: 'Successfully uploaded file',
      namespace: 'rewards',
      name: 'test.png',
      version: 2,
      latest: 2,
      size: v2.length,
      contentType: 'image/png',
      at: w.clock.now(),
    });
    assert.notEqual(second.file.file_handle, first.file.file_handle);
    assert.notEqual(second.file.s3_token, first.file.s3_token);
    assert.equal(sha256Hex((await download(second.secureFilePath)).bytes), sha256Hex(v2));
  });

  test('GET by namespace and name answers the latest version, ?version=1 the first', async () => {
    const latest = await get('/rewards/test.png');
    assert.equal(latest.status, 200);
    assertFileAnswer(latest.body, {
      message: 'Successfully fetched file',
      namespace: 'rewards',
      name: 'test.png',
      version: 2,
      latest: 2,
      size: v2.length,
      contentType: 'image/png',
      at: w.clock.now(),
    });
    assert.equal(latest.body.file.file_handle, second.file.file_handle);

    const old = await get('/rewards/test.png?version=1');
    assert.equal(old.status, 200);
    assertFileAnswer(old.body, {
      message: 'Successfully fetched file',
      namespace: 'rewards',
      name: 'test.png',
      version: 1,
      latest: 2,
      size: v1.length,
      contentType: 'image/png',
      at: w.clock.now() - 61_000,
    });
    assert.equal(old.body.file.file_handle, first.file.file_handle);
    const bytes = await download(old.body.secureFilePath);
    assert.equal(bytes.status, 200);
    assert.equal(sha256Hex(bytes.bytes), sha256Hex(v1), 'version 1 stays readable');
  });

  test('/content redirects to the bytes of the latest or a given version', async () => {
    const out = join(dir, 'content-latest.png');
    const latest = await curl([
      '-L',
      '-o',
      out,
      '-u',
      `${keyId}:${secret}`,
      `${w.url}${PREFIX}/rewards/test.png/content`,
    ]);
    assert.equal(latest.status, 200);
    assert.equal(sha256Hex(await readFile(out)), sha256Hex(v2));
    const res = await fetch(`${w.url}${PREFIX}/rewards/test.png/content?version=1`, {
      headers: { authorization: basic() },
    });
    assert.equal(res.status, 200);
    assert.equal(sha256Hex(Buffer.from(await res.arrayBuffer())), sha256Hex(v1));
    // The redirect leads to a signed URL, embeddable by a page of any site.
    assert.equal(res.headers.get('cross-origin-resource-policy'), 'cross-origin');
    const unredirected = await fetch(`${w.url}${PREFIX}/rewards/test.png/content`, {
      headers: { authorization: basic() },
      redirect: 'manual',
    });
    assert.equal(unredirected.status, 302);
    assert.match(unredirected.headers.get('location')!, /\/v1\/assets\/[0-9a-f-]{36}\/content\?expires=/);

    // Where the redirect leads, the bytes carry Last-Modified and answer conditional requests.
    const lastModified = res.headers.get('last-modified');
    assert.ok(lastModified && !Number.isNaN(Date.parse(lastModified)), `Last-Modified: ${lastModified}`);
    const conditional = (headers: Record<string, string>) =>
      fetch(`${w.url}${PREFIX}/rewards/test.png/content?version=1`, {
        headers: { authorization: basic(), ...headers },
      });
    assert.equal((await conditional({ 'if-modified-since': lastModified })).status, 304);
    assert.equal((await conditional({ 'if-none-match': `"${sha256Hex(v1)}"` })).status, 304);
    const refused = await conditional({ 'if-match': `"${sha256Hex(v2)}"` });
    assert.equal(refused.status, 412);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'PRECONDITION_FAILED');
    assert.equal((await conditional({ 'if-match': `"${sha256Hex(v1)}"` })).status, 200);
  });

  test('/versions lists every version, oldest first', async () => {
    const res = await get('/rewards/test.png/versions');
    assert.equal(res.status, 200);
    assert.equal(res.body.code, 200);
    assert.equal(res.body.status, 'true');
    assert.equal(res.body.name, 'test.png');
    assert.equal(res.body.namespace, 'rewards');
    assert.equal(res.body.latest_version, 2);
    assert.deepEqual(res.body.versions, [
      { version: 1, file_handle: first.file.file_handle, last_modified: first.file.last_modified },
      { version: 2, file_handle: second.file.file_handle, last_modified: second.file.last_modified },
    ]);
  });

  test('what the file service stores is visible through the native API, and vice versa', async () => {
    const asset = await api(w.url, w.key, 'GET', `/v1/assets/${second.file.file_handle}`);
    assert.equal(asset.status, 200);
    assert.equal(asset.body.id, second.file.file_handle);
    assert.equal(asset.body.size, v2.length);
    assert.equal(asset.body.sha256, sha256Hex(v2));
    assert.equal(asset.body.content_type, 'image/png');
    assert.equal(asset.body.access, 'private');

    const native = await api(w.url, w.key, 'GET', '/v1/files/rewards/test.png');
    assert.equal(native.status, 200);
    assert.equal(native.body.version, 2);
    assert.equal(native.body.asset.id, second.file.file_handle);

    // A version PUT natively is the next version here.
    const v3 = randomBytes(300);
    const put = await fetch(`${w.url}/v1/files/rewards/test.png`, {
      method: 'PUT',
      headers: { 'x-api-key': w.key, 'content-type': 'image/png' },
      body: new Uint8Array(v3),
    });
    assert.equal(put.status, 201);
    const third = await get('/rewards/test.png');
    assert.equal(third.body.file.version, 3);
    assert.equal(third.body.file.latest_version, 3);
    assert.equal(third.body.file.fileSize, String(v3.length));
    assert.equal(sha256Hex((await download(third.body.secureFilePath)).bytes), sha256Hex(v3));
  });

  test('secureFilePath expires after an hour', async () => {
    const fresh = await get('/rewards/test.png?version=1');
    assert.equal((await download(fresh.body.secureFilePath)).status, 200);
    w.clock.advance(3600_000 + 1000);
    const expired = await download(fresh.body.secureFilePath);
    assert.equal(expired.status, 403);
    assert.equal(JSON.parse(expired.bytes.toString()).error.code, 'URL_EXPIRED');
  });
});

describe('raw bodies and placeholders', () => {
  test('--data-binary: the raw body is the file; its type comes from the name when curl says form-urlencoded', async () => {
    const bytes = randomBytes(4096);
    const path = await fixture('banner.jpg', bytes);
    const res = await curl([
      '-X',
      'POST',
      '-H',
      `Authorization: Bearer ${secret}`,
      '--data-binary',
      `@${path}`,
      `${w.url}${PREFIX}/banners/banner.jpg`,
    ]);
    assert.equal(res.status, 200, res.body);
    const body = JSON.parse(res.body);
    assertFileAnswer(body, {
      message: 'Successfully uploaded file',
      namespace: 'banners',
      name: 'banner.jpg',
      version: 1,
      latest: 1,
      size: bytes.length,
      contentType: 'image/jpeg',
      at: w.clock.now(),
    });
    assert.equal(sha256Hex((await download(body.secureFilePath)).bytes), sha256Hex(bytes));
  });

  test('--data-binary with a Content-Type keeps that type', async () => {
    const path = await fixture('notes.txt', Buffer.from('hello, file service\n'));
    const res = await curl([
      '-u',
      `${keyId}:${secret}`,
      '-H',
      'Content-Type: text/markdown',
      '--data-binary',
      `@${path}`,
      `${w.url}${PREFIX}/docs/notes.txt`,
    ]);
    assert.equal(res.status, 200, res.body);
    const body = JSON.parse(res.body);
    assert.equal(body.file.content_type, 'text/markdown');
    assert.equal(body.file.fileSize, '20');
  });

  test('no body at all creates a placeholder: an empty version', async () => {
    const res = await curl([
      '-X',
      'POST',
      '-u',
      `${keyId}:${secret}`,
      `${w.url}${PREFIX}/rewards/placeholder.webp`,
    ]);
    assert.equal(res.status, 200, res.body);
    const body = JSON.parse(res.body);
    assertFileAnswer(body, {
      message: 'Successfully uploaded file',
      namespace: 'rewards',
      name: 'placeholder.webp',
      version: 1,
      latest: 1,
      size: 0,
      contentType: 'image/webp',
      at: w.clock.now(),
    });
    const bytes = await download(body.secureFilePath);
    assert.equal(bytes.status, 200);
    assert.equal(bytes.bytes.length, 0);

    // The image arrives later: the placeholder's next version.
    const image = await png(10, { r: 1, g: 2, b: 3 });
    const path = await fixture('placeholder.webp', image);
    const filled = await curl([
      '-u',
      `${keyId}:${secret}`,
      '-F',
      `image=@${path}`,
      `${w.url}${PREFIX}/rewards/placeholder.webp`,
    ]);
    const next = JSON.parse(filled.body);
    assert.equal(next.file.version, 2);
    assert.equal(next.file.latest_version, 2);
    assert.equal(next.file.fileSize, String(image.length));
    // curl labels .webp parts application/octet-stream; the extension says more.
    assert.equal(next.file.content_type, 'image/webp');
  });

  test('a form without a file part is a placeholder too; any field name carries the file', async () => {
    const res = await curl([
      '-u',
      `${keyId}:${secret}`,
      '-F',
      'note=later',
      `${w.url}${PREFIX}/rewards/later.webp`,
    ]);
    assert.equal(res.status, 200, res.body);
    const body = JSON.parse(res.body);
    assert.equal(body.file.version, 1);
    assert.equal(body.file.fileSize, '0');

    const bytes = randomBytes(700);
    const path = await fixture('any-field.bin', bytes);
    const named = await curl([
      '-u',
      `${keyId}:${secret}`,
      '-F',
      'note=first a text field',
      '-F',
      `upload=@${path};type=application/pdf`,
      `${w.url}${PREFIX}/docs/report.pdf`,
    ]);
    assert.equal(named.status, 200, named.body);
    const file = JSON.parse(named.body);
    assert.equal(file.file.name, 'report.pdf', 'the name is the path’s, not the part’s filename');
    assert.equal(file.file.content_type, 'application/pdf');
    assert.equal(sha256Hex((await download(file.secureFilePath)).bytes), sha256Hex(bytes));
  });
});

describe('credentials', () => {
  const url = () => `${w.url}${PREFIX}/auth/a.txt`;
  const post = (headers: Record<string, string>) =>
    readJson(
      fetch(url(), { method: 'POST', headers: { 'content-type': 'text/plain', ...headers }, body: 'x' }),
    );

  test('a token uploading content the account holds is shown its own upload’s storage key, never the first uploader’s', async () => {
    const bytes = randomBytes(64);
    const held = await createAsset(w, w.key, 'payroll.txt', bytes, 'text/plain');
    // Minted by the key whose id is the Basic user (the token's own key).
    const minted = await api(w.url, secret, 'POST', '/v1/upload-tokens', {
      subject: 'fs',
      namespace: 'tokenns',
    });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const res = await readJson(
      fetch(`${w.url}${PREFIX}/tokenns/mine.bin`, {
        method: 'POST',
        headers: {
          authorization: basic(keyId, minted.body.secret),
          'content-type': 'application/octet-stream',
        },
        body: new Uint8Array(bytes),
      }),
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const [own] = dbQuery<{ storage_key: string }>(
      w,
      'select storage_key from uploads where token_id = ?',
      minted.body.token.id,
    );
    assert.ok(own);
    assert.equal(res.body.file.s3_token, own.storage_key);
    assert.notEqual(res.body.file.s3_token, storageKeyOf(held.id));
    assert.ok(!res.body.file.s3_url.includes(storageKeyOf(held.id)));
  });

  test('Basic with the key id and secret, and Bearer with the key, are accepted', async () => {
    assert.equal((await post({ authorization: basic() })).status, 200);
    const bearer = await post({ authorization: `Bearer ${secret}` });
    assert.equal(bearer.status, 200);
    assert.equal(bearer.body.file.version, 2);
  });

  test('no credentials, a wrong secret, or another key’s id as the Basic user: 401', async () => {
    const none = await post({});
    assertError(none, 401, 'UNAUTHORIZED');
    assert.match(none.headers.get('www-authenticate')!, /^Basic /);
    assertError(await post({ authorization: basic(keyId, `${secret}x`) }), 401, 'UNAUTHORIZED');
    const other = await w.newKey('member');
    assertError(await post({ authorization: basic(other.id, secret) }), 401, 'UNAUTHORIZED');
    assertError(await post({ authorization: basic('', secret) }), 401, 'UNAUTHORIZED');
    assertError(
      await post({ authorization: `Basic ${Buffer.from(secret).toString('base64')}` }),
      401,
      'UNAUTHORIZED',
    );
    assertError(await post({ authorization: 'Bearer wharf_not_a_key' }), 401, 'UNAUTHORIZED');
    const curlNone = await curl(['-X', 'POST', `${w.url}${PREFIX}/rewards/test.png`]);
    assertError({ status: curlNone.status, body: JSON.parse(curlNone.body) }, 401, 'UNAUTHORIZED');
    assertError(await get('/rewards/test.png', {}), 401, 'UNAUTHORIZED');
  });

  test('another account sees none of these files', async () => {
    const tenant = await w.newAccount();
    assertError(await get('/rewards/test.png', { authorization: `Bearer ${tenant.key}` }), 404, 'NOT_FOUND');
  });

  test('a disabled account is refused with 403', async () => {
    const tenant = await w.newAccount();
    await w.wharf.core.keys.updateAccount(tenant.accountId, { disabled: true });
    assertError(await post({ authorization: `Bearer ${tenant.key}` }), 403, 'ACCOUNT_DISABLED');
  });
});

describe('errors', () => {
  test('404 for an unknown file or version, and for unknown paths under the prefix', async () => {
    assertError(await get('/rewards/nothing.png'), 404, 'NOT_FOUND');
    assertError(await get('/nowhere/test.png'), 404, 'NOT_FOUND');
    assertError(await get('/rewards/test.png?version=99'), 404, 'NOT_FOUND');
    assertError(await get('/rewards/test.png/content?version=99'), 404, 'NOT_FOUND');
    assertError(await get('/rewards/nothing.png/versions'), 404, 'NOT_FOUND');
    assertError(await get('/rewards'), 404, 'NOT_FOUND');
  });

  test('400 for a version that is not a positive integer', async () => {
    assertError(await get('/rewards/test.png?version=abc'), 400, 'VALIDATION_FAILED');
    assertError(await get('/rewards/test.png?version=0'), 400, 'VALIDATION_FAILED');
    // Plain decimal only, as every query number (docs/reference.md): not hex, not `1.0`.
    assertError(await get('/rewards/test.png?version=0x1'), 400, 'VALIDATION_FAILED');
    assertError(await get('/rewards/test.png?version=1.0'), 400, 'VALIDATION_FAILED');
  });

  test('400 for hostile names and namespaces (.., NUL, CR/LF, separators), nothing stored', async () => {
    const before = dbQuery<{ n: number }>(w, 'select count(*) as n from file_versions')[0]!.n;
    for (const path of [
      '/rewards/..',
      '/../test.png',
      '/rewards/%2e%2e',
      '/%2E%2E/test.png',
      '/rewards/a%00.png',
      '/rewards/a%0d%0aSet-Cookie:x.png',
      '/rewards/..%2Fetc%2Fpasswd',
      '/a%2Fb/test.png',
      '/re%00wards/test.png',
      '/has%20space/test.png',
      `/${'n'.repeat(65)}/test.png`,
      `/rewards/${'x'.repeat(256)}.png`,
    ]) {
      const res = await curl([
        '--path-as-is',
        '-u',
        `${keyId}:${secret}`,
        '-H',
        'Content-Type: image/png',
        '--data-binary',
        'bytes',
        `${w.url}${PREFIX}${path}`,
      ]);
      assertError({ status: res.status, body: JSON.parse(res.body) }, 400, 'INVALID_NAME');
      const read = await curl(['--path-as-is', '-u', `${keyId}:${secret}`, `${w.url}${PREFIX}${path}`]);
      assertError({ status: read.status, body: JSON.parse(read.body) }, 400, 'INVALID_NAME');
    }
    // A percent-encoding that decodes to nothing fails before routing; same envelope.
    const broken = await curl(['-u', `${keyId}:${secret}`, `${w.url}${PREFIX}/rewards/a%ZZ.png`]);
    assertError({ status: broken.status, body: JSON.parse(broken.body) }, 400, 'VALIDATION_FAILED');
    const afterCount = dbQuery<{ n: number }>(w, 'select count(*) as n from file_versions')[0]!.n;
    assert.equal(afterCount, before);
  });

  test('413 for a file over the account’s limit (raw and form), with no version recorded', async () => {
    const tenant = await w.newAccount();
    await w.wharf.core.keys.updateAccount(tenant.accountId, { maxFileSize: 1000 });
    const auth = { authorization: `Bearer ${tenant.key}` };
    const raw = await readJson(
      fetch(`${w.url}${PREFIX}/rewards/big.png`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'image/png' },
        body: new Uint8Array(randomBytes(2000)),
      }),
    );
    assertError(raw, 413, 'FILE_TOO_LARGE');
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(randomBytes(2000))], { type: 'image/png' }), 'big.png');
    assertError(
      await readJson(
        fetch(`${w.url}${PREFIX}/rewards/big.png`, { method: 'POST', headers: auth, body: form }),
      ),
      413,
      'FILE_TOO_LARGE',
    );
    assertError(await get('/rewards/big.png', auth), 404, 'NOT_FOUND');
    const fits = await readJson(
      fetch(`${w.url}${PREFIX}/rewards/big.png`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'image/png' },
        body: new Uint8Array(randomBytes(1000)),
      }),
    );
    assert.equal(fits.status, 200);
    assert.equal(fits.body.file.version, 1);
  });

  test('400 for a second file in one form and for a malformed form; nothing recorded', async () => {
    const form = new FormData();
    form.append('file', new Blob(['one']), 'one.txt');
    form.append('file2', new Blob(['two']), 'two.txt');
    assertError(
      await readJson(
        fetch(`${w.url}${PREFIX}/docs/two.txt`, {
          method: 'POST',
          headers: { authorization: basic() },
          body: form,
        }),
      ),
      400,
      'TOO_MANY_FILES',
    );
    const { body, contentType } = rawMultipart(Buffer.from('cut.txt'), 'abc');
    const truncated = await readJson(
      fetch(`${w.url}${PREFIX}/docs/cut.txt`, {
        method: 'POST',
        headers: { authorization: basic(), 'content-type': contentType },
        body: new Uint8Array(body.subarray(0, body.length - 20)),
      }),
    );
    assertError(truncated, 400, 'VALIDATION_FAILED');
    const noBoundary = await readJson(
      fetch(`${w.url}${PREFIX}/docs/cut.txt`, {
        method: 'POST',
        headers: { authorization: basic(), 'content-type': 'multipart/form-data' },
        body: 'x',
      }),
    );
    assertError(noBoundary, 400, 'VALIDATION_FAILED');
    assertError(await get('/docs/two.txt'), 404, 'NOT_FOUND');
    assertError(await get('/docs/cut.txt'), 404, 'NOT_FOUND');
  });

  test('400 CHECKSUM_MISMATCH for a body that does not match a declared digest (the file raw, the whole form multipart); nothing recorded', async () => {
    const wrong = Buffer.from('other bytes');
    const headers: Array<[string, (b: Buffer) => Record<string, string>]> = [
      ['Content-MD5', (b) => ({ 'content-md5': b64(md5Hex(b)) })],
      ['Content-Digest', (b) => ({ 'content-digest': `sha-256=:${b64(sha256Hex(b))}:` })],
      ['Repr-Digest', (b) => ({ 'repr-digest': `sha-256=:${b64(sha256Hex(b))}:` })],
    ];
    const boundary = 'file-service-digest-boundary';
    const formType = `multipart/form-data; boundary=${boundary}`;
    for (const [label, declare] of headers) {
      const bytes = randomBytes(2000);
      // RFC 1864 and RFC 9530 define the headers over the request body: of a form, the whole
      // form with its boundaries (built here so that its digest is known), not the file in it.
      const form = Buffer.concat([
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.png"\r\n` +
            'Content-Type: image/png\r\n\r\n',
        ),
        bytes,
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      const raw = await readJson(
        fetch(`${w.url}${PREFIX}/checked/raw-${label}.png`, {
          method: 'POST',
          headers: { authorization: basic(), 'content-type': 'image/png', ...declare(wrong) },
          body: new Uint8Array(bytes),
        }),
      );
      assertError(raw, 400, 'CHECKSUM_MISMATCH');
      for (const notTheForm of [wrong, bytes]) {
        const formed = await readJson(
          fetch(`${w.url}${PREFIX}/checked/form-${label}.png`, {
            method: 'POST',
            headers: { authorization: basic(), 'content-type': formType, ...declare(notTheForm) },
            body: new Uint8Array(form),
          }),
        );
        assertError(formed, 400, 'CHECKSUM_MISMATCH');
      }
      assertError(await get(`/checked/raw-${label}.png`), 404, 'NOT_FOUND');
      assertError(await get(`/checked/form-${label}.png`), 404, 'NOT_FOUND');
      assert.deepEqual(dbQuery(w, 'select id from assets where sha256 = ?', sha256Hex(bytes)), [], label);

      // The file's digest on the raw body and the form's on the form are accepted.
      const good = await readJson(
        fetch(`${w.url}${PREFIX}/checked/raw-${label}.png`, {
          method: 'POST',
          headers: { authorization: basic(), 'content-type': 'image/png', ...declare(bytes) },
          body: new Uint8Array(bytes),
        }),
      );
      assert.equal(good.status, 200, JSON.stringify(good.body));
      const goodForm = await readJson(
        fetch(`${w.url}${PREFIX}/checked/form-${label}.png`, {
          method: 'POST',
          headers: { authorization: basic(), 'content-type': formType, ...declare(form) },
          body: new Uint8Array(form),
        }),
      );
      assert.equal(goodForm.status, 200, JSON.stringify(goodForm.body));
      assert.equal(goodForm.body.file.version, 1);
    }
    // A form without a file records a placeholder: its digest is still the whole form's.
    const empty = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--${boundary}--\r\n`,
    );
    const emptyWrong = await readJson(
      fetch(`${w.url}${PREFIX}/checked/empty-form.png`, {
        method: 'POST',
        headers: { authorization: basic(), 'content-type': formType, 'content-md5': b64(md5Hex('')) },
        body: new Uint8Array(empty),
      }),
    );
    assertError(emptyWrong, 400, 'CHECKSUM_MISMATCH');
    assertError(await get('/checked/empty-form.png'), 404, 'NOT_FOUND');
    const emptyRight = await readJson(
      fetch(`${w.url}${PREFIX}/checked/empty-form.png`, {
        method: 'POST',
        headers: { authorization: basic(), 'content-type': formType, 'content-md5': b64(md5Hex(empty)) },
        body: new Uint8Array(empty),
      }),
    );
    assert.equal(emptyRight.status, 200, JSON.stringify(emptyRight.body));
    const disagree = await readJson(
      fetch(`${w.url}${PREFIX}/checked/disagree.png`, {
        method: 'POST',
        headers: {
          authorization: basic(),
          'content-type': 'image/png',
          'content-digest': `sha-256=:${b64(sha256Hex('x'))}:`,
          'repr-digest': `sha-256=:${b64(sha256Hex('y'))}:`,
        },
        body: 'x',
      }),
    );
    assertError(disagree, 400, 'INVALID_DIGEST');
  });

  test('415 for a Content-Type header that is not a media type', async () => {
    const res = await readJson(
      fetch(`${w.url}${PREFIX}/docs/bad-type.txt`, {
        method: 'POST',
        headers: { authorization: basic(), 'content-type': 'not a type' },
        body: 'x',
      }),
    );
    assertError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });
});

describe('OpenAPI', () => {
  test('every file-service route is documented under its tag', async () => {
    const doc = await api(w.url, undefined, 'GET', '/openapi.json');
    const paths = Object.keys(doc.body.paths).filter((p) => p.startsWith(PREFIX));
    assert.deepEqual(paths.sort(), [
      `${PREFIX}/{namespace}/{name}`,
      `${PREFIX}/{namespace}/{name}/content`,
      `${PREFIX}/{namespace}/{name}/versions`,
    ]);
    for (const path of paths) {
      for (const op of Object.values(doc.body.paths[path]) as any[]) {
        assert.deepEqual(op.tags, ['file-service']);
        assert.equal(typeof op.summary, 'string');
      }
    }
  });
});
