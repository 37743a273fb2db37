import { Type } from 'typebox';
import { MAX_PARTS_PER_SIGNING } from '../../../core/multipart.js';
import { MULTIPART_LIMITS } from '../../../core/ports.js';
import { named } from '../../openapi/components.js';
import type { ApiContext, App } from '../context.js';
import { IdempotencyHeaders, idempotencyRefusals } from '../idempotency.js';
import { AssetSchema, assetJson, errorResponses, IdParams, iso, storageRefusals } from '../schemas.js';

const MiB = 1024 * 1024;

const CreateBody = named(
  'MultipartRequest',
  Type.Object(
    {
      name: Type.String({
        minLength: 1,
        description: 'At most 255 UTF-8 bytes; no "/", "\\" or control characters.',
      }),
      content_type: Type.Optional(Type.String({ maxLength: 255 })),
      size: Type.Integer({ minimum: 0, description: 'Exact size in bytes; the parts must add up to it.' }),
      sha256: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 128,
          description: 'Hex or base64 SHA-256 of the whole file, verified at completion.',
        }),
      ),
    },
    { additionalProperties: false, description: 'A large file to upload in parts.' },
  ),
);

const PendingMultipart = named(
  'MultipartUpload',
  Type.Object({
    status: Type.Literal('pending'),
    id: Type.String({ description: "Wharf's upload id: the path parameter of the other multipart routes." }),
    uploadId: Type.String({ description: "Storage's multipart upload id (S3's UploadId)." }),
    key: Type.String({ description: 'The object key the parts compose into.' }),
    part_size: Type.Integer({
      description:
        'A part size that fits the file in at most 10,000 parts (every part but the last must be at least 5 MiB).',
    }),
    expires_at: Type.String({
      format: 'date-time',
      description:
        'Parts are taken until then. The parts that arrived can still be completed for an hour after it; then the upload is aborted and its parts freed.',
    }),
  }),
);

const ExistingMultipart = named(
  'ExistingMultipart',
  Type.Object(
    { status: Type.Literal('exists'), asset: AssetSchema },
    { description: 'The account already holds the declared content: nothing needs uploading.' },
  ),
);

const PartNumber = Type.Integer({ minimum: 1, maximum: MULTIPART_LIMITS.maxParts });

const SignBody = named(
  'SignPartsRequest',
  Type.Object(
    { partNumbers: Type.Array(PartNumber, { minItems: 1, maxItems: MAX_PARTS_PER_SIGNING }) },
    { additionalProperties: false, description: 'The parts to presign URLs for.' },
  ),
);

const SignedPartSchema = named(
  'SignedPart',
  Type.Object({
    partNumber: Type.Integer(),
    url: Type.String(),
    headers: Type.Record(Type.String(), Type.String(), {
      description: 'Send exactly these headers with the PUT.',
    }),
    expires_at: Type.String({ format: 'date-time' }),
  }),
);

const SignedPartsSchema = named(
  'SignedParts',
  Type.Object(
    { parts: Type.Array(SignedPartSchema) },
    { description: 'A URL per part, in the order asked.' },
  ),
);

const StoredPartSchema = named(
  'StoredPart',
  Type.Object(
    { PartNumber: Type.Integer(), Size: Type.Integer(), ETag: Type.String() },
    { description: 'A part storage holds (as S3’s ListParts names it).' },
  ),
);

const StoredPartsSchema = named(
  'StoredParts',
  Type.Array(StoredPartSchema, { description: 'The parts storage holds, by part number.' }),
);

const MultipartResultSchema = named(
  'MultipartResult',
  Type.Object(
    {
      status: Type.Union([Type.Literal('created'), Type.Literal('exists')]),
      location: Type.String({ description: "The asset's content URL." }),
      asset: AssetSchema,
    },
    { description: 'The asset the parts composed into (or that already held the content).' },
  ),
);

const CompleteBody = named(
  'CompleteMultipartRequest',
  Type.Object(
    {
      parts: Type.Array(
        Type.Object(
          { PartNumber: PartNumber, ETag: Type.String({ minLength: 1, maxLength: 256 }) },
          { additionalProperties: false },
        ),
        { minItems: 1, maxItems: MULTIPART_LIMITS.maxParts },
      ),
    },
    {
      additionalProperties: false,
      description: 'Every part, in ascending order, with the ETag its PUT answered.',
    },
  ),
);

/**
 * S3-style multipart uploads through the native API, one route per step of Uppy 5's
 * `@uppy/aws-s3` callbacks (createMultipartUpload, signPart, listParts,
 * completeMultipartUpload, abortMultipartUpload). Parts go straight to storage.
 */
