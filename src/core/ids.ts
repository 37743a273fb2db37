import { randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { Clock } from './clock.js';

/** Identifiers and secrets; injectable so tests can be deterministic when they need to be. */
export interface IdSource {
  /** Time-ordered UUID (v7): ids sort by creation, which keyset pagination relies on. */
  id(): string;
  /** URL-safe random token of `bytes` bytes of entropy. */
  token(bytes: number): string;
}

export function createIdSource(clock: Clock): IdSource {
  return {
    id: () => uuidv7({ msecs: clock.now() }),
    token: (bytes) => randomBytes(bytes).toString('base64url'),
  };
}
