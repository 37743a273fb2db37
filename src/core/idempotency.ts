import { hash, randomBytes } from 'node:crypto';
import type { Clock } from './clock.js';
import { WharfError } from './errors.js';
import type { Principal } from './model.js';
import type { IdempotencyScope, Store } from './ports.js';
import { type Renewal, renewEvery } from './renewal.js';
import { NO_TELEMETRY, type Telemetry } from './telemetry.js';

/** How long an answer is kept under its key: a client retrying a lost answer does so within it. */
export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
/**
 * How long a claim holds its key unless renewed. The request that claimed it renews it while it
 * runs (a third of this apart), however long it takes; a retry meanwhile is told to come back
 * (409 IDEMPOTENCY_KEY_IN_USE). Once a hold lapses (the node answering died), the same request
 * takes the key over and runs again.
 */
export const IDEMPOTENCY_LEASE_MS = 60_000;
/**
 * No request holds a key longer than this: one whose answer never came (a hook that never ran)
 * stops renewing, and its hold lapses a lease later.
 */
const MAX_HOLD_MS = 10 * 60_000;
const PRUNE_BATCH = 1000;

export interface IdempotencySettings {
  leaseMs: number;
  /** How often a running request renews its hold (a third of the lease when absent). */
  renewEveryMs?: number | undefined;
}

/** A key held for one request: give it the answer, or let go of it when the request failed. */
export interface IdempotencyHold {
  finish(status: number, response: string): Promise<void>;
  release(): Promise<void>;
}

/** What a request with an idempotency key does: run (holding the key), or give a kept answer. */
export type IdempotencyOutcome =
  | { kind: 'run'; hold: IdempotencyHold }
  | { kind: 'replay'; status: number; response: string };

/**
 * Idempotency keys on creating requests (the `Idempotency-Key` header of the IETF draft, as
 * Stripe has it). A declaration whose answer is lost (a cut connection, a proxy's 502) and is
 * sent again with the same key gets the first answer, the same uploads, instead of a second
 * set of pending uploads that hold quota, open-upload slots and an upload token's files until
 * they expire. Keys belong to the credential that sent them; an answer is kept for a day, and
 * only a successful one: a refused request holds nothing, so its retry runs afresh.
 */
export class IdempotencyService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly settings: IdempotencySettings = { leaseMs: IDEMPOTENCY_LEASE_MS },
    private readonly telemetry: Telemetry = NO_TELEMETRY,
  ) {}

  /**
   * `operation` names what is asked (its method and route), `request` is its parsed body: the
   * same key with another of either is refused (IDEMPOTENCY_KEY_REUSED), never answered with
   * the other request's result. The body is compared as JSON values (its objects' keys in any
   * order, its numbers however spelled), not as the text sent.
   */
  async begin(
    principal: Principal,
    key: string,
    operation: string,
    request: unknown,
  ): Promise<IdempotencyOutcome> {
    const scope: IdempotencyScope = {
      accountId: principal.accountId,
      principalId: principal.tokenId !== null ? `token:${principal.tokenId}` : `key:${principal.keyId}`,
      key,
    };
    const fingerprint = hash('sha256', `${operation}\n${canonicalJson(request ?? null)}`, 'hex');
    const holder = randomBytes(12).toString('hex');
    const now = this.clock.now();
    const claim = await this.store.claimIdempotency(scope, fingerprint, holder, {
      now,
      leaseUntil: now + this.settings.leaseMs,
      expiresAt: now + IDEMPOTENCY_TTL_MS,
    });
    switch (claim.kind) {
      case 'claimed': {
        const renewal = this.keepHold(scope, holder);
        return {
          kind: 'run',
          hold: {
            finish: (status, response) => {
              renewal.stop();
              return this.store.finishIdempotency(scope, holder, { status, response });
            },
            release: () => {
              renewal.stop();
              return this.store.releaseIdempotency(scope, holder);
            },
          },
        };
      }
      case 'replay':
        return { kind: 'replay', status: claim.status, response: claim.response };
      case 'mismatch':
        throw new WharfError(
          'IDEMPOTENCY_KEY_REUSED',
          'This Idempotency-Key was used with a different request; use a new key for a new request.',
        );
      case 'running':
        throw new WharfError(
          'IDEMPOTENCY_KEY_IN_USE',
          'A request with this Idempotency-Key is still being answered; retry after Retry-After seconds.',
          { retry_after: 1 },
        );
    }
  }

  /**
   * Renews a claim's hold while its request runs: a declaration held up by a slow database
   * (group commits wait, then retry) may take longer than a lease, and a retry arriving then
   * must not run it a second time beside it.
   */
  private keepHold(scope: IdempotencyScope, holder: string): Renewal {
    const started = this.clock.now();
    return renewEvery(
      this.settings.renewEveryMs ?? Math.floor(this.settings.leaseMs / 3),
      () => this.store.renewIdempotency(scope, holder, this.clock.now() + this.settings.leaseMs),
      () => this.clock.now() - started > MAX_HOLD_MS,
      (err) => this.telemetry.leaseRenewalFailed('idempotency_key', err),
    );
  }

  /** Removes answers kept past their day (the periodic sweep). */
  async prune(): Promise<number> {
    let removed = 0;
    for (;;) {
      const n = await this.store.pruneIdempotency(this.clock.now(), PRUNE_BATCH);
      removed += n;
      if (n < PRUNE_BATCH) return removed;
    }
  }
}

/**
 * JSON text of a value with every object's keys in order: two bodies that parse to the same
 * value (`{"name":…,"size":…}` and `{"size":…,"name":…}`) are the same request. Parsed JSON holds
 * only plain objects, arrays, strings, numbers, booleans and null.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value);
}