export async function multipartRoutes(app: App, { core, publicUrl }: ApiContext): Promise<void> {
  app.post(
    '/v1/multipart',
    {
      config: { idempotent: true },
      schema: {
        operationId: 'createMultipartUpload',
        summary: 'Start a multipart upload of a large file',
        description:
          'Returns the ids to sign parts with. When the account already holds a file with the declared sha256, ' +
          'returns `status: "exists"` and that asset instead: nothing needs uploading.',
        tags: ['multipart'],
        headers: IdempotencyHeaders,
        body: CreateBody,
        response: {
          200: ExistingMultipart,
          201: PendingMultipart,
          ...errorResponses,
          ...idempotencyRefusals,
          ...storageRefusals,
          413: errorResponses[400],
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const started = await core.multipart.create(request.principal!, {
        name: body.name,
        contentType: body.content_type,
        size: body.size,
        sha256: body.sha256,
      });
      if (started.status === 'exists') {
        return reply
          .status(200)
          .send({ status: 'exists' as const, asset: assetJson(started.asset, publicUrl) });
      }
      return reply.status(201).send({
        status: 'pending' as const,
        id: started.upload.id,
        uploadId: started.multipartId,
        key: started.upload.storageKey,
        part_size: partSizeFor(body.size),
        expires_at: iso(started.upload.expiresAt),
      });
    },
  );

  app.post(
    '/v1/multipart/:id/parts',
    {
      schema: {
        operationId: 'signMultipartParts',
        summary: 'Presign part URLs (in batches)',
        description:
          'One URL per part number, each valid for a limited time; sign again to retry a part later.',
        tags: ['multipart'],
        params: IdParams,
        body: SignBody,
        response: {
          200: SignedPartsSchema,
          ...errorResponses,
          // UPLOAD_NOT_PENDING: the upload is complete, there are no parts left to sign.
          409: errorResponses[400],
          410: errorResponses[400],
        },
      },
    },
    async (request) => {
      const now = core.clock.now();
      const signed = await core.multipart.signParts(
        request.principal!,
        request.params.id,
        request.body.partNumbers,
      );
      return {
        parts: signed.map(({ partNumber, request: r }) => ({
          partNumber,
          url: r.url,
          headers: r.headers,
          expires_at: iso(now + expirySeconds(r.url) * 1000),
        })),
      };
    },
  );

  app.get(
    '/v1/multipart/:id/parts',
    {
      schema: {
        operationId: 'listMultipartParts',
        summary: 'The parts storage holds so far (to resume)',
        tags: ['multipart'],
        params: IdParams,
        response: {
          200: StoredPartsSchema,
          ...errorResponses,
          ...storageRefusals,
          // UPLOAD_NOT_PENDING: the upload is complete, its parts are gone.
          409: errorResponses[400],
          410: errorResponses[400],
        },
      },
    },
    async (request) =>
      (await core.multipart.listParts(request.principal!, request.params.id)).map((p) => ({
        PartNumber: p.partNumber,
        Size: p.size,
        ETag: p.etag,
      })),
  );

  app.post(
    '/v1/multipart/:id/complete',
    {
      schema: {
        operationId: 'completeMultipartUpload',
        summary: 'Compose the parts and verify the file; returns the asset (idempotent)',
        description:
          'Every part must be named with the ETag its upload returned, in ascending order; they must add up to ' +
          'the declared size, and the whole file must match a declared sha256.',
        tags: ['multipart'],
        params: IdParams,
        body: CompleteBody,
        response: {
          200: MultipartResultSchema,
          ...errorResponses,
          ...storageRefusals,
          409: errorResponses[400],
          410: errorResponses[400],
          // LOCATION_NOT_REMOVABLE: the account strips EXIF location and this file's cannot be.
          422: errorResponses[400],
        },
      },
    },
    async (request) => {
      const outcome = await core.multipart.complete(
        request.principal!,
        request.params.id,
        request.body.parts.map((p) => ({ partNumber: p.PartNumber, etag: p.ETag })),
      );
      const asset = assetJson(outcome.asset, publicUrl);
      return {
        status: outcome.deduplicated ? ('exists' as const) : ('created' as const),
        location: asset.content_url,
        asset,
      };
    },
  );

  app.delete(
    '/v1/multipart/:id',
    {
      schema: {
        operationId: 'abortMultipartUpload',
        summary: 'Abort a multipart upload and free its parts',
        tags: ['multipart'],
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses, ...storageRefusals, 409: errorResponses[400] },
      },
    },
    async (request, reply) => {
      await core.multipart.abort(request.principal!, request.params.id);
      return reply.status(204).send(null);
    },
  );
}

/** At least 8 MiB, and large enough that the file fits in S3's 10,000 parts (whole MiB). */
export function partSizeFor(size: number): number {
  return Math.max(8 * MiB, Math.ceil(size / MULTIPART_LIMITS.maxParts / MiB) * MiB);
}

/** The validity a SigV4 query-presigned URL carries. */
function expirySeconds(url: string): number {
  return Number(new URL(url).searchParams.get('X-Amz-Expires') ?? 0);
}
