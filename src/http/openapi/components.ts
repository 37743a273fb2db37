import type { TSchema } from 'typebox';

/**
 * The schemas that are components of the OpenAPI document (`#/components/schemas/<name>`),
 * referenced with `$ref` wherever a route uses them.
 *
 * Routes keep using the TypeBox objects themselves, inline: validation (src/http/validation.ts)
 * and Fastify's response serialisers compile exactly what they compiled before, and never meet
 * a `$ref`. Only the document is rewritten: its transform (src/http/openapi/index.ts) swaps
 * each registered object, found by identity, for a reference to its component.
 */
const byName = new Map<string, TSchema>();
const names = new WeakMap<object, string>();
/** Copies of named schemas with a description of their own (a response's, say). */
const variants = new WeakMap<object, { name: string; description: string }>();

/** Registers `schema` as the component `name` and returns it unchanged. */
export function named<T extends TSchema>(name: string, schema: T): T {
  if (byName.has(name)) throw new Error(`Two OpenAPI components are named ${name}.`);
  if (names.has(schema)) throw new Error(`A schema is named both ${names.get(schema)} and ${name}.`);
  byName.set(name, schema);
  names.set(schema, name);
  return schema;
}

/**
 * `schema` (a named one) with another description: the same schema at run time, and in the
 * document a reference to its component beside that description (an answer's, say).
 */
export function describedAs<T extends TSchema>(schema: T, description: string): T {
  const name = names.get(schema);
  if (name === undefined) throw new Error('describedAs takes a named schema.');
  const variant = { ...schema, description };
  variants.set(variant, { name, description });
  return variant;
}

export function componentName(schema: unknown): string | undefined {
  return typeof schema === 'object' && schema !== null ? names.get(schema) : undefined;
}

/**
 * The name of the named schema `schema` is a shallow copy of: TypeBox's Type.Optional(X) is a
 * new object holding X's very keywords, plus a marker under a symbol.
 */
function copyOf(schema: object): string | undefined {
  const keys = Object.keys(schema);
  for (const [name, candidate] of byName) {
    const own = Object.keys(candidate);
    if (
      own.length === keys.length &&
      own.every(
        (key) => (schema as Record<string, unknown>)[key] === (candidate as Record<string, unknown>)[key],
      )
    ) {
      return name;
    }
  }
  return undefined;
}

export function components(): ReadonlyMap<string, TSchema> {
  return byName;
}

/**
 * A copy of `schema` for the document: every registered schema inside it (and `schema` itself
 * unless `keepRoot`) becomes `{ $ref: '<name>#' }`, which @fastify/swagger resolves to the
 * component. Symbol keys (TypeBox's) are left out; the document is plain JSON.
 */
export function referenced(schema: unknown, keepRoot = false): unknown {
  if (!keepRoot && typeof schema === 'object' && schema !== null) {
    const name = names.get(schema);
    if (name !== undefined) return { $ref: `${name}#` };
    const variant = variants.get(schema);
    if (variant !== undefined) return { $ref: `${variant.name}#`, description: variant.description };
    const copied = copyOf(schema);
    if (copied !== undefined) return { $ref: `${copied}#` };
  }
  if (Array.isArray(schema)) return schema.map((item) => referenced(item));
  if (typeof schema !== 'object' || schema === null) return schema;
  return Object.fromEntries(Object.entries(schema).map(([key, value]) => [key, referenced(value)]));
}
