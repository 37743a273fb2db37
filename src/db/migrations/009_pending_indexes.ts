import { type Kysely, sql } from 'kysely';

// Indexes over uploads that only pending (or only some) uploads need, made partial: the
// table keeps every upload ever made, while the sweep looks for pending ones only and most
// uploads have no external id (nor, while pending, an asset). A new upload then writes two
// index entries instead of five, completion drops its pending entries instead of moving
// them, and the indexes stay the size of what is pending, however large the table grows.
// Queries that use them name the index's condition with literals (SQLite cannot prove a
// partial index's condition from a bound parameter).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`drop index uploads_pending_expiry`.execute(db);
  await sql`create index uploads_pending_expiry on uploads (expires_at) where status = 'pending'`.execute(db);
  await sql`drop index uploads_auto_complete`.execute(db);
  await sql`create index uploads_auto_complete on uploads (created_at, id)
    where auto_complete = 1 and status = 'pending'`.execute(db);
  await sql`drop index uploads_asset`.execute(db);
  await sql`create index uploads_asset on uploads (asset_id) where asset_id is not null`.execute(db);
  await sql`drop index uploads_account_external_id`.execute(db);
  await sql`create unique index uploads_account_external_id on uploads (account_id, external_id)
    where external_id is not null`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index uploads_pending_expiry`.execute(db);
  await sql`create index uploads_pending_expiry on uploads (status, expires_at)`.execute(db);
  await sql`drop index uploads_auto_complete`.execute(db);
  await sql`create index uploads_auto_complete on uploads (auto_complete, status, created_at, id)`.execute(
    db,
  );
  await sql`drop index uploads_asset`.execute(db);
  await sql`create index uploads_asset on uploads (asset_id)`.execute(db);
  await sql`drop index uploads_account_external_id`.execute(db);
  await sql`create unique index uploads_account_external_id on uploads (account_id, external_id)`.execute(db);
}
