import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifySchema, RouteOptions } from 'fastify';
import { ErrorSchema } from '../api/schemas.js';
import { type RoutingErrorShape, routingShapeFor } from '../routing-errors.js';
import { components, describedAs, referenced } from './components.js';
import { protocolPaths, protocolTags } from './protocols.js';

export interface OpenApiOptions {
  publicUrl: string;
  /** Whether /v1/tus/ is served (its operations are then documented). */
  tus: boolean;
  /** Whether this node serves the embedded storage endpoint (/s3/…). */
  storageEndpoint: boolean;
  /** Each path's error shape for refusals before routing (see routing-errors.ts). */
  routingErrors: readonly RoutingErrorShape[];
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * A request body for the document only, for routes whose body Fastify never parses (raw
     * uploads, forms): an OpenAPI `content` map by media type.
     */
    documentedBody?: Record<string, { schema: unknown }>;
    /**
     * Response headers for the document, by status then name (the value is the description):
     * what a route sets beside its body (a download's ETag, a creation's Location).
     */
    documentedHeaders?: Record<number, Record<string, string>>;
  }
}

/**
 * The OpenAPI document (/openapi.json) and its browsable reference (/docs). Named schemas
 * (src/http/openapi/components.ts) become components referenced with `$ref`; the protocol
 * endpoints' operations are added from src/http/openapi/protocols.ts.
 */
export async function registerOpenApi(app: FastifyInstance, options: OpenApiOptions): Promise<void> {
  // Operations whose body may be left out: @fastify/swagger marks every body required.
  const optionalBodies = new Set<string>();
  // Each operation's response headers (see headersOf), added to the document once it is built.
  const responseHeaders = new Map<string, Record<string, Record<string, string>>>();
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Wharf',
        version: '0.1.0',
        description:
          'Self-hosted upload and asset service: verified, deduplicated, access-controlled assets.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      servers: [{ url: options.publicUrl }],
      components: {
        securitySchemes: {
          apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' },
          bearer: { type: 'http', scheme: 'bearer' },
          // Seed APIs' own credentials (documentSecurity): the file service's Basic (key id as
          // user, secret as password), FileSpin's key header.
          basic: { type: 'http', scheme: 'basic' },
          fileSpinApiKey: { type: 'apiKey', in: 'header', name: 'X-FileSpin-Api-Key' },
        },
      },
      security: [{ apiKey: [] }, { bearer: [] }],
    },
    // Components are named after their `$id` (the default names them def-0, def-1, …).
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
    transform: ({ schema, url, route }) => {
      if (schema?.operationId && optional(schema.body)) optionalBodies.add(schema.operationId);
      const refusals = withGenericRefusals(documented(schema, route.config), route, options.routingErrors);
      // The native API's only: the console reuses some of its routes (hidden) under their names.
      if (schema?.operationId && url.startsWith('/v1/')) {
        responseHeaders.set(schema.operationId.replace(/-head$/, 'Head'), headersOf(refusals, route));
      }
      if (route.method !== 'HEAD') return { schema: refusals, url };
      // Only the native API's HEADs: @fastify/swagger copies a HEAD's schema in its own onRoute
      // hook, before a scope's hook can hide it (the console's reuse of the image route).
      return { schema: url.startsWith('/v1/') ? headOf(refusals) : { ...refusals, hide: true }, url };
    },
    transformObject: (documentObject) => {
      const document = (documentObject as { openapiObject: OpenApiDocument }).openapiObject;
      for (const operations of Object.values(document.paths)) {
        for (const operation of Object.values(operations)) {
          if (optionalBodies.has(operation.operationId ?? '') && operation.requestBody) {
            operation.requestBody.required = false;
          }
          for (const [status, headers] of Object.entries(
            responseHeaders.get(operation.operationId ?? '') ?? {},
          )) {
            const response = operation.responses?.[status];
            if (response === undefined) continue;
            response.headers = {
              ...response.headers,
              ...Object.fromEntries(
                Object.entries(headers).map(([name, description]) => [
                  name,
                  { description, schema: { type: 'string' } },
                ]),
              ),
            };
          }
        }
      }
      Object.assign(document.paths, protocolPaths(options));
      document.tags = [...(document.tags ?? []), ...protocolTags];
      return document as never;
    },
  });
  // The components, as shared schemas of a scope of their own: @fastify/swagger collects every
  // scope's shared schemas, and no route's validator or serialiser is handed them.
  await app.register(async (scope) => {
    for (const [name, schema] of components()) {
      scope.addSchema({ ...(defaultsOptional(referenced(schema, true)) as object), $id: name });
    }
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    // The reference's own scripts (by hash), and "Try it out" against this origin only
    // (default-src 'self'). Swagger UI sets inline styles as it renders, which a hash cannot
    // allow (styles run no code); and no upgrade-insecure-requests, which would send a
    // plain-http deployment's requests (a laptop's, a test's) to https and break them.
    staticCSP: true,
    transformStaticCSP: (policy) =>
      policy
        .replace(/\s*upgrade-insecure-requests;?/, '')
        .replace(/style-src [^;]*;/, "style-src 'self' 'unsafe-inline';"),
  });
  app.get('/openapi.json', { schema: { hide: true }, config: { auth: 'none' } }, async () => app.swagger());
}

