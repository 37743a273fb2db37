import type { Kysely } from 'kysely';
import { text } from './text.js';

// Seed APIs and scale-out: integer ids, client-chosen ids, upload intents, access levels,
// processing results, versioned files, quotas and a durable job queue. Schema builder only,
// so it runs on SQLite and PostgreSQL alike.
export async function up(db: Kysely<unknown>): Promise<void> {
  // Text columns sort bytewise on PostgreSQL as on SQLite (see text.ts).
  const t = text(db);
  await db.schema.alterTable('accounts').addColumn('storage_quota', 'bigint').execute();

  await db.schema.alterTable('uploads').addColumn('seq', 'bigint').execute();
  await db.schema.alterTable('uploads').addColumn('external_id', t).execute();
  await db.schema
    .alterTable('uploads')
    .addColumn('intent', t, (c) => c.notNull().defaultTo('{}'))
    .execute();
  await db.schema
    .alterTable('uploads')
    .addColumn('auto_complete', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  // NULLs are distinct in a unique index on both databases: only chosen ids must be unique.
  await db.schema
    .createIndex('uploads_account_external_id')
    .on('uploads')
    .columns(['account_id', 'external_id'])
    .unique()
    .execute();

  await db.schema
    .alterTable('assets')
    .addColumn('seq', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema
    .alterTable('assets')
    .addColumn('access', t, (c) => c.notNull().defaultTo('private'))
    .execute();
  await db.schema
    .alterTable('assets')
    .addColumn('processing', t, (c) => c.notNull().defaultTo('done'))
    .execute();
  await db.schema
    .alterTable('assets')
    .addColumn('analysis', t, (c) => c.notNull().defaultTo('{}'))
    .execute();
  await db.schema.createIndex('assets_seq').on('assets').column('seq').execute();
  // ActiveStorage-style clients identify content by MD5.
  await db.schema.createIndex('assets_account_md5').on('assets').columns(['account_id', 'md5']).execute();

  // Sequences both databases share: one row per name, bumped inside the writing transaction.
  await db.schema
    .createTable('counters')
    .addColumn('name', t, (c) => c.primaryKey())
    .addColumn('value', 'bigint', (c) => c.notNull())
    .execute();

  // The head row of a named file: bumping latest_version takes a row lock, so concurrent
  // uploads of one name on many nodes get consecutive versions without retries.
  await db.schema
    .createTable('files')
    .addColumn('account_id', t, (c) => c.notNull().references('accounts.id'))
    .addColumn('namespace', t, (c) => c.notNull())
    .addColumn('name', t, (c) => c.notNull())
    .addColumn('latest_version', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('files_pk', ['account_id', 'namespace', 'name'])
    .execute();
  await db.schema
    .createTable('file_versions')
    .addColumn('account_id', t, (c) => c.notNull())
    .addColumn('namespace', t, (c) => c.notNull())
    .addColumn('name', t, (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('asset_id', t, (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('file_versions_pk', ['account_id', 'namespace', 'name', 'version'])
    .execute();
  await db.schema.createIndex('file_versions_asset').on('file_versions').column('asset_id').execute();

  await db.schema
    .createTable('jobs')
    .addColumn('id', t, (c) => c.primaryKey())
    .addColumn('kind', t, (c) => c.notNull())
    .addColumn('payload', t, (c) => c.notNull())
    .addColumn('status', t, (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('run_at', 'bigint', (c) => c.notNull())
    .addColumn('lease_until', 'bigint')
    .addColumn('worker', t)
    .addColumn('last_error', t)
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('jobs_claim').on('jobs').columns(['status', 'run_at']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['jobs', 'file_versions', 'files', 'counters']) {
    await db.schema.dropTable(table).execute();
  }
}
