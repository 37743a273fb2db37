import type { FastifyReply } from 'fastify';
import { type Static, Type } from 'typebox';
import { isWharfError, WharfError } from '../../../core/errors.js';
import { ImageService, type TransformRequest } from '../../../core/images.js';
import type { Asset, Derivative } from '../../../core/model.js';
import { EXTENSIONS, FITS, MAX_DPR, type OutputFormat } from '../../../core/transforms.js';
import { clientLeaving } from '../../client-left.js';
import { describedAs, named } from '../../openapi/components.js';
import { authenticate, presentedKey } from '../../plugins/auth.js';
import type { ApiContext, App } from '../context.js';
import {
  ErrorSchema,
  errorResponses,
  IdParams,
  iso,
  STORAGE_DENIED_ANSWER,
  UploadIdField,
} from '../schemas.js';
import { binary, dispositionHeader, sendStored, storedBytesHeaders } from './serve.js';
import { asSigned, refuseBothExpiries, requestedExpiry, signedImageUrl } from './signed-urls.js';

/** How long signed and public renderings may be cached (their bytes never change). */
const PUBLIC_MAX_AGE = 86_400;
const SIGNED_MAX_AGE = 365 * 86_400;
const KEYED_MAX_AGE = 3600;

/**
 * The caching of a request naming a preset, whose parameters an admin may replace: the same
 * URL then answers other bytes, so caches keep it but ask again each time (If-None-Match: a
 * 304 while the preset still names the same rendering). Signed URLs carry the preset's
 * parameters instead, and stay `immutable`.
 */
function presetCaching(scope: 'public' | 'private'): string {
  return `${scope}, no-cache`;
}

const TransformFields = {
  w: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 100_000,
      description: 'Width in CSS pixels; × dpr, rounded up to a multiple of 16, at most 4096.',
    }),
  ),
  h: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, description: 'Height, as `w`.' })),
  fit: Type.Optional(
    Type.Union(
      FITS.map((f) => Type.Literal(f)),
      {
        description:
          'With both w and h: `cover` crops to fill the box, `contain` letterboxes, `inside` (default) fits within it.',
      },
    ),
  ),
  format: Type.Optional(
    Type.Union(
      ['auto', 'webp', 'avif', 'jpeg', 'png'].map((f) => Type.Literal(f)),
      {
        description: '`auto` (default): AVIF, then WebP when Accept names them, else the original’s family.',
      },
    ),
  ),
  q: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 100, description: 'Quality; rounded to a multiple of 5.' }),
  ),
  dpr: Type.Optional(
    Type.Number({ minimum: 1, maximum: MAX_DPR, description: 'Device pixel ratio (1 to 3).' }),
  ),
  preset: Type.Optional(
    Type.String({
      pattern: '^[a-z0-9][a-z0-9_-]{0,63}$',
      description: 'A named preset of the account (with `dpr` only, no other parameter).',
    }),
  ),
};

const ImageQuery = Type.Object(
  {
    ...TransformFields,
    expires: Type.Optional(Type.Integer({ minimum: 0, description: 'Signed URLs: Unix time it expires.' })),
    signature: Type.Optional(Type.String({ maxLength: 128, description: 'Signed URLs: the signature.' })),
    view: Type.Optional(
      Type.String({
        maxLength: 64,
        description: 'Signed URLs: the upload its signer saw the asset through.',
      }),
    ),
    signer: Type.Optional(
      Type.String({
        maxLength: 100,
        description:
          'Signed URLs: the key (and upload token) that signed it; the URL stops working once that is revoked.',
      }),
    ),
  },
  { additionalProperties: false },
);

const ImageUrlBody = named(
  'ImageUrlRequest',
  Type.Object(
    {
      ...TransformFields,
      // Optional, with the default documented: Ajv fills in no default inside the body's union
      // with null, so the handler does.
      expires_in: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: 365 * 86_400,
          default: 86_400,
          description: 'Seconds the URL works (up to a year).',
        }),
      ),
      expires_at: Type.Optional(
        Type.String({
          format: 'date-time',
          description:
            'Instead of `expires_in` (not both): when the URL expires, taken to the second, in the future and ' +
            'up to a year ahead. The same moment gives the same URL every time, so renders of a page share ' +
            'it and caches work: round it, e.g. to the end of the current hour or day.',
        }),
      ),
      upload_id: UploadIdField,
    },
    { additionalProperties: false },
  ),
);

