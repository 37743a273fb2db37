/**
 * The reference for `npm run bench:images`: the same sharp pipeline Wharf runs for a
 * transform (orientation applied, resized within the box without enlarging, WebP at the
 * same quality and effort, no metadata), in a bare node:http server reading the original
 * from a local file and streaming the result to the socket. No store, no cache, no
 * database, no authentication: the floor for one rendering on this machine.
 *
 * Env: IMAGE_BASELINE_PORT, IMAGE_BASELINE_DIR (originals, by name). Loopback only.
 */
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import sharp from 'sharp';

const port = Number(process.env.IMAGE_BASELINE_PORT);
const root = process.env.IMAGE_BASELINE_DIR;
if (!Number.isInteger(port) || !root)
  throw new Error('IMAGE_BASELINE_PORT and IMAGE_BASELINE_DIR are required');
const NAME = /^[A-Za-z0-9_-]{1,64}\.jpg$/;
// As Wharf configures it (src/processing/sharp-renderer.ts): no operation cache.
sharp.cache(false);

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/healthz') {
    res.end('ok');
    return;
  }
  const name = url.pathname.slice('/image/'.length);
  const width = Number(url.searchParams.get('w'));
  if (!url.pathname.startsWith('/image/') || !NAME.test(name) || !Number.isInteger(width) || width < 1) {
    res.statusCode = 404;
    res.end();
    return;
  }
  const image = sharp(join(root, name), {
    limitInputPixels: 60_000_000,
    failOn: 'error',
    sequentialRead: true,
    autoOrient: true,
  })
    .resize({ width, height: 4096, fit: 'inside', withoutEnlargement: true })
    .timeout({ seconds: 30 })
    .webp({ quality: 80, effort: 4 });
  res.setHeader('content-type', 'image/webp');
  pipeline(image, res).catch(() => {
    if (!res.headersSent) res.statusCode = 500;
    res.destroy();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1');
