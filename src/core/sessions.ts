/**
 * Web console sessions: an API key exchanged for a session id the browser keeps in an HttpOnly
 * cookie, so page code never holds the key after the exchange. The id is 32 random bytes; only
 * its SHA-256 is stored (looked up by hash, like keys). Each session stands for the key it was
 * made with and is looked up on every request with that key and its account, so signing out,
 * revoking the key or disabling the account ends it at once on every node.
 *
 * Every state-changing console request must also carry the session's CSRF token: an HMAC of the
 * session id under a key derived from the server secret, so it is never stored and never valid
 * for another session. The page gets it from the sign-in answer (or GET on the session) and
 * sends it as a header, which a cross-site form or image cannot.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Clock } from './clock.js';
import { WharfError } from './errors.js';
import type { IdSource } from './ids.js';
import { hashSecret, type KeyService } from './keys.js';
import type { Account, ApiKey, Principal } from './model.js';
import type { ConsoleSession, Store } from './ports.js';

export interface SessionSettings {
  /** The absolute lifetime of a session (WHARF_CONSOLE_SESSION_TTL). */
  ttlMs: number;
  /** A session unused this long ends (WHARF_CONSOLE_IDLE_TIMEOUT). */
  idleMs: number;
}

/** Failed sign-ins one client address may make per window before it must wait. */
export const SIGN_IN_FAILURES_ALLOWED = 10;
export const SIGN_IN_WINDOW_MS = 10 * 60_000;
// Recording every use would make every console read a write. A session may end this much
// before its idle timeout after its last use: a tenth of the timeout, a minute at most.
const TOUCH_INTERVAL_MS = 60_000;
const TOUCH_FRACTION = 10;
const PRUNE_BATCH = 1000;

export interface OpenedSession {
  /** The session id: the cookie's value, shown only now (only its hash is stored). */
  id: string;
  csrfToken: string;
  session: ConsoleSession;
  key: ApiKey;
  account: Account;
}

export interface ActiveSession {
  session: ConsoleSession;
  key: ApiKey;
  account: Account;
  principal: Principal;
}

/**
 * Counts failed sign-ins per client address in fixed windows. Hand-written rather than a rate
 * limiter plugin because only failures may count (a user signing in again and again is never
 * locked out by their own successes) and because it reads the core's clock, which tests move.
 * It is per node, in memory: a key has 256 random bits, so this is not what keeps keys from being
 * guessed; it keeps one client from hammering the key lookups and filling the logs.
 */
class FailureCounter {
  private readonly windows = new Map<string, { start: number; failures: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly allowed: number,
    private readonly windowMs: number,
  ) {}

  /** Milliseconds until `client` may try again, or 0 when it may now. */
  retryAfter(client: string): number {
    const now = this.clock.now();
    const window = this.windows.get(client);
    if (!window || now - window.start >= this.windowMs) return 0;
    return window.failures >= this.allowed ? window.start + this.windowMs - now : 0;
  }

  fail(client: string): void {
    const now = this.clock.now();
    const window = this.windows.get(client);
    if (!window || now - window.start >= this.windowMs) {
      if (this.windows.size > 10_000) this.forgetOld(now);
      this.windows.set(client, { start: now, failures: 1 });
    } else {
      window.failures += 1;
    }
  }

  private forgetOld(now: number): void {
    for (const [client, window] of this.windows) {
      if (now - window.start >= this.windowMs) this.windows.delete(client);
    }
  }
}

