import type { Server } from 'node:http';
import { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

/**
 * A lingering close, as Apache and nginx do it (nginx's lingering_close): a connection closed
 * after a refusal while its client still sends a body (see refused-body.ts) is half-closed
 * (the answer, then a FIN) and what still arrives is read and dropped until the client closes
 * its side, rather than closed at once. A socket closed with unread bytes in its receive
 * buffer, or that receives more after it closed, makes the kernel answer with a reset: the
 * client's next write fails (EPIPE, ECONNRESET) and a client that writes its whole body before
 * it reads, or a proxy (nginx: `writev() failed (32: Broken pipe) while sending request to
 * upstream`, then its own 502), never reads the refusal.
 *
 * Bounded as nginx bounds it: LINGER_IDLE_MS without a byte (nginx's lingering_timeout, 5 s)
 * and LINGER_MAX_MS in all (its lingering_time, 30 s), so a client that goes on sending holds
 * the connection no longer than one whose body is drained (DRAIN_DEADLINE_MS). A client
 * writing at a few MB/s sends more than any buffer holds in 5 s, so one still sending is never
 * cut by the idle time; past the total a reset is what it gets, as it did before. Bytes are
 * dropped as they come, never held.
 */
const LINGER_IDLE_MS = 5_000;
const LINGER_MAX_MS = 30_000;

/** The connections lingering, by server: a stopping server ends them rather than wait. */
const lingering = new WeakMap<Server, Set<Socket>>();
const stopping = new WeakSet<Server>();
const marked = new WeakSet<Socket>();
const lingerStarted = new WeakSet<Socket>();

/**
 * Makes the close node:http gives `socket` after a `Connection: close` response a lingering
 * one. node:http closes such a connection with `socket.destroySoon()` once the response is
 * written (a FIN, then the socket destroyed as soon as it is flushed, unread bytes or not);
 * there is no other hook between the response's end and the destroy, so this socket (and no
 * other) gets its own destroySoon.
 */
export function lingerOnClose(socket: Socket, server: Server): void {
  if (marked.has(socket)) return;
  marked.add(socket);
  socket.destroySoon = () => linger(socket, server);
}

/**
 * Whether `socket` is lingering: what it still receives is dropped, and the HTTP parser's
 * complaint about it (a body cut short by the client's close) is no request to answer.
 */
export function isLingering(socket: Socket): boolean {
  return lingerStarted.has(socket);
}

function linger(socket: Socket, server: Server): void {
  // A second close (the parser's error path), a stopping server: closed as node:http would.
  if (lingerStarted.has(socket) || stopping.has(server) || socket.destroyed) {
    Socket.prototype.destroySoon.call(socket);
    return;
  }
  lingerStarted.add(socket);
  let sockets = lingering.get(server);
  if (!sockets) {
    sockets = new Set();
    lingering.set(server, sockets);
  }
  sockets.add(socket);
  const cut = () => socket.destroy();
  const deadline = setTimeout(cut, LINGER_MAX_MS);
  deadline.unref();
  // Reads refresh the time (so does the FIN's write); node:http's own timeout listener destroys
  // too, as nothing listens on the response any more.
  socket.setTimeout(LINGER_IDLE_MS);
  socket.on('timeout', cut);
  // Flowing: read and dropped (node:http's parser sees them too, and drops the body's). Resumed
  // as well: a socket something paused (the body's reader, waiting to be piped on) stays
  // paused whatever listens to it, and its unread bytes reset the connection at its close.
  socket.on('data', () => {});
  socket.resume();
  // Reading is started again on the handle itself, as node:http does when it resumes a socket
  // its parser consumed: once the body's reader was paused, node:http stopped reading the
  // handle, and the stream's resume() alone does not start it again (the stream still counts
  // a read under way), so the linger read nothing and its close reset the connection anyway.
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStart?: () => number } })._handle;
  if (handle && !handle.reading && handle.readStart) {
    handle.reading = true;
    handle.readStart();
  }
  // The client closed its side: everything it sent was read, so the close is clean.
  socket.once('end', cut);
  socket.once('close', () => {
    clearTimeout(deadline);
    sockets.delete(socket);
  });
  socket.end();
}

/**
 * A stopping server does not wait out its lingering connections: they are closed when the app
 * starts closing, and a refusal answered after that closes at once, as node:http would.
 */
export function endLingeringOnClose(app: FastifyInstance): void {
  app.addHook('preClose', (done) => {
    stopping.add(app.server);
    for (const socket of lingering.get(app.server) ?? []) socket.destroy();
    done();
  });
}
