import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { CUT_ERROR, markCut } from './server-cuts.js';

/**
 * Cuts a connection on which no byte of a body moves for `seconds` (0: never), either way: a
 * request body that stops arriving, as nginx's client_body_timeout, and a response the client
 * stops reading, as nginx's send_timeout. Why: a client gone without a word (a phone that
 * changed networks, a NAT that forgot the flow), or one that simply stops reading, otherwise
 * holds its connection and its file descriptor for as long as the kernel keeps the socket:
 * an upload its temp file and upload lock, a download the file it reads (and the disk space
 * of an asset deleted meanwhile). Enough of them use up the server's descriptors.
 *
 * Only the client's silence counts: while Wharf works on a request it has read whole
 * (completing a large upload, rendering an image) or waits on storage for the next bytes to
 * send, nothing is cut. While Wharf waits before it reads (an upload's lock, up to 30 s) the
 * client's bytes wait in the socket and the time runs, so the setting should stay above that.
 * A slow client is never cut: any byte read or written starts the time again (Node also counts
 * a write the kernel is still taking in part). The body of a request cut so ends where it
 * stopped, as any cut body does (resumable uploads keep what arrived).
 */
export function cutIdleBodies(app: FastifyInstance, seconds: number): void {
  if (seconds <= 0) return;
  app.addHook('onRequest', (request, reply, done) => {
    const socket = request.raw.socket;
    if (!socket) return done();
    // Armed for the whole exchange, and judged when it fires (see onSilence). After the
    // response, node:http sets the connection's keep-alive timeout in its place.
    socket.setTimeout(seconds * 1000);
    // On the response, not the socket: a kept-alive connection's requests add nothing to it
    // that stays. With a listener, node:http leaves the socket to it.
    reply.raw.on('timeout', onSilence);
    done();
  });
}

/** The connection moved nothing for the whole timeout: cut it if the client is the one silent. */
function onSilence(this: ServerResponse, socket: Socket): void {
  const request: IncomingMessage = this.req;
  const receiving = !request.complete && carriesBody(request.headers);
  // Bytes of the answer the client has not taken (in the response or the socket's buffer).
  const sending = this.writableLength > 0;
  if (receiving || sending) {
    markCut(socket, 'idle');
    socket.destroy();
    // A body still arriving fails with the cut's own error, which an upload's failure is then
    // counted under (wharf_uploads_total), rather than the hang-up Node would report. After the
    // socket's destroy, so that the request is still seen as cut (see watchForHangUp).
    if (receiving) request.destroy(CUT_ERROR.idle());
  }
}

function carriesBody(headers: Record<string, string | string[] | undefined>): boolean {
  const length = headers['content-length'];
  if (typeof length === 'string') return length !== '0';
  return headers['transfer-encoding'] !== undefined;
}
