import type { FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_STATUS, type ErrorCode, isWharfError, WharfError } from '../../core/errors.js';
import { refusedForResources } from '../../core/unavailable.js';
import { logFailure, mapError } from '../plugins/errors.js';
import { settleRefusedBody } from '../refused-body.js';
import { escapeXml } from './s3-xml.js';

interface S3Error {
  status: number;
  code: string;
}

const ACCESS_DENIED: S3Error = { status: 403, code: 'AccessDenied' };
const INVALID_ARGUMENT: S3Error = { status: 400, code: 'InvalidArgument' };
const INTERNAL_ERROR: S3Error = { status: 500, code: 'InternalError' };
const SERVICE_UNAVAILABLE: S3Error = { status: 503, code: 'ServiceUnavailable' };
// Ceph RGW's answer when a user's or bucket's quota (bytes or objects) would be passed.
const QUOTA_EXCEEDED: S3Error = { status: 403, code: 'QuotaExceeded' };

/**
 * How the core's refusals read to an S3 client (codes and statuses as AWS S3 uses them). Total
 * on purpose: a code missing here would answer 500 InternalError, which S3 SDKs and Uppy retry,
 * re-sending the whole body for a refusal that cannot change; a new code must be placed here.
 * The message is always the core's, so a client can tell the refusals one code covers apart.
 */
