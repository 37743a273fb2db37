/**
 * Events: every state change an app may want to hear about, recorded in the same database
 * transaction as the change itself (an outbox), so a crash can neither lose one nor invent
 * one. `/v1/events` pages through them and webhooks deliver them; both read the table, never
 * an in-memory emitter.
 */

import { requireKey, requireScope, seesWholeAccount } from './authorization.js';
import { WharfError } from './errors.js';
import type { Asset, Principal, Upload, UploadEnding, UploadToken } from './model.js';
import type { EventStore } from './ports.js';
import { StreamCut } from './telemetry.js';
import { refusedForResources } from './unavailable.js';
import type { Webhook } from './webhooks.js';

export const EVENT_TYPES = [
  'upload.created',
  'upload.completed',
  'upload.failed',
  'upload.expired',
  'upload.cancelled',
  'asset.created',
  'asset.updated',
  'asset.processed',
  'asset.rejected',
  'asset.deleted',
  'token.created',
  'token.revoked',
  'webhook.disabled',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

// Kept on the upload itself too (Upload.ending), so its state says why, not only its event.
export type { UploadEnding } from './model.js';

/**
 * What an event carries: the records as they were at the change (snapshots, not references:
 * an asset deleted later still shows what was created). Rendered to the native API's JSON
 * when listed or delivered, so events and responses share one vocabulary.
 */
export interface EventData {
  upload?: Upload;
  asset?: Asset;
  /** upload.completed: the account already held the content, and `asset` is that one. */
  deduplicated?: boolean;
  /** upload.completed of a named file: the version it recorded. */
  version?: { namespace: string; name: string; version: number };
  /** upload.failed */
  error?: { code: string; message: string };
  /** token.created, token.revoked: the token (never its secret). */
  token?: UploadToken;
  /** webhook.disabled: the endpoint (never its secret). */
  webhook?: Webhook;
  /** Further facts of a change (webhook.disabled: `reason`, `message`; token.revoked: `reason`). */
  [other: string]: unknown;
}

export interface NewEvent {
  accountId: string;
  type: EventType;
  data: EventData;
  at: number;
}

export interface WharfEvent extends NewEvent {
  id: string;
  /** Position in the installation-wide order (internal: deliveries name it); events commit in this order. */
  seq: number;
  /** Position among its account's events, the API's `cursor`; they commit in this order. */
  cursor: number;
}

export interface EventQuery {
  /** Only events after this `cursor` (a position among the account's events). */
  after?: number | undefined;
  /** Type patterns (see matchesEventType); empty or absent means every type. */
  types?: readonly string[] | undefined;
  limit: number;
}

/**
 * Whether `type` matches one of `patterns`: an exact type, `upload.*` for a family, or `*`.
 * An empty list matches everything (a webhook subscribed to no types in particular).
 */
export function matchesEventType(patterns: readonly string[], type: string): boolean {
  if (patterns.length === 0) return true;
  return patterns.some(
    (p) => p === '*' || p === type || (p.endsWith('.*') && type.startsWith(p.slice(0, -1))),
  );
}

/** Whether a pattern could ever match (a typo in a subscription is refused, not ignored). */
export function isEventPattern(pattern: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('.*')) {
    const family = pattern.slice(0, -1);
    return EVENT_TYPES.some((t) => t.startsWith(family));
  }
  return (EVENT_TYPES as readonly string[]).includes(pattern);
}

// Builders: one place that says what each change records.

export function uploadCreated(upload: Upload): NewEvent {
  return { accountId: upload.accountId, type: 'upload.created', data: { upload }, at: upload.createdAt };
}

export function uploadEnded(upload: Upload, ending: UploadEnding, at: number): NewEvent {
  const ended: Upload = { ...upload, status: 'expired', ending };
  if (ending.reason === 'failed') {
    return {
      accountId: upload.accountId,
      type: 'upload.failed',
      data: { upload: ended, error: { code: ending.code, message: ending.message } },
      at,
    };
  }
  return {
    accountId: upload.accountId,
    type: ending.reason === 'expired' ? 'upload.expired' : 'upload.cancelled',
    data: { upload: ended },
    at,
  };
}

/** upload.completed, and asset.created when the content was new to the account. */
export function uploadCompleted(
  upload: Upload,
  asset: Asset,
  deduplicated: boolean,
  version: EventData['version'],
  at: number,
): NewEvent[] {
  const completed: NewEvent = {
    accountId: upload.accountId,
    type: 'upload.completed',
    data: { upload, asset, deduplicated, ...(version && { version }) },
    at,
  };
  if (deduplicated) return [completed];
  return [{ accountId: asset.accountId, type: 'asset.created', data: { asset }, at }, completed];
}

export function tokenChanged(
  type: 'token.created' | 'token.revoked',
  token: UploadToken,
  at: number,
): NewEvent {
  return { accountId: token.accountId, type, data: { token }, at };
}

/**
 * token.revoked of a token still live when the key that minted it was revoked: as a direct
 * revocation's, plus `reason: 'key_revoked'` (absent when the token itself was revoked).
 */
export function tokenRevokedWithKey(token: UploadToken, at: number): NewEvent {
  return { accountId: token.accountId, type: 'token.revoked', data: { token, reason: 'key_revoked' }, at };
}

export function assetChanged(
  type: 'asset.updated' | 'asset.processed' | 'asset.rejected' | 'asset.deleted',
  asset: Asset,
  at: number,
): NewEvent {
  return { accountId: asset.accountId, type, data: { asset }, at };
}

/** A page of the outbox. */
export interface EventPage {
  events: WharfEvent[];
  /** More events follow these (of the types asked for). */
  hasMore: boolean;
  /** Where to continue: the last event listed, or past every event this page passed over. */
  cursor: number;
}

