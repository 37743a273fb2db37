import { Type } from 'typebox';
import type { Disposition } from '../../../core/assets.js';
import { isWharfError, WharfError } from '../../../core/errors.js';
import type { Asset } from '../../../core/model.js';
import { describedAs } from '../../openapi/components.js';
import { authenticate, presentedKey } from '../../plugins/auth.js';
import type { ApiContext, App } from '../context.js';
import { ErrorSchema, errorResponses, IdParams, STORAGE_DENIED_ANSWER } from '../schemas.js';
import { binary, dispositionHeader, sendStored, storedBytesHeaders } from './serve.js';
import { plainExpires } from './signed-urls.js';

/** How long a redirect to storage stays valid after a download with a key (which re-asks each time). */
const DIRECT_URL_SECONDS = 300;

const ContentQuery = Type.Object(
  {
    expires: Type.Optional(Type.Integer({ minimum: 0 })),
    disposition: Type.Optional(Type.Union([Type.Literal('inline'), Type.Literal('attachment')])),
    signature: Type.Optional(Type.String({ maxLength: 128 })),
    view: Type.Optional(
      Type.String({
        maxLength: 64,
        description: 'Part of a signed URL: the upload its signer saw the asset through.',
      }),
    ),
    signer: Type.Optional(
      Type.String({
        maxLength: 100,
        description:
          'Part of a signed URL: the key (and upload token) that signed it; the URL stops working once that is revoked.',
      }),
    ),
    download: Type.Optional(
      Type.Boolean({ description: 'Force a download (Content-Disposition: attachment).' }),
    ),
  },
  { additionalProperties: false },
);

// Types a browser renders without running anything of the file's own. Everything else
// (HTML, SVG, XML, JavaScript, unknown types) is served as an attachment, and every
// response is sandboxed, so uploaded content can never act with Wharf's origin.
const INLINE_SAFE =
  /^(image\/(png|jpeg|gif|webp|avif|bmp)|video\/[\w.+-]+|audio\/[\w.+-]+|text\/plain|application\/pdf)$/;

// A subtype ending in +xml makes any type an XML type (WHATWG MIME Sniffing), which a browser
// may render as a document (XHTML, SVG) whatever its top-level type: `video/x+xml` included.
const XML_SUFFIX = /\+xml$/i;

export function isInlineSafe(contentType: string): boolean {
  const essence = contentType.split(';')[0]!.trim();
  return INLINE_SAFE.test(essence) && !XML_SUFFIX.test(essence);
}

