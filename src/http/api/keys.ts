import { Type } from 'typebox';
import { WharfError } from '../../core/errors.js';
import { roleOf } from '../../core/keys.js';
import type { ApiKey } from '../../core/model.js';
import { named } from '../openapi/components.js';
import type { ApiContext, App } from './context.js';
import { errorResponses, IdParams, iso, PageCursor } from './schemas.js';

export const ScopeSchema = named(
  'Scope',
  Type.Union([Type.Literal('admin'), Type.Literal('read'), Type.Literal('upload'), Type.Literal('write')], {
    description:
      '`admin`: everything, keys and upload tokens included; `read`: list, get, download, sign download URLs; ' +
      '`upload`: create and complete uploads, read what it uploaded, mint upload tokens; `write`: delete assets, ' +
      'change access.',
  }),
);

const KeySchema = named(
  'Key',
  Type.Object(
    {
      id: Type.String(),
      account_id: Type.String(),
      name: Type.String(),
      role: Type.Union([Type.Literal('admin'), Type.Literal('member')], {
        description: '`admin` for an admin key, `member` for any other (see `scopes`).',
      }),
      scopes: Type.Array(ScopeSchema),
      name_prefix: Type.Union([Type.String(), Type.Null()], {
        description: 'The key works only on assets whose names start with this.',
      }),
      namespace: Type.Union([Type.String(), Type.Null()], {
        description: 'The key works only on named files of this namespace (its uploads are filed there).',
      }),
      prefix: Type.String(),
      created_at: Type.String({ format: 'date-time' }),
      last_used_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
      revoked_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    },
    { description: 'An API key (never its secret).' },
  ),
);

export const KeyListSchema = named(
  'KeyList',
  Type.Object(
    {
      data: Type.Array(KeySchema),
      next_cursor: Type.Union([Type.String(), Type.Null()], {
        description: 'Pass as `cursor` for newer ones (null: this is the last page).',
      }),
    },
    { description: 'The account’s keys, revoked ones included, oldest first.' },
  ),
);

// An account's keys are not capped (revoked keys stay listed, since their uploads and tokens
// name them, so a cap would end key rotation one day): the listing is paged instead.
const ListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
    cursor: PageCursor,
  },
  { additionalProperties: false },
);

const Role = Type.Union([Type.Literal('admin'), Type.Literal('member')], {
  description: 'The older way to say what a key may do: `member` is read, upload and write.',
});

const CreateKeyBody = named(
  'KeyRequest',
  Type.Object(
    {
      name: Type.String({ minLength: 1, maxLength: 200 }),
      role: Type.Optional(Role),
      scopes: Type.Optional(
        Type.Array(ScopeSchema, {
          minItems: 1,
          maxItems: 4,
          description: 'What the key may do (instead of `role`). Default: read, upload, write.',
        }),
      ),
      name_prefix: Type.Optional(
        Type.String({ minLength: 1, description: 'Confine the key to names starting with this.' }),
      ),
      namespace: Type.Optional(
        Type.String({ minLength: 1, maxLength: 64, description: 'Confine the key to this namespace.' }),
      ),
    },
    { additionalProperties: false, description: 'A new key: its name and what it may do.' },
  ),
);

const CreatedKeySchema = named(
  'CreatedKey',
  Type.Object(
    { key: KeySchema, secret: Type.String({ description: 'Shown only this once.' }) },
    { description: 'The new key and its secret.' },
  ),
);

export function keyJson(key: ApiKey) {
  return {
    id: key.id,
    account_id: key.accountId,
    name: key.name,
    role: roleOf(key),
    scopes: key.scopes,
    name_prefix: key.namePrefix,
    namespace: key.namespace,
    prefix: key.prefix,
    created_at: iso(key.createdAt),
    last_used_at: key.lastUsedAt === null ? null : iso(key.lastUsedAt),
    revoked_at: key.revokedAt === null ? null : iso(key.revokedAt),
  };
}

/** An admin key manages the keys of its own account. */
export async function keyRoutes(app: App, { core }: ApiContext): Promise<void> {
  app.get(
    '/v1/keys',
    {
      schema: {
        operationId: 'listKeys',
        querystring: ListQuery,
        summary: 'List this account’s keys, revoked ones included, oldest first',
        tags: ['keys'],
        response: { 200: KeyListSchema, ...errorResponses },
      },
    },
    async (request) => {
      const page = await core.keys.listAs(request.principal!, request.query);
      return { data: page.keys.map(keyJson), next_cursor: page.nextCursor };
    },
  );

  app.post(
    '/v1/keys',
    {
      schema: {
        operationId: 'createKey',
        summary: 'Create a key (the secret is returned once)',
        description:
          'Give `scopes` (or the older `role`; not both), and optionally confine the key to a `name_prefix` ' +
          'and/or a `namespace`. An admin key cannot be confined.',
        tags: ['keys'],
        body: CreateKeyBody,
        response: { 201: CreatedKeySchema, ...errorResponses },
      },
    },
    async (request, reply) => {
      const { name, role, scopes, name_prefix, namespace } = request.body;
      if (role !== undefined && scopes !== undefined) {
        throw new WharfError('VALIDATION_FAILED', 'Give either role or scopes, not both.');
      }
      const created = await core.keys.createAs(
        request.principal!,
        name,
        scopes === undefined && name_prefix === undefined && namespace === undefined
          ? (role ?? 'member')
          : {
              scopes: scopes ?? (role === 'admin' ? ['admin'] : ['read', 'upload', 'write']),
              namePrefix: name_prefix,
              namespace,
            },
      );
      reply.status(201);
      return { key: keyJson(created.key), secret: created.secret };
    },
  );

  app.delete(
    '/v1/keys/:id',
    {
      schema: {
        operationId: 'revokeKey',
        summary: 'Revoke a key',
        tags: ['keys'],
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      await core.keys.revokeAs(request.principal!, request.params.id);
      return reply.status(204).send(null);
    },
  );
}
