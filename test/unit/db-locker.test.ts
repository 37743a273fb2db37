import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StoreLocker } from '../../src/blobs/db-locker.js';
import type { LockStore } from '../../src/core/ports.js';

/** A promise the test settles, and one that says when the code under test started waiting on it. */
function gate<T>() {
  let open!: (value: T) => void;
  let reached!: () => void;
  const value = new Promise<T>((resolve) => {
    open = resolve;
  });
  const waiting = new Promise<void>((resolve) => {
    reached = resolve;
  });
  return { value, open, waiting, reached };
}

/**
 * One lease, as the database keeps it, whose holder's next renewal or release-request check
 * the test can hold (`holdRenewal`, `holdCheck`); every call is recorded in order.
 */
function leaseStore() {
  const calls: string[] = [];
  let owner: string | undefined;
  let requested = false;
  let renewal: ReturnType<typeof gate<void>> | undefined;
  let check: ReturnType<typeof gate<void>> | undefined;
  const store: LockStore = {
    async acquireLock(_name, who) {
      // A held renewal lands (upserts) when the test lets it, whatever happened meanwhile.
      if (owner === who && renewal) {
        const held = renewal;
        renewal = undefined;
        held.reached();
        await held.value;
      }
      if (owner !== undefined && owner !== who) return false;
      calls.push(owner === who ? 'renew' : 'acquire');
      if (owner !== who) requested = false;
      owner = who;
      return true;
    },
    async releaseLock(_name, who) {
      calls.push('release');
      if (owner === who) owner = undefined;
    },
    async requestLockRelease() {
      if (owner === undefined) return false;
      requested = true;
      return true;
    },
    async lockReleaseRequested(_name, who) {
      // A held check has read the row; its answer arrives when the test lets it.
      const answer = owner === who && requested;
      if (check) {
        const held = check;
        check = undefined;
        held.reached();
        await held.value;
      }
      return answer;
    },
  };
  return {
    store,
    calls,
    ask: () => store.requestLockRelease('x', 0),
    holdRenewal() {
      renewal = gate<void>();
      return renewal;
    },
    holdCheck() {
      check = gate<void>();
      return check;
    },
  };
}

describe('StoreLocker', () => {
  test('an ask passes on to a holder that still holds the lock', async () => {
    const db = leaseStore();
    const lock = new StoreLocker(db.store, { pollMs: 1 }).newLock('u');
    const asked = gate<void>();
    await lock.lock(new AbortController().signal, () => asked.open());
    await db.ask();
    await asked.value;
    await lock.unlock();
  });

  test('a poll under way when the holder unlocks does not pass the ask on', async () => {
    const db = leaseStore();
    const lock = new StoreLocker(db.store, { pollMs: 1 }).newLock('u');
    let passedOn = false;
    await lock.lock(new AbortController().signal, () => {
      passedOn = true;
    });
    await db.ask();
    const check = db.holdCheck();
    await check.waiting; // The watcher has read that someone asked; its answer is on the way.
    const unlocked = lock.unlock(); // The request is done with the upload meanwhile.
    check.open();
    await unlocked;
    // The poll's remaining steps are promise callbacks, all run before the next macrotask.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(passedOn, false, 'the ask reached a holder that had let go');
  });

  test('a renewal under way when the holder unlocks lands before the release, not after it', async () => {
    const db = leaseStore();
    // Renewing at every poll (a lease of 0 ms is always a third gone).
    const lock = new StoreLocker(db.store, { pollMs: 1, leaseMs: 0 }).newLock('u');
    await lock.lock(new AbortController().signal, () => undefined);
    const renewal = db.holdRenewal();
    await renewal.waiting;
    const unlocked = lock.unlock();
    // Let the unlock run as far as it can before the renewal answers.
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(!db.calls.includes('release'), 'released while the renewal was under way');
    renewal.open();
    await unlocked;
    assert.deepEqual(db.calls, ['acquire', 'renew', 'release']);
    // The lease is free: another request takes it at once.
    assert.equal(await db.store.acquireLock('tus:u', 'other', 0, 0), true);
  });
});
