import { Ajv, type KeywordDefinition } from 'ajv';
import type { DataValidationCxt } from 'ajv/dist/types/index.js';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

/**
 * Bodies are validated strictly: a wrong type is an error, never coerced, and unknown
 * fields are refused rather than silently dropped (Fastify's default drops them).
 * Query strings and paths arrive as text, so there numbers are coerced.
 */
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

export const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) =>
  (httpPart === 'body' ? strict : coercing).compile(schema as object);
