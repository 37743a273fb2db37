import type { IdSource } from '../../core/ids.js';
import type { Store } from '../../core/ports.js';
import { type Connection, type ConnectOptions, connect, useWal } from '../connect.js';
import { migrateToLatest, requireLatestSchema } from '../migrate.js';
import { accountQueries } from './accounts.js';
import { assetQueries } from './assets.js';
import { derivativeQueries } from './derivatives.js';
import { eventQueries } from './events.js';
import { fileQueries } from './files.js';
import { idempotencyQueries } from './idempotency.js';
import { presetQueries } from './image-presets.js';
import { jobQueries } from './jobs.js';
import { keyQueries } from './keys.js';
import { listingQueries } from './listings.js';
import { lockQueries } from './locks.js';
import { sessionQueries } from './sessions.js';
import { settingsQueries } from './settings.js';
import { statsQueries } from './stats.js';
import { tokenQueries } from './tokens.js';
import { uploadQueries } from './uploads.js';
import { webhookQueries } from './webhooks.js';

/**
 * The core's Store on Kysely: one implementation for SQLite and PostgreSQL, put together from
 * one module per table (or concern), each implementing its slice of the port.
 */
export function createSqlStore(connection: Connection, ids: IdSource): Store {
  const context = { db: connection.db, dialect: connection.dialect, ids };
  return {
    ...settingsQueries(context),
    ...accountQueries(context),
    ...keyQueries(context),
    ...tokenQueries(context),
    ...uploadQueries(context),
    ...assetQueries(context),
    ...fileQueries(context),
    ...jobQueries(context),
    ...lockQueries(context),
    ...eventQueries(context),
    ...webhookQueries(context),
    ...statsQueries(context),
    ...derivativeQueries(context),
    ...presetQueries(context),
    ...sessionQueries(context),
    ...idempotencyQueries(context),
    ...listingQueries(context),
    async close() {
      await connection.db.destroy();
    },
  };
}

export interface OpenStoreOptions extends ConnectOptions {
  /**
   * false: the schema is checked, never changed; a database that lacks some of this version's
   * migrations is refused (SchemaBehind, see requireLatestSchema). The admin CLI's: migrating
   * is an upgrade, a server's to do at its start. Default true.
   */
  migrate?: boolean;
}

/**
 * What a store's opening did to the schema: the migrations it ran, oldest first (none: the
 * database was at this version's), and how long running them took. A server logs it at start.
 */
export interface Migrated {
  applied: string[];
  seconds: number;
}

/** An opened store, and what its opening migrated (undefined with `migrate: false`: nothing). */
export interface OpenedSqlStore {
  store: Store;
  migrated: Migrated | undefined;
}

/**
 * Connects to `databaseUrl`, migrates it to the latest schema (or, with `migrate: false`,
 * checks that it is there), and returns its Store with the migrations that ran.
 */
export async function openSqlStore(
  databaseUrl: string,
  ids: IdSource,
  options: OpenStoreOptions = {},
): Promise<OpenedSqlStore> {
  const check = options.migrate === false;
  // What is checked is not written to before it passes: a database refused is left as it was.
  const connection = connect(databaseUrl, { ...options, deferWal: check });
  let migrated: Migrated | undefined;
  try {
    if (check) {
      await requireLatestSchema(connection.db);
      await useWal(connection);
    } else {
      const started = performance.now();
      const applied = await migrateToLatest(connection.db);
      migrated = { applied, seconds: (performance.now() - started) / 1000 };
    }
  } catch (err) {
    await connection.db.destroy();
    throw err;
  }
  return { store: createSqlStore(connection, ids), migrated };
}
