import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { LogEvent } from 'kysely';
import { connect } from '../../src/db/connect.js';
import { MIGRATIONS, migrateToLatest } from '../../src/db/migrate.js';
import { emptyDatabase } from '../helpers/deployment.js';

// Nodes of one version may start at the same time on a fresh database (docs/scaling.md). Before
// the migrator takes its lock, a start reads which migrations the database has had (to refuse
// one a newer Wharf migrated); on a fresh database that read fails, and the start goes on only
// if the table is still missing. A hunt saw a node die with `relation "wharf_migrations" does
// not exist`: the other node had created the table between the failed read and the check.
// Here the other node runs exactly there, on its own connection, from Kysely's error log
// (which Kysely awaits before the failure reaches the caller).

let dir: string;
let database: Awaited<ReturnType<typeof emptyDatabase>> | undefined;
let url: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wharf-migration-race-'));
  database = await emptyDatabase(dir);
  url = database.url;
});

after(async () => {
  await database?.release();
  await rm(dir, { recursive: true, force: true });
});

test('two nodes starting together on a fresh database: the one whose first read lost the race still starts', async () => {
  const other = connect(url);
  let raced = false;
  const log = async (event: LogEvent) => {
    if (event.level !== 'error' || raced || !/wharf_migrations/.test(event.query.sql)) return;
    raced = true;
    // The other node starts and migrates the whole database while this one looks.
    await migrateToLatest(other.db);
  };
  const racing = connect(url, { log });
  try {
    const applied = await migrateToLatest(racing.db);
    assert.ok(raced, 'the first read of wharf_migrations failed on the fresh database');
    assert.deepEqual(applied, [], 'the other node had run every migration');
    const rows = await racing.db
      .selectFrom('wharf_migrations' as never)
      .select('name' as never)
      .execute();
    assert.equal(rows.length, MIGRATIONS.length);
  } finally {
    await racing.db.destroy();
    await other.db.destroy();
  }
});
