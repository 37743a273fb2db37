import { Ajv } from 'ajv';
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify';
import type { RoutingErrorShape } from '../../routing-errors.js';
import type { CompatContext } from '../context.js';
import { blobRoutes } from './blobs.js';
import { directUploadRoute } from './direct-upload.js';
import { activeStorageErrorHandler, activeStorageRoutingError } from './errors.js';

// All errors at once, each with the value it refused: FastAPI lists every bad field, with its input.
const bodies = new Ajv({
  allErrors: true,
  verbose: true,
  coerceTypes: false,
  useDefaults: true,
  strict: false,
});
const texts = new Ajv({
  allErrors: true,
  verbose: true,
  coerceTypes: 'array',
  useDefaults: true,
  strict: false,
});
const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) =>
  (httpPart === 'body' ? bodies : texts).compile(schema as object);

/** Failures before routing (an over-long signed id) in this API's error shapes. */
export const activeStorageRoutingErrors: RoutingErrorShape = {
  prefixes: ['/api/v1/upload/', '/rails/active_storage/'],
  send: activeStorageRoutingError,
};

/** Seed 002: the ActiveStorage-style direct upload API (FastAPI wire format). */
export async function activeStorageCompat(app: FastifyInstance, context: CompatContext): Promise<void> {
  app.setValidatorCompiler(validatorCompiler);
  app.setErrorHandler(activeStorageErrorHandler);
  // FastAPI parses a body sent without Content-Type as JSON, and validates any other
  // non-JSON body as the raw text it is (a 422, not a 415).
  app.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    if (request.headers['content-type'] !== undefined) return done(null, body);
    try {
      done(null, JSON.parse(body as string));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  await app.register(directUploadRoute, context);
  await app.register(blobRoutes, context);
}
