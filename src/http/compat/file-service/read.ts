import { Type } from 'typebox';
import type { App } from '../../api/context.js';
import type { CompatContext } from '../context.js';
import { errorResponses } from './errors.js';
import { FileResultSchema, fileResult, lastModified, signedContentUrl } from './responses.js';
import { FileParams } from './schemas.js';

const VersionQuery = Type.Object(
  { version: Type.Optional(Type.Integer({ minimum: 1, description: 'Default: the latest version.' })) },
  // Real clients may add parameters of their own; only `version` means something here.
  { additionalProperties: true },
);

/** A redirect only has to outlive the client following it. */
const REDIRECT_SECONDS = 300;

/**
 * Reading back what the document's POST stores: the same answer by namespace and name
 * (latest, or `?version=N`), the bytes (a redirect to a signed URL of the native content
 * route, which serves ranges and ETags), and the list of versions.
 */
export async function readRoutes(app: App, context: CompatContext): Promise<void> {
  const { core } = context;

  app.get(
    '/:namespace/:name',
    {
      schema: {
        operationId: 'fileServiceGetFile',
        summary: 'A file’s latest (or given) version, with a fresh secureFilePath',
        tags: ['file-service'],
        params: FileParams,
        querystring: VersionQuery,
        response: { 200: FileResultSchema, ...errorResponses },
      },
    },
    async (request) => {
      const principal = request.principal!;
      const { namespace, name } = request.params;
      const { version, asset, through } = await core.files.get(
        principal,
        namespace,
        name,
        request.query.version,
      );
      return fileResult(context, principal, 'Successfully fetched file', version, asset, through);
    },
  );

  app.get(
    '/:namespace/:name/content',
    {
      schema: {
        operationId: 'fileServiceGetContent',
        summary: 'The bytes of a file’s latest (or given) version (302 to a signed download URL)',
        tags: ['file-service'],
        params: FileParams,
        querystring: VersionQuery,
        response: {
          302: { description: 'The bytes are at Location (valid for 5 minutes).', type: 'null' },
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const principal = request.principal!;
      const { namespace, name } = request.params;
      const { asset } = await core.files.get(principal, namespace, name, request.query.version);
      return reply.redirect(await signedContentUrl(context, principal, asset.id, REDIRECT_SECONDS), 302);
    },
  );

  app.get(
    '/:namespace/:name/versions',
    {
      schema: {
        operationId: 'fileServiceListVersions',
        summary: 'Every version of a file, oldest first',
        tags: ['file-service'],
        params: FileParams,
        querystring: Type.Object({}, { additionalProperties: true }),
        response: {
          200: Type.Object({
            code: Type.Integer(),
            status: Type.Literal('true'),
            message: Type.String(),
            name: Type.String(),
            namespace: Type.String(),
            latest_version: Type.Integer({ minimum: 1 }),
            versions: Type.Array(
              Type.Object({
                version: Type.Integer({ minimum: 1 }),
                file_handle: Type.String(),
                last_modified: Type.String(),
              }),
            ),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { namespace, name } = request.params;
      const versions = await core.files.versions(request.principal!, namespace, name);
      const latest = versions[versions.length - 1]!;
      return {
        code: 200,
        status: 'true' as const,
        message: 'Successfully fetched file versions',
        name: latest.name,
        namespace: latest.namespace,
        latest_version: latest.latestVersion,
        versions: versions.map((v) => ({
          version: v.version,
          file_handle: v.assetId,
          last_modified: lastModified(v.createdAt),
        })),
      };
    },
  );
}
