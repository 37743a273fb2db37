import { Type } from 'typebox';
import { type KeptIntent, keptIntents } from '../../../core/intent-replay.js';
import type { IntentResult } from '../../../core/upload-types.js';
import { named } from '../../openapi/components.js';
import { withLock } from '../../rufh/routes.js';
import type { ApiContext, App } from '../context.js';
import { IdempotencyHeaders, idempotencyRefusals } from '../idempotency.js';
import { uploadJson } from '../listings.js';
import {
  AssetResultSchema,
  assetJson,
  errorResponses,
  IdParams,
  iso,
  storageRefusals,
  UploadItemSchema,
  UploadStateSchema,
} from '../schemas.js';

const FileSchema = named(
  'FileDeclaration',
  Type.Object(
    {
      // No maxLength here: the name rules report a long name as INVALID_NAME (255 UTF-8 bytes).
      name: Type.String({
        minLength: 1,
        description: 'At most 255 UTF-8 bytes; no "/", "\\" or control characters.',
      }),
      content_type: Type.Optional(Type.String({ maxLength: 255 })),
      size: Type.Integer({ minimum: 0, description: 'Exact size in bytes; bound into the URL.' }),
      sha256: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 128,
          description: 'Hex or base64; bound into the URL and verified.',
        }),
      ),
      md5: Type.Optional(
        Type.String({ minLength: 1, maxLength: 64, description: 'Hex or base64; bound as Content-MD5.' }),
      ),
    },
    {
      additionalProperties: false,
      description: 'A file to upload: its name, exact size and, best, its digests.',
    },
  ),
);

const BatchBody = named(
  'FileDeclarations',
  Type.Object(
    { files: Type.Array(FileSchema, { minItems: 1, maxItems: 10_000 }) },
    {
      additionalProperties: false,
      description: 'Several files at once (up to WHARF_MAX_FILES_PER_REQUEST).',
    },
  ),
);

const CreateBody = Type.Union([BatchBody, FileSchema]);

const UploadBatchSchema = named(
  'UploadBatch',
  Type.Object(
    { uploads: Type.Array(UploadItemSchema) },
    { description: 'One item per declared file, in the same order.' },
  ),
);

const CreatedUploads = Type.Union([UploadBatchSchema, UploadItemSchema]);

/**
 * The most one file's declaration takes as JSON, rounded up: its longest name (255 UTF-8 bytes,
 * at most three JSON characters a byte when escaped, `\u00e9` for two), its type (255), both
 * digests (128 and 64), its size, and keys, quotes and a pretty-printer's spaces around them.
 */
const DECLARATION_BYTES = 1536;

