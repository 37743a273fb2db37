import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import {
  complete,
  createAsset,
  dbQuery,
  declare,
  eventually,
  type Intent,
  putPresigned,
  uploadRaw,
} from '../helpers/assets.js';
import { deployment, storedKeys } from '../helpers/deployment.js';
import { api, sha256Hex } from '../helpers/http.js';
import { Receiver } from '../helpers/receiver.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// Two servers on one database and one storage: what a scaled-out deployment behind a load
// balancer is. Any request may land on either node, and both may race on the same upload.
const skip =
  deployment !== 'scaled' &&
  'needs a database two servers share (PostgreSQL); the embedded SQLite file belongs to one process';

describe('two nodes of one deployment', { skip }, () => {
  let a: TestWharf;
  let b: TestWharf;
  before(async () => {
    a = await startWharf();
    b = await startWharf({ sharing: a, clock: a.clock });
  });
  after(async () => {
    await b?.close();
    await a?.close();
  });

  /**
   * PUTs an intent's bytes through node B. Storage's own presigned URLs go to the store;
   * Wharf's local endpoint URLs name node A's host, so node B gets the request with A's Host
   * header, as a load balancer that keeps Host hands it over.
   */
  async function putThroughB(intent: Intent, bytes: Buffer): Promise<number> {
    const target = new URL(intent.url);
    if (target.origin !== a.url) return (await putPresigned(intent, bytes)).status;
    const port = Number(new URL(b.url).port);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          method: 'PUT',
          path: target.pathname + target.search,
          headers: { ...intent.headers, host: target.host, 'content-length': String(bytes.length) },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(bytes);
    });
  }

  test('an intent signed on node A is PUT and completed through node B', async () => {
    const bytes = randomBytes(4096);
    const intent = await declare(a, a.key, { name: 'across.bin', size: bytes.length });
    assert.equal(await putThroughB(intent, bytes), 200);

    const done = await complete(b, a.key, intent.id);
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.status, 'created');
    assert.equal(done.body.asset.sha256, sha256Hex(bytes));

    // Node A sees what node B recorded, and serves the bytes B's upload stored.
    const got = await api(a.url, a.key, 'GET', `/v1/assets/${done.body.asset.id}`);
    assert.equal(got.status, 200);
    const content = await fetch(`${a.url}/v1/assets/${done.body.asset.id}/content`, {
      headers: { 'x-api-key': a.key },
    });
    assert.equal(content.status, 200);
    assert.deepEqual(Buffer.from(await content.arrayBuffer()), bytes);
  });

  test('one upload completed on both nodes at once becomes exactly one asset', async () => {
    for (let round = 0; round < 5; round++) {
      const bytes = randomBytes(2048);
      const intent = await declare(a, a.key, { name: `race-${round}.bin`, size: bytes.length });
      assert.equal((await putPresigned(intent, bytes)).status, 200);

      const [onA, onB] = await Promise.all([complete(a, a.key, intent.id), complete(b, a.key, intent.id)]);
      assert.equal(onA.status, 200, JSON.stringify(onA.body));
      assert.equal(onB.status, 200, JSON.stringify(onB.body));
      assert.equal(onA.body.asset.id, onB.body.asset.id, 'both nodes answer with the same asset');

      const assets = dbQuery<{ id: string }>(a, 'select id from assets where sha256 = ?', sha256Hex(bytes));
      assert.deepEqual(
        assets.map((r) => r.id),
        [onA.body.asset.id],
      );
      const [upload] = dbQuery<{ status: string; asset_id: string }>(
        a,
        'select status, asset_id from uploads where id = ?',
        intent.id,
      );
      assert.deepEqual(upload, { status: 'completed', asset_id: onA.body.asset.id });
    }
  });

  test('a cancel on node B while node A reads the bytes to complete them: 410, never a 500', async () => {
    // The moment a hunt hit a few times in a hundred: A's completion has seen the object and is
    // about to hash it when B's cancel ends the upload and deletes the bytes. Taken here by
    // running B's cancel as A first reads the bytes (storage and both nodes are real).
    const bytes = randomBytes(2048);
    const intent = await declare(a, a.key, { name: 'cancelled-mid-read.bin', size: bytes.length });
    assert.equal((await putPresigned(intent, bytes)).status, 200);
    const recorder = a.wharf.core.uploads.recorder;
    const attest = recorder.attest;
    let cancelled: number | undefined;
    recorder.attest = async (...args) => {
      cancelled ??= (await api(b.url, a.key, 'DELETE', `/v1/uploads/${intent.id}`)).status;
      return attest.apply(recorder, args);
    };
    try {
      const done = await complete(a, a.key, intent.id);
      assert.equal(cancelled, 204, 'node B cancelled the upload');
      assert.equal(done.status, 410, JSON.stringify(done.body));
      assert.equal(done.body.error.code, 'UPLOAD_EXPIRED');
    } finally {
      recorder.attest = attest;
    }
    assert.equal(dbQuery(a, 'select id from assets where sha256 = ?', sha256Hex(bytes)).length, 0);
    assert.ok(!(await storedKeys(a)).some((k) => k.includes(intent.id)), 'no bytes left');
  });

  test('the same content sent through both nodes at once is stored once', async () => {
    for (let round = 0; round < 5; round++) {
      const bytes = randomBytes(64 * 1024);
      const name = `twice-${round}-${randomBytes(4).toString('hex')}.bin`;
      const [viaA, viaB] = await Promise.all([
        uploadRaw(a, a.key, name, bytes, { contentType: 'application/octet-stream' }),
        uploadRaw(b, a.key, name, bytes, { contentType: 'application/octet-stream' }),
      ]);
      assert.deepEqual(
        [viaA.status, viaB.status].sort(),
        [200, 201],
        `one created, one found existing: ${JSON.stringify([viaA.body, viaB.body])}`,
      );
      assert.equal(viaA.body.asset.id, viaB.body.asset.id);

      const assets = dbQuery<{ id: string; storage_key: string }>(
        a,
        'select id, storage_key from assets where sha256 = ?',
        sha256Hex(bytes),
      );
      assert.equal(assets.length, 1, 'one asset for the content');
      // Each request wrote its bytes under its own key; the one that lost the race removed its copy.
      const uploads = dbQuery<{ storage_key: string }>(
        a,
        'select storage_key from uploads where name = ?',
        name,
      );
      assert.equal(uploads.length, 2);
      const stored = new Set(await storedKeys(a));
      assert.deepEqual(
        uploads.map((u) => stored.has(u.storage_key)).sort(),
        [false, true],
        'exactly one of the two copies is kept',
      );
      assert.ok(stored.has(assets[0]!.storage_key), "the asset's bytes are stored");
    }
  });

  test('both nodes drain one queue: every job is claimed and run by exactly one of them', async () => {
    // Processing jobs for 30 new assets, then both nodes run jobs at the same time.
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await uploadRaw(a, a.key, `job-${i}.bin`, randomBytes(512), {
        contentType: 'application/octet-stream',
      });
      assert.equal(res.status, 201);
      ids.push(res.body.asset.id);
    }
    const [ranOnA, ranOnB] = await Promise.all([a.wharf.core.jobs.drain(), b.wharf.core.jobs.drain()]);
    const jobs = dbQuery<{ worker: string; attempts: number; status: string; payload: string }>(
      a,
      "select worker, attempts, status, payload from jobs where kind = 'process-asset'",
    );
    const mine = jobs.filter((j) => ids.includes(JSON.parse(j.payload).assetId));
    assert.equal(mine.length, 30);
    // Each job was claimed once (one attempt) and finished; together the nodes ran all of them.
    assert.deepEqual(
      [...new Set(mine.map((j) => `${j.status}/${j.attempts}`))],
      ['done/1'],
      JSON.stringify(mine),
    );
    assert.equal(ranOnA + ranOnB, jobs.length);
    const workers = new Set(mine.map((j) => j.worker));
    assert.ok(
      [...workers].every((w) => w === a.wharf.core.jobs.workerId || w === b.wharf.core.jobs.workerId),
    );
    for (const id of ids) {
      const asset = await api(b.url, a.key, 'GET', `/v1/assets/${id}`);
      assert.equal(asset.body.processing, 'done');
    }
  });
});

