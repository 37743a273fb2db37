import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { isWharfError } from '../../src/core/errors.js';
import {
  canonicalJson,
  IDEMPOTENCY_LEASE_MS,
  type IdempotencyOutcome,
  IdempotencyService,
} from '../../src/core/idempotency.js';
import { createIdSource } from '../../src/core/ids.js';
import type { Principal } from '../../src/core/model.js';
import type { Store } from '../../src/core/ports.js';
import { NO_TELEMETRY, type Telemetry } from '../../src/core/telemetry.js';
import { countingCalls, type TwoStores, twoStores } from '../helpers/two-stores.js';

// The idempotency service on a real database, opened through two connections as two nodes
// would: a SQLite file on embedded, a PostgreSQL database when the suite runs scaled.
let dir: string;
let first: Store;
let second: Store;
const clock = new ManualClock(Date.UTC(2026, 0, 1));
const ids = createIdSource(clock);
const principal: Principal = {
  accountId: 'default',
  keyId: 'key-1',
  tokenId: null,
  scopes: ['admin'],
  namePrefix: null,
  namespace: null,
  maxFileSize: null,
};
const body = { name: 'a.bin', size: 10 };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wharf-idempotency-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let stores: TwoStores;
beforeEach(async () => {
  stores = await twoStores(dir, ids);
  ({ first, second } = stores);
  await first.ensureAccount({
    id: principal.accountId,
    name: 'Default',
    maxFileSize: null,
    storageQuota: null,
    disabled: false,
    stripGps: false,
    createdAt: clock.now(),
  });
});
afterEach(async () => {
  await stores.close();
});

/** What begin() gave, or the code it refused with. */
async function outcome(
  service: IdempotencyService,
  request: unknown = body,
): Promise<IdempotencyOutcome | string> {
  try {
    return await service.begin(principal, 'k', 'POST /v1/uploads', request);
  } catch (err) {
    if (isWharfError(err)) return err.code;
    throw err;
  }
}

function held(result: IdempotencyOutcome | string) {
  assert.ok(typeof result === 'object' && result.kind === 'run', `claimed: ${JSON.stringify(result)}`);
  return result.hold;
}

test('a request that runs past its lease keeps its key while it runs: the same request elsewhere is told to wait', async () => {
  // Node a renews every 10 ms of real time (its renewals counted); node b never needs to.
  const counted = countingCalls(first, 'renewIdempotency');
  const renewals = counted.calls;
  const a = new IdempotencyService(counted.store, clock, { leaseMs: IDEMPOTENCY_LEASE_MS, renewEveryMs: 10 });
  const b = new IdempotencyService(second, clock, { leaseMs: IDEMPOTENCY_LEASE_MS, renewEveryMs: 3_600_000 });
  const hold = held(await outcome(a));
  for (let i = 0; i < 3; i++) {
    clock.advance(IDEMPOTENCY_LEASE_MS - 1);
    // A renewal or two at the new time (real time passes; the clock stands).
    await new Promise((resolve) => setTimeout(resolve, 60));
    clock.advance(2);
    assert.equal(await outcome(b), 'IDEMPOTENCY_KEY_IN_USE', `lease ${i + 1}: the key is still a's`);
  }
  await hold.finish(201, '{"id":"first"}');
  assert.deepEqual(await outcome(b), { kind: 'replay', status: 201, response: '{"id":"first"}' });
  // Answered, the hold is no longer renewed.
  const before = renewals();
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(renewals(), before, 'no renewal after the answer');
});

test('a hold renewal the database refuses is reported, and the request still answers for its key', async () => {
  const refusal = new Error('database is locked');
  const failing: Store = { ...first, renewIdempotency: async () => Promise.reject(refusal) };
  const reported: { lease: string; err: unknown }[] = [];
  const telemetry: Telemetry = {
    ...NO_TELEMETRY,
    leaseRenewalFailed: (lease, err) => reported.push({ lease, err }),
  };
  const a = new IdempotencyService(
    failing,
    clock,
    { leaseMs: IDEMPOTENCY_LEASE_MS, renewEveryMs: 10 },
    telemetry,
  );
  const hold = held(await outcome(a));
  const deadline = Date.now() + 5_000;
  while (reported.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.ok(reported.length >= 2, `reported ${reported.length} failed renewals`);
  for (const r of reported) assert.deepEqual(r, { lease: 'idempotency_key', err: refusal });
  // Within its first lease, the answer is still the key's.
  await hold.finish(201, '{"id":"first"}');
  assert.deepEqual(await outcome(a), { kind: 'replay', status: 201, response: '{"id":"first"}' });
});

test('a request overtaken once its hold lapsed can neither answer for the key nor let go of it', async () => {
  const quiet = { leaseMs: IDEMPOTENCY_LEASE_MS, renewEveryMs: 3_600_000 };
  const a = new IdempotencyService(first, clock, quiet);
  const b = new IdempotencyService(second, clock, quiet);
  const stale = held(await outcome(a));
  // a's node stops renewing (as a dead one would); the same request, sent again, takes over.
  clock.advance(IDEMPOTENCY_LEASE_MS + 1);
  const current = held(await outcome(b));
  // a, waking, fails: its release must not free b's hold for a third copy to run.
  await stale.release();
  assert.equal(await outcome(b), 'IDEMPOTENCY_KEY_IN_USE');
  // Nor does its answer become the key's.
  await stale.finish(201, '{"id":"stale"}');
  assert.equal(await outcome(b), 'IDEMPOTENCY_KEY_IN_USE');
  await current.finish(201, '{"id":"current"}');
  assert.deepEqual(await outcome(a), { kind: 'replay', status: 201, response: '{"id":"current"}' });
});

test('the body is compared as JSON: keys in another order are the same request, other values are not', async () => {
  const a = new IdempotencyService(first, clock);
  const hold = held(await outcome(a, { files: [{ name: 'a.bin', size: 10, sha256: 'x' }] }));
  await hold.finish(201, '{}');
  assert.equal(
    ((await outcome(a, { files: [{ sha256: 'x', size: 10, name: 'a.bin' }] })) as IdempotencyOutcome).kind,
    'replay',
  );
  assert.equal(
    await outcome(a, { files: [{ name: 'a.bin', size: 11, sha256: 'x' }] }),
    'IDEMPOTENCY_KEY_REUSED',
  );
  assert.equal(await outcome(a, { files: [{ name: 'a.bin', size: 10 }] }), 'IDEMPOTENCY_KEY_REUSED');
  assert.equal(
    canonicalJson({ b: [1, { d: null, c: 'x' }], a: true }),
    '{"a":true,"b":[1,{"c":"x","d":null}]}',
  );
});
