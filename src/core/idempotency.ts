import { hash } from 'node:crypto';
import type { Clock } from './clock.js';
import { WharfError } from './errors.js';
import type { Principal } from './model.js';
import type { IdempotencyScope, Store } from './ports.js';

/** How long an answer is kept under its key: a client retrying a lost answer does so within it. */
export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
/**
 * How long the first request holds its key. A retry meanwhile is told to come back (409
 * IDEMPOTENCY_KEY_IN_USE); once the hold lapses (the node answering it died) the same request
 * takes the key over and runs again. Longer than any declaration takes (10,000 files: seconds).
 */
export const IDEMPOTENCY_LEASE_MS = 60_000;
const PRUNE_BATCH = 1000;

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
  ) {}

  /**
   * `operation` names what is asked (its method and route), `request` is its parsed body: the
   * same key with another of either is refused (IDEMPOTENCY_KEY_REUSED), never answered with
   * the other request's result.
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
    const fingerprint = hash('sha256', `${operation}\n${JSON.stringify(request ?? null)}`, 'hex');
    const now = this.clock.now();
    const claim = await this.store.claimIdempotency(scope, fingerprint, {
      now,
      leaseUntil: now + IDEMPOTENCY_LEASE_MS,
      expiresAt: now + IDEMPOTENCY_TTL_MS,
    });
    switch (claim.kind) {
      case 'claimed':
        return {
          kind: 'run',
          hold: {
            finish: (status, response) =>
              this.store.finishIdempotency(scope, fingerprint, { status, response }),
            release: () => this.store.releaseIdempotency(scope, fingerprint),
          },
        };
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
