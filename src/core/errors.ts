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
  /** A request Node's HTTP parser could not read (a non-numeric Content-Length, a broken header line). */
  MALFORMED_REQUEST: 400,
  /** The request's headers did not arrive within Node's headersTimeout. */
  REQUEST_TIMEOUT: 408,
  /** The request's headers are larger than Node's maxHeaderSize. */
  HEADERS_TOO_LARGE: 431,
  /** A webhook URL whose host is private, loopback, link-local … (see WHARF_WEBHOOK_ALLOW_PRIVATE). */
  URL_NOT_ALLOWED: 400,
  UNAUTHORIZED: 401,
  /** An upload token past its expiry: mint a new one. */
  TOKEN_EXPIRED: 401,
  /** A console request with more than one session cookie (one may be planted): none is used. */
  AMBIGUOUS_SESSION: 401,
  /** The operation needs the admin scope (managing keys). */
  FORBIDDEN: 403,
  /** The key or token lacks the scope (read, upload, write) the operation needs. */
  SCOPE_DENIED: 403,
  /** The key or token is confined to names starting with a prefix, and this name does not. */
  NAME_PREFIX_DENIED: 403,
  /** The key or token is confined to one namespace of named files, and this is another. */
  NAMESPACE_DENIED: 403,
  /** The upload token does not allow files of this type. */
  CONTENT_TYPE_DENIED: 403,
  /** The upload token has uploaded (or is uploading) as many files as it may. */
  TOKEN_FILES_EXHAUSTED: 403,
  /** The upload token's byte budget would be exceeded. */
  TOKEN_BYTES_EXHAUSTED: 403,
  ACCOUNT_DISABLED: 403,
  /** A state-changing console request without its session's CSRF token. */
  CSRF_FAILED: 403,
  QUOTA_EXCEEDED: 403,
  INVALID_SIGNATURE: 403,
  UNKNOWN_ACCESS_KEY: 403,
  MALFORMED_SIGNATURE: 400,
  URL_EXPIRED: 403,
  /** A signed download or transform URL whose signing key (or upload token) has been revoked since. */
  URL_REVOKED: 403,
  NOT_FOUND: 404,
  /** A method the resource does not take, named where a request may name its method (tus's X-HTTP-Method-Override). */
  METHOD_NOT_ALLOWED: 405,
  ID_EXISTS: 409,
  UPLOAD_INCOMPLETE: 409,
  /** A resumable append named an offset other than the upload's (the answer carries the right one). */
  OFFSET_MISMATCH: 409,
  /** A resumable upload's length indications disagree (declared length, bytes that arrived). */
  INCONSISTENT_LENGTH: 400,
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
  /** An events cursor beyond any this account was handed (a database restored from a backup). */
  CURSOR_AHEAD: 409,
  /** The webhook endpoint is disabled: enable it before replaying to it. */
  WEBHOOK_DISABLED: 409,
  /** A request with this Idempotency-Key is still being answered: retry after Retry-After seconds. */
  IDEMPOTENCY_KEY_IN_USE: 409,
  /** The Idempotency-Key was used with a different request (another path or body). */
  IDEMPOTENCY_KEY_REUSED: 422,
  /** The endpoint's signing secret is sealed under a server secret this server does not know. */
  WEBHOOK_SECRET_UNREADABLE: 409,
  UPLOAD_EXPIRED: 410,
  /** An events cursor after which retention removed events the reader has not listed. */
  CURSOR_EXPIRED: 410,
  LENGTH_REQUIRED: 411,
  FILE_TOO_LARGE: 413,
  FILE_TOO_SMALL: 400,
  /** A path segment (an id, a name) longer than any Wharf issues or accepts. */
  URI_TOO_LONG: 414,
  UNSUPPORTED_MEDIA_TYPE: 415,
  /** A download's If-Match or If-Unmodified-Since does not hold for the bytes (RFC 9110 §13.1). */
  PRECONDITION_FAILED: 412,
  RANGE_NOT_SATISFIABLE: 416,
  /** The key or token already has as many pending uploads as it may. */
  TOO_MANY_OPEN_UPLOADS: 429,
  /**
   * The account is already streaming as many upload bodies through this server process as it
   * may (WHARF_MAX_UPLOAD_STREAMS_PER_ACCOUNT): retry after Retry-After seconds.
   */
  TOO_MANY_UPLOAD_STREAMS: 429,
  /** The database or storage does not answer (GET /readyz). */
  NOT_READY: 503,
  /** Too many failed console sign-ins from one address: wait (details.retry_after, seconds). */
  RATE_LIMITED: 429,
  INTERNAL: 500,
  /** The system refused a file system call of Wharf's storage (EACCES, EPERM, EROFS): an operator's to mend. */
  STORAGE_DENIED: 500,
  /** A recorded object that storage no longer holds (removed behind Wharf's back). */
  BYTES_MISSING: 500,
  /** A dependency (the database, the object store) cannot be reached; retrying later may work. */
  SERVICE_UNAVAILABLE: 503,
  /** The disk the server writes to (or the database's) is full: nothing more fits until space is freed. */
  STORAGE_FULL: 507,
  /** Not an image Wharf transforms (a text file, SVG, HEIC, TIFF…). */
  UNSUPPORTED_IMAGE: 415,
  /** Sniffed as a supported image, but its bytes do not decode (truncated, corrupt). */
  IMAGE_UNDECODABLE: 422,
  /** More pixels or bytes than transforms accept (WHARF_IMAGE_MAX_PIXELS, WHARF_IMAGE_MAX_INPUT). */
  IMAGE_TOO_LARGE: 422,
  /**
   * The asset already has as many stored renderings as allowed (WHARF_IMAGE_MAX_VARIANTS), or,
   * for a keyless request, as many as its public share (half of them).
   */
  TOO_MANY_VARIANTS: 422,
  /** A video or PDF whose poster or first page is still being made by processing. */
  PREVIEW_PENDING: 409,
  /** A video or PDF with no preview (the tool is not installed, or it could not make one). */
  PREVIEW_UNAVAILABLE: 422,
  /** The account strips GPS positions, and this image carries one in a form Wharf cannot remove. */
  LOCATION_NOT_REMOVABLE: 422,
  /** Every transform slot and queue place is taken: retry after Retry-After seconds. */
  TRANSFORMS_BUSY: 503,
  /** A transform ran longer than WHARF_IMAGE_TIMEOUT. */
  TRANSFORM_TIMEOUT: 503,
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
