import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Kysely } from 'kysely';
import sharp from 'sharp';
import { connect } from '../../src/db/connect.js';
import { MIGRATIONS, migrate } from '../../src/db/migrate.js';
import { complete, uploadRaw } from '../helpers/assets.js';
import { type Backing, createDatabase, deployment, putStrayObject } from '../helpers/deployment.js';
import { api, md5Hex, sha256Hex } from '../helpers/http.js';
import { INFO, LogCollector, type LogLine } from '../helpers/observe.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// A database written by the Wharf before scoped keys (migrations up to 003), with keys,
// assets and a pending upload in it, taken over by this one: old keys keep working as they
// did, and the new counters start from the data that was there.

const ADMIN_SECRET = `wharf_${randomBytes(32).toString('base64url')}`;
const MEMBER_SECRET = `wharf_${randomBytes(32).toString('base64url')}`;
const ADMIN_ID = randomUUID();
const MEMBER_ID = randomUUID();
const PENDING_ID = randomUUID();
const OLD_ASSET = randomUUID();
const hash = (secret: string) => createHash('sha256').update(secret).digest('hex');

let dir: string;
let database: Backing | undefined;
let url: string;
let w: TestWharf;

// biome-ignore lint/suspicious/noExplicitAny: rows of an older schema
async function withDb<T>(work: (db: Kysely<any>) => Promise<T>, at = url): Promise<T> {
  const { db } = connect(at);
  try {
    return await work(db);
  } finally {
    await db.destroy();
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wharf-migration-'));
  if (deployment === 'scaled') {
    database = await createDatabase();
    url = database.env.WHARF_DATABASE_URL!;
  } else {
    url = `sqlite://${join(dir, 'old.db')}`;
  }
  const now = Date.now();
  await withDb(async (db) => {
    await migrate(db, '003_resumable_uploads');
    await db
      .insertInto('accounts')
      .values([
        {
          id: 'default',
          name: 'Default',
          max_file_size: null,
          storage_quota: null,
          disabled: 0,
          created_at: now,
        },
        { id: 'acme', name: 'Acme', max_file_size: null, storage_quota: 400, disabled: 0, created_at: now },
      ])
      .execute();
    const key = (id: string, role: string, secret: string) => ({
      id,
      account_id: 'acme',
      name: `old ${role}`,
      role,
      prefix: secret.slice(0, 12),
      secret_hash: hash(secret),
      created_at: now,
      last_used_at: null,
      revoked_at: null,
    });
    await db
      .insertInto('api_keys')
      .values([key(ADMIN_ID, 'admin', ADMIN_SECRET), key(MEMBER_ID, 'member', MEMBER_SECRET)])
      .execute();
    const asset = (id: string, name: string, size: number, seq: number) => ({
      id,
      account_id: 'acme',
      name,
      content_type: 'application/octet-stream',
      size,
      sha256: randomBytes(32).toString('hex'),
      md5: randomBytes(16).toString('hex'),
      storage_key: `acme/${id}.bin`,
      status: 'ready',
      metadata: '{}',
      created_at: now,
      updated_at: now,
      seq,
      access: 'private',
      processing: 'done',
      analysis: '{}',
    });
    await db
      .insertInto('assets')
      .values([asset(OLD_ASSET, 'old-a.bin', 100, 1), asset(randomUUID(), 'old-b.bin', 250, 2)])
      .execute();
    await db
      .insertInto('uploads')
      .values({
        id: PENDING_ID,
        account_id: 'acme',
        key_id: MEMBER_ID,
        kind: 'presigned',
        name: 'never-sent.bin',
        content_type: 'application/octet-stream',
        size: 10,
        sha256: null,
        md5: null,
        storage_key: `acme/${PENDING_ID}.bin`,
        status: 'pending',
        asset_id: null,
        deduplicated: 0,
        created_at: now - 7200_000,
        expires_at: now - 7000_000,
        completed_at: null,
        seq: 3,
        external_id: null,
        intent: '{}',
        auto_complete: 0,
        multipart_id: null,
      })
      .execute();
    await db.insertInto('counters').values({ name: 'seq', value: 3 }).execute();
  });
  w = await startWharf({ env: { WHARF_DATABASE_URL: url } });
});

