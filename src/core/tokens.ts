import { hasScope, requireKey, requireScope } from './authorization.js';
import type { Clock } from './clock.js';
import { WharfError } from './errors.js';
import type { IdSource } from './ids.js';
import { hashSecret, type TokenAuthenticator, validateConfinement } from './keys.js';
import type { Principal, UploadToken } from './model.js';
import { validateTypeFilter } from './names.js';
import type { Store } from './ports.js';
import type { UploadService } from './uploads.js';

/** Recognisable in logs and secret scanners, and told apart from keys (`wharf_`) at a glance. */
export const TOKEN_PREFIX = 'wharf_ut_';
export const DEFAULT_TOKEN_SECONDS = 3600;
export const MAX_TOKEN_SECONDS = 86_400;
const MAX_CONTENT_TYPES = 50;
const MAX_METADATA_BYTES = 16 * 1024;
const MAX_SUBJECT_LENGTH = 255;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;

export interface TokenSettings {
  /** The most pending uploads a token may have; a token may ask for fewer. */
  maxOpenUploadsPerToken: number;
}

/** What the back end asks for when it mints a token (every limit optional). */
export interface TokenRequest {
  expiresInSeconds?: number | undefined;
  maxFiles?: number | undefined;
  maxBytes?: number | undefined;
  maxFileSize?: number | undefined;
  contentTypes?: string[] | undefined;
  namePrefix?: string | undefined;
  namespace?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
  subject?: string | undefined;
  maxOpenUploads?: number | undefined;
}

export interface MintedToken {
  token: UploadToken;
  /** Shown once; only its hash is stored. */
  secret: string;
}

export interface TokenPage {
  tokens: UploadToken[];
  nextCursor: string | null;
}

/**
 * Upload tokens: minted by a key with the `admin` or `upload` scope for one of the app's
 * users, never granting more than that key (its confinement carries over, and revoking the key
 * stops its tokens). A token only uploads, within its limits, and reads what it uploaded; it is
 * looked up on every request, so revocation and expiry take effect at once on every node.
 */
