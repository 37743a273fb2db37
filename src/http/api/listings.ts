import { Type } from '@fastify/type-provider-typebox';
import { MAX_UPLOADS_PER_PAGE } from '../../core/listings.js';
import type { ApiContext, App } from './context.js';
import { errorResponses, IdParams, iso, UploadStateSchema, uploadStateJson } from './schemas.js';

const UploadListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: MAX_UPLOADS_PER_PAGE, default: 100 }),
    cursor: Type.Optional(Type.String({ maxLength: 64, description: '`next_cursor` of the previous page.' })),
    status: Type.Optional(
      Type.Union([Type.Literal('pending'), Type.Literal('completed'), Type.Literal('expired')], {
        description:
          '`expired`: ended without an asset (expired, cancelled or failed; the events say which).',
      }),
    ),
  },
  { additionalProperties: false },
);

const UploadListItem = Type.Object(
  {
    ...UploadStateSchema.properties,
    kind: Type.String({ description: 'The flow: direct, presigned, multipart, tus, form …' }),
    created_at: Type.String({ format: 'date-time' }),
    completed_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  { description: 'An upload, as listed.' },
);

const UploadPage = Type.Object(
  { data: Type.Array(UploadListItem), next_cursor: Type.Union([Type.String(), Type.Null()]) },
  { description: 'Uploads, newest first.' },
);

const Bytes = Type.Union([Type.Integer(), Type.Null()]);

const AccountSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    max_file_size: Type.Union([Type.Integer(), Type.Null()], {
      description: 'The account’s file size limit (null: the server’s, WHARF_MAX_FILE_SIZE).',
    }),
    storage_quota: Type.Union([Type.Integer(), Type.Null()], {
      description: 'Bytes it may store (null: no limit).',
    }),
    usage: Type.Object({
      bytes_used: Type.Integer({ description: 'The sizes of its assets (each content counted once).' }),
      bytes_reserved: Type.Integer({ description: 'What its pending uploads hold against the quota.' }),
      bytes_free: Bytes,
      assets: Type.Integer(),
      pending_uploads: Type.Integer(),
    }),
    created_at: Type.String({ format: 'date-time' }),
  },
  { description: 'The caller’s account and what it holds against its quota.' },
);

const FileVersionRef = Type.Object({
  version: Type.Integer({ minimum: 1 }),
  asset_id: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
});

const AssetFiles = Type.Object(
  {
    data: Type.Array(
      Type.Object({
        namespace: Type.String(),
        name: Type.String(),
        version: Type.Integer({ minimum: 1, description: 'The version that is this asset.' }),
        latest_version: Type.Integer({ minimum: 1 }),
        versions: Type.Array(FileVersionRef, { description: 'Every version of the file, oldest first.' }),
      }),
    ),
  },
  { description: 'The named files an asset is a version of.' },
);

/** Read-only views: uploads, the account's usage, the named files of an asset. */
export async function listingRoutes(app: App, { core }: ApiContext): Promise<void> {
  app.get(
    '/v1/uploads',
    {
      schema: {
        operationId: 'listUploads',
        summary: 'List uploads, newest first (`status=pending` for those still waiting for bytes)',
        description:
          'A key that reads the whole account sees every upload; any other key, or a token, those it made.',
        tags: ['uploads'],
        querystring: UploadListQuery,
        response: { 200: UploadPage, ...errorResponses },
      },
    },
    async (request) => {
      const page = await core.listings.uploads(request.principal!, request.query);
      return {
        data: page.uploads.map((upload) => ({
          ...uploadStateJson(upload),
          kind: upload.kind,
          created_at: iso(upload.createdAt),
          completed_at: upload.completedAt === null ? null : iso(upload.completedAt),
        })),
        next_cursor: page.nextCursor,
      };
    },
  );

  app.get(
    '/v1/account',
    {
      schema: {
        operationId: 'getAccount',
        summary: 'The caller’s account: its limits, and what it stores against its quota',
        tags: ['account'],
        response: { 200: AccountSchema, ...errorResponses },
      },
    },
    async (request) => {
      const { account, usage } = await core.listings.usage(request.principal!);
      return {
        id: account.id,
        name: account.name,
        max_file_size: account.maxFileSize,
        storage_quota: account.storageQuota,
        usage: {
          bytes_used: usage.bytesUsed,
          bytes_reserved: usage.bytesReserved,
          bytes_free:
            account.storageQuota === null
              ? null
              : Math.max(0, account.storageQuota - usage.bytesUsed - usage.bytesReserved),
          assets: usage.assets,
          pending_uploads: usage.pendingUploads,
        },
        created_at: iso(account.createdAt),
      };
    },
  );

  app.get(
    '/v1/assets/:id/files',
    {
      schema: {
        operationId: 'listAssetFiles',
        summary: 'The named files an asset is a version of, with each file’s versions',
        tags: ['files'],
        params: IdParams,
        response: { 200: AssetFiles, ...errorResponses },
      },
    },
    async (request) => {
      const files = await core.listings.filesOfAsset(request.principal!, request.params.id);
      return {
        data: files.map(({ file, versions }) => ({
          namespace: file.namespace,
          name: file.name,
          version: file.version,
          latest_version: file.latestVersion,
          versions: versions.map((v) => ({
            version: v.version,
            asset_id: v.assetId,
            created_at: iso(v.createdAt),
          })),
        })),
      };
    },
  );
}
