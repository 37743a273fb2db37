import multipart from '@fastify/multipart';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { WharfError } from '../../../core/errors.js';
import type { App } from '../../api/context.js';
import { documentSecurity } from '../../openapi/index.js';
import type { RoutingErrorShape } from '../../routing-errors.js';
import type { CompatContext } from '../context.js';
import { authenticateFileService } from './auth.js';
import { ErrorSchema, fileServiceErrorHandler, sendError } from './errors.js';
import { readRoutes } from './read.js';
import { uploadRoute } from './upload.js';

export const FILE_SERVICE_PREFIX = '/api_gateway/file-service';

/** Failures before routing (a bad percent-encoding, an over-long name) in this API's envelope. */
export const fileServiceRoutingErrors: RoutingErrorShape = {
  prefixes: [`${FILE_SERVICE_PREFIX}/`],
  send: (err, request, reply) => sendError(request, reply, err),
  documented: { schema: ErrorSchema },
};

/**
 * The namespaced file service with versions (seed 003, Capillary's file-service API):
 * its own scope under its documented prefix, with its own credentials (Basic key id and
 * secret, or a bearer key), body parsing and error envelope.
 */
export async function fileServiceCompat(app: FastifyInstance, context: CompatContext): Promise<void> {
  await app.register(
    async (scope: FastifyInstance) => {
      const api = scope.withTypeProvider<TypeBoxTypeProvider>() as App;
      // The body is the file, whatever its type: nothing here is parsed as JSON or text.
      api.removeAllContentTypeParsers();
      api.addContentTypeParser('*', (_request, _payload, done) => done(null));
      await api.register(multipart, {
        limits: { files: 1, fields: 32, fieldSize: 4096, parts: 40, headerPairs: 100 },
        // The core's byte limit reports oversize files; busboy only must not cut them silently.
        throwFileSizeLimit: false,
        preservePath: true,
      });
      api.setErrorHandler(fileServiceErrorHandler);
      api.setNotFoundHandler((request, reply) => {
        sendError(
          request,
          reply,
          new WharfError('NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}`),
        );
      });
      api.addHook('onRequest', async (request) => {
        request.principal = await authenticateFileService(context.core, request);
      });
      documentSecurity(api, [{ basic: [] }, { bearer: [] }, { apiKey: [] }]);
      await api.register(uploadRoute, context);
      await api.register(readRoutes, context);
    },
    { prefix: FILE_SERVICE_PREFIX },
  );
}
