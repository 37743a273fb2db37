import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { isPublicAddress } from '../../src/core/webhook-addresses.js';
import { DELIVERY_DELAYS_MS } from '../../src/core/webhooks.js';
import { createAsset, dbQuery } from '../helpers/assets.js';
import { api } from '../helpers/http.js';
import { Receiver } from '../helpers/receiver.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * Webhook endpoints over real HTTP, delivered to a receiver that verifies every request with
 * the `standardwebhooks` library. Jobs are drained by the test and time moved by its clock,
 * so retries happen when the test says, never after a wait.
 */

const PRIVATE_OK = { WHARF_WEBHOOK_ALLOW_PRIVATE: 'true', WHARF_WEBHOOK_TIMEOUT_MS: '2000' };

let w: TestWharf;
const receivers: Receiver[] = [];
before(async () => {
  w = await startWharf({ env: PRIVATE_OK });
});
after(async () => {
  for (const r of receivers) await r.close();
  await w?.close();
});

async function receiver(port?: number): Promise<Receiver> {
  const r = await Receiver.start(port);
  receivers.push(r);
  return r;
}

interface Endpoint {
  id: string;
  secret: string;
}

/** Creates an endpoint for `r` and teaches `r` its secret. */
async function endpoint(
  key: string,
  r: Receiver,
  body: Record<string, unknown> = {},
  server: TestWharf = w,
): Promise<Endpoint> {
  const res = await api(server.url, key, 'POST', '/v1/webhooks', { url: r.url, ...body });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  r.secrets.push(res.body.secret);
  return { id: res.body.webhook.id, secret: res.body.secret };
}

async function events(key: string, server: TestWharf = w): Promise<any[]> {
  const res = await api(server.url, key, 'GET', '/v1/events?limit=1000');
  assert.equal(res.status, 200);
  return res.body.data;
}

