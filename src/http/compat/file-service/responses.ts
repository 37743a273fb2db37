import { Type } from 'typebox';
import type { Asset, FileVersion, Principal, Upload } from '../../../core/model.js';
import { signedDownloadUrl } from '../../api/assets/signed-urls.js';
import type { CompatContext } from '../context.js';

/** How long `secureFilePath` stays valid (the document's example URL: X-Amz-Expires=3600). */
export const SECURE_PATH_SECONDS = 3600;

export const FileSchema = Type.Object({
  name: Type.String(),
  namespace: Type.String(),
  version: Type.Integer({ minimum: 1 }),
  acl: Type.Union([Type.Literal('PRIVATE'), Type.Literal('PUBLIC')]),
  fileSize: Type.String({ description: 'The size in bytes, as a decimal string.' }),
  file_handle: Type.String({ description: 'The asset id (GET /v1/assets/{id}).' }),
  content_type: Type.String(),
  s3_token: Type.String({ description: 'The storage key of the bytes.' }),
  latest_version: Type.Integer({ minimum: 1 }),
  last_modified: Type.String({ description: 'When this version was recorded, UTC: YYYY-MM-DD HH:MM:SS.' }),
  s3_url: Type.String(),
});

export const FileResultSchema = Type.Object({
  code: Type.Integer(),
  status: Type.Literal('true'),
  message: Type.String(),
  file: FileSchema,
  secureFilePath: Type.String({
    description: `A URL that downloads this version without credentials for ${SECURE_PATH_SECONDS} seconds.`,
  }),
});

/** "2024-05-08 09:10:59", in UTC. */
export function lastModified(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(0, 19).replace('T', ' ');
}

/**
 * `bucket`: where the bytes are (core.storage.bucket): "wharf" embedded, the S3 bucket scaled.
 * `through`: the caller's own upload when it sees the asset through it (content the account
 * held already, a confined key or token): its storage key is named, as netiks names it, never
 * the first uploader's, which would tell the caller that the account held this content and
 * whose upload it was.
 */
export function fileJson(version: FileVersion, asset: Asset, bucket: string, through?: Upload) {
  const key = through?.storageKey ?? asset.storageKey;
  return {
    name: version.name,
    namespace: version.namespace,
    version: version.version,
    acl: asset.access === 'public' ? ('PUBLIC' as const) : ('PRIVATE' as const),
    fileSize: String(asset.size),
    file_handle: asset.id,
    content_type: asset.contentType,
    s3_token: key,
    latest_version: version.latestVersion,
    last_modified: lastModified(version.createdAt),
    s3_url: `s3://${bucket}/${key}`,
  };
}

/** A signed URL of the native content route (which also redirects to storage when configured). */
export async function signedContentUrl(
  { core, publicUrl }: CompatContext,
  principal: Principal,
  assetId: string,
  expiresInSeconds: number,
): Promise<string> {
  const grant = await core.assets.grantDownload(principal, assetId, expiresInSeconds, 'inline');
  return signedDownloadUrl(publicUrl, grant);
}

export async function fileResult(
  context: CompatContext,
  principal: Principal,
  message: string,
  version: FileVersion,
  asset: Asset,
  through?: Upload,
) {
  return {
    code: 200,
    status: 'true' as const,
    message,
    file: fileJson(version, asset, context.core.storage.bucket, through),
    secureFilePath: await signedContentUrl(context, principal, asset.id, SECURE_PATH_SECONDS),
  };
}
