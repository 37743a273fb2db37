import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { loadConfig } from '../../src/config.js';
import { createIdSource } from '../../src/core/ids.js';
import { isPublicAddress } from '../../src/core/webhook-addresses.js';
import { DELIVER_WEBHOOK_JOB, DELIVERY_DELAYS_MS } from '../../src/core/webhooks.js';
import { connect } from '../../src/db/connect.js';
import { createSqlStore } from '../../src/db/store/index.js';
import { createWharf } from '../../src/server.js';
import { wharfCli } from '../helpers/admin-cli.js';
import { createAsset, dbQuery } from '../helpers/assets.js';
import { api } from '../helpers/http.js';
import { LogCollector } from '../helpers/observe.js';
import { Receiver } from '../helpers/receiver.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * Webhook endpoints over real HTTP, delivered to a receiver that verifies every request with
 * the `standardwebhooks` library. Jobs are drained by the test and time moved by its clock,
 * so retries happen when the test says, never after a wait.
 */

// biome-ignore lint/suspicious/noExplicitAny: JSON bodies are walked dynamically
type Json = any;

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

async function events(key: string, server: TestWharf = w): Promise<Json[]> {
  const res = await api(server.url, key, 'GET', '/v1/events?limit=1000');
  assert.equal(res.status, 200);
  return res.body.data;
}

async function deliveries(key: string, id: string, query = '', server: TestWharf = w): Promise<Json[]> {
  const res = await api(server.url, key, 'GET', `/v1/webhooks/${id}/deliveries?limit=200${query}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data;
}

async function delivery(key: string, id: string, deliveryId: string): Promise<Json> {
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

  test('disabling an endpoint while an attempt runs: the failed attempt leaves its delivery cancelled, and enabling sends nothing', async () => {
    const { key, r, hook, running } = await disabledMidAttempt();
    // The attempt fails (its connection is cut) after the delivery was cancelled.
    await r.close();
    await running;
    assert.deepEqual(
      (await deliveries(key, hook.id)).map((d) => d.status),
      ['cancelled'],
      'the attempt brought the delivery back',
    );
    const later = await receiver();
    later.secrets.push(...r.secrets);
    const on = await api(w.url, key, 'PATCH', `/v1/webhooks/${hook.id}`, { enabled: true, url: later.url });
    assert.equal(on.status, 200, JSON.stringify(on.body));
    await drain();
    assert.equal(later.requests.length, 0, 'enabling sent the cancelled event without a replay');
  });
});

/**
 * An endpoint disabled while its receiver holds an attempt open ('hang'): its delivery is
 * cancelled at once; `running` is the drain, which ends once the receiver answers or goes.
 */
async function disabledMidAttempt() {
  const { key } = await w.newAccount();
  const r = await receiver();
  let arrived!: () => void;
  const attempting = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  r.answer = () => {
    arrived();
    return 'hang';
  };
  const hook = await endpoint(key, r, { event_types: ['asset.created'] });
  await createAsset(w, key, 'slow.bin', randomBytes(10));
  const running = drain();
  await attempting;
  const off = await api(w.url, key, 'PATCH', `/v1/webhooks/${hook.id}`, { enabled: false });
  assert.equal(off.status, 200, JSON.stringify(off.body));
  assert.deepEqual(
    (await deliveries(key, hook.id)).map((d) => d.status),
    ['cancelled'],
  );
  return { key, r, hook, running };
}

describe('an attempt that succeeds after its endpoint was disabled', () => {
  test('marks its delivery succeeded: it arrived, and a replay of what did not arrive leaves it out', async () => {
    const { key, r, hook, running } = await disabledMidAttempt();
    // The receiver answers 204 after the delivery was cancelled: it has the event.
    r.release();
    await running;
    assert.deepEqual(
      (await deliveries(key, hook.id)).map((d) => d.status),
      ['succeeded'],
    );
    assert.equal(r.accepted.length, 1);
    // Enabled again, a replay of what did not arrive sends nothing.
    r.answer = () => ({ status: 204 });
    assert.equal((await api(w.url, key, 'PATCH', `/v1/webhooks/${hook.id}`, { enabled: true })).status, 200);
    const since = new Date(w.clock.now() - 3600_000).toISOString();
    const replay = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/replay`, { since });
    assert.ok(replay.status < 300, JSON.stringify(replay.body));
    await drain();
    assert.equal(r.requests.length, 1, 'the event that arrived was not sent again');
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
      // Well-formed, but not where webhooks go (even with WHARF_WEBHOOK_ALLOW_PRIVATE, as here).
      [{ url: 'ftp://x.example.com/' }, 400, 'URL_NOT_ALLOWED'],
      [{ url: 'file:///etc/passwd' }, 400, 'URL_NOT_ALLOWED'],
      [{ url: 'not a url' }, 400, 'VALIDATION_FAILED'],
      [{ url: '/relative/path' }, 400, 'VALIDATION_FAILED'],
      [{ url: 'https://x.example.com/#frag' }, 400, 'VALIDATION_FAILED'],
      [{ url: `https://x.example.com/${'a'.repeat(3000)}` }, 400, 'VALIDATION_FAILED'],
      // Within the limit as sent, past it once its spaces are percent-encoded (what is stored).
      [{ url: `https://x.example.com/${' '.repeat(1000)}x` }, 400, 'VALIDATION_FAILED'],
      // Port 0 is no port anything listens on: no delivery could ever arrive.
      [{ url: 'https://x.example.com:0/' }, 400, 'VALIDATION_FAILED'],
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
    for (const body of [{}, { event_types: ['*', 'bad'] }, { secret: 'mine' }]) {
      const res = await api(w.url, key, 'PATCH', `/v1/webhooks/${id}`, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.error.code, 'VALIDATION_FAILED');
    }
    const gopher = await api(w.url, key, 'PATCH', `/v1/webhooks/${id}`, { url: 'gopher://x' });
    assert.equal(gopher.status, 400, JSON.stringify(gopher.body));
    assert.equal(gopher.body.error.code, 'URL_NOT_ALLOWED');
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

  test('at most 50 endpoints per account, even when creations race', async () => {
    const { key } = await w.newAccount();
    for (let i = 0; i < 45; i++) {
      const res = await api(w.url, key, 'POST', '/v1/webhooks', { url: `https://x.example.com/${i}` });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    }
    // Each creation once counted the endpoints and then inserted, so parallel ones all saw room.
    const raced = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        api(w.url, key, 'POST', '/v1/webhooks', { url: `https://x.example.com/raced/${i}` }),
      ),
    );
    assert.equal(raced.filter((res) => res.status === 201).length, 5);
    for (const res of raced.filter((res) => res.status !== 201)) {
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'VALIDATION_FAILED');
      assert.equal(res.body.error.message, 'An account may have at most 50 webhook endpoints.');
    }
    assert.equal((await api(w.url, key, 'GET', '/v1/webhooks')).body.data.length, 50);
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

