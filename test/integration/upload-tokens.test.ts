import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { Upload } from 'tus-js-client';
import {
  complete,
  dbQuery,
  declare,
  eventually,
  putPresigned,
  readJson,
  uploadForm,
  uploadRaw,
} from '../helpers/assets.js';
import { holdsObject, onS3, pendingWrites, storedKeys } from '../helpers/deployment.js';
import { answerOf, api, type JsonResponse, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// Upload tokens over real HTTP: minted by a back end's key, used alone on every upload flow,
// limits that hold when 50 requests race them, revocation and expiry seen at once by another
// node, and what a token may read.

let w: TestWharf;
before(async () => {
  // The limits below are raced by 50 bodies of one token at once: above the default cap on a
  // token's bodies streaming at once (32), which upload-streams.test.ts tests on its own.
  w = await startWharf({ env: { WHARF_MAX_UPLOAD_STREAMS_PER_TOKEN: '64' } });
});
after(async () => {
  await w?.close();
});

interface Minted {
  id: string;
  secret: string;
  token: Record<string, string | number | null | object>;
}

async function mint(body: Record<string, unknown> = {}, key = w.key, server = w): Promise<Minted> {
  const res = await api(server.url, key, 'POST', '/v1/upload-tokens', body);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return { id: res.body.token.id, secret: res.body.secret, token: res.body.token };
}

async function usage(token: Minted, server = w): Promise<Record<string, number>> {
  const res = await api(server.url, server.key, 'GET', `/v1/upload-tokens/${token.id}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.usage;
}

function refused(res: JsonResponse, code: string, label: string, status = 403): void {
  assert.equal(res.status, status, `${label}: ${JSON.stringify(res.body)}`);
  assert.equal(res.body?.error?.code, code, `${label}: ${JSON.stringify(res.body)}`);
}

function bearer(secret: string): Record<string, string> {
  return { authorization: `Bearer ${secret}` };
}

/** Waits (by moving the clock and running jobs) until storage-side completion has happened. */
async function settled(uploadId: string, key = w.key): Promise<JsonResponse> {
  let state = await api(w.url, key, 'GET', `/v1/uploads/${uploadId}`);
  for (let i = 0; i < 10 && state.body.status === 'pending'; i += 1) {
    w.clock.advance(60_000);
    await w.wharf.core.jobs.drain();
    state = await api(w.url, key, 'GET', `/v1/uploads/${uploadId}`);
  }
  return state;
}

function tusUpload(secret: string, bytes: Buffer, metadata: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const upload = new Upload(bytes, {
      endpoint: `${w.url}/v1/tus/`,
      headers: bearer(secret),
      metadata,
      retryDelays: [],
      onError: reject,
      onSuccess: (payload) => resolve(payload.lastResponse.getHeader('Wharf-Asset-Id') ?? ''),
    });
    upload.start();
  });
}

describe('minting', () => {
  test('a key mints a token: a random secret with a prefix, stored only as a hash, with its limits', async () => {
    const t0 = w.clock.now();
    const { id, secret, token } = await mint({
      subject: 'user-42',
      metadata: { album: 'summer' },
      max_files: 3,
      max_bytes: 1000,
      max_file_size: 500,
      content_types: ['image/*', 'application/pdf'],
      max_open_uploads: 2,
    });
    assert.match(secret, /^wharf_ut_[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
    assert.equal(token.prefix, secret.slice(0, 15));
    assert.equal(token.status, 'active');
    assert.equal(token.expires_at, new Date(t0 + 3600_000).toISOString(), 'an hour by default');
    assert.deepEqual(
      [token.subject, token.metadata, token.max_files, token.max_bytes, token.max_file_size],
      ['user-42', { album: 'summer' }, 3, 1000, 500],
    );
    assert.deepEqual(token.content_types, ['image/*', 'application/pdf']);
    assert.deepEqual(token.usage, {
      files_used: 0,
      bytes_used: 0,
      files_reserved: 0,
      bytes_reserved: 0,
      open_uploads: 0,
    });
    const got = await api(w.url, w.key, 'GET', `/v1/upload-tokens/${id}`);
    assert.deepEqual(got.body, token);
    const listed = await api(w.url, w.key, 'GET', '/v1/upload-tokens');
    assert.deepEqual(listed.body.data[0], token, 'newest first');
    assert.ok(!JSON.stringify(listed.body).includes(secret));

    const rows = dbQuery<Record<string, unknown>>(w, 'select * from upload_tokens where id = ?', id);
    assert.equal(rows[0]!.secret_hash, createHash('sha256').update(secret).digest('hex'));
    assert.ok(!JSON.stringify(rows).includes(secret.slice(15)), 'the secret itself is stored nowhere');
  });

  test('bad requests are 400 and mint nothing', async () => {
    const before = (await api(w.url, w.key, 'GET', '/v1/upload-tokens?limit=1000')).body.data.length;
    for (const body of [
      { expires_in: 0 },
      { expires_in: 86_401 },
      { max_files: 0 },
      { max_bytes: -1 },
      { content_types: [] },
      { content_types: ['pictures'] },
      { content_types: ['image/*', 'x'] },
      // A wildcard type would match no file (types are compared as type/subtype).
      { content_types: ['*/csv'] },
      { metadata: 'text' },
      { metadata: { big: 'x'.repeat(17_000) } },
      { subject: '' },
      { subject: 'line\nbreak' },
      { name_prefix: 'a/b' },
      { namespace: '../up' },
      { max_open_uploads: 101 },
      { scopes: ['admin'] },
    ]) {
      const res = await api(w.url, w.key, 'POST', '/v1/upload-tokens', body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
    }
    assert.equal((await api(w.url, w.key, 'GET', '/v1/upload-tokens?limit=1000')).body.data.length, before);
  });

  test('max_file_size is never above the account’s limit: a larger one is lowered to it', async () => {
    const tenant = await w.newAccount();
    await w.wharf.core.keys.updateAccount(tenant.accountId, { maxFileSize: 1000 });
    const capped = await mint({ max_file_size: 99_999_999_999_999 }, tenant.key);
    assert.equal(capped.token.max_file_size, 1000);
    const got = await api(w.url, tenant.key, 'GET', `/v1/upload-tokens/${capped.id}`);
    assert.equal(got.body.max_file_size, 1000);
    assert.equal((await mint({ max_file_size: 500 }, tenant.key)).token.max_file_size, 500, 'below: kept');
    assert.equal((await mint({}, tenant.key)).token.max_file_size, null, 'none: the account’s limit');
    const over = await uploadRaw(w, capped.secret, 'big.bin', randomBytes(1001));
    refused(over, 'FILE_TOO_LARGE', 'over the limit it shows', 413);
    assert.equal(over.body.error.details.limit, 1000);
    // An account without a limit of its own has the server's (5 GiB by default).
    const server = await mint({ max_file_size: 99_999_999_999_999 });
    assert.equal(server.token.max_file_size, 5 * 1024 ** 3);
  });

  test('only admin and upload keys mint; a token never grants more than its key', async () => {
    const make = async (body: Record<string, unknown>) =>
      (await api(w.url, w.key, 'POST', '/v1/keys', { name: 'k', ...body })).body.secret as string;
    refused(
      await api(w.url, await make({ scopes: ['read'] }), 'POST', '/v1/upload-tokens', {}),
      'SCOPE_DENIED',
      'read',
    );
    refused(
      await api(w.url, await make({ scopes: ['write'] }), 'POST', '/v1/upload-tokens', {}),
      'SCOPE_DENIED',
      'write',
    );
    const token = await mint();
    refused(await api(w.url, token.secret, 'POST', '/v1/upload-tokens', {}), 'SCOPE_DENIED', 'a token');

    const confined = await make({ scopes: ['upload'], name_prefix: 'u7-', namespace: 'user7' });
    const inherited = await mint({}, confined);
    assert.deepEqual([inherited.token.name_prefix, inherited.token.namespace], ['u7-', 'user7']);
    assert.equal((await mint({ name_prefix: 'u7-photos-' }, confined)).token.name_prefix, 'u7-photos-');
    refused(
      await api(w.url, confined, 'POST', '/v1/upload-tokens', { name_prefix: 'u8-' }),
      'NAME_PREFIX_DENIED',
      'prefix',
    );
    refused(
      await api(w.url, confined, 'POST', '/v1/upload-tokens', { namespace: 'user8' }),
      'NAMESPACE_DENIED',
      'ns',
    );

    // An upload key sees and revokes only the tokens it minted.
    const own = await api(w.url, confined, 'GET', '/v1/upload-tokens?limit=1000');
    assert.ok(own.body.data.length >= 2);
    assert.ok(own.body.data.every((t: { key_id: string }) => t.key_id === inherited.token.key_id));
    refused(await api(w.url, confined, 'GET', `/v1/upload-tokens/${token.id}`), 'NOT_FOUND', 'get', 404);
    refused(
      await api(w.url, confined, 'DELETE', `/v1/upload-tokens/${token.id}`),
      'NOT_FOUND',
      'revoke',
      404,
    );
    assert.equal((await api(w.url, confined, 'DELETE', `/v1/upload-tokens/${inherited.id}`)).status, 204);
  });
});

describe('every upload flow works with only the token', () => {
  let token: Minted;
  const sizes: number[] = [];
  const assets: string[] = [];
  before(async () => {
    token = await mint({ subject: 'user-42', metadata: { album: 'summer' }, max_files: 50 });
  });

  async function expectStamped(assetId: string, bytes: Buffer): Promise<void> {
    const asset = await api(w.url, token.secret, 'GET', `/v1/assets/${assetId}`);
    assert.equal(asset.status, 200, JSON.stringify(asset.body));
    assert.equal(asset.body.sha256, sha256Hex(bytes));
    assert.equal(asset.body.subject, 'user-42');
    assert.equal(asset.body.metadata.album, 'summer');
    sizes.push(bytes.length);
    assets.push(assetId);
  }

  test('direct: raw body and multipart form', async () => {
    const raw = randomBytes(700);
    const res = await uploadRaw(w, token.secret, 'raw.bin', raw, { headers: bearer(token.secret) });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    await expectStamped(res.body.asset.id, raw);
    const form = randomBytes(300);
    const viaForm = await uploadForm(w, token.secret, 'form.bin', form);
    assert.equal(viaForm.status, 201, JSON.stringify(viaForm.body));
    await expectStamped(viaForm.body.asset.id, form);
  });

  test('presigned: one file, and a batch', async () => {
    const one = randomBytes(200);
    const intent = await declare(w, token.secret, { name: 'one.bin', size: one.length });
    assert.equal((await putPresigned(intent, one)).status, 200);
    const done = await complete(w, token.secret, intent.id);
    assert.equal(done.status, 200, JSON.stringify(done.body));
    await expectStamped(done.body.asset.id, one);

    const files = [randomBytes(10), randomBytes(20)];
    const batch = await api(w.url, token.secret, 'POST', '/v1/uploads', {
      files: files.map((f, i) => ({ name: `b${i}.bin`, size: f.length, sha256: sha256Hex(f) })),
    });
    assert.equal(batch.status, 201, JSON.stringify(batch.body));
    for (const [i, item] of batch.body.uploads.entries()) {
      assert.equal((await putPresigned(item, files[i]!)).status, 200);
      const finished = await complete(w, token.secret, item.id);
      await expectStamped(finished.body.asset.id, files[i]!);
    }
  });

  test('multipart: create, sign, PUT the part, complete', async () => {
    const bytes = randomBytes(1500);
    const created = await api(w.url, token.secret, 'POST', '/v1/multipart', {
      name: 'big.bin',
      size: bytes.length,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const signed = await api(w.url, token.secret, 'POST', `/v1/multipart/${created.body.id}/parts`, {
      partNumbers: [1],
    });
    const part = signed.body.parts[0];
    const put = await fetch(part.url, { method: 'PUT', headers: part.headers, body: new Uint8Array(bytes) });
    assert.equal(put.status, 200, await put.text());
    const done = await api(w.url, token.secret, 'POST', `/v1/multipart/${created.body.id}/complete`, {
      parts: [{ PartNumber: 1, ETag: put.headers.get('etag') }],
    });
    assert.equal(done.status, 200, JSON.stringify(done.body));
    await expectStamped(done.body.asset.id, bytes);
  });

  test('the Uppy 6 signing endpoint: PutObject signed for the token, PUT, completed', async () => {
    const bytes = randomBytes(900);
    const signed = await api(w.url, token.secret, 'POST', '/v1/s3/sign', {
      method: 'PUT',
      key: 'c0ffee00-0000-4000-8000-000000000000-photo.png',
      contentType: 'image/png',
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const put = await fetch(signed.body.url, {
      method: 'PUT',
      headers: signed.body.headers,
      body: new Uint8Array(bytes),
    });
    assert.equal(put.status, 200, await put.text());
    const state = await settled(signed.body.upload_id, token.secret);
    assert.equal(state.body.status, 'completed', JSON.stringify(state.body));
    assert.equal(state.body.subject, 'user-42');
    await expectStamped(state.body.asset_id, bytes);
  });

  test('tus, with tus-js-client', async () => {
    const bytes = randomBytes(1200);
    const assetId = await tusUpload(token.secret, bytes, { filename: 'resumable.bin' });
    await expectStamped(assetId, bytes);
  });

  test('usage counts every completed file and its bytes; nothing is held any more', async () => {
    assert.deepEqual(await usage(token), {
      files_used: assets.length,
      bytes_used: sizes.reduce((a, b) => a + b, 0),
      files_reserved: 0,
      bytes_reserved: 0,
      open_uploads: 0,
    });
    const rows = dbQuery<{ n: number }>(
      w,
      "select count(*) as n from uploads where token_id = ? and status = 'completed'",
      token.id,
    );
    assert.equal(Number(rows[0]!.n), assets.length);
  });

  test('a tus upload of a short-lived token announces the expiry it really has: the token\u2019s', async () => {
    const t = await mint({ expires_in: 120 });
    const created = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${t.secret}`,
        'tus-resumable': '1.0.0',
        'upload-length': '10',
        'upload-metadata': `filename ${Buffer.from('short.bin').toString('base64')}`,
      },
    });
    assert.equal(created.status, 201, await created.text());
    const announced = Date.parse(created.headers.get('upload-expires') ?? '');
    const tokenEnds = Date.parse(String(t.token.expires_at));
    assert.ok(
      announced <= tokenEnds,
      `Upload-Expires ${created.headers.get('upload-expires')} is past the token`,
    );
    assert.ok(announced >= tokenEnds - 2000, 'and not long before it');
  });
});

