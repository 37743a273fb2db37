import { createHash } from 'node:crypto';
import { MEMBER_SCOPES, requireScope, SCOPES } from './authorization.js';
import type { Clock } from './clock.js';
import { WharfError } from './errors.js';
import { validateNamespace } from './files.js';
import type { IdSource } from './ids.js';
import type { Account, ApiKey, Principal, Role, Scope } from './model.js';
import { validateFileName } from './names.js';
import type { AccountChanges, KeyPage, KeyQuery, Store } from './ports.js';

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

/** What a new key may do: its scopes, and optionally a name prefix and a namespace it is confined to. */
export interface KeyAccess {
  scopes: readonly Scope[];
  namePrefix?: string | null | undefined;
  namespace?: string | null | undefined;
}

/** Checks a key's (or token's) confinement: a name prefix follows the file name rules, a namespace the namespace rules. */
export function validateConfinement(input: {
  namePrefix?: string | null | undefined;
  namespace?: string | null | undefined;
}): { namePrefix: string | null; namespace: string | null } {
  let namePrefix: string | null = null;
  if (input.namePrefix !== undefined && input.namePrefix !== null) {
    try {
      namePrefix = validateFileName(input.namePrefix);
    } catch (err) {
      if (err instanceof WharfError) {
        throw new WharfError(
          'VALIDATION_FAILED',
          `name_prefix: ${err.message.replace('The file name', 'It')}`,
        );
      }
      throw err;
    }
  }
  const namespace =
    input.namespace === undefined || input.namespace === null ? null : validateNamespace(input.namespace);
  return { namePrefix, namespace };
}

/** The canonical form of a key's access: sorted scopes (`admin` alone), checked confinement. */
export function keyAccess(
  access: Role | KeyAccess,
): Required<Pick<ApiKey, 'scopes' | 'namePrefix' | 'namespace'>> {
  if (access === 'admin' || access === 'member') {
    return { scopes: access === 'admin' ? ['admin'] : [...MEMBER_SCOPES], namePrefix: null, namespace: null };
  }
  const unknown = access.scopes.filter((scope) => !SCOPES.includes(scope));
  if (access.scopes.length === 0 || unknown.length > 0) {
    throw new WharfError('VALIDATION_FAILED', `Scopes are one or more of ${SCOPES.join(', ')}.`);
  }
  const confinement = validateConfinement(access);
  if (access.scopes.includes('admin')) {
    // An admin key manages keys, so it could mint itself an unconfined one.
    if (confinement.namePrefix !== null || confinement.namespace !== null) {
      throw new WharfError(
        'VALIDATION_FAILED',
        'An admin key cannot be confined to a name prefix or a namespace.',
      );
    }
    return { scopes: ['admin'], ...confinement };
  }
  return { scopes: [...new Set(access.scopes)].sort(), ...confinement };
}

/** `admin` or `member`, as key listings always said (a key of fewer scopes is a member too). */
export function roleOf(key: Pick<ApiKey, 'scopes'>): Role {
  return key.scopes.includes('admin') ? 'admin' : 'member';
}

