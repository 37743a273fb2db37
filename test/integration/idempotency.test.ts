import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { IDEMPOTENCY_LEASE_MS, IDEMPOTENCY_TTL_MS, IdempotencyService } from '../../src/core/idempotency.js';
import { createIdSource } from '../../src/core/ids.js';
import { connect } from '../../src/db/connect.js';
import { createSqlStore } from '../../src/db/store/index.js';
import { Wharf } from '../../src/sdk/node.js';
import { dbQuery } from '../helpers/assets.js';
import { api, type JsonResponse } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * Idempotency keys on declarations (docs/api.md, "Sending a declaration again"): the same
 * request sent again with its key gets the first answer, on both deployments.
 */

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

const declare = (body: unknown, headers: Record<string, string> = {}, secret = w.key) =>
  api(w.url, secret, 'POST', '/v1/uploads', body, headers);

async function uploadsNamed(name: string): Promise<Array<{ id: string; status: string }>> {
  const listed = await api(w.url, w.key, 'GET', '/v1/uploads?limit=1000');
  assert.equal(listed.status, 200);
  return listed.body.data.filter((u: { name: string }) => u.name === name);
}

const file = (name: string, size = 10) => ({ name, size, content_type: 'application/octet-stream' });

test('the same declaration sent again with its key gets the first answer, marked replayed: one upload', async () => {
  const key = randomUUID();
  const body = file('idem-one.bin');
  const first = await declare(body, { 'idempotency-key': key });
  assert.equal(first.status, 201, JSON.stringify(first.body));
  assert.equal(first.headers.get('idempotent-replayed'), null);
  const again = await declare(body, { 'idempotency-key': key });
  assert.equal(again.status, 201);
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.match(again.headers.get('content-type') ?? '', /^application\/json/);
  assert.deepEqual(again.body, first.body);
  // The draft's quoted form names the same key.
  const quoted = await declare(body, { 'idempotency-key': `"${key}"` });
  assert.equal(quoted.headers.get('idempotent-replayed'), 'true');
  assert.equal(quoted.body.id, first.body.id);
  // The same JSON value with its keys in another order is the same request.
  const reordered = await declare(
    { content_type: body.content_type, size: body.size, name: body.name },
    { 'idempotency-key': key },
  );
  assert.equal(reordered.headers.get('idempotent-replayed'), 'true');
  assert.equal(reordered.body.id, first.body.id);
  assert.deepEqual(
    (await uploadsNamed('idem-one.bin')).map((u) => u.id),
    [first.body.id],
  );
  // The URL it answered still takes the bytes.
  const put = await fetch(first.body.url, {
    method: 'PUT',
    headers: first.body.headers,
    body: Buffer.alloc(10, 7),
  });
  assert.ok(put.ok, String(put.status));
  const done = await api(w.url, w.key, 'POST', `/v1/uploads/${first.body.id}/complete`);
  assert.equal(done.status, 200, JSON.stringify(done.body));
  assert.equal(done.body.asset.size, 10);
});

