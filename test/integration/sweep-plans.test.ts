/**
 * What the periodic sweep and the job runner ask the database, every minute and every second,
 * must stay cheap however large the tables grow: each query finds its rows through an index,
 * never by walking a table that only grows (events, uploads, deliveries, jobs). Pruning events
 * once ordered by seq, and SQLite answered it by walking the whole seq index: 0.8 s at 1.2 M
 * events with nothing to prune, on the writer, so every write of the server waited.
 *
 * The SQL is what the store sends (read from Kysely's query log) and the plan is the
 * database's own: SQLite's EXPLAIN QUERY PLAN (its planner is rule-based here: Wharf never
 * runs ANALYZE), PostgreSQL's EXPLAIN over enough rows, analyzed, for its planner to choose.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CompiledQuery, type Insertable } from 'kysely';
import { createIdSource } from '../../src/core/ids.js';
import type { Store } from '../../src/core/ports.js';
import { type Connection, connect } from '../../src/db/connect.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import type { EventsTable } from '../../src/db/schema.js';
import { insertRows } from '../../src/db/store/context.js';
import { createSqlStore } from '../../src/db/store/index.js';
import { type Backing, createDatabase, deployment } from '../helpers/deployment.js';

let dir: string;
let backing: Backing | undefined;
let connection: Connection;
let store: Store;
let sent: CompiledQuery[] = [];

const NOW = 1_800_000_000_000;
const DAY = 86_400_000;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wharf-sweep-plans-'));
  if (deployment === 'scaled') backing = await createDatabase();
  connection = connect(backing?.env.WHARF_DATABASE_URL ?? `sqlite://${join(dir, 'plans.db')}`, {
    log: (event) => {
      if (event.level === 'query') sent.push(event.query);
    },
  });
  await migrateToLatest(connection.db);
  store = createSqlStore(connection, createIdSource({ now: () => NOW }));
});

after(async () => {
  await connection?.db.destroy();
  await backing?.release();
  await rm(dir, { recursive: true, force: true });
});

/** The statements `run` sent, its writes and reads alike (not BEGIN/COMMIT). */
async function statementsOf(run: () => Promise<unknown>): Promise<CompiledQuery[]> {
  sent = [];
  await run();
  return sent.filter((q) => /^\s*(select|delete|update|insert|with)\b/i.test(q.sql));
}

/** SQLite's plan of a statement, one line per step ("SEARCH e USING INDEX …", "SCAN …"). */
async function sqlitePlan(query: CompiledQuery): Promise<string[]> {
  const result = await connection.db.executeQuery<{ detail: string }>(
    CompiledQuery.raw(`explain query plan ${query.sql}`, [...query.parameters]),
  );
  return result.rows.map((row) => row.detail);
}

/** PostgreSQL's plan of a statement, as its text lines. */
async function postgresPlan(query: CompiledQuery): Promise<string[]> {
  const result = await connection.db.executeQuery<{ 'QUERY PLAN': string }>(
    CompiledQuery.raw(`explain ${query.sql}`, [...query.parameters]),
  );
  return result.rows.map((row) => row['QUERY PLAN']);
}

// Tables that grow with use and are never emptied by a sweep in full.
const GROWING = /^(SCAN|SEARCH) (events|uploads|webhook_deliveries|webhook_attempts|jobs|assets|e|d)\b/;

/**
 * Walking a partial index is not walking its table: it holds only the rows of its condition
 * (pending uploads, say), which are few whatever the table's size (migration 009).
 */
async function partialIndexes(): Promise<Set<string>> {
  const result = await connection.db.executeQuery<{ name: string }>(
    CompiledQuery.raw(`select name from sqlite_master where type = 'index' and sql like '% where %'`),
  );
  return new Set(result.rows.map((row) => row.name));
}

describe('the queries the sweep and the job runner send', () => {
  const periodic: [string, () => Promise<unknown>][] = [
    ['pruneEvents', () => store.pruneEvents(NOW - 30 * DAY, 1000)],
    ['pruneDeliveries', () => store.pruneDeliveries(NOW - 30 * DAY, 1000)],
    ['pruneJobs', () => store.pruneJobs(NOW - 30 * DAY, 1000)],
    ['listStaleUploads', () => store.listStaleUploads(NOW - 3_600_000, 200)],
    // Direct uploads whose lease ran out, with the rest (see DirectUploadLeases).
    ['listStaleUploads (leases)', () => store.listStaleUploads(NOW - 3_600_000, 200, NOW)],
    ['renewUploads', () => store.renewUploads(['upload-1', 'upload-2'], NOW + 300_000)],
    ['listAutoCompletable', () => store.listAutoCompletable(500)],
    ['claimJob', () => store.claimJob('worker-1', NOW, NOW + 60_000)],
    [
      'claimJob (no deliveries)',
      () => store.claimJob('worker-1', NOW, NOW + 60_000, { skipKinds: ['deliver-webhook'] }),
    ],
    ['claimJob (lanes of 4)', () => store.claimJob('worker-1', NOW, NOW + 60_000, { laneLimit: 4 })],
    ['countJobs', () => store.countJobs(NOW)],
  ];

  for (const [name, run] of periodic) {
    test(`${name}: every table that grows is searched through an index, never scanned`, {
      skip: deployment === 'scaled' && 'rule-based plans are SQLite’s; PostgreSQL is checked on events below',
    }, async () => {
      const partial = await partialIndexes();
      const statements = await statementsOf(run);
      assert.ok(statements.length > 0, `${name} sent no statement`);
      for (const statement of statements) {
        const plan = await sqlitePlan(statement);
        const scans = plan.filter(
          (step) =>
            step.startsWith('SCAN ') &&
            GROWING.test(step) &&
            !partial.has(/USING (?:COVERING )?INDEX (\w+)/.exec(step)?.[1] ?? ''),
        );
        assert.deepEqual(scans, [], `${name} scans a growing table:\n${statement.sql}\n${plan.join('\n')}`);
        // The plan names an index for each growing table it reads (a SEARCH by rowid would too).
        for (const step of plan.filter((s) => GROWING.test(s))) {
          assert.match(step, /USING (COVERING |INTEGER PRIMARY KEY|PRIMARY KEY|INDEX)|MULTI-INDEX/, step);
        }
      }
    });
  }
});

