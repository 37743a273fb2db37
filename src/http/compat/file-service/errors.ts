import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { logFailure, mapError } from '../../plugins/errors.js';
import { settleRefusedBody } from '../../refused-body.js';

/**
 * The document shows only success; failures keep its envelope so a client reading `code`
 * and `status` works unchanged: `code` is the HTTP status, `status` the string "false",
 * and `error_code` Wharf's stable code for programs that branch on the reason.
 */
export const ErrorSchema = Type.Object({
  code: Type.Integer({ description: 'The HTTP status.' }),
  status: Type.Literal('false'),
  message: Type.String(),
  error_code: Type.String({ description: 'Wharf’s stable error code (e.g. NOT_FOUND, FILE_TOO_LARGE).' }),
});

const STATUSES = [400, 401, 403, 404, 409, 413, 415, 500] as const;
export const errorResponses = Object.fromEntries(STATUSES.map((s) => [s, ErrorSchema])) as Record<
  (typeof STATUSES)[number],
  typeof ErrorSchema
>;

/** A route that opens an upload: a key or token may hold only so many (TOO_MANY_OPEN_UPLOADS). */
export const uploadErrorResponses = { ...errorResponses, 429: ErrorSchema };

export function sendError(request: FastifyRequest, reply: FastifyReply, err: unknown): void {
  const mapped = mapError(err);
  logFailure(request, err, mapped.status);
  if (mapped.status === 401) reply.header('www-authenticate', 'Basic realm="wharf", charset="UTF-8"');
  settleRefusedBody(request, reply);
  reply.status(mapped.status).send({
    code: mapped.status,
    status: 'false',
    message: mapped.message,
    error_code: mapped.code,
  });
}

export function fileServiceErrorHandler(
  err: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  sendError(request, reply, err);
}
