import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  complete,
  createAsset,
  dbQuery,
  declare,
  filesUnder,
  putPresigned,
  readJson,
  uploadRaw,
} from '../helpers/assets.js';
import { deployment, storesOnS3 } from '../helpers/deployment.js';
import { api, type JsonResponse, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

/** GET the content with no credentials at all; follows a redirect to storage if there is one. */
async function anonymous(
  id: string,
): Promise<{ status: number; bytes: Buffer; body: JsonResponse['body']; headers: Headers }> {
  const res = await fetch(`${w.url}/v1/assets/${id}/content`);
  const bytes = Buffer.from(await res.arrayBuffer());
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    body = undefined;
  }
  return { status: res.status, bytes, body, headers: res.headers };
}

function patchAccess(id: string, access: unknown, key = w.key): Promise<JsonResponse> {
  return api(w.url, key, 'PATCH', `/v1/assets/${id}`, { access });
}

describe('access levels', () => {
  let key: string;
  let bytes: Buffer;
  let id: string;
  before(async () => {
    ({ key } = await w.newAccount());
    bytes = randomBytes(3000);
    id = (await createAsset(w, key, 'shared.bin', bytes)).id;
  });

  test('a new asset is private: no content without a key, just like an id that does not exist', async () => {
    const asset = await api(w.url, key, 'GET', `/v1/assets/${id}`);
    assert.equal(asset.body.access, 'private');
    const mine = await anonymous(id);
    const missing = await anonymous(randomUUID());
    const garbage = await anonymous('not-an-id');
    assert.equal(mine.status, 401);
    assert.equal(mine.body?.error?.code, 'UNAUTHORIZED');
    // Indistinguishable: nobody without a key learns which private ids exist.
    for (const other of [missing, garbage]) {
      assert.equal(other.status, mine.status);
      assert.deepEqual(other.body, mine.body);
    }
    assert.notDeepEqual(mine.bytes, bytes);
  });

  test('made public, the content is readable without a key; private again, it is not', async () => {
    const made = await patchAccess(id, 'public', key);
    assert.equal(made.status, 200, JSON.stringify(made.body));
    assert.equal(made.body.access, 'public');
    assert.equal(made.body.id, id);
    assert.equal((await api(w.url, key, 'GET', `/v1/assets/${id}`)).body.access, 'public');

    const open = await anonymous(id);
    assert.equal(open.status, 200);
    assert.deepEqual(open.bytes, bytes);
    // Public means any page may embed it (<img>, <video>), as its renderings; still sandboxed.
    assert.equal(open.headers.get('cross-origin-resource-policy'), 'cross-origin');
    assert.match(open.headers.get('content-security-policy') ?? '', /sandbox/);
    assert.equal(open.headers.get('x-content-type-options'), 'nosniff');
    // The same asset downloaded with a key is the key holder's: Wharf's own site only.
    const keyed = await fetch(`${w.url}/v1/assets/${id}/content`, { headers: { 'x-api-key': key } });
    await keyed.arrayBuffer();
    assert.equal(keyed.headers.get('cross-origin-resource-policy'), 'same-site');

    const back = await patchAccess(id, 'private', key);
    assert.equal(back.status, 200, JSON.stringify(back.body));
    assert.equal(back.body.access, 'private');
    const closed = await anonymous(id);
    assert.equal(closed.status, 401);
    assert.notDeepEqual(closed.bytes, bytes);
    assert.deepEqual(closed.body, (await anonymous(randomUUID())).body);
  });

  test('a public asset’s record (not its content) still needs a key', async () => {
    await patchAccess(id, 'public', key);
    try {
      const res = await api(w.url, undefined, 'GET', `/v1/assets/${id}`);
      assert.equal(res.status, 401);
      const list = await api(w.url, undefined, 'GET', '/v1/assets');
      assert.equal(list.status, 401);
    } finally {
      await patchAccess(id, 'private', key);
    }
  });

  test('a wrong key is refused even on a public asset: a key presented is checked', async () => {
    await patchAccess(id, 'public', key);
    try {
      const res = await fetch(`${w.url}/v1/assets/${id}/content`, {
        headers: { 'x-api-key': 'wharf_wrong-key' },
      });
      await res.arrayBuffer();
      assert.equal(res.status, 401);
    } finally {
      await patchAccess(id, 'private', key);
    }
  });

  test('a public asset is served to a key of another account as to anyone; a private one stays 404', async () => {
    const other = await w.newAccount();
    const withOther = async () => {
      const res = await fetch(`${w.url}/v1/assets/${id}/content`, { headers: { 'x-api-key': other.key } });
      return { res, bytes: Buffer.from(await res.arrayBuffer()) };
    };
    const hidden = await withOther();
    assert.equal(hidden.res.status, 404);
    assert.equal(JSON.parse(hidden.bytes.toString()).error.code, 'NOT_FOUND');
    await patchAccess(id, 'public', key);
    try {
      const open = await withOther();
      assert.equal(open.res.status, 200);
      assert.deepEqual(open.bytes, bytes);
      // As a keyless visitor gets it: public caching, embeddable, still sandboxed.
      assert.equal(open.res.headers.get('cache-control'), 'public, no-cache');
      assert.equal(open.res.headers.get('cross-origin-resource-policy'), 'cross-origin');
      assert.match(open.res.headers.get('content-security-policy') ?? '', /sandbox/);
      // The record is still the owner's alone.
      assert.equal((await api(w.url, other.key, 'GET', `/v1/assets/${id}`)).status, 404);
    } finally {
      await patchAccess(id, 'private', key);
    }
    assert.equal((await withOther()).res.status, 404);
  });

  test('only the owner changes access: another account gets 404 and nothing changes', async () => {
    const other = await w.newAccount();
    const res = await patchAccess(id, 'public', other.key);
    assert.equal(res.status, 404, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'NOT_FOUND');
    assert.equal((await api(w.url, key, 'GET', `/v1/assets/${id}`)).body.access, 'private');
    assert.equal((await anonymous(id)).status, 401);
  });

  test('an access level that does not exist is refused', async () => {
    for (const access of ['Public', 'world', '', null, true]) {
      const res = await patchAccess(id, access, key);
      assert.equal(res.status, 400, `${JSON.stringify(access)}: ${JSON.stringify(res.body)}`);
    }
    const extra = await api(w.url, key, 'PATCH', `/v1/assets/${id}`, { access: 'public', name: 'x' });
    assert.equal(extra.status, 400);
    assert.equal((await api(w.url, key, 'GET', `/v1/assets/${id}`)).body.access, 'private');
  });

  test('PATCH of an asset that does not exist is 404', async () => {
    const res = await patchAccess(randomUUID(), 'public', key);
    assert.equal(res.status, 404);
  });

  test('a named file uploaded with ?access=public is readable without a key', async () => {
    const content = randomBytes(500);
    const put = await readJson(
      fetch(`${w.url}/v1/files/site/banner.bin?access=public`, {
        method: 'PUT',
        headers: { 'x-api-key': key, 'content-type': 'application/octet-stream' },
        body: new Uint8Array(content),
      }),
    );
    assert.equal(put.status, 201, JSON.stringify(put.body));
    assert.equal(put.body.asset.access, 'public');
    const open = await anonymous(put.body.asset.id);
    assert.equal(open.status, 200);
    assert.deepEqual(open.bytes, content);
  });
});

