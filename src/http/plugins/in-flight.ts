import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CUT_ERROR, markCut } from '../server-cuts.js';

/** The requests a stopping server waits for. */
export interface InFlight {
  readonly size: number;
  /** Resolves once no request is in flight (at once when none is). */
  idle(): Promise<void>;
  /** Marks the connections of the requests in flight as cut at the shutdown deadline (see server-cuts), and cuts those still receiving a body. */
  cutAtDeadline(): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    inFlight: InFlight;
  }
}

/**
 * Counts requests from their first hook until both their handler has answered (`onSend`, which
 * an error answer passes too) and their response is over (its `close`, which a cut connection
 * fires as well). Both, because a connection cut at a shutdown deadline closes the response
 * while the handler still cleans up after the broken body (its temp file), and the database
 * must stay open for that.
 */
export function trackInFlight(app: FastifyInstance): void {
  const pending = new Map<FastifyRequest, { answered: boolean; closed: boolean }>();
  let waiters: Array<() => void> = [];

  const settle = (request: FastifyRequest) => {
    const state = pending.get(request);
    if (!state?.answered || !state.closed) return;
    pending.delete(request);
    if (pending.size === 0) {
      for (const wake of waiters) wake();
      waiters = [];
    }
  };

  app.addHook('onRequest', (request, reply, done) => {
    pending.set(request, { answered: false, closed: reply.raw.destroyed });
    reply.raw.once('close', () => {
      const state = pending.get(request);
      if (state) state.closed = true;
      settle(request);
    });
    done();
  });
  app.addHook('onSend', (request, _reply, payload, done) => {
    const state = pending.get(request);
    if (state) state.answered = true;
    settle(request);
    done(null, payload);
  });

  app.decorate('inFlight', {
    get size() {
      return pending.size;
    },
    idle() {
      if (pending.size === 0) return Promise.resolve();
      return new Promise<void>((resolve) => waiters.push(resolve));
    },
    cutAtDeadline() {
      for (const request of pending.keys()) {
        const socket = request.raw.socket;
        if (!socket) continue;
        markCut(socket, 'shutdown');
        // As a silent client's cut (body-idle): a body still arriving fails with the cut's error.
        // The rest are cut by the caller's closeAllConnections.
        if (!request.raw.complete) {
          socket.destroy();
          request.raw.destroy(CUT_ERROR.shutdown());
        }
      }
    },
  });
}
