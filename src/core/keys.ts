import { createHash } from 'node:crypto';
import type { Clock } from './clock.js';
import { WharfError } from './errors.js';
import type { IdSource } from './ids.js';
import type { Account, ApiKey, Principal, Role } from './model.js';
import type { AccountChanges, Store } from './ports.js';

export const DEFAULT_ACCOUNT_ID = 'default';
const KEY_PREFIX = 'wharf_';
// Touching last_used_at on every request would make every read a write.
const TOUCH_INTERVAL_MS = 60_000;

/**
 * API keys are 32 random bytes, so a single SHA-256 is enough to store them safely (a
 * slow password hash protects low-entropy secrets; it would only cost every request
 * here). Lookup is by that hash, so no stored secret is ever compared byte by byte.
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export interface CreatedKey {
  key: ApiKey;
  /** The secret itself: shown once, never stored. */
  secret: string;
}

export class KeyService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly ids: IdSource,
  ) {}

  async ensureAccount(id: string, name: string): Promise<Account> {
    return this.store.ensureAccount({
      id,
      name,
      maxFileSize: null,
      storageQuota: null,
      disabled: false,
      stripGps: false,
      createdAt: this.clock.now(),
    });
  }

  async getAccount(id: string): Promise<Account> {
    const account = await this.store.getAccount(id);
    if (!account) throw new WharfError('NOT_FOUND', `No account "${id}".`);
    return account;
  }

  /** Disables or re-enables an account, or changes its limits (a disabled account's keys stop working at once). */
  async updateAccount(id: string, changes: AccountChanges): Promise<Account> {
    for (const limit of [changes.maxFileSize, changes.storageQuota]) {
      if (limit !== undefined && limit !== null && (!Number.isSafeInteger(limit) || limit < 0)) {
        throw new WharfError('VALIDATION_FAILED', 'Limits must be whole numbers of bytes.');
      }
    }
    const account = await this.store.updateAccount(id, changes);
    if (!account) throw new WharfError('NOT_FOUND', `No account "${id}".`);
    return account;
  }

  async create(accountId: string, name: string, role: Role): Promise<CreatedKey> {
    const account = await this.store.getAccount(accountId);
    if (!account) throw new WharfError('NOT_FOUND', `No account "${accountId}".`);
    const secret = KEY_PREFIX + this.ids.token(32);
    const key = this.newKey(accountId, name, role, secret);
    await this.store.insertKey(key, hashSecret(secret));
    return { key, secret };
  }

  /** Registers a key chosen by the operator (WHARF_API_KEY); idempotent across restarts. */
  async register(accountId: string, name: string, role: Role, secret: string): Promise<ApiKey> {
    if (secret.length < 16)
      throw new WharfError('VALIDATION_FAILED', 'An API key must be at least 16 characters.');
    return this.store.ensureKey(this.newKey(accountId, name, role, secret), hashSecret(secret));
  }

  async list(accountId?: string): Promise<ApiKey[]> {
    return this.store.listKeys(accountId);
  }

  async revoke(keyId: string, accountId?: string): Promise<void> {
    const revoked = await this.store.revokeKey(keyId, this.clock.now(), accountId);
    if (!revoked) throw new WharfError('NOT_FOUND', `No active key "${keyId}".`);
  }

  async count(): Promise<number> {
    return this.store.countKeys();
  }

  async authenticate(secret: string | undefined): Promise<Principal> {
    if (!secret) {
      throw new WharfError('UNAUTHORIZED', 'An API key is required (x-api-key or Authorization: Bearer).');
    }
    // Looked up on every request, never cached: a revoked key stops working at once, on
    // every node. One indexed join keeps that cheap.
    const found = await this.store.findKeyByHash(hashSecret(secret));
    if (!found || found.key.revokedAt !== null) {
      throw new WharfError('UNAUTHORIZED', 'The API key is invalid or revoked.');
    }
    const { key, account } = found;
    if (account.disabled) throw new WharfError('ACCOUNT_DISABLED', 'This account is disabled.');
    const now = this.clock.now();
    if (key.lastUsedAt === null || now - key.lastUsedAt > TOUCH_INTERVAL_MS) {
      await this.store.touchKey(key.id, now);
    }
    const principal: Principal = {
      accountId: key.accountId,
      keyId: key.id,
      role: key.role,
      maxFileSize: account.maxFileSize,
      storageQuota: account.storageQuota,
    };
    return principal;
  }

  private newKey(accountId: string, name: string, role: Role, secret: string): ApiKey {
    return {
      id: this.ids.id(),
      accountId,
      name,
      role,
      prefix: secret.slice(0, KEY_PREFIX.length + 6),
      createdAt: this.clock.now(),
      lastUsedAt: null,
      revokedAt: null,
    };
  }
}

export function requireAdmin(principal: Principal): void {
  if (principal.role !== 'admin') throw new WharfError('FORBIDDEN', 'This operation needs an admin key.');
}