test('content the account holds is answered exists again, with the asset as it is now', async () => {
  const bytes = Buffer.from(`held ${randomUUID()}`);
  const put = await fetch(`${w.url}/v1/assets?name=idem-held.txt`, {
    method: 'POST',
    headers: { 'x-api-key': w.key, 'content-type': 'text/plain' },
    body: bytes,
  });
  const asset = (await put.json()).asset;
  assert.equal(put.status, 201);
  const key = randomUUID();
  const body = {
    files: [{ name: 'held-again.txt', size: bytes.length, sha256: asset.sha256 }, file('idem-held-new.bin')],
  };
  const first = await declare(body, { 'idempotency-key': key });
  assert.equal(first.status, 201, JSON.stringify(first.body));
  assert.equal(first.body.uploads[0].status, 'exists');
  assert.equal(first.body.uploads[0].name, 'held-again.txt');
  const again = await declare(body, { 'idempotency-key': key });
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.deepEqual(again.body, first.body);
  // Made public since: the replay shows the asset as it is now.
  assert.equal(
    (await api(w.url, w.key, 'PATCH', `/v1/assets/${asset.id}`, { access: 'public' })).status,
    200,
  );
  const later = await declare(body, { 'idempotency-key': key });
  assert.equal(later.body.uploads[0].asset.access, 'public');
  assert.deepEqual(later.body.uploads[1], first.body.uploads[1]);
  // Deleted since: nothing to answer with; declare anew, with a new key.
  assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${asset.id}`)).status, 204);
  const gone = await declare(body, { 'idempotency-key': key });
  assert.equal(gone.status, 404, JSON.stringify(gone.body));
  assert.equal(gone.body.error.code, 'NOT_FOUND');
});

test('without a key, the same declaration twice makes two uploads, as before', async () => {
  const body = file('idem-none.bin');
  const a = await declare(body);
  const b = await declare(body);
  assert.equal(a.status, 201);
  assert.equal(b.status, 201);
  assert.notEqual(a.body.id, b.body.id);
  assert.equal((await uploadsNamed('idem-none.bin')).length, 2);
});

test('a batch and a multipart start are answered once per key too', async () => {
  const key = randomUUID();
  const batch = { files: [file('idem-batch-1.bin'), file('idem-batch-2.bin')] };
  const first = await declare(batch, { 'idempotency-key': key });
  const again = await declare(batch, { 'idempotency-key': key });
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  // The same URLs, signed again from the ids kept: the record holds no URL, no signature.
  assert.deepEqual(again.body, first.body);
  assert.equal((await uploadsNamed('idem-batch-2.bin')).length, 1);
  const [kept] = dbQuery<{ response: string }>(
    w,
    'select response from idempotency_records where idempotency_key = ?',
    key,
  );
  assert.ok(kept, 'a record');
  for (const upload of first.body.uploads) {
    assert.ok(kept.response.includes(upload.id), 'the record names the upload');
    assert.ok(!kept.response.includes(new URL(upload.url).search.slice(1, 40)), 'but not its URL');
  }
  assert.ok(!/signature/i.test(kept.response), kept.response);

  const mkey = randomUUID();
  const start = { name: 'idem-multi.bin', size: 6 * 1024 * 1024, content_type: 'application/octet-stream' };
  const m1 = await api(w.url, w.key, 'POST', '/v1/multipart', start, { 'idempotency-key': mkey });
  assert.equal(m1.status, 201, JSON.stringify(m1.body));
  const m2 = await api(w.url, w.key, 'POST', '/v1/multipart', start, { 'idempotency-key': mkey });
  assert.equal(m2.status, 201);
  assert.equal(m2.headers.get('idempotent-replayed'), 'true');
  assert.deepEqual(m2.body, m1.body);
  assert.equal((await uploadsNamed('idem-multi.bin')).length, 1);
});

test('a key used for another request is refused 422 IDEMPOTENCY_KEY_REUSED, and makes nothing', async () => {
  const key = randomUUID();
  const first = await declare(file('idem-reused.bin'), { 'idempotency-key': key });
  assert.equal(first.status, 201);
  const other = await declare(file('idem-reused-other.bin'), { 'idempotency-key': key });
  assert.equal(other.status, 422, JSON.stringify(other.body));
  assert.equal(other.body.error.code, 'IDEMPOTENCY_KEY_REUSED');
  // The same body at another route is another request.
  const elsewhere = await api(w.url, w.key, 'POST', '/v1/multipart', file('idem-reused.bin'), {
    'idempotency-key': key,
  });
  assert.equal(elsewhere.status, 422);
  assert.equal(elsewhere.body.error.code, 'IDEMPOTENCY_KEY_REUSED');
  assert.equal((await uploadsNamed('idem-reused-other.bin')).length, 0);
  assert.equal((await uploadsNamed('idem-reused.bin')).length, 1);
});

test("keys belong to the credential that sent them: another key's same Idempotency-Key is its own", async () => {
  const other = await w.newKey('member');
  const key = randomUUID();
  const body = file('idem-two-keys.bin');
  const a = await declare(body, { 'idempotency-key': key });
  const b = await declare(body, { 'idempotency-key': key }, other.key);
  assert.equal(a.status, 201);
  assert.equal(b.status, 201);
  assert.equal(b.headers.get('idempotent-replayed'), null);
  assert.notEqual(a.body.id, b.body.id);
});

test('a refused declaration keeps nothing under its key: the corrected retry runs', async () => {
  const key = randomUUID();
  // Refused by the name rules, after the key was claimed.
  const bad = { name: 'idem/refused.bin', size: 10 };
  const refused = await declare(bad, { 'idempotency-key': key });
  assert.equal(refused.status, 400, JSON.stringify(refused.body));
  assert.equal(refused.body.error.code, 'INVALID_NAME');
  // The same request again is run again, not replayed.
  const again = await declare(bad, { 'idempotency-key': key });
  assert.equal(again.status, 400);
  assert.equal(again.headers.get('idempotent-replayed'), null);
  const fixed = await declare(file('idem-refused.bin'), { 'idempotency-key': key });
  assert.equal(fixed.status, 201, JSON.stringify(fixed.body));
});

test("an upload token's max_files is not spent again by a retry with the same key", async () => {
  const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', { max_files: 1, expires_in: 600 });
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  const token = minted.body.secret as string;
  const key = randomUUID();
  const body = file('idem-token.bin');
  const first = await declare(body, { 'idempotency-key': key }, token);
  assert.equal(first.status, 201, JSON.stringify(first.body));
  const again = await declare(body, { 'idempotency-key': key }, token);
  assert.equal(again.status, 201, JSON.stringify(again.body));
  assert.equal(again.body.id, first.body.id);
  // The token's one file is taken: a new declaration (another key) is refused.
  const another = await declare(file('idem-token-2.bin'), {}, token);
  assert.equal(another.status, 403);
  assert.equal(another.body.error.code, 'TOKEN_FILES_EXHAUSTED');
});

/** A direct upload (POST /v1/assets), raw or as a form, with its answer's status, headers and JSON. */
async function directUpload(
  secret: string,
  name: string,
  body: Buffer | FormData,
  headers: Record<string, string> = {},
): Promise<JsonResponse> {
  const raw = Buffer.isBuffer(body);
  const res = await fetch(`${w.url}/v1/assets${raw ? `?name=${encodeURIComponent(name)}` : ''}`, {
    method: 'POST',
    headers: { 'x-api-key': secret, ...(raw && { 'content-type': 'application/octet-stream' }), ...headers },
    body: Buffer.isBuffer(body) ? new Uint8Array(body) : body,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

function completedUploadsOf(assetId: string): number {
  const rows = dbQuery<{ n: number | string }>(
    w,
    "select count(*) as n from uploads where asset_id = ? and status = 'completed'",
    assetId,
  );
  return Number(rows[0]!.n);
}

test("a direct upload sent again with its key gets the first answer, its bytes unread: a one-file token's retry is not refused", async () => {
  const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', { max_files: 1, expires_in: 600 });
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  const token = minted.body.secret as string;
  const key = randomUUID();
  const bytes = Buffer.from(`direct ${randomUUID()}`);
  const first = await directUpload(token, 'idem-direct.txt', bytes, { 'idempotency-key': key });
  assert.equal(first.status, 201, JSON.stringify(first.body));
  assert.equal(first.body.status, 'created');
  assert.equal(first.headers.get('idempotent-replayed'), null);
  // The answer was lost; the retry sends the same request, bytes and all.
  const again = await directUpload(token, 'idem-direct.txt', bytes, { 'idempotency-key': key });
  assert.equal(again.status, 201, JSON.stringify(again.body));
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.deepEqual(again.body, first.body);
  assert.equal(completedUploadsOf(first.body.asset.id), 1, 'one upload, not a second');
  // Without the key it is a new upload, and the token's one file is spent.
  const fresh = await directUpload(token, 'idem-direct.txt', bytes);
  assert.equal(fresh.status, 403, JSON.stringify(fresh.body));
  assert.equal(fresh.body.error.code, 'TOKEN_FILES_EXHAUSTED');
});

test('a direct upload under a used key with another name, type or length is refused 422; a form sent again is replayed', async () => {
  const key = randomUUID();
  const bytes = Buffer.from(`direct ${randomUUID()}`);
  const first = await directUpload(w.key, 'idem-direct-2.txt', bytes, { 'idempotency-key': key });
  assert.equal(first.status, 201, JSON.stringify(first.body));
  for (const [name, body, headers] of [
    ['idem-direct-3.txt', bytes, {}],
    ['idem-direct-2.txt', bytes, { 'content-type': 'text/plain' }],
    ['idem-direct-2.txt', Buffer.concat([bytes, Buffer.from('!')]), {}],
  ] as const) {
    const other = await directUpload(w.key, name, body, { 'idempotency-key': key, ...headers });
    assert.equal(other.status, 422, JSON.stringify(other.body));
    assert.equal(other.body.error.code, 'IDEMPOTENCY_KEY_REUSED');
  }
  // A form: each send has a boundary of its own, and is the same request all the same.
  const formKey = randomUUID();
  const form = () => {
    const f = new FormData();
    f.append('file', new Blob([`form ${formKey}`], { type: 'text/plain' }), 'idem-form.txt');
    return f;
  };
  const posted = await directUpload(w.key, 'idem-form.txt', form(), { 'idempotency-key': formKey });
  assert.equal(posted.status, 201, JSON.stringify(posted.body));
  const repost = await directUpload(w.key, 'idem-form.txt', form(), { 'idempotency-key': formKey });
  assert.equal(repost.status, 201, JSON.stringify(repost.body));
  assert.equal(repost.headers.get('idempotent-replayed'), 'true');
  assert.equal(repost.body.asset.id, posted.body.asset.id);
  assert.equal(completedUploadsOf(posted.body.asset.id), 1);
});

test('a direct upload replayed after its asset was deleted is 404; content the account held is replayed as exists', async () => {
  const bytes = Buffer.from(`direct ${randomUUID()}`);
  const held = await directUpload(w.key, 'idem-held-first.txt', bytes);
  assert.equal(held.status, 201);
  const key = randomUUID();
  const dup = await directUpload(w.key, 'idem-held-again.txt', bytes, { 'idempotency-key': key });
  assert.equal(dup.status, 200, JSON.stringify(dup.body));
  assert.equal(dup.body.status, 'exists');
  const replayed = await directUpload(w.key, 'idem-held-again.txt', bytes, { 'idempotency-key': key });
  assert.equal(replayed.status, 200);
  assert.equal(replayed.headers.get('idempotent-replayed'), 'true');
  assert.deepEqual(replayed.body, dup.body);
  assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${held.body.asset.id}`)).status, 204);
  const gone = await directUpload(w.key, 'idem-held-again.txt', bytes, { 'idempotency-key': key });
  assert.equal(gone.status, 404, JSON.stringify(gone.body));
  assert.equal(gone.body.error.code, 'NOT_FOUND');
});

