import { Ajv, type KeywordDefinition } from 'ajv';
import type { DataValidationCxt } from 'ajv/dist/types/index.js';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

/**
 * `x-lower-case: true` on a string schema: the value is taken in lower case. Ids are UUIDs,
 * which RFC 9562 makes case-insensitive on input, and Wharf stores and compares them in lower
 * case: an id a client upper-cased was a 404. The schema that names an id (IdParams, PageCursor)
 * normalises it once, so every handler and every answer sees the canonical form.
 */
const LOWER_CASE: KeywordDefinition = {
  keyword: 'x-lower-case',
  type: 'string',
  schemaType: 'boolean',
  modifying: true,
  validate: (enabled: boolean, data: string, _schema?: unknown, context?: DataValidationCxt) => {
    if (enabled && context?.parentData !== undefined) {
      (context.parentData as Record<string | number, unknown>)[context.parentDataProperty] =
        data.toLowerCase();
    }
    return true;
  },
};

/**
 * Bodies are validated strictly: a wrong type is an error, never coerced, and unknown
 * fields are refused rather than silently dropped (Fastify's default drops them).
 * Query strings and paths arrive as text, so there numbers are coerced, from plain decimal
 * text only (see `plainNumbersFirst`).
 */
function makeAjv(coerce: boolean): Ajv {
  const ajv = new Ajv({
    allErrors: false,
    removeAdditional: false,
    useDefaults: true,
    coerceTypes: coerce ? 'array' : false,
    strict: false,
  });
  (addFormats as unknown as (a: Ajv) => void)(ajv);
  ajv.addKeyword(LOWER_CASE);
  return ajv;
}

const strict = makeAjv(false);
const coercing = makeAjv(true);

type Numeric = 'integer' | 'number';

/**
 * The text a number of a query string, path or header may be: decimal digits, a leading `-`
 * (a bound refuses it where negatives make no sense, with its own message), and for a
 * `number` a fraction. Leading zeros are decimal (`007` is 7). Ajv coerces with JavaScript's
 * Number(), which also reads `0x10` (16), `0b11`, `1e1`, `+5`, ` 5`, `5.0` and `Infinity`:
 * `?limit=0x10` was a page of 16, where every other API refuses it.
 */
const PLAIN: Record<Numeric, RegExp> = {
  integer: /^-?[0-9]+$/,
  number: /^-?[0-9]+(?:\.[0-9]+)?$/,
};
/** `-0` would pass `minimum: 0` as a zero that is negative: it is no plain number either. */
const NEGATIVE_ZERO = /^-[0.]+$/;

function isPlain(text: string, kind: Numeric): boolean {
  return PLAIN[kind].test(text) && !NEGATIVE_ZERO.test(text);
}

/** The properties a text schema declares numeric, by name: `integer` unless any type allows a fraction. */
function numericProperties(schema: unknown): Map<string, Numeric> {
  const found = new Map<string, Numeric>();
  const properties = (schema as { properties?: Record<string, { type?: unknown }> }).properties ?? {};
  for (const [name, property] of Object.entries(properties)) {
    const types = ([] as unknown[]).concat(property?.type ?? []);
    // Only a property's own `type` is read, not a union (`anyOf`): no text schema has a numeric
    // one. A type that also admits a string takes the text as it is, uncoerced.
    if (types.includes('string')) continue;
    if (types.includes('number')) found.set(name, 'number');
    else if (types.includes('integer')) found.set(name, 'integer');
  }
  return found;
}

type Validate = ReturnType<FastifySchemaCompiler<unknown>> & { errors?: unknown };

/**
 * `validate` (ajv's, coercing) behind a check of the text of each numeric property, as sent:
 * one that is not plain is refused as ajv refuses `abc` there ("querystring/limit must be
 * integer", the first error as with `allErrors: false`), before ajv's coercion reads it.
 * Query strings, paths and headers are flat, so only the schema's own properties are read.
 */
function plainNumbersFirst(schema: object, validate: Validate): Validate {
  const numeric = numericProperties(schema);
  if (numeric.size === 0) return validate;
  const check = (data: unknown) => {
    if (typeof data === 'object' && data !== null) {
      for (const [name, kind] of numeric) {
        if (!Object.hasOwn(data, name)) continue;
        const sent = (data as Record<string, unknown>)[name];
        // Coercing to arrays, ajv takes a list of one value as that value (of more, refuses it).
        const text = Array.isArray(sent) && sent.length === 1 ? sent[0] : sent;
        if (typeof text !== 'string' || isPlain(text, kind)) continue;
        const pointer = name.replace(/~/g, '~0').replace(/\//g, '~1');
        check.errors = [
          {
            keyword: 'type',
            instancePath: `/${pointer}`,
            schemaPath: `#/properties/${pointer}/type`,
            params: { type: kind },
            message: `must be ${kind}`,
          },
        ];
        return false;
      }
    }
    const valid = validate(data);
    check.errors = validate.errors;
    return valid;
  };
  check.errors = null as unknown;
  return check as Validate;
}

export const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) =>
  httpPart === 'body'
    ? strict.compile(schema as object)
    : plainNumbersFirst(schema as object, coercing.compile(schema as object));
