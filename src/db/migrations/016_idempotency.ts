import type { Kysely } from 'kysely';
import { text } from './text.js';

// Idempotency keys (see core/idempotency.ts): what a creating request answered, kept under the
// key its client sent, so that the same request sent again (its answer lost to a cut
// connection or a proxy) is answered the same instead of creating a second upload. Scoped by
// account and by the credential (API key or upload token) that sent it: one client's keys
// never meet another's. `state` is 'running' while the first request is being answered (its
// lease, `lease_until`, renewed while it runs, lets a retry take over from a node that died
// meanwhile) and 'done' once its answer is kept; `expires_at` is when the key may be used afresh.
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = text(db);
  await db.schema
    .createTable('idempotency_records')
    .addColumn('account_id', t, (c) => c.notNull().references('accounts.id'))
    .addColumn('principal_id', t, (c) => c.notNull())
    .addColumn('idempotency_key', t, (c) => c.notNull())
    .addColumn('fingerprint', t, (c) => c.notNull())
    .addColumn('state', t, (c) => c.notNull())
    // Which claim holds it (a random id per claim): a request overtaken after its hold lapsed
    // can neither answer nor let go of the key its successor holds.
    .addColumn('holder', t, (c) => c.notNull())
    .addColumn('status', 'integer')
    .addColumn('response', t)
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('lease_until', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('idempotency_records_pk', ['account_id', 'principal_id', 'idempotency_key'])
    .execute();
  // The sweep removes records past their expiry.
  await db.schema
    .createIndex('idempotency_records_expires')
    .on('idempotency_records')
    .column('expires_at')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('idempotency_records').execute();
}
