import { Type } from 'typebox';
import { WharfError } from '../../../core/errors.js';
import { signedDownloadUrl } from '../../api/assets/signed-urls.js';
import type { App } from '../../api/context.js';
import type { CompatContext } from '../context.js';
import { asNotFound } from './errors.js';
import { blobRecord, holderOf, resolveBlob, verifyBlob } from './records.js';
import {
  ErrorResponse,
  errorResponses,
  FileUploadResponse,
  SignedId,
  SignedIdParams,
  TAG,
} from './schemas.js';

/** Rails' ActiveStorage.service_urls_expire_in: how long the URL a redirect hands out lives. */
const REDIRECT_URL_SECONDS = 300;

/** Reading blobs by their signed id: the record (with a key), and Rails' public redirect URL. */
export async function blobRoutes(app: App, { core, publicUrl }: CompatContext): Promise<void> {
  app.get(
    '/api/v1/upload/blobs/:signed_id',
    {
      schema: {
        operationId: 'activeStorageGetBlob',
        summary: 'The file record a signed_id names',
        description:
          'Needs a key of the account the record belongs to. An upload whose bytes have arrived is completed here.',
        tags: [TAG],
        params: SignedIdParams,
        response: { 200: FileUploadResponse, ...errorResponses },
      },
    },
    async (request) => {
      const principal = request.principal!;
      const ref = (() => {
        try {
          return verifyBlob(core, request.params.signed_id);
        } catch (err) {
          return asNotFound(err);
        }
      })();
      return blobRecord(core, await resolveBlob(core, ref, principal));
    },
  );

  app.get(
    '/rails/active_storage/blobs/redirect/:signed_id/:filename',
    {
      config: { auth: 'none' },
      schema: {
        operationId: 'activeStorageRedirectToBlob',
        summary:
          'Redirect to a short-lived signed download URL of the blob (no key: the signed_id is the credential)',
        tags: [TAG],
        security: [],
        params: Type.Object({ signed_id: SignedId, filename: Type.String() }),
        querystring: Type.Object({
          disposition: Type.Optional(Type.Union([Type.Literal('inline'), Type.Literal('attachment')])),
        }),
        response: {
          302: { description: 'The bytes are at Location (valid for five minutes).', type: 'null' },
          403: ErrorResponse,
          404: ErrorResponse,
          410: ErrorResponse,
          422: errorResponses[422],
          500: ErrorResponse,
        },
      },
    },
    async (request, reply) => {
      const ref = (() => {
        try {
          return verifyBlob(core, request.params.signed_id);
        } catch (err) {
          return asNotFound(err);
        }
      })();
      // The signed_id is the credential, and a disabled account's credentials stop (as its
      // signed URLs do): checked before the blob is resolved, since resolving completes an
      // upload whose bytes have arrived (events, webhooks) on the account's behalf.
      await core.assets.requireKeylessAccount(ref.accountId);
      const holder = holderOf(ref.accountId);
      const blob = await resolveBlob(core, ref, holder);
      if (!blob.asset) throw new WharfError('NOT_FOUND', 'The file of this blob has not been uploaded yet.');
      // Shown as the blob's own upload declared it (its filename), not as the asset's first
      // uploader named it: the blob record says `filename` is the upload's.
      const grant = await core.assets.grantDownload(
        holder,
        blob.asset.id,
        REDIRECT_URL_SECONDS,
        request.query.disposition ?? 'inline',
        blob.upload,
      );
      reply.header('cache-control', `max-age=${REDIRECT_URL_SECONDS}, private`);
      return reply.redirect(signedDownloadUrl(publicUrl, grant), 302);
    },
  );
}
