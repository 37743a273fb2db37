import { Type } from 'typebox';
import { WharfError } from '../../../core/errors.js';
import type { Principal } from '../../../core/model.js';
import type { UploadOutcome } from '../../../core/upload-types.js';
import type { Core } from '../../../core/wharf.js';

/** Step three of the bulk upload: the details the presigned-URL response gave, sent back. */
export const ConfirmBody = Type.Object(
  {
    is_presigned: Type.Boolean({ description: 'Must be true: a JSON body confirms a presigned upload.' }),
    storage_url: Type.String({ maxLength: 2048 }),
    file_name: Type.String({ maxLength: 1024 }),
    s3_path: Type.String({ maxLength: 1024, description: 'Identifies the upload.' }),
    content_type: Type.String({ maxLength: 255 }),
  },
  { description: 'Confirm a file PUT to its presigned URL (extra fields are ignored).' },
);

export interface Confirmation {
  is_presigned: boolean;
  storage_url: string;
  file_name: string;
  s3_path: string;
  content_type: string;
}

/**
 * The upload is found by its storage path and completed: the core checks storage holds the
 * declared bytes. A name or type other than the declared one is refused, since an asset
 * cannot be renamed at this point and silently keeping the old one would lose what was sent.
 */
export async function confirmUpload(
  core: Core,
  principal: Principal,
  body: Confirmation,
): Promise<UploadOutcome> {
  if (!body.is_presigned) {
    throw new WharfError(
      'VALIDATION_FAILED',
      'is_presigned must be true; to upload the bytes here, send multipart/form-data with the field "file".',
    );
  }
  const upload = await core.uploads.getByStorageKey(principal, body.s3_path);
  if (body.file_name.normalize('NFC') !== upload.name) {
    throw new WharfError('VALIDATION_FAILED', `file_name does not match the file declared for this s3_path.`);
  }
  if (body.content_type.trim().toLowerCase() !== upload.contentType) {
    throw new WharfError(
      'VALIDATION_FAILED',
      `content_type does not match the type declared for this s3_path.`,
    );
  }
  return core.uploads.complete(principal, upload);
}
