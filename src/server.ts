import type { FastifyInstance } from 'fastify';
import { openCore } from './bootstrap.js';
import type { Config } from './config.js';
import { type Clock, systemClock } from './core/clock.js';
import { DEFAULT_ACCOUNT_ID } from './core/keys.js';
import type { Core } from './core/wharf.js';
import { buildApp } from './http/app.js';

export interface Wharf {
  app: FastifyInstance;
  core: Core;
  /** A key generated on this start because none existed: print it once, it is not stored. */
  generatedKey: string | undefined;
  close(): Promise<void>;
}

export interface WharfOptions {
  clock?: Clock;
  logger?: boolean | { level: string; stream?: NodeJS.WritableStream };
}

/** The server: the core behind HTTP, plus the key bootstrap and the periodic sweep. */
export async function createWharf(config: Config, options: WharfOptions = {}): Promise<Wharf> {
  const opened = await openCore(config, options.clock ?? systemClock);
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
  });

  // Wharf runs without them; the assets that would have needed them say so in their analysis.
  for (const [tool, path] of Object.entries(opened.missingTools)) {
    app.log.warn(
      { tool, path },
      `${tool} is not available (tried ${path}): ${
        tool.startsWith('pdf') ? 'PDF page counts and previews' : 'video and audio facts and video posters'
      } are off`,
    );
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
    async close() {
      if (timer) clearInterval(timer);
      if (jobTimer) clearInterval(jobTimer);
      await app.close();
      await sweeping;
      await working;
      await opened.close();
    },
  };
}
