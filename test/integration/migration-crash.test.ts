import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { connect } from '../../src/db/connect.js';
import { migrate, migrateToLatest } from '../../src/db/migrate.js';
import { emptyDatabase } from '../helpers/deployment.js';

// A migration that stops part-way (its process killed while it rewrites a large table, or a
// statement failing) leaves nothing of itself behind: the pending migrations run in one
// transaction on both databases, so the next start runs them again from the start. On SQLite
// each statement used to commit on its own, and a second run of 012_account_numbers failed on
// its first (`duplicate column name: account_seq`) at every start after.

let dir: string;
let database: Awaited<ReturnType<typeof emptyDatabase>> | undefined;
let url: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wharf-migration-crash-'));
  database = await emptyDatabase(dir);
  url = database.url;
});

after(async () => {
  await database?.release();
  await rm(dir, { recursive: true, force: true });
});

async function withDb<T>(work: (db: ReturnType<typeof connect>['db']) => Promise<T>): Promise<T> {
  const { db } = connect(url);
  try {
    return await work(db);
  } finally {
    await db.destroy();
  }
}

/** The columns of `events` (either database), to see whether 012's first change stayed. */
async function eventColumns(): Promise<string[]> {
  return withDb(async (db) => {
    const tables = await db.introspection.getTables();
    return tables.find((t) => t.name === 'events')!.columns.map((c) => c.name);
  });
}

test('a migration that fails part-way leaves no statement of it committed, and the next start completes it', async () => {
  await withDb(async (db) => {
    await migrate(db, '011_job_lanes');
    // 012 adds events.account_seq, drops one index, then creates events_account_cursor: an
    // index of that name already there fails its last statement, after the others ran.
    await sql`create index events_account_cursor on events (account_id)`.execute(db);
    await assert.rejects(migrateToLatest(db), /012_account_numbers/);
  });
  assert.ok(!(await eventColumns()).includes('account_seq'), 'the column 012 added first is gone');

  await withDb(async (db) => {
    await sql`drop index events_account_cursor`.execute(db);
    await migrateToLatest(db);
    const done = await sql<{ name: string }>`select name from wharf_migrations order by name`.execute(db);
    assert.ok(
      done.rows.some((r) => r.name === '012_account_numbers'),
      JSON.stringify(done.rows),
    );
  });
  assert.ok((await eventColumns()).includes('account_seq'));
});
