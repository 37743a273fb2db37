import type { Readable } from 'node:stream';
import { finished } from 'node:stream';
import { finished as streamFinished } from 'node:stream/promises';
import type { Multipart, MultipartFile } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import { WharfError } from '../core/errors.js';
import { DigestStream } from '../core/hashing.js';
import { headerDigests } from './api/integrity.js';
import { announcedDigestTrailers, type DigestTrailer, digestTrailers } from './digest-trailers.js';

/**
 * Reading a single-file upload form: the first file part streams to the core, a second file
 * is refused rather than dropped, and a broken form is the client's fault (400), never a 500.
 * Each route still answers in its own shape; what is shared here throws WharfError codes.
 */

/**
 * busboy reports a broken form (no boundary, truncated data) with plain Errors that carry
 * neither a code nor a status: the client's fault, so 400 rather than 500.
 */
export function isBrokenForm(err: unknown): err is Error {
  return err instanceof Error && !(err instanceof WharfError) && !('code' in err) && !('statusCode' in err);
}

/** @fastify/multipart's own limits (files, fields, parts) carry an FST_ code. */
export function isFormLimit(err: unknown): boolean {
  if (!(err instanceof Error) || err instanceof WharfError) return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('FST_');
}

export function malformedForm(err: Error): WharfError {
  return new WharfError('VALIDATION_FAILED', `The multipart body is malformed: ${err.message}`);
}

export interface FirstFile {
  /** The first file part, whatever its field name; undefined when the form has none. */
  part: MultipartFile | undefined;
  /** The rest of the form, after that part. */
  rest: AsyncIterator<Multipart>;
  /**
   * Once the form has been read to its end: refuses it (CHECKSUM_MISMATCH) unless the whole
   * request body matches the digests declared of it. Nothing to check when none were.
   */
  checkForm: () => Promise<void>;
}

/** Digests declared of the whole request body (hex), as `headerDigests` reads them. */
export interface FormDigests {
  sha256?: string | undefined;
  md5?: string | undefined;
}

/**
 * Reads the form up to its first file part; text fields before it are read and ignored.
 * `formDigests` are what the request's Content-MD5 / Content-Digest / Repr-Digest declare:
 * RFC 1864 and RFC 9530 define them over the message content, the whole form with its
 * boundaries, never over one part of it, so the raw bytes are hashed as busboy reads them.
 */
export async function firstFilePart(
  request: FastifyRequest,
  maxFileSize: number,
  formDigests: FormDigests = {},
): Promise<FirstFile> {
  // Piped in the same tick as the parser below, which pipes the same request: a readable with
  // two destinations hands each the same chunks and waits for the slower (memory stays flat).
  // A listener attached after an await would miss the bytes the parser had already taken.
  // Digests may also come after the form, as trailers the Trailer header announces.
  const trailed = announcedDigestTrailers(request.headers);
  const checkForm =
    formDigests.sha256 || formDigests.md5 || trailed.length > 0
      ? hashingForm(request, formDigests, trailed)
      : async () => {};
  // One byte over the limit so the core, not busboy's silent truncation, reports it.
  const rest = formParts(request, { limits: { fileSize: maxFileSize + 1 } });
  try {
    for (let next = await rest.next(); !next.done; next = await rest.next()) {
      if (next.value.type === 'file') return { part: next.value, rest, checkForm };
    }
  } catch (err) {
    throw isBrokenForm(err) ? malformedForm(err) : err;
  }
  return { part: undefined, rest, checkForm };
}

/**
 * The parts of the request's form, as `request.parts()` reads them, or, when the request was
 * already destroyed before the route began to read it, an end as a form cut mid-parse gets
 * (@fastify/multipart's PrematureCloseError, which each API answers as a broken form). Why:
 * @fastify/multipart learns of a cut from the request's 'close', which it listens for only
 * from now on, and a destroyed request emits no more data nor end; a body whose connection
 * dropped while the route's hooks ran (a chunked body whose framing broke while the key was
 * looked up: Node's parser refuses it and closes the socket) left the handler waiting on the
 * first part forever, and the server's close waiting for the handler.
 */
