/**
 * Who may do what, in one place. Every service asks here before it acts; routes never compare
 * scopes themselves.
 *
 * Scopes: `admin` is everything; `read` lists, gets, downloads and signs download URLs;
 * `upload` creates and completes uploads on every flow and reads what it uploaded; `write`
 * changes what exists (deletes assets, changes access, uploads a file as public). An upload
 * token has the `upload` scope and nothing more.
 *
 * Confinement (optional, on a key or a token):
 * - `namePrefix`: every file it uploads must be named with the prefix (else NAME_PREFIX_DENIED);
 *   it reads, lists, changes and deletes only assets whose names start with it (others are 404,
 *   listings are filtered).
 * - `namespace`: everything it uploads is filed as a named file of that namespace (a plain
 *   upload of `photo.jpg` becomes a version of `<namespace>/photo.jpg`); a named-file upload to
 *   another namespace is NAMESPACE_DENIED. It reads and lists only assets filed in its
 *   namespace and named files of it (others are 404); it changes or deletes only assets filed
 *   nowhere else.
 * An upload token confined by neither writes no named file (NAMESPACE_DENIED, `namespace` null):
 * see `checkNamespace`.
 *
 * A caller that does not see the whole account (no `read` scope, or confined) is *isolated*:
 * see `UploadIntent.isolated` and `viewThrough`.
 */
import { WharfError } from './errors.js';
import type { Asset, Principal, Scope, Upload, UploadIntent } from './model.js';
import type { AssetQuery } from './ports.js';

export const SCOPES: readonly Scope[] = ['admin', 'read', 'upload', 'write'];

/** What a `member` key could do before scopes existed: everything but managing keys. */
export const MEMBER_SCOPES: readonly Scope[] = ['read', 'upload', 'write'];

export function hasScope(principal: Pick<Principal, 'scopes'>, scope: Scope): boolean {
  return principal.scopes.includes('admin') || principal.scopes.includes(scope);
}

export function requireScope(principal: Principal, scope: Scope): void {
  if (hasScope(principal, scope)) return;
  // Member keys always got FORBIDDEN for key management; that answer stays.
  if (scope === 'admin') throw new WharfError('FORBIDDEN', 'This operation needs an admin key.');
  throw new WharfError(
    'SCOPE_DENIED',
    principal.tokenId !== null
      ? 'An upload token may only upload, and read what it uploaded.'
      : `This operation needs a key with the "${scope}" scope.`,
    { required: scope },
  );
}

/** Reading one asset or upload: the `read` scope, or `upload` for what the caller uploaded. */
export function requireReadOrUpload(principal: Principal): void {
  if (hasScope(principal, 'read') || hasScope(principal, 'upload')) return;
  requireScope(principal, 'read');
}

/** A key, not an upload token (tokens cannot mint tokens or manage anything). */
export function requireKey(principal: Principal): void {
  if (principal.tokenId !== null) {
    throw new WharfError('SCOPE_DENIED', 'An upload token may only upload, and read what it uploaded.');
  }
}

export function isConfined(principal: Pick<Principal, 'namePrefix' | 'namespace'>): boolean {
  return principal.namePrefix !== null || principal.namespace !== null;
}

/** Whether the caller sees every asset of its account (then it may learn what the account holds). */
export function seesWholeAccount(principal: Principal): boolean {
  return hasScope(principal, 'read') && !isConfined(principal);
}

export function checkNamePrefix(principal: Principal, name: string): void {
  if (principal.namePrefix !== null && !name.startsWith(principal.namePrefix)) {
    throw new WharfError('NAME_PREFIX_DENIED', `File names must start with "${principal.namePrefix}".`, {
      name_prefix: principal.namePrefix,
    });
  }
}

/**
 * A named-file upload into `namespace`. An upload token confined by neither a namespace nor a
 * name prefix writes no named file at all: it is what a back end mints for an end user's
 * browser, which may upload its own files, never the next version of one every reader of the
 * name gets (the latest version of `branding/logo.png` is the account's, not a visitor's). A
 * key, whoever holds it, is the back end's own and writes any named file it may.
 */
export function checkNamespace(principal: Principal, namespace: string): void {
  if (principal.tokenId !== null && !isConfined(principal)) {
    throw new WharfError(
      'NAMESPACE_DENIED',
      'An upload token must be minted with a namespace or name_prefix to write named files.',
      { namespace: null },
    );
  }
  if (principal.namespace !== null && namespace !== principal.namespace) {
    throw new WharfError('NAMESPACE_DENIED', `Only the namespace "${principal.namespace}" is allowed.`, {
      namespace: principal.namespace,
    });
  }
}