export const S3_ERRORS: Record<ErrorCode, S3Error> = {
  // A dependency of Wharf's is away: S3's own answer for "try again" (SDKs retry it).
  SERVICE_UNAVAILABLE,
  NOT_READY: SERVICE_UNAVAILABLE,
  // AWS has no code for a full disk (S3 never fills); MinIO answers 507 too, as XMinioStorageFull.
  STORAGE_FULL: { status: 507, code: 'InsufficientStorage' },
  INTERNAL: INTERNAL_ERROR,
  BYTES_MISSING: INTERNAL_ERROR,
  STORAGE_DENIED: INTERNAL_ERROR,

  INVALID_SIGNATURE: { status: 403, code: 'SignatureDoesNotMatch' },
  UNKNOWN_ACCESS_KEY: { status: 403, code: 'InvalidAccessKeyId' },
  MALFORMED_SIGNATURE: { status: 400, code: 'AuthorizationQueryParametersError' },
  URL_EXPIRED: ACCESS_DENIED,
  URL_REVOKED: ACCESS_DENIED,
  // POST policies: an unmet condition or an expired policy.
  FORBIDDEN: ACCESS_DENIED,
  UPLOAD_EXPIRED: ACCESS_DENIED,
  UPLOAD_NOT_PENDING: ACCESS_DENIED,
  // S3 answers a missing key 403 to whoever may not list the bucket.
  NOT_FOUND: ACCESS_DENIED,

  // The key or upload token behind the URL, refused when the upload is stored or completed:
  // S3 refuses what a policy forbids with AccessDenied (a POST policy's unmet condition too).
  UNAUTHORIZED: ACCESS_DENIED,
  TOKEN_EXPIRED: ACCESS_DENIED,
  SCOPE_DENIED: ACCESS_DENIED,
  NAME_PREFIX_DENIED: ACCESS_DENIED,
  NAMESPACE_DENIED: ACCESS_DENIED,
  CONTENT_TYPE_DENIED: ACCESS_DENIED,
  CSRF_FAILED: ACCESS_DENIED,
  AMBIGUOUS_SESSION: ACCESS_DENIED,
  // Retrying does not help until another upload ends; S3's SlowDown would invite a retry.
  TOO_MANY_OPEN_UPLOADS: ACCESS_DENIED,
  // The account streams as many bodies as it may: S3's throttling answer, which SDKs and Uppy
  // retry with backoff, as they should here (one of the account's own uploads will end).
  TOO_MANY_UPLOAD_STREAMS: { status: 503, code: 'SlowDown' },
  // S3's own code for an account that may not be used.
  ACCOUNT_DISABLED: { status: 403, code: 'AccountProblem' },
  // The account's quota and a token's budget of bytes or files are quotas as Ceph RGW has them.
  QUOTA_EXCEEDED,
  TOKEN_BYTES_EXHAUSTED: QUOTA_EXCEEDED,
  TOKEN_FILES_EXHAUSTED: QUOTA_EXCEEDED,

  CHECKSUM_MISMATCH: { status: 400, code: 'BadDigest' },
  INVALID_DIGEST: { status: 400, code: 'InvalidDigest' },
  SIZE_MISMATCH: { status: 400, code: 'IncompleteBody' },
  INCONSISTENT_LENGTH: { status: 400, code: 'IncompleteBody' },
  FILE_TOO_LARGE: { status: 400, code: 'EntityTooLarge' },
  FILE_TOO_SMALL: { status: 400, code: 'EntityTooSmall' },
  LENGTH_REQUIRED: { status: 411, code: 'MissingContentLength' },
  MULTIPART_NOT_FOUND: { status: 404, code: 'NoSuchUpload' },
  INVALID_PART: { status: 400, code: 'InvalidPart' },
  INVALID_PART_ORDER: { status: 400, code: 'InvalidPartOrder' },
  PART_TOO_SMALL: { status: 400, code: 'EntityTooSmall' },
  URI_TOO_LONG: { status: 400, code: 'KeyTooLongError' },
  // What the HTTP parser refuses is answered before any route, in the native shape (see
  // http/client-errors.ts): never by this endpoint. Listed to keep the table total.
  MALFORMED_REQUEST: INVALID_ARGUMENT,
  REQUEST_TIMEOUT: INVALID_ARGUMENT,
  HEADERS_TOO_LARGE: INVALID_ARGUMENT,
  // A tus request's X-HTTP-Method-Override naming no tus method: never this endpoint's either.
  METHOD_NOT_ALLOWED: INVALID_ARGUMENT,
  RANGE_NOT_SATISFIABLE: { status: 416, code: 'InvalidRange' },
  // A download's precondition (never this endpoint's): S3's own code and status for it.
  PRECONDITION_FAILED: { status: 412, code: 'PreconditionFailed' },
  // S3's answer for an object not readable in its current state (an archived one).
  ASSET_VERIFYING: { status: 403, code: 'InvalidObjectState' },
  // A body in a Content-Encoding this endpoint does not decode (aws-chunked, gzip): an argument
  // it will not take, 400 as S3 answers InvalidArgument. (A Content-Type that is not a media
  // type is 415, see asRefusal.)
  UNSUPPORTED_MEDIA_TYPE: INVALID_ARGUMENT,
  // S3's answer to too many requests; here, console sign-ins (never this endpoint's).
  RATE_LIMITED: { status: 503, code: 'SlowDown' },
  TRANSFORMS_BUSY: SERVICE_UNAVAILABLE,
  TRANSFORM_TIMEOUT: SERVICE_UNAVAILABLE,

  // Requests S3 has no word for: an argument it will not take, with the core's message.
  VALIDATION_FAILED: INVALID_ARGUMENT,
  INVALID_NAME: INVALID_ARGUMENT,
  INVALID_CONTENT_TYPE: INVALID_ARGUMENT,
  TOO_MANY_FILES: INVALID_ARGUMENT,
  URL_NOT_ALLOWED: INVALID_ARGUMENT,
  ID_EXISTS: INVALID_ARGUMENT,
  UPLOAD_INCOMPLETE: INVALID_ARGUMENT,
  OFFSET_MISMATCH: INVALID_ARGUMENT,
  WEBHOOK_DISABLED: INVALID_ARGUMENT,
  CURSOR_AHEAD: INVALID_ARGUMENT,
  CURSOR_EXPIRED: INVALID_ARGUMENT,
  IDEMPOTENCY_KEY_IN_USE: INVALID_ARGUMENT,
  IDEMPOTENCY_KEY_REUSED: INVALID_ARGUMENT,
  WEBHOOK_SECRET_UNREADABLE: INVALID_ARGUMENT,
  // A strip_gps account refusing an image (the bytes of a presigned PUT are checked here).
  LOCATION_NOT_REMOVABLE: INVALID_ARGUMENT,
  UNSUPPORTED_IMAGE: INVALID_ARGUMENT,
  IMAGE_UNDECODABLE: INVALID_ARGUMENT,
  IMAGE_TOO_LARGE: INVALID_ARGUMENT,
  TOO_MANY_VARIANTS: INVALID_ARGUMENT,
  PREVIEW_PENDING: INVALID_ARGUMENT,
  PREVIEW_UNAVAILABLE: INVALID_ARGUMENT,
};

