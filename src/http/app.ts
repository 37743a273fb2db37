import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { LOCAL_ENDPOINT_PATH } from '../blobs/local-endpoint.js';
import type { Principal } from '../core/model.js';
import type { Core } from '../core/wharf.js';
import { accountSettingsRoutes } from './api/account-settings.js';
import { assetContentRoute } from './api/assets/content.js';
import { assetImageRoutes } from './api/assets/image.js';
import { assetReadRoutes } from './api/assets/read.js';
import { directUploadRoute } from './api/assets/upload.js';
import type { ApiContext, App } from './api/context.js';
import { eventRoutes } from './api/events.js';
import { fileRoutes } from './api/files/routes.js';
import { registerIdempotency } from './api/idempotency.js';
import { imagePresetRoutes } from './api/image-presets.js';
import { keyRoutes } from './api/keys.js';
import { listingRoutes } from './api/listings.js';
import { multipartRoutes } from './api/multipart/routes.js';
import { s3SignRoutes } from './api/s3-sign.js';
import { tokenRoutes } from './api/tokens.js';
import { uploadRoutes } from './api/uploads/routes.js';
import { webhookRoutes } from './api/webhooks.js';
import { cutIdleBodies } from './body-idle.js';
import { type ClientAddress, clientAddress } from './client-address.js';
import { clientErrorHandler } from './client-errors.js';
import { compatRoutes, compatRoutingErrors } from './compat/index.js';
import type { ConsoleBundle } from './console/bundle.js';
import { consoleRoutes } from './console/routes.js';
import { continueOnRead } from './expect-continue.js';
import { refuseEncodedBodies } from './file-bodies.js';
import { keepFreshConnections } from './fresh-connections.js';
import { limitJsonDepth, readEmptyJsonAsNoBody } from './json-depth.js';
import { endLingeringOnClose } from './lingering-close.js';
import { logRedaction, redactedUrl } from './log-redaction.js';
import { registerOpenApi } from './openapi/index.js';
import { type MetricsSource, operationsRoutes } from './operations.js';
import { authenticate } from './plugins/auth.js';
import { registerCors } from './plugins/cors.js';
import { nativeErrorHandler, registerNativeErrors } from './plugins/errors.js';
import { trackInFlight } from './plugins/in-flight.js';
import { observeRequest, type RequestMetrics, registerObservation, requestIdFor } from './plugins/observe.js';
import { parseQueryString } from './query-string.js';
import { RequestLog } from './request-log.js';
import { trackRoutes } from './route-list.js';
import { MAX_PARAM_LENGTH, type RoutingErrorShape, routingError, shapeFor } from './routing-errors.js';
import { rufhRoutes } from './rufh/routes.js';
import { buildSharedSerializer } from './serialization.js';
import { refuseWhileStopping } from './stopping.js';
import { storageEndpointRoutes, storageRoutingErrors } from './storage/put-object.js';
import { type TusRouteOptions, tusRoutes, tusRoutingErrors } from './tus/routes.js';
import { validatorCompiler } from './validation.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set for every native API route that requires a key. */
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** 'none': public; 'optional': the handler authenticates itself (signed URLs). */
    auth?: 'none' | 'optional';
  }
}

export interface AppOptions {
  core: Core;
  publicUrl: string;
  /** WHARF_CORS_ORIGINS: origins whose pages may call Wharf; empty for same-origin only. */
  corsOrigins: readonly string[];
  /** WHARF_RESUMABLE_INTERIM_RESPONSE: Resumable Uploads for HTTP creations send a 104 (default). */
  resumableInterimResponse?: boolean | undefined;
  /** WHARF_TRUST_PROXY: proxies whose X-Forwarded-For names the client (`request.ip`); empty: none. */
  trustProxy?: readonly string[] | undefined;
  /** WHARF_BODY_IDLE_TIMEOUT: a body (sent or answered) that moves nothing this long has its connection cut (0: never). */
  bodyIdleTimeoutSeconds?: number | undefined;
  logger: boolean | { level: string; stream?: NodeJS.WritableStream };
  /** The tus endpoint's storage, lock and staging dir; without them /v1/tus/ is not served. */
  tus?: Omit<TusRouteOptions, 'core' | 'publicUrl'> | undefined;
  /** Where each request is reported (route pattern, status, duration). */
  requestMetrics?: RequestMetrics | undefined;
  /** GET /metrics on this port, for a Bearer of `token` (WHARF_METRICS_TOKEN); absent: not served. */
  metrics?: { source: MetricsSource; token: string } | undefined;
  /** The web console (WHARF_CONSOLE); without it neither /console nor its API is served. */
  console?: { bundle: ConsoleBundle | undefined } | undefined;
}

