import { type Kysely, type Migration, type MigrationProvider, Migrator, sql } from 'kysely';
import * as initial from './migrations/001_initial.js';
import * as filesJobs from './migrations/002_files_jobs_processing.js';
import * as resumable from './migrations/003_resumable_uploads.js';
import * as events from './migrations/004_events_webhooks.js';
import * as deliveryLog from './migrations/005_webhook_delivery_log.js';
import * as scopesTokens from './migrations/006_scopes_tokens.js';
import * as images from './migrations/007_images.js';
import * as consoleSessions from './migrations/008_console_sessions.js';
import * as pendingIndexes from './migrations/009_pending_indexes.js';
import * as oldAssets from './migrations/010_old_assets.js';
import * as jobLanes from './migrations/011_job_lanes.js';
import * as accountNumbers from './migrations/012_account_numbers.js';
import * as uploadEndings from './migrations/013_upload_endings.js';
import * as laneOwners from './migrations/014_lane_owners.js';
import * as laneHeads from './migrations/015_lane_heads.js';
import * as idempotency from './migrations/016_idempotency.js';
import { SchemaAhead } from './schema-ahead.js';

// Migrations are imported, not read from a folder, so they work the same from src/ (tsx)
// and dist/ (compiled) and no file layout is assumed at run time.
const migrations: Record<string, Migration> = {
  '001_initial': initial,
  '002_files_jobs_processing': filesJobs,
  '003_resumable_uploads': resumable,
  '004_events_webhooks': events,
  '005_webhook_delivery_log': deliveryLog,
  '006_scopes_tokens': scopesTokens,
  '007_images': images,
  '008_console_sessions': consoleSessions,
  '009_pending_indexes': pendingIndexes,
  '010_old_assets': oldAssets,
  '011_job_lanes': jobLanes,
  '012_account_numbers': accountNumbers,
  '013_upload_endings': uploadEndings,
  '014_lane_owners': laneOwners,
  '015_lane_heads': laneHeads,
  '016_idempotency': idempotency,
};

// Beside the checks that throw it, for those that load them (the CLI).
export { SchemaAhead };

const provider: MigrationProvider = { getMigrations: async () => migrations };

/** The migrations this version has, oldest first: the last is the schema it works on. */
export const MIGRATIONS: readonly string[] = Object.keys(migrations);

// biome-ignore lint/suspicious/noExplicitAny: the migrator works on any schema
function migrator(db: Kysely<any>): Migrator {
  return new Migrator({
    db,
    provider,
    migrationTableName: 'wharf_migrations',
    migrationLockTableName: 'wharf_migrations_lock',
  });
}

/** Runs the migrations the database has not had; returns their names, in the order they ran. */
// biome-ignore lint/suspicious/noExplicitAny: the migrator works on any schema
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  return migrate(db);
}

/**
 * Up to and including the migration `target` (tests build databases of an older version this
 * way, to check that a newer Wharf takes them over).
 */
// biome-ignore lint/suspicious/noExplicitAny: the migrator works on any schema
export async function migrate(db: Kysely<any>, target?: string): Promise<string[]> {
  await refuseNewerSchema(db);
  const m = migrator(db);
  const { error, results } = target === undefined ? await m.migrateToLatest() : await m.migrateTo(target);
  const failed = results?.find((r) => r.status === 'Error');
  // No migration ran into it: the database itself refused (unreachable, a wrong password),
  // and its own error, code and cause included, says so best.
  if (error && !failed) throw error;
  if (error || failed) {
    throw new Error(`Database migration ${failed?.migrationName ?? ''} failed: ${String(error)}`, {
      cause: error,
    });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * The database has not had every migration of this version: `pending` names them, oldest
 * first; `fresh` when it has had none (no Wharf has run on it).
 */
export class SchemaBehind extends Error {
  constructor(
    readonly pending: string[],
    readonly fresh: boolean,
  ) {
    super(`The database has not had the migrations ${pending.join(', ')}.`);
  }
}

/**
 * For what must not migrate (the admin CLI): a database at this version's schema passes;
 * one a newer Wharf migrated is refused as `migrate` refuses it, and one that lacks some of
 * this version's migrations with SchemaBehind. Migrating is an upgrade, which stops every
 * older node running on the database (server.ts), so only a server's start or an explicit
 * `wharf migrate` does it. Reads only: nothing is created, not even the migrator's tables.
 */
// biome-ignore lint/suspicious/noExplicitAny: the migrator works on any schema
export async function requireLatestSchema(db: Kysely<any>): Promise<void> {
  await refuseNewerSchema(db);
  const pending = (await migrator(db).getMigrations())
    .filter((m) => m.executedAt === undefined)
    .map((m) => m.name);
  if (pending.length > 0) throw new SchemaBehind(pending, pending.length === MIGRATIONS.length);
}

/**
 * A database that a newer Wharf migrated (an operator rolling back an upgrade, or an old node
 * started beside upgraded ones): refused before anything runs, saying what to do, rather than
 * with the migrator's "corrupted migrations" and a stack. Migrations only go forward, so the
 * way back is the backup taken before the upgrade (docs/operations.md).
 */
// biome-ignore lint/suspicious/noExplicitAny: the migrator works on any schema
async function refuseNewerSchema(db: Kysely<any>): Promise<void> {
  const done = await migrationsDone(db);
  if (done === undefined) return;
  const unknown = unknownMigrations(done);
  if (unknown.length > 0) throw new SchemaAhead(unknown);
}

/**
 * The names of the migrations the database has had, or undefined for a new database (no
 * such table yet: the migrator makes it). Nodes of one version may start together on a new
 * database, so the table may appear between a read that failed and the look for it: read
 * again then. Whether the database could not be reached at all, the migrator finds out and
 * reports as it does.
 */
// biome-ignore lint/suspicious/noExplicitAny: the migrator works on any schema
async function migrationsDone(db: Kysely<any>): Promise<string[] | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await sql<{ name: string }>`select name from wharf_migrations`.execute(db);
      return result.rows.map((r) => r.name);
    } catch (err) {
      if (!(await hasMigrationTable(db))) return undefined;
      if (attempt === 2) throw err;
    }
  }
}

/** Of the migrations a database has run, those this version does not know, sorted. */
export function unknownMigrations(done: string[]): string[] {
  return done.filter((name) => !Object.hasOwn(migrations, name)).sort();
}

// biome-ignore lint/suspicious/noExplicitAny: the migrator works on any schema
async function hasMigrationTable(db: Kysely<any>): Promise<boolean> {
  const tables = await db.introspection.getTables();
  return tables.some((t) => t.name === 'wharf_migrations');
}