/** Presigned uploads: declare, PUT the bytes to the returned URL, then complete. */
export async function uploadRoutes(app: App, { core, publicUrl, resumable }: ApiContext): Promise<void> {
  const itemJson = (result: IntentResult, name: string) =>
    result.status === 'exists'
      ? { status: 'exists' as const, name, asset: assetJson(result.asset, publicUrl) }
      : {
          status: 'pending' as const,
          id: result.upload.id,
          name: result.upload.name,
          method: 'PUT' as const,
          url: result.request.url,
          headers: result.request.headers,
          expires_at: iso(result.upload.expiresAt),
        };

  app.post(
    '/v1/uploads',
    {
      // As many declarations as a call may hold, each at its largest (a 255-byte name and type,
      // both digests): what a legitimate batch needs and no more, since the body is read whole
      // before it is parsed (8 MiB bodies refused only then for their count, 30 at once, once
      // took 430 MB). A larger body is refused from its Content-Length, unread.
      bodyLimit: core.uploads.maxFilesPerRequest * DECLARATION_BYTES + 64 * 1024,
      // The response schema documents and types the reply; serialising a union with
      // fast-json-stringify means validating every item against each branch, which costs
      // more than the whole request. The handler's output is built from typed values.
      serializerCompiler: () => (data) => JSON.stringify(data),
      // A replay's URLs are signed again from the ids kept (see core/intent-replay.ts).
      config: {
        idempotent: {
          replay: async (record, request) => {
            const { batch, items } = JSON.parse(record) as { batch: boolean; items: KeptIntent[] };
            const results = await core.uploads.presignAgain(request.principal!, items);
            const json = results.map((r, i) => {
              const item = items[i]!;
              return itemJson(r, 'name' in item ? item.name : '');
            });
            return JSON.stringify(batch ? { uploads: json } : json[0]);
          },
        },
      },
      schema: {
        operationId: 'createUploads',
        summary: 'Create presigned uploads (one file, or {"files": [...]})',
        description:
          'For each file: a URL to PUT the bytes to, with the headers to send and when it expires; or, when the ' +
          'account already holds a file with the declared sha256, `status: "exists"` and that asset.',
        tags: ['uploads'],
        headers: IdempotencyHeaders,
        body: CreateBody,
        response: {
          200: CreatedUploads,
          201: CreatedUploads,
          ...errorResponses,
          ...idempotencyRefusals,
          413: errorResponses[400],
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const batch = 'files' in body;
      const files = batch ? body.files : [body];
      const results = await core.uploads.createPresigned(
        request.principal!,
        files.map((f) => ({
          name: f.name,
          contentType: f.content_type,
          size: f.size,
          sha256: f.sha256,
          md5: f.md5,
        })),
        { batch },
      );
      const items = results.map((r, i) => itemJson(r, files[i]!.name));
      if (request.idempotencyHold) {
        const kept = keptIntents(
          results,
          files.map((f) => ({ name: f.name, contentType: f.content_type })),
        );
        request.idempotentRecord = JSON.stringify({ batch, items: kept });
      }
      reply.status(results.some((r) => r.status === 'pending') ? 201 : 200);
      return batch ? { uploads: items } : items[0]!;
    },
  );

  app.post(
    '/v1/uploads/:id/complete',
    {
      schema: {
        operationId: 'completeUpload',
        summary: 'Verify the uploaded bytes and turn them into an asset (idempotent)',
        description:
          'An upload of any kind that is already completed answers its asset again (`200`). A direct upload ' +
          'completes by itself when its request ends: while it is still pending, completing it is `409` ' +
          '`UPLOAD_NOT_PENDING`.',
        tags: ['uploads'],
        params: IdParams,
        response: {
          200: AssetResultSchema,
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
      const outcome = await core.uploads.complete(request.principal!, request.params.id);
      return {
        status: outcome.deduplicated ? ('exists' as const) : ('created' as const),
        asset: assetJson(outcome.asset, publicUrl),
      };
    },
  );

  cancelUploadRoute(app, { core, resumable });

  app.get(
    '/v1/uploads/:id',
    {
      schema: {
        operationId: 'getUpload',
        summary: 'State of an upload',
        description: 'The upload as `GET /v1/uploads` lists it, `resume_url` included.',
        tags: ['uploads'],
        params: IdParams,
        response: { 200: UploadStateSchema, ...errorResponses },
      },
    },
    async (request) =>
      uploadJson(
        core.listings.seen(await core.uploads.get(request.principal!, request.params.id)),
        publicUrl,
      ),
  );
}

/**
 * `DELETE /v1/uploads/{id}`, on its own: the console mounts it too (its Account page cancels
 * an upload a reload abandoned), without the rest of the upload routes.
 */
export function cancelUploadRoute(
  app: App,
  { core, resumable }: Pick<ApiContext, 'core' | 'resumable'>,
): void {
  app.delete(
    '/v1/uploads/:id',
    {
      schema: {
        operationId: 'cancelUpload',
        summary: 'Cancel a pending upload of any kind and give back what it reserved',
        description:
          "The upload ends now (`upload.cancelled`): its quota, its token's bytes and files and its open-upload " +
          'slot are released at once, bytes already sent are removed, and it can no longer complete. ' +
          "Wharf's own storage endpoint refuses its URL from then on; a bucket may still take a PUT to it, " +
          'which is removed once the URL expires. Presigned PUTs and forms, multipart (as its abort), tus and ' +
          'Resumable Uploads for HTTP (as their DELETE); a direct upload ends with its request (409). ' +
          'Idempotent: an upload that already ended without an asset answers 204 again; a completed one is ' +
          '409 `UPLOAD_NOT_PENDING`.',
        tags: ['uploads'],
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses, ...storageRefusals, 409: errorResponses[400] },
      },
    },
    async (request, reply) => {
      await core.cancellation.cancel(
        request.principal!,
        request.params.id,
        // The lock a tus or RUFH request to this upload holds while it writes (across nodes).
        resumable && ((upload, work) => withLock(resumable, request, upload, work)),
      );
      return reply.status(204).send(null);
    },
  );
}
