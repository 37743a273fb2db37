/**
 * Errors the SDK throws. Match on `code`, never on `message`: for refusals of the API it is the
 * API's own `error.code` (`CHECKSUM_MISMATCH`, `QUOTA_EXCEEDED`, `NOT_FOUND`, …, the table in
 * docs/reference.md); the SDK adds a few of its own, listed in `ClientErrorCode`.
 */
export class WharfError extends Error {
  override name = 'WharfError';
  /**
   * Set by `wharf.upload()` when the failure came after it declared an upload on the server:
   * that upload's id (`GET /v1/uploads/{id}`, `DELETE /v1/uploads/{id}`). Whether it is still
   * open depends on the failure (see docs/sdk.md): the SDK cancels one it will not resume.
   */
  uploadId?: string;
  constructor(
    /** Stable and machine-readable: the API's `error.code`, or one of `ClientErrorCode`. */
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Codes of failures the SDK itself finds (no answer from the API carries them). */
export type ClientErrorCode =
  /** No answer at all: refused, reset, timed out, DNS. Retried before it is thrown. */
  | 'NETWORK_ERROR'
  /** The bytes Wharf (or a download) reports are not the bytes that were read here. */
  | 'INTEGRITY_ERROR'
  /** An answer that is not what the API documents (not JSON, a missing header). */
  | 'UNEXPECTED_RESPONSE'
  /**
   * An upload's source no longer reads as it did when the upload began: a file deleted,
   * truncated or made unreadable while it was being sent. Not retried; the upload is given up.
   */
  | 'SOURCE_CHANGED'
  /** The caller's AbortSignal fired. */
  | 'ABORTED';

/** The API refused the request: `{"error": {"code", "message", "details"}}` with an HTTP status. */
export class WharfApiError extends WharfError {
  override name = 'WharfApiError';
  constructor(
    /** The HTTP status (the storage endpoint's XML errors keep theirs too). */
    readonly status: number,
    code: string,
    message: string,
    /** The error's `details` (`details.limit`, `details.algorithm`, …), when it has some. */
    readonly details: Record<string, unknown> = {},
    /** Seconds the server asked to wait (`Retry-After`), when it did. */
    readonly retryAfter?: number,
  ) {
    super(code, message);
  }
}

/** Whether `err` is a WharfError with this code (of the API, or of the SDK). */
export function isWharfError(err: unknown, code?: string): err is WharfError {
  return err instanceof WharfError && (code === undefined || err.code === code);
}
