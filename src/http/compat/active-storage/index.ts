import { Ajv } from 'ajv';
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify';
import { depthCheckedJsonParser } from '../../json-depth.js';
import { presentedKey } from '../../plugins/auth.js';
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
  // Before the body is read: a caller without a valid key costs no parsing or validation and
  // learns nothing about what the API accepts (FastAPI's security dependencies also run
  // before body validation). The redirect route's signed id is its own credential.
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.config.auth === 'none') return;
    request.principal = await context.core.keys.authenticate(presentedKey(request));
  });
  // FastAPI parses a body sent without Content-Type as JSON, and validates any other
  // non-JSON body as the raw text it is (a 422, not a 415).
  // Fastify's JSON parser, which refuses `__proto__` and `constructor` keys as it does for
  // application/json, so an untyped body is no way around that.
  const json = depthCheckedJsonParser(app);
  app.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    if (request.headers['content-type'] !== undefined) return done(null, body);
    json(request, body as string, done);
  });
  await app.register(directUploadRoute, context);
  await app.register(blobRoutes, context);
}
