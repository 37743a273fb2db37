import type { Kysely } from 'kysely';
import { text } from './text.js';

// Images ready to show: stored renderings (derivatives), named presets, and the account
// setting that strips GPS positions from new originals.
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = text(db);
  // One row per (asset, canonical parameters): the primary key makes two nodes rendering the
  // same derivative record it once. Identical renderings of an asset share a storage key.
  await db.schema
    .createTable('derivatives')
    .addColumn('asset_id', t, (c) => c.notNull())
    .addColumn('params_key', t, (c) => c.notNull())
    .addColumn('account_id', t, (c) => c.notNull())
    .addColumn('storage_key', t, (c) => c.notNull())
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('content_type', t, (c) => c.notNull())
    .addColumn('sha256', t, (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('derivatives_pk', ['asset_id', 'params_key'])
    .execute();
  await db.schema
    .createIndex('derivatives_asset_sha256')
    .on('derivatives')
    .columns(['asset_id', 'sha256'])
    .execute();

  await db.schema
    .createTable('image_presets')
    .addColumn('account_id', t, (c) => c.notNull())
    .addColumn('name', t, (c) => c.notNull())
    // Canonical transform parameters as JSON (src/core/transforms.ts).
    .addColumn('params', t, (c) => c.notNull())
    .addColumn('eager', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('image_presets_pk', ['account_id', 'name'])
    .execute();

  await db.schema
    .alterTable('accounts')
    .addColumn('strip_gps', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
}
