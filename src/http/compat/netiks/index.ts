import multipart from '@fastify/multipart';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { authenticateFrom } from '../../plugins/auth.js';
import type { RoutingErrorShape } from '../../routing-errors.js';
import type { CompatContext } from '../context.js';
import { NetiksErrorSchema, netiksErrorHandler } from './errors.js';
import { presignedUrlRoutes } from './presigned-urls.js';
import { readAssetRoutes } from './read-asset.js';
import { uploadFileRoutes } from './upload-file.js';

/** Failures before routing (an over-long asset id) in this API's error shape. */
export const netiksRoutingErrors: RoutingErrorShape = {
  prefixes: ['/api/v1/assets/'],
  send: netiksErrorHandler,
  documented: { schema: NetiksErrorSchema },
};

/**
 * netiks cloud's developer assets API (seed 000): a single-file multipart upload, and a
 * three-step bulk upload (presigned PUT URLs, the PUT, a confirm call), keyed by `x-api-key`.
 */
export async function netiksCompat(instance: FastifyInstance, context: CompatContext): Promise<void> {
  const app = instance.withTypeProvider<TypeBoxTypeProvider>();
  app.setErrorHandler(netiksErrorHandler);
  // JSON (confirm, presign) and multipart (the file) only; anything else is a 415.
  app.removeContentTypeParser('text/plain');
  await app.register(multipart, {
    limits: { files: 1, fields: 16, fieldSize: 4096, parts: 20, headerPairs: 100 },
    // The core's byte limit reports oversize files; busboy only must not cut them silently.
    throwFileSizeLimit: false,
    // busboy would cut "../etc/passwd" down to "passwd" silently; the name rules refuse it.
    preservePath: true,
  });
  // Before any body is read, so a request without a valid key never streams a file.
  app.addHook('onRequest', async (request) => {
    const key = request.headers['x-api-key'];
    // netiks's document takes the key in x-api-key only: say so, not the native API's choices.
    request.principal = await authenticateFrom(
      context.core,
      typeof key === 'string' ? key : undefined,
      'x-api-key',
    );
  });
  await app.register(uploadFileRoutes, context);
  await app.register(presignedUrlRoutes, context);
  await app.register(readAssetRoutes, context);
}
