import { Readable } from 'node:stream';
import type { MultipartFile } from '@fastify/multipart';
import { Type } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { WharfError } from '../../../core/errors.js';
import type { App } from '../../api/context.js';
import type { CompatContext } from '../context.js';
import { contentTypeFor } from './content-types.js';
import { errorResponses } from './errors.js';
import { FileResultSchema, fileResult } from './responses.js';
import { FileParams } from './schemas.js';

interface Body {
  body: Readable;
  contentType: string | undefined;
  declaredSize?: number | undefined;
  beforeCommit?: () => Promise<void>;
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
      schema: {
        summary: 'Upload a file (the next version of this name in the namespace)',
        description:
          'multipart/form-data (the first file part, whatever its field name) or the raw bytes as the body. ' +
          'No body (or a form without a file) records an empty placeholder version. Basic auth with the key id ' +
          'as user and the key secret as password, or Authorization: Bearer <key>.',
        tags: ['file-service'],
        params: FileParams,
        // Nothing is read from the query; real clients may add their own parameters.
        querystring: Type.Object({}, { additionalProperties: true }),
        response: { 200: FileResultSchema, ...errorResponses },
      },
    },
    async (request) => {
      const principal = request.principal!;
      const { namespace, name } = request.params;
      const input = request.isMultipart()
        ? await formBody(request, name, core.uploads.maxFileSize(principal))
        : rawBody(request, name);
      let partError: unknown;
      input.body.once('error', (err) => {
        partError = err;
      });
      let outcome: Awaited<ReturnType<typeof core.files.put>>;
      try {
        outcome = await core.files.put(principal, { namespace, name, ...input });
      } catch (err) {
        // A form that breaks off inside the file part errors the part first, then the form.
        const bodyError = partError ?? input.body.errored;
        throw isParserError(bodyError) && isParserError(err) ? malformedForm(err) : err;
      }
      return fileResult(context, principal, 'Successfully uploaded file', outcome.version, outcome.asset);
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
  // One byte over the limit so the core, not busboy's silent truncation, reports it.
  const parts = request.parts({ limits: { fileSize: limit + 1 } })[Symbol.asyncIterator]();
  let part: MultipartFile | undefined;
  try {
    // Text fields are ignored; the first file part is the upload, whatever its field name.
    for (let next = await parts.next(); !next.done; next = await parts.next()) {
      if (next.value.type === 'file') {
        part = next.value;
        break;
      }
    }
  } catch (err) {
    throw isParserError(err) ? malformedForm(err) : err;
  }
  if (!part) return { body: Readable.from([]), contentType: contentTypeFor(name, undefined) };
  return {
    body: part.file,
    contentType: contentTypeFor(name, part.mimetype),
    // A second file would otherwise be dropped without a word: read the rest of the form
    // before the version is recorded, and refuse the request if another file comes.
    beforeCommit: async () => {
      try {
        for (let next = await parts.next(); !next.done; next = await parts.next()) {
          if (next.value.type === 'file') {
            next.value.file.resume();
            throw tooManyFiles();
          }
        }
      } catch (err) {
        if ((err as { code?: string } | null)?.code === 'FST_FILES_LIMIT') throw tooManyFiles();
        throw err;
      }
    },
  };
}

/**
 * busboy reports a broken form (no boundary, truncated data) with plain Errors that carry
 * neither a code nor a status: the client's fault, so 400 rather than 500.
 */
function isParserError(err: unknown): boolean {
  return err instanceof Error && !(err instanceof WharfError) && !('code' in err) && !('statusCode' in err);
}

function malformedForm(err: unknown): WharfError {
  return new WharfError('VALIDATION_FAILED', `The multipart body is malformed: ${(err as Error).message}`);
}

function tooManyFiles(): WharfError {
  return new WharfError('TOO_MANY_FILES', 'Send one file per request; this form has more.');
}