describe('the seed APIs take the token in the headers docs/integration.md names', () => {
  test('Bearer or x-api-key, the file service’s Basic, FileSpin’s header; netiks x-api-key only', async () => {
    const t = await mint({ subject: 'seed-user' });
    // The file service writes named files: a token needs a namespace (or name_prefix) for that.
    const named = await mint({ subject: 'seed-user', namespace: 'rewards' });
    const bytes = () => new Uint8Array(randomBytes(100));
    const fileService = (name: string, authorization: string) =>
      fetch(`${w.url}/api_gateway/file-service/rewards/${name}`, {
        method: 'POST',
        headers: { authorization },
        body: bytes(),
      });
    assert.equal((await fileService('bearer.png', `Bearer ${named.secret}`)).status, 200);
    const basic = Buffer.from(`${named.token.key_id}:${named.secret}`).toString('base64');
    assert.equal((await fileService('basic.png', `Basic ${basic}`)).status, 200);

    const storageUrl = '/api/v1/assets/new/content_storage_url?filename=p.bin';
    for (const headers of [{ 'x-filespin-api-key': t.secret }, bearer(t.secret)]) {
      assert.equal((await fetch(w.url + storageUrl, { headers })).status, 200, JSON.stringify(headers));
    }
    const inspect = await fetch(`${w.url}/api/inspect/v1/file/upload/presigned`, {
      method: 'POST',
      headers: { ...bearer(t.secret), 'content-type': 'application/json' },
      body: JSON.stringify({
        entityId: '3fa85f64-5717-4562-b3fc-2c963f66afa6',
        contentType: 'image/png',
        hash: randomBytes(32).toString('base64'),
        name: 'f.png',
        size: 10,
      }),
    });
    assert.equal(inspect.status, 201, await inspect.text());

    const form = () => {
      const body = new FormData();
      body.append('file', new Blob([bytes()]), 'n.bin');
      return body;
    };
    const netiks = `${w.url}/api/v1/assets/developer-upload-file/`;
    const refused = await fetch(netiks, { method: 'POST', headers: bearer(t.secret), body: form() });
    assert.equal(refused.status, 401);
    assert.equal(
      ((await refused.json()) as { detail: string }).detail,
      'An API key is required (x-api-key).',
    );
    const taken = await fetch(netiks, { method: 'POST', headers: { 'x-api-key': t.secret }, body: form() });
    assert.ok(taken.ok, `${taken.status} ${await taken.text()}`);
  });
});

