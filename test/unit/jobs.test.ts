import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { sql } from 'kysely';
import { ManualClock } from '../../src/core/clock.js';
import { createIdSource } from '../../src/core/ids.js';
import {
  type JobHandler,
  JobRunner,
  type JobSettings,
  PermanentJobError,
  RetryJobError,
} from '../../src/core/jobs.js';
import type { Job } from '../../src/core/model.js';
import type { Store } from '../../src/core/ports.js';
import { NO_TELEMETRY, type Telemetry } from '../../src/core/telemetry.js';
import { connect } from '../../src/db/connect.js';
import { deployment } from '../helpers/deployment.js';
import { countingCalls, type TwoStores, twoStores } from '../helpers/two-stores.js';

// A real database opened through two connections, as two processes (or nodes) would: the
// claim has to hold across connections, not just within one. A SQLite file on embedded, a
// PostgreSQL database when the suite runs scaled. A fresh database for each test, since a
// runner claims due jobs of every kind.
let dir: string;
let first: Store;
let second: Store;
const clock = new ManualClock(Date.UTC(2026, 0, 1));
const ids = createIdSource(clock);
const settings: JobSettings = { leaseMs: 60_000, maxAttempts: 3 };
const kind = 'test-job';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wharf-jobs-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let stores: TwoStores;
/** The test's database, for a third connection of its own. */
let url: string;
beforeEach(async () => {
  stores = await twoStores(dir, ids);
  ({ first, second, url } = stores);
});
afterEach(async () => {
  await stores.close();
});

function runner(store: Store, handler: JobHandler, overrides: Partial<JobSettings> = {}): JobRunner {
  const r = new JobRunner(store, clock, ids, { ...settings, ...overrides });
  r.register(kind, handler);
  return r;
}

async function enqueue(count = 1, payload: Record<string, unknown> = {}): Promise<string[]> {
  const jobs = Array.from({ length: count }, (_, i) => ({
    id: ids.id(),
    kind,
    payload: { ...payload, n: i },
    runAt: clock.now(),
  }));
  await first.enqueueJobs(jobs);
  return jobs.map((j) => j.id);
}

async function job(id: string): Promise<Job> {
  const found = await first.getJob(id);
  assert.ok(found, `job ${id} exists`);
  return found;
}

/** The job's row as stored (its worker and lease), read through a connection of its own. */
async function dbJob(
  id: string,
): Promise<{ worker: string | null; lease_until: number | null; status: string }> {
  const reader = connect(url);
  try {
    const { rows } = await sql<{ worker: string | null; lease_until: number | null; status: string }>`
      select worker, lease_until, status from jobs where id = ${id}`.execute(reader.db);
    assert.ok(rows[0], `job ${id} exists`);
    return { ...rows[0], lease_until: rows[0].lease_until === null ? null : Number(rows[0].lease_until) };
  } finally {
    await reader.db.destroy();
  }
}

