import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * What a request's work is aborted with when its client closed the connection before the
 * answer was complete. Nobody reads that answer: answered 499 (as nginx logs it), logged at
 * info, never an error.
 */
export class ClientLeft extends Error {
  constructor() {
    super('The client closed the connection before the answer.');
    this.name = 'ClientLeft';
  }
}

/**
 * Aborts (with a ClientLeft) once the client leaves before the response is complete: work
 * only its answer needs, such as a wait for a transform slot, is given up. A plain
 * AbortSignal, so the core that waits on it knows nothing of Fastify.
 *
 * For requests without a body only (the image route): the server keeps connections half-open
 * (app.ts), so a client that closes (curl -m, a closed tab) shows as the end of what it sends
 * long before the connection closes, which it does only once the answer is written. A client
 * that sent its whole request and then ends its side is taken as gone, as nginx takes it (its
 * 499); a request whose body is still arriving must not be (its body ends there).
 */
export function clientLeaving(request: FastifyRequest, reply: FastifyReply): AbortSignal {
  const left = new AbortController();
  const res = reply.raw;
  const socket = request.raw.socket;
  const leave = () => {
    if (!res.writableFinished) left.abort(new ClientLeft());
  };
  if (!socket || socket.destroyed || socket.readableEnded) leave();
  else {
    socket.once('end', leave);
    res.once('close', () => {
      socket.off('end', leave);
      leave();
    });
  }
  return left.signal;
}