async function deliveries(key: string, id: string, query = '', server: TestWharf = w): Promise<any[]> {
  const res = await api(server.url, key, 'GET', `/v1/webhooks/${id}/deliveries?limit=200${query}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data;
}

async function delivery(key: string, id: string, deliveryId: string): Promise<any> {
  const res = await api(w.url, key, 'GET', `/v1/webhooks/${id}/deliveries/${deliveryId}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

const drain = (server: TestWharf = w) => server.wharf.core.jobs.drain();

/**
 * Every event of the account the receiver wanted reached it exactly once per webhook-id, that id
 * being the event's, with the event's own type, timestamp and data.
 */
async function assertReceivedAll(key: string, r: Receiver, wanted: (type: string) => boolean = () => true) {
  assert.deepEqual(r.invalid, []);
  const expected = (await events(key)).filter((e) => wanted(e.type));
  const ids = new Set(r.accepted.map((d) => d.id));
  assert.deepEqual(
    [...ids].sort(),
    expected.map((e) => e.id).sort(),
    'one webhook-id per event, the event id',
  );
  for (const e of expected) {
    for (const got of r.accepted.filter((d) => d.id === e.id)) {
      assert.deepEqual(got.payload, { type: e.type, timestamp: e.timestamp, data: e.data });
    }
  }
}

describe('delivery', () => {
  test('an upload reaches the endpoint signed as Standard Webhooks says, with the event’s data', async () => {
    const { key } = await w.newAccount();
    const r = await receiver();
    await endpoint(key, r);
    const asset = await createAsset(w, key, 'hello.txt', 'hello webhooks', 'text/plain');
    await drain();
    await assertReceivedAll(key, r);
    assert.deepEqual(
      r.accepted.map((d) => d.payload!.type),
      ['upload.created', 'asset.created', 'upload.completed', 'asset.processed'],
    );
    const completed = r.accepted.find((d) => d.payload!.type === 'upload.completed')!;
    assert.equal(completed.payload!.data.asset.id, asset.id);
    assert.equal(completed.payload!.data.asset.sha256, asset.sha256);
    assert.equal(completed.headers['content-type'], 'application/json');
    assert.match(String(completed.headers['user-agent']), /^Wharf/);
    assert.match(completed.timestamp, /^\d+$/);
    assert.match(String(completed.headers['webhook-signature']), /^v1,[A-Za-z0-9+/]+=*$/);
    // The body is exactly what was signed: minified JSON of {type, timestamp, data}.
    assert.deepEqual(Object.keys(JSON.parse(completed.body)), ['type', 'timestamp', 'data']);
    const log = await deliveries(key, (await api(w.url, key, 'GET', '/v1/webhooks')).body.data[0].id);
    assert.equal(log.length, 4);
    for (const d of log) {
      assert.equal(d.status, 'succeeded');
      assert.equal(d.attempts, 1);
      assert.equal(d.response_status, 204);
      assert.equal(typeof d.latency_ms, 'number');
      assert.equal(d.next_attempt_at, null);
    }
  });

  test('event_types filters by exact type and family', async () => {
    const { key } = await w.newAccount();
    const exact = await receiver();
    const family = await receiver();
    await endpoint(key, exact, { event_types: ['upload.completed'] });
    await endpoint(key, family, { event_types: ['asset.*'] });
    await createAsset(w, key, 'f.bin', randomBytes(100));
    await drain();
    await assertReceivedAll(key, exact, (t) => t === 'upload.completed');
    await assertReceivedAll(key, family, (t) => t.startsWith('asset.'));
  });

  test('a disabled endpoint gets nothing; deleting one cancels what it had pending', async () => {
    const { key } = await w.newAccount();
    const r = await receiver();
    const hook = await endpoint(key, r, { enabled: false });
    await createAsset(w, key, 'off.bin', randomBytes(10));
    await drain();
    assert.equal(r.requests.length, 0);
    assert.deepEqual(await deliveries(key, hook.id), []);

    const other = await receiver();
    const second = await endpoint(key, other);
    await createAsset(w, key, 'pending.bin', randomBytes(10));
    const pending = await deliveries(key, second.id);
    assert.ok(pending.length > 0);
    assert.ok(pending.every((d) => d.status === 'pending'));
    assert.equal((await api(w.url, key, 'DELETE', `/v1/webhooks/${second.id}`)).status, 204);
    await drain();
    assert.equal(other.requests.length, 0);
    const rows = dbQuery<{ status: string }>(
      w,
      'select status from webhook_deliveries where webhook_id = ?',
      second.id,
    );
    assert.ok(rows.length > 0);
    assert.ok(rows.every((d) => d.status === 'cancelled'));
    assert.equal((await api(w.url, key, 'GET', `/v1/webhooks/${second.id}`)).status, 404);
  });
});

describe('managing endpoints', () => {
  test('create, list, get, update and delete; the secret is whsec_ and readable by admins', async () => {
    const { key } = await w.newAccount();
    const created = await api(w.url, key, 'POST', '/v1/webhooks', {
      url: 'https://hooks.example.com/wharf',
      event_types: ['upload.completed', 'asset.*'],
      description: 'orders app',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const { webhook, secret } = created.body;
    assert.match(secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
    assert.doesNotThrow(() => new Webhook(secret));
    assert.equal(webhook.url, 'https://hooks.example.com/wharf');
    assert.deepEqual(webhook.event_types, ['upload.completed', 'asset.*']);
    assert.equal(webhook.enabled, true);
    assert.equal(webhook.disabled_reason, null);
    assert.equal(JSON.stringify(webhook).includes(secret.slice(6)), false, 'no secret in the endpoint JSON');

    const listed = await api(w.url, key, 'GET', '/v1/webhooks');
    assert.deepEqual(listed.body.data, [webhook]);
    assert.deepEqual((await api(w.url, key, 'GET', `/v1/webhooks/${webhook.id}`)).body, webhook);
    assert.deepEqual((await api(w.url, key, 'GET', `/v1/webhooks/${webhook.id}/secret`)).body, { secret });
    // Stored sealed, never as the secret itself.
    const stored = dbQuery<{ secret: string }>(w, 'select secret from webhooks where id = ?', webhook.id)[0]!;
    assert.ok(!stored.secret.includes(secret.slice(6)));

    const patched = await api(w.url, key, 'PATCH', `/v1/webhooks/${webhook.id}`, {
      url: 'https://hooks.example.com/v2',
      event_types: [],
      description: '',
      enabled: false,
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.equal(patched.body.url, 'https://hooks.example.com/v2');
    assert.deepEqual(patched.body.event_types, []);
    assert.equal(patched.body.enabled, false);

    assert.equal((await api(w.url, key, 'DELETE', `/v1/webhooks/${webhook.id}`)).status, 204);
    assert.equal((await api(w.url, key, 'DELETE', `/v1/webhooks/${webhook.id}`)).status, 404);
    assert.deepEqual((await api(w.url, key, 'GET', '/v1/webhooks')).body.data, []);
  });

  test('bad input is refused with a stable code and leaves nothing behind', async () => {
    const { key } = await w.newAccount();
    const cases: Array<[unknown, number, string]> = [
      [{ url: 'https://x.example.com', event_types: ['upload.done'] }, 400, 'VALIDATION_FAILED'],
      [{ url: 'https://x.example.com', event_types: ['nothing.*'] }, 400, 'VALIDATION_FAILED'],
      [{ url: 'https://x.example.com', event_types: 'upload.completed' }, 400, 'VALIDATION_FAILED'],
      [{ url: 'ftp://x.example.com/' }, 400, 'VALIDATION_FAILED'],
      [{ url: 'not a url' }, 400, 'VALIDATION_FAILED'],
      [{ url: '/relative/path' }, 400, 'VALIDATION_FAILED'],
      [{ url: 'https://x.example.com/#frag' }, 400, 'VALIDATION_FAILED'],
      [{ url: `https://x.example.com/${'a'.repeat(3000)}` }, 400, 'VALIDATION_FAILED'],
      [{ url: 'https://x.example.com', colour: 'red' }, 400, 'VALIDATION_FAILED'],
      [{ url: 'https://x.example.com', enabled: 'yes' }, 400, 'VALIDATION_FAILED'],
      [{ url: 'https://x.example.com', description: 'd'.repeat(501) }, 400, 'VALIDATION_FAILED'],
      [{}, 400, 'VALIDATION_FAILED'],
      [{ url: 'https://x.example.com', description: 'x'.repeat(100_000) }, 413, 'FILE_TOO_LARGE'],
    ];
    for (const [body, status, code] of cases) {
      const res = await api(w.url, key, 'POST', '/v1/webhooks', body);
      assert.equal(res.status, status, JSON.stringify(body).slice(0, 100));
      assert.equal(res.body.error.code, code, JSON.stringify(body).slice(0, 100));
    }
    const unknown = await api(w.url, key, 'POST', '/v1/webhooks', {
      url: 'https://x.example.com',
      event_types: ['upload.done'],
    });
    assert.deepEqual(unknown.body.error.details.known.includes('upload.completed'), true);
    assert.deepEqual((await api(w.url, key, 'GET', '/v1/webhooks')).body.data, []);

    const ok = await api(w.url, key, 'POST', '/v1/webhooks', { url: 'https://x.example.com/' });
    const id = ok.body.webhook.id;
    for (const body of [{}, { url: 'gopher://x' }, { event_types: ['*', 'bad'] }, { secret: 'mine' }]) {
      const res = await api(w.url, key, 'PATCH', `/v1/webhooks/${id}`, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.error.code, 'VALIDATION_FAILED');
    }
    assert.equal((await api(w.url, key, 'GET', `/v1/webhooks/${id}`)).body.url, 'https://x.example.com/');
    for (const query of ['status=done', 'limit=0', 'limit=201', 'colour=red']) {
      const res = await api(w.url, key, 'GET', `/v1/webhooks/${id}/deliveries?${query}`);
      assert.equal(res.status, 400, query);
    }
    for (const body of [
      {},
      { since: 'yesterday' },
      { since: new Date(Date.now() + 3600_000).toISOString() },
    ]) {
      const res = await api(w.url, key, 'POST', `/v1/webhooks/${id}/replay`, body);
      assert.equal(res.status, 400, JSON.stringify(body));
    }
  });

  test('only admin keys manage endpoints, and an account never sees or touches another’s', async () => {
    const a = await w.newAccount();
    const b = await w.newAccount();
    const r = await receiver();
    const hook = await endpoint(a.key, r);
    await createAsset(w, a.key, 'a.bin', randomBytes(10));
    await drain();
    const [one] = await deliveries(a.key, hook.id);
    assert.ok(one);

    const member = await w.newKey('member', a.accountId);
    const forbidden = await api(w.url, member.key, 'GET', '/v1/webhooks');
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.body.error.code, 'FORBIDDEN');
    assert.equal((await api(w.url, member.key, 'POST', '/v1/webhooks', { url: r.url })).status, 403);
    assert.equal((await api(w.url, undefined, 'GET', '/v1/webhooks')).status, 401);

    assert.deepEqual((await api(w.url, b.key, 'GET', '/v1/webhooks')).body.data, []);
    const paths: Array<[string, string, unknown?]> = [
      ['GET', `/v1/webhooks/${hook.id}`],
      ['PATCH', `/v1/webhooks/${hook.id}`, { enabled: false }],
      ['GET', `/v1/webhooks/${hook.id}/secret`],
      ['POST', `/v1/webhooks/${hook.id}/rotate-secret`, {}],
      ['GET', `/v1/webhooks/${hook.id}/deliveries`],
      ['GET', `/v1/webhooks/${hook.id}/deliveries/${one.id}`],
      ['POST', `/v1/webhooks/${hook.id}/deliveries/${one.id}/replay`],
      ['POST', `/v1/webhooks/${hook.id}/replay`, { since: new Date(0).toISOString() }],
      ['DELETE', `/v1/webhooks/${hook.id}`],
    ];
    for (const [method, path, body] of paths) {
      const res = await api(w.url, b.key, method, path, body);
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal(res.body.error.code, 'NOT_FOUND');
    }
    // B's own endpoint cannot reach A's deliveries through its id either.
    const mine = await endpoint(b.key, await receiver());
    assert.equal(
      (await api(w.url, b.key, 'GET', `/v1/webhooks/${mine.id}/deliveries/${one.id}`)).status,
      404,
    );
    // A's endpoint is untouched and still delivers.
    assert.equal((await api(w.url, a.key, 'GET', `/v1/webhooks/${hook.id}`)).body.enabled, true);
  });
});
