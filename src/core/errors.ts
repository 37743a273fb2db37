/**
 * Every failure the core reports is a WharfError with a stable code. HTTP layers map the
 * code to a status and to their own wire shape; nothing ever matches on message text.
 */
export const ERROR_STATUS = {
  VALIDATION_FAILED: 400,
  INVALID_NAME: 400,
  INVALID_CONTENT_TYPE: 400,
  INVALID_DIGEST: 400,
  CHECKSUM_MISMATCH: 400,
  SIZE_MISMATCH: 400,
  TOO_MANY_FILES: 400,
  /** A webhook URL whose host is private, loopback, link-local … (see WHARF_WEBHOOK_ALLOW_PRIVATE). */
  URL_NOT_ALLOWED: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  ACCOUNT_DISABLED: 403,
  QUOTA_EXCEEDED: 403,
  INVALID_SIGNATURE: 403,
  UNKNOWN_ACCESS_KEY: 403,
  MALFORMED_SIGNATURE: 400,
  URL_EXPIRED: 403,
  NOT_FOUND: 404,
  ID_EXISTS: 409,
  UPLOAD_INCOMPLETE: 409,
  /** Storage has no such multipart upload (never started, completed or aborted). */
  MULTIPART_NOT_FOUND: 404,
  /** A part named for completion is missing, or its ETag is not the stored part's. */
  INVALID_PART: 400,
  /** Parts named for completion are not in ascending order. */
  INVALID_PART_ORDER: 400,
  /** A part other than the last is smaller than 5 MiB. */
  PART_TOO_SMALL: 400,
  ASSET_VERIFYING: 409,
  UPLOAD_NOT_PENDING: 409,
  /** The webhook endpoint is disabled: enable it before replaying to it. */
  WEBHOOK_DISABLED: 409,
  UPLOAD_EXPIRED: 410,
  LENGTH_REQUIRED: 411,
  FILE_TOO_LARGE: 413,
  FILE_TOO_SMALL: 400,
  /** A path segment (an id, a name) longer than any Wharf issues or accepts. */
  URI_TOO_LONG: 414,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RANGE_NOT_SATISFIABLE: 416,
  /** The database or storage does not answer (GET /readyz). */
  NOT_READY: 503,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class WharfError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'WharfError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.details = details;
  }
}

export function isWharfError(err: unknown, code?: ErrorCode): err is WharfError {
  return err instanceof WharfError && (code === undefined || err.code === code);
}