/**
 * The credentials every route of `scope` (a seed API's) accepts, for the document: its routes
 * then need not each say so, and a new one says so too. A route's own `security` stands.
 */
export function documentSecurity(scope: FastifyInstance, security: Record<string, string[]>[]): void {
  scope.addHook('onRoute', (route) => {
    route.schema = { ...route.schema, security: route.schema?.security ?? security };
  });
}

interface OpenApiDocument {
  paths: Record<
    string,
    Record<
      string,
      {
        operationId?: string;
        requestBody?: { required?: boolean };
        responses?: Record<string, { headers?: Record<string, unknown> }>;
      }
    >
  >;
  tags?: unknown[];
}

/** Whether a body schema lets the body be left out: TypeBox's Optional, or a union with null. */
function optional(body: unknown): boolean {
  if (typeof body !== 'object' || body === null) return false;
  const schema = body as { '~optional'?: boolean; anyOf?: { type?: unknown }[] };
  return schema['~optional'] === true || (schema.anyOf ?? []).some((variant) => variant.type === 'null');
}

/** Methods whose route parses a body: a DELETE's too, when one is sent. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Methods that only read: every other one writes (a DELETE too: it records the deletion). */
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

const UNAVAILABLE = describedAs(
  ErrorSchema,
  'SERVICE_UNAVAILABLE: the database or storage cannot be reached, or the server is stopping; retry after `Retry-After` seconds.',
);
const STORAGE_FULL = describedAs(
  ErrorSchema,
  'STORAGE_FULL: the disk (or the database’s) is full, or the S3 store refuses the write for want of room.',
);

/**
 * The refusals that come from how a route is registered rather than from what it does, declared
 * here for every route (so a new route declares them too) rather than in each route's schema:
 * - `414` on a route with a path parameter: a segment longer than any id, refused before routing
 *   (see routing-errors.ts) in the shape of the path's API, under the status that API answers.
 * - On a native POST, PUT, PATCH or DELETE that reads JSON (any body: a route without one still
 *   parses what it is sent, a DELETE's too), `413` for a body over its limit and `415` for a body
 *   of another type or in a Content-Encoding (see file-bodies.ts).
 * - `415` on a route that stores its body as a file, for one sent in a Content-Encoding
 *   (config.fileBody, see file-bodies.ts).
 * - `503` on every native route: each reads the database (a key is looked up before anything
 *   else), and the database or storage may be away (SERVICE_UNAVAILABLE, with Retry-After).
 * - `507` on every native route whose method writes (not GET, HEAD or OPTIONS): a full disk
 *   refuses any write, the database's own (SQLITE_FULL, PostgreSQL's disk full) included, so a
 *   DELETE that only records a deletion can meet it too. A GET that writes (a rendering stored
 *   on first request) declares it itself.
 * The seed APIs map these statuses onto their own documents' (a 413 may be their 400), so their
 * routes list body refusals themselves.
 */
function withGenericRefusals(
  schema: FastifySchema,
  route: RouteOptions,
  routingErrors: readonly RoutingErrorShape[],
): FastifySchema {
  if (schema.response === undefined) return schema;
  const response = { ...(schema.response as Record<string, unknown>) };
  const native = route.url.startsWith('/v1/');
  const shape = routingShapeFor(routingErrors, route.url);
  if (route.url.includes('/:')) {
    if (shape?.documented) {
      const { schema: error, status = (status: number) => status } = shape.documented;
      response[status(414)] ??= referenced(error);
    } else if (native && shape === undefined) response[414] ??= referenced(ErrorSchema);
  }
  if (!native) return { ...schema, response };
  const error = referenced(ErrorSchema);
  const readsJson = route.config?.documentedBody === undefined;
  if (readsJson && [route.method].flat().some((method) => BODY_METHODS.has(method))) {
    response[413] ??= error;
    response[415] ??= error;
  }
  if (route.config?.fileBody === true) response[415] ??= error;
  response[503] ??= referenced(UNAVAILABLE);
  if ([route.method].flat().some((method) => !READ_METHODS.has(method))) {
    response[507] ??= referenced(STORAGE_FULL);
  }
  return { ...schema, response };
}

