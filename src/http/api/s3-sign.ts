import { Type } from 'typebox';
import { WharfError } from '../../core/errors.js';
import { MULTIPART_LIMITS, type S3Operation } from '../../core/ports.js';
import { named } from '../openapi/components.js';
import type { ApiContext, App } from './context.js';
import { errorResponses } from './schemas.js';

/** Exactly the request Uppy 6's `@uppy/aws-s3` hands to `signRequest` (its PresignableRequest). */
const SignRequestBody = named(
  'S3SignRequest',
  Type.Object(
    {
      method: Type.Union([
        Type.Literal('PUT'),
        Type.Literal('POST'),
        Type.Literal('GET'),
        Type.Literal('DELETE'),
      ]),
      key: Type.String({ minLength: 1, maxLength: 1024 }),
      uploadId: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
      partNumber: Type.Optional(Type.Integer({ minimum: 1, maximum: MULTIPART_LIMITS.maxParts })),
      contentType: Type.Optional(Type.String({ maxLength: 255 })),
      expiresIn: Type.Optional(Type.Integer({ minimum: 1, maximum: 7 * 24 * 3600 })),
    },
    { additionalProperties: false, description: 'An S3 request to presign, as Uppy 6 describes it.' },
  ),
);

const SignedResponse = named(
  'S3SignedRequest',
  Type.Object({
    url: Type.String(),
    method: Type.String(),
    key: Type.String({ description: "The key the request writes: Wharf's own for a new upload." }),
    headers: Type.Record(Type.String(), Type.String(), { description: 'Send exactly these headers.' }),
    upload_id: Type.String({ description: "Wharf's upload id (GET /v1/uploads/{id} shows its state)." }),
  }),
);

/**
 * The signing endpoint for browser clients that talk S3 themselves: a page with Uppy 6 needs
 * only `signRequest: (r) => fetch('/v1/s3/sign', …body: JSON.stringify(r)…).then((res) => res.json())`.
 */
export async function s3SignRoutes(app: App, { core }: ApiContext): Promise<void> {
  app.post(
    '/v1/s3/sign',
    {
      schema: {
        operationId: 'signS3Request',
        summary: 'Presign one S3 request for an upload of yours (Uppy 6 signRequest)',
        description:
          'PUT without uploadId (PutObject) and POST without uploadId (CreateMultipartUpload) start a new upload ' +
          "and are signed for Wharf's own key, returned as `key`; UploadPart (PUT with uploadId and partNumber), " +
          'ListParts (GET), CompleteMultipartUpload (POST) and AbortMultipartUpload (DELETE) must name the key of ' +
          'a pending multipart upload of yours. The upload completes once storage holds the whole file. An ' +
          'UploadPart whose part number no file within your limits can have (every part but the last holds ' +
          '5 MiB or more) is refused: 413 FILE_TOO_LARGE, or 403 TOKEN_BYTES_EXHAUSTED for a token’s max_bytes.',
        tags: ['multipart'],
        body: SignRequestBody,
        response: {
          200: SignedResponse,
          ...errorResponses,
          409: errorResponses[400],
          410: errorResponses[400],
          413: errorResponses[400],
        },
      },
    },
    async (request) => {
      const body = request.body;
      const signature = await core.s3Signing.sign(request.principal!, {
        operation: operationOf(body),
        key: body.key,
        multipartId: body.uploadId,
        partNumber: body.partNumber,
        contentType: body.contentType,
        expiresInSeconds: body.expiresIn,
      });
      return {
        url: signature.request.url,
        method: signature.request.method,
        key: signature.key,
        headers: signature.request.headers,
        upload_id: signature.upload.id,
      };
    },
  );
}

/** Which S3 API call a PresignableRequest describes, from its method and ids (as Uppy sends them). */
function operationOf(body: {
  method: string;
  uploadId?: string | undefined;
  partNumber?: number | undefined;
}): S3Operation {
  const multipart = body.uploadId !== undefined;
  if (body.partNumber !== undefined && !(body.method === 'PUT' && multipart)) {
    throw new WharfError('VALIDATION_FAILED', 'partNumber goes with PUT and uploadId (UploadPart) only.');
  }
  switch (body.method) {
    case 'PUT':
      if (!multipart) return 'PutObject';
      if (body.partNumber === undefined)
        throw new WharfError('VALIDATION_FAILED', 'UploadPart needs partNumber.');
      return 'UploadPart';
    case 'POST':
      return multipart ? 'CompleteMultipartUpload' : 'CreateMultipartUpload';
    case 'GET':
      if (multipart) return 'ListParts';
      break;
    case 'DELETE':
      if (multipart) return 'AbortMultipartUpload';
      break;
  }
  throw new WharfError(
    'VALIDATION_FAILED',
    'Wharf signs uploads only: PutObject and the multipart steps. Read and delete assets through the API.',
  );
}
