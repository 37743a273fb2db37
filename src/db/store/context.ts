import type { Kysely, Transaction } from 'kysely';
import type { IdSource } from '../../core/ids.js';
import type { Dialect } from '../connect.js';
import type { Database } from '../schema.js';

/** What every table's queries share: the Kysely instance and which SQL dialect it speaks. */
export interface SqlContext {
  db: Kysely<Database>;
  dialect: Dialect;
  /** Ids of rows the store makes itself (events, webhook deliveries). */
  ids: IdSource;
}

/** Rows per INSERT: a fixed size keeps the SQL text (and its prepared statement) the same. */
export const INSERT_CHUNK = 100;

/** Adds `by` to a named counter and returns the new value, inside the caller's transaction. */
export async function bumpCounter(trx: Transaction<Database>, name: string, by: number): Promise<number> {
  const row = await trx
    .insertInto('counters')
    .values({ name, value: by })
    .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({ value: eb('counters.value', '+', by) })))
    .returning('value')
    .executeTakeFirstOrThrow();
  return Number(row.value);
}

/** SQLite and PostgreSQL report a unique-key clash by code; never by message text. */
export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === '23505';
}