const ImageUrlSchema = named(
  'SignedImageUrl',
  Type.Object(
    {
      url: Type.String({ description: 'Works without a key until it expires; the parameters are signed.' }),
      expires_at: Type.String({ format: 'date-time' }),
      params: Type.Record(Type.String(), Type.Union([Type.String(), Type.Number()]), {
        description: 'The canonical parameters the URL carries (sizes rounded, dpr applied).',
      }),
    },
    { description: 'A signed transform URL.' },
  ),
);

const DerivativeSchema = named(
  'Derivative',
  Type.Object(
    {
      params: Type.String({ description: 'The canonical parameters (`w320-q80-webp`), or `preview`.' }),
      content_type: Type.String(),
      size: Type.Integer({ minimum: 0 }),
      sha256: Type.String(),
      created_at: Type.String({ format: 'date-time' }),
    },
    { description: 'A stored rendering of an asset.' },
  ),
);

const DerivativeListSchema = named(
  'DerivativeList',
  Type.Object({ data: Type.Array(DerivativeSchema) }, { description: 'The renderings stored for an asset.' }),
);

type TransformQuery = Partial<Record<keyof typeof TransformFields, unknown>>;

/** The request a query (or a signing body) names: parameters, or a preset with an optional dpr. */
export function transformRequest(query: TransformQuery): TransformRequest {
  if (query.preset !== undefined) {
    const others = (['w', 'h', 'fit', 'format', 'q'] as const).filter((k) => query[k] !== undefined);
    if (others.length > 0) {
      throw new WharfError(
        'VALIDATION_FAILED',
        `A preset takes no other parameter than dpr (got ${others.join(', ')}).`,
      );
    }
    return { kind: 'preset', name: String(query.preset), dpr: query.dpr as number | undefined };
  }
  return {
    kind: 'params',
    input: {
      w: query.w as number | undefined,
      h: query.h as number | undefined,
      fit: query.fit as (typeof FITS)[number] | undefined,
      format: query.format as 'auto' | OutputFormat | undefined,
      q: query.q as number | undefined,
      dpr: query.dpr as number | undefined,
    },
  };
}

/**
 * How the numbers of a transform query are written: plain decimals (dpr may have a fraction),
 * without leading zeros or a fraction's trailing ones, as a JavaScript number prints (what
 * Wharf's own signed and preset URLs write), so that `w=0300` and `dpr=2.0` are no other URLs
 * of `w=300` and `dpr=2`.
 */
