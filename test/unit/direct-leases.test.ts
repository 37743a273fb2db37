import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { DirectUploadLeases } from '../../src/core/direct-leases.js';

/** A store that records each renewal statement, and fails while told to. */
function fakeStore() {
  const calls: { ids: string[]; until: number }[] = [];
  const store = {
    failing: false,
    calls,
    async renewUploads(ids: string[], until: number): Promise<number> {
      calls.push({ ids: [...ids].sort(), until });
      if (store.failing) throw new Error('the database is away');
      return ids.length;
    },
  };
  return store;
}

describe('direct upload leases', () => {
  test('one statement renews every upload the process streams, to a full lease from now; none while it streams none', async () => {
    const clock = new ManualClock(1_000_000);
    const store = fakeStore();
    const leases = new DirectUploadLeases(store, clock, 300_000);
    assert.equal(leases.renewEveryMs, 100_000, 'a third of the lease');
    assert.equal(leases.until(), 1_300_000);

    assert.equal(await leases.renew(), 0);
    assert.deepEqual(store.calls, [], 'nothing to renew, no statement');

    leases.hold('a');
    leases.hold('b');
    leases.hold('c');
    clock.advance(100_000);
    assert.equal(await leases.renew(), 3);
    assert.deepEqual(store.calls, [{ ids: ['a', 'b', 'c'], until: 1_400_000 }]);

    leases.release('b');
    clock.advance(100_000);
    await leases.renew();
    assert.deepEqual(
      store.calls.at(-1),
      { ids: ['a', 'c'], until: 1_500_000 },
      'an ended request is renewed no more',
    );
  });

  test('a failed renewal is the caller’s to report, leaves nothing waiting, and the next one goes through', async () => {
    const clock = new ManualClock(0);
    const store = fakeStore();
    const leases = new DirectUploadLeases(store, clock, 3_000);
    leases.hold('a');
    store.failing = true;
    const failed = leases.renew();
    assert.equal(leases.busy, true, 'waiting on the database');
    await assert.rejects(failed, /the database is away/);
    await leases.settled();
    assert.equal(leases.busy, false);
    store.failing = false;
    clock.advance(1_000);
    assert.equal(await leases.renew(), 1);
    assert.deepEqual(store.calls.at(-1), { ids: ['a'], until: 4_000 });
  });
});