export function formParts(
  request: FastifyRequest,
  options: Parameters<FastifyRequest['parts']>[0],
): AsyncIterator<Multipart> {
  const raw = request.raw;
  if (raw.destroyed && !raw.readableEnded) {
    const cut = new request.server.multipartErrors.PrematureCloseError();
    return { next: () => Promise.reject(cut) };
  }
  return request.parts(options)[Symbol.asyncIterator]();
}

function hashingForm(
  request: FastifyRequest,
  declared: FormDigests,
  trailed: readonly DigestTrailer[],
): () => Promise<void> {
  const hasher = new DigestStream();
  request.raw.pipe(hasher);
  // Its output is not wanted, only its digests.
  hasher.resume();
  // A request cut short never ends the hasher: its worker state goes now.
  finished(request.raw, (err) => {
    if (err) hasher.destroy();
  });
  return async () => {
    await streamFinished(hasher);
    const actual = hasher.digests();
    const late = headerDigests(digestTrailers(request.raw, trailed));
    for (const algorithm of ['sha256', 'md5'] as const) {
      const wrong = [declared[algorithm], late[algorithm]].some((d) => d && d !== actual[algorithm]);
      if (wrong) {
        throw new WharfError(
          'CHECKSUM_MISMATCH',
          `The ${algorithm === 'md5' ? 'MD5' : 'SHA-256'} of the request body does not match its ${algorithm === 'md5' ? 'Content-MD5' : 'Content-Digest / Repr-Digest'}: on a multipart upload that header covers the whole form, not the file.`,
          { algorithm },
        );
      }
    }
  };
}

/** The file part in field `file`, for the APIs that name it so. */
export function fileField(part: MultipartFile | undefined): MultipartFile {
  if (!part) throw new WharfError('VALIDATION_FAILED', 'The form has no file part (field "file").');
  if (part.fieldname !== 'file') {
    part.file.resume();
    throw new WharfError(
      'VALIDATION_FAILED',
      `The file must be sent in field "file", not "${part.fieldname}".`,
    );
  }
  return part;
}

/**
 * Reads the rest of the form before the upload is committed and refuses it if another file
 * comes: a second file would otherwise be dropped without a word. `field` names the file
 * field in the message, for APIs that have one.
 */
export async function refuseMoreFiles(rest: AsyncIterator<Multipart>, field?: string): Promise<void> {
  const tooManyFiles = () =>
    new WharfError(
      'TOO_MANY_FILES',
      `Send one file per request${field ? ` (field "${field}")` : ''}; this form has more.`,
    );
  try {
    for (let next = await rest.next(); !next.done; next = await rest.next()) {
      if (next.value.type === 'file') {
        next.value.file.resume();
        throw tooManyFiles();
      }
    }
  } catch (err) {
    if ((err as { code?: string } | null)?.code === 'FST_FILES_LIMIT') throw tooManyFiles();
    // Read while the upload is being committed: as Wharf's own refusals, so that its
    // `upload.failed` event names what the client is told (400), not a hang-up.
    if (isFormLimit(err)) throw new WharfError('VALIDATION_FAILED', (err as Error).message);
    throw isBrokenForm(err) ? malformedForm(err) : err;
  }
}

/**
 * What a failure of an upload reading a form's file part was (DirectUpload.explain): when the
 * form breaks off inside that part, busboy errors the part ("terminated early") and then the
 * form ("unexpected end"), and the upload's failure is a malformed form, the client's fault,
 * answered 400 and recorded in its `upload.failed` event as that, not as a hang-up. A storage
 * failure carries a code (ENOSPC…) and stays what it is. Made before the part is read, so that
 * its listener sees the part's error.
 */
export function partFailure(body: Readable): (err: unknown) => unknown {
  let partError: unknown;
  body.once('error', (err) => {
    partError = err;
  });
  return (err) => {
    // When the whole body was already in before the form was parsed (a slow key lookup),
    // the part was destroyed with the error before the listener above existed.
    const bodyError = partError ?? body.errored;
    return isBrokenForm(bodyError) && isBrokenForm(err) ? malformedForm(err) : err;
  };
}
