/**
 * Pydantic v2's lax mode (FastAPI's default) reads an integer field given as a string: the
 * document's service answers `"byte_size": "12"` as if it were 12, so this API must too.
 * Its rule (pydantic-core's `str_as_int`): surrounding whitespace, one optional sign, ASCII
 * digits (leading zeros allowed) with single underscores between them, and an optional
 * fraction of zeros only: `" 12 "`, `"+12"`, `"1_000"`, `"12.0"` are integers; `"12.5"`,
 * `"12."`, `"1e3"`, `"0x10"`, `"_1"` are not, and stay strings (so `int_parsing`).
 */
const LAX_INTEGER = /^[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?$/;

// Pydantic refuses longer digit strings before parsing (Python's int() limit); a string this
// long is not read as a number here either (it stays `int_parsing`).
const MAX_DIGITS = 4300;

/**
 * The number a string stands for under that rule, or undefined. One beyond the safe integers
 * comes back imprecise but still beyond them, so the bounds the route checks refuse it as
 * they refuse the same number sent as a JSON number.
 */
export function laxInteger(text: string): number | undefined {
  const trimmed = text.trim();
  if (trimmed.length > MAX_DIGITS || !LAX_INTEGER.test(trimmed)) return undefined;
  const value = Number(trimmed.replace(/_/g, ''));
  // Hundreds of digits overflow to Infinity, which is no JSON value: the largest finite
  // number is just as far beyond any bound.
  if (Number.isFinite(value)) return value;
  return value > 0 ? Number.MAX_VALUE : -Number.MAX_VALUE;
}

interface SchemaNode {
  type?: unknown;
  properties?: Record<string, SchemaNode>;
}

/**
 * `data` with every string that sits where `schema` declares an integer, and that reads as
 * one, replaced by its number (copying only the objects on the way; `data` is not changed).
 * `originals` receives what each replaced value was, by its JSON pointer, so a refusal of the
 * number (a negative size) still echoes what the client sent, as Pydantic does.
 */
export function withLaxIntegers(
  schema: unknown,
  data: unknown,
  originals: Map<string, unknown>,
  pointer = '',
): unknown {
  const node = schema as SchemaNode;
  if (node.type === 'integer' && typeof data === 'string') {
    const value = laxInteger(data);
    if (value === undefined) return data;
    originals.set(pointer, data);
    return value;
  }
  if (!node.properties || data === null || typeof data !== 'object' || Array.isArray(data)) return data;
  const fields = data as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const [name, sub] of Object.entries(node.properties)) {
    if (!Object.hasOwn(fields, name)) continue;
    const at = `${pointer}/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`;
    const value = withLaxIntegers(sub, fields[name], originals, at);
    if (value !== fields[name]) {
      copy ??= { ...fields };
      copy[name] = value;
    }
  }
  return copy ?? data;
}