/** Something that turns a presented upload token into a principal (the token service). */
export interface TokenAuthenticator {
  /** Whether the secret looks like an upload token (then it is looked up as one first). */
  recognises(secret: string): boolean;
  /** The token's principal; undefined when no token has this secret. */
  authenticate(secret: string): Promise<Principal | undefined>;
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
    private readonly tokens?: TokenAuthenticator,
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
    // As WHARF_MAX_FILE_SIZE: 0 would refuse every file, not lift the limit (null does that).
    if (changes.maxFileSize === 0) {
      throw new WharfError('VALIDATION_FAILED', 'A file size limit must be at least 1 byte.');
    }
    const account = await this.store.updateAccount(id, changes, this.clock.now());
    if (!account) throw new WharfError('NOT_FOUND', `No account "${id}".`);
    return account;
  }

  /**
   * A new key of an account (the operator's CLI; the API goes through `createAs`). `announce`,
   * when given, is shown the secret before it is stored, so a key that exists has always been
   * shown (a failure after it leaves a shown key that never worked, not a working key nobody
   * saw). The first admin key is printed that way.
   */
  async create(
    accountId: string,
    name: string,
    access: Role | KeyAccess,
    announce?: (secret: string) => void,
  ): Promise<CreatedKey> {
    const account = await this.store.getAccount(accountId);
    if (!account) throw new WharfError('NOT_FOUND', `No account "${accountId}".`);
    const secret = KEY_PREFIX + this.ids.token(32);
    const key = this.newKey(accountId, name, keyAccess(access), secret);
    announce?.(secret);
    await this.store.insertKey(key, hashSecret(secret));
    return { key, secret };
  }

  /** An admin key creates a key of its own account. */
  async createAs(principal: Principal, name: string, access: Role | KeyAccess): Promise<CreatedKey> {
    requireScope(principal, 'admin');
    return this.create(principal.accountId, name, access);
  }

  /**
   * Registers a key chosen by the operator (WHARF_API_KEY); idempotent across restarts. It shows
   * none of its characters (an empty prefix; named WHARF_API_KEY, and told apart from an earlier
   * value's key, named so too, by its id and creation): a generated key's prefix
   * is 12 of its 49, but an operator's may be as short as 16, and `keys list` printed 12 of them.
   * A row an earlier version registered loses its prefix at the next start.
   */
  async register(accountId: string, name: string, role: Role, secret: string): Promise<ApiKey> {
    if (secret.length < 16)
      throw new WharfError('VALIDATION_FAILED', 'An API key must be at least 16 characters.');
    const key = { ...this.newKey(accountId, name, keyAccess(role), secret), prefix: '' };
    return this.store.ensureKey(key, hashSecret(secret));
  }

  /** A page of keys, oldest first: of one account, or of every account without `accountId`. */
  async list(query: KeyQuery): Promise<KeyPage> {
    return this.store.listKeys(query);
  }

  async listAs(principal: Principal, page: Omit<KeyQuery, 'accountId'>): Promise<KeyPage> {
    requireScope(principal, 'admin');
    return this.list({ ...page, accountId: principal.accountId });
  }

  async revoke(keyId: string, accountId?: string): Promise<void> {
    const revoked = await this.store.revokeKey(keyId, this.clock.now(), accountId);
    if (!revoked) throw new WharfError('NOT_FOUND', `No active key "${keyId}".`);
  }

  async revokeAs(principal: Principal, keyId: string): Promise<void> {
    requireScope(principal, 'admin');
    return this.revoke(keyId, principal.accountId);
  }

  async count(): Promise<number> {
    return this.store.countKeys();
  }

  /** The caller a key or an upload token stands for. */
  async authenticate(secret: string | undefined): Promise<Principal> {
    if (!secret) {
      throw new WharfError('UNAUTHORIZED', 'An API key is required (x-api-key or Authorization: Bearer).');
    }
    if (this.tokens?.recognises(secret)) {
      // A key of the operator's choosing could look like a token: a miss falls through to keys.
      const principal = await this.tokens.authenticate(secret);
      if (principal) return principal;
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
      tokenId: null,
      scopes: key.scopes,
      namePrefix: key.namePrefix,
      namespace: key.namespace,
      maxFileSize: account.maxFileSize,
    };
    return principal;
  }

  private newKey(
    accountId: string,
    name: string,
    access: Pick<ApiKey, 'scopes' | 'namePrefix' | 'namespace'>,
    secret: string,
  ): ApiKey {
    return {
      id: this.ids.id(),
      accountId,
      name,
      ...access,
      prefix: secret.slice(0, KEY_PREFIX.length + 6),
      createdAt: this.clock.now(),
      lastUsedAt: null,
      revokedAt: null,
    };
  }
}
