import { Type } from 'typebox';
import { requireKey, requireScope } from '../../core/authorization.js';
import type { ImagePreset } from '../../core/model.js';
import { FITS, MAX_DPR } from '../../core/transforms.js';
import { named } from '../openapi/components.js';
import type { ApiContext, App } from './context.js';
import { errorResponses, iso, NoQuery } from './schemas.js';

const PresetParams = Type.Object({ name: Type.String({ maxLength: 64 }) });

const PresetBody = named(
  'ImagePresetRequest',
  Type.Object(
    {
      w: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
      h: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
      fit: Type.Optional(Type.Union(FITS.map((f) => Type.Literal(f)))),
      format: Type.Optional(Type.Union(['auto', 'webp', 'avif', 'jpeg', 'png'].map((f) => Type.Literal(f)))),
      q: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
      dpr: Type.Optional(Type.Number({ minimum: 1, maximum: MAX_DPR })),
      eager: Type.Boolean({
        default: false,
        description: 'Render it (every format `auto` may choose) as soon as an image arrives.',
      }),
    },
    { additionalProperties: false },
  ),
);

const PresetSchema = named(
  'ImagePreset',
  Type.Object(
    {
      name: Type.String(),
      params: Type.Object(
        {
          w: Type.Optional(Type.Integer()),
          h: Type.Optional(Type.Integer()),
          fit: Type.Optional(Type.String()),
          format: Type.String(),
          q: Type.Optional(Type.Integer()),
        },
        { description: 'Canonical: sizes rounded up to 16 px with dpr applied, quality to 5.' },
      ),
      eager: Type.Boolean(),
      created_at: Type.String({ format: 'date-time' }),
      updated_at: Type.String({ format: 'date-time' }),
    },
    { description: 'A named set of transform parameters (`?preset=name`).' },
  ),
);

const PresetListSchema = named(
  'ImagePresetList',
  Type.Object({ data: Type.Array(PresetSchema) }, { description: 'The account’s image presets.' }),
);

function presetJson(preset: ImagePreset) {
  return {
    name: preset.name,
    params: preset.params,
    eager: preset.eager,
    created_at: iso(preset.createdAt),
    updated_at: iso(preset.updatedAt),
  };
}

/** Named transform presets of the caller's account; changing them takes an admin key. */
export async function imagePresetRoutes(app: App, { core }: ApiContext): Promise<void> {
  app.get(
    '/v1/image-presets',
    {
      schema: {
        operationId: 'listImagePresets',
        querystring: NoQuery,
        summary: 'List the account’s image presets',
        tags: ['images'],
        response: { 200: PresetListSchema, ...errorResponses },
      },
    },
    async (request) => {
      // A token renders its own images by preset name; the account's list is the keys' business.
      requireKey(request.principal!);
      return { data: (await core.presets.list(request.principal!.accountId)).map(presetJson) };
    },
  );

  app.get(
    '/v1/image-presets/:name',
    {
      schema: {
        operationId: 'getImagePreset',
        summary: 'One image preset',
        tags: ['images'],
        params: PresetParams,
        response: { 200: PresetSchema, ...errorResponses },
      },
    },
    async (request) => {
      requireKey(request.principal!);
      return presetJson(await core.presets.get(request.principal!.accountId, request.params.name));
    },
  );

  app.put(
    '/v1/image-presets/:name',
    {
      schema: {
        operationId: 'putImagePreset',
        summary: 'Create or replace an image preset (admin)',
        tags: ['images'],
        params: PresetParams,
        body: PresetBody,
        response: { 200: PresetSchema, ...errorResponses },
      },
    },
    async (request) => {
      const principal = request.principal!;
      requireScope(principal, 'admin');
      const { eager, ...params } = request.body;
      return presetJson(
        await core.presets.put(principal.accountId, request.params.name, params, eager ?? false),
      );
    },
  );

  app.delete(
    '/v1/image-presets/:name',
    {
      schema: {
        operationId: 'deleteImagePreset',
        summary: 'Delete an image preset (admin); renderings already made stay until their asset goes',
        tags: ['images'],
        params: PresetParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const principal = request.principal!;
      requireScope(principal, 'admin');
      await core.presets.delete(principal.accountId, request.params.name);
      return reply.status(204).send(null);
    },
  );
}
