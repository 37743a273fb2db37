import { Type } from 'typebox';
import { WharfError } from '../../core/errors.js';
import { MAX_UPLOADS_PER_PAGE } from '../../core/listings.js';
import type { Upload, UploadEnding } from '../../core/model.js';
import { HEAD_BYTES } from '../../core/resumable.js';
import { named } from '../openapi/components.js';
import { RUFH_PATH } from '../rufh/routes.js';
import { TUS_PATH } from '../tus/routes.js';
import type { ApiContext, App } from './context.js';
import { errorResponses, IdParams, iso, PageCursor, UploadStateSchema } from './schemas.js';

const UploadListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: MAX_UPLOADS_PER_PAGE, default: 100 }),
    cursor: PageCursor,
    status: Type.Optional(
      Type.Union([Type.Literal('pending'), Type.Literal('completed'), Type.Literal('expired')], {
        description:
          '`expired`: ended without an asset (expired, cancelled or failed; each upload’s `ended` says which). A tus or ' +
          'Resumable-Uploads-for-HTTP upload past its `expires_at` is `expired` at once; other kinds stay ' +
          '`pending` for an hour more (a presigned or form upload, as what arrived in time may still be ' +
          'confirmed until then), or until the sweep completes or ends them (kinds that complete by themselves).',
      }),
    ),
    // Resume without client state: with these, the same listing narrows to the caller's
    // unfinished resumable uploads of one file, each with its offset.
    size: Type.Optional(
      Type.Integer({
        minimum: 0,
        description:
          'Look up a file (with `sha256` or `head_sha256`): only your pending tus and Resumable-Uploads-for-HTTP uploads of a file of exactly this size, each with its `offset`.',
      }),
    ),
    sha256: Type.Optional(
      Type.String({ maxLength: 128, description: 'With `size`: SHA-256 of the whole file, hex or base64.' }),
    ),
    head_sha256: Type.Optional(
      Type.String({
        maxLength: 128,
        description: `With \`size\`: SHA-256 of the file’s first min(size, ${HEAD_BYTES}) bytes, hex or base64.`,
      }),
    ),
    head_bytes: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: `How many bytes \`head_sha256\` covers: min(size, ${HEAD_BYTES}), said for clarity.`,
      }),
    ),
  },
  { additionalProperties: false },
);

const UploadListItem = named(
  'ListedUpload',
  Type.Object(
    {
      ...UploadStateSchema.properties,
      offset: Type.Optional(
        Type.Integer({ description: 'Looked up by file (`size`): bytes received, to resume from.' }),
      ),
    },
    { description: 'An upload, as listed: an `Upload`, with its `offset` when looked up by file.' },
  ),
);

/**
 * An upload as `GET /v1/uploads/{id}` and the listing show it (one shape, so a client needs no
 * listing to find a single upload's `resume_url`), with its `offset` when looked up by file.
 */
export function uploadJson(upload: Upload, publicUrl: string, offset?: number) {
  return {
    id: upload.id,
    status: upload.status,
    name: upload.name,
    content_type: upload.contentType,
    size: upload.size,
    expires_at: iso(upload.expiresAt),
    asset_id: upload.assetId,
    token_id: upload.tokenId,
    subject: upload.intent.subject ?? null,
    kind: upload.kind,
    created_at: iso(upload.createdAt),
    completed_at: upload.completedAt === null ? null : iso(upload.completedAt),
    resume_url: resumeUrl(upload, publicUrl),
    ended: endedJson(upload.ending),
    ...(offset !== undefined && { offset }),
  };
}

/** Why it ended without an asset, in the words of the event it ended with (null: it has not, or not known). */
function endedJson(ending: UploadEnding | null) {
  if (ending === null) return null;
  return {
    reason: ending.reason,
    error: ending.reason === 'failed' ? { code: ending.code, message: ending.message } : null,
  };
}

/** Where a pending tus or RUFH upload is resumed; null for every other upload. */
function resumeUrl(upload: Upload, publicUrl: string): string | null {
  if (upload.status !== 'pending') return null;
  if (upload.kind === 'rufh') return `${publicUrl}${RUFH_PATH}/${upload.id}`;
  // A tus upload's id is its storage key without the account's prefix.
  if (upload.kind === 'tus') {
    return `${publicUrl}${TUS_PATH}/${upload.storageKey.slice(upload.storageKey.indexOf('/') + 1)}`;
  }
  return null;
}

