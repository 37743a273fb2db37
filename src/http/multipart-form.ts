import type { Readable } from 'node:stream';
import type { Multipart, MultipartFile } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import { WharfError } from '../core/errors.js';

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
}

/** Reads the form up to its first file part; text fields before it are read and ignored. */
export async function firstFilePart(request: FastifyRequest, maxFileSize: number): Promise<FirstFile> {
  // One byte over the limit so the core, not busboy's silent truncation, reports it.
  const rest = request.parts({ limits: { fileSize: maxFileSize + 1 } })[Symbol.asyncIterator]();
  try {
    for (let next = await rest.next(); !next.done; next = await rest.next()) {
      if (next.value.type === 'file') return { part: next.value, rest };
    }
  } catch (err) {
    throw isBrokenForm(err) ? malformedForm(err) : err;
  }
  return { part: undefined, rest };
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
    throw err;
  }
}

/**
 * Runs the upload of a file part's stream; when the form breaks off inside that part, busboy
 * errors the part ("terminated early") and then the form ("unexpected end"), and the upload's
 * failure is reported as a malformed form. A storage failure carries a code (ENOSPC…) and
 * stays a 500.
 */
export async function uploadingPart<T>(body: Readable, upload: () => Promise<T>): Promise<T> {
  let partError: unknown;
  body.once('error', (err) => {
    partError = err;
  });
  try {
    return await upload();
  } catch (err) {
    // When the whole body was already in before the form was parsed (a slow key lookup),
    // the part was destroyed with the error before the listener above existed.
    const bodyError = partError ?? body.errored;
    throw isBrokenForm(bodyError) && isBrokenForm(err) ? malformedForm(err) : err;
  }
}
