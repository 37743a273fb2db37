/**
 * The storage endpoint a presigned URL points at (Wharf's own, or the S3 bucket) refuses in S3's
 * XML: `BadDigest` where the API says `CHECKSUM_MISMATCH`. Its codes are read here as the API's,
 * so an app matches one code whatever flow the upload took; the S3 code stays in
 * `details.s3_code`. A code with no native equivalent (an `AccessDenied` that is not an expiry,
 * `SlowDown`, `InternalError`) is left as storage answered it.
 */
const NATIVE: Record<string, string> = {
  BadDigest: 'CHECKSUM_MISMATCH',
  // A signed x-amz-content-sha256 the body does not match (S3, never Wharf's presigned URLs).
  XAmzContentSHA256Mismatch: 'CHECKSUM_MISMATCH',
  InvalidDigest: 'INVALID_DIGEST',
  EntityTooLarge: 'FILE_TOO_LARGE',
  EntityTooSmall: 'FILE_TOO_SMALL',
  IncompleteBody: 'SIZE_MISMATCH',
  MissingContentLength: 'LENGTH_REQUIRED',
  SignatureDoesNotMatch: 'INVALID_SIGNATURE',
  InvalidAccessKeyId: 'UNKNOWN_ACCESS_KEY',
  AuthorizationQueryParametersError: 'MALFORMED_SIGNATURE',
  NoSuchUpload: 'MULTIPART_NOT_FOUND',
  QuotaExceeded: 'QUOTA_EXCEEDED',
  InsufficientStorage: 'STORAGE_FULL',
};

/** The API's code and details for a storage endpoint's XML error (`xml`, its whole body). */
export function nativeS3Error(
  s3Code: string,
  message: string,
  xml: string,
): { code: string; details: Record<string, unknown> } {
  const details: Record<string, unknown> = { s3_code: s3Code };
  // S3, Ceph RGW and Wharf's endpoint all refuse an expired presigned URL with AccessDenied
  // "Request has expired"; any other AccessDenied (a revoked key, a cancelled upload) stays one.
  if (s3Code === 'AccessDenied' && /request has expired/i.test(message))
    return { code: 'URL_EXPIRED', details };
  const code = NATIVE[s3Code];
  if (!code) return { code: s3Code, details };
  if (code === 'CHECKSUM_MISMATCH') {
    // Which digest, as the message names it (S3: "The Content-MD5 you specified…", "The SHA256
    // you specified…"; Wharf: "The SHA-256 of the received bytes…"). UploadsApi.put fills it
    // in from the headers it sent when the message does not say.
    const algorithm = /md5/i.test(message) ? 'md5' : /sha-?256/i.test(message) ? 'sha256' : undefined;
    if (algorithm) details.algorithm = algorithm;
  }
  if (code === 'FILE_TOO_LARGE') {
    const limit = Number(/<MaxSizeAllowed>(\d+)<\/MaxSizeAllowed>/.exec(xml)?.[1] ?? Number.NaN);
    if (Number.isSafeInteger(limit)) details.limit = limit;
  }
  return { code, details };
}
