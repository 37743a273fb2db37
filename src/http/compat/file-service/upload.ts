import { Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { App } from '../../api/context.js';
import { type Declared, declaredDigests, headerDigests, trailerDigests } from '../../api/integrity.js';
import { firstFilePart, partFailure, refuseMoreFiles } from '../../multipart-form.js';
import { contentTypeFor } from '../content-types.js';
import type { CompatContext } from '../context.js';
import { uploadErrorResponses } from './errors.js';
import { FileResultSchema, fileResult } from './responses.js';
import { FileParams } from './schemas.js';

interface Body {
  body: Readable;
  contentType: string | undefined;
  declaredSize?: number | undefined;
  /** The file's own declared digests (a raw body's headers). */
  expected?: Declared;
  /** What the raw body's digest trailers declare (see trailerDigests). */
  trailing?: () => Declared;
  beforeCommit?: () => Promise<void>;
  explain?: (err: unknown) => unknown;
}

/**
 * POST /api_gateway/file-service/{namespace}/{name}: the body is the file, sent as a form
 * (`curl -F file=@…`, any field name) or raw (`--data-binary @…`). No body at all makes a
 * placeholder, an empty version, as the document describes. Every upload of a name is its
 * next version.
 */
export async function uploadRoute(app: App, context: CompatContext): Promise<void> {
  const { core } = context;
  app.post(
    '/:namespace/:name',
    {
      config: { fileBody: true },
      schema: {
        operationId: 'fileServiceUpload',
        summary: 'Upload a file (the next version of this name in the namespace)',
        description:
          'multipart/form-data (the first file part, whatever its field name) or the raw bytes as the body. ' +
          'No body (or a form without a file) records an empty placeholder version. Basic auth with the key id ' +
          'as user and the key secret as password, or Authorization: Bearer <key>. Optional integrity, as for ' +
          'POST /v1/assets: `Content-MD5`, `Content-Digest`/`Repr-Digest: sha-256=:…:` of the request body (the ' +
          'file when raw, the whole form when multipart); a mismatch is 400 CHECKSUM_MISMATCH and records no version.',
        tags: ['file-service'],
        params: FileParams,
        // Nothing is read from the query; real clients may add their own parameters.
        querystring: Type.Object({}, { additionalProperties: true }),
        response: { 200: FileResultSchema, ...uploadErrorResponses },
      },
    },
    async (request) => {
      const principal = request.principal!;
      const { namespace, name } = request.params;
      // The document declares no digests, but an HTTP client may send the standard headers:
      // they are checked, never ignored. They cover the request body (RFC 1864, RFC 9530): the
      // file when it is raw, the whole form when it is one. (The query is the client's own, so
      // it is not read.)
      const input = request.isMultipart()
        ? await formBody(request, name, core.uploads.maxFileSize(principal))
        : {
            ...rawBody(request, name),
            expected: declaredDigests(request.headers, {}),
            trailing: trailerDigests(request),
          };
      const outcome = await core.files.put(principal, { namespace, name, ...input });
      return fileResult(
        context,
        principal,
        'Successfully uploaded file',
        outcome.version,
        outcome.asset,
        outcome.through,
      );
    },
  );
}

function rawBody(request: FastifyRequest, name: string): Body {
  const length = request.headers['content-length'];
  return {
    body: request.raw,
    contentType: contentTypeFor(name, request.headers['content-type']),
    declaredSize: length === undefined ? undefined : Number(length),
  };
}

async function formBody(request: FastifyRequest, name: string, limit: number): Promise<Body> {
  // Text fields are ignored; the first file part is the upload, whatever its field name.
  const { part, rest, checkForm } = await firstFilePart(request, limit, headerDigests(request.headers));
  if (!part) {
    // The form was read to its end looking for a file: its digests can be checked already.
    return { body: Readable.from([]), contentType: contentTypeFor(name, undefined), beforeCommit: checkForm };
  }
  return {
    body: part.file,
    contentType: contentTypeFor(name, part.mimetype),
    beforeCommit: async () => {
      await refuseMoreFiles(rest);
      await checkForm();
    },
    explain: partFailure(part.file),
  };
}
