import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { WharfError } from '../core/errors.js';

/**
 * Digests sent after the body. RFC 9530 lets `Content-Digest` and `Repr-Digest` (and RFC 1864's
 * `Content-MD5` is a field like any other) come as trailer fields of a chunked body: the way a
 * client that hashes as it streams can declare what it sent. Node reads them into
 * `request.trailers` once the body has ended, so each flow that checks the header form checks
 * this one at the same point, before the bytes are kept; one read without a look there would
 * leave its client believing bytes were verified that were not.
 *
 * RFC 9110 (6.6.2) asks a sender to announce its trailers in the `Trailer` header: an announced
 * digest is what lets a flow that streams into storage stage the body first (tus, RUFH), and a
 * digest announced but missing at the end (a proxy that drops trailers, a client that forgot)
 * is refused rather than read as "none declared".
 */
export const DIGEST_TRAILERS = ['content-digest', 'repr-digest', 'content-md5'] as const;
export type DigestTrailer = (typeof DIGEST_TRAILERS)[number];

const SPELLED: Record<DigestTrailer, string> = {
  'content-digest': 'Content-Digest',
  'repr-digest': 'Repr-Digest',
  'content-md5': 'Content-MD5',
};

/** The digest fields the request's `Trailer` header announces (lower case). */
export function announcedDigestTrailers(headers: IncomingHttpHeaders): DigestTrailer[] {
  const value = headers.trailer;
  if (value === undefined) return [];
  const names = new Set(
    String(value)
      .split(',')
      .map((n) => n.trim().toLowerCase()),
  );
  return DIGEST_TRAILERS.filter((name) => names.has(name));
}

/**
 * The digest fields the body ended with, as headers read (so the header parsers take them),
 * once the body has ended. A field `announced` that did not arrive (the body was cut, a proxy
 * dropped it, or it came with a Content-Length, which has no trailers) is INVALID_DIGEST: its
 * client declared a check that cannot be made.
 */
export function digestTrailers(
  raw: IncomingMessage,
  announced: readonly DigestTrailer[],
): IncomingHttpHeaders {
  const trailers = raw.complete ? raw.trailers : {};
  const missing = announced.filter((name) => typeof trailers[name] !== 'string');
  if (missing.length > 0) {
    const fields = missing.map((name) => SPELLED[name]).join(', ');
    throw new WharfError(
      'INVALID_DIGEST',
      `The Trailer header announces ${fields}, but the body ended without it: nothing was kept. Send the digest as a header, or after a whole chunked body.`,
      { trailers: missing },
    );
  }
  const digests: IncomingHttpHeaders = {};
  for (const name of DIGEST_TRAILERS) {
    const value = trailers[name];
    if (typeof value === 'string') digests[name] = value;
  }
  return digests;
}

/**
 * Refuses a `Repr-Digest` trailer where the whole file's digest must be known before the body
 * is read (tus and RUFH appends record or check it ahead of the bytes, and the append that
 * completes the upload verifies the file as its last byte is written): refused before a byte
 * is read rather than taken and ignored.
 */
export function refuseReprDigestTrailer(headers: IncomingHttpHeaders): void {
  if (!announcedDigestTrailers(headers).includes('repr-digest')) return;
  throw new WharfError(
    'VALIDATION_FAILED',
    "Repr-Digest (the whole file's digest) is taken as a header here, not as a trailer: send it with the request's headers, or send this body's own digest as a Content-Digest trailer.",
  );
}
