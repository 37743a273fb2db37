import { Type } from '@fastify/type-provider-typebox';
import { WharfError } from '../../../core/errors.js';
import type { Upload } from '../../../core/model.js';
import { HEAD_BYTES, type UnfinishedUpload } from '../../../core/resumable.js';
import { RUFH_PATH } from '../../rufh/routes.js';
import { TUS_PATH } from '../../tus/routes.js';
import type { ApiContext, App } from '../context.js';
import { errorResponses, iso } from '../schemas.js';

const UnfinishedQuery = Type.Object(
  {
    status: Type.Literal('pending', { description: 'Only unfinished uploads are looked up this way.' }),
    size: Type.Integer({ minimum: 0, description: 'The file’s exact size in bytes.' }),
    sha256: Type.Optional(
      Type.String({ maxLength: 128, description: 'SHA-256 of the whole file, hex or base64.' }),
    ),
    head_sha256: Type.Optional(
      Type.String({
        maxLength: 128,
        description: `SHA-256 of the file’s first min(size, ${HEAD_BYTES}) bytes, hex or base64.`,
      }),
    ),
    head_bytes: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: `How many bytes head_sha256 covers: min(size, ${HEAD_BYTES}), said for clarity.`,
      }),
    ),
  },
  { additionalProperties: false },
);

export const UnfinishedUploadSchema = Type.Object(
  {
    id: Type.String(),
    protocol: Type.Union([Type.Literal('rufh'), Type.Literal('tus')], {
      description: '`rufh`: Resumable Uploads for HTTP (HEAD then PATCH the url); `tus`: tus 1.0.',
    }),
    url: Type.String({ description: 'Where to resume: the upload resource (rufh) or the tus upload URL.' }),
    name: Type.String(),
    content_type: Type.String(),
    size: Type.Integer(),
    offset: Type.Integer({ description: 'Bytes received: resume from here.' }),
    created_at: Type.String({ format: 'date-time' }),
    expires_at: Type.String({ format: 'date-time' }),
  },
  { description: 'A pending resumable upload of the file and how far it got.' },
);

export const UnfinishedListSchema = Type.Object(
  { uploads: Type.Array(UnfinishedUploadSchema) },
  { description: 'Newest first.' },
);

/**
 * Resume without client state: a client that lost everything (a reloaded page, a reinstalled
 * app, another device) asks for its unfinished resumable uploads of a file, named by size and
 * its SHA-256 or the SHA-256 of its first 4 MiB, and continues where each stopped.
 */
export async function unfinishedUploadRoutes(app: App, { core, publicUrl }: ApiContext): Promise<void> {
  const urlOf = (upload: Upload): string =>
    upload.kind === 'rufh'
      ? `${publicUrl}${RUFH_PATH}/${upload.id}`
      : `${publicUrl}${TUS_PATH}/${upload.storageKey.slice(upload.storageKey.indexOf('/') + 1)}`;
  const json = ({ upload, offset }: UnfinishedUpload) => ({
    id: upload.id,
    protocol: upload.kind === 'rufh' ? ('rufh' as const) : ('tus' as const),
    url: urlOf(upload),
    name: upload.name,
    content_type: upload.contentType,
    size: upload.size ?? 0,
    offset,
    created_at: iso(upload.createdAt),
    expires_at: iso(upload.expiresAt),
  });

  app.get(
    '/v1/uploads',
    {
      schema: {
        operationId: 'findUnfinishedUploads',
        summary: 'Find your unfinished resumable uploads of a file (resume without client state)',
        description:
          'The caller’s pending tus and Resumable-Uploads-for-HTTP uploads of a file of `size` bytes whose ' +
          `SHA-256 (\`sha256\`) or head digest (\`head_sha256\`: the first min(size, ${HEAD_BYTES}) bytes) is ` +
          'the one given, newest first, each with the offset to resume from. A key sees its own uploads and ' +
          'its tokens’ (with `read`, every upload of the account it may see); an upload token only its own. ' +
          'The head digest is known when the client declared it at creation, or once the first 4 MiB ' +
          'arrived in one request of Resumable Uploads for HTTP.',
        tags: ['uploads'],
        querystring: UnfinishedQuery,
        response: { 200: UnfinishedListSchema, ...errorResponses },
      },
    },
    async (request) => {
      const query = request.query;
      if (query.head_bytes !== undefined && query.head_bytes !== Math.min(query.size, HEAD_BYTES)) {
        throw new WharfError(
          'VALIDATION_FAILED',
          `head_sha256 covers the first min(size, ${HEAD_BYTES}) bytes: ${Math.min(query.size, HEAD_BYTES)} here.`,
          { head_bytes: Math.min(query.size, HEAD_BYTES) },
        );
      }
      const found = await core.resumable.findUnfinished(request.principal!, {
        size: query.size,
        sha256: query.sha256,
        headSha256: query.head_sha256,
      });
      return { uploads: found.map(json) };
    },
  );
}