/** Lets other pending work (the other runner, the other connection) interleave. */
const yieldNow = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('JobRunner', () => {
  test('two runners on two connections run each of 50 jobs exactly once', async () => {
    const runs = new Map<string, number>();
    const byWorker = new Map<string, number>();
    const handler = (name: string): JobHandler => {
      return async (j) => {
        runs.set(j.id, (runs.get(j.id) ?? 0) + 1);
        byWorker.set(name, (byWorker.get(name) ?? 0) + 1);
        await yieldNow();
      };
    };
    const a = runner(first, handler('a'));
    const b = runner(second, handler('b'));
    assert.notEqual(a.workerId, b.workerId);
    const jobIds = await enqueue(50);

    const [ranA, ranB] = await Promise.all([a.drain(), b.drain()]);

    assert.equal(ranA + ranB, 50, `a ran ${ranA}, b ran ${ranB}`);
    assert.deepEqual([...runs.keys()].sort(), [...jobIds].sort());
    for (const [id, n] of runs) assert.equal(n, 1, `job ${id} ran ${n} times`);
    for (const id of jobIds) assert.equal((await job(id)).status, 'done');
    assert.equal(await a.runOne(), false);
    assert.equal(await b.runOne(), false);
  });

  test('a failing job is retried with growing backoff, then given up after maxAttempts', async () => {
    let calls = 0;
    const r = runner(first, async () => {
      calls += 1;
      throw new Error('storage is flapping');
    });
    const [id] = await enqueue();
    const start = clock.now();

    assert.equal(await r.runOne(), true);
    assert.equal(calls, 1);
    let state = await job(id!);
    assert.equal(state.status, 'queued');
    assert.equal(state.attempts, 1);
    const firstRetry = state.runAt;
    assert.ok(firstRetry > start, 'the retry is in the future');

    // Not due before its time, however often a runner asks.
    assert.equal(await r.runOne(), false);
    clock.set(firstRetry - 1);
    assert.equal(await r.runOne(), false);
    assert.equal(calls, 1);

    clock.set(firstRetry);
    assert.equal(await r.runOne(), true);
    assert.equal(calls, 2);
    state = await job(id!);
    assert.equal(state.status, 'queued');
    assert.equal(state.attempts, 2);
    assert.ok(state.runAt - clock.now() > firstRetry - start, 'the second wait is longer than the first');

    clock.set(state.runAt - 1);
    assert.equal(await r.runOne(), false);
    clock.set(state.runAt);
    assert.equal(await r.runOne(), true);
    assert.equal(calls, 3);
    state = await job(id!);
    assert.equal(state.status, 'failed');
    assert.equal(state.attempts, 3);

    // Given up for good: no later time makes it due again.
    clock.advance(365 * 24 * 3600_000);
    assert.equal(await r.runOne(), false);
    assert.equal(calls, 3);
  });

  test('a job that fails once and then succeeds ends done', async () => {
    let calls = 0;
    const r = runner(first, async () => {
      calls += 1;
      if (calls === 1) throw new Error('transient');
    });
    const [id] = await enqueue();
    assert.equal(await r.runOne(), true);
    clock.set((await job(id!)).runAt);
    assert.equal(await r.runOne(), true);
    const state = await job(id!);
    assert.equal(state.status, 'done');
    assert.equal(state.attempts, 2);
    clock.advance(3600_000);
    assert.equal(await r.runOne(), false);
    assert.equal(calls, 2);
  });

  test('PermanentJobError gives up at once', async () => {
    let calls = 0;
    const r = runner(first, async () => {
      calls += 1;
      throw new PermanentJobError('the asset is gone');
    });
    const [id] = await enqueue();
    assert.equal(await r.runOne(), true);
    const state = await job(id!);
    assert.equal(state.status, 'failed');
    assert.equal(state.attempts, 1);
    clock.advance(3600_000);
    assert.equal(await r.runOne(), false);
    assert.equal(calls, 1);
  });

  test('a job of a kind nobody handles fails at once instead of looping', async () => {
    const r = new JobRunner(first, clock, ids, settings);
    const [id] = await enqueue();
    assert.equal(await r.runOne(), true);
    assert.equal((await job(id!)).status, 'failed');
    clock.advance(3600_000);
    assert.equal(await r.runOne(), false);
  });

  test('a job whose worker crashed is taken over by another runner once the lease runs out', async () => {
    // Worker a claims the job and then hangs forever, as a crashed process would.
    let claimedByA!: () => void;
    const aClaimed = new Promise<void>((resolve) => {
      claimedByA = resolve;
    });
    let releaseA!: (err?: Error) => void;
    const aHangs = new Promise<void>((resolve, reject) => {
      releaseA = (err) => (err ? reject(err) : resolve());
    });
    const a = runner(first, async () => {
      claimedByA();
      await aHangs;
    });
    let runsByB = 0;
    const b = runner(second, async () => {
      runsByB += 1;
    });
    const [id] = await enqueue();

    const aRun = a.runOne();
    await aClaimed;
    assert.equal((await job(id!)).status, 'running');

    // Within the lease the job is a's: b finds nothing due.
    assert.equal(await b.runOne(), false);
    clock.advance(settings.leaseMs - 1);
    assert.equal(await b.runOne(), false);
    assert.equal(runsByB, 0);

    clock.advance(2);
    assert.equal(await b.runOne(), true);
    assert.equal(runsByB, 1);
    let state = await job(id!);
    assert.equal(state.status, 'done');
    assert.equal(state.attempts, 2);

    // The stale worker coming back (with a failure) does not undo b's work or requeue it.
    releaseA(new Error('woke up too late'));
    assert.equal(await aRun, true);
    state = await job(id!);
    assert.equal(state.status, 'done');
    clock.advance(3600_000);
    assert.equal(await b.runOne(), false);
    assert.equal(runsByB, 1);
  });

  /**
   * A job claimed by runner a (on `store`, renewing every 10 ms of real time, to the clock's now
   * plus a lease), whose handler runs until `finish`; runner b, on the other connection, counts
   * what it runs.
   */
  async function heldByA(store: Store) {
    let started!: () => void;
    const aStarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    let finish!: () => void;
    const aRuns = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const a = runner(
      store,
      async () => {
        started();
        await aRuns;
      },
      { renewEveryMs: 10 },
    );
    const ranByB = { count: 0 };
    const b = runner(second, async () => {
      ranByB.count += 1;
    });
    const [id] = await enqueue();
    const aRun = a.runOne();
    await aStarted;
    return { id: id!, aRun, finish, b, ranByB };
  }

  test('a job that runs longer than its lease keeps it while its runner lives: no other runner takes it over', async () => {
    // The renewals are counted, to see them stop with the run.
    const counted = countingCalls(first, 'renewJob');
    const renewals = counted.calls;
    const { id, aRun, finish, b, ranByB } = await heldByA(counted.store);
    // Three leases go by while a still runs, each time with a renewal after it.
    for (let i = 0; i < 3; i++) {
      clock.advance(settings.leaseMs + 1);
      const renewedTo = clock.now() + settings.leaseMs;
      const deadline = Date.now() + 5_000;
      while (Number((await dbJob(id)).lease_until) < renewedTo && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      assert.equal(await b.runOne(), false, `lease ${i + 1}: the job is still a's`);
    }
    finish();
    assert.equal(await aRun, true);
    const state = await job(id);
    assert.equal(state.status, 'done');
    assert.equal(state.attempts, 1);
    assert.equal(ranByB.count, 0);
    // Done, its lease is no longer renewed: the renewal stopped with the run.
    assert.ok(renewals() >= 3, `renewed ${renewals()} times`);
    const before = renewals();
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(renewals(), before, 'no renewal after the run');
  });

  test('a job whose handler never returns keeps its lease for 30 minutes at most', async () => {
    const { id, aRun, finish, b, ranByB } = await heldByA(first);
    // Past the cap, a's renewals stop: its last lease runs out and b takes the job over.
    clock.advance(30 * 60_000 + 1);
    await new Promise((resolve) => setTimeout(resolve, 60));
    const last = Number((await dbJob(id)).lease_until);
    clock.set(last + 1);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(Number((await dbJob(id)).lease_until), last, 'no renewal past the cap');
    assert.equal(await b.runOne(), true);
    assert.equal(ranByB.count, 1);
    finish();
    await aRun;
  });

  test('a renewal the database refuses is reported with its job, and the run goes on to its end', async () => {
    const refusal = new Error('database is locked');
    const failing: Store = { ...first, renewJob: async () => Promise.reject(refusal) };
    const reported: { lease: string; err: unknown; job: string | undefined }[] = [];
    const telemetry: Telemetry = {
      ...NO_TELEMETRY,
      leaseRenewalFailed: (lease, err, job) => reported.push({ lease, err, job: job?.id }),
    };
    let finish!: () => void;
    const running = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const a = new JobRunner(failing, clock, ids, { ...settings, renewEveryMs: 10 }, telemetry);
    a.register(kind, () => running);
    const [id] = await enqueue();
    const run = a.runOne();
    const deadline = Date.now() + 5_000;
    while (reported.length < 2 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 5));
    finish();
    assert.equal(await run, true);
    assert.ok(reported.length >= 2, `reported ${reported.length} failed renewals`);
    for (const r of reported) assert.deepEqual(r, { lease: 'job', err: refusal, job: id });
    assert.equal((await job(id!)).status, 'done');
  });

  test('a kind registered with its own retry policy is retried on that schedule, as often as it says', async () => {
    const delays = [10_000, 60_000, 3600_000];
    const other = 'other-job';
    let calls = 0;
    const r = runner(first, async () => {});
    r.register(
      other,
      async () => {
        calls += 1;
        throw new Error('receiver down');
      },
      { maxAttempts: 4, delayMs: (attempts) => delays[attempts - 1]! },
    );
    const id = ids.id();
    await first.enqueueJobs([{ id, kind: other, payload: {}, runAt: clock.now() }]);
    for (const delay of delays) {
      const before = clock.now();
      assert.equal(await r.runOne(), true);
      const state = await job(id);
      assert.equal(state.status, 'queued');
      assert.equal(state.runAt, before + delay);
      clock.set(state.runAt - 1);
      assert.equal(await r.runOne(), false);
      clock.set(state.runAt);
    }
    assert.equal(await r.runOne(), true);
    assert.equal((await job(id)).status, 'failed');
    assert.equal(calls, 4, 'maxAttempts of the kind, not of the runner (3)');
  });

  test('RetryJobError retries at the time the handler names', async () => {
    const r = runner(first, async () => {
      throw new RetryJobError('come back later', clock.now() + 7 * 3600_000);
    });
    const [id] = await enqueue();
    const start = clock.now();
    assert.equal(await r.runOne(), true);
    const state = await job(id!);
    assert.equal(state.status, 'queued');
    assert.equal(state.runAt, start + 7 * 3600_000);
  });
});

