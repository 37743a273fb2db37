import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { ManualClock } from '../../src/core/clock.js';
import { isWharfError } from '../../src/core/errors.js';
import { createIdSource, newIdOrder } from '../../src/core/ids.js';
import type { Upload } from '../../src/core/model.js';
import type { Store } from '../../src/core/ports.js';
import type { DatabaseThreadEvent } from '../../src/core/telemetry.js';
import { connect } from '../../src/db/connect.js';
import { MIGRATIONS } from '../../src/db/migrate.js';
import { SchemaAhead } from '../../src/db/schema-ahead.js';
import { isUniqueViolation } from '../../src/db/store/context.js';
import { openStoreThread, READ_METHODS, storeThreadWorker } from '../../src/db/store-thread.js';
import { eventually } from '../helpers/assets.js';

// The embedded deployment's store on its own thread, over a real SQLite file: what crosses
// between the threads (values, failures, the caller's time) must be what the store gave.
let dir: string;
let store: Store;
const clock = new ManualClock(Date.UTC(2026, 5, 1, 12, 0, 0));
// This thread's ids share their order with the store thread's, as openCore has it.
const idOrder = newIdOrder();
const ids = createIdSource(clock, idOrder);
const limits = { maxFileSize: 1 << 30, maxOpenUploads: 10_000 };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wharf-store-thread-'));
  ({ store } = await openStoreThread(`sqlite://${join(dir, 'wharf.db')}`, clock, idOrder));
  await store.ensureAccount(account('acme'));
});
after(async () => {
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

function account(id: string) {
  return {
    id,
    name: id,
    maxFileSize: null,
    storageQuota: null,
    disabled: false,
    stripGps: false,
    createdAt: clock.now(),
  };
}

function upload(id: string, accountId = 'acme'): Upload {
  return {
    id,
    accountId,
    keyId: 'key_1',
    tokenId: null,
    kind: 'presigned',
    name: 'a.bin',
    contentType: 'application/octet-stream',
    size: 10,
    sha256: null,
    md5: null,
    storageKey: `${accountId}/${id}.bin`,
    status: 'pending',
    seq: null,
    externalId: null,
    intent: {},
    multipartId: null,
    assetId: null,
    deduplicated: false,
    reserved: { quota: 0, token: 0 },
    createdAt: clock.now(),
    expiresAt: clock.now() + 3600_000,
    completedAt: null,
    ending: null,
  };
}

/** The time a version-7 UUID carries, ms. */
function uuidTime(id: string): number {
  return Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16);
}

describe('the SQLite store on its own thread', () => {
  test('its methods are the store’s, and their answers come back as the store gave them', async () => {
    assert.equal(typeof store.insertUploads, 'function');
    assert.equal((store as unknown as Record<string, unknown>).noSuchMethod, undefined);
    assert.deepEqual(await store.getAccount('acme'), account('acme'));
    assert.equal(await store.getAccount('nobody'), undefined);
    assert.equal(await store.settingOrInit('colour', 'blue'), 'blue');
    assert.equal(await store.settingOrInit('colour', 'red'), 'blue');
  });

  test('reads run here over a read-only connection, and see every write that was answered', async () => {
    const methods = new Set(Object.keys(store));
    for (const name of READ_METHODS) assert.ok(methods.has(name), `${name} is not a store method`);
    assert.ok(!READ_METHODS.has('ping'), 'readiness is the writer thread’s');
    for (let i = 0; i < 50; i++) {
      await store.settingOrInit(`written-${i}`, `v${i}`);
      assert.equal(await store.getSetting(`written-${i}`), `v${i}`);
    }
    // What keeps a wrong entry from going unnoticed: that connection cannot write.
    const reader = connect(`sqlite://${join(dir, 'wharf.db')}`, { readOnly: true });
    try {
      await assert.rejects(
        reader.db.insertInto('settings').values({ name: 'sneaky', value: 'x' }).execute(),
        (err: unknown) => (err as { code?: unknown }).code === 'SQLITE_READONLY',
      );
    } finally {
      await reader.db.destroy();
    }
  });

  test('many calls at once each get their own answer', async () => {
    const names = Array.from({ length: 300 }, (_, i) => `setting-${i}`);
    await Promise.all(names.map((name, i) => store.settingOrInit(name, `value-${i}`)));
    const values = await Promise.all(names.map((name) => store.getSetting(name)));
    assert.deepEqual(
      values,
      names.map((_, i) => `value-${i}`),
    );
  });

  test('a WharfError crosses with its code, status and details', async () => {
    await assert.rejects(
      store.insertUploads(
        [
          {
            upload: upload('0190a000-0000-7000-8000-000000000001', 'nobody'),
            reserve: { quota: null, token: null },
          },
        ],
        limits,
      ),
      (err: unknown) => {
        assert.ok(isWharfError(err, 'NOT_FOUND'), String(err));
        assert.equal(err.status, 404);
        return true;
      },
    );
    await store.updateAccount('acme', { storageQuota: 5 }, Date.now());
    try {
      await assert.rejects(
        store.insertUploads(
          [{ upload: upload('0190a000-0000-7000-8000-000000000002'), reserve: { quota: 10, token: null } }],
          limits,
        ),
        (err: unknown) => {
          assert.ok(isWharfError(err, 'QUOTA_EXCEEDED'), String(err));
          assert.equal(err.status, 403);
          assert.equal(typeof err.details?.quota, 'number');
          return true;
        },
      );
    } finally {
      await store.updateAccount('acme', { storageQuota: null }, Date.now());
    }
  });

  test('a driver error keeps its code: a unique violation is still told by it', async () => {
    const key = {
      id: 'key_dup',
      accountId: 'acme',
      name: 'ci',
      scopes: ['admin' as const],
      namePrefix: null,
      namespace: null,
      prefix: 'wharf_dup',
      createdAt: clock.now(),
      lastUsedAt: null,
      revokedAt: null,
    };
    await store.insertKey(key, 'a'.repeat(64));
    await assert.rejects(store.insertKey(key, 'a'.repeat(64)), (err: unknown) => {
      assert.ok(!isWharfError(err), String(err));
      assert.match(String((err as { code?: unknown }).code), /^SQLITE_CONSTRAINT/);
      assert.ok(isUniqueViolation(err));
      // The log of a 500 shows where it failed: on the thread, in the store.
      assert.match(String((err as Error).stack), /store\/keys\.ts[\s\S]*\(on the SQLite thread\)$/);
      return true;
    });
  });

  test('recording uploads answers each one’s seq and reservation, in order', async () => {
    const items = ['0190a000-0000-7000-8000-000000000010', '0190a000-0000-7000-8000-000000000011'].map(
      (id, i) => ({ upload: upload(id), reserve: { quota: 100 + i, token: null } }),
    );
    const recorded = await store.insertUploads(items, limits);
    assert.equal(recorded.length, 2);
    assert.ok(recorded[0]!.seq > 0);
    assert.equal(recorded[1]!.seq, recorded[0]!.seq + 1);
    assert.deepEqual(
      recorded.map((r) => r.reserved),
      [
        { quota: 100, token: 0 },
        { quota: 101, token: 0 },
      ],
    );
    // What the caller passed stays as it was: the answer is the only way back.
    assert.equal(items[0]!.upload.seq, null);
  });

  test('ids the store makes carry the caller’s clock', async () => {
    clock.set(Date.UTC(2031, 2, 3, 4, 5, 6));
    const before = await store.listEvents('acme', { limit: 1000 });
    await store.insertUploads(
      [{ upload: upload('0190a000-0000-7000-8000-000000000004'), reserve: { quota: null, token: null } }],
      limits,
    );
    const events = (await store.listEvents('acme', { limit: 1000 })).slice(before.length);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.type, 'upload.created');
    assert.equal(uuidTime(events[0]!.id), Date.UTC(2031, 2, 3, 4, 5, 6));
  });

  test('ids made here and on the store thread sort in the order they were made', async () => {
    // The same millisecond throughout: only the shared counter orders them.
    clock.set(Date.UTC(2031, 2, 3, 4, 5, 7));
    let n = 0;
    for (let round = 0; round < 20; round++) {
      const before = ids.id();
      await store.insertUploads(
        [
          {
            upload: upload(`0190a000-0000-7000-8000-0000000001${String(n++).padStart(2, '0')}`),
            reserve: { quota: null, token: null },
          },
        ],
        limits,
      );
      const made = (await store.listEvents('acme', { limit: 10_000 })).at(-1)!.id;
      const after = ids.id();
      assert.ok(before < made && made < after, `${before} < ${made} < ${after}`);
    }
  });

  test('after close, a call is refused as the database being unavailable', async () => {
    const { store: other } = await openStoreThread(`sqlite://${join(dir, 'other.db')}`, clock);
    await other.close();
    await assert.rejects(other.getSetting('x'), (err: unknown) => isWharfError(err, 'SERVICE_UNAVAILABLE'));
    await other.close();
  });

  test('its opening says which migrations it ran: every one on a new file, none on the next', async () => {
    const url = `sqlite://${join(dir, 'migrated.db')}`;
    const first = await openStoreThread(url, clock);
    await first.store.close();
    assert.deepEqual(first.migrated.applied, MIGRATIONS);
    assert.ok(first.migrated.seconds >= 0);
    const next = await openStoreThread(url, clock);
    await next.store.close();
    assert.deepEqual(next.migrated.applied, []);
  });

  test('a database that cannot be opened fails the start, with the driver’s reason', async () => {
    await assert.rejects(openStoreThread(`sqlite://${dir}`, clock), (err: unknown) => {
      assert.match(String((err as { code?: unknown }).code), /^SQLITE_CANTOPEN/);
      return true;
    });
  });

  test('a database a newer Wharf migrated fails the start as SchemaAhead, naming what this version does not know', async () => {
    const url = `sqlite://${join(dir, 'ahead.db')}`;
    await (await openStoreThread(url, clock)).store.close();
    const { db } = connect(url);
    try {
      await sql`insert into wharf_migrations (name, timestamp) values ('999_from_a_later_wharf', '2099-01-01T00:00:00.000Z')`.execute(
        db,
      );
    } finally {
      await db.destroy();
    }
    // Its class, not only its words: the start names the setting the operator used (main.ts).
    await assert.rejects(openStoreThread(url, clock), (err: unknown) => {
      assert.ok(err instanceof SchemaAhead, String(err));
      assert.deepEqual(err.unknown, ['999_from_a_later_wharf']);
      return true;
    });
  });

  test('an idle store does not keep the process alive', () => {
    const file = join(dir, 'idle.mts');
    const script = `
      import { openStoreThread } from ${JSON.stringify(new URL('../../src/db/store-thread.ts', import.meta.url).href)};
      const { store } = await openStoreThread(${JSON.stringify(`sqlite://${join(dir, 'idle.db')}`)}, { now: () => Date.now() });
      console.log(await store.settingOrInit('a', 'b'));
    `;
    writeFileSync(file, script);
    const run = spawnSync(process.execPath, ['--import', 'tsx', file], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(run.signal, null, 'the process had to be killed: the idle thread kept it alive');
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout.trim(), 'b');
  });
});

describe('when the SQLite thread dies', () => {
  const unavailable = (err: unknown) => isWharfError(err, 'SERVICE_UNAVAILABLE');

  /** A store on a file of its own, and what it reported about its thread. */
  async function openWatched(name: string) {
    const events: DatabaseThreadEvent[] = [];
    const file = join(dir, `${name}.db`);
    const { store: watched } = await openStoreThread(`sqlite://${file}`, clock, newIdOrder(), (event) =>
      events.push(event),
    );
    await watched.ensureAccount(account('acme'));
    return { store: watched, events, file };
  }

  /** What a bug does: an error nothing on the thread catches (its handler reads a batch's fields). */
  function crash(s: Store): void {
    const worker = storeThreadWorker(s);
    assert.ok(worker, 'no thread serves the store');
    worker.postMessage(null);
  }

  const record = (s: Store, id: string) =>
    s.insertUploads([{ upload: upload(id), reserve: { quota: null, token: null } }], limits);

  test('a new thread takes over the same file; what the dead one had not answered gets 503', async () => {
    const { store: s, events } = await openWatched('dies');
    try {
      const [first] = await record(s, '0190b000-0000-7000-8000-000000000001');
      const dead = storeThreadWorker(s);
      // Queued behind the crash in the thread's inbox: it is never run.
      const unanswered = record(s, '0190b000-0000-7000-8000-000000000002');
      crash(s);
      await assert.rejects(unanswered, unavailable);
      assert.deepEqual(
        events.map((e) => e.kind),
        ['died'],
      );
      assert.match(String((events[0] as { cause: unknown }).cause), /TypeError/);
      // Until a new thread is ready, every write and the readiness check are refused at once.
      await assert.rejects(record(s, '0190b000-0000-7000-8000-000000000003'), unavailable);
      await assert.rejects(s.ping(), unavailable);
      // Reads go on over the event loop's connection.
      assert.deepEqual(await s.getAccount('acme'), account('acme'));

      await eventually(() => events.some((e) => e.kind === 'restarted'), 'a new thread serves');
      const back = events.at(-1) as Extract<DatabaseThreadEvent, { kind: 'restarted' }>;
      assert.ok(back.downSeconds > 0);
      assert.ok(storeThreadWorker(s) && storeThreadWorker(s) !== dead);
      await s.ping();
      // The same database: the refused uploads took no number, the next one follows the first.
      const [next] = await record(s, '0190b000-0000-7000-8000-000000000004');
      assert.equal(next!.seq, first!.seq + 1);
      assert.equal(await s.getUpload('0190b000-0000-7000-8000-000000000002'), undefined);
      assert.equal((await s.getUpload('0190b000-0000-7000-8000-000000000004'))?.status, 'pending');
    } finally {
      await s.close();
    }
  });

  test('a new thread never creates the file: it retries, backing off, until the file is back', async () => {
    const { store: s, events, file } = await openWatched('moved');
    try {
      await record(s, '0190b000-0000-7000-8000-000000000011');
      await rename(file, `${file}.away`);
      crash(s);
      await eventually(() => events.some((e) => e.kind === 'restart_failed'), 'a failed restart');
      const failed = events.find((e) => e.kind === 'restart_failed') as Extract<
        DatabaseThreadEvent,
        { kind: 'restart_failed' }
      >;
      assert.match(String((failed.cause as { code?: unknown }).code), /^SQLITE_CANTOPEN/);
      assert.ok(failed.retryInSeconds >= 0.25, `retry in ${failed.retryInSeconds} s`);
      assert.equal(existsSync(file), false, 'an empty database was created in place of the moved one');
      await assert.rejects(record(s, '0190b000-0000-7000-8000-000000000012'), unavailable);

      await rename(`${file}.away`, file);
      await eventually(
        () => events.at(-1)?.kind === 'restarted',
        'a new thread serves once the file is back',
      );
      await record(s, '0190b000-0000-7000-8000-000000000013');
      assert.equal((await s.getUpload('0190b000-0000-7000-8000-000000000011'))?.status, 'pending');
      assert.equal((await s.getUpload('0190b000-0000-7000-8000-000000000013'))?.status, 'pending');
    } finally {
      await s.close();
    }
  });

  test('closing while a new thread is due starts none, and refuses every call after', async () => {
    const { store: s, events } = await openWatched('closed-while-down');
    crash(s);
    await eventually(() => events.some((e) => e.kind === 'died'), 'the thread died');
    await s.close();
    await assert.rejects(s.getSetting('x'), unavailable);
    await assert.rejects(record(s, '0190b000-0000-7000-8000-000000000021'), unavailable);
    // Past the first restart's wait (0.25 s): no thread was started.
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.deepEqual(
      events.map((e) => e.kind),
      ['died'],
    );
    assert.equal(storeThreadWorker(s), undefined);
  });
});