describe('named files: a token writes them only when minted with a namespace or name_prefix', () => {
  const png = () => new Uint8Array(randomBytes(64));
  const putFile = (
    secret: string,
    path: string,
    body: Uint8Array<ArrayBuffer> | string,
    type = 'image/png',
  ) =>
    readJson(
      fetch(`${w.url}/v1/files/${path}`, {
        method: 'PUT',
        headers: { ...bearer(secret), 'content-type': type },
        body,
      }),
    );
  const fileService = (
    secret: string,
    path: string,
    body: Uint8Array<ArrayBuffer> | FormData,
    type?: string,
  ) =>
    readJson(
      fetch(`${w.url}/api_gateway/file-service/${path}`, {
        method: 'POST',
        headers: { ...bearer(secret), ...(type && { 'content-type': type }) },
        body,
      }),
    );
  const latest = async (path: string) => {
    const file = await api(w.url, w.key, 'GET', `/v1/files/${path}`);
    assert.equal(file.status, 200, JSON.stringify(file.body));
    return { version: file.body.latest_version, sha256: file.body.asset.sha256 };
  };

  test('the token docs/integration.md mints (no namespace, no name_prefix) is refused everywhere; nothing is stored', async () => {
    const logo = png();
    assert.equal((await putFile(w.key, 'branding/logo.png', logo)).status, 201);
    assert.equal((await putFile(w.key, 'legal/terms.txt', 'our terms', 'text/plain')).status, 201);
    const before = { logo: await latest('branding/logo.png'), terms: await latest('legal/terms.txt') };
    const stored = (await storedKeys(w)).sort();
    // Earlier tests leave uploads open (a tus upload on S3 is a multipart upload of the bucket).
    const writing = (await pendingWrites(w)).sort();
    // Exactly what the guide tells a back end to mint for an end user's browser.
    const t = await mint({
      subject: 'visitor-1',
      expires_in: 600,
      max_files: 5,
      max_file_size: 1_000_000,
      content_types: ['image/*', 'text/plain'],
    });
    const form = new FormData();
    form.append('file', new Blob([png()], { type: 'image/png' }), 'logo.png');
    const attempts = [
      ['PUT /v1/files', await putFile(t.secret, 'branding/logo.png', png())],
      ['PUT /v1/files, a new name', await putFile(t.secret, 'branding/new.png', png())],
      ['file service, raw', await fileService(t.secret, 'legal/terms.txt', png(), 'text/plain')],
      ['file service, form', await fileService(t.secret, 'branding/logo.png', form)],
      ['file service, no body', await fileService(t.secret, 'legal/terms.txt', new Uint8Array(0))],
    ] as const;
    for (const [label, res] of attempts) {
      assert.equal(res.status, 403, `${label}: ${JSON.stringify(res.body)}`);
      const code = res.body.error?.code ?? res.body.error_code;
      assert.equal(code, 'NAMESPACE_DENIED', `${label}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.error?.message ?? res.body.message, /namespace or name_prefix/, label);
    }
    assert.equal(attempts[0][1].body.error.details.namespace, null);
    assert.deepEqual(
      { logo: await latest('branding/logo.png'), terms: await latest('legal/terms.txt') },
      before,
      'every reader still gets the account’s files',
    );
    assert.equal((await api(w.url, w.key, 'GET', '/v1/files/branding/new.png')).status, 404);
    // No upload row, no bytes, no reservation left behind.
    const rows = dbQuery<{ n: number }>(w, 'select count(*) as n from uploads where token_id = ?', t.id);
    assert.equal(Number(rows[0]!.n), 0);
    assert.deepEqual((await storedKeys(w)).sort(), stored);
    assert.deepEqual((await pendingWrites(w)).sort(), writing);
    assert.deepEqual(await usage(t), {
      files_used: 0,
      bytes_used: 0,
      files_reserved: 0,
      bytes_reserved: 0,
      open_uploads: 0,
    });
    // Its own uploads are as before.
    assert.equal(
      (await uploadRaw(w, t.secret, 'avatar.png', randomBytes(64), { contentType: 'image/png' })).status,
      201,
    );
  });

  test('a namespace token writes its namespace, a name_prefix token names with its prefix, a key anything', async () => {
    const inNamespace = await mint({ subject: 'u9', namespace: 'user9' });
    const v1 = await putFile(inNamespace.secret, 'user9/avatar.png', png());
    assert.equal(v1.status, 201, JSON.stringify(v1.body));
    const v2 = await fileService(inNamespace.secret, 'user9/avatar.png', png(), 'image/png');
    assert.equal(v2.status, 200, JSON.stringify(v2.body));
    assert.equal((await latest('user9/avatar.png')).version, 2);
    const elsewhere = await putFile(inNamespace.secret, 'branding/logo.png', png());
    refused(elsewhere, 'NAMESPACE_DENIED', 'another namespace');
    assert.equal(elsewhere.body.error.details.namespace, 'user9');

    const prefixed = await mint({ subject: 'u10', name_prefix: 'u10-' });
    const named = await putFile(prefixed.secret, 'inbox/u10-scan.png', png());
    assert.equal(named.status, 201, JSON.stringify(named.body));
    const viaService = await fileService(prefixed.secret, 'other/u10-scan.png', png(), 'image/png');
    assert.equal(viaService.status, 200, JSON.stringify(viaService.body));
    refused(
      await putFile(prefixed.secret, 'inbox/scan.png', png()),
      'NAME_PREFIX_DENIED',
      'outside the prefix',
    );

    const byKey = await putFile(w.key, 'branding/logo.png', png());
    assert.equal(byKey.status, 201, JSON.stringify(byKey.body));
    const byKeyService = await fileService(w.key, 'legal/terms.txt', png(), 'text/plain');
    assert.equal(byKeyService.status, 200, JSON.stringify(byKeyService.body));
  });
});

describe('what a token may read: its own uploads, nothing else', () => {
  let token: Minted;
  let mine: string;
  let theirs: string;
  let myUpload: string;
  before(async () => {
    token = await mint({ subject: 'reader' });
    mine = (await uploadRaw(w, token.secret, 'mine.txt', 'my bytes', { contentType: 'text/plain' })).body
      .asset.id;
    theirs = (await uploadRaw(w, w.key, 'theirs.txt', randomBytes(33), { contentType: 'text/plain' })).body
      .asset.id;
    myUpload = (await declare(w, token.secret, { name: 'later.bin', size: 4 })).id;
  });

  test('its asset, its bytes, its upload state, and a download URL that dies with the token', async () => {
    assert.equal((await api(w.url, token.secret, 'GET', `/v1/assets/${mine}`)).status, 200);
    const content = await fetch(`${w.url}/v1/assets/${mine}/content`, { headers: bearer(token.secret) });
    assert.equal(await content.text(), 'my bytes');
    assert.equal((await api(w.url, token.secret, 'GET', `/v1/uploads/${myUpload}`)).body.status, 'pending');
    const signed = await api(w.url, token.secret, 'POST', `/v1/assets/${mine}/signed-url`, {
      expires_in: 604800,
    });
    assert.equal(signed.status, 200);
    assert.ok(signed.body.expires_at <= String(token.token.expires_at), 'never past the token');
    // A moment past the token is cut to the token's second: the same URL on every signing.
    const body = { expires_at: new Date(w.clock.now() + 5 * 86400_000).toISOString() };
    const moment = await api(w.url, token.secret, 'POST', `/v1/assets/${mine}/signed-url`, body);
    assert.equal(moment.status, 200, JSON.stringify(moment.body));
    const tokenSecond = Math.floor(Date.parse(String(token.token.expires_at)) / 1000) * 1000;
    assert.equal(Date.parse(moment.body.expires_at), tokenSecond, 'never past the token');
    w.clock.advance(1500);
    const again = await api(w.url, token.secret, 'POST', `/v1/assets/${mine}/signed-url`, body);
    assert.equal(again.body.url, moment.body.url);
  });

  test('everything else is refused with a stable code', async () => {
    const cases: Array<[string, string, string, unknown?, number?]> = [
      ['GET', `/v1/assets/${theirs}`, 'NOT_FOUND', undefined, 404],
      ['GET', `/v1/assets/${theirs}/content`, 'NOT_FOUND', undefined, 404],
      ['POST', `/v1/assets/${theirs}/signed-url`, 'NOT_FOUND', {}, 404],
      ['GET', '/v1/assets', 'SCOPE_DENIED'],
      ['DELETE', `/v1/assets/${mine}`, 'SCOPE_DENIED'],
      ['PATCH', `/v1/assets/${mine}`, 'SCOPE_DENIED', { access: 'public' }],
      ['GET', '/v1/keys', 'FORBIDDEN'],
      ['POST', '/v1/keys', 'FORBIDDEN', { name: 'escalate', role: 'admin' }],
      ['GET', '/v1/files/docs/x.txt', 'SCOPE_DENIED'],
      ['GET', '/v1/upload-tokens', 'SCOPE_DENIED'],
      ['POST', '/v1/upload-tokens', 'SCOPE_DENIED', {}],
      ['DELETE', `/v1/upload-tokens/${token.id}`, 'SCOPE_DENIED'],
      ['GET', '/v1/account/settings', 'SCOPE_DENIED'],
      ['GET', '/v1/image-presets', 'SCOPE_DENIED'],
      ['GET', '/v1/image-presets/thumb', 'SCOPE_DENIED'],
    ];
    for (const [method, path, code, body, status] of cases) {
      refused(await api(w.url, token.secret, method, path, body), code, `${method} ${path}`, status ?? 403);
    }
    const other = await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'k.bin', size: 1 });
    refused(await api(w.url, token.secret, 'GET', `/v1/uploads/${other.body.id}`), 'NOT_FOUND', 'state', 404);
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${mine}`)).body.access, 'private');
  });

  test('a token of account B never reaches account A', async () => {
    const b = await w.newAccount('B');
    const foreign = await mint({}, b.key);
    for (const path of [`/v1/assets/${mine}`, `/v1/assets/${theirs}`, `/v1/uploads/${myUpload}`]) {
      refused(await api(w.url, foreign.secret, 'GET', path), 'NOT_FOUND', path, 404);
    }
    refused(
      await api(w.url, foreign.secret, 'POST', `/v1/uploads/${myUpload}/complete`),
      'NOT_FOUND',
      'complete',
      404,
    );
    // Its uploads are B's.
    const own = await uploadRaw(w, foreign.secret, 'b.txt', 'b bytes');
    assert.equal(
      dbQuery<{ account_id: string }>(w, 'select account_id from assets where id = ?', own.body.asset.id)[0]!
        .account_id,
      b.accountId,
    );
  });

  test('content another user uploaded: never "exists", shown as this token declared it', async () => {
    const bytes = randomBytes(400);
    const first = await mint({ subject: 'alice', metadata: { trip: 'paris' } });
    const second = await mint({ subject: 'bob', metadata: { trip: 'rome' } });
    const a = await uploadRaw(w, first.secret, 'alice-passport.jpg', bytes, { contentType: 'image/jpeg' });
    assert.equal(a.status, 201);
    const b = await uploadRaw(w, second.secret, 'bob.jpg', bytes, { contentType: 'image/jpeg' });
    assert.equal(b.status, 201, 'created, as for new content');
    assert.equal(b.body.status, 'created');
    assert.equal(b.body.asset.id, a.body.asset.id, 'stored once');
    assert.deepEqual(
      [b.body.asset.name, b.body.asset.subject, b.body.asset.metadata],
      ['bob.jpg', 'bob', { trip: 'rome' }],
    );
    const seen = await api(w.url, second.secret, 'GET', `/v1/assets/${a.body.asset.id}`);
    assert.deepEqual(
      [seen.body.name, seen.body.subject, seen.body.metadata],
      ['bob.jpg', 'bob', { trip: 'rome' }],
    );
    assert.ok(!JSON.stringify(seen.body).includes('alice') && !JSON.stringify(seen.body).includes('paris'));
    const download = await fetch(`${w.url}/v1/assets/${a.body.asset.id}/content`, {
      headers: bearer(second.secret),
    });
    assert.match(download.headers.get('content-disposition') ?? '', /bob\.jpg/);
    await download.arrayBuffer();
    // The asset keeps the first upload's name, metadata and subject; the back end sees both uploads.
    const real = await api(w.url, w.key, 'GET', `/v1/assets/${a.body.asset.id}`);
    assert.deepEqual([real.body.name, real.body.subject], ['alice-passport.jpg', 'alice']);
    // The back end's event (and webhook) says whose upload each was: the upload's own subject.
    const events = (await api(w.url, w.key, 'GET', '/v1/events?type=upload.completed&limit=1000')).body.data;
    const bobs = events.find((e: { data: { upload: { name: string } } }) => e.data.upload.name === 'bob.jpg');
    assert.equal(bobs.data.deduplicated, true);
    assert.equal(bobs.data.asset.subject, 'alice', 'the asset as the account holds it');
    assert.deepEqual(
      [bobs.data.upload.subject, bobs.data.upload.token_id, bobs.data.upload.metadata],
      ['bob', second.id, { trip: 'rome' }],
    );
    const declared = await api(w.url, second.secret, 'POST', '/v1/uploads', {
      name: 'again.jpg',
      size: bytes.length,
      sha256: sha256Hex(bytes),
    });
    assert.equal(declared.body.status, 'pending', 'a declared SHA-256 reveals nothing either');
  });

  test('URLs it signs for content someone else stored first show its own upload, not the first uploader', async () => {
    const text = Buffer.from(`letter ${randomBytes(8).toString('hex')}`);
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const t = await mint({});
    for (const [theirs, mine, bytes] of [
      ['bob-termination-letter.txt', 'guess.txt', text],
      ['ceo-private-photo.png', 'g.png', png],
    ] as const) {
      const first = await uploadRaw(w, w.key, theirs, bytes);
      const again = await uploadRaw(w, t.secret, mine, bytes);
      assert.equal(again.body.asset.id, first.body.asset.id);
      const id = again.body.asset.id;
      const urls = [
        (await api(w.url, t.secret, 'POST', `/v1/assets/${id}/signed-url`, {})).body.url as string,
      ];
      if (mine.endsWith('.png')) {
        urls.push((await api(w.url, t.secret, 'POST', `/v1/assets/${id}/image-url`, { w: 4 })).body.url);
      }
      for (const url of urls) {
        const res = await fetch(url);
        assert.equal(res.status, 200, url);
        const disposition = res.headers.get('content-disposition') ?? '';
        assert.ok(disposition.includes(mine.replace(/\.png$/, '')), `${url}: ${disposition}`);
        assert.ok(!disposition.includes(theirs.replace(/\.\w+$/, '')), `${url}: ${disposition}`);
        // The view is signed: swapping it for another upload, or dropping it, is refused.
        const dropped = new URL(url);
        dropped.searchParams.delete('view');
        assert.equal((await fetch(dropped)).status, 403, 'without its view');
        const swapped = new URL(url);
        swapped.searchParams.set('view', first.body.asset.id);
        assert.equal((await fetch(swapped)).status, 403, 'another view');
      }
      // The account's own URL shows the record, as before.
      const own = await api(w.url, w.key, 'POST', `/v1/assets/${id}/signed-url`, {});
      assert.equal(new URL(own.body.url).searchParams.has('view'), false);
      const res = await fetch(own.body.url);
      assert.ok((res.headers.get('content-disposition') ?? '').includes(theirs));
    }
  });
});

