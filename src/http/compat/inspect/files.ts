import { Type } from 'typebox';
import { isWharfError, WharfError } from '../../../core/errors.js';
import type { Asset, Principal, Upload } from '../../../core/model.js';
import type { Core } from '../../../core/wharf.js';
import type { App } from '../../api/context.js';
import {
  assetFileJson,
  ErrorSchema,
  errorResponses,
  FileId,
  FileResponse,
  TAGS,
  uploadFileJson,
} from './schemas.js';

type Found = { upload: Upload; asset: Asset | undefined } | { upload?: undefined; asset: Asset };

/**
 * A file id is an upload id (a new upload) or an asset id (the 200 answer for content the
 * account already held); either, of the caller's own account. An upload as it stands now, as
 * the native API shows it (see ListingService.seen): one ended by time is expired though the
 * sweep has not recorded it yet (a tus upload past its expiry read here as pending). Only read:
 * nothing is completed here.
 */
async function findFile(core: Core, principal: Principal, id: string): Promise<Found> {
  let upload: Upload;
  try {
    upload = core.listings.seen(await core.uploads.get(principal, id));
  } catch (err) {
    if (!isWharfError(err, 'NOT_FOUND')) throw err;
    return { asset: await core.assets.get(principal, id) };
  }
  // The asset may since have been deleted: then the file is gone too (404).
  const asset = upload.assetId ? await core.assets.get(principal, upload.assetId) : undefined;
  return { upload, asset };
}

function fileJson(found: Found) {
  return found.upload ? uploadFileJson(found.upload, found.asset) : assetFileJson(found.asset);
}

const CompleteBody = Type.Object(
  {
    id: Type.Optional(FileId),
    fileID: Type.Optional(FileId),
    fileId: Type.Optional(FileId),
  },
  { additionalProperties: true },
);

/** Completion and reading, which the document names ("Complete File Upload") but does not spell out. */
export function fileRoutes(app: App, core: Core): void {
  app.post(
    '/v1/file/upload/complete',
    {
      schema: {
        operationId: 'inspectCompleteUpload',
        summary: 'Complete File Upload',
        description:
          'Marks the file as uploaded once the bytes in storage have the declared size and SHA-256; bytes that ' +
          'do not match are discarded (the presigned URL may be used again while valid). Idempotent; for the id ' +
          'of a file that was already held, returns it as it is. Body: {"id"} (also "fileID" or "fileId").',
        tags: TAGS,
        body: CompleteBody,
        response: {
          200: FileResponse,
          ...errorResponses,
          409: { ...ErrorSchema, description: 'No bytes have been uploaded to the presigned URL yet.' },
          410: {
            ...ErrorSchema,
            description: 'The presigned URL expired before any bytes arrived, or more than an hour ago.',
          },
        },
      },
    },
    async (request) => {
      const principal = request.principal!;
      const { id, fileID, fileId } = request.body;
      const fileRef = id ?? fileID ?? fileId;
      if (fileRef === undefined) throw new WharfError('VALIDATION_FAILED', 'body must have property id');
      const found = await findFile(core, principal, fileRef);
      if (!found.upload) return { data: fileJson(found) };
      const upload = found.upload;
      const outcome = await core.uploads.complete(principal, upload.id, {
        size: upload.size ?? undefined,
        sha256: upload.sha256 ?? undefined,
      });
      return { data: uploadFileJson(upload, outcome.asset) };
    },
  );

  app.get(
    '/v1/file/:id',
    {
      schema: {
        operationId: 'inspectGetFile',
        summary: 'Get a file',
        description: 'The file and whether it has been uploaded.',
        tags: TAGS,
        params: Type.Object({ id: FileId }),
        response: { 200: FileResponse, ...errorResponses },
      },
    },
    async (request) => ({ data: fileJson(await findFile(core, request.principal!, request.params.id)) }),
  );
}
