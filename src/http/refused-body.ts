import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * A refused request's body may still be arriving. A small one is read and dropped, so the
 * client (which is still writing) reads the answer over a connection that stays open; closing
 * on it instead makes clients that write the whole body before they read (fetch, most SDKs)
 * fail with EPIPE or ECONNRESET and never see the error. A large or unbounded one closes the
 * connection rather than reading gigabytes that will be dropped (as S3 does).
 */
const DRAIN_LIMIT_BYTES = 1024 * 1024;

export function settleRefusedBody(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw;
  if (raw.complete) return;
  const length = Number(request.headers['content-length']);
  if (!raw.destroyed && Number.isSafeInteger(length) && length <= DRAIN_LIMIT_BYTES) {
    raw.resume();
    return;
  }
  reply.header('connection', 'close');
}