export class SessionService {
  private readonly failures: FailureCounter;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly ids: IdSource,
    private readonly keys: KeyService,
    private readonly csrfKey: Buffer,
    private readonly settings: SessionSettings,
  ) {
    this.failures = new FailureCounter(clock, SIGN_IN_FAILURES_ALLOWED, SIGN_IN_WINDOW_MS);
  }

  /** Exchanges an API key for a session; `client` (an address) is what failures are counted by. */
  async signIn(secret: string, client: string): Promise<OpenedSession> {
    const wait = this.failures.retryAfter(client);
    if (wait > 0) {
      // The console shows the message as it is, so it says how long (Retry-After says it to programs).
      const seconds = Math.ceil(wait / 1000);
      throw new WharfError(
        'RATE_LIMITED',
        `Too many failed sign-ins from this address; try again in ${seconds} s.`,
        { retry_after: seconds },
      );
    }
    let principal: Principal;
    try {
      principal = await this.keys.authenticate(secret);
      if (principal.tokenId !== null) {
        throw new WharfError('UNAUTHORIZED', 'Sign in with an API key; an upload token cannot sign in.');
      }
    } catch (err) {
      if (err instanceof WharfError && (err.code === 'UNAUTHORIZED' || err.code === 'TOKEN_EXPIRED')) {
        this.failures.fail(client);
        throw new WharfError('UNAUTHORIZED', 'The API key is invalid or revoked.');
      }
      throw err;
    }
    const found = await this.store.findKeyByHash(hashSecret(secret));
    if (!found) throw new WharfError('UNAUTHORIZED', 'The API key is invalid or revoked.');
    const now = this.clock.now();
    const id = this.ids.token(32);
    const endsAt = now + this.settings.ttlMs;
    const session: ConsoleSession = {
      idHash: hashSecret(id),
      accountId: found.key.accountId,
      keyId: found.key.id,
      createdAt: now,
      lastSeenAt: now,
      expiresAt: Math.min(endsAt, now + this.settings.idleMs),
      endsAt,
      revokedAt: null,
    };
    await this.store.insertSession(session);
    return { id, csrfToken: this.csrfToken(id), session, key: found.key, account: found.account };
  }

  /** The session a cookie names, and the caller it stands for; UNAUTHORIZED when it is over. */
  async authenticate(id: string | undefined): Promise<ActiveSession> {
    if (!id) throw new WharfError('UNAUTHORIZED', 'Sign in to the console first.');
    const found = await this.store.findSessionByHash(hashSecret(id));
    const now = this.clock.now();
    if (!found) throw new WharfError('UNAUTHORIZED', 'The session is unknown; sign in again.');
    const { session, key, account } = found;
    if (session.revokedAt !== null || key.revokedAt !== null) {
      throw new WharfError('UNAUTHORIZED', 'The session was ended; sign in again.');
    }
    if (now >= session.expiresAt || now >= session.endsAt) {
      throw new WharfError('UNAUTHORIZED', 'The session expired; sign in again.');
    }
    if (account.disabled) throw new WharfError('ACCOUNT_DISABLED', 'This account is disabled.');
    if (now - session.lastSeenAt >= Math.min(TOUCH_INTERVAL_MS, this.settings.idleMs / TOUCH_FRACTION)) {
      const expiresAt = Math.min(session.endsAt, now + this.settings.idleMs);
      await this.store.touchSession(session.idHash, now, expiresAt);
      session.lastSeenAt = now;
      session.expiresAt = expiresAt;
    }
    // The key's own principal, as KeyService.authenticate builds it for a presented key.
    const principal: Principal = {
      accountId: key.accountId,
      keyId: key.id,
      tokenId: null,
      scopes: key.scopes,
      namePrefix: key.namePrefix,
      namespace: key.namespace,
      maxFileSize: account.maxFileSize,
    };
    return { session, key, account, principal };
  }

  csrfToken(id: string): string {
    return createHmac('sha256', this.csrfKey).update(id).digest('base64url');
  }

  /** Throws CSRF_FAILED unless `presented` is the session's CSRF token (compared in constant time). */
  checkCsrf(id: string, presented: string | undefined): void {
    const expected = Buffer.from(this.csrfToken(id));
    const given = Buffer.from(presented ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new WharfError(
        'CSRF_FAILED',
        'This request needs the console session’s CSRF token in the x-csrf-token header.',
      );
    }
  }

  /** Signing out: the session ends on every node. */
  async signOut(id: string): Promise<void> {
    await this.store.revokeSession(hashSecret(id), this.clock.now());
  }

  /** Removes sessions that expired or ended (the periodic sweep). */
  async prune(): Promise<number> {
    let removed = 0;
    for (;;) {
      const n = await this.store.pruneSessions(this.clock.now(), PRUNE_BATCH);
      removed += n;
      if (n < PRUNE_BATCH) return removed;
    }
  }
}
