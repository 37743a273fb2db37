import { type FastifyReply, type FastifyRequest, LogController } from 'fastify';

/** The Wharf error code each refused or failed request was answered with. */
const errorCodes = new WeakMap<FastifyRequest, string>();

/** Records the code `request` is answered with, for its `request completed` line. */
export function noteErrorCode(request: FastifyRequest, code: string): void {
  errorCodes.set(request, code);
}

/**
 * Fastify's request lines, with the error code of a request that was refused or failed:
 * `request completed` said only the status, so the id a user reports of a 400 or a 409 did
 * not say why (CHECKSUM_MISMATCH, FILE_TOO_LARGE, INVALID_NAME, UNAUTHORIZED…). One line per
 * request still; a 5xx also has its `request failed` line, with the error and its stack.
 * `error_code` rather than `code`, which an `err` (a Node error's ENOSPC) already has.
 */
export class RequestLog extends LogController {
  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
    metadata?: Record<string, unknown>,
  ): void {
    const code = errorCodes.get(request);
    if (code === undefined) {
      super.requestCompleted(error, request, reply, metadata);
      return;
    }
    if (this.isLogDisabled(request)) return;
    const fields = { res: reply, responseTime: reply.elapsedTime, error_code: code };
    if (error) reply.log.error({ ...fields, err: error }, 'request errored');
    else reply.log.info(fields, 'request completed');
  }
}
