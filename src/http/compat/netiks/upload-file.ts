import { WharfError } from '../../../core/errors.js';
import type { UploadOutcome } from '../../../core/upload-types.js';
import type { App } from '../../api/context.js';
import type { CompatContext } from '../context.js';
import { type Confirmation, ConfirmBody, confirmUpload } from './confirm-upload.js';
import { uploadForm } from './direct-upload.js';
import { netiksUploadErrors } from './errors.js';
import { netiksAsset, UploadedSchema } from './responses.js';

// The document uses the slash for the direct upload and omits it for the confirm call;
// clients may well use either for both.
const PATHS = ['/api/v1/assets/developer-upload-file/', '/api/v1/assets/developer-upload-file'];

// Documentation of the form (the form itself is streamed, never validated as a whole). No
// `type`: a form leaves the body unparsed, and that must pass.
const FormBody = {
  description: 'The file in field `file`.',
  properties: { file: { type: 'string', format: 'binary' } },
  required: ['file'],
};

/**
 * One path, two requests told apart by Content-Type: multipart/form-data uploads the file
 * through Wharf; application/json confirms a file already PUT to its presigned URL.
 */
export async function uploadFileRoutes(app: App, { core }: CompatContext): Promise<void> {
  for (const url of PATHS) {
    app.post(
      url,
      {
        config: { fileBody: true },
        schema: {
          operationId: url.endsWith('/') ? 'netiksUploadFile' : 'netiksUploadFileWithoutSlash',
          summary: 'Upload a single file (multipart) or confirm a presigned upload (JSON)',
          description:
            'multipart/form-data with the file in field `file`: the bytes are stored and an asset returned. ' +
            'application/json with `is_presigned: true` and the `storage_url`, `file_name`, `s3_path` and ' +
            '`content_type` the presigned-URL response gave: the PUT bytes become an asset. 201 either way.',
          tags: ['netiks'],
          security: [{ apiKey: [] }],
          body: {
            content: {
              'multipart/form-data': { schema: FormBody },
              'application/json': { schema: ConfirmBody },
            },
          },
          response: { 201: UploadedSchema, ...netiksUploadErrors },
        },
      },
      async (request, reply) => {
        const principal = request.principal!;
        let outcome: UploadOutcome;
        if (request.isMultipart()) {
          outcome = await uploadForm(core, principal, request);
        } else if (request.body === undefined || request.body === null) {
          // No body and no Content-Type: nothing for either request to work with.
          throw new WharfError(
            'VALIDATION_FAILED',
            'Send the file as multipart/form-data (field "file"), or a JSON confirmation of a presigned upload.',
          );
        } else {
          outcome = await confirmUpload(core, principal, request.body as Confirmation);
        }
        reply.status(201);
        return { message: message(outcome), asset: netiksAsset(outcome.asset, outcome.through) };
      },
    );
  }
}

function message(outcome: UploadOutcome): string {
  return outcome.deduplicated
    ? 'This file is already in your account; the existing asset is returned.'
    : 'File uploaded successfully.';
}