test('a direct upload retried while the first still streams is told 409 to come back, then gets its answer', async () => {
  const key = randomUUID();
  const head = Buffer.from(`slow ${randomUUID()} `);
  const tail = Buffer.alloc(1024, 1);
  let finish!: () => void;
  const held = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const slow = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(head);
      await held;
      controller.enqueue(tail);
      controller.close();
    },
  });
  const firstAnswer = fetch(`${w.url}/v1/assets?name=idem-slow.bin`, {
    method: 'POST',
    headers: {
      'x-api-key': w.key,
      'content-type': 'application/octet-stream',
      'content-length': String(head.length + tail.length),
      'idempotency-key': key,
    },
    body: slow,
    duplex: 'half',
  } as RequestInit);
  const whole = Buffer.concat([head, tail]);
  // The first holds its key once its request is in: until then a retry could run first.
  let busy: Awaited<ReturnType<typeof directUpload>> | undefined;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    busy = await directUpload(w.key, 'idem-slow.bin', whole, { 'idempotency-key': key });
    if (busy.status === 409) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(busy?.status, 409, JSON.stringify(busy?.body));
  assert.equal(busy.body.error.code, 'IDEMPOTENCY_KEY_IN_USE');
  assert.equal(busy.headers.get('retry-after'), '1');
  finish();
  const first = await firstAnswer;
  assert.equal(first.status, 201);
  const created = (await first.json()) as { asset: { id: string } };
  const after = await directUpload(w.key, 'idem-slow.bin', whole, { 'idempotency-key': key });
  assert.equal(after.headers.get('idempotent-replayed'), 'true');
  assert.equal(after.body.asset.id, created.asset.id);
  assert.equal(completedUploadsOf(created.asset.id), 1);
});

