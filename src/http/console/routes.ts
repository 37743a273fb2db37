import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { WharfError } from '../../core/errors.js';
import type { ActiveSession } from '../../core/sessions.js';
import { assetContentRoute } from '../api/assets/content.js';
import { assetImageRoutes } from '../api/assets/image.js';
import { assetReadRoutes } from '../api/assets/read.js';
import type { ApiContext, App } from '../api/context.js';
import { eventRoutes } from '../api/events.js';
import { keyRoutes } from '../api/keys.js';
import { listingRoutes } from '../api/listings.js';
import { errorResponses, iso } from '../api/schemas.js';
import { tokenJson, tokenRoutes, UploadTokenSchema } from '../api/tokens.js';
import { cancelUploadRoute } from '../api/uploads/routes.js';
import { webhookRoutes } from '../api/webhooks.js';
import { readEmptyJsonAsNoBody } from '../json-depth.js';
import type { ConsoleBundle } from './bundle.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set on the console's API routes: the session the cookie names. */
    consoleSession: { id: string; active: ActiveSession } | null;
  }
}

export interface ConsoleOptions extends ApiContext {
  /** The built front end; without it only the console's API is served (and `/` is not redirected). */
  bundle: ConsoleBundle | undefined;
}

export const SESSION_COOKIE = 'wharf_console';
/**
 * The session cookie when WHARF_PUBLIC_URL is https. Browsers accept a `__Host-` cookie only
 * from this very host (no Domain), Secure and with Path=/, so a page of a sibling host (a
 * user-content or marketing subdomain) cannot set one that shadows it; a plain `wharf_console`
 * it plants is not even read. Path=/ sends it to every path of the host, but only the console's
 * API reads it.
 */
export const SECURE_SESSION_COOKIE = '__Host-wharf_console';
/** Over plain http (no `__Host-` possible) the cookie goes to the console's paths only. */
const PLAIN_COOKIE_PATH = '/console';
const CSRF_HEADER = 'x-csrf-token';
/** How long the upload token the console mints for its own page works at most. */
const UPLOAD_TOKEN_SECONDS = 3600;

/**
 * The page may load scripts, styles, images and media from Wharf's own origin only, and nothing
 * inline; blob: images are the thumbnails Uppy's Dashboard makes of files about to be uploaded,
 * data: images the icons its style sheet embeds (an image never runs script, whatever its type).
 * It may not be framed, load plugins, post forms elsewhere or set a base.
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "media-src 'self'",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

function securityHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', CONSOLE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
    .header('cross-origin-opener-policy', 'same-origin')
    .header('cross-origin-resource-policy', 'same-origin');
}

const SessionSchema = Type.Object(
  {
    account: Type.Object({ id: Type.String(), name: Type.String() }),
    key: Type.Object({
      id: Type.String(),
      name: Type.String(),
      prefix: Type.String(),
      scopes: Type.Array(Type.String()),
    }),
    expires_at: Type.String({ format: 'date-time', description: 'Unless used before then (idle timeout).' }),
    ends_at: Type.String({ format: 'date-time', description: 'However much it is used.' }),
    csrf_token: Type.String({ description: 'Send it as x-csrf-token on every state-changing request.' }),
  },
  { description: 'The console session (never its id, which only the HttpOnly cookie holds).' },
);

const SignInBody = Type.Object(
  { key: Type.String({ minLength: 1, maxLength: 512, description: 'An API key (not an upload token).' }) },
  { additionalProperties: false },
);

const ConsoleUploadToken = Type.Object({
  token: UploadTokenSchema,
  secret: Type.String({ description: 'The token the page uploads with (tus).' }),
});

function sessionJson(
  { session, key, account }: Pick<ActiveSession, 'session' | 'key' | 'account'>,
  csrfToken: string,
) {
  return {
    account: { id: account.id, name: account.name },
    key: { id: key.id, name: key.name, prefix: key.prefix, scopes: [...key.scopes] },
    expires_at: iso(session.expiresAt),
    ends_at: iso(session.endsAt),
    csrf_token: csrfToken,
  };
}

/**
 * The web console: its page and files at /console, and its API under /console/api, which only
 * a session cookie authenticates (never a key). The API is the native API's own routes, mounted
 * again under /console/api/v1 behind the session, so the console shows exactly what the API
 * answers; plus the session itself and the upload token the page uploads with.
 */
