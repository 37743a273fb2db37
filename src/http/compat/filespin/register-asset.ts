import { Type } from 'typebox';
import type { App } from '../../api/context.js';
import type { CompatContext } from '../context.js';
import { FileSpinErrorSchema, fileSpinErrorResponses } from './errors.js';

const Timestamp = Type.String({ maxLength: 64, description: 'ISO 8601, e.g. 2024-05-15T15:43:02Z.' });

// Extra fields are accepted: uploaders (File Picker, Teleport) send more than the document lists.
const RegisterBody = Type.Object({
  asset_id: Type.String({ minLength: 1, maxLength: 128 }),
  size: Type.Integer({ minimum: 0, description: 'Size in bytes of the uploaded file.' }),
  checksum: Type.String({ pattern: '^[0-9a-fA-F]{32}$', description: 'Hex MD5 of the uploaded file.' }),
  upload_time: Type.Optional(Timestamp),
  upload_started_at: Type.Optional(Timestamp),
  upload_completed_at: Type.Optional(Timestamp),
  service_data: Type.Optional(
    Type.Record(Type.String(), Type.Unknown(), { description: 'Free-form data about the uploader.' }),
  ),
});

const RegisterResponse = Type.Object({
  asset_id: Type.String(),
  status: Type.Union([Type.Literal('processing'), Type.Literal('registered')], {
    description: '"processing" while the asset is being processed; "registered" once processing has run.',
  }),
  name: Type.String(),
  content_type: Type.String(),
  size: Type.Integer(),
  checksum: Type.String({ description: 'Hex MD5 of the stored bytes.' }),
  sha256: Type.String({ description: 'Hex SHA-256 of the stored bytes.' }),
  upload_time: Type.Optional(Type.String()),
  upload_started_at: Type.Optional(Type.String()),
  upload_completed_at: Type.Optional(Type.String()),
  service_data: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  duplicate: Type.Boolean({
    description: 'The account already held these bytes: wharf_asset_id is that existing asset.',
  }),
  wharf_asset_id: Type.String({ description: 'The asset in the native API (GET /v1/assets/{id}).' }),
});

/** POST /api/v1/assets/new/register_asset: verifies the uploaded bytes and makes them an asset. */
export async function registerAssetRoute(app: App, { core }: CompatContext): Promise<void> {
  app.post(
    '/api/v1/assets/new/register_asset',
    {
      bodyLimit: 64 * 1024,
      schema: {
        operationId: 'filespinRegisterAsset',
        summary: 'Register an uploaded file as an asset (checks size and MD5, queues processing)',
        description:
          'Step 3 of 3, after the file was POSTed to the storage URL. A size or checksum that does not ' +
          'match the stored bytes is refused and those bytes are discarded (POST the form again).',
        tags: ['FileSpin'],
        body: RegisterBody,
        // 415: a body in a Content-Encoding, which Wharf does not decode (see file-bodies.ts).
        response: { 200: RegisterResponse, ...fileSpinErrorResponses, 415: FileSpinErrorSchema },
      },
    },
    async (request) => {
      const body = request.body;
      const principal = request.principal!;
      const upload = await core.uploads.getByExternalId(principal, body.asset_id);
      const outcome = await core.uploads.complete(principal, upload.id, {
        size: body.size,
        md5: body.checksum.toLowerCase(),
        // What the uploader reported stays with the asset (visible in the native API too).
        metadata: {
          filespin: {
            upload_time: body.upload_time,
            upload_started_at: body.upload_started_at,
            upload_completed_at: body.upload_completed_at,
            service_data: body.service_data,
          },
        },
      });
      const { asset } = outcome;
      return {
        asset_id: body.asset_id,
        status: asset.processing === 'pending' ? ('processing' as const) : ('registered' as const),
        name: asset.name,
        content_type: asset.contentType,
        size: asset.size,
        checksum: asset.md5,
        sha256: asset.sha256,
        upload_time: body.upload_time,
        upload_started_at: body.upload_started_at,
        upload_completed_at: body.upload_completed_at,
        service_data: body.service_data,
        duplicate: outcome.deduplicated,
        wharf_asset_id: asset.id,
      };
    },
  );
}
