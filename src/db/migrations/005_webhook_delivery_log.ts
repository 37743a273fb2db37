import type { Kysely } from 'kysely';
import { text } from './text.js';

// Webhook delivery: which job currently sends a delivery (a replay supersedes the one before),
// the log of every attempt, and the signing secret a rotation keeps valid for a while.
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = text(db);
  // A rotated-out secret still signs (a second `v1,` signature) until it expires, so receivers
  // can switch secrets without dropping deliveries.
  await db.schema.alterTable('webhooks').addColumn('previous_secret', t).execute();
  await db.schema.alterTable('webhooks').addColumn('previous_secret_expires_at', 'bigint').execute();
  // Only this job may settle the delivery; an older job (replayed since) only logs its attempt.
  await db.schema.alterTable('webhook_deliveries').addColumn('job_id', t).execute();
  // The delivery log pages newest first by id (time-ordered).
  await db.schema
    .createIndex('webhook_deliveries_endpoint_id')
    .on('webhook_deliveries')
    .columns(['webhook_id', 'id'])
    .execute();
  // Retention prunes finished deliveries by age.
  await db.schema
    .createIndex('webhook_deliveries_created')
    .on('webhook_deliveries')
    .column('created_at')
    .execute();

  await db.schema
    .createTable('webhook_attempts')
    .addColumn('id', t, (c) => c.primaryKey())
    .addColumn('delivery_id', t, (c) => c.notNull())
    .addColumn('webhook_id', t, (c) => c.notNull())
    .addColumn('job_id', t, (c) => c.notNull())
    .addColumn('attempted_at', 'bigint', (c) => c.notNull())
    // succeeded, failed, gone (410: the endpoint was disabled)
    .addColumn('outcome', t, (c) => c.notNull())
    .addColumn('response_status', 'integer')
    .addColumn('response_body', t)
    .addColumn('latency_ms', 'integer')
    .addColumn('error', t)
    .execute();
  await db.schema
    .createIndex('webhook_attempts_delivery')
    .on('webhook_attempts')
    .columns(['delivery_id', 'attempted_at'])
    .execute();
  // "Nothing succeeded since this delivery's first attempt" (the disabling rule) reads by endpoint.
  await db.schema
    .createIndex('webhook_attempts_endpoint')
    .on('webhook_attempts')
    .columns(['webhook_id', 'outcome', 'id'])
    .execute();
}