describe('two nodes delivering to one endpoint', { skip }, () => {
  let a: TestWharf;
  let b: TestWharf;
  const receivers: Receiver[] = [];
  before(async () => {
    // Both nodes run their own job workers (3 may deliver on each), as deployed.
    const env = {
      WHARF_JOB_INTERVAL_MS: '20',
      WHARF_WEBHOOK_ALLOW_PRIVATE: 'true',
      WHARF_WEBHOOK_TIMEOUT_MS: '60000',
      WHARF_WEBHOOK_CONCURRENCY: '2',
    };
    a = await startWharf({ env });
    b = await startWharf({ sharing: a, clock: a.clock, env });
  });
  after(async () => {
    for (const r of receivers) await r.close();
    await b?.close();
    await a?.close();
  });

  async function endpoint(key: string, answer: Receiver['answer']) {
    const r = await Receiver.start();
    receivers.push(r);
    r.answer = answer;
    const created = await api(a.url, key, 'POST', '/v1/webhooks', {
      url: r.url,
      event_types: ['asset.created'],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    r.secrets = [created.body.secret];
    return { receiver: r, id: created.body.webhook.id as string };
  }

  test('an endpoint that never answers gets WHARF_WEBHOOK_CONCURRENCY attempts across both nodes, no more', async () => {
    const noisy = await a.newAccount();
    const dead = await endpoint(noisy.key, () => 'hang');
    for (let i = 0; i < 6; i++) await createAsset(a, noisy.key, `noisy-${i}.bin`, randomBytes(100));
    await eventually(() => dead.receiver.open === 2, 'the hanging endpoint holds two attempts');

    // Both nodes have free workers: another endpoint's delivery goes through meanwhile.
    const quiet = await a.newAccount();
    const healthy = await endpoint(quiet.key, () => ({ status: 204 }));
    await createAsset(b, quiet.key, 'quiet.bin', randomBytes(100));
    await eventually(() => healthy.receiver.accepted.length === 1, 'the healthy endpoint gets its delivery');

    assert.equal(dead.receiver.requests.length, 2, 'two attempts in flight, whichever nodes sent them');
    const jobs = dbQuery<{ status: string }>(
      a,
      'select status from jobs where lane = ? order by status',
      dead.id,
    );
    assert.deepEqual(
      jobs.map((j) => j.status),
      ['queued', 'queued', 'queued', 'queued', 'running', 'running'],
    );
  });
});
