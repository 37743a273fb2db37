import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';

type SerializerFactory = ReturnType<typeof SerializerSelector>;

const fastifyDefault = SerializerSelector();

/**
 * Fastify's own response serializers (fast-json-stringify), built once per schema object
 * rather than once per route and status. Fastify builds one for every status of every route at
 * start; Wharf's routes share their schemas (every route lists the same error schema for each
 * of its error statuses), so most were the same serializer built again, at each start of a
 * server, and each test's. Keyed by the schema object itself, within one set of shared schemas
 * and options (what Fastify passes here), so what is reused is exactly what would be rebuilt.
 */
export const buildSharedSerializer: SerializerFactory = (externalSchemas, options) => {
  const compile = fastifyDefault(externalSchemas, options);
  const built = new WeakMap<object, ReturnType<typeof compile>>();
  return (route) => {
    const schema = route.schema;
    if (typeof schema !== 'object' || schema === null) return compile(route);
    let serializer = built.get(schema);
    if (!serializer) {
      serializer = compile(route);
      built.set(schema, serializer);
    }
    return serializer;
  };
};
