import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { uploadRaw } from '../helpers/assets.js';
import { curl } from '../helpers/curl.js';
import { onS3 } from '../helpers/deployment.js';
import { api, md5Hex, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * Seed 004 (FileSpin): GET content_storage_url, the document's curl -F POST to storage,
 * then register_asset, with only the base URL and key changed.
 */

const DAY_MS = 86_400_000;
let w: TestWharf;
let dir: string;
let photo: { path: string; bytes: Buffer };

before(async () => {
  w = await startWharf();
  dir = await mkdtemp(join(tmpdir(), 'wharf-filespin-'));
  photo = await jpeg('photo.jpg', 64, 48);
});
after(async () => {
  await w?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function jpeg(name: string, width: number, height: number, red = 200) {
  const bytes = await sharp({ create: { width, height, channels: 3, background: { r: red, g: 80, b: 40 } } })
    .jpeg()
    .toBuffer();
  const path = join(dir, name);
  await writeFile(path, bytes);
  return { path, bytes };
}

interface StorageUrl {
  asset_id: string;
  storage: {
    name: string;
    url: string;
    fields: Record<string, string>;
    protocol: string;
    expiry: number;
    key: string;
    bucket: string;
    storage_type: string;
  };
}

/** GET content_storage_url with FileSpin's key header. */
function storageUrl(query: Record<string, string>, key: string | null = w.key) {
  const headers: Record<string, string> = key === null ? {} : { 'X-FileSpin-Api-Key': key };
  return api<StorageUrl>(
    w.url,
    undefined,
    'GET',
    `/api/v1/assets/new/content_storage_url?${new URLSearchParams(query)}`,
    undefined,
    headers,
  );
}

async function newStorageUrl(filename = 'photo.jpg', key = w.key, extra: Record<string, string> = {}) {
  const res = await storageUrl({ filename, ...extra }, key);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

/** The document's upload command: every storage field with curl -F, then the file. */
function upload(storage: StorageUrl['storage'], path: string, fields = storage.fields) {
  const args = ['-X', 'POST', storage.url];
  for (const [name, value] of Object.entries(fields)) args.push('-F', `${name}=${value}`);
  args.push('-F', `file=@${path}`);
  return curl(args);
}

/** The document's register command, run with curl. */
function register(body: unknown, key: string = w.key) {
  return curl([
    '-X',
    'POST',
    `${w.url}/api/v1/assets/new/register_asset`,
    '-H',
    `X-FileSpin-Api-Key: ${key}`,
    '-H',
    'Content-Type: application/json',
    '-d',
    typeof body === 'string' ? body : JSON.stringify(body),
  ]);
}

function documentedBody(assetId: string, bytes: Buffer) {
  return {
    asset_id: assetId,
    size: bytes.length,
    checksum: md5Hex(bytes),
    upload_time: '2024-05-15T15:43:02Z',
    upload_started_at: '2024-05-15T15:43:00Z',
    upload_completed_at: '2024-05-15T15:43:02Z',
    service_data: {
      app: 'MyApp',
      build: '1.0.0',
      deployment_data: { client: 'WebUploader', location: 'LONDON' },
      network_bandwidth: 50,
    },
  };
}

function s3Code(body: string): string | undefined {
  return /<Code>([^<]+)<\/Code>/.exec(body)?.[1];
}

function assertError(res: { status: number; body: unknown }, status: number, code: string) {
  const body = typeof res.body === 'string' ? JSON.parse(res.body) : res.body;
  assert.equal(res.status, status, JSON.stringify(body));
  assert.deepEqual(Object.keys(body).sort(), ['error', 'message']);
  assert.equal(body.error, code);
  assert.equal(typeof body.message, 'string');
  assert.ok(body.message.length > 0);
}

describe('FileSpin: the three-step upload as documented', () => {
  let storage: StorageUrl;
  let registered: Record<string, unknown>;

  test('content_storage_url answers the example response, field by field', async () => {
    storage = await newStorageUrl('photo.jpg');
    assert.deepEqual(Object.keys(storage).sort(), ['asset_id', 'storage']);
    assert.match(storage.asset_id, /^[0-9a-f]{32}$/);
    const s = storage.storage;
    assert.deepEqual(Object.keys(s).sort(), [
      'bucket',
      'expiry',
      'fields',
      'key',
      'name',
      'protocol',
      'storage_type',
      'url',
    ]);
    assert.equal(s.name, 'photo.jpg');
    assert.equal(typeof s.url, 'string');
    assert.match(s.url, /^https?:\/\//);
    assert.equal(s.protocol, 'POST');
    assert.equal(s.expiry, 86400);
    assert.equal(s.storage_type, 'AMAZON_S3');
    assert.equal(s.key, `/${s.fields.key}`);
    assert.equal(s.bucket, onS3(w) ? w.backingEnv.WHARF_S3_BUCKET : 'wharf');

    const f = s.fields;
    for (const name of [
      'key',
      'x-amz-algorithm',
      'x-amz-credential',
      'x-amz-date',
      'policy',
      'x-amz-signature',
    ]) {
      assert.equal(typeof f[name], 'string', name);
      assert.ok(f[name]!.length > 0, name);
    }
    assert.equal(Object.keys(f)[0], 'key', 'the example lists key first');
    for (const name of Object.keys(f))
      assert.equal(name, name.toLowerCase(), 'names as the example spells them');
    assert.equal(f['x-amz-algorithm'], 'AWS4-HMAC-SHA256');
    assert.match(f['x-amz-credential']!, /^[^/]+\/\d{8}\/[a-z0-9-]+\/s3\/aws4_request$/);
    assert.match(f['x-amz-date']!, /^\d{8}T\d{6}Z$/);
    assert.match(f['x-amz-signature']!, /^[0-9a-f]{64}$/);
    // The policy expires with the document's 24 hours.
    const policy = JSON.parse(Buffer.from(f.policy!, 'base64').toString('utf8'));
    const signedAt = Date.parse(
      f['x-amz-date']!.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z'),
    );
    assert.equal(Date.parse(policy.expiration), signedAt + DAY_MS);
    assert.ok(policy.conditions.some((c: unknown) => JSON.stringify(c) === JSON.stringify({ key: f.key })));
  });

  test("the document's curl -F command uploads the file to storage.url", async () => {
    const res = await upload(storage.storage, photo.path);
    assert.equal(res.status, 204, res.body);
  });

  test('register_asset with the documented body verifies size and checksum and registers', async () => {
    const res = await register(documentedBody(storage.asset_id, photo.bytes));
    assert.equal(res.status, 200, res.body);
    assert.match(res.headers, /^content-type: application\/json/im);
    registered = JSON.parse(res.body);
    assert.deepEqual(Object.keys(registered).sort(), [
      'asset_id',
      'checksum',
      'content_type',
      'duplicate',
      'name',
      'service_data',
      'sha256',
      'size',
      'status',
      'upload_completed_at',
      'upload_started_at',
      'upload_time',
      'wharf_asset_id',
    ]);
    assert.equal(registered.asset_id, storage.asset_id);
    assert.equal(registered.status, 'processing');
    assert.equal(registered.name, 'photo.jpg');
    // The form's content-type field, which carries the file name's type: as on S3, the file
    // part's own header does not name the object's type.
    assert.equal(registered.content_type, 'image/jpeg');
    assert.equal(registered.size, photo.bytes.length);
    assert.equal(registered.checksum, md5Hex(photo.bytes));
    assert.equal(registered.sha256, sha256Hex(photo.bytes));
    assert.equal(registered.upload_time, '2024-05-15T15:43:02Z');
    assert.equal(registered.upload_started_at, '2024-05-15T15:43:00Z');
    assert.equal(registered.upload_completed_at, '2024-05-15T15:43:02Z');
    assert.deepEqual(registered.service_data, documentedBody('', photo.bytes).service_data);
    assert.equal(registered.duplicate, false);
    assert.match(String(registered.wharf_asset_id), /^[0-9a-f-]{36}$/);
  });

  test('the asset is visible in the native API, and processing runs once jobs are drained', async () => {
    const path = `/v1/assets/${registered.wharf_asset_id}`;
    const before = await api(w.url, w.key, 'GET', path);
    assert.equal(before.status, 200, JSON.stringify(before.body));
    assert.equal(before.body.name, 'photo.jpg');
    assert.equal(before.body.content_type, registered.content_type);
    assert.equal(before.body.size, photo.bytes.length);
    assert.equal(before.body.md5, md5Hex(photo.bytes));
    assert.equal(before.body.sha256, sha256Hex(photo.bytes));
    assert.equal(before.body.status, 'ready');
    assert.equal(before.body.processing, 'pending');
    assert.equal(before.body.metadata.filespin_asset_id, storage.asset_id);
    // What register_asset reported is kept with the asset.
    assert.deepEqual(before.body.metadata.filespin, {
      upload_time: '2024-05-15T15:43:02Z',
      upload_started_at: '2024-05-15T15:43:00Z',
      upload_completed_at: '2024-05-15T15:43:02Z',
      service_data: documentedBody('', photo.bytes).service_data,
    });

    await w.wharf.core.jobs.drain();
    const done = await api(w.url, w.key, 'GET', path);
    assert.equal(done.body.processing, 'done');
    assert.equal(done.body.analysis.format, 'jpg');
    assert.equal(done.body.analysis.mime, 'image/jpeg');
    assert.equal(done.body.analysis.width, 64);
    assert.equal(done.body.analysis.height, 48);

    const content = await fetch(`${w.url}${path}/content`, { headers: { 'x-api-key': w.key } });
    assert.deepEqual(Buffer.from(await content.arrayBuffer()), photo.bytes);
  });

  test('registering again is idempotent and reports the processed asset as registered', async () => {
    const res = await register(documentedBody(storage.asset_id, photo.bytes));
    assert.equal(res.status, 200, res.body);
    const again = JSON.parse(res.body);
    assert.equal(again.wharf_asset_id, registered.wharf_asset_id);
    assert.equal(again.status, 'registered');
  });
});

describe('FileSpin: register_asset is idempotent under concurrency', () => {
  test('sent four times at once, eight times over: every answer is 200 with the one asset', async () => {
    // The completion moves the POSTed bytes to a sealed key; the copies racing it must not
    // fail (on S3 a copy whose source another completion had already moved answered 500).
    for (let round = 0; round < 8; round++) {
      const file = await jpeg(`race-${round}.jpg`, 32, 24, 10 + round);
      const storage = await newStorageUrl(`race-${round}.jpg`);
      assert.equal((await upload(storage.storage, file.path)).status, 204);
      const body = JSON.stringify(documentedBody(storage.asset_id, file.bytes));
      const answers = await Promise.all(
        Array.from({ length: 4 }, () =>
          fetch(`${w.url}/api/v1/assets/new/register_asset`, {
            method: 'POST',
            headers: { 'x-filespin-api-key': w.key, 'content-type': 'application/json' },
            body,
          }).then(async (res) => ({ status: res.status, body: await res.text() })),
        ),
      );
      for (const answer of answers) assert.equal(answer.status, 200, `round ${round}: ${answer.body}`);
      const ids = new Set(answers.map((a) => JSON.parse(a.body).asset_id));
      assert.deepEqual([...ids], [storage.asset_id]);
    }
  });
});

describe("FileSpin: the file's type", () => {
  let png: { path: string; bytes: Buffer };
  let token: string;
  let tokenId: string;
  before(async () => {
    const bytes = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#102030' } })
      .png()
      .toBuffer();
    png = { path: join(dir, 'pic.png'), bytes };
    await writeFile(png.path, bytes);
    const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', { content_types: ['image/png'] });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    token = minted.body.secret;
    tokenId = minted.body.token.id;
  });

  /** The three steps with `key`. */
  async function flow(filename: string, key: string) {
    const { storage, asset_id } = await newStorageUrl(filename, key);
    const posted = await upload(storage, png.path);
    assert.equal(posted.status, 204, posted.body);
    return register(documentedBody(asset_id, png.bytes), key);
  }

  test("the file gets the file name's type and is served with it; the form carries none", async () => {
    const { storage } = await newStorageUrl('pic.png');
    assert.ok(!Object.keys(storage.fields).some((name) => name.toLowerCase() === 'content-type'));
    const policy = JSON.parse(Buffer.from(storage.fields.policy!, 'base64').toString('utf8'));
    assert.ok(!JSON.stringify(policy.conditions).toLowerCase().includes('content-type'));

    const res = await flow('pic.png', w.key);
    assert.equal(res.status, 200, res.body);
    const registered = JSON.parse(res.body);
    assert.equal(registered.content_type, 'image/png');
    const asset = await api(w.url, w.key, 'GET', `/v1/assets/${registered.wharf_asset_id}`);
    assert.equal(asset.body.content_type, 'image/png');
    const content = await fetch(`${w.url}/v1/assets/${registered.wharf_asset_id}/content`, {
      headers: { 'x-api-key': w.key },
    });
    assert.equal(content.headers.get('content-type'), 'image/png');
    await content.arrayBuffer();
  });

  test("the seed's exact curl -F (its six fields and the file) uploads, and the file has the name's type", async () => {
    // The document's upload names key, x-amz-algorithm, x-amz-credential, x-amz-date, policy
    // and x-amz-signature, nothing else. A policy that had a condition on a Content-Type field
    // refused that form on the embedded storage (403 AccessDenied), as S3 does.
    const seedFields = [
      'key',
      'x-amz-algorithm',
      'x-amz-credential',
      'x-amz-date',
      'policy',
      'x-amz-signature',
    ] as const;
    const bytes = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#405060' } })
      .png()
      .toBuffer();
    const path = join(dir, 'seed.png');
    await writeFile(path, bytes);
    const { storage, asset_id } = await newStorageUrl('seed.png');
    const form = Object.fromEntries(seedFields.map((name) => [name, storage.fields[name]!]));
    const posted = await upload(storage, path, form);
    assert.equal(posted.status, 204, posted.body);
    const res = await register(documentedBody(asset_id, bytes));
    assert.equal(res.status, 200, res.body);
    const registered = JSON.parse(res.body);
    assert.equal(registered.duplicate, false);
    assert.equal(registered.content_type, 'image/png');
    const asset = await api(w.url, w.key, 'GET', `/v1/assets/${registered.wharf_asset_id}`);
    assert.equal(asset.body.content_type, 'image/png');
  });

  test('a Content-Type field sent anyway is an extra input field, refused as S3 refuses it', async () => {
    const { storage, asset_id } = await newStorageUrl('picture.bin');
    const posted = await upload(storage, png.path, { ...storage.fields, 'Content-Type': 'image/png' });
    assert.equal(posted.status, 403, posted.body);
    assert.equal(s3Code(posted.body), 'AccessDenied');
    assertError(await register(documentedBody(asset_id, png.bytes)), 400, 'UPLOAD_INCOMPLETE');
  });

  test('a name without a known type gives application/octet-stream', async () => {
    // Bytes of its own: the PNG's are registered already, and a duplicate answers that asset.
    const bytes = randomBytes(3000);
    const path = join(dir, 'notes.unknownext');
    await writeFile(path, bytes);
    const { storage, asset_id } = await newStorageUrl('notes.unknownext');
    const posted = await upload(storage, path);
    assert.equal(posted.status, 204, posted.body);
    const res = await register(documentedBody(asset_id, bytes));
    assert.equal(res.status, 200, res.body);
    assert.equal(JSON.parse(res.body).content_type, 'application/octet-stream');
  });

  test('an upload token limited to image/png registers a PNG; another name is refused at once', async () => {
    const named = await flow('pic.png', token);
    assert.equal(named.status, 200, named.body);
    assert.equal(JSON.parse(named.body).content_type, 'image/png');

    // The type is the name's and nothing sent later changes it, so the form is not made.
    assertError(await storageUrl({ filename: 'scan.pdf' }, token), 403, 'CONTENT_TYPE_DENIED');
    const held = (await api(w.url, w.key, 'GET', `/v1/upload-tokens/${tokenId}`)).body.usage;
    assert.deepEqual([held.bytes_reserved, held.files_reserved, held.open_uploads], [0, 0, 0]);
  });
});

describe('FileSpin: content_storage_url options and errors', () => {
  test('an asset_id of the caller is used; using it again is 400 ASSET_ID_EXISTS', async () => {
    const id = 'ec279822540b412e903827f473bb53a3';
    const first = await newStorageUrl('report.pdf', w.key, { asset_id: id, protocol: 'POST' });
    assert.equal(first.asset_id, id);
    assert.equal(first.storage.name, 'report.pdf');
    assertError(await storageUrl({ filename: 'other.pdf', asset_id: id }), 400, 'ASSET_ID_EXISTS');
  });

  test("an upload token's form lives as long as the token, and expiry says so", async () => {
    // expiry used to say the document's 86400 while the policy expired with a 10-minute token.
    const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', { expires_in: 600 });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const { storage } = await newStorageUrl('soon.jpg', minted.body.secret);
    assert.equal(storage.expiry, 600);
    const policy = JSON.parse(Buffer.from(storage.fields.policy!, 'base64').toString('utf8'));
    const signedAt = Date.parse(
      storage.fields['x-amz-date']!.replace(
        /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/,
        '$1-$2-$3T$4:$5:$6Z',
      ),
    );
    assert.equal(Date.parse(policy.expiration), signedAt + storage.expiry * 1000);
    // A token that outlives the document's day changes nothing: its forms live 24 hours.
    const long = await api(w.url, w.key, 'POST', '/v1/upload-tokens', { expires_in: 86400 });
    assert.equal((await newStorageUrl('later.jpg', long.body.secret)).storage.expiry, 86400);
  });

  test('a missing or empty filename is 400 MISSING_MANDATORY_PARAMETERS', async () => {
    assertError(await storageUrl({}), 400, 'MISSING_MANDATORY_PARAMETERS');
    assertError(await storageUrl({ filename: '' }), 400, 'MISSING_MANDATORY_PARAMETERS');
  });

  test('a protocol other than POST is 400 INVALID_REQUEST', async () => {
    assertError(await storageUrl({ filename: 'a.jpg', protocol: 'PUT' }), 400, 'INVALID_REQUEST');
  });

  test('an asset_id storage cannot carry is 400 INVALID_REQUEST', async () => {
    assertError(
      await storageUrl({ filename: 'a.jpg', asset_id: 'has spaces/and slashes' }),
      400,
      'INVALID_REQUEST',
    );
  });

  test('a missing or invalid key is 401; Wharf key headers work too', async () => {
    assertError(await storageUrl({ filename: 'a.jpg' }, null), 401, 'UNAUTHORIZED');
    assertError(await storageUrl({ filename: 'a.jpg' }, 'wharf_not_a_real_key_at_all'), 401, 'UNAUTHORIZED');
    const query = '/api/v1/assets/new/content_storage_url?filename=a.jpg';
    assert.equal((await api(w.url, w.key, 'GET', query)).status, 200);
    const bearer = await api(w.url, undefined, 'GET', query, undefined, { authorization: `Bearer ${w.key}` });
    assert.equal(bearer.status, 200);
  });
});

describe('FileSpin: storage enforces the POST policy', () => {
  test('a file above the account limit is 400 EntityTooLarge and cannot be registered', async () => {
    const tenant = await w.newAccount();
    await w.wharf.core.keys.updateAccount(tenant.accountId, { maxFileSize: photo.bytes.length - 1 });
    const storage = await newStorageUrl('photo.jpg', tenant.key);
    const res = await upload(storage.storage, photo.path);
    assert.equal(res.status, 400, res.body);
    assert.equal(s3Code(res.body), 'EntityTooLarge');
    assertError(
      await register(documentedBody(storage.asset_id, photo.bytes), tenant.key),
      400,
      'UPLOAD_INCOMPLETE',
    );
  });

  test('a tampered signature is 403 and stores nothing', async () => {
    const { storage, asset_id } = await newStorageUrl();
    const signature = storage.fields['x-amz-signature']!;
    const res = await upload(storage, photo.path, {
      ...storage.fields,
      'x-amz-signature': `${signature[0] === '0' ? '1' : '0'}${signature.slice(1)}`,
    });
    assert.equal(res.status, 403, res.body);
    if (!onS3(w)) assert.equal(s3Code(res.body), 'SignatureDoesNotMatch');
    const registerRes = await register(documentedBody(asset_id, photo.bytes));
    assertError(registerRes, 400, 'UPLOAD_INCOMPLETE');
  });

  test('another key than the policy names is 403 AccessDenied', async () => {
    const { storage } = await newStorageUrl();
    const res = await upload(storage, photo.path, { ...storage.fields, key: `${storage.fields.key}.other` });
    assert.equal(res.status, 403, res.body);
    assert.equal(s3Code(res.body), 'AccessDenied');
  });

  test('after its 24 hours the policy has expired: 403 AccessDenied', async () => {
    // Issued two days ago: expired both for Wharf's clock and for an object store's.
    const now = w.clock.now();
    w.clock.set(now - 2 * DAY_MS);
    let storage: StorageUrl;
    try {
      storage = await newStorageUrl();
    } finally {
      w.clock.set(now);
    }
    const res = await upload(storage.storage, photo.path);
    assert.equal(res.status, 403, res.body);
    assert.equal(s3Code(res.body), 'AccessDenied');
  });
});

describe('FileSpin: register_asset errors', () => {
  test('each missing mandatory parameter is 400 MISSING_MANDATORY_PARAMETERS', async () => {
    const full = documentedBody('0123456789abcdef0123456789abcdef', photo.bytes);
    for (const field of ['asset_id', 'size', 'checksum'] as const) {
      const body: Record<string, unknown> = { ...full };
      delete body[field];
      const res = await register(body);
      assertError(res, 400, 'MISSING_MANDATORY_PARAMETERS');
    }
    const empty = await register('{}');
    assertError(empty, 400, 'MISSING_MANDATORY_PARAMETERS');
    const none = await curl([
      '-X',
      'POST',
      `${w.url}/api/v1/assets/new/register_asset`,
      '-H',
      `X-FileSpin-Api-Key: ${w.key}`,
      '-H',
      'Content-Type: application/json',
    ]);
    assertError(none, 400, 'MISSING_MANDATORY_PARAMETERS');
  });

  test('wrong types, a checksum that is not hex MD5, or broken JSON are 400 INVALID_REQUEST', async () => {
    const full = documentedBody('0123456789abcdef0123456789abcdef', photo.bytes);
    for (const body of [
      { ...full, size: String(full.size) },
      { ...full, checksum: 'not-an-md5' },
      { ...full, service_data: 'text' },
      '{"asset_id": ',
    ]) {
      const res = await register(body);
      assertError(res, 400, 'INVALID_REQUEST');
    }
  });

  test('an unknown asset_id is 404 ASSET_NOT_FOUND; one without an upload yet is 400 UPLOAD_INCOMPLETE', async () => {
    const unknown = await register(documentedBody('ffffffffffffffffffffffffffffffff', photo.bytes));
    assertError(unknown, 404, 'ASSET_NOT_FOUND');
    const { asset_id } = await newStorageUrl();
    const early = await register(documentedBody(asset_id, photo.bytes));
    assertError(early, 400, 'UPLOAD_INCOMPLETE');
  });

  test('a file POSTed in time registers until an hour after the form expired; past that 400 UPLOAD_EXPIRED', async () => {
    const late = await jpeg('late.jpg', 33, 17, 77);
    const { storage, asset_id } = await newStorageUrl('late.jpg');
    assert.equal((await upload(storage, late.path)).status, 204);
    const now = w.clock.now();
    try {
      // The form's lifetime, the hour after it, and no sweep has run.
      w.clock.advance(storage.expiry * 1000 + 3600_000 + 1000);
      assertError(await register(documentedBody(asset_id, late.bytes)), 400, 'UPLOAD_EXPIRED');
    } finally {
      w.clock.set(now);
    }
  });

  test('a wrong checksum or size is refused and the bytes dropped; POST again, then register', async () => {
    const other = await jpeg('other.jpg', 32, 32, 10);
    const { storage, asset_id } = await newStorageUrl('other.jpg');
    assert.equal((await upload(storage, other.path)).status, 204);
    const wrongSum = await register({ ...documentedBody(asset_id, other.bytes), checksum: md5Hex('else') });
    assertError(wrongSum, 400, 'CHECKSUM_MISMATCH');

    assert.equal((await upload(storage, other.path)).status, 204);
    const wrongSize = await register({
      ...documentedBody(asset_id, other.bytes),
      size: other.bytes.length + 1,
    });
    assertError(wrongSize, 400, 'SIZE_MISMATCH');

    assert.equal((await upload(storage, other.path)).status, 204);
    const ok = await register(documentedBody(asset_id, other.bytes));
    assert.equal(ok.status, 200, ok.body);
    assert.equal(JSON.parse(ok.body).checksum, md5Hex(other.bytes));
  });

  test('a missing or invalid key is 401 UNAUTHORIZED', async () => {
    const bad = await register(documentedBody('0123456789abcdef0123456789abcdef', photo.bytes), 'nope');
    assertError(bad, 401, 'UNAUTHORIZED');
    const none = await api(w.url, undefined, 'POST', '/api/v1/assets/new/register_asset', {});
    assertError(none, 401, 'UNAUTHORIZED');
    // Without a key, the answer names the header FileSpin's document sends it in.
    assert.match(none.body.message, /X-FileSpin-Api-Key/);
    const noneGet = await storageUrl({ filename: 'a.jpg' }, null);
    assert.match((noneGet.body as unknown as { message: string }).message, /X-FileSpin-Api-Key/);
  });

  test('a body in a Content-Encoding is 415 UNSUPPORTED_MEDIA_TYPE, not broken JSON', async () => {
    const { gzipSync } = await import('node:zlib');
    const json = JSON.stringify(documentedBody('0123456789abcdef0123456789abcdef', photo.bytes));
    const res = await fetch(`${w.url}/api/v1/assets/new/register_asset`, {
      method: 'POST',
      headers: {
        'X-FileSpin-Api-Key': w.key,
        'content-type': 'application/json',
        'content-encoding': 'gzip',
      },
      body: new Uint8Array(gzipSync(json)),
    });
    const body = await res.text();
    assertError({ status: res.status, body }, 415, 'UNSUPPORTED_MEDIA_TYPE');
    assert.match(JSON.parse(body).message, /Content-Encoding gzip/);
  });
});

describe('FileSpin: paths and methods it does not have', () => {
  test('are 404 NOT_FOUND in its shape, never ASSET_NOT_FOUND', async () => {
    const base = `${w.url}/api/v1/assets/new`;
    for (const [method, url] of [
      ['PUT', `${base}/register_asset`],
      ['GET', `${base}/register_asset`],
      ['POST', `${base}/content_storage_url?filename=a.jpg`],
      ['GET', `${base}/content_storage_url/?filename=a.jpg`],
      ['GET', `${base}/no_such_route`],
    ] as const) {
      const res = await fetch(url, { method, headers: { 'X-FileSpin-Api-Key': w.key } });
      const body = await res.text();
      assertError({ status: res.status, body }, 404, 'NOT_FOUND');
      assert.match(JSON.parse(body).message, /^No route /, `${method} ${url}`);
    }
  });
});

describe('FileSpin: 403 for disabled accounts and exceeded upload limits', () => {
  test('a disabled account is 403 ACCOUNT_DISABLED on both routes', async () => {
    const tenant = await w.newAccount();
    const { storage, asset_id } = await newStorageUrl('photo.jpg', tenant.key);
    assert.equal((await upload(storage, photo.path)).status, 204);
    await w.wharf.core.keys.updateAccount(tenant.accountId, { disabled: true });
    assertError(await storageUrl({ filename: 'a.jpg' }, tenant.key), 403, 'ACCOUNT_DISABLED');
    const res = await register(documentedBody(asset_id, photo.bytes), tenant.key);
    assertError(res, 403, 'ACCOUNT_DISABLED');

    await w.wharf.core.keys.updateAccount(tenant.accountId, { disabled: false });
    assert.equal((await register(documentedBody(asset_id, photo.bytes), tenant.key)).status, 200);
  });

  test('an account over its upload limit is 403 UPLOAD_LIMIT_EXCEEDED', async () => {
    const tenant = await w.newAccount();
    await w.wharf.core.keys.updateAccount(tenant.accountId, { storageQuota: photo.bytes.length + 10 });
    const first = await newStorageUrl('photo.jpg', tenant.key);
    const second = await newStorageUrl('big.jpg', tenant.key);
    const big = await jpeg('big.jpg', 80, 80, 30);
    assert.equal((await upload(first.storage, photo.path)).status, 204);
    const posted = await upload(second.storage, big.path);
    assert.equal((await register(documentedBody(first.asset_id, photo.bytes), tenant.key)).status, 200);

    const over = await register(documentedBody(second.asset_id, big.bytes), tenant.key);
    if (onS3(w)) {
      // The bucket knows nothing of quotas: registering would take the account past its limit.
      assert.equal(posted.status, 204, posted.body);
      assertError(over, 403, 'UPLOAD_LIMIT_EXCEEDED');
    } else {
      // Wharf's own storage holds a form's file against the quota as it arrives: it did not fit.
      assert.equal(posted.status, 403, posted.body);
      assert.equal(s3Code(posted.body), 'QuotaExceeded');
      assertError(over, 400, 'UPLOAD_INCOMPLETE');
    }

    // Once the limit is used up, no new storage URL is given.
    await w.wharf.core.keys.updateAccount(tenant.accountId, { storageQuota: photo.bytes.length - 1 });
    assertError(await storageUrl({ filename: 'more.jpg' }, tenant.key), 403, 'UPLOAD_LIMIT_EXCEEDED');
  });
});

describe("FileSpin: what a form holds against the quota and a token's budget", () => {
  async function usage(key: string) {
    const res = await api(w.url, key, 'GET', '/v1/account');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.usage as { bytes_used: number; bytes_reserved: number };
  }

  test('storage URLs nobody uses hold nothing: the account and a token can still upload', async () => {
    // Two files' worth of quota: each unused form (a picker opened and cancelled) used to hold a
    // whole file's worth for its 24 hours, so two locked the account out of every upload.
    const tenant = await w.newAccount();
    const limit = photo.bytes.length + 100;
    await w.wharf.core.keys.updateAccount(tenant.accountId, { maxFileSize: limit, storageQuota: 2 * limit });
    const minted = await api(w.url, tenant.key, 'POST', '/v1/upload-tokens', { max_bytes: limit });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const token = minted.body.secret as string;
    for (const name of ['cancelled1.jpg', 'cancelled2.jpg', 'cancelled3.jpg']) {
      await newStorageUrl(name, tenant.key);
      await newStorageUrl(name, token);
    }
    assert.equal((await usage(tenant.key)).bytes_reserved, 0);

    for (const key of [tenant.key, token]) {
      const { storage, asset_id } = await newStorageUrl('photo.jpg', key);
      assert.equal((await upload(storage, photo.path)).status, 204);
      // Wharf's own storage holds the file as it arrives; S3 tells Wharf nothing until register.
      if (!onS3(w)) assert.equal((await usage(tenant.key)).bytes_reserved, photo.bytes.length);
      const res = await register(documentedBody(asset_id, photo.bytes), key);
      assert.equal(res.status, 200, res.body);
    }
    // The same content twice: stored once.
    const after = await usage(tenant.key);
    assert.deepEqual([after.bytes_used, after.bytes_reserved], [photo.bytes.length, 0]);
    // Content the account holds costs nothing as it arrives either, for a key that may learn so.
    const again = await newStorageUrl('again.jpg', tenant.key);
    assert.equal((await upload(again.storage, photo.path)).status, 204);
    assert.equal((await usage(tenant.key)).bytes_reserved, 0);
    // The native API too.
    const native = await uploadRaw(w, tenant.key, 'tiny.bin', 'tiny');
    assert.equal(native.status, 201, JSON.stringify(native.body));
  });

  test('a file register refuses holds nothing once its bytes are dropped; the form still works', async () => {
    // A refused file (wrong checksum or size) used to keep holding its size for the form's
    // whole day on the embedded deployment, where storage holds a file as it arrives: its bytes
    // were gone, yet the quota and the token's max_bytes refused other files. (An S3 bucket
    // tells Wharf nothing until register, so there nothing was ever held.)
    for (const via of ['the account key', 'an upload token'] as const) {
      const tenant = await w.newAccount();
      const room = photo.bytes.length + 1_000;
      await w.wharf.core.keys.updateAccount(tenant.accountId, { storageQuota: room });
      let key = tenant.key;
      let tokenId: string | undefined;
      if (via === 'an upload token') {
        const minted = await api(w.url, tenant.key, 'POST', '/v1/upload-tokens', { max_bytes: room });
        assert.equal(minted.status, 201, JSON.stringify(minted.body));
        key = minted.body.secret;
        tokenId = minted.body.token.id;
      }
      const tokenUsage = async () =>
        (await api(w.url, tenant.key, 'GET', `/v1/upload-tokens/${tokenId}`)).body.usage;
      const { storage, asset_id } = await newStorageUrl('photo.jpg', key);
      for (const [code, wrong] of [
        ['CHECKSUM_MISMATCH', { checksum: md5Hex('else') }],
        ['SIZE_MISMATCH', { size: photo.bytes.length + 1 }],
      ] as const) {
        assert.equal((await upload(storage, photo.path)).status, 204);
        assertError(await register({ ...documentedBody(asset_id, photo.bytes), ...wrong }, key), 400, code);
        assert.equal((await usage(tenant.key)).bytes_reserved, 0, `${via}, ${code}`);
        if (tokenId) {
          // Still an open form, as one nobody has sent: its file slot, none of its bytes.
          const held = await tokenUsage();
          assert.deepEqual(
            [held.bytes_reserved, held.files_reserved, held.open_uploads],
            [0, 1, 1],
            `${via}, ${code}`,
          );
        }
      }
      if (!tokenId) {
        // The whole quota is free for another file (the refused one held photo.bytes.length).
        const spare = await uploadRaw(w, key, 'spare.bin', randomBytes(1_001));
        assert.equal(spare.status, 201, JSON.stringify(spare.body));
        const id = (spare.body as { asset: { id: string } }).asset.id;
        assert.equal((await api(w.url, key, 'DELETE', `/v1/assets/${id}`)).status, 204);
      }
      // The form stays valid: sent again, the right bytes register.
      assert.equal((await upload(storage, photo.path)).status, 204);
      const ok = await register(documentedBody(asset_id, photo.bytes), key);
      assert.equal(ok.status, 200, ok.body);
      const after = await usage(tenant.key);
      assert.deepEqual([after.bytes_used, after.bytes_reserved], [photo.bytes.length, 0], via);
      if (tokenId) {
        const done = await tokenUsage();
        assert.deepEqual(
          [done.bytes_used, done.bytes_reserved, done.files_reserved, done.open_uploads],
          [photo.bytes.length, 0, 0, 0],
        );
      }
    }
  });

  test('files that do not fit together: one is refused, as it arrives or when registered', async () => {
    const tenant = await w.newAccount();
    const other = await jpeg('other-fit.jpg', 64, 48, 90);
    await w.wharf.core.keys.updateAccount(tenant.accountId, {
      storageQuota: photo.bytes.length + other.bytes.length - 1,
    });
    const forms = [
      { file: photo, url: await newStorageUrl('photo.jpg', tenant.key) },
      { file: other, url: await newStorageUrl('other-fit.jpg', tenant.key) },
    ];
    const posted = await Promise.all(forms.map((f) => upload(f.url.storage, f.file.path)));
    const registered = await Promise.all(
      forms.map((f) => register(documentedBody(f.url.asset_id, f.file.bytes), tenant.key)),
    );
    assert.equal(registered.filter((r) => r.status === 200).length, 1);
    const refused = registered.find((r) => r.status !== 200)!;
    if (onS3(w)) {
      assert.deepEqual(
        posted.map((p) => p.status),
        [204, 204],
      );
      assertError(refused, 403, 'UPLOAD_LIMIT_EXCEEDED');
    } else {
      assert.deepEqual(posted.map((p) => p.status).sort(), [204, 403]);
      assert.equal(s3Code(posted.find((p) => p.status === 403)!.body), 'QuotaExceeded');
      assertError(refused, 400, 'UPLOAD_INCOMPLETE');
    }
    const { bytes_used, bytes_reserved } = await usage(tenant.key);
    assert.ok(bytes_used <= photo.bytes.length + other.bytes.length - 1, String(bytes_used));
    assert.equal(bytes_reserved, 0);
  });
});

test('the FileSpin routes are in the OpenAPI document', async () => {
  const doc = (await api(w.url, undefined, 'GET', '/openapi.json')).body;
  const get = doc.paths['/api/v1/assets/new/content_storage_url']?.get;
  const post = doc.paths['/api/v1/assets/new/register_asset']?.post;
  assert.deepEqual(get?.tags, ['FileSpin']);
  assert.deepEqual(post?.tags, ['FileSpin']);
  assert.ok(get.summary && post.summary);
});