export async function consoleRoutes(app: App, options: ConsoleOptions): Promise<void> {
  const { core, publicUrl, bundle, resumable } = options;
  const secure = publicUrl.startsWith('https:');
  const cookieName = secure ? SECURE_SESSION_COOKIE : SESSION_COOKIE;
  // None of this is the native API: the OpenAPI document leaves it out.
  app.addHook('onRoute', (route) => {
    route.schema = { ...route.schema, hide: true };
  });
  app.decorateRequest('consoleSession', null);

  const setCookie = (reply: FastifyReply, value: string, maxAgeSeconds: number) =>
    reply.header(
      'set-cookie',
      stringifySetCookie({
        name: cookieName,
        value,
        path: secure ? '/' : PLAIN_COOKIE_PATH,
        httpOnly: true,
        secure,
        sameSite: 'strict',
        maxAge: maxAgeSeconds,
      }),
    );
  /**
   * The session id the request's cookie names; none without the cookie. A browser sends one
   * cookie per (domain, path) that matches, longest path first, so a cookie of the same name
   * that a sibling host set on the parent domain with a longer path (possible over plain http,
   * where the name has no `__Host-` prefix) comes before the console's own. Taking the first
   * would run the console in whatever session the planter chose (its uploads and the forms
   * filled in going to the planter's account); taking the last is no better when the planter's
   * is the only one. So more than one is refused outright: the person is signed out and told
   * why, rather than put in a session they did not open.
   */
  const cookieOf = (request: FastifyRequest): string | undefined => {
    const header = request.headers.cookie;
    if (header === undefined) return undefined;
    // Pair by pair: parseCookie keeps only the first of a repeated name.
    const values = header
      .split(';')
      .map((pair) => parseCookie(pair)[cookieName])
      .filter((value) => value !== undefined);
    if (values.length > 1) {
      throw new WharfError(
        'AMBIGUOUS_SESSION',
        `This browser sent ${values.length} console session cookies; another site of the same domain may ` +
          'have set one. Clear the cookies of this site, then sign in again.',
        { cookies: values.length },
      );
    }
    return values[0];
  };
  /** A browser says where a request comes from; a state change from another site is refused. */
  const refuseCrossSite = (request: FastifyRequest) => {
    const site = request.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') {
      throw new WharfError('CSRF_FAILED', 'Console requests must come from the console itself.');
    }
  };
  const unsafe = (method: string) => method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS';

  if (bundle) {
    app.get('/', async (_request, reply) => reply.redirect('/console', 302));
    const page = async (_request: FastifyRequest, reply: FastifyReply) =>
      securityHeaders(reply)
        .header('content-type', 'text/html; charset=utf-8')
        .header('cache-control', 'no-cache')
        .send(bundle.html);
    app.get('/console', page);
    app.get('/console/', page);
    app.get<{ Params: { file: string } }>('/console/assets/:file', async (request, reply) => {
      const file = bundle.files.get(request.params.file);
      if (!file) throw new WharfError('NOT_FOUND', 'No such console file.');
      // Content-hashed names: a file never changes under its name.
      return securityHeaders(reply)
        .header('content-type', file.type)
        .header('cache-control', 'public, max-age=31536000, immutable')
        .send(file.body);
    });
  }

  await app.register(
    async (api: App) => {
      api.addHook('onSend', async (_request, reply, payload) => {
        // Nothing the session unlocked is cached, a private asset's bytes and renderings included
        // (their routes say `private, no-cache` to keys): the browser's disk cache outlives the
        // session on a shared computer (a hunt found them kept).
        reply.header('cache-control', 'no-store');
        reply.header('x-content-type-options', 'nosniff');
        return payload;
      });

      api.post(
        '/session',
        {
          schema: {
            summary: 'Sign in to the console with an API key (sets the session cookie)',
            body: SignInBody,
            response: { 201: SessionSchema, ...errorResponses, 415: errorResponses[400] },
          },
          // Only JSON: a cross-site HTML form can send text/plain, never application/json.
          preValidation: async (request) => {
            refuseCrossSite(request);
            // A session signed in beside a planted cookie would be refused at its first use.
            cookieOf(request);
            const type = request.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
            if (type !== 'application/json') {
              throw new WharfError('UNSUPPORTED_MEDIA_TYPE', 'Sign in with a JSON body: {"key": "…"}.');
            }
          },
        },
        async (request, reply) => {
          const opened = await core.sessions.signIn(request.body.key, request.ip).catch((err: unknown) => {
            if (err instanceof WharfError && err.code === 'RATE_LIMITED') {
              reply.header('retry-after', String(err.details?.retry_after ?? 60));
            }
            throw err;
          });
          setCookie(reply, opened.id, Math.floor((opened.session.endsAt - core.clock.now()) / 1000));
          reply.status(201);
          return sessionJson(opened, opened.csrfToken);
        },
      );

      // Every other console API route needs the session, and its CSRF token to change anything.
      await api.register(async (scope: App) => {
        // As on the native API (see app.ts): a text/plain body is 415, not a string refused as
        // "body must be object".
        scope.removeContentTypeParser('text/plain');
        readEmptyJsonAsNoBody(scope);
        scope.addHook('onRequest', async (request) => {
          const id = cookieOf(request);
          const active = await core.sessions.authenticate(id);
          if (unsafe(request.method)) {
            refuseCrossSite(request);
            core.sessions.checkCsrf(id!, request.headers[CSRF_HEADER] as string | undefined);
          }
          request.consoleSession = { id: id!, active };
          request.principal = active.principal;
        });

        scope.get(
          '/session',
          { schema: { summary: 'The console session', response: { 200: SessionSchema, ...errorResponses } } },
          async (request) => {
            const { id, active } = request.consoleSession!;
            return sessionJson(active, core.sessions.csrfToken(id));
          },
        );

        scope.delete(
          '/session',
          { schema: { summary: 'Sign out', response: { 204: Type.Null(), ...errorResponses } } },
          async (request, reply) => {
            await core.sessions.signOut(request.consoleSession!.id);
            setCookie(reply, '', 0);
            return reply.status(204).send(null);
          },
        );

        scope.post(
          '/upload-token',
          {
            schema: {
              summary: 'An upload token for the console page (minted with the session’s key)',
              response: { 201: ConsoleUploadToken, ...errorResponses },
            },
          },
          async (request, reply) => {
            const { session } = request.consoleSession!.active;
            const left = Math.floor((session.endsAt - core.clock.now()) / 1000);
            const minted = await core.tokens.mint(request.principal!, {
              expiresInSeconds: Math.max(1, Math.min(UPLOAD_TOKEN_SECONDS, left)),
              metadata: { source: 'wharf-console' },
            });
            reply.status(201);
            return { token: tokenJson(minted.token, core.clock.now()), secret: minted.secret };
          },
        );

        // The native API's routes, as they are, behind the session.
        const context: ApiContext = { core, publicUrl };
        await scope.register(assetReadRoutes, context);
        await scope.register(assetContentRoute, context);
        await scope.register(assetImageRoutes, context);
        await scope.register(listingRoutes, context);
        await scope.register(keyRoutes, context);
        await scope.register(tokenRoutes, context);
        // Of the upload routes, cancelling only (the page uploads over tus, with a token).
        await scope.register(async (uploads: App) => cancelUploadRoute(uploads, { core, resumable }));
        await scope.register(eventRoutes, context);
        await scope.register(webhookRoutes, context);
      });
    },
    { prefix: '/console/api' },
  );
}
