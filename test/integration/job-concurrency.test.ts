import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createAsset, dbQuery, eventually } from '../helpers/assets.js';
import { api } from '../helpers/http.js';
import { Receiver } from '../helpers/receiver.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * The server's own job runner (not a test's drain()): a webhook endpoint that never answers
 * holds WHARF_WEBHOOK_CONCURRENCY workers for its whole timeout, and the node's other workers
 * go on processing and delivering to other endpoints.
 */

let w: TestWharf;
let receiver: Receiver;
const receivers: Receiver[] = [];
before(async () => {
  receiver = await Receiver.start();
  receivers.push(receiver);
  w = await startWharf({
    env: {
      WHARF_JOB_INTERVAL_MS: '20',
      WHARF_WEBHOOK_ALLOW_PRIVATE: 'true',
      // Longer than this test waits for anything: the hanging delivery stays in flight.
      WHARF_WEBHOOK_TIMEOUT_MS: '60000',
      // One attempt per endpoint at a time; the describe below has two.
      WHARF_WEBHOOK_CONCURRENCY: '1',
    },
  });
});
after(async () => {
  for (const r of receivers) await r.close();
  await w?.close();
});

/** A receiver answering `answer`, with an endpoint of the account `key` subscribed to `types`. */
async function endpointOf(key: string, types: string[], answer: Receiver['answer'], server = w) {
  const r = await Receiver.start();
  receivers.push(r);
  r.answer = answer;
  const created = await api(server.url, key, 'POST', '/v1/webhooks', { url: r.url, event_types: types });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  r.secrets = [created.body.secret];
  return { receiver: r, id: created.body.webhook.id as string };
}

describe('jobs run concurrently on a node (WHARF_WEBHOOK_CONCURRENCY 1)', () => {
  test('a delivery hanging on its endpoint does not hold up asset processing', async () => {
    const created = await api(w.url, w.key, 'POST', '/v1/webhooks', {
      url: receiver.url,
      event_types: ['asset.created'],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    receiver.secrets = [created.body.secret];
    receiver.answer = () => 'hang';

    await createAsset(w, w.key, 'first.bin', randomBytes(100));
    await eventually(() => receiver.requests.length === 1, 'the first delivery reaches the endpoint');

    // The first delivery is still in flight (the endpoint holds it); a new asset is processed anyway.
    const second = await createAsset(w, w.key, 'second.bin', randomBytes(100));
    await eventually(async () => {
      const res = await api(w.url, w.key, 'GET', `/v1/assets/${second.id}`);
      return res.body.processing === 'done';
    }, 'the second asset is processed while the first delivery hangs');
    const first = receiver.requests[0]!;
    assert.equal(first.payload?.type, 'asset.created');
    assert.equal(receiver.accepted.length, 0, 'the endpoint has answered nothing yet');
  });

  test('an endpoint that never answers holds one worker: another account’s endpoint and processing go on', async () => {
    // More deliveries to the hanging endpoint than the node has workers (4).
    const noisy = await w.newAccount();
    const dead = await endpointOf(noisy.key, ['asset.created'], () => 'hang');
    const noisyAssets: string[] = [];
    for (let i = 0; i < 6; i++) {
      noisyAssets.push((await createAsset(w, noisy.key, `noisy-${i}.bin`, randomBytes(100))).id);
    }
    await eventually(() => dead.receiver.requests.length >= 1, 'the hanging endpoint gets a delivery');

    const quiet = await w.newAccount();
    const healthy = await endpointOf(quiet.key, ['asset.created'], () => ({ status: 204 }));
    const asset = await createAsset(w, quiet.key, 'quiet.bin', randomBytes(100));
    await eventually(
      () => healthy.receiver.accepted.length === 1,
      'the healthy endpoint gets its delivery while the other one hangs',
    );
    await eventually(async () => {
      const res = await api(w.url, quiet.key, 'GET', `/v1/assets/${asset.id}`);
      return res.body.processing === 'done';
    }, 'the asset is processed while the other endpoint hangs');
    assert.equal(healthy.receiver.accepted[0]!.payload?.data.asset.id, asset.id);

    // Still hanging: one attempt in flight, the other five waiting their turn (none attempted),
    // and the one in flight is the first due.
    assert.equal(dead.receiver.requests.length, 1, 'one delivery at a time to one endpoint');
    assert.equal(dead.receiver.requests[0]!.payload?.data.asset.id, noisyAssets[0]);
    const pending = await api(w.url, noisy.key, 'GET', `/v1/webhooks/${dead.id}/deliveries?limit=100`);
    assert.equal(pending.body.data.length, 6);
    assert.ok(
      pending.body.data.every(
        (d: { status: string; attempts: number }) => d.status === 'pending' && d.attempts === 0,
      ),
      JSON.stringify(pending.body.data),
    );
  });

  test('however many endpoints hang, deliveries leave the node a worker for processing', async () => {
    // With the two still hanging above, more hanging endpoints than the node has workers.
    const noisy = await w.newAccount();
    const hanging = [
      await endpointOf(noisy.key, ['asset.created'], () => 'hang'),
      await endpointOf(noisy.key, ['asset.created'], () => 'hang'),
    ];
    await createAsset(w, noisy.key, 'two-hooks.bin', randomBytes(100));
    const inFlight = () => receivers.reduce((n, r) => n + r.requests.length - r.accepted.length, 0);
    // Workers 4, so deliveries may take 3 of them: the two above and one of these.
    await eventually(() => inFlight() >= 3, 'three deliveries hang at once');
    const asset = await createAsset(w, noisy.key, 'processed.bin', randomBytes(100));
    await eventually(async () => {
      const res = await api(w.url, noisy.key, 'GET', `/v1/assets/${asset.id}`);
      return res.body.processing === 'done';
    }, 'the asset is processed while every delivery worker hangs');
    assert.equal(inFlight(), 3, 'no fourth delivery took the last worker');
    assert.equal(hanging[0]!.receiver.requests.length + hanging[1]!.receiver.requests.length, 1);
  });
});

describe('an endpoint gets WHARF_WEBHOOK_CONCURRENCY attempts at once (2)', () => {
  let two: TestWharf;
  let mark = 0;
  before(async () => {
    mark = receivers.length;
    two = await startWharf({
      env: {
        WHARF_JOB_INTERVAL_MS: '20',
        WHARF_WEBHOOK_ALLOW_PRIVATE: 'true',
        WHARF_WEBHOOK_TIMEOUT_MS: '60000',
        // Deliveries may take 5 workers: more than one endpoint's two.
        WHARF_JOB_CONCURRENCY: '6',
        WHARF_WEBHOOK_CONCURRENCY: '2',
      },
    });
  });
  after(async () => {
    // Their hanging answers first: a stop waits for the deliveries in flight, which would
    // otherwise run to WHARF_WEBHOOK_TIMEOUT_MS (a minute of every test run).
    for (const r of receivers.splice(mark)) await r.close();
    await two?.close();
  });

  test('an endpoint that never answers holds exactly two attempts; its other deliveries wait, another endpoint’s goes through', async () => {
    const noisy = await two.newAccount();
    const dead = await endpointOf(noisy.key, ['asset.created'], () => 'hang', two);
    for (let i = 0; i < 6; i++) await createAsset(two, noisy.key, `noisy-${i}.bin`, randomBytes(100));
    await eventually(() => dead.receiver.open === 2, 'the hanging endpoint holds two attempts');

    const quiet = await two.newAccount();
    const healthy = await endpointOf(quiet.key, ['asset.created'], () => ({ status: 204 }), two);
    const asset = await createAsset(two, quiet.key, 'quiet.bin', randomBytes(100));
    await eventually(
      () => healthy.receiver.accepted.length === 1,
      'the healthy endpoint gets its delivery while the other one hangs',
    );
    assert.equal(healthy.receiver.accepted[0]!.payload?.data.asset.id, asset.id);

    // Free workers were there (5 may deliver), yet the hanging endpoint got no third attempt.
    assert.equal(dead.receiver.requests.length, 2, 'two deliveries at a time to one endpoint');
    assert.equal(dead.receiver.open, 2);
    const jobs = dbQuery<{ status: string }>(
      two,
      'select status from jobs where lane = ? order by status',
      dead.id,
    );
    assert.deepEqual(
      jobs.map((j) => j.status),
      ['queued', 'queued', 'queued', 'queued', 'running', 'running'],
    );
    const pending = await api(two.url, noisy.key, 'GET', `/v1/webhooks/${dead.id}/deliveries?limit=100`);
    assert.equal(pending.body.data.length, 6);
    assert.ok(
      pending.body.data.every(
        (d: { status: string; attempts: number }) => d.status === 'pending' && d.attempts === 0,
      ),
      JSON.stringify(pending.body.data),
    );
  });

  test('a busy endpoint gets two deliveries at once', async () => {
    const { key } = await two.newAccount();
    // Answers once it has two requests open, both at once: it gets nothing more until Wharf
    // sends a second while the first is still open.
    let mostOpen = 0;
    const busy = await endpointOf(
      key,
      ['asset.created'],
      () => {
        mostOpen = Math.max(mostOpen, busy.receiver.open + 1);
        if (busy.receiver.open === 0) return 'hang';
        busy.receiver.release();
        return { status: 204 };
      },
      two,
    );
    for (let i = 0; i < 4; i++) await createAsset(two, key, `busy-${i}.bin`, randomBytes(100));
    await eventually(
      () => busy.receiver.accepted.length === 4,
      'the endpoint has two requests open at once, twice',
    );
    assert.equal(mostOpen, 2);
    assert.equal(busy.receiver.requests.length, 4, 'each delivery was sent once');
  });
});

describe('one account’s endpoints that never answer do not hold up another account’s deliveries', () => {
  let fair: TestWharf;
  let mark = 0;
  before(async () => {
    mark = receivers.length;
    fair = await startWharf({
      env: {
        WHARF_JOB_INTERVAL_MS: '20',
        WHARF_WEBHOOK_ALLOW_PRIVATE: 'true',
        // Short, so the backlog below moves on (3 attempts a second) while the test watches.
        WHARF_WEBHOOK_TIMEOUT_MS: '1000',
        // Deliveries may take 3 workers; two endpoints of 2 each could take 4.
        WHARF_JOB_CONCURRENCY: '4',
        WHARF_WEBHOOK_CONCURRENCY: '2',
      },
    });
  });
  after(async () => {
    for (const r of receivers.splice(mark)) await r.close();
    await fair?.close();
  });

  test('a worker that frees up serves the other account next, while the first one’s backlog still waits', async () => {
    const noisy = await fair.newAccount();
    const dead = [
      await endpointOf(noisy.key, ['asset.created'], () => 'hang', fair),
      await endpointOf(noisy.key, ['asset.created'], () => 'hang', fair),
    ];
    // 24 deliveries, each taking the whole timeout: some 8 s of attempts, three at a time.
    for (let i = 0; i < 12; i++) await createAsset(fair, noisy.key, `noisy-${i}.bin`, randomBytes(100));
    await eventually(
      () => dead[0]!.receiver.open + dead[1]!.receiver.open === 3,
      'the account’s deliveries hold every worker deliveries may take',
    );

    const quiet = await fair.newAccount();
    const sent = () => dead[0]!.receiver.requests.length + dead[1]!.receiver.requests.length;
    // How many of the backlog's attempts had gone out when the other account's delivery arrived.
    let sentBefore = -1;
    const healthy = await endpointOf(
      quiet.key,
      ['asset.created'],
      () => {
        sentBefore = sent();
        return { status: 204 };
      },
      fair,
    );
    const sentAtUpload = sent();
    const asset = await createAsset(fair, quiet.key, 'quiet.bin', randomBytes(100));
    await eventually(() => healthy.receiver.accepted.length === 1, 'the other account’s delivery goes out', {
      tries: 1500,
    });
    assert.equal(healthy.receiver.accepted[0]!.payload?.data.asset.id, asset.id);
    // Taking the oldest due delivery first, it went out only after every one of the backlog's
    // (24) had used its timeout. Now the first worker that frees up takes it: at most the
    // attempts being claimed as it was made (one a worker) go before it, about one timeout.
    assert.ok(
      sentAtUpload < 24,
      `the backlog was still waiting when the other account uploaded (${sentAtUpload} sent)`,
    );
    assert.ok(
      sentBefore - sentAtUpload <= 3,
      `${sentBefore - sentAtUpload} of the backlog's attempts went before the other account's delivery (${sentAtUpload} had gone out when it was made)`,
    );
  });
});
