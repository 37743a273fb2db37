import contentDisposition from 'content-disposition';
import { isWharfError, WharfError } from '../../../core/errors.js';
import { validateContentType, validateFileName } from '../../../core/names.js';
import type { App } from '../../api/context.js';
import type { CompatContext } from '../context.js';
import { parseChecksum } from './checksum.js';
import { fieldError } from './errors.js';
import { assetRecord, type BlobRecord, uploadRecord } from './records.js';
import { FileUploadResponse, TAG, UploadRequest, uploadErrorResponses } from './schemas.js';

/** Runs one of the core's field rules, reporting a refusal at the field, as Pydantic does. */
function checked<T>(field: string, input: unknown, rule: () => T): T {
  try {
    return rule();
  } catch (err) {
    if (isWharfError(err)) throw fieldError(['body', 'blob', field], err, input);
    throw err;
  }
}

/**
 * POST /api/v1/upload/direct — ActiveStorage's "create blob": declares the file and answers
 * with where to PUT it. There is no confirm step: the upload completes when storage holds
 * the bytes (the embedded endpoint does it on the PUT, reconciliation or a lookup on S3).
 */
export async function directUploadRoute(app: App, { core }: CompatContext): Promise<void> {
  app.post(
    '/api/v1/upload/direct',
    {
      schema: {
        operationId: 'activeStorageCreateDirectUpload',
        summary: 'Create a file record and a presigned upload (or find the record of known content)',
        description:
          'Authenticate with `x-api-key: <key>` or `Authorization: Bearer <key>`. PUT the file to ' +
          '`direct_upload.url` with `direct_upload.headers`; nothing else is needed. When the account ' +
          'already holds content with this checksum and size, the record comes back without `direct_upload`.',
        tags: [TAG],
        body: UploadRequest,
        response: { 200: FileUploadResponse, ...uploadErrorResponses },
      },
    },
    async (request): Promise<BlobRecord> => {
      const principal = request.principal!;
      const { blob } = request.body;
      const name = checked('filename', blob.filename, () => validateFileName(blob.filename));
      const contentType = checked('content_type', blob.content_type, () =>
        validateContentType(blob.content_type),
      );
      checked('byte_size', blob.byte_size, () => {
        if (!Number.isSafeInteger(blob.byte_size)) {
          throw new WharfError('VALIDATION_FAILED', 'byte_size is larger than any file can be.');
        }
      });
      const checksum = parseChecksum(blob.checksum);

      const known = await core.assets.findByDigest(principal, checksum);
      if (known && known.size === blob.byte_size) return assetRecord(core, known, blob.checksum);
      // Declared again right after its PUT: on S3 nothing has told Wharf of that PUT yet.
      // Answered as that upload's record, as its declaration was: an isolated caller's upload
      // stored into content the account already held must not show (nor redirect to) that
      // content's first name.
      const arrived = await core.arrivals.completeByDigest(principal, checksum, blob.byte_size);
      if (arrived) return uploadRecord(core, arrived.upload, arrived.asset, blob.checksum);

      const [result] = await core.uploads.createPresigned(principal, [
        { name, contentType, size: blob.byte_size, ...checksum, intent: { autoComplete: true } },
      ]);
      if (result!.status === 'exists') return assetRecord(core, result!.asset, blob.checksum);
      const { upload, request: put } = result!;
      return {
        ...uploadRecord(core, upload, undefined, blob.checksum),
        direct_upload: {
          url: put.url,
          headers: {
            'Content-Type': upload.contentType,
            ...put.headers,
            // Not signed: storage keeps it for downloads straight from the bucket, as Rails does.
            'Content-Disposition': contentDisposition(upload.name, { type: 'inline' }),
          },
        },
      };
    },
  );
}
