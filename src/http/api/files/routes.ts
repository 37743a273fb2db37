import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { WharfError } from '../../../core/errors.js';
import type { FileVersion } from '../../../core/model.js';
import { describedAs, named } from '../../openapi/components.js';
import type { ApiContext, App } from '../context.js';
import { IdempotencyHeaders, idempotencyRefusals } from '../idempotency.js';
import { declaredDigests, trailerDigests } from '../integrity.js';
import {
  AccessSchema,
  AssetSchema,
  assetJson,
  ErrorSchema,
  errorResponses,
  iso,
  storageRefusals,
} from '../schemas.js';

const FileParams = Type.Object({
  namespace: Type.String({ maxLength: 64, description: 'Letters, digits, `_`, `-`, `.`.' }),
  name: Type.String({ maxLength: 1024, description: 'The file name (a version is added on each upload).' }),
});

const VersionSchema = named(
  'FileVersion',
  Type.Object(
    {
      namespace: Type.String(),
      name: Type.String(),
      version: Type.Integer({ minimum: 1 }),
      latest_version: Type.Integer({ minimum: 1 }),
      created_at: Type.String({ format: 'date-time' }),
      asset: AssetSchema,
    },
    { description: 'A version of a named file, with its asset.' },
  ),
);

const VersionEntrySchema = named(
  'FileVersionEntry',
  Type.Object(
    {
      namespace: Type.String(),
      name: Type.String(),
      version: Type.Integer({ minimum: 1 }),
      latest_version: Type.Integer({ minimum: 1 }),
      created_at: Type.String({ format: 'date-time' }),
      asset_id: Type.String(),
    },
    { description: 'A version of a named file, naming its asset.' },
  ),
);

const VersionListSchema = named(
  'FileVersionList',
  Type.Object({ data: Type.Array(VersionEntrySchema) }, { description: 'Every version, oldest first.' }),
);

/** Any bytes: the request body of a named file's upload (for the document; it is never parsed). */
const RAW_BODY = { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } };

const VersionQuery = Type.Object(
  { version: Type.Optional(Type.Integer({ minimum: 1, description: 'Default: the latest.' })) },
  { additionalProperties: false },
);

/** What an Idempotency-Key keeps of a named file's upload: the version it made, read again on a replay. */
interface KeptVersion {
  namespace: string;
  name: string;
  version: number;
}

/**
 * What an Idempotency-Key stands for on PUT /v1/files: the file it names, the query and the
 * headers that describe the body (its type, length and digests), which a retry sends as the
 * first did. The bytes are not compared: sent again under the same key, they are not read.
 * The route's pattern is the same for every file, so the file itself is part of the request.
 */
function sameFileRequest(request: FastifyRequest): unknown {
  const described: Record<string, unknown> = { params: request.params, query: request.query };
  for (const header of ['content-type', 'content-length', 'content-md5', 'content-digest', 'repr-digest']) {
    const value = request.headers[header];
    if (value !== undefined) described[header] = value;
  }
  return described;
}

/**
 * Conditions a client sends to write only over what it read (compare-and-swap): Wharf does not
 * evaluate them on a named file's upload, and a write that ignored them would let the client
 * believe its condition held. Refused before the body is read, so nothing is written.
 */
const CONDITIONS = ['if-match', 'if-none-match', 'if-unmodified-since'] as const;

function refuseConditions(request: FastifyRequest): void {
  const header = CONDITIONS.find((name) => request.headers[name] !== undefined);
  if (header === undefined) return;
  throw new WharfError(
    'VALIDATION_FAILED',
    'PUT /v1/files does not evaluate If-Match, If-None-Match or If-Unmodified-Since: it cannot write only ' +
      'if the file is as you read it. Nothing was written; send it without the header.',
    { header },
  );
}

function versionJson(version: FileVersion) {
  return {
    namespace: version.namespace,
    name: version.name,
    version: version.version,
    latest_version: version.latestVersion,
    created_at: iso(version.createdAt),
  };
}

/**
 * Named files with versions: PUT the same name again and it becomes the next version;
 * every version stays readable. Identical content is stored once (versions point at assets).
 */