describe('limits', () => {
  test('content types (families allowed) and file size are refused with stable codes', async () => {
    const token = await mint({ content_types: ['image/*', 'application/pdf'], max_file_size: 100 });
    assert.equal(
      (await uploadRaw(w, token.secret, 'a.png', randomBytes(50), { contentType: 'image/png' })).status,
      201,
    );
    assert.equal(
      (await uploadRaw(w, token.secret, 'a.pdf', randomBytes(50), { contentType: 'application/pdf' })).status,
      201,
    );
    const text = await uploadRaw(w, token.secret, 'a.txt', 'text', { contentType: 'text/plain' });
    refused(text, 'CONTENT_TYPE_DENIED', 'direct text');
    assert.deepEqual(text.body.error.details.allowed, ['image/*', 'application/pdf']);
    refused(
      await api(w.url, token.secret, 'POST', '/v1/uploads', {
        files: [
          { name: 'ok.png', size: 1, content_type: 'image/png' },
          { name: 'no.html', size: 1, content_type: 'text/html' },
        ],
      }),
      'CONTENT_TYPE_DENIED',
      'presigned batch',
    );
    const tus = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        ...bearer(token.secret),
        'Tus-Resumable': '1.0.0',
        'Upload-Length': '5',
        'Upload-Metadata': `filename ${Buffer.from('x.js').toString('base64')},filetype ${Buffer.from('text/javascript').toString('base64')}`,
      },
    });
    assert.equal(tus.status, 403);
    assert.equal((await tus.json()).error.code, 'CONTENT_TYPE_DENIED');

    refused(
      await uploadRaw(w, token.secret, 'big.png', randomBytes(101), { contentType: 'image/png' }),
      'FILE_TOO_LARGE',
      'direct',
      413,
    );
    refused(
      await api(w.url, token.secret, 'POST', '/v1/uploads', {
        name: 'big.png',
        size: 101,
        content_type: 'image/png',
      }),
      'FILE_TOO_LARGE',
      'presigned',
      413,
    );
    refused(
      await api(w.url, token.secret, 'POST', '/v1/multipart', {
        name: 'big.png',
        size: 101,
        content_type: 'image/png',
      }),
      'FILE_TOO_LARGE',
      'multipart',
      413,
    );
    // A file whose size is only known once it is stored (Uppy's PutObject) is refused then.
    const signed = await api(w.url, token.secret, 'POST', '/v1/s3/sign', {
      method: 'PUT',
      key: 'huge.png',
      contentType: 'image/png',
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    await fetch(signed.body.url, {
      method: 'PUT',
      headers: signed.body.headers,
      body: new Uint8Array(randomBytes(101)),
    }).then((r) => r.arrayBuffer());
    const state = await settled(signed.body.upload_id);
    assert.notEqual(state.body.status, 'completed');
    assert.equal(state.body.asset_id, null);
  });

  test('content_types checks the declared type, not the bytes; image/* takes images /image does not transform', async () => {
    // What docs/integration.md tells an app: list only the types the page shows, check analysis.mime.
    const token = await mint({ content_types: ['image/*'] });
    const html = await uploadRaw(w, token.secret, 'x.png', '<html><script>alert(1)</script></html>', {
      contentType: 'image/png',
    });
    assert.equal(html.status, 201, JSON.stringify(html.body));
    assert.equal(html.body.asset.content_type, 'image/png');
    const served = await fetch(`${w.url}/v1/assets/${html.body.asset.id}/content`, {
      headers: bearer(token.secret),
    });
    await served.arrayBuffer();
    assert.equal(served.headers.get('content-type'), 'image/png');
    assert.equal(served.headers.get('x-content-type-options'), 'nosniff');
    assert.match(served.headers.get('content-security-policy') ?? '', /sandbox/);

    const svg = await uploadRaw(w, token.secret, 's.svg', '<svg xmlns="http://www.w3.org/2000/svg"/>', {
      contentType: 'image/svg+xml',
    });
    const tiff = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#0f0' } })
      .tiff()
      .toBuffer();
    const tif = await uploadRaw(w, token.secret, 't.tiff', tiff, { contentType: 'image/tiff' });
    assert.deepEqual([svg.status, tif.status], [201, 201]);
    await w.wharf.core.jobs.drain();
    for (const id of [svg.body.asset.id, tif.body.asset.id]) {
      const res = await fetch(`${w.url}/v1/assets/${id}/image?w=2`, { headers: bearer(token.secret) });
      refused(await readJson(res), 'UNSUPPORTED_IMAGE', 'transform', 415);
    }
    const analysis = async (id: string) =>
      (await api(w.url, token.secret, 'GET', `/v1/assets/${id}`)).body.analysis as { mime?: string };
    assert.equal((await analysis(html.body.asset.id)).mime, undefined, 'HTML is not an image it knows');
    assert.equal((await analysis(tif.body.asset.id)).mime, 'image/tiff');
  });

  test('the same file sent twice: two max_files slots, two upload.completed events for one asset', async () => {
    // Why docs/integration.md asks an app to record (subject, asset.id) idempotently.
    const token = await mint({ subject: 'twice', max_files: 2 });
    const bytes = randomBytes(64);
    const first = await uploadRaw(w, token.secret, 'same.bin', bytes);
    const second = await uploadRaw(w, token.secret, 'same.bin', bytes);
    assert.deepEqual([first.status, second.status], [201, 201]);
    assert.equal(second.body.asset.id, first.body.asset.id);
    assert.equal((await usage(token)).files_used, 2);
    const all = [];
    for (let after = '0', more = true; more; ) {
      const page = await api(
        w.url,
        w.key,
        'GET',
        `/v1/events?type=upload.completed&limit=1000&after=${after}`,
      );
      all.push(...page.body.data);
      [after, more] = [page.body.cursor, page.body.has_more];
    }
    const mine = all.filter(
      (e: { data: { upload: { token_id: string } } }) => e.data.upload.token_id === token.id,
    );
    assert.equal(mine.length, 2);
    assert.notEqual(mine[0].id, mine[1].id, 'two webhook-ids');
    assert.deepEqual(
      mine.map((e: { data: { asset: { id: string }; deduplicated: boolean } }) => [
        e.data.asset.id,
        e.data.deduplicated,
      ]),
      [
        [first.body.asset.id, false],
        [first.body.asset.id, true],
      ],
    );
  });

  test('50 concurrent presigns never pass max_files', async () => {
    const token = await mint({ max_files: 10 });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        api(w.url, token.secret, 'POST', '/v1/uploads', { name: `f${i}.bin`, size: 100 }),
      ),
    );
    assert.equal(results.filter((r) => r.status === 201).length, 10);
    for (const r of results.filter((r) => r.status !== 201)) refused(r, 'TOKEN_FILES_EXHAUSTED', 'over');
    assert.deepEqual(await usage(token), {
      files_used: 0,
      bytes_used: 0,
      files_reserved: 10,
      bytes_reserved: 1000,
      open_uploads: 10,
    });
    const pending = dbQuery<{ n: number }>(
      w,
      "select count(*) as n from uploads where token_id = ? and status = 'pending'",
      token.id,
    );
    assert.equal(Number(pending[0]!.n), 10);
  });

  test('50 concurrent direct uploads never pass max_bytes; counts and bytes agree afterwards', async () => {
    const token = await mint({ max_bytes: 10 * 1000 });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => uploadRaw(w, token.secret, `d${i}.bin`, randomBytes(1000))),
    );
    const created = results.filter((r) => r.status === 201);
    assert.equal(created.length, 10, JSON.stringify(results.map((r) => r.status)));
    for (const r of results.filter((r) => r.status !== 201)) refused(r, 'TOKEN_BYTES_EXHAUSTED', 'over');
    assert.deepEqual(await usage(token), {
      files_used: 10,
      bytes_used: 10_000,
      files_reserved: 0,
      bytes_reserved: 0,
      open_uploads: 0,
    });
    const rows = dbQuery<{ n: number; bytes: number }>(
      w,
      "select count(*) as n, sum(a.size) as bytes from uploads u join assets a on a.id = u.asset_id where u.token_id = ? and u.status = 'completed'",
      token.id,
    );
    assert.deepEqual([Number(rows[0]!.n), Number(rows[0]!.bytes)], [10, 10_000]);
  });

  test('50 concurrent uploads of unknown size hold nothing until they complete, and never pass max_bytes', async () => {
    const token = await mint({ max_bytes: 10 * 1000, max_file_size: 1000 });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        api(w.url, token.secret, 'POST', '/v1/s3/sign', { method: 'PUT', key: `u${i}.bin` }),
      ),
    );
    // Holding as much as each file may be let ten signed URLs nobody used lock the token out
    // until they expired; the budget is checked when the bytes are known.
    for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
    const held = await usage(token);
    assert.deepEqual([held.files_reserved, held.bytes_reserved], [50, 0]);
    // Twelve files of the largest size, sent at once: ten fit.
    const sending = results.slice(0, 12);
    await Promise.all(
      sending.map((r) =>
        fetch(r.body.url, {
          method: 'PUT',
          headers: r.body.headers,
          body: new Uint8Array(randomBytes(1000)),
        }).then((res) => res.arrayBuffer()),
      ),
    );
    const ends: string[] = [];
    for (const r of sending) ends.push((await settled(r.body.upload_id)).body.status);
    assert.equal(ends.filter((status) => status === 'completed').length, 10, ends.join());
    const after = await usage(token);
    assert.deepEqual(
      [after.files_used, after.bytes_used, after.files_reserved, after.bytes_reserved],
      [10, 10_000, 38, 0],
    );
    // With nothing left of the budget, no further upload of unknown size is signed.
    refused(
      await api(w.url, token.secret, 'POST', '/v1/s3/sign', { method: 'PUT', key: 'more.bin' }),
      'TOKEN_BYTES_EXHAUSTED',
      'used up',
    );
  });

  test('50 concurrent requests never pass max_open_uploads (429)', async () => {
    const token = await mint({ max_open_uploads: 5 });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        api(w.url, token.secret, 'POST', '/v1/uploads', { name: `o${i}.bin`, size: 1 }),
      ),
    );
    assert.equal(results.filter((r) => r.status === 201).length, 5);
    for (const r of results.filter((r) => r.status !== 201)) refused(r, 'TOO_MANY_OPEN_UPLOADS', 'over', 429);
    // Finishing one opens a slot.
    const intent = results.find((r) => r.status === 201)!.body;
    assert.equal((await putPresigned(intent, 'x')).status, 200);
    assert.equal((await complete(w, token.secret, intent.id)).status, 200);
    assert.equal(
      (await api(w.url, token.secret, 'POST', '/v1/uploads', { name: 'next.bin', size: 1 })).status,
      201,
    );
  });

  test('a failed or expired upload gives its reservation back', async () => {
    const token = await mint({ max_files: 2, max_bytes: 200, expires_in: 86_400 });
    const held = await declare(w, token.secret, { name: 'held.bin', size: 100 });
    // A direct upload whose bytes fail verification ends at once: what it held comes back.
    const bytes = randomBytes(100);
    const wrong = await uploadRaw(w, token.secret, 'wrong.bin', bytes, {
      query: { sha256: sha256Hex('other') },
    });
    refused(wrong, 'CHECKSUM_MISMATCH', 'wrong digest', 400);
    assert.deepEqual([(await usage(token)).files_reserved, (await usage(token)).bytes_reserved], [1, 100]);
    // An aborted multipart upload too.
    const multipart = await api(w.url, token.secret, 'POST', '/v1/multipart', { name: 'm.bin', size: 100 });
    assert.equal(multipart.status, 201);
    refused(
      await api(w.url, token.secret, 'POST', '/v1/uploads', { name: 'x.bin', size: 1 }),
      'TOKEN_FILES_EXHAUSTED',
      'full',
    );
    assert.equal(
      (await api(w.url, token.secret, 'DELETE', `/v1/multipart/${multipart.body.id}`)).status,
      204,
    );
    assert.deepEqual([(await usage(token)).files_reserved, (await usage(token)).bytes_reserved], [1, 100]);

    // An intent nobody completes holds its budget until the sweep expires it.
    w.clock.advance(900_000 + 3600_000 + 1000);
    await w.wharf.core.uploads.sweep();
    const state = await api(w.url, w.key, 'GET', `/v1/uploads/${held.id}`);
    assert.equal(state.body.status, 'expired');
    assert.deepEqual(await usage(token), {
      files_used: 0,
      bytes_used: 0,
      files_reserved: 0,
      bytes_reserved: 0,
      open_uploads: 0,
    });
    assert.equal((await declare(w, token.secret, { name: 'a.bin', size: 200 })).status, 'pending');
  });

  test('max_files used up by pending uploads says so: what completed, what pending uploads hold, how to free them', async () => {
    const token = await mint({ subject: 'ned', max_files: 2 });
    // Declared and never sent: a presigned upload, and a PutObject /v1/s3/sign signed.
    const declared = await declare(w, token.secret, { name: 'never.bin', size: 10 });
    const signed = await api(w.url, token.secret, 'POST', '/v1/s3/sign', {
      method: 'PUT',
      key: 'never2.bin',
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const full = await api(w.url, token.secret, 'POST', '/v1/uploads', { name: 'third.bin', size: 10 });
    refused(full, 'TOKEN_FILES_EXHAUSTED', 'held by pending uploads');
    assert.deepEqual(full.body.error.details, { max_files: 2, used: 0, reserved: 2 });
    assert.match(full.body.error.message, /0 completed, 2 pending/);
    assert.match(full.body.error.message, /DELETE \/v1\/uploads\/\{id\}/);

    // Cancelling them frees their slots; with every file completed and none pending, the refusal is plain.
    assert.equal((await api(w.url, token.secret, 'DELETE', `/v1/uploads/${declared.id}`)).status, 204);
    assert.equal(
      (await api(w.url, token.secret, 'DELETE', `/v1/uploads/${signed.body.upload_id}`)).status,
      204,
    );
    for (const name of ['a.bin', 'b.bin']) {
      assert.equal((await uploadRaw(w, token.secret, name, randomBytes(10))).status, 201);
    }
    const used = await api(w.url, token.secret, 'POST', '/v1/uploads', { name: 'c.bin', size: 10 });
    refused(used, 'TOKEN_FILES_EXHAUSTED', 'used');
    assert.deepEqual(used.body.error.details, { max_files: 2, used: 2, reserved: 0 });
    assert.equal(used.body.error.message, 'This upload token may upload 2 files.');
  });

  test('WHARF_MAX_OPEN_UPLOADS_PER_KEY bounds a key’s pending uploads', async () => {
    const small = await startWharf({ env: { WHARF_MAX_OPEN_UPLOADS_PER_KEY: '3' } });
    try {
      const intents = [];
      for (let i = 0; i < 3; i += 1)
        intents.push(await declare(small, small.key, { name: `k${i}.bin`, size: 1 }));
      refused(
        await api(small.url, small.key, 'POST', '/v1/uploads', { name: 'k3.bin', size: 1 }),
        'TOO_MANY_OPEN_UPLOADS',
        'fourth',
        429,
      );
      assert.equal((await putPresigned(intents[0]!, 'x')).status, 200);
      assert.equal((await complete(small, small.key, intents[0]!.id)).status, 200);
      assert.equal(
        (await api(small.url, small.key, 'POST', '/v1/uploads', { name: 'k3.bin', size: 1 })).status,
        201,
      );
    } finally {
      await small.close();
    }
  });
});

