import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { FsBlobStore } from './blobs/fs-store.js';
import { LocalEndpoint } from './blobs/local-endpoint.js';
import type { Config } from './config.js';
import { type Clock, systemClock } from './core/clock.js';
import { createIdSource } from './core/ids.js';
import { DEFAULT_ACCOUNT_ID } from './core/keys.js';
import { type Core, createCore, deriveKey } from './core/wharf.js';
import { connect } from './db/connect.js';
import { migrateToLatest } from './db/migrate.js';
import { SqlStore } from './db/store.js';
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
  logger?: boolean | { level: string };
}

/** Wires adapters to the core and the core to HTTP, by configuration alone. */
export async function createWharf(config: Config, options: WharfOptions = {}): Promise<Wharf> {
  const clock = options.clock ?? systemClock;
  const ids = createIdSource(clock);
  const connection = connect(config.databaseUrl);
  await migrateToLatest(connection.db);
  const store = new SqlStore(connection);

  // One secret per installation, kept in the database so every node shares it.
  const secret =
    config.secret ?? (await store.settingOrInit('server_secret', randomBytes(32).toString('base64url')));
  const endpoint = new LocalEndpoint({
    publicUrl: config.publicUrl,
    bucket: 'wharf',
    region: 'us-east-1',
    accessKeyId: 'wharf-local',
    secretAccessKey: deriveKey(secret, 'local-s3').toString('base64url'),
  });
  const blobs = new FsBlobStore(join(config.dataDir, 'blobs'), endpoint);
  await blobs.init();

  const core = createCore({
    store,
    blobs,
    clock,
    ids,
    secret,
    endpoint,
    uploads: {
      maxFileSize: config.maxFileSize,
      uploadExpiresInSeconds: config.uploadExpiresSeconds,
      maxFilesPerRequest: config.maxFilesPerRequest,
      completionGraceMs: 3600_000,
    },
  });

  await core.keys.ensureAccount(DEFAULT_ACCOUNT_ID, 'Default');
  let generatedKey: string | undefined;
  if (config.apiKey) {
    await core.keys.register(DEFAULT_ACCOUNT_ID, 'WHARF_API_KEY', 'admin', config.apiKey);
  } else if ((await core.keys.count()) === 0) {
    generatedKey = (await core.keys.create(DEFAULT_ACCOUNT_ID, 'generated at first start', 'admin')).secret;
  }

  const app = await buildApp({ core, publicUrl: config.publicUrl, logger: options.logger ?? false });

  let sweeping: Promise<unknown> = Promise.resolve();
  const sweep = () => {
    sweeping = core.uploads.sweep().catch((err: unknown) => app.log.error({ err }, 'sweep failed'));
  };
  const timer =
    config.sweepIntervalSeconds > 0
      ? setInterval(sweep, config.sweepIntervalSeconds * 1000).unref()
      : undefined;

  return {
    app,
    core,
    generatedKey,
    async close() {
      if (timer) clearInterval(timer);
      await app.close();
      await sweeping;
      await blobs.close();
      await store.close();
    },
  };
}
