import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { curl } from '../helpers/curl.js';
import { deployment } from '../helpers/deployment.js';
import { api, b64, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

const run = promisify(execFile);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const PRESIGNED = '/api/inspect/v1/file/upload/presigned';
const COMPLETE = '/api/inspect/v1/file/upload/complete';
const FILE = (id: string) => `/api/inspect/v1/file/${id}`;

let w: TestWharf;
let dir: string;

before(async () => {
  w = await startWharf();
  dir = await mkdtemp(join(tmpdir(), 'wharf-inspect-'));
});

after(async () => {
  await w?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Writes bytes to a file the curl commands can --upload-file. */
async function fileOf(name: string, bytes: Buffer): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

/**
 * The document's own recipe for the `hash` field, run in a shell:
 * `sha256sum file | awk '{print $1}' | xxd -r -p | base64`. Where xxd is not installed the
 * same digest comes from `openssl dgst -sha256 -binary file | base64`.
 */
async function documentHash(path: string): Promise<string> {
  const hasXxd = await run('bash', ['-c', 'command -v xxd']).then(
    () => true,
    () => false,
  );
  const script = hasXxd
    ? `sha256sum "$1" | awk '{print $1}' | xxd -r -p | base64`
    : `openssl dgst -sha256 -binary "$1" | base64`;
  const { stdout } = await run('bash', ['-c', script, 'hash', path]);
  return stdout.trim();
}

/** The presigned-URL request as the document describes it, sent by curl with a Bearer key. */
async function requestPresigned(body: Record<string, unknown>, key = w.key) {
  const res = await curl([
    '-X',
    'POST',
    '-H',
    `Authorization: Bearer ${key}`,
    '-H',
    'Content-Type: application/json',
    '--data-binary',
    JSON.stringify(body),
    w.url + PRESIGNED,
  ]);
  return { status: res.status, body: JSON.parse(res.body) };
}

/** The document's upload command, with only the URL and the file changed. */
function putWithCurl(contentType: string, path: string, url: string) {
  return curl(['-X', 'PUT', '-H', `Content-Type: ${contentType}`, '--upload-file', path, url]);
}

function assertError(
  res: { status: number; body: Record<string, unknown> },
  status: number,
  error: string,
): void {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.deepEqual(Object.keys(res.body).sort(), ['error', 'errorDescription']);
  assert.equal(res.body.error, error);
  const description = res.body.errorDescription;
  assert.ok(
    typeof description === 'string' && description.length > 0,
    'errorDescription is a non-empty string',
  );
}

async function png(width: number, height: number): Promise<Buffer> {
  return sharp({
    create: { width, height, channels: 3, background: { r: width % 256, g: height % 256, b: 90 } },
  })
    .png()
    .toBuffer();
}

describe('the document flow: presigned URL, curl PUT, completion', () => {
  let image: Buffer;
  let path: string;
  let hash: string;
  let fileId: string;
  let assetId: string;
  const entityId = randomUUID();

  before(async () => {
    image = await png(37, 21);
    path = await fileOf('file.png', image);
    hash = await documentHash(path);
  });

  test("the document's hash recipe gives the base64 SHA-256 of the file", () => {
    assert.equal(hash, b64(sha256Hex(image)));
  });

  test('201: a presigned URL and a file id', async () => {
    // The entity as the document names it: `id` ("Unique identifier (ID) for the entity").
    const res = await requestPresigned({
      id: entityId,
      contentType: 'image/png',
      hash,
      name: 'file.png',
      size: image.length,
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.deepEqual(Object.keys(res.body), ['data']);
    assert.deepEqual(Object.keys(res.body.data).sort(), ['id', 'presignedURL']);
    assert.match(res.body.data.id, UUID);
    assert.equal(typeof res.body.data.presignedURL, 'string');
    assert.doesNotThrow(() => new URL(res.body.data.presignedURL));
    fileId = res.body.data.id;

    // Before the bytes arrive the file is known but pending.
    const pending = await api(w.url, w.key, 'GET', FILE(fileId));
    assert.equal(pending.status, 200);
    assert.deepEqual(pending.body.data, {
      id: fileId,
      entityId,
      name: 'file.png',
      contentType: 'image/png',
      size: image.length,
      hash,
      status: 'pending',
      assetId: null,
      createdAt: pending.body.data.createdAt,
    });
    assert.ok(!Number.isNaN(Date.parse(pending.body.data.createdAt)));

    // The document's own upload command.
    const put = await putWithCurl('image/png', path, res.body.data.presignedURL);
    assert.equal(put.status, 200, put.body);
  });

  test('completion verifies the bytes and marks the file uploaded', async () => {
    const res = await api(w.url, w.key, 'POST', COMPLETE, { id: fileId });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const data = res.body.data;
    assert.equal(data.id, fileId);
    assert.equal(data.entityId, entityId);
    assert.equal(data.name, 'file.png');
    assert.equal(data.contentType, 'image/png');
    assert.equal(data.size, image.length);
    assert.equal(data.hash, hash);
    assert.equal(data.status, 'uploaded');
    assert.match(data.assetId, UUID);
    assetId = data.assetId;

    // Completing again changes nothing.
    const again = await api(w.url, w.key, 'POST', COMPLETE, { fileID: fileId });
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, res.body);

    const read = await api(w.url, undefined, 'GET', FILE(fileId), undefined, {
      authorization: `Bearer ${w.key}`,
    });
    assert.equal(read.status, 200);
    assert.deepEqual(read.body, res.body);
  });

  test('the file is an asset of the native API, with its entity id and image facts', async () => {
    await w.wharf.core.jobs.drain();
    const native = await api(w.url, w.key, 'GET', `/v1/assets/${assetId}`);
    assert.equal(native.status, 200);
    assert.equal(native.body.id, assetId);
    assert.equal(native.body.name, 'file.png');
    assert.equal(native.body.content_type, 'image/png');
    assert.equal(native.body.size, image.length);
    assert.equal(native.body.sha256, sha256Hex(image));
    assert.equal(native.body.status, 'ready');
    assert.deepEqual(native.body.metadata, { entityId });
    assert.equal(native.body.analysis.width, 37);
    assert.equal(native.body.analysis.height, 21);

    const content = await fetch(`${w.url}/v1/assets/${assetId}/content`, { headers: { 'x-api-key': w.key } });
    assert.equal(content.status, 200);
    assert.deepEqual(Buffer.from(await content.arrayBuffer()), image);
  });

  test('200: the same file again is not uploaded twice; its id reads and completes', async () => {
    const res = await requestPresigned({
      entityID: randomUUID(),
      contentType: 'image/png',
      hash,
      name: 'copy.png',
      size: image.length,
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body, { data: { id: assetId } });

    const read = await api(w.url, w.key, 'GET', FILE(assetId));
    assert.equal(read.status, 200);
    assert.deepEqual(read.body.data, {
      id: assetId,
      entityId,
      name: 'file.png',
      contentType: 'image/png',
      size: image.length,
      hash,
      status: 'uploaded',
      assetId,
      createdAt: read.body.data.createdAt,
    });
    const complete = await api(w.url, w.key, 'POST', COMPLETE, { id: assetId });
    assert.equal(complete.status, 200);
    assert.deepEqual(complete.body, read.body);
  });

  test('a file uploaded through the native API is found by its hash here', async () => {
    const bytes = randomBytes(3000);
    const uploaded = await fetch(`${w.url}/v1/assets?name=native.bin`, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(bytes),
    });
    assert.equal(uploaded.status, 201);
    const { asset } = (await uploaded.json()) as { asset: { id: string } };
    const res = await requestPresigned({
      entity_id: 'entity-7',
      contentType: 'application/octet-stream',
      hash: b64(sha256Hex(bytes)),
      name: 'again.bin',
      size: bytes.length,
    });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { data: { id: asset.id } });
    const read = await api(w.url, w.key, 'GET', FILE(asset.id));
    assert.equal(read.status, 200);
    assert.equal(read.body.data.entityId, null);
    assert.equal(read.body.data.hash, b64(sha256Hex(bytes)));
  });
});

describe('the entity id', () => {
  const declaration = (bytes: Buffer) => ({
    contentType: 'application/octet-stream',
    hash: b64(sha256Hex(bytes)),
    name: 'entity.bin',
    size: bytes.length,
  });

  test('every spelling names the same entity; the same value twice is fine', async () => {
    for (const fields of [
      { id: 'e-id' },
      { entityId: 'e-entityId' },
      { entityID: 'e-entityID' },
      { entity_id: 'e-entity_id' },
      { id: 'e-both', entityId: 'e-both' },
    ]) {
      const res = await requestPresigned({ ...fields, ...declaration(randomBytes(100)) });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const read = await api(w.url, w.key, 'GET', FILE(res.body.data.id));
      assert.equal(read.body.data.entityId, Object.values(fields)[0]);
    }
  });

  test('a request without one is not refused: the file belongs to no entity', async () => {
    const bytes = randomBytes(200);
    const res = await requestPresigned(declaration(bytes));
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const put = await fetch(res.body.data.presignedURL, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(bytes),
    });
    assert.equal(put.status, 200, await put.text());
    const done = await api(w.url, w.key, 'POST', COMPLETE, { id: res.body.data.id });
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.data.entityId, null);
    assert.equal(done.body.data.status, 'uploaded');
    const native = await api(w.url, w.key, 'GET', `/v1/assets/${done.body.data.assetId}`);
    assert.deepEqual(native.body.metadata, {});
  });
});

describe('a file as it stands when read', () => {
  test('an upload that ended by time reads as expired here, as in the native API; a read completes nothing', async () => {
    // A tus upload of the account: its file id reads here too, and it ends at its expiry.
    const tus = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${w.key}`,
        'Tus-Resumable': '1.0.0',
        'Upload-Length': '100',
        'Upload-Metadata': `filename ${Buffer.from('lapsed.bin').toString('base64')}`,
      },
    });
    assert.equal(tus.status, 201, await tus.text());
    const tusId = new URL(tus.headers.get('location')!).pathname.split('/').pop()!.split('.')[0]!;
    // A file whose bytes arrived, read by a key that may only read: it stays as it was.
    const bytes = randomBytes(12);
    const created = await requestPresigned({
      contentType: 'application/octet-stream',
      hash: b64(sha256Hex(bytes)),
      name: 'read-only.bin',
      size: bytes.length,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const fileId: string = created.body.data.id;
    const put = await fetch(created.body.data.presignedURL, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(bytes),
    });
    assert.equal(put.status, 200, await put.text());
    const reader = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'inspect-reader', scopes: ['read'] });
    assert.equal(reader.status, 201, JSON.stringify(reader.body));
    const read = await api(w.url, reader.body.secret, 'GET', FILE(fileId));
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.equal(read.body.data.status, 'pending');
    assert.equal(read.body.data.assetId, null);
    assert.equal((await api(w.url, w.key, 'GET', `/v1/uploads/${fileId}`)).body.status, 'pending');

    const now = w.clock.now();
    try {
      // Past the tus upload's day, and the presigned URL's 15 minutes and the hour after them.
      w.clock.advance(24 * 3600_000 + 1000);
      for (const id of [tusId, fileId]) {
        const native = await api(w.url, w.key, 'GET', `/v1/uploads/${id}`);
        assert.equal(native.body.status, 'expired', JSON.stringify(native.body));
        const file = await api(w.url, w.key, 'GET', FILE(id));
        assert.equal(file.status, 200, JSON.stringify(file.body));
        assert.equal(file.body.data.status, 'expired', `${native.body.kind}: as the native API shows it`);
      }
    } finally {
      w.clock.set(now);
    }
  });
});

describe('storage accepts only what was declared', () => {
  async function presign(bytes: Buffer, contentType = 'image/png') {
    const res = await requestPresigned({
      entityId: 'entity-1',
      contentType,
      hash: b64(sha256Hex(bytes)),
      name: 'photo.png',
      size: bytes.length,
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body.data as { id: string; presignedURL: string };
  }

  test('a PUT with another Content-Type is refused and nothing is uploaded', async () => {
    const bytes = await png(11, 12);
    const { id, presignedURL } = await presign(bytes);
    const put = await putWithCurl('image/jpeg', await fileOf('wrong-type.png', bytes), presignedURL);
    assert.equal(put.status, 403, put.body);
    assertError(await api(w.url, w.key, 'POST', COMPLETE, { id }), 409, 'Conflict');
    const read = await api(w.url, w.key, 'GET', FILE(id));
    assert.equal(read.body.data.status, 'pending');
  });

  test('the Content-Type as the client declared it, in any case, is what the PUT may send; the asset records it lower-cased', async () => {
    for (const [declared, recorded] of [
      ['image/PNG', 'image/png'],
      ['text/plain; charset=UTF-8', 'text/plain; charset=utf-8'],
    ] as const) {
      const bytes = Buffer.from(`declared as ${declared} ${randomBytes(6).toString('hex')}`);
      const { id, presignedURL } = await presign(bytes, declared);
      const put = await putWithCurl(
        declared,
        await fileOf(`case-${randomBytes(3).toString('hex')}.bin`, bytes),
        presignedURL,
      );
      assert.equal(put.status, 200, `${declared}: ${put.body}`);
      const done = await api(w.url, w.key, 'POST', COMPLETE, { id });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      const read = await api(w.url, w.key, 'GET', FILE(id));
      assert.equal(read.body.data.status, 'uploaded', JSON.stringify(read.body));
      const native = await api(w.url, w.key, 'GET', `/v1/assets?limit=1000`);
      const asset = native.body.data.find((a: { sha256: string }) => a.sha256 === sha256Hex(bytes));
      assert.equal(asset.content_type, recorded);
    }
  });

  test('a PUT of another size is refused', async () => {
    const bytes = await png(13, 12);
    const { id, presignedURL } = await presign(bytes);
    const put = await putWithCurl('image/png', await fileOf('short.png', bytes.subarray(1)), presignedURL);
    assert.equal(put.status, 403, put.body);
    assertError(await api(w.url, w.key, 'POST', COMPLETE, { id }), 409, 'Conflict');
  });

  test('bytes with another SHA-256 never become a file; the right ones still can', async () => {
    const bytes = randomBytes(4096);
    const other = randomBytes(4096);
    const { id, presignedURL } = await presign(bytes, 'application/octet-stream');
    const put = await putWithCurl('application/octet-stream', await fileOf('other.bin', other), presignedURL);
    if (deployment === 'embedded') {
      // Wharf's own endpoint knows the declared hash and refuses the body.
      assert.equal(put.status, 400, put.body);
      assert.match(put.body, /<Code>BadDigest<\/Code>/);
    } else {
      // The document's client sends no checksum header, so an S3 store cannot compare the
      // hash on PUT (it may take the bytes); completion is where they are refused.
      assert.ok(put.status === 200 || put.status === 400, `${put.status} ${put.body}`);
    }
    const refused = await api(w.url, w.key, 'POST', COMPLETE, { id });
    if (deployment === 'embedded') assertError(refused, 409, 'Conflict');
    else
      assertError(refused, put.status === 200 ? 400 : 409, put.status === 200 ? 'Bad Request' : 'Conflict');

    const read = await api(w.url, w.key, 'GET', FILE(id));
    assert.equal(read.body.data.status, 'pending');
    assert.equal(read.body.data.assetId, null);
    const found = await api(w.url, w.key, 'GET', `/v1/assets?limit=100`);
    assert.equal(found.status, 200);
    const hashes = (found.body.data as { sha256: string }[]).map((a) => a.sha256);
    assert.ok(!hashes.includes(sha256Hex(other)), 'the wrong bytes became an asset');

    // The URL is still valid: the right bytes go through.
    const retry = await putWithCurl(
      'application/octet-stream',
      await fileOf('right.bin', bytes),
      presignedURL,
    );
    assert.equal(retry.status, 200, retry.body);
    const done = await api(w.url, w.key, 'POST', COMPLETE, { fileId: id });
    assert.equal(done.status, 200);
    assert.equal(done.body.data.status, 'uploaded');
    assert.equal(done.body.data.hash, b64(sha256Hex(bytes)));
  });
});

describe('errors: {"error", "errorDescription"} with the documented statuses', () => {
  const valid = {
    entityId: 'e-1',
    contentType: 'text/plain',
    hash: b64(sha256Hex('abc')),
    name: 'a.txt',
    size: 3,
  };

  test('401 without a key or with a wrong one', async () => {
    assertError(await api(w.url, undefined, 'POST', PRESIGNED, valid), 401, 'Unauthorized');
    assertError(await api(w.url, 'wharf_wrong_key', 'POST', PRESIGNED, valid), 401, 'Unauthorized');
    assertError(
      await api(w.url, undefined, 'GET', FILE(randomUUID()), undefined, { authorization: 'Bearer nope' }),
      401,
      'Unauthorized',
    );
  });

  test('403 for a disabled account and over the storage quota', async () => {
    const disabled = await w.newAccount();
    await w.wharf.core.keys.updateAccount(disabled.accountId, { disabled: true });
    assertError(await requestPresigned(valid, disabled.key), 403, 'Forbidden');

    const small = await w.newAccount();
    await w.wharf.core.keys.updateAccount(small.accountId, { storageQuota: 2 });
    assertError(await requestPresigned(valid, small.key), 403, 'Forbidden');
  });

  test('400 for missing or malformed fields and bodies', async () => {
    const cases: [string, unknown][] = [
      ['no hash', { ...valid, hash: undefined }],
      ['no contentType', { ...valid, contentType: undefined }],
      ['no name', { ...valid, name: undefined }],
      ['no size', { ...valid, size: undefined }],
      ['entity ids that disagree', { ...valid, entity_id: 'e-2' }],
      ['id and entityId that disagree', { ...valid, id: 'e-2' }],
      ['an empty id', { ...valid, entityId: undefined, id: '' }],
      ['size as text', { ...valid, size: '3' }],
      ['negative size', { ...valid, size: -1 }],
      ['hash of 16 bytes', { ...valid, hash: Buffer.alloc(16).toString('base64') }],
      ['hash not base64', { ...valid, hash: 'not a hash!' }],
      ['contentType without a subtype', { ...valid, contentType: 'png' }],
      ['name with a slash', { ...valid, name: '../a.txt' }],
      ['not an object', [valid]],
    ];
    for (const [label, body] of cases) {
      const res = await api(w.url, w.key, 'POST', PRESIGNED, JSON.parse(JSON.stringify(body)));
      assert.equal(res.status, 400, `${label}: ${JSON.stringify(res.body)}`);
      assertError(res, 400, 'Bad Request');
    }
    const broken = await fetch(w.url + PRESIGNED, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'application/json' },
      body: '{"entityId": ',
    });
    assertError({ status: broken.status, body: await broken.json() }, 400, 'Bad Request');
    const form = await fetch(w.url + PRESIGNED, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'text/plain' },
      body: 'hello',
    });
    assertError({ status: form.status, body: await form.json() }, 400, 'Bad Request');

    assertError(await api(w.url, w.key, 'GET', FILE('not-a-uuid')), 400, 'Bad Request');
    assertError(await api(w.url, w.key, 'POST', COMPLETE, { id: 'not-a-uuid' }), 400, 'Bad Request');
    assertError(await api(w.url, w.key, 'POST', COMPLETE, {}), 400, 'Bad Request');
  });

  test('a file larger than the account may store is 400', async () => {
    const limited = await w.newAccount();
    await w.wharf.core.keys.updateAccount(limited.accountId, { maxFileSize: 2 });
    assertError(await requestPresigned(valid, limited.key), 400, 'Bad Request');
  });

  test("404 for unknown ids, another account's file and unknown routes", async () => {
    assertError(await api(w.url, w.key, 'GET', FILE(randomUUID())), 404, 'Not Found');
    assertError(await api(w.url, w.key, 'POST', COMPLETE, { id: randomUUID() }), 404, 'Not Found');

    const created = await requestPresigned({ ...valid, hash: b64(sha256Hex(randomBytes(8))), size: 8 });
    assert.equal(created.status, 201);
    const stranger = await w.newAccount();
    assertError(await api(w.url, stranger.key, 'GET', FILE(created.body.data.id)), 404, 'Not Found');
    assertError(
      await api(w.url, stranger.key, 'POST', COMPLETE, { id: created.body.data.id }),
      404,
      'Not Found',
    );

    assertError(await api(w.url, w.key, 'GET', '/api/inspect/v1/nothing-here'), 404, 'Not Found');
  });

  test('409 when completing before any bytes arrived', async () => {
    const created = await requestPresigned({ ...valid, hash: b64(sha256Hex(randomBytes(9))), size: 9 });
    assert.equal(created.status, 201);
    assertError(await api(w.url, w.key, 'POST', COMPLETE, { id: created.body.data.id }), 409, 'Conflict');
  });

  test('410 when completing more than an hour after the URL expired, though the bytes arrived in time', async () => {
    const bytes = randomBytes(10);
    const created = await requestPresigned({
      ...valid,
      contentType: 'application/octet-stream',
      hash: b64(sha256Hex(bytes)),
      size: bytes.length,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const put = await fetch(created.body.data.presignedURL, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(bytes),
    });
    assert.equal(put.status, 200, await put.text());
    const now = w.clock.now();
    try {
      // The URL's 15 minutes, the hour after them, and no sweep has run.
      w.clock.advance(15 * 60_000 + 3600_000 + 1000);
      assertError(await api(w.url, w.key, 'POST', COMPLETE, { id: created.body.data.id }), 410, 'Gone');
    } finally {
      w.clock.set(now);
    }
  });

  test('500 when the database fails, without internals', async () => {
    const broken = await startWharf();
    try {
      const created = await api(broken.url, broken.key, 'POST', PRESIGNED, valid);
      assert.equal(created.status, 201);
      breakUploadsTable(broken);
      const res = await api(broken.url, broken.key, 'GET', FILE(created.body.data.id));
      assertError(res, 500, 'Internal Server Error');
      assert.doesNotMatch(res.body.errorDescription, /uploads|SQL|table/i);
    } finally {
      await broken.close();
    }
  });
});

/** A real fault: the table of uploads disappears under the running server. */
function breakUploadsTable(target: TestWharf): void {
  const sql = 'alter table uploads rename to uploads_gone';
  if (/^postgres(ql)?:/.test(target.databaseUrl)) {
    execFileSync('psql', [target.databaseUrl, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
    return;
  }
  const db = new Database(join(target.dataDir, 'wharf.db'));
  try {
    db.exec(sql);
  } finally {
    db.close();
  }
}