test('requests sent together with one key make one upload; the others are replayed or told to come back', async () => {
  const key = randomUUID();
  const body = file('idem-together.bin');
  const answers = await Promise.all(
    Array.from({ length: 6 }, () => declare(body, { 'idempotency-key': key })),
  );
  const ids = new Set<string>();
  for (const a of answers) {
    if (a.status === 409) {
      assert.equal(a.body.error.code, 'IDEMPOTENCY_KEY_IN_USE');
      assert.equal(a.headers.get('retry-after'), '1');
    } else {
      assert.equal(a.status, 201, JSON.stringify(a.body));
      ids.add(a.body.id);
    }
  }
  assert.equal(ids.size, 1);
  assert.equal((await uploadsNamed('idem-together.bin')).length, 1);
});

test('a key held by a request whose node died is taken over by the same request once its lease lapses', async () => {
  const key = randomUUID();
  const body = file('idem-lease.bin');
  // Another node, on the same database, claims the key as the route does and dies before
  // answering: its claim is never finished, nor renewed (its renewal would come an hour on).
  const principal = await w.wharf.core.keys.authenticate(w.key);
  const node = createSqlStore(connect(w.databaseUrl), createIdSource(w.clock));
  try {
    const dying = new IdempotencyService(node, w.clock, {
      leaseMs: IDEMPOTENCY_LEASE_MS,
      renewEveryMs: 3_600_000,
    });
    const claimed = await dying.begin(principal, key, 'POST /v1/uploads', body);
    assert.equal(claimed.kind, 'run');
  } finally {
    await node.close();
  }
  const busy = await declare(body, { 'idempotency-key': key });
  assert.equal(busy.status, 409, JSON.stringify(busy.body));
  assert.equal(busy.body.error.code, 'IDEMPOTENCY_KEY_IN_USE');
  // Another request with the key is refused even after the lease: the key is the first's.
  w.clock.advance(IDEMPOTENCY_LEASE_MS + 1);
  const other = await declare(file('idem-lease-other.bin'), { 'idempotency-key': key });
  assert.equal(other.status, 422);
  const taken = await declare(body, { 'idempotency-key': key });
  assert.equal(taken.status, 201, JSON.stringify(taken.body));
  assert.equal(taken.headers.get('idempotent-replayed'), null);
  const replayed = await declare(body, { 'idempotency-key': key });
  assert.equal(replayed.headers.get('idempotent-replayed'), 'true');
  assert.equal(replayed.body.id, taken.body.id);
});

