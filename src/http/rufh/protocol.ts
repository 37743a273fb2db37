import { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { FastifyReply } from 'fastify';
import { type Dictionary, parseDictionary, parseItem, serializeDictionary } from 'structured-headers';
import { WharfError } from '../../core/errors.js';

/**
 * The wire of "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload), as each
 * interop version a client may speak spells it. Versions, from the draft's own history:
 *
 * | interop | drafts | what differs for a server |
 * | --- | --- | --- |
 * | 3 | -01 | `Upload-Incomplete: ?1` instead of `Upload-Complete: ?0`; appends answered 201 (iOS 17) |
 * | 4, 5 | -02, -03 | `Upload-Complete`; tus-js-client's `ietf-draft-03` mode sends 5 |
 * | 6 | -04, -05 | `application/partial-upload` for appends; `Upload-Length`; `Upload-Limit` with `expires` (tus-js-client's `ietf-draft-05`, swift-nio-extras) |
 * | 7 | -06 to -08 | `max-age` replaces `expires`; structured types; appends need not carry `Upload-Offset` back |
 * | 8 | -09 to -11 | 104 carries `Upload-Limit`; limits are announced wherever they apply (iOS 26) |
 * | 9 | editor's copy | as 8 on the wire Wharf speaks (GET reads the offset like HEAD) |
 *
 * Wharf answers in the version the request names. A request that names none (or one Wharf
 * does not speak) still gets a resumable upload, but no 104: the draft forbids a 104 unless
 * the versions match, so that drafts and the final RFC never mistake each other.
 */
export const INTEROP_VERSIONS = [3, 4, 5, 6, 7, 8, 9] as const;
export const LATEST_INTEROP_VERSION = 9;

export const PARTIAL_UPLOAD_TYPE = 'application/partial-upload';

/** The problem types the draft registers (RFC 9457), for the two refusals it defines. */
const MISMATCHING_OFFSET = 'https://iana.org/assignments/http-problem-types#mismatching-upload-offset';
const INCONSISTENT_LENGTH = 'https://iana.org/assignments/http-problem-types#inconsistent-upload-length';

// Node's table has no name for 104 (writeInformation then writes "104 unknown"); the draft
// registers "Upload Resumption Supported". Clients ignore reason phrases, people reading a
// trace do not.
if (STATUS_CODES[104] === undefined) STATUS_CODES[104] = 'Upload Resumption Supported';

/** How to answer one request: the interop version it spoke and what that version spells. */
export interface Dialect {
  /** The version the client named, when Wharf speaks it; undefined: no 104 may be sent. */
  version: number | undefined;
  /** Interop 3 and before: completeness is `Upload-Incomplete` (inverted). */
  incomplete: boolean;
  /** The `Upload-Limit` key for the remaining lifetime: `expires` up to interop 6. */
  ageKey: 'expires' | 'max-age';
  /** Whether an append's body must be labelled `application/partial-upload` (interop 6 on). */
  partialUploadType: boolean;
}

export function dialectOf(headers: IncomingHttpHeaders): Dialect {
  const named = integerField(headers, 'upload-draft-interop-version');
  const version =
    named !== undefined && (INTEROP_VERSIONS as readonly number[]).includes(named) ? named : undefined;
  const effective = version ?? LATEST_INTEROP_VERSION;
  return {
    version,
    incomplete: effective <= 3,
    ageKey: effective <= 6 ? 'expires' : 'max-age',
    partialUploadType: effective >= 6,
  };
}

/**
 * Whether a request asks for a resumable upload: it carries `Upload-Complete` (or, interop 3,
 * `Upload-Incomplete`). Undefined when it carries neither; true when it is the whole file.
 */
export function requestedComplete(headers: IncomingHttpHeaders): boolean | undefined {
  const complete = booleanField(headers, 'upload-complete');
  if (complete !== undefined) return complete;
  const incomplete = booleanField(headers, 'upload-incomplete');
  return incomplete === undefined ? undefined : !incomplete;
}

/** The request's `Upload-Offset`; a missing or malformed one is refused. */
export function requestedOffset(headers: IncomingHttpHeaders): number {
  const offset = integerField(headers, 'upload-offset');
  if (offset === undefined) {
    throw new WharfError('VALIDATION_FAILED', 'An append needs Upload-Offset: the offset it starts at.');
  }
  return offset;
}

/** `Upload-Length`, when the request gives a valid one (one sent and unreadable: refuseUnreadableLength). */
export function requestedLength(headers: IncomingHttpHeaders): number | undefined {
  return integerField(headers, 'upload-length');
}

/**
 * Refuses an `Upload-Length` that is sent but cannot be read, rather than take it for absent (a
 * creation would then be asked to say a length it said): digits past what a length can be are
 * FILE_TOO_LARGE, anything else VALIDATION_FAILED.
 */
export function refuseUnreadableLength(headers: IncomingHttpHeaders): void {
  const value = headers['upload-length'];
  if (value === undefined || requestedLength(headers) !== undefined) return;
  if (typeof value === 'string' && /^\s*\d+\s*(;|$)/.test(value)) {
    throw new WharfError(
      'FILE_TOO_LARGE',
      `Upload-Length ${value.trim()} is larger than any file this server takes.`,
    );
  }
  throw new WharfError(
    'VALIDATION_FAILED',
    'Upload-Length must be a non-negative integer: the file’s size in bytes.',
  );
}

/** Content-Length as a number, when the request has one (chunked bodies have none). */
export function contentLength(headers: IncomingHttpHeaders): number | undefined {
  const raw = headers['content-length'];
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  const value = Number(raw);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** Whether the request has a body to read at all. */
export function hasBody(headers: IncomingHttpHeaders): boolean {
  const length = contentLength(headers);
  return length !== undefined ? length > 0 : headers['transfer-encoding'] !== undefined;
}

/**
 * The upload's length from a creation request: `Upload-Length`, or the body's length when it
 * is the whole file. Both, when given, must agree (else the draft's inconsistent-length
 * problem); undefined when the request tells neither.
 */
export function declaredLength(headers: IncomingHttpHeaders, complete: boolean): number | undefined {
  refuseUnreadableLength(headers);
  const length = requestedLength(headers);
  const body = complete ? contentLength(headers) : undefined;
  if (length !== undefined && body !== undefined && length !== body) throw inconsistentLength(length, body);
  const content = contentLength(headers);
  if (length !== undefined && content !== undefined && content > length)
    throw inconsistentLength(length, content);
  return length ?? body;
}

function inconsistentLength(length: number, other: number): WharfError {
  return new WharfError(
    'INCONSISTENT_LENGTH',
    `Upload-Length says ${length} bytes; the request says ${other}.`,
    {
      length,
      other,
    },
  );
}

/** The upload's state in the dialect's header (Upload-Complete, or interop 3's inverse). */
export function completeHeader(dialect: Dialect, complete: boolean): [string, string] {
  return dialect.incomplete
    ? ['Upload-Incomplete', complete ? '?0' : '?1']
    : ['Upload-Complete', complete ? '?1' : '?0'];
}

export interface LimitValues {
  maxSize: number;
  maxAppendSize: number;
  /** Seconds left; absent on discovery (no upload yet). */
  maxAge?: number | undefined;
}

/** `Upload-Limit` (a structured dictionary): `max-size`, `max-append-size`, the lifetime. */
export function uploadLimit(dialect: Dialect, limits: LimitValues): string {
  const members: Dictionary = new Map([
    ['max-size', [limits.maxSize, new Map()]],
    ['max-append-size', [limits.maxAppendSize, new Map()]],
  ]);
  if (limits.maxAge !== undefined) members.set(dialect.ageKey, [limits.maxAge, new Map()]);
  return serializeDictionary(members);
}

/**
 * Sends a 104 (Upload Resumption Supported) ahead of the final response, on HTTP/1.1 through
 * Node's `ServerResponse.writeInformation` (Node 26; `writeEarlyHints` is 103 only). Only to a
 * client that named an interop version Wharf speaks, as the draft requires.
 */
export function sendUploadResumptionSupported(
  request: IncomingMessage,
  raw: ServerResponse,
  dialect: Dialect,
  headers: Record<string, string>,
): void {
  if (dialect.version === undefined || raw.headersSent || raw.writableEnded) return;
  // RFC 9110 (15.2): never a 1xx to an HTTP/1.0 client, which cannot tell it from the answer.
  if (request.httpVersionMajor === 1 && request.httpVersionMinor === 0) return;
  raw.writeInformation(104, { ...headers, 'Upload-Draft-Interop-Version': String(dialect.version) });
}

/**
 * The draft's two problem documents (RFC 9457), with Wharf's own error beside them (an
 * extension member) so that clients of either read what they expect.
 */
export function sendProblem(reply: FastifyReply, dialect: Dialect, err: WharfError) {
  const [name, value] = completeHeader(dialect, false);
  reply.header(name, value).header('Content-Type', 'application/problem+json');
  const error = { code: err.code, message: err.message, ...(err.details && { details: err.details }) };
  if (err.code === 'OFFSET_MISMATCH') {
    const expected = Number(err.details?.expected_offset);
    return reply
      .code(409)
      .header('Upload-Offset', String(expected))
      .send(
        JSON.stringify({
          type: MISMATCHING_OFFSET,
          title: 'offset from request does not match offset of resource',
          'expected-offset': expected,
          'provided-offset': Number(err.details?.provided_offset),
          error,
        }),
      );
  }
  return reply
    .code(400)
    .send(
      JSON.stringify({ type: INCONSISTENT_LENGTH, title: 'inconsistent length values for upload', error }),
    );
}

/** Whether an error is answered with one of the draft's problem documents. */
export function isProblem(err: unknown): err is WharfError {
  return err instanceof WharfError && (err.code === 'OFFSET_MISMATCH' || err.code === 'INCONSISTENT_LENGTH');
}

/** `Repr-Digest: sha-256=:…:` (RFC 9530) of a SHA-256 in hex. */
export function reprDigest(sha256Hex: string): string {
  // A copy: a small Buffer's .buffer is Node's shared pool, not just these 32 bytes.
  const bytes = new Uint8Array(Buffer.from(sha256Hex, 'hex')).buffer;
  const members: Dictionary = new Map([['sha-256', [bytes, new Map()]]]);
  return serializeDictionary(members);
}

/**
 * Whether the answer carries `Repr-Digest: sha-256`. `Want-Repr-Digest` (RFC 9530 §4) is a
 * preference: SHA-256 is the only digest Wharf verifies files by, so it is sent whatever else
 * the client prefers, except when the client rules it out (`sha-256=0`, "not acceptable"). A
 * field that does not parse says nothing, and the digest is sent.
 */
export function wantsSha256ReprDigest(headers: IncomingHttpHeaders): boolean {
  const value = headers['want-repr-digest'];
  if (typeof value !== 'string') return true;
  try {
    return parseDictionary(value).get('sha-256')?.[0] !== 0;
  } catch {
    return true;
  }
}

/** `Repr-Digest`'s sha-256 (the whole file's), hex, when the request declares one. */
export function declaredReprDigest(headers: IncomingHttpHeaders): string | undefined {
  return sha256Member(headers, 'repr-digest', 'Repr-Digest');
}

/** `Content-Digest`'s sha-256 (this request's content), hex, when the request declares one. */
export function declaredContentDigest(headers: IncomingHttpHeaders): string | undefined {
  return sha256Member(headers, 'content-digest', 'Content-Digest');
}

/** An RFC 9530 field's sha-256 member; other algorithms are allowed and not checked. */
function sha256Member(headers: IncomingHttpHeaders, name: string, label: string): string | undefined {
  const value = headers[name];
  if (typeof value !== 'string') return undefined;
  let dictionary: ReturnType<typeof parseDictionary>;
  try {
    dictionary = parseDictionary(value);
  } catch {
    throw new WharfError('INVALID_DIGEST', `${label} is not a valid structured-field dictionary.`);
  }
  const item = dictionary.get('sha-256');
  if (!item) return undefined;
  const bytes = item[0];
  if (!(bytes instanceof ArrayBuffer) || bytes.byteLength !== 32) {
    throw new WharfError('INVALID_DIGEST', `${label}: sha-256 must be a 32-byte byte sequence (:base64:).`);
  }
  return Buffer.from(bytes).toString('hex');
}

/** A structured-field Integer header; undefined when absent or not a non-negative integer. */
function integerField(headers: IncomingHttpHeaders, name: string): number | undefined {
  const value = headers[name];
  if (typeof value !== 'string') return undefined;
  // The parser reads a Decimal (8.0) as the same number as the Integer 8: only an Integer counts.
  if (!/^\s*\d{1,15}\s*(;|$)/.test(value)) return undefined;
  try {
    const [item] = parseItem(value);
    return typeof item === 'number' && Number.isSafeInteger(item) && item >= 0 ? item : undefined;
  } catch {
    return undefined;
  }
}

/** A structured-field Boolean header (`?1`, `?0`); undefined when absent or anything else. */
function booleanField(headers: IncomingHttpHeaders, name: string): boolean | undefined {
  const value = headers[name];
  if (typeof value !== 'string') return undefined;
  try {
    const [item] = parseItem(value);
    return typeof item === 'boolean' ? item : undefined;
  } catch {
    return undefined;
  }
}
