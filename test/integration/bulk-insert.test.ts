/**
 * insertRows (src/db/store/context.ts) binds each chunk's values to SQL text made once per
 * row shape instead of building every insert with Kysely's builder. On the deployment's own
 * database (SQLite file or PostgreSQL): rows it writes read back exactly as the builder's do,
 * across chunk boundaries, with awkward values, and rows of mixed shapes still go in right.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Insertable, Kysely } from 'kysely';
import { type Connection, connect } from '../../src/db/connect.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import type { Database, EventsTable } from '../../src/db/schema.js';
import { insertRows } from '../../src/db/store/context.js';
import { type Backing, createDatabase, deployment } from '../helpers/deployment.js';

let dir: string;
let backing: Backing | undefined;
let connection: Connection;
let db: Kysely<Database>;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wharf-bulk-insert-'));
  if (deployment === 'scaled') backing = await createDatabase();
  connection = connect(backing?.env.WHARF_DATABASE_URL ?? `sqlite://${join(dir, 'bulk.db')}`);
  db = connection.db;
  await migrateToLatest(db);
});

after(async () => {
  await db?.destroy();
  await backing?.release();
  await rm(dir, { recursive: true, force: true });
});

const AWKWARD = ["it's", 'a "quoted" name', '日本語 ✓ 🚀', '', '?', '$1', '\\', 'x'.repeat(5000), 'a\r\nb'];

function events(from: number, count: number, tag: string): Insertable<EventsTable>[] {
  return Array.from({ length: count }, (_, i) => ({
    seq: from + i,
    account_seq: from + i,
    id: `${tag}-${from + i}`,
    account_id: AWKWARD[i % AWKWARD.length]!,
    type: `t.${i % 7}`,
    data: JSON.stringify({ i, s: AWKWARD[(i + 3) % AWKWARD.length] }),
    created_at: 1_700_000_000_000 + i * 1_000_003,
  }));
}

async function read(from: number, to: number) {
  const rows = await db
    .selectFrom('events')
    .selectAll()
    .where('seq', '>=', from)
    .where('seq', '<', to)
    .orderBy('seq')
    .execute();
  return rows.map((r) => ({
    ...r,
    seq: Number(r.seq),
    account_seq: Number(r.account_seq),
    created_at: Number(r.created_at),
  }));
}

describe(`insertRows on the ${deployment} database`, () => {
  test('rows across chunk boundaries read back exactly as the builder writes them', async () => {
    const count = 257; // chunks of 100, 100 and 57: a reused text and a new one
    const fast = events(10_000, count, 'fast');
    const built = events(20_000, count, 'built');
    await db.transaction().execute((trx) => insertRows(trx, 'events', fast));
    // The same again through the text cache (every chunk shape now known).
    const again = events(30_000, count, 'again');
    await db.transaction().execute((trx) => insertRows(trx, 'events', again));
    for (let i = 0; i < built.length; i += 50) {
      await db
        .insertInto('events')
        .values(built.slice(i, i + 50))
        .execute();
    }
    // The builder's rows read back as given: the reference the fast path must match.
    assert.deepEqual(await read(20_000, 20_000 + count), built);
    assert.deepEqual(await read(10_000, 10_000 + count), fast);
    assert.deepEqual(await read(30_000, 30_000 + count), again);
  });

  test('rows whose columns differ in order or presence still go in right', async () => {
    const base = events(40_000, 3, 'mixed');
    const reordered = base.map(({ seq, account_seq, id, account_id, type, data, created_at }) => ({
      account_seq,
      created_at,
      data,
      type,
      account_id,
      id,
      seq,
    }));
    // First row in one order, the others in another: not one shape.
    const mixed = [base[0]!, reordered[1]!, reordered[2]!];
    await db.transaction().execute((trx) => insertRows(trx, 'events', mixed));
    assert.deepEqual(await read(40_000, 40_003), base);
  });

  test('a failing chunk fails the transaction and leaves nothing', async () => {
    const rows = events(50_000, 150, 'dup');
    rows[120] = { ...rows[120]!, seq: 50_005 }; // the same primary key twice, in the second chunk
    await assert.rejects(db.transaction().execute((trx) => insertRows(trx, 'events', rows)));
    assert.deepEqual(await read(50_000, 50_150), []);
  });
});
