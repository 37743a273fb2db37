import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { parseDictionary } from 'structured-headers';
import { parseContentMd5, parseDigest } from '../../core/digests.js';
import { WharfError } from '../../core/errors.js';
import { announcedDigestTrailers, digestTrailers } from '../digest-trailers.js';

export interface Declared {
  sha256?: string | undefined;
  md5?: string | undefined;
}

/**
 * Digests a client declared for a raw body, which is the file: `Content-MD5` (RFC 1864),
 * `Content-Digest` / `Repr-Digest` with `sha-256` (RFC 9530), and the `sha256` / `md5` query
 * parameters. Several declarations of one algorithm must agree. Hex out.
 */
export function declaredDigests(
  headers: IncomingHttpHeaders,
  query: { sha256?: string; md5?: string },
): Declared {
  const fromQuery = queryDigests(query);
  const fromHeaders = headerDigests(headers);
  return {
    sha256: agree([fromQuery.sha256, fromHeaders.sha256], 'SHA-256'),
    md5: agree([fromQuery.md5, fromHeaders.md5], 'MD5'),
  };
}

/** The `sha256` / `md5` query parameters: always the file's, whatever carries it. Hex out. */
export function queryDigests(query: { sha256?: string | undefined; md5?: string | undefined }): Declared {
  return {
    sha256: query.sha256 ? parseDigest('sha256', query.sha256, 'sha256') : undefined,
    md5: query.md5 ? parseDigest('md5', query.md5, 'md5') : undefined,
  };
}

/**
 * The digests the request's headers declare of its content: `Content-MD5` (RFC 1864),
 * `Content-Digest` / `Repr-Digest` with `sha-256` (RFC 9530). They cover the whole message
 * body, so they are the file's only when the body is the file; of a multipart form they are the
 * form's. Several must agree. Hex out.
 */
export function headerDigests(headers: IncomingHttpHeaders): Declared {
  const sha256: string[] = [];
  const md5: string[] = [];
  const contentMd5 = headers['content-md5'];
  if (typeof contentMd5 === 'string') md5.push(parseContentMd5(contentMd5));
  for (const name of ['content-digest', 'repr-digest'] as const) {
    const value = headers[name];
    if (typeof value !== 'string') continue;
    let dictionary: ReturnType<typeof parseDictionary>;
    try {
      dictionary = parseDictionary(value);
    } catch {
      throw new WharfError('INVALID_DIGEST', `${name} is not a valid structured-field dictionary.`);
    }
    const item = dictionary.get('sha-256');
    if (!item) continue; // Other algorithms are allowed by RFC 9530; we verify SHA-256.
    const bytes = item[0];
    if (!(bytes instanceof ArrayBuffer) || bytes.byteLength !== 32) {
      throw new WharfError('INVALID_DIGEST', `${name}: sha-256 must be a 32-byte byte sequence (:base64:).`);
    }
    sha256.push(Buffer.from(bytes).toString('hex'));
  }
  return { sha256: agree(sha256, 'SHA-256'), md5: agree(md5, 'MD5') };
}

/**
 * What the request's digest trailers declare of its body, read once it has ended (see
 * digest-trailers.ts): checked as `headerDigests` are, as a raw upload's `DirectUpload.trailing`.
 * A digest the Trailer header announced and that did not arrive is INVALID_DIGEST.
 */
export function trailerDigests(request: {
  headers: IncomingHttpHeaders;
  raw: IncomingMessage;
}): () => Declared {
  const announced = announcedDigestTrailers(request.headers);
  return () => headerDigests(digestTrailers(request.raw, announced));
}

/** The one digest several declarations of one algorithm agree on (hex, undefined for none); INVALID_DIGEST when they differ. */
export function agree(declared: readonly (string | null | undefined)[], label: string): string | undefined {
  const values = declared.filter((v): v is string => typeof v === 'string');
  if (values.some((v) => v !== values[0])) {
    throw new WharfError('INVALID_DIGEST', `The request declares different ${label} digests.`);
  }
  return values[0];
}

/** What a client whose body is refused for its Content-Encoding should send instead. */
const SEND_INSTEAD = {
  file: "send the file's own bytes (a .gz file as application/gzip, without Content-Encoding).",
  body: 'send the body uncompressed, without Content-Encoding.',
};

/**
 * Files are stored as the bytes that arrive. A body sent in a Content-Encoding (gzip, br…) would
 * be stored compressed and served back without it, its meaning changed: refused (415) before a
 * byte is read. `identity` is no encoding. A compressed file is sent as itself (a .gz file as
 * application/gzip, without Content-Encoding). Any other body (JSON) is not decoded either:
 * `body` says so to its client, who sent no file.
 */
export function refuseContentEncoding(
  request: {
    headers: IncomingHttpHeaders;
    raw: { resume(): void };
  },
  kind: keyof typeof SEND_INSTEAD = 'file',
): void {
  const value = request.headers['content-encoding'];
  if (value === undefined) return;
  const codings = value
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return;
  request.raw.resume();
  throw new WharfError(
    'UNSUPPORTED_MEDIA_TYPE',
    `Content-Encoding ${codings.join(', ')} is not decoded: ${SEND_INSTEAD[kind]}`,
  );
}