describe('storage quota', () => {
  async function quotaAccount(quota: number) {
    const account = await w.newAccount();
    await w.wharf.core.keys.updateAccount(account.accountId, { storageQuota: quota });
    return account;
  }

  function stored(accountId: string): { assets: number; bytes: number; pending: number } {
    const row = dbQuery<{ n: number; b: number | null }>(
      w,
      'select count(*) as n, sum(size) as b from assets where account_id = ?',
      accountId,
    )[0]!;
    const pending = dbQuery<{ n: number }>(
      w,
      "select count(*) as n from uploads where account_id = ? and status = 'pending'",
      accountId,
    )[0]!.n;
    return { assets: Number(row.n), bytes: Number(row.b ?? 0), pending: Number(pending) };
  }

  function refused(res: JsonResponse, label: string): void {
    assert.equal(res.status, 403, `${label}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body?.error?.code, 'QUOTA_EXCEEDED', `${label}: ${JSON.stringify(res.body)}`);
  }

  test('uploads over the quota are refused with QUOTA_EXCEEDED and store nothing', async () => {
    const { accountId, key } = await quotaAccount(100);
    const first = randomBytes(60);
    const ok = await uploadRaw(w, key, 'first.bin', first);
    assert.equal(ok.status, 201, JSON.stringify(ok.body));

    const before = stored(accountId);
    assert.deepEqual(before, { assets: 1, bytes: 60, pending: 0 });

    const direct = await uploadRaw(w, key, 'too-much.bin', randomBytes(41));
    refused(direct, 'direct upload');
    assert.equal(direct.body.error.details?.quota, 100);
    assert.equal(direct.body.error.details?.used, 60);

    const named = await readJson(
      fetch(`${w.url}/v1/files/q/too-much.bin`, {
        method: 'PUT',
        headers: { 'x-api-key': key, 'content-type': 'application/octet-stream' },
        body: new Uint8Array(randomBytes(41)),
      }),
    );
    refused(named, 'named file');

    const intent = await api(w.url, key, 'POST', '/v1/uploads', { name: 'too-much.bin', size: 41 });
    refused(intent, 'presigned intent');
    const batch = await api(w.url, key, 'POST', '/v1/uploads', {
      files: [
        { name: 'a.bin', size: 20 },
        { name: 'b.bin', size: 21 },
      ],
    });
    refused(batch, 'presigned batch (the sum counts)');

    assert.deepEqual(stored(accountId), before);
    const list = await api(w.url, key, 'GET', '/v1/assets');
    assert.deepEqual(
      list.body.data.map((a: { name: string }) => a.name),
      ['first.bin'],
    );
  });

  test('a body without a declared length is refused once its size is known, and nothing is kept', async () => {
    const { accountId, key } = await quotaAccount(100);
    const bytes = randomBytes(150);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(bytes.subarray(0, 75)));
        controller.enqueue(new Uint8Array(bytes.subarray(75)));
        controller.close();
      },
    });
    const res = await readJson(
      fetch(`${w.url}/v1/assets?name=chunked.bin`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/octet-stream' },
        body,
        duplex: 'half',
      } as RequestInit),
    );
    refused(res, 'chunked upload');
    assert.deepEqual(stored(accountId), { assets: 0, bytes: 0, pending: 0 });
  });

  test('intents that each fit but together do not: the first holds its bytes, the second is refused', async () => {
    const { accountId, key } = await quotaAccount(100);
    const a = randomBytes(60);
    const ia = await declare(w, key, { name: 'a.bin', size: 60, content_type: 'application/octet-stream' });
    const second = await api(w.url, key, 'POST', '/v1/uploads', { name: 'b.bin', size: 60 });
    refused(second, 'second intent, while the first holds 60 of 100 bytes');
    assert.deepEqual(second.body.error.details, { quota: 100, used: 0, reserved: 60 });
    // Nor can a direct upload take what the pending intent holds.
    refused(await uploadRaw(w, key, 'sneak.bin', randomBytes(41)), 'direct upload into the held bytes');

    assert.equal((await putPresigned(ia, a)).status, 200);
    const done = await complete(w, key, ia.id);
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.deepEqual(stored(accountId), { assets: 1, bytes: 60, pending: 0 });
    // Completed, it holds nothing more than its asset: exactly what is left fits.
    assert.equal((await declare(w, key, { name: 'c.bin', size: 40 })).status, 'pending');
    refused(await api(w.url, key, 'POST', '/v1/uploads', { name: 'd.bin', size: 1 }), 'one byte over');
    const hashes = dbQuery<{ sha256: string }>(
      w,
      'select sha256 from assets where account_id = ?',
      accountId,
    );
    assert.deepEqual(
      hashes.map((h) => h.sha256),
      [sha256Hex(a)],
    );
  });

  test('exactly at the limit is allowed; identical content is still allowed there (it costs nothing)', async () => {
    const { accountId, key } = await quotaAccount(100);
    const first = randomBytes(60);
    const rest = randomBytes(40);
    assert.equal((await uploadRaw(w, key, 'first.bin', first)).status, 201);
    const full = await uploadRaw(w, key, 'rest.bin', rest);
    assert.equal(full.status, 201, `fills the quota exactly: ${JSON.stringify(full.body)}`);
    assert.deepEqual(stored(accountId), { assets: 2, bytes: 100, pending: 0 });

    refused(await uploadRaw(w, key, 'one-more.bin', randomBytes(1)), 'one byte over');

    const again = await uploadRaw(w, key, 'first-again.bin', first);
    assert.equal(again.status, 200, `direct upload of known content: ${JSON.stringify(again.body)}`);
    assert.equal(again.body.status, 'exists');

    const known = await api(w.url, key, 'POST', '/v1/uploads', {
      name: 'rest-again.bin',
      size: rest.length,
      sha256: sha256Hex(rest),
    });
    assert.equal(known.status, 200, `intent for known content: ${JSON.stringify(known.body)}`);
    assert.equal(known.body.status, 'exists');
    assert.equal(known.body.asset.id, full.body.asset.id);

    assert.deepEqual(stored(accountId), { assets: 2, bytes: 100, pending: 0 });
  });

  test('one asset deleted many times at once: one 204, its bytes given back once, one asset.deleted', async () => {
    const { accountId, key } = await quotaAccount(1000);
    assert.equal((await uploadRaw(w, key, 'kept.bin', randomBytes(300))).status, 201);
    const doomed = await uploadRaw(w, key, 'doomed.bin', randomBytes(400));
    assert.equal(doomed.status, 201);
    const id = doomed.body.asset.id as string;
    // Scaled: sent to two nodes, whose deletions on PostgreSQL both read the row before either
    // removes it. (The embedded default is one node per data directory.)
    const second = deployment === 'scaled' ? await startWharf({ sharing: w }) : w;
    let answers: Response[];
    try {
      answers = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          fetch(`${(i % 2 ? second : w).url}/v1/assets/${id}`, {
            method: 'DELETE',
            headers: { 'x-api-key': key },
          }),
        ),
      );
    } finally {
      if (second !== w) await second.close();
    }
    const statuses = answers.map((res) => res.status).sort();
    assert.deepEqual(statuses, [204, ...Array(11).fill(404)], 'one deletion, eleven of nothing');
    const [account] = dbQuery<{ bytes_used: number }>(
      w,
      'select bytes_used from accounts where id = ?',
      accountId,
    );
    assert.equal(Number(account!.bytes_used), 300, 'its 400 bytes given back once');
    const [events] = dbQuery<{ n: number }>(
      w,
      "select count(*) as n from events where account_id = ? and type = 'asset.deleted'",
      accountId,
    );
    assert.equal(Number(events!.n), 1, 'one asset.deleted');
    // The quota still holds at its edge: 700 more fit, 701 do not.
    assert.equal((await uploadRaw(w, key, 'fills.bin', randomBytes(700))).status, 201);
    refused(await uploadRaw(w, key, 'over.bin', randomBytes(1)), 'one byte over');
  });

  test('lifting the quota lets uploads through again', async () => {
    const { accountId, key } = await quotaAccount(10);
    refused(await uploadRaw(w, key, 'big.bin', randomBytes(11)), 'over');
    await w.wharf.core.keys.updateAccount(accountId, { storageQuota: null });
    const res = await uploadRaw(w, key, 'big.bin', randomBytes(11));
    assert.equal(res.status, 201, JSON.stringify(res.body));
  });
});

describe('disabled account', () => {
  test('keyless reads stop too: its public assets and its signed URLs answer no bytes', async () => {
    const { accountId, key } = await w.newAccount();
    const bytes = randomBytes(300);
    const asset = await createAsset(w, key, 'shared.bin', bytes);
    assert.equal(
      (await api(w.url, key, 'PATCH', `/v1/assets/${asset.id}`, { access: 'public' })).status,
      200,
    );
    const signed = await api(w.url, key, 'POST', `/v1/assets/${asset.id}/signed-url`, {});
    assert.equal(signed.status, 200);
    assert.equal((await fetch(`${w.url}/v1/assets/${asset.id}/content`)).status, 200);
    assert.equal((await fetch(signed.body.url)).status, 200);

    await w.wharf.core.keys.updateAccount(accountId, { disabled: true });
    // A public asset of a disabled account reads like any private one: key required.
    const open = await readJson(fetch(`${w.url}/v1/assets/${asset.id}/content`));
    assert.equal(open.status, 401);
    assert.equal(open.body.error.code, 'UNAUTHORIZED');
    const viaUrl = await readJson(fetch(signed.body.url));
    assert.equal(viaUrl.status, 403);
    assert.equal(viaUrl.body.error.code, 'ACCOUNT_DISABLED');

    await w.wharf.core.keys.updateAccount(accountId, { disabled: false });
    const again = await fetch(signed.body.url);
    assert.equal(again.status, 200);
    assert.deepEqual(Buffer.from(await again.arrayBuffer()), bytes);
  });

  test('every native route refuses its keys with ACCOUNT_DISABLED; re-enabling restores them', async () => {
    const { accountId, key } = await w.newAccount();
    const member = await w.newKey('member', accountId);
    const bytes = randomBytes(200);
    const asset = await createAsset(w, key, 'kept.bin', bytes);
    const intent = await declare(w, key, { name: 'later.bin', size: 5 });
    const put = await readJson(
      fetch(`${w.url}/v1/files/ns/kept.txt`, {
        method: 'PUT',
        headers: { 'x-api-key': key, 'content-type': 'text/plain' },
        body: 'kept',
      }),
    );
    assert.equal(put.status, 201);
    const keyId = (await api(w.url, key, 'GET', '/v1/keys')).body.data[0].id as string;
    const bystander = await w.newAccount();

    await w.wharf.core.keys.updateAccount(accountId, { disabled: true });

    const requests: Array<[string, string, () => Promise<JsonResponse>]> = [];
    const call = (method: string, path: string, body?: unknown) =>
      requests.push([method, path, () => api(w.url, key, method, path, body)]);
    call('GET', '/v1/assets');
    call('GET', `/v1/assets/${asset.id}`);
    call('PATCH', `/v1/assets/${asset.id}`, { access: 'public' });
    call('DELETE', `/v1/assets/${asset.id}`);
    call('POST', `/v1/assets/${asset.id}/signed-url`, {});
    call('GET', `/v1/assets/${asset.id}/content`);
    call('POST', '/v1/uploads', { name: 'x.bin', size: 1 });
    call('GET', `/v1/uploads/${intent.id}`);
    call('POST', `/v1/uploads/${intent.id}/complete`);
    call('GET', '/v1/files/ns/kept.txt');
    call('GET', '/v1/files/ns/kept.txt/versions');
    call('GET', '/v1/keys');
    call('POST', '/v1/keys', { name: 'new', role: 'member' });
    call('DELETE', `/v1/keys/${keyId}`);
    requests.push(['POST', '/v1/assets (raw)', () => uploadRaw(w, key, 'new.bin', 'new bytes')]);
    requests.push([
      'PUT',
      '/v1/files/ns/kept.txt',
      () =>
        readJson(
          fetch(`${w.url}/v1/files/ns/kept.txt`, {
            method: 'PUT',
            headers: { 'x-api-key': key, 'content-type': 'text/plain' },
            body: 'v2',
          }),
        ),
    ]);
    requests.push([
      'GET',
      '/v1/assets (member key, Bearer)',
      () => readJson(fetch(`${w.url}/v1/assets`, { headers: { authorization: `Bearer ${member.key}` } })),
    ]);

    for (const [method, path, send] of requests) {
      const res = await send();
      assert.equal(res.status, 403, `${method} ${path}: ${JSON.stringify(res.body)}`);
      assert.equal(
        res.body?.error?.code,
        'ACCOUNT_DISABLED',
        `${method} ${path}: ${JSON.stringify(res.body)}`,
      );
    }

    // Another account is not affected.
    assert.equal((await api(w.url, bystander.key, 'GET', '/v1/assets')).status, 200);

    await w.wharf.core.keys.updateAccount(accountId, { disabled: false });

    // Nothing the refused requests asked for happened; everything works again.
    const list = await api(w.url, key, 'GET', '/v1/assets');
    assert.equal(list.status, 200, JSON.stringify(list.body));
    assert.deepEqual(list.body.data.map((a: { name: string }) => a.name).sort(), ['kept.bin', 'kept.txt']);
    const read = await api(w.url, key, 'GET', `/v1/assets/${asset.id}`);
    assert.equal(read.body.access, 'private');
    const res = await fetch(`${w.url}/v1/assets/${asset.id}/content`, { headers: { 'x-api-key': key } });
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    const file = await api(w.url, key, 'GET', '/v1/files/ns/kept.txt');
    assert.equal(file.body.version, 1);
    assert.equal((await api(w.url, key, 'GET', '/v1/keys')).body.data.length, 2);
    assert.equal((await api(w.url, member.key, 'GET', `/v1/uploads/${intent.id}`)).status, 200);
    assert.equal((await uploadRaw(w, key, 'after.bin', 'after re-enabling')).status, 201);
  });

  // The embedded endpoint is Wharf's own: on S3 the URLs point at the bucket, which knows
  // nothing of Wharf's accounts, and what stops a disabled account there is that nothing it
  // stored completes (POST /v1/uploads/{id}/complete is ACCOUNT_DISABLED, the test above).
  test('the storage endpoint refuses the URLs its keys signed with AccountProblem, storing nothing', {
    skip: storesOnS3 && 'the embedded storage endpoint; on S3 the URLs go to the bucket',
  }, async () => {
    const { accountId, key } = await w.newAccount();
    const bytes = randomBytes(2000);
    const intent = await declare(w, key, { name: 'late.bin', size: bytes.length });
    // A multipart upload's last part may be small; its URL is signed like any part's.
    const multipart = await api(w.url, key, 'POST', '/v1/multipart', {
      name: 'movie.mp4',
      content_type: 'video/mp4',
      size: 5 * 1024 * 1024 + bytes.length,
    });
    assert.equal(multipart.status, 201, JSON.stringify(multipart.body));
    const parts = await api(w.url, key, 'POST', `/v1/multipart/${multipart.body.id}/parts`, {
      partNumbers: [2],
    });
    assert.equal(parts.status, 200, JSON.stringify(parts.body));
    // Signed for an S3 client (Uppy): this PutObject completes by itself once stored.
    const s3Put = await api(w.url, key, 'POST', '/v1/s3/sign', {
      method: 'PUT',
      key: 'uppy.bin',
      contentType: 'application/octet-stream',
    });
    assert.equal(s3Put.status, 200, JSON.stringify(s3Put.body));
    const s3Create = await api(w.url, key, 'POST', '/v1/s3/sign', {
      method: 'POST',
      key: 'uppy-big.bin',
      contentType: 'application/octet-stream',
    });
    assert.equal(s3Create.status, 200, JSON.stringify(s3Create.body));
    const principal = await w.wharf.core.keys.authenticate(key);
    const { post } = await w.wharf.core.uploads.createPost(principal, { name: 'form.bin', maxSize: 4096 });

    await w.wharf.core.keys.updateAccount(accountId, { disabled: true });
    const stored = () => filesUnder(join(w.dataDir, 'blobs'));
    const before = await stored();

    const form = new FormData();
    for (const [name, value] of Object.entries(post.fields)) form.append(name, value);
    form.append('file', new Blob([new Uint8Array(bytes)]), 'form.bin');
    const requests: Array<[string, () => Promise<Response>]> = [
      ['presigned PUT', () => putPresigned(intent, bytes)],
      [
        'UploadPart',
        () =>
          fetch(parts.body.parts[0].url, {
            method: 'PUT',
            headers: parts.body.parts[0].headers,
            body: new Uint8Array(bytes),
          }),
      ],
      ['PutObject signed by /v1/s3/sign', () => putPresigned(s3Put.body, bytes)],
      [
        'CreateMultipartUpload',
        () => fetch(s3Create.body.url, { method: 'POST', headers: s3Create.body.headers }),
      ],
      ['POST Object form', () => fetch(post.url, { method: 'POST', body: form })],
    ];
    for (const [name, send] of requests) {
      const res = await send();
      const xml = await res.text();
      assert.equal(res.status, 403, `${name}: ${xml}`);
      assert.match(xml, /<Code>AccountProblem<\/Code>/, name);
      assert.match(xml, /disabled/, name);
    }
    assert.deepEqual(await stored(), before, 'nothing was written');

    // Enabled again, the same URL stores the file, and it completes.
    await w.wharf.core.keys.updateAccount(accountId, { disabled: false });
    // The upload the S3 client's PUT would have completed did not complete.
    const uppy = await api(w.url, key, 'GET', `/v1/uploads/${s3Put.body.upload_id}`);
    assert.equal(uppy.body.status, 'pending', JSON.stringify(uppy.body));
    assert.equal((await putPresigned(intent, bytes)).status, 200);
    const done = await complete(w, key, intent.id);
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.asset.sha256, sha256Hex(bytes));
  });
});

describe('a file size limit lowered while uploads are under way', () => {
  /** The account's uploads as recorded, with the code each failed with. */
  async function endings(key: string, ids: string[]): Promise<string[]> {
    const events = await api(w.url, key, 'GET', '/v1/events?type=upload.failed&limit=1000');
    return ids.map(
      (id) =>
        events.body.data.find((e: { data: { upload: { id: string } } }) => e.data.upload.id === id)?.data
          .error.code,
    );
  }

  test('applies at completion, as a lowered quota does: FILE_TOO_LARGE, nothing kept, nothing held', async () => {
    const { accountId, key } = await w.newAccount();
    const bytes = () => randomBytes(3000);
    // A presigned upload PUT, a multipart upload whose part is sent, a tus upload created: all
    // declared under no limit of the account's own.
    const presigned = bytes();
    const intent = await declare(w, key, { name: 'p.bin', size: presigned.length });
    assert.equal((await putPresigned(intent, presigned)).status, 200);
    const part = bytes();
    const started = await api(w.url, key, 'POST', '/v1/multipart', { name: 'm.bin', size: part.length });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const signed = await api(w.url, key, 'POST', `/v1/multipart/${started.body.id}/parts`, {
      partNumbers: [1],
    });
    const put = await fetch(signed.body.parts[0].url, {
      method: 'PUT',
      headers: signed.body.parts[0].headers,
      body: new Uint8Array(part),
    });
    assert.equal(put.status, 200, await put.text());
    const tusBytes = bytes();
    const created = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        'x-api-key': key,
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(tusBytes.length),
        'Upload-Metadata': `filename ${Buffer.from('t.bin').toString('base64')}`,
      },
    });
    assert.equal(created.status, 201, await created.text());
    const location = new URL(created.headers.get('location')!, w.url).toString();

    await w.wharf.core.keys.updateAccount(accountId, { maxFileSize: 1000 });

    const tooLarge = (res: JsonResponse, label: string) => {
      assert.equal(res.status, 413, `${label}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'FILE_TOO_LARGE', label);
      assert.equal(res.body.error.details.limit, 1000, label);
    };
    tooLarge(await complete(w, key, intent.id), 'presigned complete');
    tooLarge(
      await api(w.url, key, 'POST', `/v1/multipart/${started.body.id}/complete`, {
        parts: [{ PartNumber: 1, ETag: put.headers.get('etag') }],
      }),
      'multipart complete',
    );
    const patched = await readJson(
      fetch(location, {
        method: 'PATCH',
        headers: {
          'x-api-key': key,
          'Tus-Resumable': '1.0.0',
          'Upload-Offset': '0',
          'Content-Type': 'application/offset+octet-stream',
        },
        body: new Uint8Array(tusBytes),
      }),
    );
    tooLarge(patched, 'tus PATCH');

    // Each ended as a quota refusal ends it: failed, with the refusal; nothing kept or held.
    const uploads = dbQuery<{ id: string; status: string }>(
      w,
      'select id, status from uploads where account_id = ? order by created_at',
      accountId,
    );
    assert.deepEqual(
      uploads.map((u) => u.status),
      ['expired', 'expired', 'expired'],
    );
    assert.deepEqual(
      await endings(
        key,
        uploads.map((u) => u.id),
      ),
      ['FILE_TOO_LARGE', 'FILE_TOO_LARGE', 'FILE_TOO_LARGE'],
    );
    const account = await api(w.url, key, 'GET', '/v1/account');
    assert.deepEqual(account.body.usage, {
      bytes_used: 0,
      bytes_reserved: 0,
      bytes_free: null,
      assets: 0,
      pending_uploads: 0,
    });
  });
});
