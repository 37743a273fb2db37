import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

/**
 * How long a stopping server keeps a connection that has not sent a byte yet (at most: the
 * shutdown deadline bounds it, see FreshConnections.keepFor).
 */
export const FRESH_GRACE_MS = 1_000;

/** What a stop keeps of the connections that have carried no request yet. */
export interface FreshConnections {
  /**
   * Keeps a connection that has sent nothing yet open for at most `ms` from the stop (and never
   * more than FRESH_GRACE_MS): a shutdown deadline shorter than the grace bounds it. 0 closes
   * it with the idle ones, as Node does. Set before the app closes.
   */
  keepFor(ms: number): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    freshConnections: FreshConnections;
  }
}

/**
 * A connection the server accepted but has read nothing from yet is not idle at a stop. Node
 * counts it as idle: server.close() (and closeIdleConnections() after the drain) destroys every
 * connection whose parser is between messages and whose response is finished, the one just
 * accepted included. A balancer that opens a connection per request (nginx without upstream
 * keepalive) writes its request at once; if those bytes are in the socket's receive buffer,
 * not yet read, when the stop destroys it, the kernel answers with a reset, and a POST already
 * sent is not sent again (nginx: `recv() failed (104: Connection reset by peer)`, then its own
 * 502). Unlike a keep-alive connection closed between requests, the client could not have
 * known.
 *
 * So at a stop such a connection is kept for a short grace: its request is read, and answered
 * as any request arriving during a stop (Fastify's 503 with `Connection: close`). What still
 * has sent nothing by the end of the grace is closed then. A keep-alive connection idle after
 * a finished request is closed at once, as before.
 *
 * "Nothing read yet" is the socket's bytesRead (counted before the HTTP parser sees the bytes),
 * and Node's own idle sweep does the closing: for its length, the destroy() it calls on each
 * idle connection does nothing on the fresh ones (as lingering-close.ts gives one socket its
 * own destroySoon).
 */
export function keepFreshConnections(app: FastifyInstance): void {
  const server: Server = app.server;
  const open = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });

  let graceMs = FRESH_GRACE_MS;
  // 'kept' from the first sweep (server.close()'s: the stop began) to the end of the grace.
  let grace: 'before' | 'kept' | 'over' = 'before';
  const sweep = server.closeIdleConnections;
  server.closeIdleConnections = function closeIdleConnections(this: Server) {
    if (grace === 'before') {
      grace = graceMs > 0 ? 'kept' : 'over';
      // Then those still silent are closed; the ones that sent a request are busy with it
      // (Node's sweep skips them) and closed after their answer.
      if (grace === 'kept') {
        setTimeout(() => {
          grace = 'over';
          this.closeIdleConnections();
        }, graceMs).unref();
      }
    }
    const kept =
      grace === 'kept' ? [...open].filter((socket) => socket.bytesRead === 0 && !socket.destroyed) : [];
    for (const socket of kept) socket.destroy = keep;
    try {
      sweep.call(this);
    } finally {
      for (const socket of kept) Reflect.deleteProperty(socket, 'destroy');
    }
  };

  app.decorate('freshConnections', {
    keepFor(ms: number) {
      graceMs = Math.min(ms, FRESH_GRACE_MS);
    },
  });
}

function keep(this: Socket): Socket {
  return this;
}
