import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifySchema } from 'fastify';
import { ErrorSchema } from '../api/schemas.js';
import { components, referenced } from './components.js';
import { protocolPaths, protocolTags } from './protocols.js';

export interface OpenApiOptions {
  publicUrl: string;
  /** Whether /v1/tus/ is served (its operations are then documented). */
  tus: boolean;
  /** Whether this node serves the embedded storage endpoint (/s3/…). */
  storageEndpoint: boolean;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * A request body for the document only, for routes whose body Fastify never parses (raw
     * uploads, forms): an OpenAPI `content` map by media type.
     */
    documentedBody?: Record<string, { schema: unknown }>;
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
      return { schema: withGenericRefusals(documented(schema, route.config), url), url };
    },
    transformObject: (documentObject) => {
      const document = (documentObject as { openapiObject: OpenApiDocument }).openapiObject;
      for (const operations of Object.values(document.paths)) {
        for (const operation of Object.values(operations)) {
          if (optionalBodies.has(operation.operationId ?? '') && operation.requestBody) {
            operation.requestBody.required = false;
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

interface OpenApiDocument {
  paths: Record<string, Record<string, { operationId?: string; requestBody?: { required?: boolean } }>>;
  tags?: unknown[];
}

/** Whether a body schema lets the body be left out: TypeBox's Optional, or a union with null. */
function optional(body: unknown): boolean {
  if (typeof body !== 'object' || body === null) return false;
  const schema = body as { '~optional'?: boolean; anyOf?: { type?: unknown }[] };
  return schema['~optional'] === true || (schema.anyOf ?? []).some((variant) => variant.type === 'null');
}

/**
 * The refusals every native route may give that no route's schema names: `415` for a JSON body
 * of another type, `414` for a path segment longer than any id (see routing-errors.ts). The seed
 * APIs' routes answer in their own shapes and are left as their schemas say.
 */
function withGenericRefusals(schema: FastifySchema, url: string): FastifySchema {
  if (!url.startsWith('/v1/') || schema.response === undefined) return schema;
  const response = { ...(schema.response as Record<string, unknown>) };
  const error = referenced(ErrorSchema);
  if (schema.body !== undefined && !('content' in (schema.body as object))) response[415] ??= error;
  if (url.includes('/:')) response[414] ??= error;
  return { ...schema, response };
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
