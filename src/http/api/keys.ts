import { Type } from '@fastify/type-provider-typebox';
import { requireAdmin } from '../../core/keys.js';
import type { ApiKey } from '../../core/model.js';
import type { ApiContext, App } from './context.js';
import { errorResponses, IdParams, iso } from './schemas.js';

const KeySchema = Type.Object({
  id: Type.String(),
  account_id: Type.String(),
  name: Type.String(),
  role: Type.String(),
  prefix: Type.String(),
  created_at: Type.String(),
  last_used_at: Type.Union([Type.String(), Type.Null()]),
  revoked_at: Type.Union([Type.String(), Type.Null()]),
});

const Role = Type.Union([Type.Literal('admin'), Type.Literal('member')]);

export function keyJson(key: ApiKey) {
  return {
    id: key.id,
    account_id: key.accountId,
    name: key.name,
    role: key.role,
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
        summary: 'List this account’s keys',
        tags: ['keys'],
        response: { 200: Type.Object({ data: Type.Array(KeySchema) }), ...errorResponses },
      },
    },
    async (request) => {
      requireAdmin(request.principal!);
      return { data: (await core.keys.list(request.principal!.accountId)).map(keyJson) };
    },
  );

  app.post(
    '/v1/keys',
    {
      schema: {
        summary: 'Create a key (the secret is returned once)',
        tags: ['keys'],
        body: Type.Object(
          { name: Type.String({ minLength: 1, maxLength: 200 }), role: Type.Optional(Role) },
          { additionalProperties: false },
        ),
        response: { 201: Type.Object({ key: KeySchema, secret: Type.String() }), ...errorResponses },
      },
    },
    async (request, reply) => {
      requireAdmin(request.principal!);
      const created = await core.keys.create(
        request.principal!.accountId,
        request.body.name,
        request.body.role ?? 'member',
      );
      reply.status(201);
      return { key: keyJson(created.key), secret: created.secret };
    },
  );

  app.delete(
    '/v1/keys/:id',
    {
      schema: {
        summary: 'Revoke a key',
        tags: ['keys'],
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      requireAdmin(request.principal!);
      await core.keys.revoke(request.params.id, request.principal!.accountId);
      reply.status(204).send(null);
    },
  );
}