/** The one delivery of `type` to the endpoint. */
async function deliveryOf(key: string, hookId: string, type: string): Promise<Json> {
  const found = (await deliveries(key, hookId)).filter((d) => d.event_type === type);
  assert.equal(found.length, 1, `one ${type} delivery`);
  return found[0];
}

/** Moves the clock to a delivery's next attempt and runs what is due. */
async function nextAttempt(d: Json, server: TestWharf = w): Promise<void> {
  assert.ok(d.next_attempt_at, `delivery ${d.id} has a next attempt`);
  server.clock.set(Math.max(server.clock.now(), Date.parse(d.next_attempt_at)));
  await drain(server);
}

describe('retries and failures', () => {
  test('a receiver answering 500 is retried on the schedule with the same webhook-id until it answers', async () => {
    const { key } = await w.newAccount();
    const r = await receiver();
    let failing = true;
    r.answer = () => (failing ? { status: 500, body: 'x'.repeat(5000) } : { status: 200 });
    const hook = await endpoint(key, r, { event_types: ['upload.completed'] });
    await createAsset(w, key, 'retry.bin', randomBytes(100));
    await drain();
    let d = await deliveryOf(key, hook.id, 'upload.completed');
    assert.equal(d.status, 'pending');
    assert.equal(d.attempts, 1);
    assert.equal(d.response_status, 500);
    assert.equal(d.response_body, 'x'.repeat(1024), 'the first 1 KiB of the answer');
    assert.equal(d.last_error, 'HTTP 500');
    const wait = (x: Json) => Date.parse(x.next_attempt_at) - Date.parse(x.last_attempt_at);
    assert.ok(wait(d) >= DELIVERY_DELAYS_MS[0] && wait(d) <= DELIVERY_DELAYS_MS[0] * 1.1, String(wait(d)));

    // Not before its time.
    w.clock.set(Date.parse(d.next_attempt_at) - 1);
    await drain();
    assert.equal((await deliveryOf(key, hook.id, 'upload.completed')).attempts, 1);

    await nextAttempt(d);
    d = await deliveryOf(key, hook.id, 'upload.completed');
    assert.equal(d.attempts, 2);
    assert.ok(wait(d) >= DELIVERY_DELAYS_MS[1] && wait(d) <= DELIVERY_DELAYS_MS[1] * 1.1, String(wait(d)));

    failing = false;
    await nextAttempt(d);
    d = await deliveryOf(key, hook.id, 'upload.completed');
    assert.equal(d.status, 'succeeded');
    assert.equal(d.attempts, 3);
    assert.equal(d.last_error, null);
    assert.equal(d.next_attempt_at, null);
    assert.equal(r.requests.length, 3);
    assert.equal(new Set(r.requests.map((q) => q.id)).size, 1, 'every attempt carries the same webhook-id');
    await assertReceivedAll(key, r, (t) => t === 'upload.completed');
    const detail = await delivery(key, hook.id, d.id);
    assert.deepEqual(
      detail.attempt_log.map((a: Json) => [a.outcome, a.response_status]),
      [
        ['failed', 500],
        ['failed', 500],
        ['succeeded', 200],
      ],
    );
    assert.equal(detail.payload.type, 'upload.completed');
    assert.equal(detail.event_id, r.requests[0]!.id);
  });

  test('a receiver that never answers times out and is tried again later', async () => {
    const { key } = await w.newAccount();
    const r = await receiver();
    let hang = true;
    r.answer = () => (hang ? 'hang' : { status: 202 });
    const hook = await endpoint(key, r, { event_types: ['upload.completed'] });
    await createAsset(w, key, 'slow.bin', randomBytes(100));
    await drain();
    const d = await deliveryOf(key, hook.id, 'upload.completed');
    assert.equal(d.status, 'pending');
    assert.match(d.last_error, /^Timed out: no answer within 2000 ms/);
    assert.equal(d.response_status, null);
    hang = false;
    await nextAttempt(d);
    assert.equal((await deliveryOf(key, hook.id, 'upload.completed')).status, 'succeeded');
    assert.equal(new Set(r.requests.map((q) => q.id)).size, 1);
    await assertReceivedAll(key, r, (t) => t === 'upload.completed');
  });

  test('a redirect is a failure and is not followed', async () => {
    const { key } = await w.newAccount();
    const target = await receiver();
    const r = await receiver();
    r.answer = () => ({ status: 307, headers: { location: target.url } });
    const hook = await endpoint(key, r, { event_types: ['upload.created'] });
    await createAsset(w, key, 'moved.bin', randomBytes(10));
    await drain();
    const d = await deliveryOf(key, hook.id, 'upload.created');
    assert.equal(d.status, 'pending');
    assert.equal(d.response_status, 307);
    assert.match(d.last_error, /redirects are not followed/);
    assert.equal(target.requests.length + target.invalid.length, 0);
  });

  test('410 Gone disables the endpoint at once, cancels what it had pending, and records webhook.disabled', async () => {
    const { key } = await w.newAccount();
    const gone = await receiver();
    gone.answer = () => ({ status: 410 });
    const watcher = await receiver();
    const hook = await endpoint(key, gone, { event_types: ['upload.*', 'asset.*'] });
    await endpoint(key, watcher, { event_types: ['webhook.*'] });
    await createAsset(w, key, 'gone.bin', randomBytes(50));
    await drain();
    assert.equal(gone.requests.length, 1, 'nothing more after the 410');
    const after410 = (await api(w.url, key, 'GET', `/v1/webhooks/${hook.id}`)).body;
    assert.equal(after410.enabled, false);
    assert.match(after410.disabled_reason, /410/);
    // The 410 came before processing ran: asset.processed happened while it was disabled.
    const log = await deliveries(key, hook.id);
    assert.deepEqual(log.map((d) => d.status).sort(), ['cancelled', 'cancelled', 'failed']);
    const disabled = (await events(key)).filter((e) => e.type === 'webhook.disabled');
    assert.equal(disabled.length, 1);
    assert.equal(disabled[0].data.webhook.id, hook.id);
    assert.equal(disabled[0].data.webhook.enabled, false);
    assert.equal(disabled[0].data.reason, 'gone');
    assert.equal(disabled[0].data.webhook.secret, undefined);
    // The event shows the endpoint as the API does after the 410: failing since that attempt.
    assert.equal(typeof after410.failing_since, 'string');
    assert.equal(disabled[0].data.webhook.failing_since, after410.failing_since);
    await assertReceivedAll(key, watcher, (t) => t === 'webhook.disabled');

    // Enabling it again clears the reason; the missed events can then be replayed.
    const enabled = await api(w.url, key, 'PATCH', `/v1/webhooks/${hook.id}`, { enabled: true });
    assert.equal(enabled.body.enabled, true);
    assert.equal(enabled.body.disabled_reason, null);
    gone.answer = () => ({ status: 200 });
    const replay = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/replay`, {
      since: new Date(w.clock.now() - 3600_000).toISOString(),
    });
    assert.equal(replay.status, 202, JSON.stringify(replay.body));
    assert.deepEqual(replay.body, { requeued: 3, created: 1 });
    await drain();
    await assertReceivedAll(key, gone, (t) => t.startsWith('upload.') || t.startsWith('asset.'));
  });

  test('credentials in an endpoint URL (userinfo, path, query) are sent, and shown to no one but the endpoint API', async () => {
    const logs = new LogCollector();
    const s = await startWharf({ env: PRIVATE_OK, logStream: logs.stream });
    try {
      const { key, accountId } = await s.newAccount();
      const gone = await receiver();
      gone.answer = () => ({ status: 410 });
      const watcher = await receiver();
      const password = `pw-${randomBytes(8).toString('hex')}`;
      // Receivers take secrets in the path and the query too (Slack's hooks, `?token=`).
      const pathSecret = `path-${randomBytes(8).toString('hex')}`;
      const token = `tok-${randomBytes(8).toString('hex')}`;
      const url = `http://alice:${password}@127.0.0.1:${gone.port}/hooks/${pathSecret}?token=${token}`;
      const hook = await endpoint(key, gone, { url, event_types: ['upload.created'] }, s);
      await endpoint(key, watcher, { event_types: ['webhook.*'] }, s);
      await createAsset(s, key, 'creds.bin', randomBytes(10));
      await drain(s);
      // A real credential: the receiver is sent it as Basic authentication.
      assert.equal(gone.requests.length, 1);
      assert.equal(
        gone.requests[0]!.headers.authorization,
        `Basic ${Buffer.from(`alice:${password}`).toString('base64')}`,
      );
      // The endpoint API (admin keys only) shows the URL as given, as it shows the secret.
      assert.equal((await api(s.url, key, 'GET', `/v1/webhooks/${hook.id}`)).body.url, url);
      // webhook.disabled goes to every read key and to the endpoints watching webhook.*.
      const reader = await s.newKey('member', accountId);
      const listed = await api(s.url, reader.key, 'GET', '/v1/events?type=webhook.*');
      assert.equal(listed.status, 200);
      assert.equal(listed.body.data.length, 1);
      const redacted = `http://***@127.0.0.1:${gone.port}/…`;
      assert.equal(listed.body.data[0].data.webhook.url, redacted);
      assert.equal(watcher.accepted.length, 1);
      assert.equal(watcher.accepted[0]!.payload!.data.webhook.url, redacted);
      const log = await deliveries(key, hook.id, '', s);
      const detail = await api(s.url, key, 'GET', `/v1/webhooks/${hook.id}/deliveries/${log[0].id}`);
      for (const [what, text] of [
        ['events', JSON.stringify(listed.body)],
        ['the watcher', watcher.accepted[0]!.body],
        ['the delivery log', JSON.stringify(log) + JSON.stringify(detail.body)],
        ['the server log', JSON.stringify(logs.lines)],
        ['the events table', JSON.stringify(dbQuery(s, 'select data from events'))],
      ]) {
        assert.ok(!text!.includes(password), `${what} shows the password`);
        assert.ok(!text!.includes(pathSecret), `${what} shows the URL's path`);
        assert.ok(!text!.includes(token), `${what} shows the URL's query`);
      }
    } finally {
      await s.close();
    }
  });

  test('an endpoint that fails every attempt of a delivery for three days is disabled, saying why', async () => {
    const { key } = await w.newAccount();
    const r = await receiver();
    r.answer = () => ({ status: 503, body: 'down for maintenance' });
    const watcher = await receiver();
    const hook = await endpoint(key, r, { event_types: ['upload.completed'] });
    await endpoint(key, watcher, { event_types: ['webhook.disabled'] });
    await createAsset(w, key, 'doomed.bin', randomBytes(10));
    await drain();
    const start = w.clock.now();
    let d = await deliveryOf(key, hook.id, 'upload.completed');
    for (let attempt = 1; attempt < 10; attempt++) {
      waitsAsScheduled(d, attempt);
      await nextAttempt(d);
      d = await deliveryOf(key, hook.id, 'upload.completed');
    }
    assert.equal(d.status, 'failed');
    assert.equal(d.attempts, 10);
    assert.equal(d.next_attempt_at, null);
    const days = (w.clock.now() - start) / (24 * 3600_000);
    assert.ok(days > 3 && days < 3.5, `${days} days`);
    assert.equal(new Set(r.requests.map((q) => q.id)).size, 1);
    const state = (await api(w.url, key, 'GET', `/v1/webhooks/${hook.id}`)).body;
    assert.equal(state.enabled, false);
    assert.match(state.disabled_reason, /failed for 3\.\d days \(10 attempts\).*HTTP 503/);
    const disabled = (await events(key)).filter((e) => e.type === 'webhook.disabled');
    assert.equal(disabled.length, 1);
    assert.equal(disabled[0].data.reason, 'failing');
    await assertReceivedAll(key, watcher, (t) => t === 'webhook.disabled');
  });

  test('a delivery that uses up its attempts does not disable an endpoint that answered others meanwhile', async () => {
    const { key } = await w.newAccount();
    const r = await receiver();
    r.answer = (d) => (d.payload?.data.upload?.name === 'poison.bin' ? { status: 500 } : { status: 200 });
    const hook = await endpoint(key, r, { event_types: ['upload.completed'] });
    await createAsset(w, key, 'poison.bin', randomBytes(10));
    await drain();
    let d = await deliveryOf(key, hook.id, 'upload.completed');
    for (let attempt = 1; attempt < 10; attempt++) {
      // Other events keep arriving and are accepted.
      await createAsset(w, key, `fine-${attempt}.bin`, randomBytes(10));
      await drain();
      await nextAttempt(d);
      d = (await deliveries(key, hook.id)).find((x) => x.id === d.id);
    }
    assert.equal(d.status, 'failed');
    const state = (await api(w.url, key, 'GET', `/v1/webhooks/${hook.id}`)).body;
    assert.equal(state.enabled, true);
    assert.equal(state.disabled_reason, null);
    assert.equal((await events(key)).filter((e) => e.type === 'webhook.disabled').length, 0);
    assert.equal(r.accepted.length, 9);
  });

  test('a claim whose node stopped mid-attempt uses up no attempt: the first failure waits 5 s, and ten are made', async () => {
    const server = await startWharf({ env: PRIVATE_OK });
    // Another node's worker: it claims the delivery and stops before its attempt logs anything.
    const other = connect(server.databaseUrl);
    const crashed = createSqlStore(other, createIdSource(server.clock));
    try {
      const { key } = await server.newAccount();
      const r = await receiver();
      r.answer = () => ({ status: 500 });
      const hook = await endpoint(key, r, { event_types: ['upload.completed'] }, server);
      await createAsset(server, key, 'crashing.bin', randomBytes(100));
      const others = server.wharf.core.jobs.kinds.filter((k) => k !== DELIVER_WEBHOOK_JOB);
      const crashThenRun = async () => {
        const now = server.clock.now();
        const claimed = await crashed.claimJob('worker-crashed', now, now + server.wharf.core.jobs.leaseMs, {
          skipKinds: others,
        });
        assert.equal(claimed?.kind, DELIVER_WEBHOOK_JOB);
        server.clock.set(now + server.wharf.core.jobs.leaseMs + 1);
        await drain(server);
      };
      await crashThenRun();
      const find = async () => (await deliveries(key, hook.id, '', server))[0];
      let d = await find();
      for (let attempt = 1; attempt < 10; attempt++) {
        waitsAsScheduled(d, attempt);
        server.clock.set(Date.parse(d.next_attempt_at));
        await crashThenRun();
        d = await find();
      }
      assert.equal(d.status, 'failed');
      assert.equal(d.attempts, 10, 'ten attempts made, whatever crashed between them');
      assert.equal(r.requests.length, 10);
    } finally {
      await other.db.destroy();
      await server.close();
    }
  });

  test('narrowing event_types cancels the waiting retries of the types dropped; the rest go to the new URL', async () => {
    const { key } = await w.newAccount();
    const old = await receiver();
    old.answer = () => ({ status: 500 });
    const hook = await endpoint(key, old, { event_types: ['upload.*', 'asset.*'] });
    await createAsset(w, key, 'narrowed.bin', randomBytes(100));
    await drain();
    const waiting = await deliveries(key, hook.id);
    assert.ok(waiting.length >= 3 && waiting.every((d: Json) => d.status === 'pending'));

    const next = await receiver();
    next.secrets = old.secrets;
    const patched = await api(w.url, key, 'PATCH', `/v1/webhooks/${hook.id}`, {
      event_types: ['upload.completed'],
      url: next.url,
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    w.clock.set(Math.max(...waiting.map((d: Json) => Date.parse(d.next_attempt_at))));
    await drain();

    assert.deepEqual(
      next.accepted.map((d) => d.payload?.type),
      ['upload.completed'],
    );
    for (const d of await deliveries(key, hook.id)) {
      if (d.event_type === 'upload.completed') assert.equal(d.status, 'succeeded');
      else {
        assert.equal(d.status, 'cancelled', d.event_type);
        assert.equal(d.last_error, `The endpoint no longer subscribes to ${d.event_type}.`);
      }
    }
  });
});

describe('replay', () => {
  test('one delivery, even a succeeded one, is sent again now with the same webhook-id', async () => {
    const { key } = await w.newAccount();
    const r = await receiver();
    const hook = await endpoint(key, r, { event_types: ['asset.created'] });
    await createAsset(w, key, 'again.bin', randomBytes(10));
    await drain();
    const d = await deliveryOf(key, hook.id, 'asset.created');
    assert.equal(d.status, 'succeeded');
    const replayed = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/deliveries/${d.id}/replay`);
    assert.equal(replayed.status, 202, JSON.stringify(replayed.body));
    assert.equal(replayed.body.status, 'pending');
    await drain();
    assert.equal(r.accepted.length, 2);
    assert.equal(r.accepted[0]!.id, r.accepted[1]!.id);
    assert.equal(r.accepted[0]!.body, r.accepted[1]!.body);
    const after = await deliveryOf(key, hook.id, 'asset.created');
    assert.equal(after.status, 'succeeded');
    assert.equal(after.attempts, 2);
    const missing = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/deliveries/nope/replay`);
    assert.equal(missing.status, 404);
  });

  test('a replay supersedes the pending retry instead of racing it', async () => {
    const { key } = await w.newAccount();
    const r = await receiver();
    let failing = true;
    r.answer = () => (failing ? { status: 500 } : { status: 200 });
    const hook = await endpoint(key, r, { event_types: ['upload.completed'] });
    await createAsset(w, key, 'raced.bin', randomBytes(10));
    await drain();
    const d = await deliveryOf(key, hook.id, 'upload.completed');
    failing = false;
    assert.equal(
      (await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/deliveries/${d.id}/replay`)).status,
      202,
    );
    await drain();
    // The old retry comes due later and finds it settled by the replay.
    await nextAttempt(d);
    w.clock.advance(3600_000);
    await drain();
    assert.equal(r.requests.length, 2);
    assert.equal(r.accepted.length, 1);
    assert.equal((await deliveryOf(key, hook.id, 'upload.completed')).attempts, 2);
  });

  test('since a time: what the endpoint missed while disabled is created and sent; a disabled one refuses', async () => {
    const { key } = await w.newAccount();
    const r = await receiver();
    const hook = await endpoint(key, r, { event_types: ['upload.*'] });
    await createAsset(w, key, 'before.bin', randomBytes(10));
    await drain();
    const mark = w.clock.now();
    w.clock.advance(1000);
    await api(w.url, key, 'PATCH', `/v1/webhooks/${hook.id}`, { enabled: false });
    await createAsset(w, key, 'while-off-1.bin', randomBytes(10));
    await createAsset(w, key, 'while-off-2.bin', randomBytes(10));
    await drain();
    assert.equal(r.accepted.length, 2);
    const refused = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/replay`, {
      since: new Date(mark).toISOString(),
    });
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'WEBHOOK_DISABLED');

    await api(w.url, key, 'PATCH', `/v1/webhooks/${hook.id}`, { enabled: true });
    const replay = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/replay`, {
      since: new Date(mark).toISOString(),
    });
    assert.deepEqual(replay.body, { requeued: 0, created: 4 });
    await drain();
    await assertReceivedAll(key, r, (t) => t.startsWith('upload.'));
    // Asking again creates nothing new; with include_succeeded everything since is sent again.
    const again = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/replay`, {
      since: new Date(mark).toISOString(),
    });
    assert.deepEqual(again.body, { requeued: 0, created: 0 });
    const all = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/replay`, {
      since: new Date(0).toISOString(),
      include_succeeded: true,
    });
    assert.deepEqual(all.body, { requeued: 6, created: 0 });
    await drain();
    assert.equal(r.accepted.length, 12);
    await assertReceivedAll(key, r, (t) => t.startsWith('upload.'));
  });
});

describe('secret rotation', () => {
  test('the new secret signs at once; the old one too, for as long as asked', async () => {
    const { key } = await w.newAccount();
    const r = await receiver();
    const hook = await endpoint(key, r, { event_types: ['upload.created'] });
    const old = hook.secret;
    const rotated = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/rotate-secret`, {});
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    const fresh = rotated.body.secret;
    assert.notEqual(fresh, old);
    assert.deepEqual((await api(w.url, key, 'GET', `/v1/webhooks/${hook.id}/secret`)).body, {
      secret: fresh,
    });

    // The receiver still knows only the old secret: deliveries keep verifying.
    await createAsset(w, key, 'rotating.bin', randomBytes(10));
    await drain();
    assert.equal(r.accepted.length, 1);
    const first = r.accepted[0]!;
    assert.equal(String(first.headers['webhook-signature']).split(' ').length, 2);
    assert.doesNotThrow(() => new Webhook(fresh).verify(first.body, first.headers as Record<string, string>));

    // A day later only the new secret signs.
    w.clock.advance(24 * 3600_000 + 1);
    r.secrets = [fresh];
    await createAsset(w, key, 'rotated.bin', randomBytes(10));
    await drain();
    const second = r.accepted.at(-1)!;
    assert.equal(String(second.headers['webhook-signature']).split(' ').length, 1);
    assert.throws(() => new Webhook(old).verify(second.body, second.headers as Record<string, string>));

    // keep_previous_for 0: a leaked secret stops signing at once.
    const leaked = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/rotate-secret`, {
      keep_previous_for: 0,
    });
    r.secrets = [leaked.body.secret];
    await createAsset(w, key, 'leaked.bin', randomBytes(10));
    await drain();
    const third = r.accepted.at(-1)!;
    assert.equal(String(third.headers['webhook-signature']).split(' ').length, 1);
    assert.throws(() => new Webhook(fresh).verify(third.body, third.headers as Record<string, string>));
    assert.deepEqual(r.invalid, []);
    const bad = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/rotate-secret`, {
      keep_previous_for: -1,
    });
    assert.equal(bad.status, 400);
    // What is wrong with the object sent, not also that it is not null (the body may be).
    assert.equal(bad.body.error.message, 'body/keep_previous_for must be >= 0');
    const bare = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/rotate-secret`);
    assert.equal(bare.status, 200, JSON.stringify(bare.body));
    assert.match(bare.body.secret, /^whsec_/);

    // One old secret is kept: a second rotation within the day drops the one before it.
    const again = await api(w.url, key, 'POST', `/v1/webhooks/${hook.id}/rotate-secret`, {});
    r.secrets = [again.body.secret];
    await createAsset(w, key, 'rotated-twice.bin', randomBytes(10));
    await drain();
    const fourth = r.accepted.at(-1)!;
    const headers = fourth.headers as Record<string, string>;
    assert.equal(String(headers['webhook-signature']).split(' ').length, 2);
    assert.doesNotThrow(() => new Webhook(bare.body.secret).verify(fourth.body, headers));
    assert.throws(() => new Webhook(leaked.body.secret).verify(fourth.body, headers));
    assert.deepEqual(r.invalid, []);
  });
});

describe('rotations at the same moment', () => {
  test('come out as if one followed the other: the last answered signs, the one before it is the previous', async () => {
    const { key, accountId } = await w.newAccount();
    const r = await receiver();
    const hook = await endpoint(key, r, { event_types: ['upload.created'] });
    // Started in one turn, as requests on several nodes may be: each reads the endpoint before
    // any has written (over HTTP, requests on one node seldom overlap that closely).
    const answers = await Promise.all(
      Array.from({ length: 3 }, () => w.wharf.core.webhooks.rotateSecret(accountId, hook.id)),
    );
    const secrets = answers.map((a) => a.secret);
    const current = (await api(w.url, key, 'GET', `/v1/webhooks/${hook.id}/secret`)).body.secret as string;
    assert.ok(secrets.includes(current), 'the current secret is one a caller was handed');
    r.secrets = [current];
    await createAsset(w, key, 'raced.bin', randomBytes(10));
    await drain();
    const delivered = r.accepted.at(-1)!;
    const headers = delivered.headers as Record<string, string>;
    const signing = [hook.secret, ...secrets].filter((secret) => {
      try {
        new Webhook(secret).verify(delivered.body, headers);
        return true;
      } catch {
        return false;
      }
    });
    // Two signatures: the current secret's and the previous one's, which is another caller's
    // (each rotation replaced the one before it); the secret from before the race signs nothing.
    assert.equal(String(headers['webhook-signature']).split(' ').length, 2);
    assert.equal(signing.length, 2, `signing: ${signing.length}`);
    assert.ok(!signing.includes(hook.secret), 'the secret from before the rotations no longer signs');
  });
});

describe('a receiver that is down while Wharf restarts', () => {
  test('nothing is lost and nothing arrives under another webhook-id', async () => {
    const first = await startWharf({ env: PRIVATE_OK });
    let second: TestWharf | undefined;
    try {
      const { key } = await first.newAccount();
      const down = await receiver();
      const port = down.port;
      const hook = await endpoint(key, down, {}, first);
      await down.close();
      await createAsset(first, key, 'while-down-1.bin', randomBytes(20));
      await createAsset(first, key, 'while-down-2.bin', randomBytes(20));
      await drain(first);
      const pending = await deliveries(key, hook.id, '', first);
      assert.ok(pending.length >= 6);
      for (const d of pending) {
        assert.equal(d.status, 'pending');
        assert.match(d.last_error, /ECONNREFUSED/);
      }
      // Wharf stops; the receiver comes back; a new Wharf starts on the same data.
      await first.wharf.close();
      const back = await receiver(port);
      back.secrets = down.secrets;
      second = await startWharf({ sharing: first, clock: first.clock, env: PRIVATE_OK });
      const latest = Math.max(...pending.map((d) => Date.parse(d.next_attempt_at)));
      second.clock.set(latest);
      await drain(second);
      const after = await deliveries(key, hook.id, '', second);
      assert.ok(after.every((d) => d.status === 'succeeded'));
      const all = await events(key, second);
      assert.deepEqual(back.invalid, []);
      assert.deepEqual(new Set(back.accepted.map((d) => d.id)), new Set(all.map((e) => e.id)));
      assert.equal(back.accepted.length, all.length, 'each event accepted once');
    } finally {
      await second?.close();
      await first.close();
    }
  });
});

describe('two nodes draining the queue at once', () => {
  test('each delivery attempt happens exactly once', async () => {
    const a = await startWharf({ env: PRIVATE_OK });
    const b = await startWharf({ sharing: a, clock: a.clock, env: PRIVATE_OK });
    try {
      const { key } = await a.newAccount();
      const r = await receiver();
      const hook = await endpoint(key, r, {}, a);
      for (let i = 0; i < 8; i++) await createAsset(i % 2 ? a : b, key, `n${i}.bin`, randomBytes(30 + i));
      await Promise.all([a.wharf.core.jobs.drain(), b.wharf.core.jobs.drain()]);
      // Whatever either node's processing recorded in the meantime.
      await Promise.all([a.wharf.core.jobs.drain(), b.wharf.core.jobs.drain()]);
      const log = await deliveries(key, hook.id, '', a);
      assert.equal(log.length, 32);
      assert.ok(log.every((d) => d.status === 'succeeded' && d.attempts === 1));
      assert.equal(r.requests.length, 32, 'one request per delivery');
      assert.equal(new Set(r.requests.map((q) => q.id)).size, 32);
      const attempts = dbQuery<{ n: number }>(
        a,
        'select count(*) as n from webhook_attempts where webhook_id = ?',
        hook.id,
      );
      assert.equal(Number(attempts[0]!.n), 32);
      await assertReceivedAllOn(a, key, r);
    } finally {
      await b.close();
      await a.close();
    }
  });
});

async function assertReceivedAllOn(server: TestWharf, key: string, r: Receiver) {
  const all = await events(key, server);
  assert.deepEqual(r.invalid, []);
  assert.deepEqual(new Set(r.accepted.map((d) => d.id)), new Set(all.map((e) => e.id)));
}

describe('SSRF: private targets are refused unless allowed', () => {
  let strict: TestWharf;
  before(async () => {
    strict = await startWharf();
  });
  after(async () => {
    await strict?.close();
  });

  test('at creation: IP literals of private, loopback, link-local … ranges, and localhost', async () => {
    const r = await receiver();
    const refused = [
      r.url,
      `http://localhost:${r.port}/`,
      'http://LOCALHOST./x',
      'http://app.localhost/x',
      'http://[::1]/x',
      'http://[::ffff:127.0.0.1]/x',
      'http://[::127.0.0.1]/x',
      'http://[::7f00:1]/x',
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.8/',
      'http://172.16.5.4/',
      'http://192.168.1.1/',
      'http://100.64.0.1/',
      'http://[fd00::1]/',
      'http://[fe80::1]/',
      'http://0.0.0.0/',
      'http://224.0.0.1/',
      'http://2130706433/',
    ];
    for (const url of refused) {
      const res = await api(strict.url, strict.key, 'POST', '/v1/webhooks', { url });
      assert.equal(res.status, 400, url);
      assert.equal(res.body.error.code, 'URL_NOT_ALLOWED', url);
      assert.match(res.body.error.message, /WHARF_WEBHOOK_ALLOW_PRIVATE/);
    }
    const ok = await api(strict.url, strict.key, 'POST', '/v1/webhooks', {
      url: 'https://93.184.216.34/hooks',
    });
    assert.equal(ok.status, 201);
    const patched = await api(strict.url, strict.key, 'PATCH', `/v1/webhooks/${ok.body.webhook.id}`, {
      url: r.url,
    });
    assert.equal(patched.status, 400);
    assert.equal(patched.body.error.code, 'URL_NOT_ALLOWED');
    assert.equal(
      (await api(strict.url, strict.key, 'DELETE', `/v1/webhooks/${ok.body.webhook.id}`)).status,
      204,
    );
    assert.equal(r.requests.length + r.invalid.length, 0);
  });

  test('at delivery: a name that resolves to a loopback address is not connected to', async (t) => {
    const name = hostname();
    const addresses = await lookup(name, { all: true }).catch(() => []);
    if (addresses.length === 0 || addresses.some((a) => isPublicAddress(a.address))) {
      t.skip(`this machine's name (${name}) does not resolve to loopback addresses only`);
      return;
    }
    const { key } = await strict.newAccount();
    const r = await receiver();
    const created = await api(strict.url, key, 'POST', '/v1/webhooks', {
      url: `http://${name}:${r.port}/hooks`,
      event_types: ['upload.created'],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await createAsset(strict, key, 'ssrf.bin', randomBytes(10));
    await drain(strict);
    const [d] = await deliveries(key, created.body.webhook.id, '', strict);
    assert.equal(d.status, 'pending');
    assert.match(d.last_error, /^Refused: .* has no public address/);
    // The admin reading the log learns the name was refused, not what it resolves to.
    assert.doesNotMatch(d.last_error, /127\.\d+\.\d+\.\d+|::1\b|::ffff/);
    assert.equal(r.requests.length + r.invalid.length, 0, 'the receiver was never reached');
    // Nor whether it exists: a name that resolves to nothing is logged in the same words.
    const missing = await refusedMissingName(key);
    assert.equal(missing.error.replace(missing.name, name), d.last_error);
  });

  /** Delivers to a name under .invalid (RFC 6761: never resolves); the delivery log's error. */
  async function refusedMissingName(key: string): Promise<{ name: string; error: string }> {
    const name = `no-such-host-${randomBytes(4).toString('hex')}.invalid`;
    const created = await api(strict.url, key, 'POST', '/v1/webhooks', {
      url: `http://${name}/hooks`,
      event_types: ['upload.completed'],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await createAsset(strict, key, 'missing.bin', randomBytes(10));
    await drain(strict);
    const [d] = await deliveries(key, created.body.webhook.id, '', strict);
    assert.equal(d.status, 'pending');
    return { name, error: d.last_error };
  }

  test('at delivery: a name that does not resolve is refused as a private one is, not reported as missing', async () => {
    const { key } = await strict.newAccount();
    const { name, error } = await refusedMissingName(key);
    // "Does not exist" against "resolves privately" would let an account's admin test which
    // internal names the server's resolver knows (hosts file, split-horizon zones).
    assert.match(error, new RegExp(`^Refused: ${name.replaceAll('.', '\\.')} has no public address`));
    assert.doesNotMatch(error, /ENOTFOUND|EAI_AGAIN|getaddrinfo/);
  });
});

describe('retention', () => {
  test('the sweep prunes old events and finished deliveries, keeping what a pending delivery needs', async () => {
    const s = await startWharf({ env: { ...PRIVATE_OK, WHARF_EVENTS_RETENTION_DAYS: '2' } });
    try {
      const { key } = await s.newAccount();
      const ok = await receiver();
      const failing = await receiver();
      failing.answer = () => ({ status: 500 });
      const done = await endpoint(key, ok, { event_types: ['upload.completed'] }, s);
      const stuck = await endpoint(key, failing, { event_types: ['upload.created'] }, s);
      await createAsset(s, key, 'old.bin', randomBytes(10));
      await drain(s);
      const before = await events(key, s);
      assert.equal(before.length, 4);
      s.clock.advance(2 * 24 * 3600_000 + 1);
      assert.deepEqual(await s.wharf.core.webhooks.prune(), { events: 3, deliveries: 1 });
      // upload.created is still owed to the failing endpoint.
      assert.deepEqual(
        (await events(key, s)).map((e) => e.type),
        ['upload.created'],
      );
      assert.deepEqual(await deliveries(key, done.id, '', s), []);
      assert.equal((await deliveries(key, stuck.id, '', s)).length, 1);
    } finally {
      await s.close();
    }
  });
});

describe('job retention', () => {
  test('the sweep deletes finished jobs due before the retention (WHARF_EVENTS_RETENTION_DAYS); later and unfinished ones stay', async () => {
    const s = await startWharf({ env: { ...PRIVATE_OK, WHARF_EVENTS_RETENTION_DAYS: '2' } });
    try {
      const { key } = await s.newAccount();
      const ok = await receiver();
      await endpoint(key, ok, { event_types: ['upload.completed'] }, s);
      await createAsset(s, key, 'processed.bin', randomBytes(10));
      // A deletion queues the back-stop that frees its bytes, due an hour later.
      const gone = await createAsset(s, key, 'deleted.bin', randomBytes(10));
      await drain(s);
      assert.equal((await api(s.url, key, 'DELETE', `/v1/assets/${gone.id}`)).status, 204);
      await drain(s);
      const count = (where: string, ...params: unknown[]) =>
        Number(dbQuery<{ n: number }>(s, `select count(*) as n from jobs where ${where}`, ...params)[0]!.n);
      const finished = count(`status = 'done'`);
      assert.ok(finished >= 2, `processing and the delivery ran (${finished})`);
      const unfinished = count(`status <> 'done'`);
      assert.ok(unfinished >= 1, 'back-stops due later are queued');

      s.clock.advance(2 * 24 * 3600_000 + 1);
      const before = s.clock.now() - 2 * 24 * 3600_000;
      const old = count(`status = 'done' and run_at < ?`, before);
      assert.equal(old, finished, 'every job that ran is older than the retention now');
      await s.wharf.sweep();
      assert.equal(count(`status = 'done' and run_at < ?`, before), 0);
      // What was not done stays, whatever became of it since (the back-stops came due meanwhile).
      assert.equal(count(`status <> 'done'`) + count(`status = 'done' and run_at >= ?`, before), unfinished);
    } finally {
      await s.close();
    }
  });
});

describe('a new server secret (WHARF_SECRET): endpoints keep signing', () => {
  const secret = () => randomBytes(24).toString('base64url');

  /** A second node on `first`'s database and storage, as the same installation restarted. */
  function restarted(first: TestWharf, env: Record<string, string>, logStream?: LogCollector['stream']) {
    return startWharf({ sharing: first, clock: first.clock, env: { ...PRIVATE_OK, ...env }, logStream });
  }

  async function signedDelivery(server: TestWharf, key: string, r: Receiver): Promise<void> {
    const before = r.accepted.length;
    await createAsset(server, key, `after-${randomBytes(4).toString('hex')}.bin`, randomBytes(64));
    await drain(server);
    assert.deepEqual(r.invalid, [], 'every request verified');
    assert.ok(r.accepted.length > before, 'a delivery signed with the endpoint’s secret arrived');
  }

  /**
   * An endpoint made on a server started with `before`, read and delivered to by one started
   * with `after` on the same installation: the same secret, and deliveries signed with it.
   */
  async function keepsItsSecret(
    before: Record<string, string>,
    after: Record<string, string>,
  ): Promise<void> {
    const first = await startWharf({ env: { ...PRIVATE_OK, ...before } });
    try {
      const r = await receiver();
      const hook = await endpoint(first.key, r, {}, first);
      const second = await restarted(first, after);
      try {
        const read = await api(second.url, first.key, 'GET', `/v1/webhooks/${hook.id}/secret`);
        assert.deepEqual(read.body, { secret: hook.secret });
        await signedDelivery(second, first.key, r);
        // Sealed again under the new secret once it listened: a node still on the old one no
        // longer opens it (docs/operations.md: restart the other nodes promptly).
        const stale = await api(first.url, first.key, 'GET', `/v1/webhooks/${hook.id}/secret`);
        assert.equal(stale.status, 409, JSON.stringify(stale.body));
      } finally {
        await second.close();
      }
    } finally {
      await first.close();
    }
  }

  /** The endpoint's secret reads back from `server`, and a delivery it makes is signed with it. */
  async function stillSigns(server: TestWharf, hook: Endpoint, r: Receiver): Promise<void> {
    const read = await api(server.url, server.key, 'GET', `/v1/webhooks/${hook.id}/secret`);
    assert.deepEqual(read.body, { secret: hook.secret });
    await signedDelivery(server, server.key, r);
  }

  test('WHARF_SECRET_PREVIOUS: a node signs with what the old secret sealed before it seals it again, or if it never does', async () => {
    const old = secret();
    const first = await startWharf({ env: { ...PRIVATE_OK, WHARF_SECRET: old } });
    try {
      const r = await receiver();
      const hook = await endpoint(first.key, r, {}, first);
      const second = await startWharf({
        sharing: first,
        clock: first.clock,
        env: { ...PRIVATE_OK, WHARF_SECRET: secret(), WHARF_SECRET_PREVIOUS: old },
        reseal: false,
      });
      try {
        await stillSigns(second, hook, r);
        // Nothing was sealed again: the node still on the old secret opens it as before.
        await stillSigns(first, hook, r);
      } finally {
        await second.close();
      }
    } finally {
      await first.close();
    }
  });

  test('a CLI command run with another WHARF_SECRET seals nothing again: the server goes on signing', async () => {
    // The server's secret is generated (kept in the database), which the command takes as the
    // previous one: sealing under its own would leave the server unable to open the secrets.
    const first = await startWharf({ env: PRIVATE_OK });
    try {
      const r = await receiver();
      const hook = await endpoint(first.key, r, {}, first);
      const listed = await wharfCli(first, ['keys', 'list'], { WHARF_SECRET: secret() });
      assert.equal(listed.code, 0, listed.stderr);
      await stillSigns(first, hook, r);
    } finally {
      await first.close();
    }
  });

  test('a start with another WHARF_SECRET that fails (its port in use) seals nothing again: the server goes on signing', async () => {
    const first = await startWharf({ env: PRIVATE_OK });
    try {
      const r = await receiver();
      const hook = await endpoint(first.key, r, {}, first);
      const config = loadConfig({
        WHARF_HOST: '127.0.0.1',
        WHARF_PORT: new URL(first.url).port,
        WHARF_DATA_DIR: first.dataDir,
        WHARF_SWEEP_INTERVAL: '0',
        WHARF_JOB_INTERVAL_MS: '0',
        ...first.backingEnv,
        ...PRIVATE_OK,
        WHARF_SECRET: secret(),
      });
      // As main.ts starts a server: made, then listening, which fails.
      const second = await createWharf(config, { clock: first.clock, consoleDir: null });
      try {
        await assert.rejects(second.listen(), { code: 'EADDRINUSE' });
      } finally {
        await second.close({ deadlineMs: 0 });
      }
      await stillSigns(first, hook, r);
    } finally {
      await first.close();
    }
  });

  test('WHARF_SECRET_PREVIOUS: secrets sealed under the old one are sealed again once the server listens', async () => {
    const old = secret();
    await keepsItsSecret({ WHARF_SECRET: old }, { WHARF_SECRET: secret(), WHARF_SECRET_PREVIOUS: old });
  });

  test('a generated secret replaced by WHARF_SECRET is taken as the previous one', async () => {
    // The first server has no WHARF_SECRET: its secret is generated and kept in the database.
    await keepsItsSecret({}, { WHARF_SECRET: secret() });
  });

  test('without the old secret: a warning names the endpoints, nothing goes out unsigned, a rotation mends it', async () => {
    const first = await startWharf({ env: { ...PRIVATE_OK, WHARF_SECRET: secret() } });
    try {
      const r = await receiver();
      const hook = await endpoint(first.key, r, {}, first);
      const logs = new LogCollector();
      const second = await restarted(first, { WHARF_SECRET: secret() }, logs.stream);
      try {
        const warning = await logs.waitFor(
          (l) => l.level === 40 && /WHARF_SECRET_PREVIOUS/.test(String(l.msg)),
          'warning',
        );
        assert.deepEqual(warning.webhooks, [hook.id]);
        const read = await api(second.url, first.key, 'GET', `/v1/webhooks/${hook.id}/secret`);
        assert.equal(read.status, 409, JSON.stringify(read.body));
        assert.equal(read.body.error.code, 'WEBHOOK_SECRET_UNREADABLE');
        assert.match(read.body.error.message, /WHARF_SECRET_PREVIOUS/);
        await createAsset(second, first.key, 'unsigned.bin', randomBytes(64));
        await drain(second);
        assert.equal(r.requests.length + r.invalid.length, 0, 'no request without a valid signature');
        // The delivery log says why nothing arrived.
        const [waiting] = await deliveries(first.key, hook.id, '', second);
        assert.equal(waiting.status, 'pending', JSON.stringify(waiting));
        assert.equal(waiting.attempts, 1, JSON.stringify(waiting));
        assert.match(waiting.last_error, /sealed under another server secret/);

        const rotated = await api(second.url, first.key, 'POST', `/v1/webhooks/${hook.id}/rotate-secret`, {
          keep_previous_for: 3600,
        });
        assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
        r.secrets.push(rotated.body.secret);
        // The delivery that failed is retried, now signed with the new secret alone.
        first.clock.advance(DELIVERY_DELAYS_MS[1]! + 60_000);
        await signedDelivery(second, first.key, r);
        const signatures = String(r.accepted.at(-1)!.headers['webhook-signature']).split(' ');
        assert.equal(signatures.length, 1, 'the unreadable rotated-out secret adds no signature');
      } finally {
        await second.close();
      }
    } finally {
      await first.close();
    }
  });
});

/** A delivery still pending after `attempt` failed attempts, its next one planned as the schedule says. */
function waitsAsScheduled(
  d: { status: string; attempts: number; next_attempt_at: string; last_attempt_at: string },
  attempt: number,
): void {
  assert.equal(d.status, 'pending', `after attempt ${attempt}`);
  assert.equal(d.attempts, attempt);
  const wait = Date.parse(d.next_attempt_at) - Date.parse(d.last_attempt_at);
  const planned = DELIVERY_DELAYS_MS[attempt - 1]!;
  assert.ok(wait >= planned && wait <= planned * 1.1, `wait ${attempt}: ${wait} for ${planned}`);
}
