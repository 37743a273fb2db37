import { createHash, timingSafeEqual } from 'node:crypto';
import { Type } from 'typebox';
import type { CheckResult } from '../core/health.js';
import type { Core } from '../core/wharf.js';
import type { App } from './api/context.js';
import { ErrorSchema } from './api/schemas.js';
import { named } from './openapi/components.js';

/** What serves the scrape: text in Prometheus's exposition format. */
export interface MetricsSource {
  scrape(): Promise<{ contentType: string; body: string }>;
}

export interface OperationsOptions {
  core: Core;
  /** With a token, GET /metrics is served here to a Bearer of it; without, not at all. */
  metrics?: { source: MetricsSource; token: string } | undefined;
}

const CheckSchema = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('failed'), Type.Literal('full')], {
      description:
        '`full` (storage only): the probe found no room left. The node stays ready, since it still serves reads; uploads get 507 `STORAGE_FULL`.',
    }),
    reason: Type.Optional(
      Type.Union([Type.Literal('timeout'), Type.Literal('error')], {
        description: '`timeout`: no answer in time; `error`: it answered with an error (details in the log).',
      }),
    ),
  },
  { description: 'One check.' },
);

// A component of its own: its `error` field is the native error's, which the document then
// shows once, under this name, rather than inline in /readyz's answers.
const ReadinessSchema = named(
  'Readiness',
  Type.Object(
    {
      status: Type.Union([Type.Literal('ready'), Type.Literal('unavailable'), Type.Literal('stopping')], {
        description:
          '`stopping`: the node has been asked to stop and soon stops listening (`WHARF_SHUTDOWN_DELAY`); it still serves the requests it gets meanwhile.',
      }),
      checks: Type.Object({ database: CheckSchema, storage: CheckSchema }),
      error: Type.Optional(ErrorSchema.properties.error),
    },
    { description: 'Each check’s outcome; `error` names the failed ones.' },
  ),
);

// A component too: each answer a generated client types is a named type.
const LivenessSchema = named(
  'Liveness',
  Type.Object({ status: Type.Literal('ok') }, { description: 'The process runs and answers.' }),
);

/** Whether `header` is `Bearer <token>`; compared in constant time (digests of equal length). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const presented = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')?.[1];
  if (presented === undefined) return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(presented), digest(token));
}

function checkJson({ status, reason }: CheckResult) {
  return reason ? { status, reason } : { status };
}

/** Liveness, readiness and (when configured) metrics: what orchestrators and scrapers call. */
export async function operationsRoutes(app: App, { core, metrics }: OperationsOptions): Promise<void> {
  app.get(
    '/healthz',
    {
      config: { auth: 'none' },
      schema: {
        operationId: 'getLiveness',
        summary: 'Liveness: the process runs and its event loop answers',
        description: 'Touches neither the database nor storage; see /readyz for those.',
        tags: ['meta'],
        security: [],
        response: { 200: LivenessSchema },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { auth: 'none' },
      schema: {
        operationId: 'getReadiness',
        summary: 'Readiness: the database answers a query and storage writes, reads and deletes a probe',
        description:
          'Each check has a few seconds; answers are reused for a second. 503 names the checks that failed.',
        tags: ['meta'],
        security: [],
        response: { 200: ReadinessSchema, 503: ReadinessSchema },
      },
    },
    async (request, reply) => {
      const { ready, stopping, checks } = await core.health.readiness();
      const failed = Object.entries(checks).filter(([, check]) => check.status === 'failed');
      const body = {
        status: stopping ? ('stopping' as const) : ready ? ('ready' as const) : ('unavailable' as const),
        checks: { database: checkJson(checks.database), storage: checkJson(checks.storage) },
      };
      if (ready) return body;
      for (const [name, check] of failed) {
        request.log.warn({ check: name, reason: check.reason, err: check.error }, 'readiness check failed');
      }
      const names = failed.map(([name, check]) => `${name} (${check.reason})`).join(', ');
      const message = stopping
        ? `Not ready: this node is stopping${names ? `, and ${names} failed` : ''}.`
        : `Not ready: ${names} failed.`;
      return reply.status(503).send({ ...body, error: { code: 'NOT_READY', message } });
    },
  );

  if (!metrics) return;
  const { source, token } = metrics;
  app.get(
    '/metrics',
    // An operator's endpoint, not part of the API: kept out of the OpenAPI document.
    { config: { auth: 'none' }, schema: { hide: true } },
    async (request, reply) => {
      if (!bearerMatches(request.headers.authorization, token)) {
        return reply
          .status(401)
          .header('www-authenticate', 'Bearer realm="wharf-metrics"')
          .send({
            error: {
              code: 'UNAUTHORIZED',
              message: 'Metrics need Authorization: Bearer <WHARF_METRICS_TOKEN>.',
            },
          });
      }
      const { contentType, body } = await source.scrape();
      return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
    },
  );
}
