/**
 * The reference for Wharf's tus endpoint: tus.io's own server with its file store, as its
 * README sets it up (`server.handle` on raw node:http). No authentication, database, hashing
 * or fsync: what the library alone costs on this machine.
 *
 * Env: BARE_TUS_PORT, BARE_TUS_DIR. Loopback only.
 */
import { createServer } from 'node:http';
import { FileStore } from '@tus/file-store';
import { Server } from '@tus/server';

const port = Number(process.env.BARE_TUS_PORT);
const directory = process.env.BARE_TUS_DIR;
if (!Number.isInteger(port) || !directory) throw new Error('BARE_TUS_PORT and BARE_TUS_DIR are required');

const tus = new Server({ path: '/files', datastore: new FileStore({ directory }) });
const server = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    return;
  }
  void tus.handle(req, res);
});
// Node's default request timeout (5 min) could cut a slow multi-GiB PATCH.
server.requestTimeout = 0;
server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => server.close(() => process.exit(0)));
