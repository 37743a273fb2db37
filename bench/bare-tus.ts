/**
 * The reference for Wharf's tus endpoint: tus.io's own server with its file store, as its
 * README sets it up (`server.handle` on raw node:http). No authentication, database, hashing
 * or fsync: what the library alone costs on this machine.
 *
 * With BARE_TUS_VERIFY=1 it also does the two things Wharf does per byte that the library
 * does not, in the plainest way @tus/server allows: each PATCH body is hashed (SHA-256 and
 * MD5, node:crypto, on the event loop) on its way to the file store, and the finished file is
 * fsynced before the last PATCH is answered. The hashing state lives in memory, so an upload
 * that resumes after a restart is refused: a reference for one uninterrupted client, not a
 * product.
 *
 * Env: BARE_TUS_PORT, BARE_TUS_DIR, BARE_TUS_VERIFY. Loopback only.
 */
import { createHash, type Hash } from 'node:crypto';
import { open, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { pipeline, type Readable, Transform } from 'node:stream';
import { FileStore } from '@tus/file-store';
import { Server } from '@tus/server';

const port = Number(process.env.BARE_TUS_PORT);
const directory = process.env.BARE_TUS_DIR;
if (!Number.isInteger(port) || !directory) throw new Error('BARE_TUS_PORT and BARE_TUS_DIR are required');
const verify = process.env.BARE_TUS_VERIFY === '1';

interface Hashing {
  sha256: Hash;
  md5: Hash;
  offset: number;
}

class HashingFileStore extends FileStore {
  readonly hashing = new Map<string, Hashing>();

  override async write(readable: IncomingMessage | Readable, id: string, offset: number): Promise<number> {
    let state = this.hashing.get(id);
    if (!state && offset === 0) {
      state = { sha256: createHash('sha256'), md5: createHash('md5'), offset: 0 };
      this.hashing.set(id, state);
    }
    if (!state || state.offset !== offset) throw new Error(`no hashing state for ${id} at offset ${offset}`);
    const hashing = state;
    const hashed = pipeline(
      readable,
      new Transform({
        transform(chunk: Buffer, _encoding, done) {
          hashing.sha256.update(chunk);
          hashing.md5.update(chunk);
          done(null, chunk);
        },
      }),
      () => {},
    );
    hashing.offset = await super.write(hashed, id, offset);
    return hashing.offset;
  }
}

const store = verify ? new HashingFileStore({ directory }) : new FileStore({ directory });
const tus = new Server({
  path: '/files',
  datastore: store,
  ...(store instanceof HashingFileStore && {
    async onUploadFinish(_req, upload) {
      const state = store.hashing.get(upload.id)!;
      store.hashing.delete(upload.id);
      const path = join(directory, upload.id);
      const handle = await open(path, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      const digests = { sha256: state.sha256.digest('hex'), md5: state.md5.digest('hex') };
      await writeFile(`${path}.digests`, JSON.stringify(digests));
      return {};
    },
  }),
});
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