test('an answer is kept for a day: then the key is free again, and the sweep removes it', async () => {
  const key = randomUUID();
  const first = await declare(file('idem-day.bin'), { 'idempotency-key': key });
  assert.equal(first.status, 201);
  w.clock.advance(IDEMPOTENCY_TTL_MS - 1000);
  const within = await declare(file('idem-day.bin'), { 'idempotency-key': key });
  assert.equal(within.headers.get('idempotent-replayed'), 'true');
  w.clock.advance(2000);
  const pruned = await w.wharf.core.idempotency.prune();
  assert.ok(pruned >= 1, `pruned ${pruned}`);
  // Its record is gone: the key now makes a new upload, of any request.
  const fresh = await declare(file('idem-day-2.bin'), { 'idempotency-key': key });
  assert.equal(fresh.status, 201, JSON.stringify(fresh.body));
  assert.equal(fresh.headers.get('idempotent-replayed'), null);
  // And an expired record not yet swept is taken over the same way.
  w.clock.advance(IDEMPOTENCY_TTL_MS + 1000);
  const later = await declare(file('idem-day-3.bin'), { 'idempotency-key': key });
  assert.equal(later.status, 201, JSON.stringify(later.body));
  assert.equal(later.headers.get('idempotent-replayed'), null);
});

