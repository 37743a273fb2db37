import type { FastifyInstance } from 'fastify';
import { type OpenedCore, openCore } from './bootstrap.js';
import type { Config } from './config.js';
import { type Clock, systemClock } from './core/clock.js';
import { DEFAULT_ACCOUNT_ID } from './core/keys.js';
import { fanOut } from './core/telemetry.js';
import type { Core } from './core/wharf.js';
import { buildApp } from './http/app.js';
import { listenForMetrics, type MetricsListener } from './http/metrics-listener.js';
import { type Logger, logTelemetry } from './telemetry/log.js';
import { PrometheusTelemetry } from './telemetry/prometheus.js';

export interface Wharf {
  app: FastifyInstance;
  core: Core;
  /** A key generated on this start because none existed: print it once, it is not stored. */
  generatedKey: string | undefined;
  /** This server's metrics (what GET /metrics serves, where it is served). */
  metrics: PrometheusTelemetry;
  /** The separate metrics listener's URL, when WHARF_METRICS_PORT is set. */
  metricsUrl: string | undefined;
  close(): Promise<void>;
}

export interface WharfOptions {
  clock?: Clock;
  logger?: boolean | { level: string; stream?: NodeJS.WritableStream };
}

/** The server: the core behind HTTP, plus the key bootstrap and the periodic sweep. */
export async function createWharf(config: Config, options: WharfOptions = {}): Promise<Wharf> {
  // The core reports to both before the app (and its logger) exists: the log sink and the
  // scrape-time queries look their targets up when they run, which is only after start.
  let logger: Logger | undefined;
  let opened: OpenedCore | undefined;
  const metrics = new PrometheusTelemetry({
    countJobs: async () => (opened ? opened.store.countJobs() : []),
    jobKinds: () => opened?.core.jobs.kinds ?? [],
    onCollectError: (err) => logger?.warn({ err }, 'metrics: counting jobs failed'),
  });
  opened = await openCore(
    config,
    options.clock ?? systemClock,
    fanOut(
      metrics,
      logTelemetry(() => logger),
    ),
  );
  const { core } = opened;

  let generatedKey: string | undefined;
  if (config.apiKey) {
    await core.keys.register(DEFAULT_ACCOUNT_ID, 'WHARF_API_KEY', 'admin', config.apiKey);
  } else if ((await core.keys.count()) === 0) {
    generatedKey = (await core.keys.create(DEFAULT_ACCOUNT_ID, 'generated at first start', 'admin')).secret;
  }

  const app = await buildApp({
    core,
    publicUrl: config.publicUrl,
    corsOrigins: config.corsOrigins,
    logger: options.logger ?? false,
    tus: opened.tus,
    requestMetrics: metrics,
    metrics: config.metrics.token ? { source: metrics, token: config.metrics.token } : undefined,
  });
  logger = app.log;

  let metricsListener: MetricsListener | undefined;
  if (config.metrics.port !== undefined) {
    metricsListener = await listenForMetrics(metrics, {
      host: config.metrics.host,
      port: config.metrics.port,
      token: config.metrics.token,
      onError: (err) => app.log.error({ err }, 'metrics scrape failed'),
    }).catch(async (err: unknown) => {
      await app.close();
      await opened.close();
      throw err;
    });
  }

  let sweeping: Promise<unknown> = Promise.resolve();
  const sweep = () => {
    sweeping = core.uploads.sweep().catch((err: unknown) => app.log.error({ err }, 'sweep failed'));
  };
  const timer =
    config.sweepIntervalSeconds > 0
      ? setInterval(sweep, config.sweepIntervalSeconds * 1000).unref()
      : undefined;

  // Every node polls the shared queue; the claim gives each job to exactly one of them.
  let working: Promise<unknown> = Promise.resolve();
  let busy = false;
  const work = () => {
    if (busy) return;
    busy = true;
    working = core.jobs
      .drain(100)
      .catch((err: unknown) => app.log.error({ err }, 'job runner failed'))
      .finally(() => {
        busy = false;
      });
  };
  const jobTimer = config.jobIntervalMs > 0 ? setInterval(work, config.jobIntervalMs).unref() : undefined;

  return {
    app,
    core,
    generatedKey,
    metrics,
    metricsUrl: metricsListener?.url,
    async close() {
      if (timer) clearInterval(timer);
      if (jobTimer) clearInterval(jobTimer);
      await metricsListener?.close();
      await app.close();
      await sweeping;
      await working;
      await opened.close();
    },
  };
}
