import type { FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_STATUS, type ErrorCode, isWharfError, WharfError } from '../../core/errors.js';
import { refusedForSpace } from '../../core/unavailable.js';
import { logFailure, mapError } from '../plugins/errors.js';
import { settleRefusedBody } from '../refused-body.js';
import { escapeXml } from './s3-xml.js';

/** How the core's refusals read to an S3 client (codes and statuses as AWS S3 uses them). */
const S3_CODES: Partial<Record<ErrorCode, { status: number; code: string }>> = {
  // A dependency of Wharf's is away: S3's own answer for "try again" (SDKs retry it).
  SERVICE_UNAVAILABLE: { status: 503, code: 'ServiceUnavailable' },
  // AWS has no code for a full disk (S3 never fills); MinIO answers 507 too, as XMinioStorageFull.
  STORAGE_FULL: { status: 507, code: 'InsufficientStorage' },
  INVALID_SIGNATURE: { status: 403, code: 'SignatureDoesNotMatch' },
  UNKNOWN_ACCESS_KEY: { status: 403, code: 'InvalidAccessKeyId' },
  URL_EXPIRED: { status: 403, code: 'AccessDenied' },
  // POST policies: an unmet condition or an expired policy.
  FORBIDDEN: { status: 403, code: 'AccessDenied' },
  MALFORMED_SIGNATURE: { status: 400, code: 'AuthorizationQueryParametersError' },
  UPLOAD_EXPIRED: { status: 403, code: 'AccessDenied' },
  UPLOAD_NOT_PENDING: { status: 403, code: 'AccessDenied' },
  NOT_FOUND: { status: 403, code: 'AccessDenied' },
  CHECKSUM_MISMATCH: { status: 400, code: 'BadDigest' },
  INVALID_DIGEST: { status: 400, code: 'InvalidDigest' },
  SIZE_MISMATCH: { status: 400, code: 'IncompleteBody' },
  FILE_TOO_LARGE: { status: 400, code: 'EntityTooLarge' },
  FILE_TOO_SMALL: { status: 400, code: 'EntityTooSmall' },
  LENGTH_REQUIRED: { status: 411, code: 'MissingContentLength' },
  VALIDATION_FAILED: { status: 400, code: 'InvalidArgument' },
  MULTIPART_NOT_FOUND: { status: 404, code: 'NoSuchUpload' },
  INVALID_PART: { status: 400, code: 'InvalidPart' },
  INVALID_PART_ORDER: { status: 400, code: 'InvalidPartOrder' },
  PART_TOO_SMALL: { status: 400, code: 'EntityTooSmall' },
  URI_TOO_LONG: { status: 400, code: 'KeyTooLongError' },
  // S3 has no code for it (it stores any type string); Fastify refuses to read the request.
  UNSUPPORTED_MEDIA_TYPE: { status: 415, code: 'InvalidArgument' },
};

/** S3 codes a refusal may name in `details.s3Code` where the core's code is too coarse. */
const SPECIFIC_CODES = new Set(['MalformedXML']);

/**
 * Fastify's own refusals (a Content-Type it cannot parse, before any route runs) as the core's
 * codes, so they read as S3 errors too rather than as internal ones.
 */
function asRefusal(failure: unknown): unknown {
  const err = refusedForSpace(failure);
  if (isWharfError(err)) return err;
  const mapped = mapError(err);
  if (mapped.status >= 500 || !(mapped.code in ERROR_STATUS)) return err;
  const code = mapped.code as ErrorCode;
  if (code === 'UNSUPPORTED_MEDIA_TYPE') {
    return new WharfError(code, 'The Content-Type header is not a valid media type.');
  }
  return new WharfError(code, mapped.message);
}

export function sendS3Error(request: FastifyRequest, reply: FastifyReply, failure: unknown): FastifyReply {
  const err = asRefusal(failure);
  const mapped = isWharfError(err) ? S3_CODES[err.code] : undefined;
  const status = mapped?.status ?? 500;
  const specific = isWharfError(err) ? err.details?.s3Code : undefined;
  const code =
    mapped && typeof specific === 'string' && SPECIFIC_CODES.has(specific)
      ? specific
      : (mapped?.code ?? 'InternalError');
  const message =
    mapped && isWharfError(err) ? err.message : 'We encountered an internal error. Please try again.';
  logFailure(request, err, status);
  const resource = request.url.split('?')[0] ?? '';
  const body =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${escapeXml(message)}</Message>` +
    `<Resource>${escapeXml(resource)}</Resource><RequestId>${escapeXml(String(request.id))}</RequestId></Error>`;
  settleRefusedBody(request, reply);
  return reply.status(status).header('content-type', 'application/xml').send(body);
}
