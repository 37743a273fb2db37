import type { Kysely } from 'kysely';
import { text } from './text.js';

// Sessions of the web console (and an index for listing an account's uploads, below): a key exchanged for a cookie. Only the SHA-256 of the session id
// is kept (the id is 32 random bytes, as keys are), with the key it stands for, so revoking the
// key ends its sessions on every node. `expires_at` slides with use (the idle timeout) and never
// passes `ends_at` (the absolute lifetime).
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = text(db);
  await db.schema
    .createTable('console_sessions')
    .addColumn('id_hash', t, (c) => c.primaryKey())
    .addColumn('account_id', t, (c) => c.notNull().references('accounts.id'))
    .addColumn('key_id', t, (c) => c.notNull().references('api_keys.id'))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('last_seen_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('ends_at', 'bigint', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint')
    .execute();
  // The sweep removes sessions past their expiry.
  await db.schema
    .createIndex('console_sessions_expires')
    .on('console_sessions')
    .column('expires_at')
    .execute();
  // GET /v1/uploads lists an account's uploads newest first (by id, time-ordered); the console
  // shows the pending ones.
  await db.schema.createIndex('uploads_account_id').on('uploads').columns(['account_id', 'id']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('uploads_account_id').execute();
  await db.schema.dropTable('console_sessions').execute();
}
