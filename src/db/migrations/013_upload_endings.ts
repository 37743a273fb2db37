import type { Kysely } from 'kysely';
import { text } from './text.js';

// Why an upload ended without an asset was only in its event (upload.expired, upload.cancelled,
// upload.failed with the refusal's code and message); its row said `expired` whatever happened,
// so a client polling `GET /v1/uploads/{id}` could not tell a user what went wrong. From here the
// row keeps it too (see Store.expireUpload). Uploads that ended before stay null, "not known":
// not copied from their events, which the event retention may already have pruned, and which
// would mean reading the whole event table inside the upgrade's transaction.
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = text(db);
  // One column a statement: SQLite adds no more at once.
  await db.schema.alterTable('uploads').addColumn('ended_reason', t).execute();
  await db.schema.alterTable('uploads').addColumn('ended_code', t).execute();
  await db.schema.alterTable('uploads').addColumn('ended_message', t).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('uploads').dropColumn('ended_message').execute();
  await db.schema.alterTable('uploads').dropColumn('ended_code').execute();
  await db.schema.alterTable('uploads').dropColumn('ended_reason').execute();
}