describe('pruning events on a large table', () => {
  before(async () => {
    // Recent events only: nothing is old enough to prune, the case that used to walk them all.
    const rows: Insertable<EventsTable>[] = Array.from({ length: 20_000 }, (_, i) => ({
      seq: i + 1,
      account_seq: Math.floor(i / 7) + 1,
      id: `plan-event-${i + 1}`,
      account_id: `account-${i % 7}`,
      type: 'upload.created',
      data: '{}',
      created_at: NOW - DAY + i * 1000,
    }));
    await connection.db.transaction().execute((trx) => insertRows(trx, 'events', rows));
    if (deployment === 'scaled') await connection.db.executeQuery(CompiledQuery.raw('analyze events'));
  });

  test('finds old events by their time, through events_created_at', async () => {
    const [statement] = await statementsOf(() => store.pruneEvents(NOW - 30 * DAY, 1000));
    assert.ok(statement);
    const plan = deployment === 'scaled' ? await postgresPlan(statement) : await sqlitePlan(statement);
    const text = plan.join('\n');
    assert.match(text, /events_created_at/, text);
    assert.doesNotMatch(text, /Seq Scan on events|SCAN e\b/, text);
    // And it prunes nothing that is not old enough.
    assert.equal(await store.pruneEvents(NOW - 30 * DAY, 1000), 0);
    assert.equal(await store.pruneEvents(NOW - DAY + 5_500, 1000), 6);
  });
});

describe('claiming behind a backlog whose lane is full', () => {
  const BACKLOG = 5_000;
  const at = NOW + DAY;
  const delivery = (n: number, lane: string, owner: string) => ({
    id: `plan-job-${String(n).padStart(6, '0')}`,
    kind: 'deliver-webhook',
    payload: {},
    runAt: at - BACKLOG + n,
    lane,
    laneOwner: owner,
  });
  let behind: string[] = [];

  before(async () => {
    // An endpoint's lane full (two deliveries in flight, its account busy) and its backlog due,
    // then a delivery to another account's endpoint and a job of no lane, both due after it.
    await store.enqueueJobs([delivery(0, 'endpoint-a', 'account-a'), delivery(1, 'endpoint-a', 'account-a')]);
    for (let i = 0; i < 2; i++) await store.claimJob(`busy-${i}`, at, at + DAY, { laneLimit: 2 });
    for (let n = 2; n < BACKLOG; n += 500) {
      const batch = Array.from({ length: Math.min(500, BACKLOG - n) }, (_, i) =>
        delivery(n + i, 'endpoint-a', 'account-a'),
      );
      await store.enqueueJobs(batch);
    }
    const other = delivery(BACKLOG, 'endpoint-b', 'account-b');
    const free = { id: 'plan-job-free', kind: 'test-job', payload: {}, runAt: at + 1 };
    await store.enqueueJobs([other, free]);
    behind = [other.id, free.id];
    if (deployment === 'scaled') await connection.db.executeQuery(CompiledQuery.raw('analyze jobs'));
  });

  test('a claim reads each lane’s first due job, not the full lane’s backlog', async () => {
    const claim = () => store.claimJob('worker-1', at + 2, at + 60_000, { laneLimit: 2 });
    let first: Awaited<ReturnType<typeof claim>>;
    const statements = await statementsOf(async () => {
      first = await claim();
    });
    if (deployment === 'scaled') {
      // The rows each step of the plan handled, counted by PostgreSQL running it (a claim's
      // select locks its row, as the claim did; nothing else changes).
      for (const statement of statements.filter((s) => /^\s*select/i.test(s.sql))) {
        const result = await connection.db.executeQuery<{ 'QUERY PLAN': string }>(
          CompiledQuery.raw(`explain analyze ${statement.sql}`, [...statement.parameters]),
        );
        const plan = result.rows.map((row) => row['QUERY PLAN']).join('\n');
        const handled = [...plan.matchAll(/rows=(\d+) loops=(\d+)|Rows Removed by Filter: (\d+)/g)].map(
          (m) => (m[3] === undefined ? Number(m[1]) * Number(m[2]) : Number(m[3])),
        );
        assert.ok(Math.max(...handled) < 100, `${statement.sql}\n${plan}`);
      }
    } else {
      // The candidates are read by id, from a few steps of jobs_lane_queued; jobs_claim, in due
      // order, would pass over every job of the full lane.
      for (const statement of statements) {
        const plan = await sqlitePlan(statement);
        const text = `${statement.sql}\n${plan.join('\n')}`;
        assert.match(plan.join('\n'), /jobs_lane_queued/, text);
        for (const step of plan.filter((s) => /^(SCAN|SEARCH) c\b/.test(s)))
          assert.match(step, /\(id=\?\)/, text);
        assert.ok(!plan.some((s) => /jobs_claim \(status=\? AND run_at/.test(s)), text);
      }
    }
    // And the claims are the ones due order and owners give: the other account's delivery,
    // then the job of no lane; the full lane's next job waits.
    const [second, third] = [await claim(), await claim()];
    assert.deepEqual([first?.id, second?.id, third?.id], [...behind, undefined]);
  });
});
