/**
 * The ceiling for any Fastify JSON endpoint on this machine: one POST route that parses
 * the JSON body and returns a small JSON object. No plugins, hooks, schemas or database.
 * Measured exactly like POST /v1/uploads, it tells how much of Wharf's figure the
 * framework and the machine already cost.
 *
 * Env: BARE_PORT. Loopback only.
 */
import Fastify from 'fastify';

const port = Number(process.env.BARE_PORT);
if (!Number.isInteger(port)) throw new Error('BARE_PORT is required');

// Same body limit as Wharf's POST /v1/uploads, so the batched body is accepted.
const app = Fastify({ logger: false, bodyLimit: 8 * 1024 * 1024 });
app.get('/healthz', async () => ({ status: 'ok' }));
app.post('/v1/uploads', async (_request, reply) => {
  reply.status(201);
  return { status: 'pending', id: '0195a3b2-7c1d-7e4f-8a9b-0c1d2e3f4a5b' };
});
await app.listen({ host: '127.0.0.1', port });
process.once('SIGTERM', () => {
  void app.close().then(() => process.exit(0));
});
