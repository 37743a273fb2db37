import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type ErrorCode, isWharfError, type WharfError } from '../../core/errors.js';
import { refusedForResources } from '../../core/unavailable.js';
import { ClientLeft } from '../client-left.js';
import { settleRefusedBody } from '../refused-body.js';
import { noteErrorCode } from '../request-log.js';
import { type RoutingErrorShape, routeMiss, shapeFor } from '../routing-errors.js';
import { CUT_MESSAGE, cutReason } from '../server-cuts.js';
import { validationMessage } from '../validation-message.js';

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

/** The code of a refusal known only by its status (a plugin's own error). */
const FASTIFY_STATUSES: Record<number, ErrorCode> = {
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  411: 'LENGTH_REQUIRED',
  413: 'FILE_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  416: 'RANGE_NOT_SATISFIABLE',
};

export interface MappedError {
  status: number;
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/** One place that turns any thrown value into a status, a stable code and a message. */
export function mapError(failure: unknown): MappedError {
  // A write that found the disk full, or a file or socket that found no descriptor left,
  // wherever it was (a temp file, a part, a tus file).
  const err = refusedForResources(failure);
  if (isWharfError(err)) {
    return {
      status: err.status,
      code: err.code,
      message: err.message,
      ...(err.details && { details: err.details }),
    };
  }
  // Nobody reads this answer; the request is counted and logged as the client's leaving.
  if (err instanceof ClientLeft) return { status: 499, code: 'ABORTED', message: err.message };
  const fe = err as FastifyError;
  if (fe?.validation) {
    return { status: 400, code: 'VALIDATION_FAILED', message: validationMessage(fe) };
  }
  const known = fe?.code ? FASTIFY_CODES[fe.code] : undefined;
  if (known) return { status: known.status, code: known.code, message: fe.message };
  if (fe instanceof SyntaxError || fe?.statusCode === 400) {
    return { status: 400, code: 'VALIDATION_FAILED', message: fe.message };
  }
  // Fastify and its plugins (@fastify/static's forbidden path) refuse requests with errors
  // that carry a 4xx status: the client's fault, whatever the plugin, never a 500.
  const refusal = typeof fe?.statusCode === 'number' ? FASTIFY_STATUSES[fe.statusCode] : undefined;
  if (refusal) return { status: fe.statusCode!, code: refusal, message: fe.message };
  if (typeof fe?.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
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
 * Refusals that are Wharf working as configured, not failing: load shed or a limit reached,
 * each a documented answer (some 503, which would otherwise read as Wharf's fault). Logged at
 * warn, by code and without a stack, so a burst of them does not bury real errors or page
 * whoever alerts on `error`.
 */
const EXPECTED_REFUSALS: Partial<
  Record<ErrorCode, { message: string; fields?: (err: WharfError) => Record<string, unknown> }>
> = {
  // The transform queue full (WHARF_IMAGE_QUEUE, the account's share) or waited in too long.
  TRANSFORMS_BUSY: { message: 'request refused: too many image transforms running' },
  // A transform past WHARF_IMAGE_TIMEOUT: the image (a size, a format) costs more than allowed.
  TRANSFORM_TIMEOUT: { message: 'request refused: an image transform ran past WHARF_IMAGE_TIMEOUT' },
  // A body over its account's, token's or upload's streams (a 503 SlowDown on the storage
  // endpoint, on tus and RUFH): the cap doing its work.
  TOO_MANY_UPLOAD_STREAMS: {
    message: 'request refused: too many upload bodies streaming at once',
    fields: (err) => ({ scope: err.details?.scope }),
  },
};

/** The warning an expected refusal is logged as, if `err` is one. */
function expectedRefusal(err: WharfError): { message: string; fields: Record<string, unknown> } | undefined {
  const known = EXPECTED_REFUSALS[err.code];
  return known && { message: known.message, fields: { code: err.code, ...known.fields?.(err) } };
}

/**
 * Logs a request's failure: a client that hung up mid-upload is routine (info), whatever
 * error its broken stream caused; an expected refusal (EXPECTED_REFUSALS) a warning; a 5xx
 * otherwise is Wharf's fault (error). Other refusals (4xx) are in the request log already.
 */
export function logFailure(request: FastifyRequest, err: unknown, status: number): void {
  // Every error handler passes here: the request's own line names the code it was answered with.
  noteErrorCode(request, mapError(err).code);
  const expected = isWharfError(err) ? expectedRefusal(err) : undefined;
  if (clientHungUp(request)) {
    const cut = cutReason(request.raw.socket);
    request.log.info(
      { err: { type: (err as Error)?.name, code: (err as { code?: unknown })?.code } },
      cut ? CUT_MESSAGE[cut] : 'client closed the connection before the request was complete',
    );
  } else if (err instanceof ClientLeft) {
    // Its work given up (a wait for a transform slot): routine, as a hang-up mid-upload is.
    const cut = cutReason(request.raw.socket);
    request.log.info(
      { code: 'ABORTED' },
      cut ? CUT_MESSAGE[cut] : 'client closed the connection before the answer',
    );
  } else if (expected) {
    request.log.warn(expected.fields, expected.message);
  } else if (status >= 500) {
    request.log.error({ err }, 'request failed');
  }
}

export function nativeErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const mapped = mapError(err);
  logFailure(request, err, mapped.status);
  const body: ErrorBody = { error: { code: mapped.code, message: mapped.message } };
  if (mapped.details) body.error.details = mapped.details;
  settleRefusedBody(request, reply);
  reply.status(mapped.status).send(body);
}

/** How long a client should wait before retrying a request refused while a dependency is away. */
export const RETRY_AFTER_SECONDS = 5;

export function registerNativeErrors(app: FastifyInstance, shapes: readonly RoutingErrorShape[] = []): void {
  // Every 503 Wharf sends, in any API's error shape (each scope has its own handler), is
  // SERVICE_UNAVAILABLE: a dependency is away. Added on the root before any scope exists, so
  // every scope inherits it.
  // Callback-style hooks, here and in the other plugins every request passes: an async hook
  // costs a promise and a turn of the microtask queue per request, for work that is synchronous.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (reply.statusCode === 503 && !reply.hasHeader('retry-after')) {
      reply.header('retry-after', String(RETRY_AFTER_SECONDS));
    }
    done(null, payload);
  });
  // A refusal for load says when to come back (details.retry_after, seconds: an account's upload
  // streams, the transform queue), whichever API's handler shapes the answer: every error
  // passes this hook before its scope's handler.
  app.addHook('onError', (_request, reply, err, done) => {
    const retry = isWharfError(err) ? err.details?.retry_after : undefined;
    if (typeof retry === 'number' && !reply.hasHeader('retry-after'))
      reply.header('retry-after', String(retry));
    done();
  });
  app.setErrorHandler(nativeErrorHandler);
  app.setNotFoundHandler((request, reply) => {
    const miss = routeMiss(request);
    // Under a seed API's paths, its clients read its own error shape, for a path or method it
    // does not have as much as for any other refusal.
    const send = shapeFor(shapes, request.url);
    if (send) return send(miss, request, reply);
    noteErrorCode(request, 'NOT_FOUND');
    reply.status(404).send({ error: { code: 'NOT_FOUND', message: miss.message } });
  });
}
