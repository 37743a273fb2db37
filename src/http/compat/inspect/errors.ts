import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { logFailure, mapError } from '../../plugins/errors.js';
import { settleRefusedBody } from '../../refused-body.js';
import { noteErrorCode } from '../../request-log.js';

/** The document's error body: `error` names the failure, `errorDescription` explains it. */
export interface InspectError {
  error: string;
  errorDescription: string;
}

// The document lists 400, 401, 403, 404 and 500 for its endpoint; refusals of the request
// itself that Wharf would answer with a more specific 4xx are its 400 here. Conflict (409)
// and Gone (410) only come from the completion route Wharf added, and are documented there.
const AS_BAD_REQUEST = new Set([411, 413, 414, 415, 416]);

/** The status Inspect's clients get for a refusal Wharf answers with `status`. */
export function inspectStatus(status: number): number {
  return AS_BAD_REQUEST.has(status) ? 400 : status;
}

export function inspectError(status: number, description: string): InspectError {
  return { error: STATUS_CODES[status] ?? 'Error', errorDescription: description };
}

export function inspectErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const mapped = mapError(err);
  logFailure(request, err, mapped.status);
  const status = inspectStatus(mapped.status);
  settleRefusedBody(request, reply);
  reply.status(status).send(inspectError(status, mapped.message));
}

export function inspectNotFound(request: FastifyRequest, reply: FastifyReply): void {
  noteErrorCode(request, 'NOT_FOUND');
  reply.status(404).send(inspectError(404, `No route ${request.method} ${request.url.split('?')[0]}`));
}
