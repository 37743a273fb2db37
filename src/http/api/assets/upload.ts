import multipart from '@fastify/multipart';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { WharfError } from '../../../core/errors.js';
import { type KeptUpload, keptUpload, uploadedAgain } from '../../../core/intent-replay.js';
import type { Principal } from '../../../core/model.js';
import { validateContentType } from '../../../core/names.js';
import type { DirectUpload, UploadOutcome } from '../../../core/upload-types.js';
import { fileField, firstFilePart, partFailure, refuseMoreFiles } from '../../multipart-form.js';
import { describedAs, named } from '../../openapi/components.js';
import { asksForResumableUpload, createResumableUpload } from '../../rufh/routes.js';
import type { ApiContext, App } from '../context.js';
import { IdempotencyHeaders, idempotencyRefusals } from '../idempotency.js';
import { declaredDigests, headerDigests, queryDigests, trailerDigests } from '../integrity.js';
import {
  AssetResultSchema,
  assetJson,
  ErrorSchema,
  errorResponses,
  ResumableUploadSchema,
  storageRefusals,
  UploadProblemSchema,
} from '../schemas.js';

const Query = Type.Object(
  {
    name: Type.Optional(
      // No maxLength here: the name rules report a long name as INVALID_NAME (255 UTF-8 bytes).
      Type.String({ description: 'File name (required for raw bodies), at most 255 UTF-8 bytes.' }),
    ),
    content_type: Type.Optional(
      Type.String({ maxLength: 255, description: 'Overrides the part/body type.' }),
    ),
    sha256: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: 'Expected SHA-256, hex or base64.' }),
    ),
    md5: Type.Optional(
      Type.String({ minLength: 1, maxLength: 64, description: 'Expected MD5, hex or base64.' }),
    ),
    head_sha256: Type.Optional(
      Type.String({
        maxLength: 128,
        description:
          'Resumable uploads: SHA-256 (hex or base64) of the first min(size, 4 MiB) bytes, to find the upload again by its file.',
      }),
    ),
  },
  { additionalProperties: false },
);

/**
 * The form, for the document only (the route streams the form itself, never validated whole): a
 * component, as every body a generated client types is.
 */
const UploadForm = named(
  'AssetUploadForm',
  Type.Object(
    { file: Type.String({ format: 'binary', description: 'The file (one file part).' }) },
    { description: 'A form with the file in field `file`.' },
  ),
);

/** The request bodies, for the document (the route reads the body itself, never parsed). */
const UPLOAD_BODY = {
  'multipart/form-data': { schema: UploadForm },
  'application/octet-stream': {
    schema: {
      type: 'string',
      format: 'binary',
      description:
        'The file itself, with `?name=`; any Content-Type other than multipart/form-data is the file’s.',
    },
  },
};

/**
 * POST /v1/assets — the bytes come through Wharf, either as multipart/form-data (field
 * `file`) or as the raw body. This plugin owns its content-type parsers: here a JSON or
 * text body is a file to store, not something to parse.
 */
