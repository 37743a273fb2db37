import { Type } from 'typebox';
import type { UploadToken } from '../../core/model.js';
import { MAX_TOKEN_SECONDS } from '../../core/tokens.js';
import { named } from '../openapi/components.js';
import type { ApiContext, App } from './context.js';
import { errorResponses, IdParams, iso, PageCursor } from './schemas.js';

const Limit = (description: string) =>
  Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], {
    description: `${description} (null: no limit).`,
  });

const UsageSchema = named(
  'UploadTokenUsage',
  Type.Object(
    {
      files_used: Type.Integer({ description: 'Uploads completed with the token.' }),
      bytes_used: Type.Integer({ description: 'Their bytes.' }),
      files_reserved: Type.Integer({ description: 'Pending uploads, held until they complete or fail.' }),
      bytes_reserved: Type.Integer({
        description:
          'Bytes those hold (a file of unknown size holds nothing until its bytes arrive or it completes).',
      }),
      open_uploads: Type.Integer(),
    },
    { description: 'What the token has used and holds; files_used + files_reserved never pass max_files.' },
  ),
);

export const UploadTokenSchema = named(
  'UploadToken',
  Type.Object(
    {
      id: Type.String(),
      account_id: Type.String(),
      key_id: Type.String({ description: 'The key that minted it (revoking that key stops the token too).' }),
      prefix: Type.String({ description: 'The first characters of the secret.' }),
      status: Type.Union([Type.Literal('active'), Type.Literal('expired'), Type.Literal('revoked')]),
      subject: Type.Union([Type.String(), Type.Null()], {
        description: 'Your user the token is for: recorded on every asset it creates.',
      }),
      name_prefix: Type.Union([Type.String(), Type.Null()]),
      namespace: Type.Union([Type.String(), Type.Null()]),
      content_types: Type.Union([Type.Array(Type.String()), Type.Null()]),
      metadata: Type.Record(Type.String(), Type.Unknown()),
      max_files: Limit('How many files it may upload'),
      max_bytes: Limit('How many bytes it may upload in all'),
      max_file_size: Limit('The largest file'),
      max_open_uploads: Limit('How many uploads may be pending at once (the server’s limit otherwise)'),
      usage: UsageSchema,
      created_at: Type.String({ format: 'date-time' }),
      expires_at: Type.String({ format: 'date-time' }),
      revoked_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
        description: 'When it was revoked, or the key that minted it was, whichever came first.',
      }),
    },
    { description: 'An upload token (never its secret).' },
  ),
);

const UploadTokenListSchema = named(
  'UploadTokenList',
  Type.Object(
    {
      data: Type.Array(UploadTokenSchema),
      next_cursor: Type.Union([Type.String(), Type.Null()], {
        description: 'Pass as `cursor` for older ones.',
      }),
    },
    { description: 'Upload tokens, newest first.' },
  ),
);

const MintTokenBody = named(
  'UploadTokenRequest',
  Type.Object(
    {
      expires_in: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: MAX_TOKEN_SECONDS,
          description: 'Seconds the token works (default 3600).',
        }),
      ),
      max_files: Type.Optional(Type.Integer({ minimum: 1 })),
      max_bytes: Type.Optional(Type.Integer({ minimum: 1, description: 'Total bytes of every file.' })),
      max_file_size: Type.Optional(
        Type.Integer({
          minimum: 1,
          description: 'The largest file; a value above the account’s limit is lowered to it.',
        }),
      ),
      content_types: Type.Optional(
        Type.Array(Type.String({ maxLength: 255 }), {
          minItems: 1,
          maxItems: 50,
          description: 'Allowed types: exact (`application/pdf`) or families (`image/*`).',
        }),
      ),
      name_prefix: Type.Optional(
        Type.String({ minLength: 1, description: 'Every file name must start with this.' }),
      ),
      namespace: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 64,
          description: 'Every upload becomes a version of a named file of this namespace.',
        }),
      ),
      metadata: Type.Optional(
        Type.Record(Type.String(), Type.Unknown(), {
          description: 'Stamped onto every asset the token creates (at most 16 KiB of JSON).',
        }),
      ),
      subject: Type.Optional(
        Type.String({ minLength: 1, maxLength: 255, description: 'Your user’s id: recorded on its assets.' }),
      ),
      max_open_uploads: Type.Optional(Type.Integer({ minimum: 1 })),
    },
    { additionalProperties: false, description: 'A new token’s life, limits and confinement.' },
  ),
);

