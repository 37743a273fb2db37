import cors, { type FastifyCorsOptions } from '@fastify/cors';
import type { FastifyInstance, FastifyRequest } from 'fastify';

/**
 * Whether a page of `origin` may call Wharf from a browser, given WHARF_CORS_ORIGINS. A request
 * without an Origin header is not a cross-origin browser request and gets no CORS headers.
 * The tus server sets CORS headers of its own and must ask this too (its default allows any).
 */
export function corsAllows(allowed: readonly string[], origin: string | undefined): boolean {
  if (origin === undefined || origin === '') return false;
  return allowed.includes('*') || allowed.includes(origin);
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];

/**
 * Response headers a page may read (beyond the safelisted Content-Type, Content-Length,
 * Last-Modified, Cache-Control…). Without ETag a browser's multipart upload cannot name
 * its parts at completion (Uppy then waits at 100% for ever); Location is where tus (and
 * Resumable Uploads for HTTP) put a new upload.
 */
export const EXPOSED_HEADERS = [
  'ETag',
  'Location',
  // Downloads: where a 206's slice sits and the file's size (Content-Range), whether ranges
  // are served at all (Accept-Ranges, which pdf.js and media loaders check before asking),
  // and the file's name for a save dialog (Content-Disposition).
  'Content-Range',
  'Accept-Ranges',
  'Content-Disposition',
  // How long to wait after 429 TOO_MANY_OPEN_UPLOADS or a 503 before trying again.
  'Retry-After',
  // A creating request sent again with its Idempotency-Key, answered with the first answer.
  'Idempotent-Replayed',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Metadata',
  'Upload-Expires',
  'Tus-Resumable',
  'Tus-Version',
  'Tus-Extension',
  'Tus-Max-Size',
  'Tus-Checksum-Algorithm',
  'Wharf-Asset-Id',
  'Wharf-Upload-Result',
  'X-Request-Id',
  // Resumable Uploads for HTTP: what a page needs to resume (and to check the file).
  // Upload-Incomplete is interop version 3's spelling of the state; Accept-Patch is the
  // append type discovery (OPTIONS) names.
  'Upload-Complete',
  'Upload-Incomplete',
  'Upload-Limit',
  'Accept-Patch',
  'Upload-Draft-Interop-Version',
  'Repr-Digest',
];

/**
 * Browsers cache a preflight for this long (Chromium caps it at two hours). Short, so that an
 * origin removed from WHARF_CORS_ORIGINS stops working soon; presigned URLs differ per
 * request anyway, so their preflights are never reused.
 */
const PREFLIGHT_MAX_AGE_SECONDS = 600;

// RFC 9110 field names: a token.
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

/**
 * An allowed origin may send whatever headers its preflight asks for: the page is trusted,
 * and what a request may do is decided by its credentials, never by its headers. Clients add
 * their own (Rails' DirectUpload always sends X-Requested-With; S3 clients x-amz-*), and a
 * fixed list refused them. Only well-formed names are answered.
 */
function allowedRequestHeaders(request: FastifyRequest): string[] | undefined {
  const requested = request.headers['access-control-request-headers'];
  if (typeof requested !== 'string') return undefined;
  return requested
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => FIELD_NAME.test(name));
}

/**
 * CORS for every route (native API, storage endpoint, tus) and its preflights. With no
 * origins configured nothing is registered: Wharf answers same-origin pages only, and an
 * OPTIONS request is an unknown route as before.
 */
export async function registerCors(app: FastifyInstance, allowed: readonly string[]): Promise<void> {
  if (allowed.length === 0) return;
  const any = allowed.includes('*');
  await app.register(cors, {
    delegator: (
      request: FastifyRequest,
      callback: (error: Error | null, options: FastifyCorsOptions) => void,
    ) => {
      const origin = request.headers.origin;
      if (!corsAllows(allowed, origin)) {
        // No headers at all, and a preflight falls through to "not found".
        callback(null, { origin: false });
        return;
      }
      const headers = allowedRequestHeaders(request);
      callback(null, {
        origin: any ? '*' : origin,
        methods: METHODS,
        // Only an OPTIONS that asks for a method is a preflight; any other is the route's own
        // (tus discovery answers Tus-Version and Tus-Extension), with the CORS headers added.
        preflight: request.headers['access-control-request-method'] !== undefined,
        // Left unset (a preflight that asks for no headers) the plugin's default applies;
        // undefined would override it.
        ...(headers && { allowedHeaders: headers }),
        exposedHeaders: EXPOSED_HEADERS,
        maxAge: PREFLIGHT_MAX_AGE_SECONDS,
      });
    },
  });
}
