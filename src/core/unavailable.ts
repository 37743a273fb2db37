import { isWharfError, WharfError } from './errors.js';

/**
 * errno codes of a connection that could not be made, broke, or took too long: the service
 * at the other end is away (stopped, restarting, unreachable), not refusing the request.
 */
const CONNECTION_FAILURES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
]);

/**
 * Whether `err` is a failed connection, by its `code` (Node's system errors, and the
 * AggregateError of a connection attempt to several addresses), never by its message.
 */
export function isConnectionFailure(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && CONNECTION_FAILURES.has(code)) return true;
  const errors = (err as { errors?: unknown }).errors;
  return Array.isArray(errors) && errors.length > 0 && errors.every(isConnectionFailure);
}

/**
 * The one refusal for "a dependency is away": 503 SERVICE_UNAVAILABLE (clients retry after
 * the Retry-After the HTTP layer adds). The original failure stays as its `cause` for the log.
 */
export function serviceUnavailable(dependency: string, cause: unknown): WharfError {
  const err = new WharfError(
    'SERVICE_UNAVAILABLE',
    `The ${dependency} is unavailable at the moment; try again shortly.`,
  );
  (err as Error).cause = cause;
  return err;
}

/**
 * errno codes of a write that found no room: the device is full (ENOSPC) or the user's disk
 * quota is used up (EDQUOT). Told by `code` only, like connection failures.
 */
const FULL_DEVICE = new Set(['ENOSPC', 'EDQUOT']);

/** Whether `err` is a write that found the disk full (see storageFull). */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && FULL_DEVICE.has(code);
}

/**
 * Whether `err` is a write that found no room: the disk's errno, or a refusal already named
 * STORAGE_FULL (an S3 store's used-up quota, SQLite's or PostgreSQL's full disk).
 */
export function isStorageFull(err: unknown): boolean {
  return isDiskFull(err) || isWharfError(err, 'STORAGE_FULL');
}

/**
 * The one refusal for "no room left": 507 STORAGE_FULL. Not a 503: waiting does not help until
 * an operator frees space, so it is logged at error. The original failure stays as its `cause`.
 */
export function storageFull(cause: unknown): WharfError {
  const err = new WharfError(
    'STORAGE_FULL',
    'The server has no room left to store this; try again once space has been freed.',
  );
  (err as Error).cause = cause;
  return err;
}

/**
 * errno codes of a process (EMFILE) or a system (ENFILE) with no file descriptor left: too
 * many connections and files open at once. Load, not a fault: descriptors come back as
 * requests end, so waiting helps. Told by `code` only, like a full disk.
 */
const NO_DESCRIPTORS = new Set(['EMFILE', 'ENFILE']);

/** Whether `err` is a file or socket that could not be opened for want of descriptors. */
export function isOutOfDescriptors(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && NO_DESCRIPTORS.has(code);
}

/**
 * Out of file descriptors (see isOutOfDescriptors) as the one refusal for "try again shortly":
 * 503 SERVICE_UNAVAILABLE, with the Retry-After the HTTP layer adds. Not INTERNAL: clients
 * retry a 503, and a burst of connections is not a bug of Wharf's. The errno stays the `cause`.
 */
export function outOfDescriptors(cause: unknown): WharfError {
  const err = new WharfError(
    'SERVICE_UNAVAILABLE',
    'The server has too many connections and files open at the moment; try again shortly.',
  );
  (err as Error).cause = cause;
  return err;
}

/**
 * errno codes of a file system call the system refused: the data directory (or a part of it, or
 * one file) lost its permissions or went read-only under a running node. Not a bug of Wharf's
 * (INTERNAL would say so) and not the client's; nor load, which waiting outlasts (a 503 and its
 * Retry-After would hold a client, the SDK, in a wait of minutes for what only an operator
 * mends). So 500 under a code of its own, which the operator's logs and metrics name.
 */
const NOT_PERMITTED = new Set(['EACCES', 'EPERM', 'EROFS']);

/** Whether `err` is a file system call refused by permissions or a read-only mount. */
export function isStorageDenied(err: unknown): boolean {
  const e = err as { code?: unknown; syscall?: unknown } | null;
  // A syscall names a file system call; the same codes without one are not the disk's.
  return typeof e?.code === 'string' && NOT_PERMITTED.has(e.code) && typeof e.syscall === 'string';
}

/** A refused file system call (see isStorageDenied) as 500 STORAGE_DENIED; the errno stays the `cause`. */
export function storageDenied(cause: unknown): WharfError {
  const { code, syscall } = cause as { code?: string; syscall?: string };
  const err = new WharfError(
    'STORAGE_DENIED',
    `The server may not use its storage (${code} on ${syscall}): an operator must mend its permissions.`,
  );
  (err as Error).cause = cause;
  return err;
}

/**
 * `err` as the refusal for a resource that ran out or was taken away: STORAGE_FULL for a full
 * disk, SERVICE_UNAVAILABLE for no file descriptor left, STORAGE_DENIED for a data directory the
 * system no longer lets this node use; otherwise `err` itself.
 */
export function refusedForResources(err: unknown): unknown {
  if (isDiskFull(err)) return storageFull(err);
  if (isStorageDenied(err)) return storageDenied(err);
  return isOutOfDescriptors(err) ? outOfDescriptors(err) : err;
}

/** One line for an error's cause: its message, or the codes of a connection tried at several addresses. */
export function describeCause(cause: unknown): string | undefined {
  if (!cause || typeof cause !== 'object') return undefined;
  const { message, code, errors } = cause as { message?: unknown; code?: unknown; errors?: unknown };
  if (typeof message === 'string' && message !== '') return message;
  if (Array.isArray(errors)) {
    const parts = errors.map((inner) => describeCause(inner)).filter((part): part is string => !!part);
    if (parts.length > 0) return parts.join('; ');
  }
  return typeof code === 'string' ? code : undefined;
}
