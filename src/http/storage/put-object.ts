import type { FastifyInstance, FastifyRequest } from 'fastify';
import { LOCAL_ENDPOINT_PATH } from '../../blobs/local-endpoint.js';
import type { StorageEndpointService } from '../../core/endpoint.js';
import { WharfError } from '../../core/errors.js';
import type { RoutingErrorShape } from '../routing-errors.js';
import { isUploadPart, multipartRoutes, signed } from './multipart.js';
import { postObjectRoute } from './post-object.js';
import { sendS3Error } from './s3-errors.js';

/** Failures before routing (a key that does not decode) answered as S3 answers them. */
export const storageRoutingErrors: RoutingErrorShape = {
  prefixes: [`${LOCAL_ENDPOINT_PATH}/`],
  send: (err, request, reply) => sendS3Error(request, reply, err),
};

/**
 * The embedded deployment's S3-style endpoint: presigned PUTs, POST Object forms and S3
 * multipart requests arrive here and answer as S3 would (ETag, XML, XML errors). Bodies are
 * never parsed by Fastify: an object's or a part's body is the bytes (only Complete's XML is
 * read, by its route). Mounted under LOCAL_ENDPOINT_PATH, where this scope's S3-style 404 applies.
 */
export async function storageEndpointRoutes(
  app: FastifyInstance,
  { endpoint, publicUrl }: { endpoint: StorageEndpointService; publicUrl: string },
) {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  app.setErrorHandler((err, request, reply) => sendS3Error(request, reply, err));
  // Only presigned S3 requests and POST policy forms exist here; anything else is refused as
  // S3 refuses an unsigned request.
  app.setNotFoundHandler((request, reply) =>
    sendS3Error(
      request,
      reply,
      new WharfError('NOT_FOUND', 'Only presigned S3 requests and POST policy forms are accepted here.'),
    ),
  );
  await app.register(postObjectRoute, { endpoint, publicUrl });
  multipartRoutes(app, endpoint, publicUrl);

  app.put('/*', { schema: { hide: true }, config: { fileBody: true } }, async (request, reply) => {
    refuseEncodedBody(request);
    if (isUploadPart(request)) {
      const part = await endpoint.uploadPart(signed(request), request.raw);
      return reply.status(200).header('etag', part.etag).send();
    }
    const digests = await endpoint.putObject(signed(request), request.raw);
    return reply.status(200).header('etag', `"${digests.md5}"`).send();
  });
}

/**
 * A body that is not the object's own bytes: in a Content-Encoding (`gzip`, or the AWS SDKs'
 * `aws-chunked` framing with its trailing checksum; refused as every file body's is, see
 * file-bodies.ts), or declared as a SigV4 streaming payload. S3 decodes aws-chunked; this
 * endpoint does not (presigned URLs, browsers and fetch never send it), and stored as it came
 * the framing would become part of the file, digests and all. Refused before a byte is read;
 * the upload stays open for a plain PUT.
 */
function refuseEncodedBody(request: FastifyRequest): void {
  const payload = request.headers['x-amz-content-sha256'];
  if (typeof payload === 'string' && payload.startsWith('STREAMING-')) {
    request.raw.resume();
    throw new WharfError(
      'VALIDATION_FAILED',
      `x-amz-content-sha256: ${payload} (an aws-chunked body) is not accepted here: send the object's bytes as they are, with a Content-Length.`,
      { s3Code: 'InvalidRequest' },
    );
  }
}