/** GET /v1/assets/:id/content — with a key, or with a signed URL's query parameters. */
export async function assetContentRoute(app: App, { core }: ApiContext): Promise<void> {
  app.get(
    '/v1/assets/:id/content',
    {
      // HEAD (Fastify's, from this GET) is documented: clients ask it for the size and type.
      config: {
        auth: 'optional',
        swagger: { exposeHeadRoute: true },
        documentedHeaders: storedBytesHeaders,
      },
      schema: {
        operationId: 'downloadAsset',
        summary: 'Download the bytes (Range and conditional requests supported)',
        description:
          'Authenticate with a key, or use the query parameters of a URL from POST /v1/assets/{id}/signed-url. ' +
          'ETag (the quoted SHA-256) and Last-Modified (the asset’s creation: its bytes never change) serve ' +
          'If-None-Match / If-Modified-Since (304), If-Match / If-Unmodified-Since (412) and If-Range.',
        tags: ['assets'],
        params: IdParams,
        querystring: ContentQuery,
        // A key, or none at all with a signed URL's query parameters.
        security: [{ apiKey: [] }, { bearer: [] }, {}],
        response: {
          200: binary('The bytes; Content-Type is the asset’s own.'),
          206: binary('The requested byte range (see Content-Range).'),
          302: {
            description: 'With S3 storage and WHARF_S3_DOWNLOADS=redirect: the bytes are at Location.',
            type: 'null',
          },
          304: {
            description:
              'Not modified: If-None-Match matched the ETag (or, without it, If-Modified-Since held).',
            type: 'null',
          },
          ...errorResponses,
          412: describedAs(
            ErrorSchema,
            'PRECONDITION_FAILED: If-Match names another ETag, or the bytes are newer than If-Unmodified-Since.',
          ),
          409: describedAs(
            ErrorSchema,
            'The bytes are still being verified (`ASSET_VERIFYING`); retry shortly.',
          ),
          416: describedAs(ErrorSchema, 'The Range cannot be satisfied (Content-Range: bytes */size).'),
          500: describedAs(
            ErrorSchema,
            `Storage no longer holds the recorded bytes (\`BYTES_MISSING\`): an operator must restore them. Or ${STORAGE_DENIED_ANSWER}`,
          ),
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const q = request.query;
      let asset: Asset;
      let wanted: Disposition = q.download ? 'attachment' : 'inline';
      // A signed URL's remaining life, which a redirect to storage must not outlive.
      let urlSeconds: number | undefined;
      // Cross-Origin-Resource-Policy: whether a page of another site may embed the bytes (an
      // <img>, <video> or <audio> loads them in no-cors mode, where browsers enforce it).
      let embeddable: boolean;
      if (q.signature !== undefined || q.expires !== undefined) {
        if (q.signature === undefined || q.expires === undefined || q.disposition === undefined) {
          throw new WharfError('INVALID_SIGNATURE', 'A signed URL needs expires, disposition and signature.');
        }
        // expires=0…, 900.0 or %2B… parse to the signed number: one signature, one URL.
        if (!plainExpires(request.url, q.expires)) {
          throw new WharfError('INVALID_SIGNATURE', 'The URL signature is not valid.');
        }
        asset = await core.assets.redeem({
          assetId: id,
          expires: q.expires,
          disposition: q.disposition,
          view: q.view,
          signer: q.signer,
          signature: q.signature,
        });
        if (q.disposition === 'attachment') wanted = 'attachment';
        urlSeconds = Math.max(0, q.expires - Math.floor(core.clock.now() / 1000));
        reply.header('cache-control', `private, max-age=${urlSeconds}`);
        // The credential is the URL itself: whoever holds it has the bytes anyway, and handing
        // it out is how bytes go to a page (of any site) without a key, as its renderings do.
        embeddable = true;
      } else if (request.principal !== null) {
        // Authenticated by the scope the route is mounted in (the web console's session).
        asset = await core.assets.get(request.principal, id);
        reply.header('cache-control', 'private, no-cache');
        // A cookie is ambient: the browser attaches it to any load from a page it allows, so
        // `same-site` keeps other sites' pages from pulling private bytes into their process
        // (with the cookie's SameSite=Strict, a second lock).
        embeddable = false;
      } else if (presentedKey(request) === undefined) {
        // No credentials: only a public asset answers; anything else reads as "key required",
        // so nobody learns which private ids exist.
        asset = await core.assets.getPublic(id).catch((err: unknown) => {
          throw isWharfError(err, 'NOT_FOUND')
            ? new WharfError('UNAUTHORIZED', 'An API key is required (x-api-key or Authorization: Bearer).')
            : err;
        });
        reply.header('cache-control', 'public, no-cache');
        // No credential at all: anyone may fetch it, so any page may embed it.
        embeddable = true;
      } else {
        const readable = await core.assets.getReadable(await authenticate(core, request), id);
        asset = readable.asset;
        if (readable.public) {
          // Another account's public asset: served as to anyone, the key unlocking nothing.
          reply.header('cache-control', 'public, no-cache');
          embeddable = true;
        } else {
          reply.header('cache-control', 'private, no-cache');
          // Bytes a key unlocked are the key holder's. A page reads them with fetch (CORS mode,
          // which CORP does not govern) and no embed can carry the header, so `same-site` costs a
          // client nothing; it keeps them out of other sites' pages should anything (an extension,
          // a proxy) ever attach the key to a no-cors load.
          embeddable = false;
        }
      }

      const inline = wanted === 'inline' && isInlineSafe(asset.contentType);
      const disposition = dispositionHeader(asset.name, inline ? 'inline' : 'attachment');
      // Storage that serves downloads itself gets the same type and disposition signed into
      // its URL; Range and conditional requests then go to it.
      const direct = await core.assets.directUrl(asset, {
        contentType: asset.contentType,
        disposition,
        expiresInSeconds: Math.max(1, urlSeconds ?? DIRECT_URL_SECONDS),
      });
      if (direct !== undefined) return reply.redirect(direct, 302);

      return sendStored(request, reply, {
        size: asset.size,
        sha256: asset.sha256,
        // An asset's bytes never change: they were last modified when it was created.
        createdAt: asset.createdAt,
        contentType: asset.contentType,
        disposition,
        read: (range) => core.assets.read(asset, range),
        resourcePolicy: embeddable ? 'cross-origin' : 'same-site',
      });
    },
  );
}