export async function directUploadRoute(app: App, { core, publicUrl, resumable }: ApiContext): Promise<void> {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  await app.register(multipart, {
    limits: { files: 1, fields: 8, fieldSize: 4096, parts: 10, headerPairs: 100 },
    // The core's byte limit reports oversize files; busboy only must not cut them silently.
    throwFileSizeLimit: false,
    // busboy would cut "../etc/passwd" down to "passwd" silently; the name rules refuse it.
    preservePath: true,
  });

  app.post(
    '/v1/assets',
    {
      config: {
        documentedBody: UPLOAD_BODY,
        fileBody: true,
        documentedHeaders: {
          201: {
            Location: 'With `Upload-Complete: ?0`: the resumable upload, under /v1/resumable/.',
            'Upload-Offset': 'With `Upload-Complete: ?0`: bytes received so far.',
          },
        },
        // A retry with the key gets the first answer, rebuilt from the asset it named (see
        // core/intent-replay.ts), and its bytes are not stored again.
        idempotent: {
          request: (request) => sameRequest(request, resumable !== undefined),
          replay: async (record, request) => {
            const outcome = await uploadedAgain(
              core.assets,
              request.principal!,
              JSON.parse(record) as KeptUpload,
            );
            return JSON.stringify(resultJson(outcome));
          },
        },
      },
      // The header is the file's type: one Fastify cannot even parse (`text`, `a/b/c`) is
      // refused as the core refuses any invalid type, before Fastify's 415 for an unreadable body.
      onRequest: async (request) => {
        validateContentType(request.headers['content-type']);
      },
      schema: {
        operationId: 'uploadAsset',
        summary: 'Upload a file through Wharf',
        description:
          'multipart/form-data with the file in field `file`, or any other content type with the raw bytes as ' +
          'the body and `?name=`. Optional integrity: `?sha256=`/`?md5=` of the file, and `Content-MD5`, ' +
          '`Content-Digest`/`Repr-Digest: sha-256=:…:` of the request body (the file when raw, the whole form ' +
          'when multipart), as headers or as trailers of a chunked body that `Trailer` announces; a mismatch stores ' +
          'nothing. 201 when a new asset was created, 200 when the ' +
          'account already held this content (the existing asset is returned). A raw body sent with ' +
          '`Upload-Complete` (Resumable Uploads for HTTP, the IETF draft) becomes a resumable upload: a 104 ' +
          'names its resource under /v1/resumable/ while the body arrives (see docs/resumable-http.md).',
        tags: ['assets'],
        headers: IdempotencyHeaders,
        querystring: Query,
        response: {
          200: AssetResultSchema,
          // A resumable upload the client finishes later (`Upload-Complete: ?0`) is created too:
          // its answer is the upload resource, not an asset (a hunt's generated client, taking
          // every 201 for an AssetResult, found neither `status` nor `asset` in it).
          201: Type.Union([AssetResultSchema, ResumableUploadSchema], {
            description:
              'The asset created, or with `Upload-Complete: ?0` the resumable upload waiting for the rest.',
          }),
          413: errorResponses[400],
          ...errorResponses,
          ...storageRefusals,
          409: idempotencyRefusals[409],
          422: describedAs(
            ErrorSchema,
            'LOCATION_NOT_REMOVABLE: the account strips EXIF location and this file’s cannot be; ' +
              'IDEMPOTENCY_KEY_REUSED: this Idempotency-Key was sent with another request.',
          ),
          // LENGTH_REQUIRED: a resumable upload (`Upload-Complete: ?0`) that says no length.
          411: errorResponses[400],
          // A resumable creation whose lengths disagree (INCONSISTENT_LENGTH) is the draft's
          // problem document, as on /v1/resumable/; every other 400 is Wharf's JSON.
          400: {
            description:
              'A refusal; with `Upload-Complete`, lengths that disagree are the draft’s problem document.',
            content: {
              'application/json': { schema: ErrorSchema },
              'application/problem+json': { schema: UploadProblemSchema },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const principal = request.principal!;
      if (resumable && !request.isMultipart() && asksForResumableUpload(request)) {
        return createResumableUpload({ core, publicUrl, ...resumable }, request, reply, request.query);
      }
      if (!request.isMultipart()) {
        // The body is the file: the headers' digests and the query's are all the file's.
        const expected = declaredDigests(request.headers, request.query);
        const input = rawInput(request, request.query);
        const trailing = trailerDigests(request);
        return created(
          request,
          reply,
          await core.uploads.uploadDirect(principal, { ...input, expected, trailing }),
        );
      }
      // The body is a form: its headers' digests are the form's (RFC 1864, RFC 9530), the
      // query's the file's.
      const expected = queryDigests(request.query);
      const input = await multipartInput(core, principal, request, request.query);
      return created(request, reply, await core.uploads.uploadDirect(principal, { ...input, expected }));
    },
  );

  function created(request: FastifyRequest, reply: FastifyReply, outcome: UploadOutcome) {
    if (request.idempotencyHold) request.idempotentRecord = JSON.stringify(keptUpload(outcome));
    reply.status(outcome.deduplicated ? 200 : 201);
    return resultJson(outcome);
  }

  function resultJson(outcome: UploadOutcome) {
    return {
      status: outcome.deduplicated ? ('exists' as const) : ('created' as const),
      asset: assetJson(outcome.asset, publicUrl),
    };
  }
}

/**
 * What an Idempotency-Key stands for on this route: the query, and for a raw body the headers
 * that describe it (its type, length and digests), which a retry sends as the first did. A form's
 * headers differ between two sends of the same file (its boundary, and so its length): the query
 * is what it has. The file's bytes are not compared: sent again under the same key, they are not
 * read. A Resumable Uploads for HTTP creation takes no key: it is resumed by its own resource.
 */
function sameRequest(request: FastifyRequest, resumable: boolean): unknown {
  if (request.isMultipart()) return { query: request.query, form: true };
  if (resumable && asksForResumableUpload(request)) return undefined;
  const described: Record<string, unknown> = { query: request.query };
  for (const header of ['content-type', 'content-length', 'content-md5', 'content-digest', 'repr-digest']) {
    const value = request.headers[header];
    if (value !== undefined) described[header] = value;
  }
  return described;
}

type Query = { name?: string; content_type?: string };

/**
 * curl --data-binary labels its body application/x-www-form-urlencoded unless told
 * otherwise; a file uploaded raw is never really a URL-encoded form, so that label is
 * treated as "no type given".
 */
function rawBodyType(header: string | undefined): string | undefined {
  return header?.split(';')[0]?.trim().toLowerCase() === 'application/x-www-form-urlencoded'
    ? undefined
    : header;
}

function rawInput(request: FastifyRequest, query: Query): DirectUpload {
  if (!query.name) {
    request.raw.resume();
    throw new WharfError('VALIDATION_FAILED', 'A raw upload needs ?name= (or send multipart/form-data).');
  }
  const length = request.headers['content-length'];
  return {
    name: query.name,
    contentType: query.content_type ?? rawBodyType(request.headers['content-type']),
    body: request.raw,
    declaredSize: length === undefined ? undefined : Number(length),
  };
}

async function multipartInput(
  core: ApiContext['core'],
  principal: Principal,
  request: FastifyRequest,
  query: Query,
): Promise<DirectUpload> {
  const {
    part: first,
    rest,
    checkForm,
  } = await firstFilePart(request, core.uploads.maxFileSize(principal), headerDigests(request.headers));
  const part = fileField(first);
  const name = query.name ?? part.filename;
  if (!name) {
    part.file.resume();
    throw new WharfError('VALIDATION_FAILED', 'The file part has no filename; add ?name=.');
  }
  return {
    name,
    contentType: query.content_type ?? part.mimetype,
    body: part.file,
    beforeCommit: async () => {
      await refuseMoreFiles(rest, 'file');
      await checkForm();
    },
    explain: partFailure(part.file),
  };
}
