/**
 * The reference Wharf is measured against: what a minimal raw Node server does with the
 * same bytes. POST hashes SHA-256 and MD5 as the body streams to a temp file, fsyncs,
 * renames into place and answers 201 with the digests; GET streams a stored file back.
 * No framework, no database, no validation: the floor a real service cannot beat.
 *
 * Env: BASELINE_PORT, BASELINE_DIR. Loopback only.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const port = Number(process.env.BASELINE_PORT);
const root = process.env.BASELINE_DIR;
if (!Number.isInteger(port) || !root) throw new Error('BASELINE_PORT and BASELINE_DIR are required');
const tmp = join(root, 'tmp');
const files = join(root, 'files');
// The same write buffering Wharf's blob store uses, so neither side wins on syscall count.
const WRITE_CHUNK = 1 << 20;
const ID = /^[0-9a-f-]{36}$/;

class Hasher extends Transform {
  readonly sha256 = createHash('sha256');
  readonly md5 = createHash('md5');
  size = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.size += chunk.length;
    this.sha256.update(chunk);
    this.md5.update(chunk);
    callback(null, chunk);
  }
}

async function store(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const id = randomUUID();
  const temp = join(tmp, `${id}.part`);
  const hasher = new Hasher();
  try {
    // flush: the stream fsyncs the file before closing it, so it is durable before the rename.
    const file = createWriteStream(temp, {
      flags: 'wx',
      mode: 0o640,
      highWaterMark: WRITE_CHUNK,
      flush: true,
    });
    await pipeline(req, hasher, file);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  await rename(temp, join(files, id));
  const body = JSON.stringify({
    id,
    size: hasher.size,
    sha256: hasher.sha256.digest('hex'),
    md5: hasher.md5.digest('hex'),
  });
  res.writeHead(201, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function serve(id: string, res: ServerResponse): Promise<void> {
  const path = join(files, id);
  const { size } = await stat(path);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  await pipeline(createReadStream(path), res);
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0]!;
  if (req.method === 'GET' && path === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    return;
  }
  if (req.method === 'POST' && path === '/upload') return store(req, res);
  const id = /^\/files\/(.+)$/.exec(path)?.[1];
  if (id && ID.test(id) && req.method === 'GET') return serve(id, res);
  if (id && ID.test(id) && req.method === 'DELETE') {
    await unlink(join(files, id));
    res.writeHead(204).end();
    return;
  }
  req.resume();
  res.writeHead(404).end();
}

await mkdir(tmp, { recursive: true });
await mkdir(files, { recursive: true });
const server = createServer((req, res) => {
  handle(req, res).catch((err: unknown) => {
    if (!res.headersSent) res.writeHead(500, { connection: 'close' }).end(String(err));
    else res.destroy();
  });
});
// Node's default request timeout (5 min) could cut a slow multi-GiB upload on a slow disk.
server.requestTimeout = 0;
server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => server.close(() => process.exit(0)));
