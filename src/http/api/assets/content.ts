import { Type } from '@fastify/type-provider-typebox';
import contentDisposition from 'content-disposition';
import rangeParser from 'range-parser';
import type { Disposition } from '../../../core/assets.js';
import { isWharfError, WharfError } from '../../../core/errors.js';
import type { Asset } from '../../../core/model.js';
import { describedAs } from '../../openapi/components.js';
import { authenticate, presentedKey } from '../../plugins/auth.js';
import type { ApiContext, App } from '../context.js';
import { ErrorSchema, errorResponses, IdParams } from '../schemas.js';

/** How long a redirect to storage stays valid after a download with a key (which re-asks each time). */
const DIRECT_URL_SECONDS = 300;

/** A response body of raw bytes (documentation only: streams are never serialised). */
function binary(description: string) {
  return { description, content: { '*/*': { schema: { type: 'string', format: 'binary' } } } };
}

const ContentQuery = Type.Object(
  {
    expires: Type.Optional(Type.Integer({ minimum: 0 })),
    disposition: Type.Optional(Type.Union([Type.Literal('inline'), Type.Literal('attachment')])),
    signature: Type.Optional(Type.String({ maxLength: 128 })),
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

export function isInlineSafe(contentType: string): boolean {
  return INLINE_SAFE.test(contentType.split(';')[0]!.trim());
}

/** GET /v1/assets/:id/content — with a key, or with a signed URL's query parameters. */
export async function assetContentRoute(app: App, { core }: ApiContext): Promise<void> {
  app.get(
    '/v1/assets/:id/content',
    {
      config: { auth: 'optional' },
      schema: {
        operationId: 'downloadAsset',
        summary: 'Download the bytes (Range, ETag/If-None-Match supported)',
        description:
          'Authenticate with a key, or use the query parameters of a URL from POST /v1/assets/{id}/signed-url.',
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
          304: { description: 'Not modified: If-None-Match matched the ETag.', type: 'null' },
          ...errorResponses,
          416: describedAs(ErrorSchema, 'The Range cannot be satisfied (Content-Range: bytes */size).'),
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
      if (q.signature !== undefined || q.expires !== undefined) {
        if (q.signature === undefined || q.expires === undefined || q.disposition === undefined) {
          throw new WharfError('INVALID_SIGNATURE', 'A signed URL needs expires, disposition and signature.');
        }
        asset = await core.assets.redeem({
          assetId: id,
          expires: q.expires,
          disposition: q.disposition,
          signature: q.signature,
        });
        if (q.disposition === 'attachment') wanted = 'attachment';
        urlSeconds = Math.max(0, q.expires - Math.floor(core.clock.now() / 1000));
        reply.header('cache-control', `private, max-age=${urlSeconds}`);
      } else if (presentedKey(request) === undefined) {
        // No credentials: only a public asset answers; anything else reads as "key required",
        // so nobody learns which private ids exist.
        asset = await core.assets.getPublic(id).catch((err: unknown) => {
          throw isWharfError(err, 'NOT_FOUND')
            ? new WharfError('UNAUTHORIZED', 'An API key is required (x-api-key or Authorization: Bearer).')
            : err;
        });
        reply.header('cache-control', 'public, no-cache');
      } else {
        asset = await core.assets.get(await authenticate(core, request), id);
        reply.header('cache-control', 'private, no-cache');
      }

      const inline = wanted === 'inline' && isInlineSafe(asset.contentType);
      const disposition = contentDisposition(asset.name, { type: inline ? 'inline' : 'attachment' });
      // Storage that serves downloads itself gets the same type and disposition signed into
      // its URL; Range and conditional requests then go to it.
      const direct = await core.assets.directUrl(asset, {
        contentType: asset.contentType,
        disposition,
        expiresInSeconds: Math.max(1, urlSeconds ?? DIRECT_URL_SECONDS),
      });
      if (direct !== undefined) return reply.redirect(direct, 302);

      const etag = `"${asset.sha256}"`;
      reply
        .header('etag', etag)
        .header('accept-ranges', 'bytes')
        .header('content-type', asset.contentType)
        .header('content-disposition', disposition)
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', "default-src 'none'; sandbox")
        .header('cross-origin-resource-policy', 'same-site')
        .header('repr-digest', `sha-256=:${Buffer.from(asset.sha256, 'hex').toString('base64')}:`);

      const ifNoneMatch = request.headers['if-none-match'];
      if (ifNoneMatch?.split(',').some((t) => t.trim() === etag || t.trim() === '*')) {
        // No payload at all: Fastify's HEAD route (exposed from this GET) fails on a null one.
        return reply.status(304).send(undefined as never);
      }

      const rangeHeader = request.headers.range;
      const ifRange = request.headers['if-range'];
      if (rangeHeader && (ifRange === undefined || ifRange === etag)) {
        // RFC 9110 §14.1.3: a suffix longer than the file selects all of it (range-parser
        // drops such a range, which would make "bytes=-1000" of a small file a 416).
        const header = rangeHeader.replace(
          /(=|,)\s*-(\d+)\s*(?=,|$)/g,
          (spec, lead: string, suffix: string) =>
            asset.size > 0 && Number(suffix) > asset.size ? `${lead}0-` : spec,
        );
        const ranges = rangeParser(asset.size, header, { combine: true });
        // A unit other than bytes ("items=0-4") is not ours to interpret: the header is ignored.
        const bytesUnit = /^bytes=/i.test(rangeHeader);
        if (bytesUnit && ranges === -1) {
          reply.header('content-range', `bytes */${asset.size}`);
          throw new WharfError('RANGE_NOT_SATISFIABLE', `The file has ${asset.size} bytes.`);
        }
        // A malformed header or several ranges: answer with the whole file (RFC 9110 allows it).
        if (bytesUnit && ranges !== -1 && ranges !== -2 && ranges.length === 1) {
          const range = ranges[0]!;
          const stream = await core.assets.read(asset, range);
          return reply
            .status(206)
            .header('content-range', `bytes ${range.start}-${range.end}/${asset.size}`)
            .header('content-length', range.end - range.start + 1)
            .send(stream);
        }
      }
      if (asset.size === 0) return reply.header('content-length', 0).send('');
      const stream = await core.assets.read(asset);
      return reply.header('content-length', asset.size).send(stream);
    },
  );
}