/** Whether a media type is one of `allowed` (exact types, or families such as `image/*`). */
export function typeAllowed(contentType: string, allowed: readonly string[]): boolean {
  const essence = contentType.split(';')[0]!.trim().toLowerCase();
  return allowed.some((pattern) =>
    pattern.endsWith('/*') ? essence.startsWith(pattern.slice(0, -1)) : essence === pattern,
  );
}

function checkType(contentType: string, allowed: readonly string[] | undefined | null): void {
  if (allowed && !typeAllowed(contentType, allowed)) {
    throw new WharfError('CONTENT_TYPE_DENIED', `Files of type ${contentType} are not allowed here.`, {
      allowed,
    });
  }
}

/**
 * What the caller's scopes, confinement and token make of an upload it starts: refusals, and
 * what is stamped on the upload (named-file target, the token's metadata and subject, the
 * limits completion checks again). Every flow builds its uploads through this.
 */
export function uploadIntent(
  principal: Principal,
  file: { name: string; contentType: string; intent: UploadIntent },
): UploadIntent {
  requireScope(principal, 'upload');
  checkNamePrefix(principal, file.name);
  const intent: UploadIntent = { ...file.intent };
  // A type the client picks only as it sends the bytes (a form, an S3 client's multipart
  // upload) is checked at completion instead.
  if (intent.boundType !== false) checkType(file.contentType, principal.grant?.contentTypes);
  // Every flow that files an upload as a version of a named file is checked here, whoever
  // set the target (FileService.put, or a namespace's own filing just below).
  if (intent.file) checkNamespace(principal, intent.file.namespace);
  else if (principal.namespace !== null) intent.file = { namespace: principal.namespace, name: file.name };
  // Making a file public is changing access, not uploading.
  if (intent.access === 'public') requireScope(principal, 'write');
  const grant = principal.grant;
  if (grant) {
    // The token's metadata wins: it is what the app's back end decided, not the client.
    intent.metadata = { ...intent.metadata, ...grant.metadata };
    if (grant.subject !== null) intent.subject = grant.subject;
    if (grant.contentTypes !== null) intent.contentTypes = grant.contentTypes;
    if (grant.maxFileSize !== null) intent.maxSize = grant.maxFileSize;
  }
  if (!seesWholeAccount(principal)) intent.isolated = true;
  return intent;
}

/** Completion's second look at what only the bytes tell (size, and a type the client chose). */
export function checkCompletion(intent: UploadIntent, size: number, contentType: string): void {
  if (intent.maxSize !== undefined && size > intent.maxSize) {
    throw new WharfError(
      'FILE_TOO_LARGE',
      `The file (${size} bytes) is larger than the limit of ${intent.maxSize} bytes.`,
      { limit: intent.maxSize, size },
    );
  }
  checkType(contentType, intent.contentTypes);
}

/** Whether an upload was made by this caller (a key sees its own and its tokens' uploads). */
export function ownsUpload(principal: Principal, upload: Upload): boolean {
  if (upload.accountId !== principal.accountId) return false;
  return principal.tokenId !== null ? upload.tokenId === principal.tokenId : upload.keyId === principal.keyId;
}

/** Whether a `read` caller's confinement lets it see this upload. */
export function uploadWithinConfinement(principal: Principal, upload: Upload): boolean {
  if (principal.namePrefix !== null && !upload.name.startsWith(principal.namePrefix)) return false;
  return principal.namespace === null || upload.intent.file?.namespace === principal.namespace;
}

/** Whether the caller may see this upload at all (another's reads as missing). */
export function canSeeUpload(principal: Principal, upload: Upload): boolean {
  if (upload.accountId !== principal.accountId) return false;
  if (hasScope(principal, 'read') && uploadWithinConfinement(principal, upload)) return true;
  return ownsUpload(principal, upload);
}

/**
 * Whether a `read` caller's confinement lets it see this asset. `namespaces` are the
 * namespaces the asset is filed in (asked only of namespace-confined callers).
 */
export function assetWithinConfinement(
  principal: Principal,
  asset: Asset,
  namespaces: () => Promise<string[]>,
): Promise<boolean> | boolean {
  if (principal.namePrefix !== null && !asset.name.startsWith(principal.namePrefix)) return false;
  if (principal.namespace === null) return true;
  const namespace = principal.namespace;
  return namespaces().then((found) => found.includes(namespace));
}