test('a webhook endpoint created again with its key is the first one, its secret as it is now: one endpoint', async () => {
  const key = randomUUID();
  const url = `https://hooks.example.com/idem-${key}`;
  const body = { url, event_types: ['asset.created'] };
  const create = (b: unknown = body) =>
    api(w.url, w.key, 'POST', '/v1/webhooks', b, { 'idempotency-key': key });
  const first = await create();
  assert.equal(first.status, 201, JSON.stringify(first.body));
  const again = await create();
  assert.equal(again.status, 201);
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.deepEqual(again.body, first.body);
  // The record kept under the key holds the endpoint's id, never its secret.
  const kept = dbQuery(w, 'select * from idempotency_records');
  assert.ok(kept.length > 0);
  assert.ok(!JSON.stringify(kept).includes(first.body.secret), 'no signing secret in the idempotency record');
  // Rotated since: the replay shows the secret that signs now.
  const rotated = await api(w.url, w.key, 'POST', `/v1/webhooks/${first.body.webhook.id}/rotate-secret`, {
    keep_previous_for: 0,
  });
  assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
  const afterRotation = await create();
  assert.equal(afterRotation.body.webhook.id, first.body.webhook.id);
  assert.equal(afterRotation.body.secret, rotated.body.secret);
  // Another body under the key is refused, and one endpoint has that URL.
  assert.equal((await create({ ...body, event_types: ['asset.deleted'] })).status, 422);
  const listed = await api(w.url, w.key, 'GET', '/v1/webhooks');
  assert.equal(listed.body.data.filter((h: { url: string }) => h.url === url).length, 1);
  // Deleted since: the replay is 404.
  assert.equal((await api(w.url, w.key, 'DELETE', `/v1/webhooks/${first.body.webhook.id}`)).status, 204);
  assert.equal((await create()).status, 404);
});

test("the SDK's webhook creation whose answer is lost makes one endpoint", async () => {
  const url = `https://hooks.example.com/sdk-lost-${randomUUID()}`;
  let lost = false;
  const wharf = new Wharf({
    url: w.url,
    key: w.key,
    retry: { minDelayMs: 10 },
    fetch: async (input, init) => {
      const response = await fetch(input, init);
      if (!lost && init?.method === 'POST' && new URL(String(input)).pathname === '/v1/webhooks') {
        lost = true;
        await response.arrayBuffer();
        throw new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } });
      }
      return response;
    },
  });
  const created = await wharf.webhooks.create({ url, event_types: ['asset.created'] });
  assert.equal(lost, true);
  const listed = await api(w.url, w.key, 'GET', '/v1/webhooks');
  const endpoints = listed.body.data.filter((h: { url: string }) => h.url === url);
  assert.deepEqual(
    endpoints.map((h: { id: string }) => h.id),
    [created.webhook.id],
  );
  assert.equal(await wharf.webhooks.secret(created.webhook.id), created.secret);
});

test('a malformed Idempotency-Key is refused 400 VALIDATION_FAILED before anything is made', async () => {
  for (const bad of ['x'.repeat(256), 'has space', '""', '"a"b"', 'caf\u00e9']) {
    const answer = await declare(file('idem-bad.bin'), { 'idempotency-key': bad }).catch((e) => e);
    // fetch refuses a header value past Latin-1 itself; what it sends, the server refuses.
    if (answer instanceof Error) continue;
    assert.equal(answer.status, 400, `${JSON.stringify(bad)}: ${JSON.stringify(answer.body)}`);
    assert.equal(answer.body.error.code, 'VALIDATION_FAILED');
  }
  assert.equal((await uploadsNamed('idem-bad.bin')).length, 0);
});

test('the SDK waits out 409 IDEMPOTENCY_KEY_IN_USE as a busy server, then gets its answer', async () => {
  let held: { release(): Promise<void> } | undefined;
  const refused: number[] = [];
  const principal = await w.wharf.core.keys.authenticate(w.key);
  const sdk = new Wharf({
    url: w.url,
    key: w.key,
    retry: { minDelayMs: 10 },
    fetch: async (input, init) => {
      const key = new Headers(init?.headers).get('idempotency-key');
      if (key !== null && held === undefined) {
        // Another attempt of the same request holds the key as this one arrives.
        const outcome = await w.wharf.core.idempotency.begin(
          principal,
          key,
          'POST /v1/uploads',
          JSON.parse(String(init?.body)),
        );
        assert.equal(outcome.kind, 'run');
        if (outcome.kind === 'run') held = outcome.hold;
      }
      const response = await fetch(input, init);
      if (response.status === 409) {
        refused.push(Number(response.headers.get('retry-after')));
        // That attempt fails: the key is let go, and the SDK's next try runs.
        await held?.release();
      }
      return response;
    },
  });
  const item = await sdk.uploads.create(file('idem-sdk-busy.bin'));
  assert.equal(item.status, 'pending');
  assert.deepEqual(refused, [1]);
  assert.equal((await uploadsNamed('idem-sdk-busy.bin')).length, 1);
});