export async function fileRoutes(app: App, { core, publicUrl }: ApiContext): Promise<void> {
  // The body is the file, whatever its type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));

  app.put(
    '/v1/files/:namespace/:name',
    {
      config: {
        documentedBody: RAW_BODY,
        fileBody: true,
        // A retry with the key gets the first answer, the version it made as it is now (a
        // client whose answer was lost would otherwise make a second version), and its bytes
        // are not stored again.
        idempotent: {
          request: sameFileRequest,
          replay: async (record, request) => {
            const kept = JSON.parse(record) as KeptVersion;
            const { version, asset } = await core.files.get(
              request.principal!,
              kept.namespace,
              kept.name,
              kept.version,
            );
            return JSON.stringify({ ...versionJson(version), asset: assetJson(asset, publicUrl) });
          },
        },
      },
      onRequest: async (request) => {
        refuseConditions(request);
      },
      schema: {
        operationId: 'putFile',
        summary: 'Upload the next version of a named file (raw body)',
        description:
          'The body is the file, of any type: its Content-Type (or `?content_type=`) becomes the asset’s. The ' +
          'new version is the next number of that name, in the order uploads complete. Optional integrity, as ' +
          'for POST /v1/assets: `Content-MD5`, `Content-Digest`/`Repr-Digest: sha-256=:…:`, or ' +
          '`?sha256=`/`?md5=`; a mismatch stores nothing and records no version. With an `Idempotency-Key`, ' +
          'the same request again within 24 hours gets the first answer (the version it made, as it is now) ' +
          'and makes no other version. Conditional headers (`If-Match`, `If-None-Match`, `If-Unmodified-Since`) ' +
          'are not evaluated here: a request with one is refused 400 VALIDATION_FAILED and writes nothing.',
        tags: ['files'],
        params: FileParams,
        headers: IdempotencyHeaders,
        querystring: Type.Object(
          {
            content_type: Type.Optional(Type.String({ maxLength: 255 })),
            access: Type.Optional(AccessSchema),
            sha256: Type.Optional(
              Type.String({ minLength: 1, maxLength: 128, description: 'Expected SHA-256, hex or base64.' }),
            ),
            md5: Type.Optional(
              Type.String({ minLength: 1, maxLength: 64, description: 'Expected MD5, hex or base64.' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          201: VersionSchema,
          413: errorResponses[400],
          ...errorResponses,
          ...storageRefusals,
          409: idempotencyRefusals[409],
          422: describedAs(
            ErrorSchema,
            'LOCATION_NOT_REMOVABLE: the account strips EXIF location and this file’s cannot be; ' +
              'IDEMPOTENCY_KEY_REUSED: this Idempotency-Key was sent with another request.',
          ),
        },
      },
    },
    async (request, reply) => {
      const expected = declaredDigests(request.headers, request.query);
      const length = request.headers['content-length'];
      const type = request.headers['content-type'];
      const outcome = await core.files.put(request.principal!, {
        namespace: request.params.namespace,
        name: request.params.name,
        body: request.raw,
        contentType:
          request.query.content_type ??
          (type?.startsWith('application/x-www-form-urlencoded') ? undefined : type),
        declaredSize: length === undefined ? undefined : Number(length),
        access: request.query.access,
        expected,
        trailing: trailerDigests(request),
      });
      if (request.idempotencyHold) {
        const { namespace, name, version } = outcome.version;
        request.idempotentRecord = JSON.stringify({ namespace, name, version } satisfies KeptVersion);
      }
      reply.status(201);
      return { ...versionJson(outcome.version), asset: assetJson(outcome.asset, publicUrl) };
    },
  );

  app.get(
    '/v1/files/:namespace/:name',
    {
      schema: {
        operationId: 'getFile',
        summary: 'The latest (or a given) version of a named file',
        tags: ['files'],
        params: FileParams,
        querystring: VersionQuery,
        response: { 200: VersionSchema, ...errorResponses },
      },
    },
    async (request) => {
      const { version, asset } = await core.files.get(
        request.principal!,
        request.params.namespace,
        request.params.name,
        request.query.version,
      );
      return { ...versionJson(version), asset: assetJson(asset, publicUrl) };
    },
  );

  app.get(
    '/v1/files/:namespace/:name/versions',
    {
      schema: {
        operationId: 'listFileVersions',
        summary: 'Every version of a named file, oldest first',
        tags: ['files'],
        params: FileParams,
        // One page, every version: no parameters, so a cursor or a typo is refused, not ignored.
        querystring: Type.Object({}, { additionalProperties: false }),
        response: { 200: VersionListSchema, ...errorResponses },
      },
    },
    async (request) => {
      const versions = await core.files.versions(
        request.principal!,
        request.params.namespace,
        request.params.name,
      );
      return { data: versions.map((v) => ({ ...versionJson(v), asset_id: v.assetId })) };
    },
  );
}