/** S3 codes a refusal may name in `details.s3Code` where the core's code is too coarse. */
// InvalidRequest: an x-amz-checksum-* algorithm the endpoint does not verify (S3's answer for one it does not know).
const SPECIFIC_CODES = new Set(['MalformedXML', 'InvalidRequest']);

/**
 * A Content-Type that is not a media type, which Fastify refuses to read. S3 takes any type
 * string and so has no answer of its own; 415 says what is wrong with the request.
 */
const UNPARSEABLE_CONTENT_TYPE: S3Error = { status: 415, code: 'InvalidArgument' };

/**
 * Fastify's own refusals (a Content-Type it cannot parse, before any route runs) as the core's
 * codes, so they read as S3 errors too rather than as internal ones.
 */
function asRefusal(failure: unknown): { err: unknown; s3?: S3Error } {
  const err = refusedForResources(failure);
  if (isWharfError(err)) return { err };
  const mapped = mapError(err);
  if (mapped.status >= 500 || !(mapped.code in ERROR_STATUS)) return { err };
  const code = mapped.code as ErrorCode;
  if (code === 'UNSUPPORTED_MEDIA_TYPE') {
    return {
      err: new WharfError(code, 'The Content-Type header is not a valid media type.'),
      s3: UNPARSEABLE_CONTENT_TYPE,
    };
  }
  return { err: new WharfError(code, mapped.message) };
}

/**
 * S3's EntityTooLarge names the size sent (`ProposedSize`) and the largest allowed
 * (`MaxSizeAllowed`); a client that shows only the code (Uppy's "S3 returned 400 –
 * EntityTooLarge") keeps the body, and an app can tell its user the limit from it. Each only when
 * the refusal knows it (`details.size`, `details.limit`): a body cut off past the limit has no
 * size of its own.
 */
function sizeElements(code: string, err: unknown): string {
  if (code !== 'EntityTooLarge' || !isWharfError(err)) return '';
  const figure = (value: unknown) => (Number.isSafeInteger(value) ? String(value) : undefined);
  const proposed = figure(err.details?.size);
  const max = figure(err.details?.limit);
  return (
    (proposed === undefined ? '' : `<ProposedSize>${proposed}</ProposedSize>`) +
    (max === undefined ? '' : `<MaxSizeAllowed>${max}</MaxSizeAllowed>`)
  );
}

export function sendS3Error(request: FastifyRequest, reply: FastifyReply, failure: unknown): FastifyReply {
  const { err, s3 } = asRefusal(failure);
  const mapped = s3 ?? (isWharfError(err) ? S3_ERRORS[err.code] : INTERNAL_ERROR);
  const status = mapped.status;
  const specific = isWharfError(err) ? err.details?.s3Code : undefined;
  const code = typeof specific === 'string' && SPECIFIC_CODES.has(specific) ? specific : mapped.code;
  // An internal failure's own message may name what the client has no business knowing.
  const message =
    isWharfError(err) && status !== 500 ? err.message : 'We encountered an internal error. Please try again.';
  logFailure(request, err, status);
  const resource = request.url.split('?')[0] ?? '';
  const body =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${escapeXml(message)}</Message>${sizeElements(code, err)}` +
    `<Resource>${escapeXml(resource)}</Resource><RequestId>${escapeXml(String(request.id))}</RequestId></Error>`;
  settleRefusedBody(request, reply);
  return reply.status(status).header('content-type', 'application/xml').send(body);
}
