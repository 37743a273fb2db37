import { Type } from 'typebox';
import { hexToBase64 } from '../../../core/digests.js';
import type { Asset, Upload } from '../../../core/model.js';
import { Id } from '../../api/schemas.js';

export const TAGS = ['Inspect file API (seed 001)'];

export const ErrorSchema = Type.Object(
  {
    error: Type.String({ description: 'The failure by name: "Bad Request", "Unauthorized", "Forbidden", …' }),
    errorDescription: Type.String({ description: 'What went wrong and how to fix it.' }),
  },
  { description: 'Every error of the Inspect file API.' },
);

export const errorResponses = {
  400: ErrorSchema,
  401: ErrorSchema,
  403: ErrorSchema,
  404: ErrorSchema,
  500: ErrorSchema,
};

/** A route that opens an upload: a key or token may hold only so many (TOO_MANY_OPEN_UPLOADS). */
export const uploadErrorResponses = { ...errorResponses, 429: ErrorSchema };

export const FileId = Id({
  format: 'uuid',
  description: 'A file id: the id returned by the presigned-URL request (either kind of answer).',
});

export const EntityId = Type.String({
  minLength: 1,
  maxLength: 255,
  description: 'The entity the file belongs to.',
});

export const FileSchema = Type.Object(
  {
    id: FileId,
    entityId: Type.Union([Type.String(), Type.Null()]),
    name: Type.String(),
    contentType: Type.String(),
    size: Type.Integer({ minimum: 0 }),
    hash: Type.String({ description: 'SHA-256 of the content, base64.' }),
    status: Type.Union([Type.Literal('pending'), Type.Literal('uploaded'), Type.Literal('expired')], {
      description:
        '`uploaded` once completion verified the bytes; `expired` once the file can no longer be uploaded ' +
        '(as `GET /v1/uploads/{id}` shows it): the URL lapsed unused, the hour after it passed, or the ' +
        'upload was cancelled.',
    }),
    assetId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()], {
      description: "The file's asset in Wharf's native API (GET /v1/assets/{id}) once uploaded.",
    }),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { description: 'A file and whether its bytes have been uploaded.' },
);

export const FileResponse = Type.Object({ data: FileSchema });

type FileJson = {
  id: string;
  entityId: string | null;
  name: string;
  contentType: string;
  size: number;
  hash: string;
  status: 'pending' | 'uploaded' | 'expired';
  assetId: string | null;
  createdAt: string;
};

function entityOf(metadata: Record<string, unknown> | undefined): string | null {
  const value = metadata?.entityId;
  return typeof value === 'string' ? value : null;
}

/** A file named by its upload id: what was declared, and its asset once it completed. */
export function uploadFileJson(upload: Upload, asset: Asset | undefined): FileJson {
  return {
    id: upload.id,
    entityId: entityOf(upload.intent.metadata),
    name: upload.name,
    contentType: upload.contentType,
    size: asset?.size ?? upload.size ?? 0,
    hash: hexToBase64(asset?.sha256 ?? upload.sha256 ?? ''),
    status: asset ? 'uploaded' : upload.status === 'expired' ? 'expired' : 'pending',
    assetId: asset?.id ?? null,
    createdAt: new Date(upload.createdAt).toISOString(),
  };
}

/** A file named by its asset id (the answer to a presigned request for content already held). */
export function assetFileJson(asset: Asset): FileJson {
  return {
    id: asset.id,
    entityId: entityOf(asset.metadata),
    name: asset.name,
    contentType: asset.contentType,
    size: asset.size,
    hash: hexToBase64(asset.sha256),
    // A `verifying` asset is recorded but its bytes are still being hashed.
    status: asset.status === 'ready' ? 'uploaded' : 'pending',
    assetId: asset.id,
    createdAt: new Date(asset.createdAt).toISOString(),
  };
}