/** What an app polling `/v1/events` may ask for. */
export interface EventListing {
  after?: number | undefined;
  types?: readonly string[] | undefined;
  limit?: number | undefined;
}

export const MAX_EVENTS_PER_PAGE = 1000;

/** Reads the outbox for one account (apps that poll instead of receiving webhooks). */
export class EventService {
  constructor(private readonly store: EventStore) {}

  /**
   * Events describe the whole account (every name, every upload), so only a key that reads the
   * whole account may list them: not an upload token, not a confined key.
   */
  async list(principal: Principal, listing: EventListing): Promise<EventPage> {
    requireKey(principal);
    requireScope(principal, 'read');
    if (!seesWholeAccount(principal)) {
      throw new WharfError(
        'SCOPE_DENIED',
        'Events describe the whole account: a confined key cannot list them.',
        {
          required: 'read',
        },
      );
    }
    const types = listing.types ?? [];
    const unknown = types.filter((t) => !isEventPattern(t));
    if (unknown.length > 0) {
      throw new WharfError('VALIDATION_FAILED', `Unknown event type: ${unknown.join(', ')}.`, {
        known: [...EVENT_TYPES],
      });
    }
    const limit = listing.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_EVENTS_PER_PAGE) {
      throw new WharfError('VALIDATION_FAILED', `limit must be 1 to ${MAX_EVENTS_PER_PAGE}.`);
    }
    // One more than asked: whether more are waiting is known, not guessed from a full page (a
    // page that holds exactly the last `limit` events would send the app to ask again for none).
    // Read before the page: every event up to this cursor had committed when the page was read
    // (an event commits with its account's counter), so a page with nothing more to list has
    // passed over all of them, of other types or pruned, and may hand this cursor on.
    const { latest } = await this.store.eventCursors(principal.accountId);
    const events = await this.store.listEvents(principal.accountId, {
      after: listing.after,
      types,
      limit: limit + 1,
    });
    if (listing.after !== undefined) await this.checkCursor(principal.accountId, listing.after);
    const page = events.slice(0, limit);
    const hasMore = events.length > limit;
    const last = page.at(-1)?.cursor ?? listing.after ?? 0;
    // Not the `after` it was given when it listed nothing: that cursor would fall behind what
    // retention removes while only other types (or none) come, and be refused 410 in time,
    // though the app missed nothing of what it asked for.
    return { events: page, hasMore, cursor: hasMore ? last : Math.max(last, latest) };
  }

  /**
   * A page after a cursor is only whole if every event after it is still there, and the cursor
   * is one this account was handed. Read after the page: retention that ran meanwhile is seen,
   * so no event is ever skipped in silence (a page refused for a prune that came just after it
   * was read names events the reader will now not see, which the refusal tells it).
   */
  private async checkCursor(accountId: string, after: number): Promise<void> {
    const { latest, pruned } = await this.store.eventCursors(accountId);
    if (after > latest) {
      throw new WharfError(
        'CURSOR_AHEAD',
        `No event of this account has cursor ${after}: the latest is ${latest}. ` +
          'Was the database restored from a backup? Continue from the latest cursor, and reconcile ' +
          'what you recorded after it.',
        { latest_cursor: String(latest) },
      );
    }
    if (after < pruned) {
      throw new WharfError(
        'CURSOR_EXPIRED',
        `Events after cursor ${after} (up to ${pruned}) were removed by retention ` +
          '(WHARF_EVENTS_RETENTION_DAYS) before they were listed. Continue with after=' +
          `${pruned}, and reconcile what you missed from the listings (GET /v1/assets).`,
        { pruned_cursor: String(pruned) },
      );
    }
  }
}

/**
 * How a pending upload made with an upload token ends when the token (or the key that minted it)
 * is revoked: failed, with the refusal its completion would get (401 UNAUTHORIZED).
 */
export const TOKEN_REVOKED_ENDING = {
  reason: 'failed',
  code: 'UNAUTHORIZED',
  message: 'The upload token this upload was made with was revoked before it completed; nothing was kept.',
} as const satisfies UploadEnding;

/**
 * What a request on an upload that has ended without an asset is told: the refusal it ended with
 * when its token's revocation ended it (401, as its completion would have been refused), or
 * UPLOAD_EXPIRED.
 */
export function endedRefusal(upload: Upload): WharfError {
  if (
    upload.tokenId !== null &&
    upload.ending?.reason === 'failed' &&
    upload.ending.code === 'UNAUTHORIZED'
  ) {
    return new WharfError('UNAUTHORIZED', TOKEN_REVOKED_ENDING.message);
  }
  return new WharfError('UPLOAD_EXPIRED', 'This upload has expired.');
}

/** How a failed upload is reported in its `upload.failed` event. */
export function failureOf(err: unknown): UploadEnding {
  // A disk that found no room (ENOSPC, EDQUOT) or no file descriptor left is recorded as the
  // client is answered (507 STORAGE_FULL, 503) and as the metrics count it: not as a hang-up.
  const refusal = refusedForResources(err);
  if (refusal instanceof WharfError)
    return { reason: 'failed', code: refusal.code, message: refusal.message };
  // Wharf cut the body itself (its client sent nothing for WHARF_BODY_IDLE_TIMEOUT, or a stop's
  // deadline came): said as such, under the code the metrics count it under, not as a hang-up.
  if (err instanceof StreamCut) return { reason: 'failed', code: err.countedAs, message: err.message };
  // Not a refusal of Wharf's: the client went away mid-body, or storage failed.
  return {
    reason: 'failed',
    code: 'UPLOAD_INTERRUPTED',
    message: 'The upload did not finish: the connection ended or storage failed.',
  };
}
