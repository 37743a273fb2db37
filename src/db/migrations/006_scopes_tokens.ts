import { type Kysely, sql } from 'kysely';
import { text } from './text.js';

// Scoped keys, upload tokens, and the counters that make limits exact under concurrency: what
// an account stores and holds for pending uploads, a key's open uploads, a token's usage, and
// what each pending upload holds. Every counter starts from the data already there, so a
// database migrated with pending uploads and stored assets goes on exactly where it was.
// Schema builder and plain SQL both databases read alike.
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = text(db);

  // Keys: `admin` keys keep every right, `member` keys what members could do (read, upload, write).
  await db.schema
    .alterTable('api_keys')
    .addColumn('scopes', t, (c) => c.notNull().defaultTo(''))
    .execute();
  await db.schema.alterTable('api_keys').addColumn('name_prefix', t).execute();
  await db.schema.alterTable('api_keys').addColumn('namespace', t).execute();
  await db.schema
    .alterTable('api_keys')
    .addColumn('open_uploads', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
  await sql`update api_keys set scopes = case when role = 'admin' then 'admin' else 'read,upload,write' end`.execute(
    db,
  );
  await sql`update api_keys set open_uploads = (
    select count(*) from uploads u where u.key_id = api_keys.id and u.status = 'pending'
  )`.execute(db);

  // Accounts: the bytes their assets take, and what pending uploads hold (none yet: uploads
  // opened before this migration hold nothing and are checked when they complete).
  await db.schema
    .alterTable('accounts')
    .addColumn('bytes_used', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema
    .alterTable('accounts')
    .addColumn('bytes_reserved', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
  await sql`update accounts set bytes_used = coalesce(
    (select sum(a.size) from assets a where a.account_id = accounts.id), 0
  )`.execute(db);

  await db.schema.alterTable('uploads').addColumn('token_id', t).execute();
  await db.schema
    .alterTable('uploads')
    .addColumn('quota_reserved', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema
    .alterTable('uploads')
    .addColumn('token_reserved', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
  // Reading an asset through one's own upload of it (upload-only keys, tokens).
  await db.schema.createIndex('uploads_asset').on('uploads').column('asset_id').execute();

  await db.schema.alterTable('assets').addColumn('subject', t).execute();

  await db.schema
    .createTable('upload_tokens')
    .addColumn('id', t, (c) => c.primaryKey())
    .addColumn('account_id', t, (c) => c.notNull().references('accounts.id'))
    .addColumn('key_id', t, (c) => c.notNull().references('api_keys.id'))
    .addColumn('prefix', t, (c) => c.notNull())
    .addColumn('secret_hash', t, (c) => c.notNull().unique())
    .addColumn('subject', t)
    .addColumn('name_prefix', t)
    .addColumn('namespace', t)
    .addColumn('content_types', t)
    .addColumn('metadata', t, (c) => c.notNull().defaultTo('{}'))
    .addColumn('max_files', 'bigint')
    .addColumn('max_bytes', 'bigint')
    .addColumn('max_file_size', 'bigint')
    .addColumn('max_open_uploads', 'bigint')
    .addColumn('files_used', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('bytes_used', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('files_reserved', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('bytes_reserved', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('open_uploads', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint')
    .execute();
  await db.schema
    .createIndex('upload_tokens_account')
    .on('upload_tokens')
    .columns(['account_id', 'id'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('upload_tokens').execute();
}
