import type { Multipart, MultipartFile } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import { WharfError } from '../../../core/errors.js';
import type { Principal } from '../../../core/model.js';
import type { UploadOutcome } from '../../../core/uploads.js';
import type { Core } from '../../../core/wharf.js';

/**
 * The single-file upload: a multipart form whose field `file` is streamed straight to the
 * core. Text fields are allowed and ignored (clients add their own); a second file is
 * refused rather than dropped.
 */
export async function uploadForm(
  core: Core,
  principal: Principal,
  request: FastifyRequest,
): Promise<UploadOutcome> {
  const limit = core.uploads.maxFileSize(principal);
  let parts: AsyncIterator<Multipart>;
  let part: MultipartFile | undefined;
  try {
    // One byte over the limit so the core, not busboy's silent truncation, reports it.
    parts = request.parts({ limits: { fileSize: limit + 1 } })[Symbol.asyncIterator]();
    for (let next = await parts.next(); !next.done; next = await parts.next()) {
      if (next.value.type === 'file') {
        part = next.value;
        break;
      }
    }
  } catch (err) {
    throw isParserError(err) ? malformedForm(err) : err;
  }
  if (!part) throw new WharfError('VALIDATION_FAILED', 'The form has no file part (field "file").');
  if (part.fieldname !== 'file') {
    part.file.resume();
    throw new WharfError(
      'VALIDATION_FAILED',
      `The file must be sent in field "file", not "${part.fieldname}".`,
    );
  }
  if (!part.filename) {
    part.file.resume();
    throw new WharfError('VALIDATION_FAILED', 'The file part has no filename.');
  }
  const body = part.file;
  let partError: unknown;
  body.once('error', (err) => {
    partError = err;
  });
  try {
    return await core.uploads.uploadDirect(principal, {
      name: part.filename,
      contentType: part.mimetype,
      body,
      beforeCommit: async () => {
        try {
          for (let next = await parts.next(); !next.done; next = await parts.next()) {
            if (next.value.type === 'file') {
              next.value.file.resume();
              throw tooManyFiles();
            }
          }
        } catch (err) {
          if ((err as { code?: string } | null)?.code === 'FST_FILES_LIMIT') throw tooManyFiles();
          throw err;
        }
      },
    });
  } catch (err) {
    // busboy errors the part and then the form when the body breaks off; a storage failure
    // carries a code (ENOSPC…) and stays a 500.
    const bodyError = partError ?? body.errored;
    throw isParserError(bodyError) && isParserError(err) ? malformedForm(err) : err;
  }
}

/** busboy's complaints about a broken form carry neither a code nor a status: the client's fault. */
function isParserError(err: unknown): boolean {
  return err instanceof Error && !(err instanceof WharfError) && !('code' in err) && !('statusCode' in err);
}

function malformedForm(err: unknown): WharfError {
  return new WharfError('VALIDATION_FAILED', `The multipart body is malformed: ${(err as Error).message}`);
}

function tooManyFiles(): WharfError {
  return new WharfError('TOO_MANY_FILES', 'Send one file per request (field "file"); this form has more.');
}