describe('lanes: how many jobs of one lane run at once', () => {
  /** Jobs in `lane` (none when null), due now, in the order they were made. */
  async function enqueueIn(lane: string | null, count: number): Promise<string[]> {
    const jobs = Array.from({ length: count }, () => ({
      id: ids.id(),
      kind,
      payload: {},
      runAt: clock.now(),
      lane: lane ?? undefined,
    }));
    await first.enqueueJobs(jobs);
    return jobs.map((j) => j.id);
  }

  /**
   * Claims on both connections, `atOnce` of them together, then one at a time until none is
   * left to claim: the ids claimed, each with its worker.
   */
  async function claimAll(laneLimit: number, atOnce: number): Promise<Map<string, string>> {
    const leaseUntil = clock.now() + settings.leaseMs;
    const claimed = new Map<string, string>();
    const stores = [first, second];
    const claim = async (i: number, worker: string) => {
      const j = await stores[i % 2]!.claimJob(worker, clock.now(), leaseUntil, { laneLimit });
      if (j) claimed.set(j.id, worker);
      return j;
    };
    await Promise.all(Array.from({ length: atOnce }, (_, i) => claim(i, `worker-${claimed.size}-${i}`)));
    // A claim that passed over a lane another was taking at that moment gets its turn here.
    for (let i = 0; await claim(i, `worker-late-${claimed.size}-${i}`); i++);
    return claimed;
  }

  for (const laneLimit of [1, 2, 3]) {
    test(`with a limit of ${laneLimit}, claims on two connections at once start exactly ${laneLimit} of a lane`, async () => {
      const lane = await enqueueIn('endpoint-a', 8);
      const other = await enqueueIn('endpoint-b', 8);
      const free = await enqueueIn(null, 3);
      const claimed = await claimAll(laneLimit, 8);
      // That many of each lane, and every job of no lane.
      assert.equal(lane.filter((id) => claimed.has(id)).length, laneLimit);
      assert.equal(other.filter((id) => claimed.has(id)).length, laneLimit);
      assert.deepEqual(
        free.filter((id) => claimed.has(id)),
        free,
      );
      assert.equal(claimed.size, 2 * laneLimit + 3);

      // One finishes: one more of the lane, and only one, may start.
      const done = lane.find((id) => claimed.has(id))!;
      await first.finishJob(done, claimed.get(done)!, clock.now());
      assert.equal((await job(done)).status, 'done');
      const next = [...(await claimAll(laneLimit, 4)).keys()];
      assert.equal(next.length, 1);
      assert.ok(lane.includes(next[0]!) && !claimed.has(next[0]!));
    });
  }

  test('at a limit of 1 a lane runs in order: a claim that finds the lane’s first job held by another passes over the lane', {
    skip:
      deployment !== 'scaled' &&
      'SQLite claims in one statement under its write lock: no claim holds a row while another looks',
  }, async () => {
    const lane = await enqueueIn('endpoint-a', 3);
    // Another claim's transaction holds the lane's first job for a moment (it selected it and is
    // about to pass over the lane, or to take it).
    const other = connect(url);
    try {
      await other.db.transaction().execute(async (trx) => {
        await sql`select id from jobs where id = ${lane[0]!} for update`.execute(trx);
        const meanwhile = await first.claimJob('worker-a', clock.now(), clock.now() + settings.leaseMs);
        assert.equal(meanwhile, undefined, `claimed ${meanwhile?.id} ahead of ${lane[0]}`);
      });
    } finally {
      await other.db.destroy();
    }
    const next = await first.claimJob('worker-a', clock.now(), clock.now() + settings.leaseMs);
    assert.equal(next?.id, lane[0]);
  });
});

