import type { FastifyInstance, FastifyRequest } from 'fastify';
import { refuseContentEncoding } from './api/integrity.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The body is a file Wharf stores as it arrives (raw, or in a form): one sent in a
     * Content-Encoding is refused before it is read, even an empty one (see refuseEncodedBodies).
     */
    fileBody?: boolean;
    /**
     * The route's protocol refuses a body in a Content-Encoding itself, inside its own handling
     * and in its own way (tus, Resumable Uploads for HTTP): refuseEncodedBodies leaves it alone.
     */
    protocolEncoding?: boolean;
  }
}

/**
 * Whether Fastify reads the request's body: not a GET's or a HEAD's, and not an absent one (no
 * Transfer-Encoding, a Content-Length of 0 or none), as Fastify itself decides.
 */
function carriesBody(request: FastifyRequest): boolean {
  if (request.method === 'GET' || request.method === 'HEAD') return false;
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Wharf decodes no request body in any Content-Encoding, so every route refuses one (415) here,
 * rather than in each route, after authentication (onRequest) and before the body is parsed or
 * read; the route's own error handler answers, in its API's shape. A file would otherwise be
 * stored compressed as the plain file (the seed APIs' uploads, the file service's and netiks's
 * form, did), and a JSON body was refused as "not valid JSON" (400), which sent its client
 * looking for a fault in the JSON it had sent. A route that stores its body as a file refuses
 * the header on any request; the others on a request with a body (a DELETE that sends none is
 * not refused for the header). tus and Resumable Uploads for HTTP check it inside their
 * protocol handling, which answers in their own way (config.protocolEncoding).
 */
export function refuseEncodedBodies(app: FastifyInstance): void {
  app.addHook('preParsing', async (request, _reply, payload) => {
    const config = request.routeOptions.config;
    // A path no route takes is a 404 whatever its body.
    if (request.is404 || config.protocolEncoding === true) return payload;
    if (config.fileBody === true) refuseContentEncoding(request, 'file');
    else if (carriesBody(request)) refuseContentEncoding(request, 'body');
    return payload;
  });
}
