import type { FastifyError } from 'fastify';

type ValidationError = NonNullable<FastifyError['validation']>[number];

/**
 * A validation failure's message, as Fastify words it, except that:
 * - a value outside a set of choices (TypeBox's union of literals: an `anyOf` of `const`s, as
 *   `fit`, `format` or `status` are) names the choices: Fastify's own words were "querystring/fit
 *   must be equal to constant" once per choice, then "must match a schema in anyOf", and never
 *   said what would do;
 * - a value that may also be null (a body that may be left out, `anyOf` [object, null]: the
 *   signing routes', rotate-secret's) says what is wrong with it as the object, without "body
 *   must be null, body must match a schema in anyOf": a client that sent an object meant one.
 */
export function validationMessage(err: FastifyError): string {
  const errors = err.validation ?? [];
  const context = err.validationContext ?? '';
  const choices = new Map<string, unknown[]>();
  for (const e of errors) {
    if (e.keyword !== 'anyOf') continue;
    const branches = errors.filter((b) => b !== e && b.schemaPath.startsWith(`${e.schemaPath}/`));
    const allConst =
      branches.length > 0 &&
      branches.every((b) => b.keyword === 'const' && b.instancePath === e.instancePath);
    if (allConst)
      choices.set(
        e.schemaPath,
        branches.map((b) => (b.params as { allowedValue?: unknown }).allowedValue),
      );
  }
  const orNull = new Set<ValidationError>();
  for (const e of errors) {
    if (e.keyword !== 'anyOf') continue;
    const nullBranch = errors.find(
      (b) =>
        b.keyword === 'type' &&
        (b.params as { type?: unknown }).type === 'null' &&
        b.instancePath === e.instancePath &&
        b.schemaPath.startsWith(`${e.schemaPath}/`),
    );
    if (nullBranch === undefined) continue;
    orNull.add(e);
    orNull.add(nullBranch);
  }
  if (choices.size === 0 && orNull.size === 0) return err.message;
  const inChoice = (e: ValidationError) =>
    [...choices.keys()].some((anyOf) => e.schemaPath.startsWith(`${anyOf}/`));
  return errors
    .filter((e) => !inChoice(e) && !orNull.has(e))
    .map((e) => {
      const values = choices.get(e.schemaPath);
      const said = values ? `must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}` : e.message;
      return `${context}${e.instancePath} ${said}`;
    })
    .join(', ');
}
