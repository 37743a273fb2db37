import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { requireScope } from '../../src/core/authorization.js';
import { ManualClock } from '../../src/core/clock.js';
import { isWharfError } from '../../src/core/errors.js';
import { createIdSource } from '../../src/core/ids.js';
import { hashSecret, KeyService } from '../../src/core/keys.js';
import type { Principal, Scope } from '../../src/core/model.js';
import type { Store } from '../../src/core/ports.js';
import { connect } from '../../src/db/connect.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { createSqlStore } from '../../src/db/store/index.js';

// A real SQLite database in a temporary directory: nothing about storage is mocked.
let dir: string;
let store: Store;
let keys: KeyService;
const clock = new ManualClock(Date.UTC(2026, 0, 1));

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wharf-keys-'));
  const connection = connect(`sqlite://${join(dir, 'keys.db')}`);
  await migrateToLatest(connection.db);
  store = createSqlStore(connection, createIdSource(clock));
  keys = new KeyService(store, clock, createIdSource(clock));
  await keys.ensureAccount('acme', 'Acme');
  await keys.ensureAccount('globex', 'Globex');
});
after(async () => {
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

async function unauthorized(secret: string | undefined): Promise<void> {
  await assert.rejects(keys.authenticate(secret), (err: unknown) => {
    assert.ok(isWharfError(err, 'UNAUTHORIZED'), String(err));
    assert.equal(err.status, 401);
    return true;
  });
}

describe('hashSecret', () => {
  test('is the hex SHA-256 of the UTF-8 secret', () => {
    assert.equal(hashSecret('wharf_abc'), createHash('sha256').update('wharf_abc').digest('hex'));
    assert.notEqual(hashSecret('wharf_abc'), hashSecret('wharf_abd'));
  });
});

describe('KeyService', () => {
  test('a created key authenticates as its account and scopes; only its hash is stored', async () => {
    const { key, secret } = await keys.create('acme', 'ci', 'member');
    assert.match(secret, /^wharf_[A-Za-z0-9_-]{43}$/);
    assert.equal(key.prefix, secret.slice(0, 12));
    assert.deepEqual(await keys.authenticate(secret), {
      accountId: 'acme',
      keyId: key.id,
      tokenId: null,
      scopes: ['read', 'upload', 'write'],
      namePrefix: null,
      namespace: null,
      maxFileSize: null,
    });
    const stored = await store.findKeyByHash(hashSecret(secret));
    assert.equal(stored?.key.id, key.id);
    assert.equal(
      JSON.stringify((await keys.list({ accountId: 'acme', limit: 1000 })).keys).includes(secret),
      false,
    );
  });

  test('every created secret is different', async () => {
    const secrets = new Set<string>();
    for (let i = 0; i < 20; i += 1) secrets.add((await keys.create('acme', `k${i}`, 'member')).secret);
    assert.equal(secrets.size, 20);
  });

  test('missing, empty, unknown and near-miss secrets are refused', async () => {
    const { secret } = await keys.create('acme', 'near', 'admin');
    await unauthorized(undefined);
    await unauthorized('');
    await unauthorized('wharf_definitely-not-a-key');
    await unauthorized(secret.slice(0, -1));
    await unauthorized(`${secret} `);
    await unauthorized(secret.toUpperCase());
  });

  test('a revoked key stops working at once, and revoking twice is NOT_FOUND', async () => {
    const { key, secret } = await keys.create('acme', 'to revoke', 'admin');
    await keys.authenticate(secret);
    clock.advance(5000);
    await keys.revoke(key.id, 'acme');
    await unauthorized(secret);
    const listed = (await keys.list({ accountId: 'acme', limit: 1000 })).keys.find((k) => k.id === key.id);
    assert.equal(listed?.revokedAt, clock.now());
    await assert.rejects(keys.revoke(key.id, 'acme'), (err: unknown) => isWharfError(err, 'NOT_FOUND'));
  });

  test('an account cannot revoke another account’s key', async () => {
    const { key, secret } = await keys.create('globex', 'theirs', 'admin');
    await assert.rejects(keys.revoke(key.id, 'acme'), (err: unknown) => isWharfError(err, 'NOT_FOUND'));
    assert.equal((await keys.authenticate(secret)).accountId, 'globex');
  });

  test('list is scoped to the account', async () => {
    await keys.create('globex', 'scoped', 'member');
    const acme = (await keys.list({ accountId: 'acme', limit: 1000 })).keys;
    assert.ok(acme.length > 0);
    assert.ok(acme.every((k) => k.accountId === 'acme'));
    assert.ok(
      (await keys.list({ accountId: 'globex', limit: 1000 })).keys.every((k) => k.accountId === 'globex'),
    );
  });

  test('creating a key for an unknown account is NOT_FOUND', async () => {
    await assert.rejects(keys.create('nobody', 'x', 'admin'), (err: unknown) =>
      isWharfError(err, 'NOT_FOUND'),
    );
  });

  test('an operator key registers idempotently and must be at least 16 characters', async () => {
    const first = await keys.register('acme', 'env', 'admin', 'operator-chosen-key-123');
    const second = await keys.register('acme', 'env', 'admin', 'operator-chosen-key-123');
    assert.equal(second.id, first.id);
    assert.equal((await keys.authenticate('operator-chosen-key-123')).keyId, first.id);
    await assert.rejects(keys.register('acme', 'env', 'admin', 'short'), (err: unknown) =>
      isWharfError(err, 'VALIDATION_FAILED'),
    );
  });

  test('last_used_at is recorded on use, and refreshed at most once a minute', async () => {
    const { key, secret } = await keys.create('acme', 'usage', 'member');
    const lastUsed = async () =>
      (await keys.list({ accountId: 'acme', limit: 1000 })).keys.find((k) => k.id === key.id)?.lastUsedAt;
    assert.equal(await lastUsed(), null);
    const t0 = clock.now();
    await keys.authenticate(secret);
    assert.equal(await lastUsed(), t0);
    clock.advance(30_000);
    await keys.authenticate(secret);
    assert.equal(await lastUsed(), t0, 'not rewritten within the minute');
    clock.advance(31_000);
    await keys.authenticate(secret);
    assert.equal(await lastUsed(), clock.now());
  });

  test('the admin scope is FORBIDDEN to members (as before scopes); other scopes are SCOPE_DENIED', () => {
    const as = (scopes: Scope[]): Principal => ({
      accountId: 'acme',
      keyId: 'k',
      tokenId: null,
      scopes,
      namePrefix: null,
      namespace: null,
      maxFileSize: null,
    });
    requireScope(as(['admin']), 'admin');
    for (const scope of ['read', 'upload', 'write'] as const) requireScope(as(['admin']), scope);
    assert.throws(
      () => requireScope(as(['read', 'upload', 'write']), 'admin'),
      (err: unknown) => isWharfError(err, 'FORBIDDEN') && err.status === 403,
    );
    assert.throws(
      () => requireScope(as(['read']), 'upload'),
      (err: unknown) =>
        isWharfError(err, 'SCOPE_DENIED') && err.status === 403 && err.details?.required === 'upload',
    );
  });

  test('scoped keys keep their scopes and confinement; admin keys cannot be confined', async () => {
    const { key, secret } = await keys.create('acme', 'scoped', {
      scopes: ['upload', 'read', 'upload'],
      namePrefix: 'user-7/'.replace('/', '-'),
      namespace: 'avatars',
    });
    assert.deepEqual(key.scopes, ['read', 'upload']);
    const principal = await keys.authenticate(secret);
    assert.deepEqual(
      { scopes: principal.scopes, namePrefix: principal.namePrefix, namespace: principal.namespace },
      { scopes: ['read', 'upload'], namePrefix: 'user-7-', namespace: 'avatars' },
    );
    for (const access of [
      { scopes: ['admin'] as Scope[], namePrefix: 'x' },
      { scopes: [] as Scope[] },
      { scopes: ['owner'] as unknown as Scope[] },
      { scopes: ['read'] as Scope[], namePrefix: 'a/b' },
      { scopes: ['read'] as Scope[], namespace: '../etc' },
    ]) {
      await assert.rejects(
        keys.create('acme', 'bad', access),
        (err: unknown) => isWharfError(err),
        JSON.stringify(access),
      );
    }
  });
});
