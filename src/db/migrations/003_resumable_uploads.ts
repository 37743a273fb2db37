import type { Kysely } from 'kysely';
import { text } from './text.js';

// Large and resumable uploads: storage's multipart upload id on the upload row, and leases
// that let many nodes share one tus upload without two of them writing it at once.
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = text(db);
  await db.schema.alterTable('uploads').addColumn('multipart_id', t).execute();
  // The sweep pages through uploads that complete by themselves, oldest first.
  await db.schema
    .createIndex('uploads_auto_complete')
    .on('uploads')
    .columns(['auto_complete', 'status', 'created_at', 'id'])
    .execute();
  await db.schema
    .createTable('locks')
    .addColumn('name', t, (c) => c.primaryKey())
    .addColumn('owner', t, (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('release_requested', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
}