const UploadPage = named(
  'UploadList',
  Type.Object(
    { data: Type.Array(UploadListItem), next_cursor: Type.Union([Type.String(), Type.Null()]) },
    { description: 'Uploads, newest first.' },
  ),
);

const Bytes = Type.Union([Type.Integer(), Type.Null()]);

const AccountSchema = named(
  'Account',
  Type.Object(
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
  ),
);

const FileVersionRef = Type.Object({
  version: Type.Integer({ minimum: 1 }),
  asset_id: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
});

const AssetFile = named(
  'AssetFile',
  Type.Object(
    {
      namespace: Type.String(),
      name: Type.String(),
      version: Type.Integer({ minimum: 1, description: 'The version that is this asset.' }),
      latest_version: Type.Integer({ minimum: 1 }),
      versions: Type.Array(FileVersionRef, { description: 'Every version of the file, oldest first.' }),
    },
    { description: 'A named file an asset is a version of.' },
  ),
);

const AssetFiles = named(
  'AssetFileList',
  Type.Object({ data: Type.Array(AssetFile) }, { description: 'The named files an asset is a version of.' }),
);

/** Read-only views: uploads, the account's usage, the named files of an asset. */
export async function listingRoutes(app: App, { core, publicUrl }: ApiContext): Promise<void> {
  const item = (upload: Upload, offset?: number) => uploadJson(upload, publicUrl, offset);

  app.get(
    '/v1/uploads',
    {
      schema: {
        operationId: 'listUploads',
        summary: 'List uploads, newest first, or find your unfinished uploads of a file',
        description:
          'A key that reads the whole account sees every upload; any other key, or a token, those it made. ' +
          '`status=pending` lists those still waiting for bytes.\n\n' +
          'Resume without client state: with `size` and `sha256` (the whole file) or `head_sha256` (its ' +
          `first min(size, ${HEAD_BYTES}) bytes), the answer is the caller’s pending tus and ` +
          'Resumable-Uploads-for-HTTP uploads of that file (at most `limit`, no cursor), each with the ' +
          '`offset` to resume from and its `resume_url`. A key sees its own uploads and its tokens’ (with ' +
          '`read`, every upload of the account it may see); an upload token only its own. The head digest is ' +
          'known when the client declared it at creation, or once the first 4 MiB arrived in one request of ' +
          'Resumable Uploads for HTTP.',
        tags: ['uploads'],
        querystring: UploadListQuery,
        response: { 200: UploadPage, ...errorResponses },
      },
    },
    async (request) => {
      const query = request.query;
      const lookup =
        query.size !== undefined ||
        query.sha256 !== undefined ||
        query.head_sha256 !== undefined ||
        query.head_bytes !== undefined;
      if (!lookup) {
        const page = await core.listings.uploads(request.principal!, query);
        return { data: page.uploads.map((upload) => item(upload)), next_cursor: page.nextCursor };
      }
      if (query.size === undefined) {
        throw new WharfError('VALIDATION_FAILED', 'Name the file by its size and sha256 or head_sha256.');
      }
      if (query.status !== undefined && query.status !== 'pending') {
        throw new WharfError(
          'VALIDATION_FAILED',
          'A file is looked up among pending uploads only (status=pending).',
        );
      }
      if (query.cursor !== undefined) {
        throw new WharfError('VALIDATION_FAILED', 'A lookup by file is one page: it takes no cursor.');
      }
      const head = Math.min(query.size, HEAD_BYTES);
      if (query.head_bytes !== undefined && query.head_bytes !== head) {
        throw new WharfError(
          'VALIDATION_FAILED',
          `head_sha256 covers the first min(size, ${HEAD_BYTES}) bytes: ${head} here.`,
          { head_bytes: head },
        );
      }
      const found = await core.resumable.findUnfinished(request.principal!, {
        size: query.size,
        sha256: query.sha256,
        headSha256: query.head_sha256,
      });
      return {
        data: found.slice(0, query.limit).map(({ upload, offset }) => item(upload, offset)),
        next_cursor: null,
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
