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
  UPLOAD_EXPIRED: 410,
  LENGTH_REQUIRED: 411,
  FILE_TOO_LARGE: 413,
  FILE_TOO_SMALL: 400,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RANGE_NOT_SATISFIABLE: 416,
  /** Not an image Wharf transforms (a text file, SVG, HEIC, TIFF…). */
  UNSUPPORTED_IMAGE: 415,
  /** Sniffed as a supported image, but its bytes do not decode (truncated, corrupt). */
  IMAGE_UNDECODABLE: 422,
  /** More pixels or bytes than transforms accept (WHARF_IMAGE_MAX_PIXELS, WHARF_IMAGE_MAX_INPUT). */
  IMAGE_TOO_LARGE: 422,
  /** The asset already has as many stored renderings as allowed (WHARF_IMAGE_MAX_VARIANTS). */
  TOO_MANY_VARIANTS: 422,
  /** A video or PDF whose poster or first page is still being made by processing. */
  PREVIEW_PENDING: 409,
  /** A video or PDF with no preview (the tool is not installed, or it could not make one). */
  PREVIEW_UNAVAILABLE: 422,
  /** The account strips GPS positions, and this image carries one in a form Wharf cannot remove. */
  LOCATION_NOT_REMOVABLE: 422,
  INTERNAL: 500,
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
