import type { FastifyInstance } from 'fastify';
import { refuseContentEncoding } from './api/integrity.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The body is a file Wharf stores as it arrives (raw, or in a form): one sent in a
     * Content-Encoding is refused before it is read (see refuseEncodedFileBodies).
     */
    fileBody?: boolean;
  }
}

/**
 * Every route that stores its body as a file refuses a body in a Content-Encoding (415), here
 * rather than in each route: it was checked by the native routes and the storage endpoint only,
 * and the seed APIs' uploads (the file service's, netiks's form) stored gzip bytes as the plain
 * file. After authentication (onRequest), before the body is parsed or read; the route's own
 * error handler answers, in its API's shape. tus and Resumable Uploads for HTTP check it inside
 * their protocol handling, which answers in their own way.
 */
export function refuseEncodedFileBodies(app: FastifyInstance): void {
  app.addHook('preParsing', async (request, _reply, payload) => {
    if (request.routeOptions.config.fileBody === true) refuseContentEncoding(request);
    return payload;
  });
}
