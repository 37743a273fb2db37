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

export function createIdSource(clock: Clock): IdSource {
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
  // uuid's v7 keeps ids monotonic only when it reads the clock itself; given msecs it draws
  // a random sequence per id, so ids made in the same millisecond would sort at random
  // (listings "newest first" out of order, a cursor skipping or repeating same-ms assets).
  // Kept here as uuid does it: a counter within a millisecond, never moving backwards.
  let lastMs = Number.NEGATIVE_INFINITY;
  let seq = 0;
  const monotonic = (): string => {
    const rnds = random();
    const now = clock.now();
    if (now > lastMs) {
      lastMs = now;
      seq = ((rnds[6]! & 0x7f) << 24) | (rnds[7]! << 16) | (rnds[8]! << 8) | rnds[9]!;
    } else {
      seq = (seq + 1) | 0;
      if (seq === 0) lastMs += 1;
    }
    return uuidv7({ msecs: lastMs, seq, random: rnds });
  };
  return {
    id: monotonic,
    token: (bytes) => randomBytes(bytes).toString('base64url'),
  };
}
