import type { FastifyInstance, FastifyRequest } from 'fastify';
import { LOCAL_BUCKET } from '../../blobs/local-endpoint.js';
import type { StorageEndpointService } from '../../core/endpoint.js';
import { WharfError } from '../../core/errors.js';
import type { SignedRequest } from '../../core/ports.js';
import {
  completeMultipartUploadResult,
  initiateMultipartUploadResult,
  listPartsResult,
  objectLocation,
  readCompleteBody,
} from './s3-xml.js';

/**
 * S3's multipart API on the embedded endpoint, told apart from plain object requests by
 * method and query as S3 tells them: `POST ?uploads` creates, `PUT ?partNumber&uploadId`
 * stores a part, `GET ?uploadId` lists, `POST ?uploadId` completes, `DELETE ?uploadId` aborts.
 */
export function multipartRoutes(
  app: FastifyInstance,
  endpoint: StorageEndpointService,
  publicUrl: string,
): void {
  app.post('/*', { schema: { hide: true } }, async (request, reply) => {
    const query = queryOf(request);
    if (query.uploads !== undefined && query.uploadId === undefined) {
      const { key, multipartId } = await endpoint.createMultipart(signed(request));
      return xml(reply).send(initiateMultipartUploadResult(LOCAL_BUCKET, key, multipartId));
    }
    if (query.uploadId !== undefined) {
      const { key, object } = await endpoint.completeMultipart(signed(request), () =>
        readCompleteBody(request.raw),
      );
      const location = objectLocation(publicUrl, key);
      return xml(reply).send(completeMultipartUploadResult(location, LOCAL_BUCKET, key, object.etag));
    }
    throw unsupported(request);
  });

  app.get('/*', { schema: { hide: true } }, async (request, reply) => {
    if (queryOf(request).uploadId === undefined) throw unsupported(request);
    const { key, multipartId, parts } = await endpoint.listParts(signed(request));
    return xml(reply).send(listPartsResult(LOCAL_BUCKET, key, multipartId, parts));
  });

  app.delete('/*', { schema: { hide: true } }, async (request, reply) => {
    if (queryOf(request).uploadId === undefined) throw unsupported(request);
    await endpoint.abortMultipart(signed(request));
    return reply.status(204).send();
  });
}

/** Whether a PUT is UploadPart rather than PutObject. */
export function isUploadPart(request: FastifyRequest): boolean {
  const query = queryOf(request);
  return query.partNumber !== undefined || query.uploadId !== undefined;
}

export function signed(request: FastifyRequest): SignedRequest {
  return { method: request.method, rawUrl: request.raw.url ?? '', headers: request.headers };
}

function queryOf(request: FastifyRequest): Record<string, unknown> {
  return (request.query ?? {}) as Record<string, unknown>;
}

function xml(reply: import('fastify').FastifyReply) {
  return reply.status(200).header('content-type', 'application/xml');
}

function unsupported(request: FastifyRequest): WharfError {
  request.raw.resume();
  return new WharfError('NOT_FOUND', 'Only presigned S3 requests are accepted here.');
}