describe('the account quota is exact under concurrency', () => {
  test('50 concurrent direct uploads: exactly what fits is stored', async () => {
    const { accountId, key } = await w.newAccount();
    await w.wharf.core.keys.updateAccount(accountId, { storageQuota: 10 * 1000 });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => uploadRaw(w, key, `q${i}.bin`, randomBytes(1000))),
    );
    assert.equal(
      results.filter((r) => r.status === 201).length,
      10,
      JSON.stringify(results.map((r) => r.status)),
    );
    for (const r of results.filter((r) => r.status !== 201)) refused(r, 'QUOTA_EXCEEDED', 'over');
    const stored = dbQuery<{ n: number; bytes: number }>(
      w,
      'select count(*) as n, sum(size) as bytes from assets where account_id = ?',
      accountId,
    );
    assert.deepEqual([Number(stored[0]!.n), Number(stored[0]!.bytes)], [10, 10_000]);
    const counters = dbQuery<{ bytes_used: number; bytes_reserved: number }>(
      w,
      'select bytes_used, bytes_reserved from accounts where id = ?',
      accountId,
    );
    assert.deepEqual([Number(counters[0]!.bytes_used), Number(counters[0]!.bytes_reserved)], [10_000, 0]);
    // Deleting frees exactly what the asset took.
    const one = results.find((r) => r.status === 201)!.body.asset.id;
    assert.equal((await api(w.url, key, 'DELETE', `/v1/assets/${one}`)).status, 204);
    assert.equal((await uploadRaw(w, key, 'again.bin', randomBytes(1000))).status, 201);
    refused(await uploadRaw(w, key, 'over.bin', randomBytes(1)), 'QUOTA_EXCEEDED', 'full again');
  });

  test('50 concurrent presigns: exactly what fits is held', async () => {
    const { accountId, key } = await w.newAccount();
    await w.wharf.core.keys.updateAccount(accountId, { storageQuota: 10 * 1000 });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        api(w.url, key, 'POST', '/v1/uploads', { name: `p${i}.bin`, size: 1000 }),
      ),
    );
    assert.equal(results.filter((r) => r.status === 201).length, 10);
    for (const r of results.filter((r) => r.status !== 201)) refused(r, 'QUOTA_EXCEEDED', 'over');
    const counters = dbQuery<{ bytes_reserved: number }>(
      w,
      'select bytes_reserved from accounts where id = ?',
      accountId,
    );
    assert.equal(Number(counters[0]!.bytes_reserved), 10_000);
  });
});