after(async () => {
  await w?.close();
  await database?.release();
  await rm(dir, { recursive: true, force: true });
});

describe('a database from before scoped keys', () => {
  test('an old admin key is an admin key; an old member key is read, upload and write', async () => {
    const keys = await api(w.url, ADMIN_SECRET, 'GET', '/v1/keys');
    assert.equal(keys.status, 200, JSON.stringify(keys.body));
    const byId = new Map(keys.body.data.map((k: { id: string }) => [k.id, k]));
    assert.deepEqual(
      [byId.get(ADMIN_ID), byId.get(MEMBER_ID)].map((k) => {
        const { role, scopes, name_prefix, namespace } = k as Record<string, unknown>;
        return { role, scopes, name_prefix, namespace };
      }),
      [
        { role: 'admin', scopes: ['admin'], name_prefix: null, namespace: null },
        { role: 'member', scopes: ['read', 'upload', 'write'], name_prefix: null, namespace: null },
      ],
    );
    const list = await api(w.url, MEMBER_SECRET, 'GET', '/v1/assets');
    assert.deepEqual(list.body.data.map((a: { name: string }) => a.name).sort(), ['old-a.bin', 'old-b.bin']);
    const old = await api(w.url, MEMBER_SECRET, 'GET', `/v1/assets/${OLD_ASSET}`);
    assert.equal(old.body.subject, null);
    const forbidden = await api(w.url, MEMBER_SECRET, 'GET', '/v1/keys');
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.body.error.code, 'FORBIDDEN');
    assert.equal((await api(w.url, MEMBER_SECRET, 'POST', '/v1/upload-tokens', {})).status, 201);
  });

  test('the counters start from what was stored and pending', async () => {
    const account = await withDb((db) =>
      db
        .selectFrom('accounts')
        .select(['bytes_used', 'bytes_reserved'])
        .where('id', '=', 'acme')
        .executeTakeFirstOrThrow(),
    );
    assert.deepEqual([Number(account.bytes_used), Number(account.bytes_reserved)], [350, 0]);
    const member = await withDb((db) =>
      db.selectFrom('api_keys').select('open_uploads').where('id', '=', MEMBER_ID).executeTakeFirstOrThrow(),
    );
    assert.equal(Number(member.open_uploads), 1);

    // The quota (400) is exact from the first request: 50 bytes fit, 51 do not.
    const over = await uploadRaw(w, MEMBER_SECRET, 'too-big.bin', randomBytes(51));
    assert.equal(over.status, 403, JSON.stringify(over.body));
    assert.equal(over.body.error.code, 'QUOTA_EXCEEDED');
    assert.equal((await uploadRaw(w, MEMBER_SECRET, 'fits.bin', randomBytes(50))).status, 201);

    // The old pending upload expires like any other, and gives back exactly what it counted.
    await w.wharf.core.uploads.sweep();
    assert.equal(
      (await api(w.url, MEMBER_SECRET, 'GET', `/v1/uploads/${PENDING_ID}`)).body.status,
      'expired',
    );
    const after = await withDb((db) =>
      db.selectFrom('api_keys').select('open_uploads').where('id', '=', MEMBER_ID).executeTakeFirstOrThrow(),
    );
    assert.equal(Number(after.open_uploads), 0);
    const accountAfter = await withDb((db) =>
      db
        .selectFrom('accounts')
        .select(['bytes_used', 'bytes_reserved'])
        .where('id', '=', 'acme')
        .executeTakeFirstOrThrow(),
    );
    assert.deepEqual([Number(accountAfter.bytes_used), Number(accountAfter.bytes_reserved)], [400, 0]);
  });
});

