import { randomBytes, randomFillSync } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { Clock } from './clock.js';

/** Identifiers and secrets; injectable so tests can be deterministic when they need to be. */
export interface IdSource {
  /** Time-ordered UUID (v7): ids sort by creation, which keyset pagination relies on. */
  id(): string;
  /** URL-safe random token of `bytes` bytes of entropy. */
  token(bytes: number): string;
}

// uuid draws fresh random bytes per id through a slow path; one refill serves 256 ids.
const POOL_IDS = 256;

/**
 * What keeps ids in creation order: the millisecond of the last id and a counter within it.
 * A SharedArrayBuffer, so that the id sources of several threads (the SQLite thread's and the
 * event loop's) share it and their ids sort in the order they were made, as one source's do.
 */
export function newIdOrder(): SharedArrayBuffer {
  const order = new SharedArrayBuffer(16);
  new Float64Array(order, 8, 1)[0] = Number.NEGATIVE_INFINITY;
  return order;
}

export function createIdSource(clock: Clock, order: SharedArrayBuffer = newIdOrder()): IdSource {
  const pool = Buffer.alloc(16 * POOL_IDS);
  let next = POOL_IDS;
  const random = (): Uint8Array => {
    if (next === POOL_IDS) {
      randomFillSync(pool);
      next = 0;
    }
    next += 1;
    return pool.subarray((next - 1) * 16, next * 16);
  };
  // [lock, seq] and lastMs. The lock is held for a few instructions, by one of two threads.
  const words = new Int32Array(order, 0, 2);
  const last = new Float64Array(order, 8, 1);
  // uuid's v7 keeps ids monotonic only when it reads the clock itself; given msecs it draws
  // a random sequence per id, so ids made in the same millisecond would sort at random
  // (listings "newest first" out of order, a cursor skipping or repeating same-ms assets).
  // Kept here as uuid does it: a counter within a millisecond, never moving backwards.
  const monotonic = (): string => {
    const rnds = random();
    const now = clock.now();
    while (Atomics.compareExchange(words, 0, 0, 1) !== 0);
    let lastMs = last[0]!;
    let seq: number;
    if (now > lastMs) {
      lastMs = now;
      seq = ((rnds[6]! & 0x7f) << 24) | (rnds[7]! << 16) | (rnds[8]! << 8) | rnds[9]!;
    } else {
      seq = (words[1]! + 1) | 0;
      if (seq === 0) lastMs += 1;
    }
    last[0] = lastMs;
    words[1] = seq;
    Atomics.store(words, 0, 0);
    return uuidv7({ msecs: lastMs, seq, random: rnds });
  };
  return {
    id: monotonic,
    token: (bytes) => randomBytes(bytes).toString('base64url'),
  };
}
