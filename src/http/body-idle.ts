import type { FastifyInstance } from 'fastify';

/**
 * Cuts a connection whose request body stops arriving for `seconds` (0: never), as nginx's
 * client_body_timeout does. Why: a client gone without a word (a phone that changed networks, a
 * NAT that forgot the flow) otherwise holds its connection, its file descriptor, its temp file and
 * any upload lock it took for as long as the kernel keeps the socket, and enough of them use up
 * the server's descriptors. Only while the body is read: a server working on a request it has
 * read whole (completing a large upload, say) is never cut for it; while Wharf waits before it
 * reads (an upload's lock, up to 30 s) the client's bytes wait in the socket and the time runs,
 * so the setting should stay above that. The body of a request cut so ends where it stopped, as
 * any cut body does (resumable uploads keep what arrived).
 */
export function cutIdleBodies(app: FastifyInstance, seconds: number): void {
  if (seconds <= 0) return;
  app.addHook('onRequest', (request, _reply, done) => {
    const raw = request.raw;
    const socket = raw.socket;
    if (!socket || raw.complete || !carriesBody(raw.headers)) return done();
    // No callback: node:http's own 'timeout' handler destroys a socket nobody else answers for,
    // and a callback would add a listener to the socket per request of a kept-alive connection.
    socket.setTimeout(seconds * 1000);
    // 'end' and 'close' do not start the body flowing (only a reader does).
    const settle = () => socket.setTimeout(0);
    raw.once('end', settle);
    raw.once('close', settle);
    done();
  });
}

function carriesBody(headers: Record<string, string | string[] | undefined>): boolean {
  const length = headers['content-length'];
  if (typeof length === 'string') return length !== '0';
  return headers['transfer-encoding'] !== undefined;
}
