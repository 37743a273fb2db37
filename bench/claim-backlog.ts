// How long a job claim takes behind a webhook backlog whose lane is full: the claims an idle
// worker makes while an endpoint's deliveries wait for its lane (WHARF_WEBHOOK_CONCURRENCY
// running). Not part of `npm test`. SQLite by default; WHARF_DATABASE_URL=postgres://… (an
// empty database of your own) for PostgreSQL.
//
//   node --import tsx bench/claim-backlog.ts [backlog …]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../src/core/clock.js';
import { createIdSource } from '../src/core/ids.js';
import { connect } from '../src/db/connect.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { createSqlStore } from '../src/db/store/index.js';

const sizes = process.argv.slice(2).map(Number);
const backlogs = sizes.length > 0 ? sizes : [1000, 5000, 15000];
const CLAIMS = 50;
const dir = await mkdtemp(join(tmpdir(), 'wharf-claim-bench-'));
const url = process.env.WHARF_DATABASE_URL ?? `sqlite://${join(dir, 'bench.db')}`;
const clock = new ManualClock(Date.UTC(2026, 0, 1));
const ids = createIdSource(clock);
const connection = connect(url);
await migrateToLatest(connection.db);
const store = createSqlStore(connection, ids);
const options = { laneLimit: 2, skipKinds: [] };
try {
  // The endpoint's two deliveries in flight: its lane is full, its account busy.
  const running = Array.from({ length: 2 }, () => ({
    id: ids.id(),
    kind: 'deliver-webhook',
    payload: {},
    runAt: clock.now(),
    lane: 'endpoint-a',
    laneOwner: 'account-a',
  }));
  await store.enqueueJobs(running);
  for (const _ of running) await store.claimJob('worker-busy', clock.now(), clock.now() + 3_600_000, options);
  let queued = 0;
  for (const backlog of backlogs) {
    while (queued < backlog) {
      const batch = Array.from({ length: Math.min(500, backlog - queued) }, () => ({
        id: ids.id(),
        kind: 'deliver-webhook',
        payload: {},
        runAt: clock.now(),
        lane: 'endpoint-a',
        laneOwner: 'account-a',
      }));
      await store.enqueueJobs(batch);
      queued += batch.length;
    }
    clock.advance(1);
    const started = performance.now();
    for (let i = 0; i < CLAIMS; i++) {
      const job = await store.claimJob(`worker-${i}`, clock.now(), clock.now() + 60_000, options);
      if (job) throw new Error(`claimed ${job.id} from a full lane`);
    }
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `backlog ${String(backlog).padStart(6)}: ${CLAIMS} claims ${seconds.toFixed(3)} s, ${(CLAIMS / seconds).toFixed(0)} claims/s`,
    );
  }
} finally {
  await store.close();
  await rm(dir, { recursive: true, force: true });
}
