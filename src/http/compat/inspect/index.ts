import type { FastifyInstance } from 'fastify';
import type { App } from '../../api/context.js';
import { authenticate } from '../../plugins/auth.js';
import type { RoutingErrorShape } from '../../routing-errors.js';
import type { CompatContext } from '../context.js';
import { inspectErrorHandler, inspectNotFound, inspectStatus } from './errors.js';
import { fileRoutes } from './files.js';
import { presignedRoute } from './presigned.js';
import { ErrorSchema } from './schemas.js';

export const INSPECT_PREFIX = '/api/inspect';

/** Failures before routing (an over-long id) in this API's error shape. */
export const inspectRoutingErrors: RoutingErrorShape = {
  prefixes: [`${INSPECT_PREFIX}/`],
  send: inspectErrorHandler,
  documented: { schema: ErrorSchema, status: inspectStatus },
};

/**
 * The Inspect file API (seed 001): presigned uploads of files that belong to an entity, under
 * /api/inspect, with its own `{"error", "errorDescription"}` errors.
 */
export async function inspectCompat(app: FastifyInstance, { core }: CompatContext): Promise<void> {
  await app.register(
    async (scope: App) => {
      scope.setErrorHandler(inspectErrorHandler);
      scope.setNotFoundHandler(inspectNotFound);
      // The document names no auth scheme: the key comes as `Authorization: Bearer` or `x-api-key`.
      scope.addHook('onRequest', async (request) => {
        request.principal = await authenticate(core, request);
      });
      presignedRoute(scope, core);
      fileRoutes(scope, core);
    },
    { prefix: INSPECT_PREFIX },
  );
}
