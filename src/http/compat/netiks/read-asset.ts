import { viewThrough } from '../../../core/authorization.js';
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
    async (request) => {
      // As core.assets.get shows it, and with the upload it is seen through (if any) at hand:
      // that upload's storage path is the caller's to see, the record's first uploader's is not.
      const { asset, through } = await core.assets.view(request.principal!, request.params.id);
      return through ? netiksAsset(viewThrough(asset, through), through) : netiksAsset(asset);
    },
  );
}
