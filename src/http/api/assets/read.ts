import { Type } from 'typebox';
import { MAX_PAGE_SIZE } from '../../../core/assets.js';
import { validateTypeFilter } from '../../../core/names.js';
import { named } from '../../openapi/components.js';
import type { ApiContext, App } from '../context.js';
import {
  AccessSchema,
  AssetSchema,
  assetJson,
  errorResponses,
  IdParams,
  iso,
  PageCursor,
  parseTime,
  storageRefusals,
  UploadIdField,
} from '../schemas.js';
import { refuseBothExpiries, requestedExpiry, signedDownloadUrl } from './signed-urls.js';

const ListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: 100 }),
    cursor: PageCursor,
    prefix: Type.Optional(Type.String({ maxLength: 1024, description: 'Only names starting with this.' })),
    content_type: Type.Optional(
      Type.String({ maxLength: 255, description: 'Exact type (`image/png`) or a whole family (`image/*`).' }),
    ),
    created_after: Type.Optional(
      Type.String({ format: 'date-time', description: 'Only assets created at or after this time.' }),
    ),
    created_before: Type.Optional(
      Type.String({ format: 'date-time', description: 'Only assets created before this time.' }),
    ),
  },
  { additionalProperties: false },
);

const SignedUrlBody = named(
  'SignedUrlRequest',
  Type.Object(
    {
      // Optional, with the default documented: Ajv fills in no default inside the body's union
      // with null, so the handler does.
      expires_in: Type.Optional(
        Type.Integer({ minimum: 1, maximum: 604800, default: 3600, description: 'Seconds.' }),
      ),
      expires_at: Type.Optional(
        Type.String({
          format: 'date-time',
          description:
            'Instead of `expires_in` (not both): when the URL expires, taken to the second, in the future and ' +
            'up to 7 days ahead. The same moment gives the same URL every time, so caches can keep what it serves.',
        }),
      ),
      disposition: Type.Optional(
        Type.Union([Type.Literal('inline'), Type.Literal('attachment')], { default: 'inline' }),
      ),
      upload_id: UploadIdField,
    },
    {
      additionalProperties: false,
      description:
        'How long the URL works (`expires_in` or `expires_at`, not both), and how a browser shows the file.',
    },
  ),
);

const SignedUrlSchema = named(
  'SignedUrl',
  Type.Object(
    { url: Type.String(), expires_at: Type.String({ format: 'date-time' }) },
    { description: 'A URL that downloads the asset without a key until `expires_at`.' },
  ),
);

const AssetPageSchema = named(
  'AssetList',
  Type.Object(
    {
      data: Type.Array(AssetSchema),
      next_cursor: Type.Union([Type.String(), Type.Null()], {
        description: 'Pass as `cursor` for the next page; null on the last one.',
      }),
    },
    { description: 'A page of assets, newest first.' },
  ),
);

const AccessChangeBody = named(
  'AssetChanges',
  Type.Object({ access: AccessSchema }, { additionalProperties: false, description: 'What to change.' }),
);

/** Listing, reading, signing and deleting assets. */
export async function assetReadRoutes(app: App, { core, publicUrl }: ApiContext): Promise<void> {
  app.get(
    '/v1/assets',
    {
      schema: {
        operationId: 'listAssets',
        summary: 'List assets, newest first',
        tags: ['assets'],
        querystring: ListQuery,
        response: { 200: AssetPageSchema, ...errorResponses },
      },
    },
    async (request) => {
      const { limit, cursor, prefix, content_type, created_after, created_before } = request.query;
      const contentType = content_type === undefined ? undefined : validateTypeFilter(content_type);
      const page = await core.assets.list(request.principal!, {
        limit,
        cursor,
        // Names are stored NFC (validateFileName); a prefix typed in NFD must find them.
        namePrefix: prefix?.normalize('NFC'),
        contentType,
        createdAfter: created_after === undefined ? undefined : parseTime(created_after),
        createdBefore: created_before === undefined ? undefined : parseTime(created_before),
      });
      return { data: page.assets.map((a) => assetJson(a, publicUrl)), next_cursor: page.nextCursor };
    },
  );

  app.get(
    '/v1/assets/:id',
    {
      schema: {
        operationId: 'getAsset',
        summary: 'Get one asset',
        tags: ['assets'],
        params: IdParams,
        response: { 200: AssetSchema, ...errorResponses },
      },
    },
    async (request) => assetJson(await core.assets.get(request.principal!, request.params.id), publicUrl),
  );

  app.patch(
    '/v1/assets/:id',
    {
      schema: {
        operationId: 'updateAsset',
        summary: 'Change an asset’s access level',
        description:
          'Answers the asset as `GET /v1/assets/{id}` shows it to the caller, or `204` with no body when the caller may not read it (`write` without `read`, and no upload of its own made it).',
        tags: ['assets'],
        params: IdParams,
        body: AccessChangeBody,
        response: {
          200: AssetSchema,
          204: Type.Null({ description: 'Changed; the caller may not read the asset.' }),
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const asset = await core.assets.setAccess(request.principal!, request.params.id, request.body.access);
      if (!asset) return reply.status(204).send(null);
      return assetJson(asset, publicUrl);
    },
  );

  app.delete(
    '/v1/assets/:id',
    {
      schema: {
        operationId: 'deleteAsset',
        summary: 'Delete an asset; its bytes are freed when nothing else references them',
        tags: ['assets'],
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses, ...storageRefusals },
      },
    },
    async (request, reply) => {
      await core.assets.delete(request.principal!, request.params.id);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/assets/:id/signed-url',
    {
      preValidation: async (request) => refuseBothExpiries(request.body),
      schema: {
        operationId: 'createSignedUrl',
        summary: 'An expiring URL that downloads the asset without a key',
        tags: ['assets'],
        params: IdParams,
        // Every field has a default, so no body, or a JSON null, is the defaults, as with
        // rotate-secret: the document says so (Fastify validates a missing body as null).
        body: Type.Union([SignedUrlBody, Type.Null()]),
        response: { 200: SignedUrlSchema, ...errorResponses },
      },
    },
    async (request) => {
      const body = request.body ?? { expires_in: 3600, disposition: 'inline' as const };
      const grant = await core.assets.grantDownload(
        request.principal!,
        request.params.id,
        requestedExpiry({ expires_in: body.expires_in ?? 3600, expires_at: body.expires_at }),
        body.disposition ?? 'inline',
        'upload_id' in body ? body.upload_id : undefined,
      );
      return {
        url: signedDownloadUrl(publicUrl, grant),
        expires_at: iso(grant.expires * 1000),
      };
    },
  );
}