const MintedTokenSchema = named(
  'MintedUploadToken',
  Type.Object(
    {
      token: UploadTokenSchema,
      secret: Type.String({
        description:
          'The token itself (`wharf_ut_…`), shown only this once: hand it to your user’s browser or app.',
      }),
    },
    { description: 'The new token and its secret.' },
  ),
);

const ListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
    cursor: PageCursor,
  },
  { additionalProperties: false },
);

export function tokenJson(token: UploadToken, now: number) {
  return {
    id: token.id,
    account_id: token.accountId,
    key_id: token.keyId,
    prefix: token.prefix,
    status:
      token.revokedAt !== null
        ? ('revoked' as const)
        : now >= token.expiresAt
          ? ('expired' as const)
          : ('active' as const),
    subject: token.subject,
    name_prefix: token.namePrefix,
    namespace: token.namespace,
    content_types: token.contentTypes,
    metadata: token.metadata,
    max_files: token.maxFiles,
    max_bytes: token.maxBytes,
    max_file_size: token.maxFileSize,
    max_open_uploads: token.maxOpenUploads,
    usage: {
      files_used: token.usage.filesUsed,
      bytes_used: token.usage.bytesUsed,
      files_reserved: token.usage.filesReserved,
      bytes_reserved: token.usage.bytesReserved,
      open_uploads: token.usage.openUploads,
    },
    created_at: iso(token.createdAt),
    expires_at: iso(token.expiresAt),
    revoked_at: token.revokedAt === null ? null : iso(token.revokedAt),
  };
}

/**
 * Upload tokens: a back end with a key of the `admin` or `upload` scope mints one per user
 * session and hands it to the browser or phone, which uploads with it and nothing else.
 */
export async function tokenRoutes(app: App, { core }: ApiContext): Promise<void> {
  app.post(
    '/v1/upload-tokens',
    {
      schema: {
        operationId: 'createUploadToken',
        summary: 'Mint a short-lived upload token for one of your users (the secret is returned once)',
        description:
          'Needs a key with the `admin` or `upload` scope; the token is confined at least as much as that key. ' +
          'It works as `Authorization: Bearer` (or `x-api-key`) on every upload flow, and reads only what it ' +
          'uploaded.',
        tags: ['upload tokens'],
        body: MintTokenBody,
        response: { 201: MintedTokenSchema, ...errorResponses },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const minted = await core.tokens.mint(request.principal!, {
        expiresInSeconds: body.expires_in,
        maxFiles: body.max_files,
        maxBytes: body.max_bytes,
        maxFileSize: body.max_file_size,
        contentTypes: body.content_types,
        namePrefix: body.name_prefix,
        namespace: body.namespace,
        metadata: body.metadata,
        subject: body.subject,
        maxOpenUploads: body.max_open_uploads,
      });
      reply.status(201);
      return { token: tokenJson(minted.token, core.clock.now()), secret: minted.secret };
    },
  );

  app.get(
    '/v1/upload-tokens',
    {
      schema: {
        operationId: 'listUploadTokens',
        summary: 'List upload tokens with their usage, newest first',
        description: 'An admin key sees every token of the account; an upload key those it minted.',
        tags: ['upload tokens'],
        querystring: ListQuery,
        response: { 200: UploadTokenListSchema, ...errorResponses },
      },
    },
    async (request) => {
      const page = await core.tokens.list(request.principal!, request.query);
      const now = core.clock.now();
      return { data: page.tokens.map((t) => tokenJson(t, now)), next_cursor: page.nextCursor };
    },
  );

  app.get(
    '/v1/upload-tokens/:id',
    {
      schema: {
        operationId: 'getUploadToken',
        summary: 'One upload token: its limits and usage (files and bytes used and reserved)',
        tags: ['upload tokens'],
        params: IdParams,
        response: { 200: UploadTokenSchema, ...errorResponses },
      },
    },
    async (request) =>
      tokenJson(await core.tokens.get(request.principal!, request.params.id), core.clock.now()),
  );

  app.delete(
    '/v1/upload-tokens/:id',
    {
      schema: {
        operationId: 'revokeUploadToken',
        summary: 'Revoke an upload token: refused at once, on every node',
        tags: ['upload tokens'],
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      await core.tokens.revoke(request.principal!, request.params.id);
      return reply.status(204).send(null);
    },
  );
}
