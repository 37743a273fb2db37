import type { App } from '../../api/context.js';
import { IdParams } from '../../api/schemas.js';
import type { CompatContext } from '../context.js';
import { netiksErrors } from './errors.js';
import { NetiksAssetSchema, netiksAsset } from './responses.js';

/**
 * The document only says files can be fetched "using APIs in Assets"; this is the obvious
 * one, an asset in the same shape the uploads return (e.g. to see `dimensions` once known).
 */
export async function readAssetRoutes(app: App, { core }: CompatContext): Promise<void> {
  app.get(
    '/api/v1/assets/:id/',
    {
      schema: {
        operationId: 'netiksGetAsset',
        summary: 'Get one asset',
        tags: ['netiks'],
        security: [{ apiKey: [] }],
        params: IdParams,
        response: { 200: NetiksAssetSchema, ...netiksErrors },
      },
    },
    async (request) => netiksAsset(await core.assets.get(request.principal!, request.params.id)),
  );
}
