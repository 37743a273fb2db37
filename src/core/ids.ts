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
  return {
    id: () => uuidv7({ msecs: clock.now(), random: random() }),
    token: (bytes) => randomBytes(bytes).toString('base64url'),
  };
}
