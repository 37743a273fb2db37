import type { Kysely } from 'kysely';
import { text } from './text.js';

// App integration: the events outbox, webhook endpoints and their deliveries.
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = text(db);
  // seq comes from the `events` counter, bumped inside the transaction that records the
  // change; the counter's row lock makes events commit in seq order, so a reader paging with
  // `after=seq` never skips an event that commits late.
  await db.schema
    .createTable('events')
    .addColumn('seq', 'bigint', (c) => c.primaryKey())
    .addColumn('id', t, (c) => c.notNull().unique())
    .addColumn('account_id', t, (c) => c.notNull())
    .addColumn('type', t, (c) => c.notNull())
    .addColumn('data', t, (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('events_account_seq').on('events').columns(['account_id', 'seq']).execute();
  await db.schema.createIndex('events_created_at').on('events').column('created_at').execute();

  await db.schema
    .createTable('webhooks')
    .addColumn('id', t, (c) => c.primaryKey())
    .addColumn('account_id', t, (c) => c.notNull())
    .addColumn('url', t, (c) => c.notNull())
    .addColumn('description', t, (c) => c.notNull().defaultTo(''))
    // JSON array of type patterns; [] means every type.
    .addColumn('event_types', t, (c) => c.notNull().defaultTo('[]'))
    .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
    // The signing secret, encrypted with a key derived from the server secret (it must be
    // usable to sign, so it cannot be stored hashed).
    .addColumn('secret', t, (c) => c.notNull())
    .addColumn('disabled_reason', t)
    .addColumn('failing_since', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('webhooks_account').on('webhooks').columns(['account_id', 'enabled']).execute();

  // One row per (endpoint, event): its id is the webhook-id every attempt and replay sends,
  // so a receiver deduplicates on it.
  await db.schema
    .createTable('webhook_deliveries')
    .addColumn('id', t, (c) => c.primaryKey())
    .addColumn('webhook_id', t, (c) => c.notNull())
    .addColumn('account_id', t, (c) => c.notNull())
    .addColumn('event_seq', 'bigint', (c) => c.notNull())
    .addColumn('event_type', t, (c) => c.notNull())
    // pending, succeeded, failed (gave up), cancelled (endpoint deleted or disabled)
    .addColumn('status', t, (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'bigint')
    .addColumn('last_attempt_at', 'bigint')
    .addColumn('response_status', 'integer')
    .addColumn('response_body', t)
    .addColumn('latency_ms', 'integer')
    .addColumn('last_error', t)
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('webhook_deliveries_endpoint_event')
    .on('webhook_deliveries')
    .columns(['webhook_id', 'event_seq'])
    .unique()
    .execute();
  // Event pruning keeps events a pending delivery still needs.
  await db.schema
    .createIndex('webhook_deliveries_event')
    .on('webhook_deliveries')
    .columns(['event_seq', 'status'])
    .execute();
  await db.schema
    .createIndex('webhook_deliveries_endpoint_created')
    .on('webhook_deliveries')
    .columns(['webhook_id', 'created_at', 'id'])
    .execute();
}
