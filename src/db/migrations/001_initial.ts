import type { Kysely } from 'kysely';
import { text } from './text.js';

// Written against Kysely's schema builder only, so the same migration runs on SQLite and
// PostgreSQL. Ids are text (UUIDv7), times bigint milliseconds; text columns sort bytewise on
// both (see text.ts).
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = text(db);
  await db.schema
    .createTable('settings')
    .addColumn('name', t, (c) => c.primaryKey())
    .addColumn('value', t, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('accounts')
    .addColumn('id', t, (c) => c.primaryKey())
    .addColumn('name', t, (c) => c.notNull())
    .addColumn('max_file_size', 'bigint')
    .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('api_keys')
    .addColumn('id', t, (c) => c.primaryKey())
    .addColumn('account_id', t, (c) => c.notNull().references('accounts.id'))
    .addColumn('name', t, (c) => c.notNull())
    .addColumn('role', t, (c) => c.notNull())
    .addColumn('prefix', t, (c) => c.notNull())
    .addColumn('secret_hash', t, (c) => c.notNull().unique())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('last_used_at', 'bigint')
    .addColumn('revoked_at', 'bigint')
    .execute();

  await db.schema
    .createTable('uploads')
    .addColumn('id', t, (c) => c.primaryKey())
    .addColumn('account_id', t, (c) => c.notNull().references('accounts.id'))
    .addColumn('key_id', t, (c) => c.notNull())
    .addColumn('kind', t, (c) => c.notNull())
    .addColumn('name', t, (c) => c.notNull())
    .addColumn('content_type', t, (c) => c.notNull())
    .addColumn('size', 'bigint')
    .addColumn('sha256', t)
    .addColumn('md5', t)
    .addColumn('storage_key', t, (c) => c.notNull())
    .addColumn('status', t, (c) => c.notNull())
    .addColumn('asset_id', t)
    .addColumn('deduplicated', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('completed_at', 'bigint')
    .execute();
  await db.schema
    .createIndex('uploads_pending_expiry')
    .on('uploads')
    .columns(['status', 'expires_at'])
    .execute();

  await db.schema
    .createTable('assets')
    .addColumn('id', t, (c) => c.primaryKey())
    .addColumn('account_id', t, (c) => c.notNull().references('accounts.id'))
    .addColumn('name', t, (c) => c.notNull())
    .addColumn('content_type', t, (c) => c.notNull())
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('sha256', t, (c) => c.notNull())
    .addColumn('md5', t, (c) => c.notNull())
    .addColumn('storage_key', t, (c) => c.notNull())
    .addColumn('status', t, (c) => c.notNull())
    .addColumn('metadata', t, (c) => c.notNull().defaultTo('{}'))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    // One asset per content per account: dedupe is a constraint, not a check-then-insert.
    .addUniqueConstraint('assets_account_sha256', ['account_id', 'sha256'])
    .execute();
  await db.schema.createIndex('assets_account_id').on('assets').columns(['account_id', 'id']).execute();
  await db.schema.createIndex('assets_storage_key').on('assets').column('storage_key').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['assets', 'uploads', 'api_keys', 'accounts', 'settings']) {
    await db.schema.dropTable(table).execute();
  }
}
