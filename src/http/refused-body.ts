import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { lingerOnClose } from './lingering-close.js';

/**
 * A refused request's body may still be arriving. One of up to DRAIN_LIMIT_BYTES is read and
 * dropped, so the client (which is still writing) reads the answer over a connection that stays
 * open; closing on it instead makes clients that write the whole body before they read (fetch,
 * XHR, most SDKs) fail with EPIPE or ECONNRESET and never see the error: Uppy then took a part
 * refused with EntityTooLarge for a network error and sent it again three times. A larger
 * declared body closes the connection rather than reading what will be dropped (as S3 does for
 * a body far past its limit), so a client cannot make Wharf read gigabytes for nothing; that
 * close lingers (lingering-close.ts), so the client still reads the answer rather than a reset.
 *
 * 16 MiB: one part as S3 clients send it (5 MiB for Uppy's @uppy/aws-s3 and the AWS SDK's
 * lib-storage, 8 MiB for the AWS CLI and the part_size Wharf suggests), or a PUT a few MiB past
 * a limit, with room to spare. Bytes are read and dropped as they come, never held.
 */
const DRAIN_LIMIT_BYTES = 16 * 1024 * 1024;

/**
 * A body being drained must end within this, as nginx's lingering_time: a client trickling its
 * body would otherwise hold the connection for as long as it likes (the body idle timeout only
 * cuts one that sends nothing at all). 16 MiB in 30 s needs about 4.5 Mbit/s; a slower client
 * is cut, as every refused body was before.
 */
const DRAIN_DEADLINE_MS = 30_000;

const draining = new WeakSet<IncomingMessage>();

/**
 * Whether the request's body is being read only to be dropped: `Expect: 100-continue` is then
 * never answered (see expect-continue.ts), since the refusal is the answer and the client need
 * not send the body at all.
 */
export function drainsRefusedBody(request: IncomingMessage): boolean {
  return draining.has(request);
}

export function settleRefusedBody(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw;
  if (raw.complete) return;
  const header = request.headers['content-length'];
  const length = header === undefined ? undefined : Number(header);
  const bounded = length !== undefined && Number.isSafeInteger(length) && length <= DRAIN_LIMIT_BYTES;
  // Without a length (Transfer-Encoding: chunked, as the AWS SDK sends a stream), the bytes are
  // counted as they come and the connection closed past the limit, lingering.
  const unbounded = length === undefined && request.headers['transfer-encoding'] !== undefined;
  if (raw.destroyed || !(bounded || unbounded)) {
    reply.header('connection', 'close');
    // Closed after the answer, but not under the client's writes (see lingering-close.ts).
    if (raw.socket && !raw.destroyed) lingerOnClose(raw.socket, request.server.server);
    return;
  }
  // Drained, the connection is kept, unless the answer closes it anyway: the client sent
  // `Connection: close`, or Fastify's body parser refused the body (it closes after its own
  // refusals). node:http then closes once the answer is written, with the body still arriving:
  // that close lingers too, or the client's remaining writes meet a reset (EPIPE).
  if (raw.socket && !raw.socket.destroyed) lingerOnClose(raw.socket, request.server.server);
  drain(raw, reply.raw, request.server.server);
}

function drain(raw: IncomingMessage, response: ServerResponse, server: Server): void {
  draining.add(raw);
  let received = 0;
  const deadline = setTimeout(() => {
    if (!raw.complete) raw.socket?.destroy();
  }, DRAIN_DEADLINE_MS);
  deadline.unref();
  const count = (chunk: Buffer) => {
    received += chunk.length;
    if (received <= DRAIN_LIMIT_BYTES) return;
    // A chunked body past the limit: no more is read for nothing, but the connection is not cut
    // under the client's writes either (a reset, which a client writing its whole body first,
    // or nginx, reads instead of the answer: nginx's 502). Once the answer is out, the close
    // lingers, as for a large body declared (lingering-close.ts), within its own bounds.
    raw.off('data', count);
    clearTimeout(deadline);
    const socket = raw.socket;
    if (!socket || socket.destroyed) return;
    lingerOnClose(socket, server);
    if (response.writableFinished) socket.destroySoon();
    else response.once('finish', () => socket.destroySoon());
  };
  raw.on('data', count);
  raw.once('close', () => clearTimeout(deadline));
  raw.resume();
}