export class TokenService implements TokenAuthenticator {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly ids: IdSource,
    private readonly settings: TokenSettings,
    /** The account's file size limit (UploadService.maxFileSize), which a token never exceeds. */
    private readonly uploads: Pick<UploadService, 'maxFileSize'>,
  ) {}

  async mint(principal: Principal, request: TokenRequest): Promise<MintedToken> {
    requireKey(principal);
    requireScope(principal, 'upload');
    const now = this.clock.now();
    const seconds = request.expiresInSeconds ?? DEFAULT_TOKEN_SECONDS;
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_TOKEN_SECONDS) {
      throw new WharfError('VALIDATION_FAILED', `expires_in must be 1 to ${MAX_TOKEN_SECONDS} seconds.`);
    }
    const confinement = this.confinement(principal, request);
    const maxOpenUploads = request.maxOpenUploads ?? null;
    if (maxOpenUploads !== null && maxOpenUploads > this.settings.maxOpenUploadsPerToken) {
      throw new WharfError(
        'VALIDATION_FAILED',
        `max_open_uploads may be at most ${this.settings.maxOpenUploadsPerToken} on this server.`,
      );
    }
    const secret = TOKEN_PREFIX + this.ids.token(32);
    const token: UploadToken = {
      id: this.ids.id(),
      accountId: principal.accountId,
      keyId: principal.keyId,
      prefix: secret.slice(0, TOKEN_PREFIX.length + 6),
      subject: subjectOf(request.subject),
      ...confinement,
      contentTypes: contentTypesOf(request.contentTypes),
      metadata: metadataOf(request.metadata),
      maxFiles: limit(request.maxFiles, 'max_files'),
      maxBytes: limit(request.maxBytes, 'max_bytes'),
      maxFileSize: this.fileSizeLimit(principal, request.maxFileSize),
      maxOpenUploads: limit(maxOpenUploads ?? undefined, 'max_open_uploads'),
      usage: { filesUsed: 0, bytesUsed: 0, filesReserved: 0, bytesReserved: 0, openUploads: 0 },
      createdAt: now,
      expiresAt: now + seconds * 1000,
      revokedAt: null,
    };
    await this.store.insertToken(token, hashSecret(secret));
    return { token, secret };
  }

  /** The account's tokens (an admin key), or those the calling key minted. */
  async list(
    principal: Principal,
    query: { limit: number; cursor?: string | undefined },
  ): Promise<TokenPage> {
    return this.store.listTokens(principal.accountId, { ...query, keyId: this.minter(principal) });
  }

  async get(principal: Principal, id: string): Promise<UploadToken> {
    const token = await this.store.getToken(principal.accountId, id, this.minter(principal));
    if (!token) throw new WharfError('NOT_FOUND', 'No such upload token.');
    return token;
  }

  /** Revokes a token: every request with it is refused from now on, on every node. */
  async revoke(principal: Principal, id: string): Promise<void> {
    const revoked = await this.store.revokeToken(
      principal.accountId,
      id,
      this.clock.now(),
      this.minter(principal),
    );
    if (!revoked) throw new WharfError('NOT_FOUND', 'No active upload token with this id.');
  }

  recognises(secret: string): boolean {
    return secret.startsWith(TOKEN_PREFIX);
  }

  async authenticate(secret: string): Promise<Principal | undefined> {
    // Looked up on every request, never cached (one indexed join), like keys.
    const found = await this.store.findTokenByHash(hashSecret(secret));
    if (!found) return undefined;
    const { token, account, keyRevoked } = found;
    if (token.revokedAt !== null || keyRevoked) {
      throw new WharfError('UNAUTHORIZED', 'The upload token is invalid or revoked.');
    }
    if (this.clock.now() >= token.expiresAt) {
      throw new WharfError('TOKEN_EXPIRED', 'The upload token has expired; ask for a new one.');
    }
    if (account.disabled) throw new WharfError('ACCOUNT_DISABLED', 'This account is disabled.');
    return {
      accountId: token.accountId,
      keyId: token.keyId,
      tokenId: token.id,
      scopes: ['upload'],
      namePrefix: token.namePrefix,
      namespace: token.namespace,
      maxFileSize: account.maxFileSize,
      grant: {
        maxFileSize: token.maxFileSize,
        contentTypes: token.contentTypes,
        metadata: token.metadata,
        subject: token.subject,
        maxOpenUploads: token.maxOpenUploads,
        expiresAt: token.expiresAt,
      },
    };
  }

  /**
   * A token's largest file is never above its account's limit (the minting key's principal
   * carries it, or the server's applies): a larger one asked for is lowered to it, so the token
   * shows the limit its uploads actually meet rather than one FILE_TOO_LARGE refuses below.
   */
  private fileSizeLimit(principal: Principal, asked: number | undefined): number | null {
    const wanted = limit(asked, 'max_file_size');
    return wanted === null ? null : Math.min(wanted, this.uploads.maxFileSize(principal));
  }

  /** Whose tokens the caller manages: an admin key all of the account's, any other key its own. */
  private minter(principal: Principal): string | undefined {
    requireKey(principal);
    if (hasScope(principal, 'admin')) return undefined;
    requireScope(principal, 'upload');
    return principal.keyId;
  }

  /** A token is confined at least as much as the key that mints it. */
  private confinement(principal: Principal, request: TokenRequest) {
    const asked = validateConfinement(request);
    const namePrefix = asked.namePrefix ?? principal.namePrefix;
    if (principal.namePrefix !== null && !namePrefix!.startsWith(principal.namePrefix)) {
      throw new WharfError(
        'NAME_PREFIX_DENIED',
        `This key is confined to names starting with "${principal.namePrefix}"; so are its tokens.`,
        { name_prefix: principal.namePrefix },
      );
    }
    const namespace = asked.namespace ?? principal.namespace;
    if (principal.namespace !== null && namespace !== principal.namespace) {
      throw new WharfError(
        'NAMESPACE_DENIED',
        `This key is confined to the namespace "${principal.namespace}"; so are its tokens.`,
        { namespace: principal.namespace },
      );
    }
    return { namePrefix, namespace };
  }
}

function limit(value: number | undefined, field: string): number | null {
  if (value === undefined) return null;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new WharfError('VALIDATION_FAILED', `${field} must be a positive whole number.`);
  }
  return value;
}

function subjectOf(subject: string | undefined): string | null {
  if (subject === undefined) return null;
  if (subject.length === 0 || subject.length > MAX_SUBJECT_LENGTH || CONTROL.test(subject)) {
    throw new WharfError(
      'VALIDATION_FAILED',
      `subject must be 1 to ${MAX_SUBJECT_LENGTH} characters without control characters.`,
    );
  }
  return subject;
}

/** Exact types and `type/*` families; `*\/*` (or no list) allows any type. */
function contentTypesOf(types: string[] | undefined): string[] | null {
  if (types === undefined) return null;
  if (types.length === 0 || types.length > MAX_CONTENT_TYPES) {
    throw new WharfError('VALIDATION_FAILED', `content_types lists 1 to ${MAX_CONTENT_TYPES} types.`);
  }
  const patterns: string[] = [];
  for (const type of types) {
    let pattern: string | undefined;
    try {
      pattern = validateTypeFilter(type);
    } catch {
      throw new WharfError(
        'VALIDATION_FAILED',
        `content_types: "${type}" is not a media type or a family such as image/*.`,
      );
    }
    if (pattern === undefined) return null;
    // The type alone: parameters say nothing about what a file is (validateTypeFilter).
    patterns.push(pattern);
  }
  return [...new Set(patterns)];
}

function metadataOf(metadata: Record<string, unknown> | undefined): Record<string, unknown> {
  if (metadata === undefined) return {};
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw new WharfError('VALIDATION_FAILED', 'metadata must be an object.');
  }
  if (Buffer.byteLength(JSON.stringify(metadata), 'utf8') > MAX_METADATA_BYTES) {
    throw new WharfError('VALIDATION_FAILED', `metadata may be at most ${MAX_METADATA_BYTES} bytes of JSON.`);
  }
  return metadata;
}
