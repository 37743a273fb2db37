import { Ajv, type ErrorObject } from 'ajv';
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify';
import { depthCheckedJsonParser } from '../../json-depth.js';
import { presentedKey } from '../../plugins/auth.js';
import type { RoutingErrorShape } from '../../routing-errors.js';
import type { CompatContext } from '../context.js';
import { blobRoutes } from './blobs.js';
import { directUploadRoute } from './direct-upload.js';
import { activeStorageErrorHandler, activeStorageRoutingError } from './errors.js';
import { withLaxIntegers } from './lax-integers.js';
import { ErrorResponse } from './schemas.js';

// All errors at once, each with the value it refused: FastAPI lists every bad field, with its input.
const bodies = new Ajv({
  allErrors: true,
  verbose: true,
  coerceTypes: false,
  useDefaults: true,
  strict: false,
});
// No query or path parameter of this API is a number. One that becomes one should read its text
// as Pydantic does (lax-integers.ts), not as this coercion's Number(), which takes `0x10` and `1e1`
// (the native API's compiler checks its own numbers first: src/http/validation.ts).
const texts = new Ajv({
  allErrors: true,
  verbose: true,
  coerceTypes: 'array',
  useDefaults: true,
  strict: false,
});

type ValidationFunction = ReturnType<FastifySchemaCompiler<unknown>>;

/**
 * A body is checked as Pydantic's lax mode reads it: an integer field given as a numeric
 * string is that integer (see lax-integers.ts), since FastAPI answers `"byte_size": "12"` as
 * 12, not `int_parsing`. A refusal still reports the value as sent; the route gets numbers.
 */
function laxBodyValidator(schema: object): ValidationFunction {
  const validate = bodies.compile(schema);
  const check = (data: unknown) => {
    const originals = new Map<string, unknown>();
    const value = withLaxIntegers(schema, data, originals);
    if (validate(value)) return { value };
    check.errors = (validate.errors ?? []).map((error) =>
      originals.has(error.instancePath) ? { ...error, data: originals.get(error.instancePath) } : error,
    );
    return false;
  };
  check.errors = null as ErrorObject[] | null;
  return check;
}

const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) =>
  httpPart === 'body' ? laxBodyValidator(schema as object) : texts.compile(schema as object);

/** Failures before routing (an over-long signed id) in this API's error shapes. */
export const activeStorageRoutingErrors: RoutingErrorShape = {
  prefixes: ['/api/v1/upload/', '/rails/active_storage/'],
  send: activeStorageRoutingError,
  documented: { schema: ErrorResponse },
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
