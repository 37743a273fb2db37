import { STATUS_CODES } from 'node:http';
import type { ErrorObject } from 'ajv';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { type ErrorCode, isWharfError, WharfError } from '../../../core/errors.js';
import { logFailure, mapError } from '../../plugins/errors.js';
import { settleRefusedBody } from '../../refused-body.js';

/** One entry of FastAPI's 422 body, as Pydantic v2 writes it. */
export interface ValidationDetail {
  loc: (string | number)[];
  msg: string;
  type: string;
  input?: unknown;
  ctx?: Record<string, unknown>;
}

/** A request this API refuses with 422 and FastAPI's `{"detail": [...]}`. */
export class RequestValidationError extends Error {
  constructor(readonly detail: ValidationDetail[]) {
    super('Request validation failed.');
    this.name = 'RequestValidationError';
  }
}

// Longer than any valid value of this API's fields (a file name is at most 255 bytes).
const MAX_ECHOED_STRING = 255;

/**
 * Pydantic echoes the refused value as `input`, whatever it is; Wharf echoes only a value
 * that is one field's scalar (a number, a short string): an object or array is whatever a
 * client chose to send, and sending it back costs as much again (a deeply nested one cannot
 * even be serialized) and reflects it to whoever reads the answer.
 */
export function echoed(input: unknown): { input?: unknown } {
  if (input === null || typeof input === 'number' || typeof input === 'boolean') return { input };
  if (typeof input === 'string' && input.length <= MAX_ECHOED_STRING) return { input };
  return {};
}

/** A core refusal of one field's value, reported as Pydantic reports a failed validator. */
export function fieldError(
  loc: (string | number)[],
  err: WharfError,
  input: unknown,
): RequestValidationError {
  return new RequestValidationError([
    {
      loc,
      msg: `Value error, ${err.message}`,
      type: 'value_error',
      ...echoed(input),
      ctx: { error: err.message },
    },
  ]);
}

// Codes that mean "this value is not acceptable", which FastAPI reports as 422.
const VALUE_ERRORS = new Set<ErrorCode>([
  'VALIDATION_FAILED',
  'INVALID_NAME',
  'INVALID_CONTENT_TYPE',
  'INVALID_DIGEST',
]);

function pointer(instancePath: string): (string | number)[] {
  if (instancePath === '') return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((part) => (/^\d+$/.test(part) ? Number(part) : part));
}

function typeError(expected: string, input: unknown): Pick<ValidationDetail, 'type' | 'msg'> {
  switch (expected) {
    case 'integer':
      if (typeof input === 'string') {
        return {
          type: 'int_parsing',
          msg: 'Input should be a valid integer, unable to parse string as an integer',
        };
      }
      if (typeof input === 'number') {
        return {
          type: 'int_from_float',
          msg: 'Input should be a valid integer, got a number with a fractional part',
        };
      }
      return { type: 'int_type', msg: 'Input should be a valid integer' };
    case 'string':
      return { type: 'string_type', msg: 'Input should be a valid string' };
    case 'number':
      return { type: 'float_type', msg: 'Input should be a valid number' };
    case 'boolean':
      return { type: 'bool_type', msg: 'Input should be a valid boolean' };
    default:
      return {
        type: 'model_attributes_type',
        msg: 'Input should be a valid dictionary or object to extract fields from',
      };
  }
}

/** An ajv error (compiled with `verbose`, so it carries the offending value) as Pydantic words it. */
function fromAjv(error: ErrorObject, part: string): ValidationDetail {
  const loc: (string | number)[] = [part, ...pointer(error.instancePath)];
  const input = echoed(error.data);
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return {
        loc: [...loc, String(params.missingProperty)],
        msg: 'Field required',
        type: 'missing',
        ...input,
      };
    case 'type':
      // FastAPI reads an absent or `null` body as a missing one.
      if (error.instancePath === '' && (error.data === undefined || error.data === null)) {
        return { loc, msg: 'Field required', type: 'missing', input: null };
      }
      return { loc, ...typeError(String(params.type), error.data), ...input };
    case 'minimum':
      return {
        loc,
        msg: `Input should be greater than or equal to ${params.limit}`,
        type: 'greater_than_equal',
        ...input,
        ctx: { ge: params.limit },
      };
    case 'maxLength':
      return {
        loc,
        msg: `String should have at most ${params.limit} characters`,
        type: 'string_too_long',
        ...input,
        ctx: { max_length: params.limit },
      };
    default:
      return { loc, msg: error.message ?? 'Invalid value', type: 'value_error', ...input };
  }
}