/** Each path's clients get failures before routing in the shape they read. */
const ROUTING_ERROR_SHAPES: readonly RoutingErrorShape[] = [
  ...compatRoutingErrors,
  storageRoutingErrors,
  tusRoutingErrors,
];

/**
 * The request log's `req`. `host` is the Host header the request arrived with, port included:
 * behind a trusted proxy (WHARF_TRUST_PROXY) Fastify's `request.host` is X-Forwarded-Host,
 * which nginx passes on from the client unless told to set it, so any client could write any
 * host into the log. The Host header is the one the proxy must pass on unchanged
 * (docs/deployment.md) and presigned requests are checked against. `remoteAddress` is
 * `request.ip` (X-Forwarded-For's client, believed only from a trusted proxy), read so that
 * it is right on the requests refused before routing too (see client-address.ts).
 */
function requestSerializer(addressOf: ClientAddress) {
  return (request: FastifyRequest) => ({
    method: request.method,
    url: redactedUrl(request.url),
    host: request.headers.host,
    remoteAddress: addressOf(request.raw),
  });
}

export async function buildApp({
  core,
  publicUrl,
  corsOrigins,
  trustProxy = [],
  resumableInterimResponse = true,
  bodyIdleTimeoutSeconds = 0,
  logger,
  tus,
  requestMetrics,
  metrics,
  console: webConsole,
}: AppOptions): Promise<FastifyInstance> {
  const addressOf = clientAddress(trustProxy);
  const app = Fastify({
    logger: logger && {
      ...(typeof logger === 'object' ? logger : {}),
      serializers: { req: requestSerializer(addressOf) },
      redact: logRedaction(typeof logger === 'object' ? logger.level : undefined),
    },
    // `request completed` names the error code of a refused request (see RequestLog).
    logController: new RequestLog(),
    bodyLimit: 1024 * 1024,
    // Only the client's address is taken from a trusted proxy (request.ip: the sign-in limit,
    // the request log). Fastify then also reads X-Forwarded-Proto and -Host into request.protocol
    // and request.host: Wharf builds no URL from those (every one starts with WHARF_PUBLIC_URL),
    // SigV4 checks the Host header as it arrived, and the request log shows that Host.
    ...(trustProxy.length > 0 && { trustProxy: [...trustProxy] }),
    // Wharf sits behind load balancers; request ids come from there when present and sane.
    requestIdHeader: false,
    genReqId: requestIdFor,
    // A request arriving during a stop is refused by Wharf, in its own error shape with
    // Retry-After (see stopping.ts), not by Fastify before any hook runs.
    return503OnClosing: false,
    // What Node's HTTP parser refuses, in Wharf's error envelope rather than Fastify's.
    clientErrorHandler: clientErrorHandler(requestMetrics, addressOf),
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH, querystringParser: parseQueryString },
    schemaController: { compilersFactory: { buildSerializer: buildSharedSerializer } },
    // Failures before routing (a malformed percent-encoding, an over-long id) skip the error
    // handlers; answer them in the shape the path's clients read, not Fastify's default.
    frameworkErrors: (err, request, reply) => {
      // No hook runs for these: they get their request id and metrics here.
      observeRequest(request, reply, requestMetrics);
      const refusal = routingError(err);
      if (refusal.status >= 500) request.log.error({ err }, 'routing failed');
      const send = shapeFor(ROUTING_ERROR_SHAPES, request.url);
      if (send) send(refusal, request, reply);
      else nativeErrorHandler(refusal, request, reply);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  // A client that sends its last byte and goes away (a crash, a closed tab) half-closes the
  // connection. Node's default then aborts the request and drops body bytes it has received but
  // not yet handed on, so a tus upload whose every byte arrived would lose its tail. Half-open,
  // the body is read to its end and the upload completes; the answer just finds no one.
  // (node:http reads this property of its Server; @types/node does not declare it.)
  Object.assign(app.server, { httpAllowHalfOpen: true });
  continueOnRead(app.server);
  endLingeringOnClose(app);
  // A stop does not reset a connection whose first request is on its way.
  keepFreshConnections(app);
  // First, so that every request of every route is counted (a stopping server waits for them).
  trackInFlight(app);
  cutIdleBodies(app, bodyIdleTimeoutSeconds);
  app.setValidatorCompiler(validatorCompiler);
  limitJsonDepth(app);
  refuseEncodedBodies(app);
  app.decorateRequest('principal', null);
  trackRoutes(app);
  // Before CORS and every route: every response carries its request id, preflights and refusals too.
  registerObservation(app, requestMetrics);
  // After observation: a stop's refusals are counted and logged as any.
  refuseWhileStopping(app);
  // The seed APIs' shapes for their unknown paths; the storage endpoint and tus answer their own.
  registerNativeErrors(app, compatRoutingErrors);
  // Before every route: preflights are answered ahead of authentication, which they never carry.
  await registerCors(app, corsOrigins);

  await registerOpenApi(app, {
    publicUrl,
    tus: tus !== undefined,
    storageEndpoint: core.endpoint !== undefined,
    routingErrors: ROUTING_ERROR_SHAPES,
  });
  await app.register(operationsRoutes, { core, metrics });

  const context: ApiContext = {
    core,
    publicUrl,
    resumable: tus && {
      locker: tus.locker,
      stagingDir: tus.stagingDir,
      interimResponse: resumableInterimResponse,
    },
  };
  await app.register(async (api: App) => {
    // JSON routes read JSON: Fastify's text/plain parser handed them a string, refused as
    // "body must be object". Now any other type is 415 UNSUPPORTED_MEDIA_TYPE, as documented.
    // (Routes that store bodies as files own their parsers.)
    api.removeContentTypeParser('text/plain');
    readEmptyJsonAsNoBody(api);
    api.addHook('onRequest', async (request) => {
      const mode = request.routeOptions.config.auth;
      if (mode === 'none' || mode === 'optional') return;
      request.principal = await authenticate(core, request);
    });
    registerIdempotency(api, core);
    await api.register(directUploadRoute, context);
    await api.register(assetReadRoutes, context);
    await api.register(assetContentRoute, context);
    await api.register(uploadRoutes, context);
    await api.register(multipartRoutes, context);
    await api.register(s3SignRoutes, context);
    await api.register(keyRoutes, context);
    await api.register(tokenRoutes, context);
    await api.register(fileRoutes, context);
    await api.register(eventRoutes, context);
    await api.register(webhookRoutes, context);
    await api.register(assetImageRoutes, context);
    await api.register(imagePresetRoutes, context);
    await api.register(accountSettingsRoutes, context);
    await api.register(listingRoutes, context);
    if (context.resumable) await api.register(rufhRoutes, { core, publicUrl, ...context.resumable });
  });

  if (webConsole) await app.register(consoleRoutes, { ...context, bundle: webConsole.bundle });
  await app.register(compatRoutes, context);
  if (tus) await app.register(tusRoutes, { ...tus, core, publicUrl });

  if (core.endpoint) {
    await app.register(storageEndpointRoutes, {
      endpoint: core.endpoint,
      publicUrl,
      prefix: LOCAL_ENDPOINT_PATH,
    });
  }
  return app;
}