const PLAIN_NUMBERS: Record<string, RegExp> = {
  w: /^(0|[1-9][0-9]*)$/,
  h: /^(0|[1-9][0-9]*)$/,
  q: /^(0|[1-9][0-9]*)$/,
  dpr: /^(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$/,
};

/**
 * Refuses a query number written any other way than that one. Every query takes plain
 * decimals only (src/http/validation.ts), but with leading zeros, and `dpr=2.0`: here those
 * would be one rendering under many URLs, each a cache entry of its own. Before the schema, so
 * `w=0x10` is refused with this message too.
 */
function refuseLooseNumbers(query: unknown): void {
  if (typeof query !== 'object' || query === null) return;
  for (const [name, plain] of Object.entries(PLAIN_NUMBERS)) {
    const value = (query as Record<string, unknown>)[name];
    if (value === undefined) continue;
    for (const text of Array.isArray(value) ? value : [value]) {
      if (typeof text !== 'string' || !plain.test(text)) {
        throw new WharfError(
          'VALIDATION_FAILED',
          `${name} must be written as a plain decimal number (e.g. ${{ dpr: '1.5', q: '80' }[name] ?? '320'}).`,
        );
      }
    }
  }
}

/** A rendering's file name: the asset's, with the rendering's extension. */
function renderingName(asset: Asset, derivative: Derivative): string {
  const format = (Object.keys(EXTENSIONS) as OutputFormat[]).find(
    (f) => `image/${f}` === derivative.contentType,
  );
  const base = asset.name.replace(/\.[^.]*$/, '') || 'image';
  return `${base}.${format ? EXTENSIONS[format] : 'img'}`;
}

/** Tells a client refused for load (or a preview not made yet) when to come back. */
function withRetryAfter(reply: FastifyReply, err: unknown): never {
  const retry = isWharfError(err) ? err.details?.retry_after : undefined;
  if (typeof retry === 'number') reply.header('retry-after', String(retry));
  throw err;
}

/** GET /v1/assets/:id/image, and the signing endpoint for keyless URLs to it. */
export async function assetImageRoutes(app: App, { core, publicUrl }: ApiContext): Promise<void> {
  app.get(
    '/v1/assets/:id/image',
    {
      // HEAD (Fastify's, from this GET) is documented: clients ask it for the size and type.
      config: {
        auth: 'optional',
        swagger: { exposeHeadRoute: true },
        documentedHeaders: storedBytesHeaders,
      },
      preValidation: async (request) => refuseLooseNumbers(request.query),
      schema: {
        operationId: 'getAssetImage',
        summary: 'A resized, re-encoded rendering of an image (or of a video’s poster, a PDF’s first page)',
        description:
          'Authenticate with a key, use a signed URL from POST /v1/assets/{id}/image-url, or none for a public asset. ' +
          'Made once and kept; Range and conditional requests work as for the content (Last-Modified is when the ' +
          'rendering was made). No EXIF (so no GPS) in any rendering.',
        tags: ['images'],
        params: IdParams,
        querystring: ImageQuery,
        security: [{ apiKey: [] }, { bearer: [] }, {}],
        response: {
          200: binary('The rendering (image/avif, image/webp, image/jpeg or image/png).'),
          206: binary('The requested byte range.'),
          304: {
            description:
              'Not modified: If-None-Match matched the ETag (or, without it, If-Modified-Since held).',
            type: 'null',
          },
          ...errorResponses,
          412: describedAs(
            ErrorSchema,
            'PRECONDITION_FAILED: If-Match names another ETag, or the rendering is newer than If-Unmodified-Since.',
          ),
          409: describedAs(ErrorSchema, 'PREVIEW_PENDING: processing has not made the preview yet.'),
          415: describedAs(ErrorSchema, 'UNSUPPORTED_IMAGE: not an image Wharf transforms.'),
          416: describedAs(ErrorSchema, 'The Range cannot be satisfied.'),
          422: describedAs(
            ErrorSchema,
            'IMAGE_UNDECODABLE, IMAGE_TOO_LARGE, TOO_MANY_VARIANTS or PREVIEW_UNAVAILABLE.',
          ),
          500: describedAs(
            ErrorSchema,
            `Storage no longer holds the asset’s recorded bytes (\`BYTES_MISSING\`): an operator must restore them. Or ${STORAGE_DENIED_ANSWER}`,
          ),
          503: describedAs(
            ErrorSchema,
            'TRANSFORMS_BUSY or TRANSFORM_TIMEOUT, or the database or storage is unreachable (SERVICE_UNAVAILABLE); see Retry-After.',
          ),
          // A GET that writes: a new rendering is stored before it is served.
          507: describedAs(ErrorSchema, 'STORAGE_FULL: no room left to store a new rendering.'),
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const { expires, signature, view, signer, ...params } = request.query;
      const transform = transformRequest(params);
      let asset: Asset;
      let cacheControl: string;
      let embeddable = true;
      // No key, session or signature: a public asset's visitor, who may make only part of
      // its renderings (see publicVariants in core/images.ts).
      let keyless = false;
      if (signature !== undefined || expires !== undefined) {
        if (signature === undefined || expires === undefined) {
          throw new WharfError('INVALID_SIGNATURE', 'A signed URL needs expires and signature.');
        }
        // The signature covers the canonical parameters; only the URL that was handed out
        // (those parameters, as written) is taken, so one signature names one URL, one cache key.
        if (!asSigned(request.url, id, ImageService.subject(transform), expires)) {
          throw new WharfError('INVALID_SIGNATURE', 'The URL signature is not valid.');
        }
        asset = await core.images.redeem({
          assetId: id,
          request: transform,
          expires,
          view,
          signer,
          signature,
        });
        const left = Math.max(0, expires - Math.floor(core.clock.now() / 1000));
        // A URL signed with a preset's name (as they were before they carried its parameters)
        // follows the preset.
        cacheControl =
          transform.kind === 'preset'
            ? presetCaching('public')
            : `public, max-age=${Math.min(left, SIGNED_MAX_AGE)}, immutable`;
      } else if (request.principal !== null) {
        // Authenticated by the scope the route is mounted in (the web console's session).
        asset = await core.assets.get(request.principal, id);
        cacheControl = 'private, no-cache';
        embeddable = false;
      } else if (presentedKey(request) === undefined) {
        // No credentials: only a public asset answers, as for its content.
        asset = await core.assets.getPublic(id).catch((err: unknown) => {
          throw isWharfError(err, 'NOT_FOUND')
            ? new WharfError('UNAUTHORIZED', 'An API key is required (x-api-key or Authorization: Bearer).')
            : err;
        });
        keyless = true;
        cacheControl = publicCaching(transform);
      } else {
        const readable = await core.assets.getReadable(await authenticate(core, request), id);
        asset = readable.asset;
        if (readable.public) {
          // Another account's public image: rendered as for anyone, within the public share of
          // its renderings (a key of another account is no visitor's way past that cap).
          keyless = true;
          cacheControl = publicCaching(transform);
        } else {
          cacheControl =
            transform.kind === 'preset' ? presetCaching('private') : `private, max-age=${KEYED_MAX_AGE}`;
          embeddable = false;
        }
      }
      const serve = async () => {
        const rendered = await core.images
          .render(asset, transform, request.headers.accept, {
            keyless,
            signal: clientLeaving(request, reply),
          })
          .catch((err: unknown) => withRetryAfter(reply, err));
        reply.header('cache-control', cacheControl);
        // Added to what is there: the CORS hook's `Vary: Origin` (its Access-Control-Allow-Origin
        // names the page's origin) must stay, or a cache hands one origin's answer to another,
        // and a browser's cached plain <img> fails a later crossorigin load of the same URL.
        if (rendered.negotiated) appendVary(reply, 'Accept');
        const { derivative } = rendered;
        return sendStored(request, reply, {
          size: derivative.size,
          sha256: derivative.sha256,
          // The rendering's own time: one made again (after it vanished) is a new representation.
          createdAt: derivative.createdAt,
          contentType: derivative.contentType,
          disposition: dispositionHeader(renderingName(asset, derivative), 'inline'),
          read: (range) => core.images.read(derivative, range),
          resourcePolicy: embeddable ? 'cross-origin' : 'same-site',
        });
      };
      // An error answer (412, 416, storage failing) is not the rendering: the rendering's
      // caching would let a shared cache keep it for as long (RFC 9111 §3), a year for a 412.
      const answer = () =>
        serve().catch((err: unknown) => {
          reply.removeHeader('cache-control');
          throw err;
        });
      return answer().catch((err: unknown) => {
        // The stored rendering had vanished and is forgotten now: rendered again, once.
        if (isWharfError(err, 'BYTES_MISSING')) return answer();
        throw err;
      });
    },
  );

  app.post(
    '/v1/assets/:id/image-url',
    {
      preValidation: async (request) => refuseBothExpiries(request.body),
      schema: {
        operationId: 'signAssetImageUrl',
        summary: 'A signed transform URL that works without a key (for <img> tags and CDNs)',
        tags: ['images'],
        params: IdParams,
        // No body, or a JSON null, is the defaults, as for signed-url (see there).
        body: Type.Union([ImageUrlBody, Type.Null()]),
        response: { 200: ImageUrlSchema, ...errorResponses },
      },
    },
    async (request) => {
      const body = (request.body ?? { expires_in: 86_400 }) as Static<typeof ImageUrlBody>;
      const { expires_in, expires_at, upload_id, ...params } = body;
      const { grant, transform } = await core.images.grant(
        request.principal!,
        request.params.id,
        transformRequest(params),
        requestedExpiry({ expires_in: expires_in ?? 86_400, expires_at }),
        upload_id,
      );
      return {
        url: signedImageUrl(publicUrl, grant),
        expires_at: iso(grant.expires * 1000),
        params: { ...transform },
      };
    },
  );

  app.get(
    '/v1/assets/:id/derivatives',
    {
      schema: {
        operationId: 'listAssetDerivatives',
        summary: 'The renderings stored for an asset',
        tags: ['images'],
        params: IdParams,
        response: { 200: DerivativeListSchema, ...errorResponses },
      },
    },
    async (request) => {
      const derivatives = await core.images.list(request.principal!, request.params.id);
      return {
        data: derivatives.map((d) => ({
          params: d.paramsKey,
          content_type: d.contentType,
          size: d.size,
          sha256: d.sha256,
          created_at: iso(d.createdAt),
        })),
      };
    },
  );
}

/** Adds `field` to the reply's Vary header, keeping the fields already named there. */
function appendVary(reply: FastifyReply, field: string): void {
  const current = reply.getHeader('vary');
  const fields = (Array.isArray(current) ? current.join(',') : String(current ?? ''))
    .split(',')
    .map((f) => f.trim())
    .filter((f) => f !== '');
  if (fields.includes('*') || fields.some((f) => f.toLowerCase() === field.toLowerCase())) return;
  reply.header('vary', [...fields, field].join(', '));
}

/** How a rendering served to anyone (a public image's) may be cached: a preset's may change. */
function publicCaching(transform: { kind: string }): string {
  return transform.kind === 'preset'
    ? presetCaching('public')
    : `public, max-age=${PUBLIC_MAX_AGE}, immutable`;
}