describe('a second node sees revocation and expiry at once', () => {
  let b: TestWharf;
  before(async () => {
    b = await startWharf({ sharing: w, clock: w.clock });
  });
  after(async () => {
    await b?.close();
  });

  async function worksOnB(secret: string): Promise<JsonResponse> {
    return api(b.url, secret, 'POST', '/v1/uploads', { name: 'n.bin', size: 1 });
  }

  test('revoked on one node: refused by the other on the next request', async () => {
    const token = await mint();
    assert.equal((await worksOnB(token.secret)).status, 201);
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/upload-tokens/${token.id}`)).status, 204);
    refused(await worksOnB(token.secret), 'UNAUTHORIZED', 'revoked', 401);
    const listed = await api(b.url, w.key, 'GET', `/v1/upload-tokens/${token.id}`);
    assert.equal(listed.body.status, 'revoked');
    refused(await api(w.url, w.key, 'DELETE', `/v1/upload-tokens/${token.id}`), 'NOT_FOUND', 'twice', 404);
  });

  test('expired: refused by every node the moment it expires', async () => {
    const token = await mint({ expires_in: 60 });
    assert.equal((await worksOnB(token.secret)).status, 201);
    w.clock.advance(60_000);
    refused(await worksOnB(token.secret), 'TOKEN_EXPIRED', 'expired on B', 401);
    refused(
      await api(w.url, token.secret, 'POST', '/v1/uploads', { name: 'n.bin', size: 1 }),
      'TOKEN_EXPIRED',
      'on A',
      401,
    );
    assert.equal((await api(w.url, w.key, 'GET', `/v1/upload-tokens/${token.id}`)).body.status, 'expired');
  });

  test('revoking the key that minted it stops the token too', async () => {
    const minter = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'backend', scopes: ['upload'] });
    const token = await mint({}, minter.body.secret);
    assert.equal((await worksOnB(token.secret)).status, 201);
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/keys/${minter.body.key.id}`)).status, 204);
    refused(await worksOnB(token.secret), 'UNAUTHORIZED', 'key revoked', 401);
    // Shown as it behaves: revoked, when its key was, on every node and in the listing.
    const keys = await api(w.url, w.key, 'GET', '/v1/keys');
    const keyRevokedAt = keys.body.data.find((k: { id: string }) => k.id === minter.body.key.id)?.revoked_at;
    assert.equal(typeof keyRevokedAt, 'string', JSON.stringify(keys.body));
    const shown = await api(b.url, w.key, 'GET', `/v1/upload-tokens/${token.id}`);
    assert.equal(shown.body.status, 'revoked', JSON.stringify(shown.body));
    assert.equal(shown.body.revoked_at, keyRevokedAt);
    const listed = await api(w.url, w.key, 'GET', '/v1/upload-tokens?limit=1000');
    const inList = listed.body.data.find((t: { id: string }) => t.id === token.id);
    assert.deepEqual([inList.status, inList.revoked_at], ['revoked', keyRevokedAt]);
    refused(await api(w.url, w.key, 'DELETE', `/v1/upload-tokens/${token.id}`), 'NOT_FOUND', 'revoked', 404);
  });

  test('revoking the key records token.revoked for each token it still had live, once', async () => {
    const minter = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'backend', scopes: ['upload'] });
    const [live, other, revokedBefore] = [
      await mint({}, minter.body.secret),
      await mint({}, minter.body.secret),
      await mint({}, minter.body.secret),
    ];
    await mint({ expires_in: 60 }, minter.body.secret); // expired by the revocation: nothing to record
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/upload-tokens/${revokedBefore.id}`)).status, 204);
    w.clock.advance(60_000);
    const before = await api(w.url, w.key, 'GET', '/v1/events?type=token.revoked&limit=1000');
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/keys/${minter.body.key.id}`)).status, 204);
    const keys = await api(w.url, w.key, 'GET', '/v1/keys');
    const keyRevokedAt = keys.body.data.find((k: { id: string }) => k.id === minter.body.key.id)?.revoked_at;
    // Like a direct revocation's, on the other node too: the token as it is shown from then on.
    const events = await api(
      b.url,
      w.key,
      'GET',
      `/v1/events?type=token.revoked&after=${before.body.cursor}`,
    );
    assert.equal(events.status, 200, JSON.stringify(events.body));
    const recorded = events.body.data.map((e: { data: { token: { id: string } } }) => e.data.token.id);
    assert.deepEqual(recorded.sort(), [live.id, other.id].sort(), JSON.stringify(events.body));
    for (const event of events.body.data) {
      assert.equal(event.data.reason, 'key_revoked');
      assert.equal(event.timestamp, keyRevokedAt);
      const shown = await api(w.url, w.key, 'GET', `/v1/upload-tokens/${event.data.token.id}`);
      assert.deepEqual(event.data.token, shown.body);
    }
    // Revoked already: revoking it again records nothing more.
    refused(await api(w.url, w.key, 'DELETE', `/v1/upload-tokens/${live.id}`), 'NOT_FOUND', 'revoked', 404);
    const again = await api(w.url, w.key, 'GET', `/v1/events?type=token.*&after=${events.body.cursor}`);
    assert.deepEqual(again.body.data, []);
  });

  /** The token's only upload as recorded: its state, where its bytes went, and how it ended. */
  async function onlyUpload(
    token: Minted,
  ): Promise<{ status: string; storageKey: string; failure?: string }> {
    const rows = dbQuery<{ id: string; status: string; storage_key: string }>(
      w,
      'select id, status, storage_key from uploads where token_id = ?',
      token.id,
    );
    assert.equal(rows.length, 1, JSON.stringify(rows));
    const events = await api(w.url, w.key, 'GET', '/v1/events?type=upload.failed&limit=1000');
    const failed = events.body.data.filter(
      (e: { data: { upload: { id: string } } }) => e.data.upload.id === rows[0]!.id,
    );
    return { status: rows[0]!.status, storageKey: rows[0]!.storage_key, failure: failed[0]?.data.error.code };
  }

  /** Nothing of the token's refused upload is left: no asset, no bytes, nothing held. */
  async function nothingKept(token: Minted, bytes: Buffer): Promise<void> {
    // An upload still pending at the revocation ended with it; the job it queued frees its bytes.
    await w.wharf.core.jobs.drain();
    const upload = await onlyUpload(token);
    assert.deepEqual(
      [upload.status, upload.failure],
      ['expired', 'UNAUTHORIZED'],
      'ended as failed, with the refusal',
    );
    assert.equal(await holdsObject(w, upload.storageKey), false, 'its bytes are freed');
    const assets = dbQuery<{ n: number }>(
      w,
      'select count(*) as n from assets where sha256 = ?',
      sha256Hex(bytes),
    );
    assert.equal(Number(assets[0]!.n), 0, 'no asset');
    assert.deepEqual(await usage(token), {
      files_used: 0,
      bytes_used: 0,
      files_reserved: 0,
      bytes_reserved: 0,
      open_uploads: 0,
    });
  }

  test('a direct upload still sending when its token is revoked on another node is refused: nothing kept', async () => {
    const token = await mint();
    const bytes = randomBytes(200_000);
    // All but the last byte sent to B; the request began while the token worked.
    const req = httpRequest(`${b.url}/v1/assets?name=under-way.bin`, {
      method: 'POST',
      headers: {
        ...bearer(token.secret),
        'content-type': 'application/octet-stream',
        'content-length': String(bytes.length),
      },
    });
    const answer = answerOf(req);
    req.write(bytes.subarray(0, bytes.length - 1));
    await eventually(async () => (await usage(token)).open_uploads === 1, 'the upload is under way');
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/upload-tokens/${token.id}`)).status, 204);
    req.end(bytes.subarray(bytes.length - 1));
    const res = await answer;
    assert.equal(res.status, 401, res.body);
    assert.equal(JSON.parse(res.body).error.code, 'UNAUTHORIZED', res.body);
    await nothingKept(token, bytes);
  });

  test('a presigned upload PUT before its token was revoked is refused when confirmed after', async () => {
    const token = await mint();
    const bytes = randomBytes(3000);
    const intent = await declare(w, token.secret, { name: 'confirmed-late.bin', size: bytes.length });
    assert.equal((await putPresigned(intent, bytes)).status, 200);
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/upload-tokens/${token.id}`)).status, 204);
    // The token itself is refused at the door; the key that minted it, at the completion.
    refused(await complete(b, token.secret, intent.id), 'UNAUTHORIZED', 'by the token', 401);
    refused(await complete(b, w.key, intent.id), 'UNAUTHORIZED', 'by its key', 401);
    await nothingKept(token, bytes);
  });

  test('an object sent to a URL /v1/s3/sign gave the token before it was revoked is not kept', async () => {
    const token = await mint();
    const bytes = randomBytes(900);
    const signed = await api(b.url, token.secret, 'POST', '/v1/s3/sign', {
      method: 'PUT',
      key: 'c0ffee00-0000-4000-8000-000000000001-late.bin',
      contentType: 'application/octet-stream',
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/upload-tokens/${token.id}`)).status, 204);
    // The URL still takes the PUT until it expires (S3 cannot be told); completing what it sent
    // is refused: at once where Wharf receives the PUT, by the sweep where storage does.
    await fetch(signed.body.url, {
      method: 'PUT',
      headers: signed.body.headers,
      body: new Uint8Array(bytes),
    });
    const state = await settled(signed.body.upload_id);
    assert.equal(state.body.status, 'expired', JSON.stringify(state.body));
    await nothingKept(token, bytes);
  });

  test('what a token uploaded before it was revoked stays', async () => {
    const token = await mint();
    const bytes = randomBytes(500);
    const done = await uploadRaw(b, token.secret, 'before-revoke.bin', bytes);
    assert.equal(done.status, 201, JSON.stringify(done.body));
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/upload-tokens/${token.id}`)).status, 204);
    const asset = await api(b.url, w.key, 'GET', `/v1/assets/${done.body.asset.id}`);
    assert.equal(asset.status, 200, JSON.stringify(asset.body));
    assert.equal(asset.body.sha256, sha256Hex(bytes));
    assert.equal((await usage(token)).files_used, 1);
  });

  /**
   * A token of a fresh account (quota 1,102,400) with 10 presigned uploads of 100,000 bytes
   * declared (no bytes sent) and a multipart upload of 102,400 whose one part storage holds:
   * the whole quota held by uploads that are pending.
   */
  async function holdingEverything(mintWith?: (key: string) => Promise<string>) {
    const { accountId, key } = await w.newAccount();
    await w.wharf.core.keys.updateAccount(accountId, { storageQuota: 1_102_400 });
    const minter = mintWith ? await mintWith(key) : key;
    const token = await mint({}, minter);
    const presigned: string[] = [];
    for (let i = 0; i < 10; i += 1) {
      presigned.push((await declare(w, token.secret, { name: `held-${i}.bin`, size: 100_000 })).id);
    }
    const part = randomBytes(102_400);
    const started = await api(w.url, token.secret, 'POST', '/v1/multipart', {
      name: 'm.bin',
      size: part.length,
    });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const signed = await api(b.url, token.secret, 'POST', `/v1/multipart/${started.body.id}/parts`, {
      partNumbers: [1],
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const put = await fetch(signed.body.parts[0].url, {
      method: 'PUT',
      headers: signed.body.parts[0].headers,
      body: new Uint8Array(part),
    });
    assert.equal(put.status, 200, await put.text());
    const account = await api(w.url, key, 'GET', '/v1/account');
    assert.deepEqual(
      [account.body.usage.bytes_reserved, account.body.usage.pending_uploads],
      [1_102_400, 11],
    );
    refused(await uploadRaw(w, key, 'full.bin', randomBytes(1000)), 'QUOTA_EXCEEDED', 'full');
    assert.equal(await partsHeld(started.body), true, 'storage holds the part');
    return {
      key,
      token,
      uploads: [...presigned, started.body.id],
      multipart: started.body,
      etag: put.headers.get('etag'),
    };
  }

  /** Whether storage holds the parts of a multipart upload (as multipart.test.ts looks). */
  async function partsHeld(started: { uploadId: string; key: string }): Promise<boolean> {
    if (onS3(w)) return (await pendingWrites(w)).includes(started.key);
    const dirs: string[] = await readdir(join(w.dataDir, 'blobs', 'multipart')).catch(() => []);
    return dirs.includes(started.uploadId);
  }

  /** Everything the token's pending uploads held is given back by the revocation itself. */
  async function allGivenBack(held: Awaited<ReturnType<typeof holdingEverything>>): Promise<void> {
    const { key, token, uploads, multipart, etag } = held;
    const account = await api(b.url, key, 'GET', '/v1/account');
    assert.deepEqual([account.body.usage.bytes_reserved, account.body.usage.pending_uploads], [0, 0]);
    const shown = await api(b.url, key, 'GET', `/v1/upload-tokens/${token.id}`);
    assert.equal(shown.body.status, 'revoked');
    assert.deepEqual(
      [shown.body.usage.files_reserved, shown.body.usage.bytes_reserved, shown.body.usage.open_uploads],
      [0, 0, 0],
      JSON.stringify(shown.body),
    );
    const stored = await uploadRaw(b, key, 'room.bin', randomBytes(1_000_000));
    assert.equal(stored.status, 201, JSON.stringify(stored.body));
    // Each ended as failed, with the refusal its completion would get, recorded once.
    const events = await api(b.url, key, 'GET', '/v1/events?type=upload.failed&limit=1000');
    const failed = events.body.data.filter((e: { data: { upload: { id: string } } }) =>
      uploads.includes(e.data.upload.id),
    );
    assert.equal(failed.length, uploads.length, JSON.stringify(events.body));
    for (const event of failed) assert.equal(event.data.error.code, 'UNAUTHORIZED');
    for (const id of uploads) {
      const state = await api(b.url, key, 'GET', `/v1/uploads/${id}`);
      assert.equal(state.status, 200, JSON.stringify(state.body));
      assert.equal(state.body.status, 'expired', JSON.stringify(state.body));
    }
    // Completing one is refused as a revoked token's upload is, whoever completes it.
    refused(await complete(b, key, uploads[0]!), 'UNAUTHORIZED', 'confirmed after', 401);
    refused(
      await api(b.url, key, 'POST', `/v1/multipart/${multipart.id}/complete`, {
        parts: [{ PartNumber: 1, ETag: etag }],
      }),
      'UNAUTHORIZED',
      'multipart completed after',
      401,
    );
    // Its part goes with the job the revocation queued.
    await w.wharf.core.jobs.drain();
    assert.equal(await partsHeld(multipart), false, 'storage no longer holds the part');
  }

  test('revoking a token ends its pending uploads at once: the quota, slots and parts they held are freed', async () => {
    const held = await holdingEverything();
    assert.equal((await api(w.url, held.key, 'DELETE', `/v1/upload-tokens/${held.token.id}`)).status, 204);
    await allGivenBack(held);
  });

  test("revoking the key that minted a token ends the token's pending uploads too", async () => {
    let minterId = '';
    const held = await holdingEverything(async (admin) => {
      const minter = await api(w.url, admin, 'POST', '/v1/keys', { name: 'backend', scopes: ['upload'] });
      assert.equal(minter.status, 201, JSON.stringify(minter.body));
      minterId = minter.body.key.id;
      return minter.body.secret;
    });
    assert.equal((await api(w.url, held.key, 'DELETE', `/v1/keys/${minterId}`)).status, 204);
    await allGivenBack(held);
  });

  /** A download URL and a transform URL the token signs for an image of its own, as B serves them. */
  async function signedByToken(token: Minted, keyId: string): Promise<string[]> {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#993366' } })
      .png()
      .toBuffer();
    const own = await uploadRaw(w, token.secret, `t-${randomBytes(4).toString('hex')}.png`, png, {
      contentType: 'image/png',
    });
    assert.equal(own.status, 201, JSON.stringify(own.body));
    const id = own.body.asset.id;
    const urls = [
      (await api(w.url, token.secret, 'POST', `/v1/assets/${id}/signed-url`, {})).body.url as string,
      (await api(w.url, token.secret, 'POST', `/v1/assets/${id}/image-url`, { w: 4 })).body.url as string,
    ];
    for (const url of urls) {
      assert.equal(new URL(url).searchParams.get('signer'), `${keyId}.${token.id}`, url);
      assert.equal((await fetch(url.replace(w.url, b.url))).status, 200, url);
    }
    return urls.map((url) => url.replace(w.url, b.url));
  }

  async function revoked(urls: string[], label: string): Promise<void> {
    for (const url of urls) refused(await readJson(fetch(url)), 'URL_REVOKED', `${label}: ${url}`);
  }

  test('revoked on one node: the URLs the token signed stop on the other (403 URL_REVOKED)', async () => {
    const token = await mint();
    const keyId = (await w.wharf.core.keys.authenticate(w.key)).keyId;
    const urls = await signedByToken(token, keyId);
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/upload-tokens/${token.id}`)).status, 204);
    await revoked(urls, 'token revoked');
  });

  test('revoking the key that minted it stops the URLs the token signed too', async () => {
    const minter = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'signer', scopes: ['upload'] });
    const token = await mint({}, minter.body.secret);
    const urls = await signedByToken(token, minter.body.key.id);
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/keys/${minter.body.key.id}`)).status, 204);
    await revoked(urls, 'minting key revoked');
  });
});