/** Where a location falls in the schema's declaration order, level by level. */
function fieldOrder(loc: (string | number)[], schema: unknown): number[] {
  const order: number[] = [];
  let node = schema as { properties?: Record<string, unknown> } | undefined;
  for (const segment of loc.slice(1)) {
    const names = Object.keys(node?.properties ?? {});
    const at = names.indexOf(String(segment));
    order.push(at === -1 ? names.length : at);
    node = node?.properties?.[String(segment)] as typeof node;
  }
  return order;
}

/** Pydantic validates fields in declaration order; ajv checks `required` before the fields. */
function inFieldOrder(detail: ValidationDetail[], schema: unknown): ValidationDetail[] {
  const keyed = detail.map((d) => ({ d, key: fieldOrder(d.loc, schema) }));
  keyed.sort((a, b) => {
    for (let i = 0; i < Math.min(a.key.length, b.key.length); i += 1) {
      if (a.key[i] !== b.key[i]) return a.key[i]! - b.key[i]!;
    }
    return a.key.length - b.key.length;
  });
  return keyed.map((k) => k.d);
}

function errorBody(status: number, code: string, detail: string) {
  return { detail, error: STATUS_CODES[status] ?? 'Error', error_code: code };
}

/**
 * This API's error shapes: FastAPI's 422 `{"detail": [{loc, msg, type}]}` for anything wrong
 * with the request's values, the document's ErrorResponse for every other failure.
 */
export function activeStorageErrorHandler(
  err: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  settleRefusedBody(request, reply);
  if (err instanceof RequestValidationError) {
    reply.status(422).send({ detail: err.detail });
    return;
  }
  if (err.validation) {
    const part = err.validationContext === 'querystring' ? 'query' : (err.validationContext ?? 'body');
    const schema = (request.routeOptions.schema as Record<string, unknown> | undefined)?.[
      err.validationContext ?? 'body'
    ];
    const detail = err.validation.map((e) => fromAjv(e as ErrorObject, part));
    reply.status(422).send({ detail: inFieldOrder(detail, schema) });
    return;
  }
  if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) {
    reply.status(422).send({
      detail: [
        {
          loc: ['body'],
          msg: 'JSON decode error',
          type: 'json_invalid',
          input: {},
          // The parser's own message quotes the body around the fault; this says enough.
          ctx: { error: 'The body is not valid JSON.' },
        },
      ],
    });
    return;
  }
  if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
    reply
      .status(422)
      .send({ detail: [{ loc: ['body'], msg: 'Field required', type: 'missing', input: null }] });
    return;
  }
  if (isWharfError(err) && VALUE_ERRORS.has(err.code)) {
    reply
      .status(422)
      .send({ detail: [{ loc: ['body'], msg: `Value error, ${err.message}`, type: 'value_error' }] });
    return;
  }
  const mapped = mapError(err);
  logFailure(request, err, mapped.status);
  reply.status(mapped.status).send(errorBody(mapped.status, mapped.code, mapped.message));
}

/**
 * A failure before routing: a path that does not decode is a bad path parameter (422 at
 * `["path"]`, as FastAPI locates path errors); anything else (414 for an over-long signed id)
 * is the document's ErrorResponse.
 */
export function activeStorageRoutingError(
  err: WharfError,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  if (err.code === 'VALIDATION_FAILED') {
    reply
      .status(422)
      .send({ detail: [{ loc: ['path'], msg: `Value error, ${err.message}`, type: 'value_error' }] });
    return;
  }
  activeStorageErrorHandler(err, request, reply);
}

/** A signed id that does not verify reads as a record that does not exist (Rails' find_signed!). */
export function asNotFound(err: unknown): never {
  if (isWharfError(err, 'INVALID_SIGNATURE'))
    throw new WharfError('NOT_FOUND', 'No blob has this signed id.');
  throw err;
}