// A database written by the first Wharf (migration 001 only): no asset numbers and no
// processing yet. Its assets were once marked processed but never processed, and all numbered
// 0 (also their ActiveStorage blob id); an upload declared then and completed now got 0 too.
describe('a database from before asset numbers and processing', () => {
  const IMAGE = randomUUID();
  const BINARY = randomUUID();
  const DECLARED = randomUUID();
  const KEY_ID = randomUUID();
  const SECRET = `wharf_${randomBytes(32).toString('base64url')}`;
  const binary = randomBytes(300);
  const declared = randomBytes(10);
  let png: Buffer;
  let oldDir: string;
  let oldDatabase: Backing | undefined;
  let oldUrl: string;
  let old: TestWharf;

  before(async () => {
    png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#3a6' } })
      .png()
      .toBuffer();
    oldDir = await mkdtemp(join(tmpdir(), 'wharf-migration-001-'));
    if (deployment === 'scaled') {
      oldDatabase = await createDatabase();
      oldUrl = oldDatabase.env.WHARF_DATABASE_URL!;
    } else {
      oldUrl = `sqlite://${join(oldDir, 'old.db')}`;
    }
    const now = Date.now();
    await withDb(async (db) => {
      await migrate(db, '001_initial');
      await db
        .insertInto('accounts')
        .values({ id: 'acme', name: 'Acme', max_file_size: null, disabled: 0, created_at: now })
        .execute();
      await db
        .insertInto('api_keys')
        .values({
          id: KEY_ID,
          account_id: 'acme',
          name: 'old admin',
          role: 'admin',
          prefix: SECRET.slice(0, 12),
          secret_hash: hash(SECRET),
          created_at: now,
          last_used_at: null,
          revoked_at: null,
        })
        .execute();
      const asset = (id: string, name: string, type: string, bytes: Buffer, at: number) => ({
        id,
        account_id: 'acme',
        name,
        content_type: type,
        size: bytes.length,
        sha256: sha256Hex(bytes),
        md5: md5Hex(bytes),
        storage_key: `acme/${id}`,
        status: 'ready',
        metadata: '{}',
        created_at: at,
        updated_at: at,
      });
      await db
        .insertInto('assets')
        .values([
          asset(IMAGE, 'photo.png', 'image/png', png, now - 2000),
          asset(BINARY, 'data.bin', 'application/octet-stream', binary, now - 1000),
        ])
        .execute();
      const upload = (id: string, assetId: string | null, bytes: Buffer, at: number) => ({
        id,
        account_id: 'acme',
        key_id: KEY_ID,
        kind: 'presigned',
        name: 'upload',
        content_type: 'application/octet-stream',
        size: bytes.length,
        sha256: null,
        md5: null,
        storage_key: `acme/${assetId ?? id}`,
        status: assetId ? 'completed' : 'pending',
        asset_id: assetId,
        deduplicated: 0,
        created_at: at,
        expires_at: now + 3600_000,
        completed_at: assetId ? at : null,
      });
      await db
        .insertInto('uploads')
        .values([
          upload(randomUUID(), IMAGE, png, now - 2000),
          upload(randomUUID(), BINARY, binary, now - 1000),
          upload(DECLARED, null, declared, now - 500),
        ])
        .execute();
    }, oldUrl);
    old = await startWharf({ env: { WHARF_DATABASE_URL: oldUrl } });
    // The bytes the first Wharf stored, where its rows say.
    await putStrayObject(old, `acme/${IMAGE}`, png);
    await putStrayObject(old, `acme/${BINARY}`, binary);
  });

  after(async () => {
    await old?.close();
    await oldDatabase?.release();
    await rm(oldDir, { recursive: true, force: true });
  });

  test('its assets are processed, and transforms take its images', async () => {
    const before = await api(old.url, SECRET, 'GET', `/v1/assets/${IMAGE}`);
    assert.equal(before.body.processing, 'pending', JSON.stringify(before.body));
    // Queued by the migration, at the real time; the test's clock started a moment before it.
    old.clock.set(Date.now());
    await old.wharf.core.jobs.drain();
    const image = await api(old.url, SECRET, 'GET', `/v1/assets/${IMAGE}`);
    assert.equal(image.body.processing, 'done');
    assert.deepEqual(
      [image.body.analysis.format, image.body.analysis.width, image.body.analysis.height],
      ['png', 64, 48],
    );
    assert.ok(image.body.analysis.placeholder, JSON.stringify(image.body.analysis));
    const transform = await fetch(`${old.url}/v1/assets/${IMAGE}/image?w=30&format=webp`, {
      headers: { 'x-api-key': SECRET },
    });
    assert.equal(transform.status, 200, await transform.clone().text());
    assert.equal(transform.headers.get('content-type'), 'image/webp');
    const other = await api(old.url, SECRET, 'GET', `/v1/assets/${BINARY}`);
    assert.equal(other.body.processing, 'done');
  });

  test('its assets and uploads get numbers of their own, and new ones follow', async () => {
    const numbers = await Promise.all(
      [IMAGE, BINARY].map(async (id) => (await api(old.url, SECRET, 'GET', `/v1/assets/${id}`)).body.number),
    );
    assert.deepEqual(numbers, [1, 2]);
    // Declared before the upgrade, completed after it.
    await putStrayObject(old, `acme/${DECLARED}`, declared);
    const done = await complete(old, SECRET, DECLARED);
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.asset.number, 3);
    const fresh = await uploadRaw(old, SECRET, 'fresh.bin', randomBytes(20));
    assert.equal(fresh.status, 201, JSON.stringify(fresh.body));
    assert.equal(fresh.body.asset.number, 4);
  });
});

