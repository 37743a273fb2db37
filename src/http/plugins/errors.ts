import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type ErrorCode, isWharfError } from '../../core/errors.js';

export interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

/** Fastify's own failures (parsing, validation, limits) as Wharf codes. */
const FASTIFY_CODES: Record<string, { code: ErrorCode; status: number }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'FILE_TOO_LARGE', status: 413 },
  FST_REQ_FILE_TOO_LARGE: { code: 'FILE_TOO_LARGE', status: 413 },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'UNSUPPORTED_MEDIA_TYPE', status: 415 },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'VALIDATION_FAILED', status: 400 },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'VALIDATION_FAILED', status: 400 },
  FST_INVALID_MULTIPART_CONTENT_TYPE: { code: 'VALIDATION_FAILED', status: 400 },
  FST_FILES_LIMIT: { code: 'VALIDATION_FAILED', status: 400 },
  FST_PARTS_LIMIT: { code: 'VALIDATION_FAILED', status: 400 },
  FST_FIELDS_LIMIT: { code: 'VALIDATION_FAILED', status: 400 },
};

export interface MappedError {
  status: number;
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/** One place that turns any thrown value into a status, a stable code and a message. */
export function mapError(err: unknown): MappedError {
  if (isWharfError(err)) {
    return {
      status: err.status,
      code: err.code,
      message: err.message,
      ...(err.details && { details: err.details }),
    };
  }
  const fe = err as FastifyError;
  if (fe?.validation) {
    return { status: 400, code: 'VALIDATION_FAILED', message: fe.message };
  }
  const known = fe?.code ? FASTIFY_CODES[fe.code] : undefined;
  if (known) return { status: known.status, code: known.code, message: fe.message };
  if (fe instanceof SyntaxError || fe?.statusCode === 400) {
    return { status: 400, code: 'VALIDATION_FAILED', message: fe.message };
  }
  return { status: 500, code: 'INTERNAL', message: 'Internal server error.' };
}

/** Requests whose client hung up before sending the whole body. */
const hungUp = new WeakSet<FastifyRequest>();

/**
 * Watches for the client hanging up mid-request. Node emits 'aborted' both when the
 * connection closes under an unfinished request, and when Wharf destroys the request itself
 * (a storage failure tears down the upload's pipeline, which first detaches the socket so
 * the error response can still be sent). Only in the first case is there a socket, and it
 * is already destroyed.
 */
export function watchForHangUp(request: FastifyRequest): void {
  request.raw.once('aborted', () => {
    if (request.raw.socket?.destroyed === true) hungUp.add(request);
  });
}

/** Whether the client left before its request was whole (see watchForHangUp). */
export function clientHungUp(request: FastifyRequest): boolean {
  return hungUp.has(request);
}

/**
 * Logs a request's failure: a client that hung up mid-upload is routine (info), whatever
 * error its broken stream caused; a 5xx otherwise is Wharf's fault (error). Refusals (4xx)
 * are in the request log already.
 */
export function logFailure(request: FastifyRequest, err: unknown, status: number): void {
  if (clientHungUp(request)) {
    request.log.info(
      { err: { type: (err as Error)?.name, code: (err as { code?: unknown })?.code } },
      'client closed the connection before the request was complete',
    );
  } else if (status >= 500) {
    request.log.error({ err }, 'request failed');
  }
}

export function nativeErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const mapped = mapError(err);
  logFailure(request, err, mapped.status);
  const body: ErrorBody = { error: { code: mapped.code, message: mapped.message } };
  if (mapped.details) body.error.details = mapped.details;
  // A body we refused may still be arriving; close rather than read gigabytes we will drop.
  if (!request.raw.complete) reply.header('connection', 'close');
  reply.status(mapped.status).send(body);
}

export function registerNativeErrors(app: FastifyInstance): void {
  app.setErrorHandler(nativeErrorHandler);
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({
      error: { code: 'NOT_FOUND', message: `No route ${request.method} ${request.url.split('?')[0]}` },
    });
  });
}
