import type { FastifyInstance } from 'fastify';
import { WharfError } from '../core/errors.js';

/** Seconds a client refused by a stopping server is told to wait before it sends again. */
const STOPPING_RETRY_AFTER_SECONDS = 1;

/**
 * A request that arrives once the stop has begun (on a connection busy at the stop, or one
 * accepted just before it, see fresh-connections.ts) is not run: it is answered `503
 * SERVICE_UNAVAILABLE`, with `Retry-After` and `Connection: close` (Fastify sets that for every
 * answer during a close), in the shape its API's clients read, as any refusal. Fastify's own
 * answer (its `return503OnClosing`, turned off in app.ts) was its own body,
 * `{"error":"Service Unavailable",…}`, with no code a client could match and no Retry-After, so
 * the SDK read it as a proxy's 503 rather than a server asking to be asked again. Sent again, the
 * request reaches another node, or this one once it is back.
 */
export function refuseWhileStopping(app: FastifyInstance): void {
  let stopping = false;
  // preClose runs as the close begins, before the port closes.
  app.addHook('preClose', (done) => {
    stopping = true;
    done();
  });
  app.addHook('onRequest', (_request, _reply, done) => {
    if (!stopping) return done();
    done(
      new WharfError('SERVICE_UNAVAILABLE', 'This server is stopping: send the request again.', {
        retry_after: STOPPING_RETRY_AFTER_SECONDS,
      }),
    );
  });
}
