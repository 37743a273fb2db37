import type { FastifyRequest } from 'fastify';
import { WharfError } from '../../../core/errors.js';
import type { Principal } from '../../../core/model.js';
import type { UploadOutcome } from '../../../core/upload-types.js';
import type { Core } from '../../../core/wharf.js';
import { headerDigests } from '../../api/integrity.js';
import { fileField, firstFilePart, partFailure, refuseMoreFiles } from '../../multipart-form.js';

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
  // The document declares no digests; the standard headers an HTTP client may add are checked,
  // as POST /v1/assets checks them, never ignored: of the whole form they cover (RFC 1864,
  // RFC 9530), not of the file part.
  const {
    part: first,
    rest,
    checkForm,
  } = await firstFilePart(request, core.uploads.maxFileSize(principal), headerDigests(request.headers));
  const part = fileField(first);
  if (!part.filename) {
    part.file.resume();
    throw new WharfError('VALIDATION_FAILED', 'The file part has no filename.');
  }
  return core.uploads.uploadDirect(principal, {
    name: part.filename,
    contentType: part.mimetype,
    body: part.file,
    beforeCommit: async () => {
      await refuseMoreFiles(rest, 'file');
      await checkForm();
    },
    explain: partFailure(part.file),
  });
}
