import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { logFailure, mapError } from '../../plugins/errors.js';
import { settleRefusedBody } from '../../refused-body.js';

/**
 * The document shows no errors. Its trailing-slash paths are Django REST Framework's, so
 * errors take DRF's shape, `{"detail": "..."}`, plus a stable lower-case `code` (Wharf's
 * error code) for clients that want to branch without reading prose.
 */
export const NetiksErrorSchema = Type.Object(
  {
    detail: Type.String(),
    code: Type.String({ description: 'Stable, e.g. `not_found`, `file_too_large`, `unauthorized`.' }),
  },
  { description: 'Every netiks error (Django REST Framework style).' },
);

export const netiksErrors = {
  400: NetiksErrorSchema,
  401: NetiksErrorSchema,
  403: NetiksErrorSchema,
  404: NetiksErrorSchema,
  409: NetiksErrorSchema,
  410: NetiksErrorSchema,
  413: NetiksErrorSchema,
  415: NetiksErrorSchema,
};

/** A route that opens an upload: a key or token may hold only so many (TOO_MANY_OPEN_UPLOADS). */
export const netiksUploadErrors = { ...netiksErrors, 429: NetiksErrorSchema };

export function netiksErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const mapped = mapError(err);
  logFailure(request, err, mapped.status);
  settleRefusedBody(request, reply);
  reply.status(mapped.status).send({ detail: mapped.message, code: mapped.code.toLowerCase() });
}