describe('lane owners: an owner with nothing running is served first', () => {
  /** Jobs in `lane` of `owner`, due now, in the order they were made. */
  async function enqueueOf(owner: string, lane: string, count: number): Promise<string[]> {
    const jobs = Array.from({ length: count }, () => ({
      id: ids.id(),
      kind,
      payload: {},
      runAt: clock.now(),
      lane,
      laneOwner: owner,
    }));
    await first.enqueueJobs(jobs);
    return jobs.map((j) => j.id);
  }
  const claim = (store: Store, worker: string) =>
    store.claimJob(worker, clock.now(), clock.now() + settings.leaseMs, { laneLimit: 2 });

  test('a worker that frees up goes to another owner’s newer job, not to the busy owner’s backlog', async () => {
    // One account, two endpoints that hang: together more than the three workers below.
    const a1 = await enqueueOf('account-a', 'endpoint-a1', 4);
    const a2 = await enqueueOf('account-a', 'endpoint-a2', 4);
    const held = [];
    // Alone, the owner gets every worker (a preference, not a cap), its lanes two each.
    for (const [i, store] of [first, second, first].entries()) held.push(await claim(store, `worker-${i}`));
    assert.deepEqual(
      held.map((j) => j?.id),
      [a1[0], a1[1], a2[0]],
    );
    clock.advance(1000);
    const b = await enqueueOf('account-b', 'endpoint-b', 2);
    // One of the account's attempts ends: the next claim is the other account's, though the
    // busy one has older jobs due (and a lane with room).
    await first.failJob(held[0]!.id, 'worker-0', 'timed out', clock.now() + 5000, clock.now());
    assert.equal((await claim(second, 'worker-3'))?.id, b[0]);
    // Both owners have jobs running: the first due job again, whoever's.
    await first.failJob(held[1]!.id, 'worker-1', 'timed out', clock.now() + 5000, clock.now());
    assert.equal((await claim(first, 'worker-4'))?.id, a1[2]);
    // The other account's attempt ends: its next job goes before the busy one's.
    await first.finishJob(b[0]!, 'worker-3', clock.now());
    assert.equal((await claim(second, 'worker-5'))?.id, b[1]);
  });
});