// A database written by the Wharf that counted asset numbers and event cursors across all
// accounts (migrations up to 011): a tenant could tell from two of its own numbers how much the
// others did in between. The numbers handed out stay (an app keeps blob ids and its last cursor);
// each account counts its own from there, above every number given before.
describe('a database from before each account counted its own numbers', () => {
  const ACME_FIRST = randomUUID();
  const ACME_LAST = randomUUID();
  const OTHER_ASSET = randomUUID();
  let countedDir: string;
  let countedDatabase: Backing | undefined;
  let countedUrl: string;
  let counted: TestWharf;

  before(async () => {
    countedDir = await mkdtemp(join(tmpdir(), 'wharf-migration-011-'));
    if (deployment === 'scaled') {
      countedDatabase = await createDatabase();
      countedUrl = countedDatabase.env.WHARF_DATABASE_URL!;
    } else {
      countedUrl = `sqlite://${join(countedDir, 'old.db')}`;
    }
    const now = Date.now();
    await withDb(async (db) => {
      await migrate(db, '011_job_lanes');
      const account = (id: string) => ({
        id,
        name: id,
        max_file_size: null,
        storage_quota: null,
        disabled: 0,
        created_at: now,
      });
      await db
        .insertInto('accounts')
        .values([account('acme'), account('other')])
        .execute();
      const asset = (id: string, accountId: string, seq: number) => ({
        id,
        account_id: accountId,
        name: `${seq}.bin`,
        content_type: 'application/octet-stream',
        size: 10,
        sha256: randomBytes(32).toString('hex'),
        md5: randomBytes(16).toString('hex'),
        storage_key: `${accountId}/${id}.bin`,
        status: 'ready',
        metadata: '{}',
        created_at: now,
        updated_at: now,
        seq,
        access: 'private',
        processing: 'done',
        analysis: '{}',
      });
      // Numbered from the one counter: acme's 5 and 9, the other account's 7 in between.
      await db
        .insertInto('assets')
        .values([asset(ACME_FIRST, 'acme', 5), asset(OTHER_ASSET, 'other', 7), asset(ACME_LAST, 'acme', 9)])
        .execute();
      const event = (seq: number, accountId: string) => ({
        seq,
        id: randomUUID(),
        account_id: accountId,
        type: 'asset.updated',
        data: '{}',
        created_at: now,
      });
      await db
        .insertInto('events')
        .values([event(3, 'acme'), event(4, 'other'), event(5, 'acme')])
        .execute();
      await db
        .insertInto('counters')
        .values([
          { name: 'seq', value: 9 },
          { name: 'events', value: 6 },
        ])
        .execute();
    }, countedUrl);
    counted = await startWharf({ env: { WHARF_DATABASE_URL: countedUrl } });
  });

  after(async () => {
    await counted?.close();
    await countedDatabase?.release();
    await rm(countedDir, { recursive: true, force: true });
  });

  /** Every event of the account after `after`, paged as an app would. */
  async function eventsOf(key: string, after: string): Promise<{ cursor: string; type: string }[]> {
    const out = [];
    for (let cursor = after; ; ) {
      const res = await api(counted.url, key, 'GET', `/v1/events?after=${cursor}&limit=2`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      out.push(...res.body.data);
      cursor = res.body.cursor;
      if (!res.body.has_more) return out;
    }
  }

  test('numbers and cursors handed out are kept; each account’s new ones follow its own, above them all', async () => {
    const acme = (await counted.newKey('admin', 'acme')).key;
    const other = (await counted.newKey('admin', 'other')).key;
    for (const [key, id, number] of [
      [acme, ACME_FIRST, 5],
      [acme, ACME_LAST, 9],
      [other, OTHER_ASSET, 7],
    ] as const) {
      const res = await api(counted.url, key, 'GET', `/v1/assets/${id}`);
      assert.equal(res.body.number, number, JSON.stringify(res.body));
    }
    assert.deepEqual(
      (await eventsOf(acme, '0')).map((e) => e.cursor),
      ['3', '5'],
    );
    assert.deepEqual(
      (await eventsOf(other, '0')).map((e) => e.cursor),
      ['4'],
    );

    // Each account goes on from the one counter's last value, whatever the other does.
    const acmeNew = await uploadRaw(counted, acme, 'acme-new.bin', randomBytes(20));
    assert.equal(acmeNew.status, 201, JSON.stringify(acmeNew.body));
    const otherNew = await uploadRaw(counted, other, 'other-new.bin', randomBytes(20));
    assert.equal(otherNew.status, 201, JSON.stringify(otherNew.body));
    const acmeNext = await uploadRaw(counted, acme, 'acme-next.bin', randomBytes(20));
    assert.deepEqual(
      [acmeNew.body.asset.number, otherNew.body.asset.number, acmeNext.body.asset.number],
      [10, 10, 11],
    );
    // A reader's last cursor from before the upgrade lists exactly what came since.
    const acmeSince = await eventsOf(acme, '5');
    assert.deepEqual(
      acmeSince.map((e) => Number(e.cursor)),
      [7, 8, 9, 10, 11, 12],
    );
    assert.deepEqual(
      (await eventsOf(other, '4')).map((e) => Number(e.cursor)),
      [7, 8, 9],
    );

    // An account made since counts from 1.
    const fresh = await counted.newAccount();
    const first = await uploadRaw(counted, fresh.key, 'first.bin', randomBytes(20));
    assert.equal(first.body.asset.number, 1);
    assert.deepEqual(
      (await eventsOf(fresh.key, '0')).map((e) => e.cursor),
      ['1', '2', '3'],
    );
  });
});

// A database written by the Wharf that kept why an upload ended only in its event (migrations up
// to 012): an upload that ended then reads `ended: null` (not known), one that ends after the
// upgrade says why.
describe('a database from before uploads kept why they ended', () => {
  const ENDED = randomUUID();
  const PENDING = randomUUID();
  let endedDir: string;
  let endedDatabase: Backing | undefined;
  let endedUrl: string;
  let upgraded: TestWharf;

  before(async () => {
    endedDir = await mkdtemp(join(tmpdir(), 'wharf-migration-012-'));
    if (deployment === 'scaled') {
      endedDatabase = await createDatabase();
      endedUrl = endedDatabase.env.WHARF_DATABASE_URL!;
    } else {
      endedUrl = `sqlite://${join(endedDir, 'old.db')}`;
    }
    const now = Date.now();
    await withDb(async (db) => {
      await migrate(db, '012_account_numbers');
      await db
        .insertInto('accounts')
        .values({
          id: 'acme',
          name: 'acme',
          max_file_size: null,
          storage_quota: null,
          disabled: 0,
          created_at: now,
        })
        .execute();
      const upload = (id: string, status: string) => ({
        id,
        account_id: 'acme',
        key_id: 'an-old-key',
        kind: 'presigned',
        name: `${status}.bin`,
        content_type: 'application/octet-stream',
        size: 10,
        sha256: null,
        md5: null,
        storage_key: `acme/${id}.bin`,
        status,
        asset_id: null,
        deduplicated: 0,
        created_at: now,
        expires_at: now + 900_000,
        completed_at: null,
        seq: null,
        external_id: null,
        intent: '{}',
        auto_complete: 0,
        multipart_id: null,
      });
      await db
        .insertInto('uploads')
        .values([upload(ENDED, 'expired'), upload(PENDING, 'pending')])
        .execute();
    }, endedUrl);
    upgraded = await startWharf({ env: { WHARF_DATABASE_URL: endedUrl } });
  });

  after(async () => {
    await upgraded?.close();
    await endedDatabase?.release();
    await rm(endedDir, { recursive: true, force: true });
  });

  test('an upload that ended before reads ended: null; one that ends after says why', async () => {
    const { key } = await upgraded.newKey('admin', 'acme');
    const old = await api(upgraded.url, key, 'GET', `/v1/uploads/${ENDED}`);
    assert.equal(old.status, 200, JSON.stringify(old.body));
    assert.equal(old.body.status, 'expired');
    assert.equal(old.body.ended, null);
    const pending = await api(upgraded.url, key, 'GET', `/v1/uploads/${PENDING}`);
    assert.equal(pending.body.ended, null);
    assert.equal((await api(upgraded.url, key, 'DELETE', `/v1/uploads/${PENDING}`)).status, 204);
    const cancelled = await api(upgraded.url, key, 'GET', `/v1/uploads/${PENDING}`);
    assert.deepEqual(cancelled.body.ended, { reason: 'cancelled', error: null });
  });
});

// An upgrade's start says what it migrated: a large database can take many seconds over it, and
// the operator reads in the log why the start was slow and that the schema changed. A start with
// nothing to migrate says nothing of it.
describe('a server started on an older database logs the migrations it ran', () => {
  let logDir: string;
  let logDatabase: Backing | undefined;
  let logUrl: string;

  before(async () => {
    logDir = await mkdtemp(join(tmpdir(), 'wharf-migration-log-'));
    if (deployment === 'scaled') {
      logDatabase = await createDatabase();
      logUrl = logDatabase.env.WHARF_DATABASE_URL!;
    } else {
      logUrl = `sqlite://${join(logDir, 'old.db')}`;
    }
    await withDb((db) => migrate(db, '012_account_numbers'), logUrl);
  });

  after(async () => {
    await logDatabase?.release();
    await rm(logDir, { recursive: true, force: true });
  });

  const migratedLine = (line: LogLine) => line.msg.startsWith('database migrated');

  test('one info line names them, with how long they took; the next start logs none', async () => {
    const pending = MIGRATIONS.slice(MIGRATIONS.indexOf('012_account_numbers') + 1);
    const first = new LogCollector();
    const upgraded = await startWharf({ env: { WHARF_DATABASE_URL: logUrl }, logStream: first.stream });
    try {
      const line = await first.waitFor(migratedLine, 'naming the migrations');
      assert.equal(line.level, INFO);
      assert.equal(line.msg, `database migrated: ${pending.join(', ')}`);
      assert.deepEqual(line.migrations, pending);
      assert.equal(typeof line.seconds, 'number');
      assert.ok((line.seconds as number) >= 0, String(line.seconds));
      assert.equal(first.lines.filter(migratedLine).length, 1);
    } finally {
      await upgraded.close();
    }

    const second = new LogCollector();
    const again = await startWharf({ env: { WHARF_DATABASE_URL: logUrl }, logStream: second.stream });
    try {
      // A request's line comes after every line of the start: by then, any would have shown.
      assert.equal((await api(again.url, again.key, 'GET', '/v1/keys')).status, 200);
      await second.waitFor((l) => l.msg === 'request completed', 'of the request');
      assert.deepEqual(second.lines.filter(migratedLine), []);
    } finally {
      await again.close();
    }
  });
});
