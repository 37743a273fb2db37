import type { FastifyError } from 'fastify';

type ValidationError = NonNullable<FastifyError['validation']>[number];

/**
 * A validation failure's message, as Fastify words it, except that a value outside a set of
 * choices (TypeBox's union of literals: an `anyOf` of `const`s, as `fit`, `format` or `status`
 * are) names the choices: Fastify's own words were "querystring/fit must be equal to constant"
 * once per choice, then "must match a schema in anyOf", and never said what would do.
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
  if (choices.size === 0) return err.message;
  const inChoice = (e: ValidationError) =>
    [...choices.keys()].some((anyOf) => e.schemaPath.startsWith(`${anyOf}/`));
  return errors
    .filter((e) => !inChoice(e))
    .map((e) => {
      const values = choices.get(e.schemaPath);
      const said = values ? `must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}` : e.message;
      return `${context}${e.instancePath} ${said}`;
    })
    .join(', ');
}