/**
 * A listing as the caller may see it: its confinement narrows the query; undefined when
 * nothing can match (a name prefix outside the caller's).
 */
export function confineQuery(principal: Principal, query: AssetQuery): AssetQuery | undefined {
  requireScope(principal, 'read');
  const own = principal.namePrefix;
  let namePrefix = query.namePrefix;
  if (own !== null) {
    if (namePrefix === undefined || own.startsWith(namePrefix)) namePrefix = own;
    else if (!namePrefix.startsWith(own)) return undefined;
  }
  return {
    ...query,
    namePrefix,
    ...(principal.namespace !== null && { namespace: principal.namespace }),
  };
}

/**
 * How an isolated caller sees an asset its upload was deduplicated into: with what its own
 * upload declared (name, content type, metadata, subject, when) instead of what the first
 * uploader did, so nobody learns another user's file names or metadata by uploading the same
 * bytes, and a user's `photo.png` is served as the `image/png` it was sent as (an `<img>` of
 * it shows), not as whatever type the first uploader's client put on the same bytes. The
 * declared type is served under the same rules as any asset's (a type a browser could run is
 * never inline), and it is what this caller would have had without deduplication. Size,
 * digests and analysis come from the bytes, which the caller sent itself.
 */
export function viewThrough(asset: Asset, upload: Upload, at = upload.completedAt ?? asset.createdAt): Asset {
  return {
    ...asset,
    name: upload.name,
    contentType: upload.contentType,
    metadata: upload.intent.metadata ?? {},
    subject: upload.intent.subject ?? null,
    createdAt: at,
    updatedAt: at,
  };
}

/**
 * When a signed URL should expire: seconds from now (`expires_in`), or a moment, in
 * milliseconds since the epoch (`expires_at`). A moment makes signing deterministic: the same
 * asset, parameters, signer and moment give the same URL on every render, so browsers and CDNs
 * can cache what it names; seconds from now give a new URL every second.
 */
export type UrlExpiry = number | { at: number };

/**
 * The Unix second a URL the caller signs expires: what it asked for, at least a second and at
 * most `maxSeconds` from now (else VALIDATION_FAILED), but a token's URLs die with the token
 * (cut to its expiry, as before, never refused). A moment is taken to its whole second, so
 * asking for one gives the same expiry, and the same signature, however often it is asked.
 */
export function signedUrlExpires(
  principal: Principal,
  expiry: UrlExpiry,
  now: number,
  maxSeconds: number,
): number {
  const nowSeconds = Math.floor(now / 1000);
  let requested: number;
  if (typeof expiry === 'number') {
    if (!Number.isInteger(expiry) || expiry < 1 || expiry > maxSeconds) {
      throw new WharfError('VALIDATION_FAILED', `expires_in must be between 1 and ${maxSeconds} seconds.`);
    }
    requested = nowSeconds + expiry;
  } else {
    requested = Math.floor(expiry.at / 1000);
    if (!Number.isFinite(requested) || requested <= nowSeconds || requested > nowSeconds + maxSeconds) {
      const latest = new Date((nowSeconds + maxSeconds) * 1000).toISOString();
      throw new WharfError(
        'VALIDATION_FAILED',
        `expires_at must be in the future and at most ${maxSeconds} seconds from now (no later than ${latest}).`,
      );
    }
  }
  const grant = principal.grant;
  if (!grant) return requested;
  // Cut at the second the token expires in, whenever the URL is signed (as expires_in always
  // was): a moment past the token still gives one URL, the same on every signing.
  return Math.max(nowSeconds + 1, Math.min(requested, Math.floor(grant.expiresAt / 1000)));
}

/**
 * Who a signed URL names as its signer: the key, and the upload token when one signed
 * (`<key id>.<token id>`). Redeeming the URL checks that they are still active, so revoking
 * either stops the URLs they signed, as deactivating an S3 access key stops its presigned
 * URLs. undefined for a caller without a key (an ActiveStorage signed_id's holder): its URLs
 * are signed and redeemed as every URL was before signers were recorded.
 */
export function signerOf(principal: Principal): string | undefined {
  if (principal.keyId === '') return undefined;
  return principal.tokenId === null ? principal.keyId : `${principal.keyId}.${principal.tokenId}`;
}
