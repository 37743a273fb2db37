import { WharfError } from './errors.js';

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