const RETRY_AFTER = { 'Retry-After': 'Seconds to wait before trying again.' };

/**
 * The headers a native route's answers carry beside their bodies, by status: `Retry-After` on
 * every 429 and 503 (a busy or away dependency, a stream cap, a rate limit; docs/reference.md);
 * on a route that takes an Idempotency-Key (config.idempotent), `Idempotent-Replayed` on its
 * 2xx and `Retry-After` on its 409 (IDEMPOTENCY_KEY_IN_USE); and the route's own
 * (config.documentedHeaders).
 */
function headersOf(schema: FastifySchema, route: RouteOptions): Record<string, Record<string, string>> {
  const statuses = Object.keys((schema.response ?? {}) as object);
  const out: Record<string, Record<string, string>> = {};
  const add = (status: string, headers: Record<string, string>) => {
    if (statuses.includes(status)) out[status] = { ...out[status], ...headers };
  };
  add('429', RETRY_AFTER);
  add('503', RETRY_AFTER);
  if (route.config?.idempotent !== undefined) {
    for (const status of ['200', '201']) {
      add(status, {
        'Idempotent-Replayed': '`true` when this is the kept answer to an earlier request with the key.',
      });
    }
    add('409', RETRY_AFTER);
  }
  for (const [status, headers] of Object.entries(route.config?.documentedHeaders ?? {})) add(status, headers);
  return out;
}

/**
 * The HEAD that Fastify serves beside a GET (documented where the GET's config says
 * `swagger.exposeHeadRoute`): the GET's answers without their bodies. @fastify/swagger names it
 * `<operationId>-head`; it becomes `<operationId>Head`, camelCase as every other operationId.
 */
function headOf(schema: FastifySchema): FastifySchema {
  const operationId = (schema.operationId ?? '').replace(/-head$/, 'Head');
  const response = Object.fromEntries(
    Object.entries((schema.response ?? {}) as Record<string, { description?: string }>).map(
      ([status, answer]) => [
        status,
        { type: 'null', description: answer.description ?? 'As GET, without a body.' },
      ],
    ),
  );
  return { ...schema, operationId, summary: `${schema.summary} (the headers only)`, response };
}

/** A route's schema as the document shows it: components referenced, documentation-only bodies added. */
function documented(
  schema: FastifySchema | undefined,
  config: { documentedBody?: Record<string, { schema: unknown }> } | undefined,
): FastifySchema {
  const out: Record<string, unknown> = { ...schema };
  if (schema?.querystring !== undefined) out.querystring = defaultsOptional(schema.querystring);
  if (schema?.body !== undefined) out.body = defaultsOptional(referenced(schema.body));
  if (schema?.response !== undefined) {
    out.response = Object.fromEntries(
      Object.entries(schema.response as Record<string, unknown>).map(([status, response]) => [
        status,
        referenced(response),
      ]),
    );
  }
  if (config?.documentedBody) out.body = { content: referenced(config.documentedBody) };
  return out as FastifySchema;
}

/**
 * A copy of a schema in which properties with a `default` are not required: the validator fills
 * them in, so to a client they are optional (a generated client would otherwise have to send
 * every page `limit`). Validation keeps using the schema itself.
 */
export function defaultsOptional<T>(schema: T): T {
  if (Array.isArray(schema)) return schema.map(defaultsOptional) as T;
  if (typeof schema !== 'object' || schema === null) return schema;
  // Enumerable keys only, as the document is written (TypeBox's own markers are not).
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) out[key] = defaultsOptional(value);
  const properties = out.properties as Record<string, { default?: unknown }> | undefined;
  if (Array.isArray(out.required) && properties) {
    out.required = (out.required as string[]).filter((name) => properties[name]?.default === undefined);
    if ((out.required as string[]).length === 0) delete out.required;
  }
  return out as T;
}
