import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { createIdSource } from '../../src/core/ids.js';

/** Milliseconds embedded in a UUIDv7 (its first 48 bits). */
function msOf(id: string): number {
  return Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16);
}

describe('createIdSource().id(): UUIDv7 that sort in creation order', () => {
  test('ids made within one millisecond still sort in the order they were made', () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const ids = createIdSource(clock);
    const made = Array.from({ length: 5000 }, () => ids.id());
    assert.deepEqual([...made].sort(), made);
    assert.equal(new Set(made).size, made.length);
    assert.ok(made.every((id) => msOf(id) === clock.now()));
  });

  test('they carry the clock’s time as it moves on', () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const ids = createIdSource(clock);
    const a = ids.id();
    clock.advance(1234);
    const b = ids.id();
    assert.equal(msOf(b) - msOf(a), 1234);
    assert.ok(b > a);
  });

  test('a clock set backwards never makes an id sort before an earlier one', () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const ids = createIdSource(clock);
    const before = ids.id();
    clock.advance(-60_000);
    const after = ids.id();
    assert.ok(after > before);
  });

  test('they are version 7, RFC 4122 variant', () => {
    const id = createIdSource(new ManualClock()).id();
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
