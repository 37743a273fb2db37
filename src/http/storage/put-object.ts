import type { FastifyInstance } from 'fastify';
import type { StorageEndpointService } from '../../core/endpoint.js';
import { WharfError } from '../../core/errors.js';
import { postObjectRoute } from './post-object.js';
import { sendS3Error } from './s3-errors.js';

/**
 * The embedded deployment's S3-style endpoint: presigned PUTs arrive here and answer as S3
 * would (ETag, XML errors). The body is never parsed: it is the object. Mounted under
 * LOCAL_ENDPOINT_PATH, where this scope's S3-style 404 applies.
 */
export async function storageEndpointRoutes(
  app: FastifyInstance,
  { endpoint }: { endpoint: StorageEndpointService },
) {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  app.setErrorHandler((err, request, reply) => sendS3Error(request, reply, err));
  // Only presigned PUTs and POST policy forms exist here; anything else is refused as S3
  // refuses an unsigned request.
  app.setNotFoundHandler((request, reply) =>
    sendS3Error(
      request,
      reply,
      new WharfError('NOT_FOUND', 'Only presigned PUT requests and POST policy forms are accepted here.'),
    ),
  );
  await app.register(postObjectRoute, { endpoint });

  app.put('/*', { schema: { hide: true } }, async (request, reply) => {
    const digests = await endpoint.putObject(
      { method: 'PUT', rawUrl: request.raw.url ?? '', headers: request.headers },
      request.raw,
    );
    return reply.status(200).header('etag', `"${digests.md5}"`).send();
  });
}
