import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { documentSecurity } from '../../openapi/index.js';
import { authenticateFrom, presentedKey } from '../../plugins/auth.js';
import type { RoutingErrorShape } from '../../routing-errors.js';
import type { CompatContext } from '../context.js';
import { FileSpinErrorSchema, fileSpinErrorHandler } from './errors.js';
import { registerAssetRoute } from './register-asset.js';
import { storageUrlRoute } from './storage-url.js';

/** FileSpin's key header; Wharf's own (x-api-key, Bearer) are accepted too. */
function fileSpinKey(request: FastifyRequest): string | undefined {
  const header = request.headers['x-filespin-api-key'];
  if (typeof header === 'string' && header !== '') return header;
  return presentedKey(request);
}

/** Failures before routing in this API's error shape (its paths lie inside netiks's). */
export const fileSpinRoutingErrors: RoutingErrorShape = {
  prefixes: ['/api/v1/assets/new/'],
  send: fileSpinErrorHandler,
  documented: { schema: FileSpinErrorSchema },
};

/**
 * FileSpin (seed 004): presigned S3 POST upload, then register_asset. Storage is whatever
 * Wharf's core presigns for (its own endpoint, or the S3 store of a scaled deployment).
 */
export async function filespinCompat(scope: FastifyInstance, context: CompatContext): Promise<void> {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();
  app.setErrorHandler(fileSpinErrorHandler);
  // Before the body is parsed or validated: a caller without a valid key learns nothing else.
  app.addHook('onRequest', async (request) => {
    // The 401 for no key names FileSpin's header first, as its document sends the key.
    request.principal = await authenticateFrom(
      context.core,
      fileSpinKey(request),
      'X-FileSpin-Api-Key, or x-api-key or Authorization: Bearer',
    );
  });
  documentSecurity(app, [{ fileSpinApiKey: [] }, { apiKey: [] }, { bearer: [] }]);
  await app.register(storageUrlRoute, context);
  await app.register(registerAssetRoute, context);
}
