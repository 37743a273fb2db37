import { Type } from 'typebox';
import { WharfError } from '../../../core/errors.js';
import type { App } from '../../api/context.js';
import type { CompatContext } from '../context.js';
import { netiksUploadErrors } from './errors.js';

/** The document: a "secure, 15 minutes limited link". */
const PRESIGNED_URL_SECONDS = 15 * 60;

const GenerateBody = Type.Object({
  files: Type.Array(
    Type.Object({
      name: Type.String({ maxLength: 1024 }),
      type: Type.Optional(
        Type.String({
          maxLength: 255,
          description: 'The Content-Type the PUT will send; default application/octet-stream.',
        }),
      ),
      size: Type.Integer({
        minimum: 0,
        description: 'Exact size in bytes; the PUT must send exactly this many.',
      }),
    }),
    { minItems: 1 },
  ),
});

const PresignedUrlsSchema = Type.Object({
  presigned_urls: Type.Array(
    Type.Object({
      file_name: Type.String(),
      presigned_url: Type.String({
        description: 'PUT the bytes here with exactly `content_type` as Content-Type.',
      }),
      storage_url: Type.String({ description: 'The storage path (same as `s3_path`).' }),
      s3_path: Type.String({ description: 'Send back with the confirm request.' }),
      content_type: Type.String(),
    }),
  ),
});

const PATHS = [
  '/api/v1/assets/developer-generate-presigned-url/',
  '/api/v1/assets/developer-generate-presigned-url',
];

/** Step one of the bulk upload: one presigned PUT per file, valid 15 minutes. */
export async function presignedUrlRoutes(app: App, { core }: CompatContext): Promise<void> {
  for (const url of PATHS) {
    app.post(
      url,
      {
        schema: {
          operationId: url.endsWith('/')
            ? 'netiksGeneratePresignedUrls'
            : 'netiksGeneratePresignedUrlsWithoutSlash',
          summary: 'Generate presigned URLs (bulk upload, step 1)',
          description:
            'One presigned PUT URL per file, valid 15 minutes. PUT the bytes with the returned `content_type` ' +
            'as Content-Type, then confirm with POST /api/v1/assets/developer-upload-file.',
          tags: ['netiks'],
          security: [{ apiKey: [] }],
          body: GenerateBody,
          response: { 200: PresignedUrlsSchema, ...netiksUploadErrors },
        },
      },
      async (request) => {
        const results = await core.uploads.createPresigned(
          request.principal!,
          request.body.files.map((file) => ({ name: file.name, contentType: file.type, size: file.size })),
          // The document's PUT sends Content-Type and nothing else. The request is a list, even
          // of one file: a refusal names the file's index in it.
          { expiresInSeconds: PRESIGNED_URL_SECONDS, contentTypeOnly: true, batch: true },
        );
        return {
          presigned_urls: results.map((result) => {
            // Only declared SHA-256s are deduplicated up front, and this API declares none.
            if (result.status !== 'pending') throw new WharfError('INTERNAL', 'Unexpected existing asset.');
            const { upload, request: put } = result;
            return {
              file_name: upload.name,
              presigned_url: put.url,
              storage_url: upload.storageKey,
              s3_path: upload.storageKey,
              // What the URL is signed for (the client's own spelling of the type it declared):
              // the document's PUT sends this back as Content-Type, and storage compares the
              // signed text exactly, so Wharf's normalized `image/jpeg` for `image/JPEG` fails.
              content_type: put.headers['Content-Type'] ?? upload.contentType,
            };
          }),
        };
      },
    );
  }
}
