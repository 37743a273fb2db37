import { CompiledQuery, type Insertable, type Kysely, type Transaction } from 'kysely';
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

/**
 * Inserts rows of one shape (every row has the same columns, in the same order, none
 * undefined) in chunks of INSERT_CHUNK. Kysely's insert builder parses every value of every
 * row into its query tree before compiling it — about 3 µs a row, a fifth of what a presigned
 * URL costs in a batch — although a chunk's SQL depends only on the columns and the row
 * count. So the SQL text is made once per shape (by Kysely's own builder and compiler, from
 * the first chunk of that shape) and each later chunk only binds its values to it. Rows of
 * any other shape go through the builder as usual.
 */
export async function insertRows<T extends keyof Database & string>(
  trx: Transaction<Database>,
  table: T,
  rows: readonly Insertable<Database[T]>[],
): Promise<void> {
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
    const chunk = rows.slice(i, i + INSERT_CHUNK);
    const columns = Object.keys(chunk[0]!);
    const values = flatValues(chunk, columns);
    if (!values) {
      await build(trx, table, chunk).execute();
      continue;
    }
    const shape = `${table}\u0000${chunk.length}\u0000${columns.join('\u0000')}`;
    // Texts are per dialect: the adapter is one per Kysely instance, and one per dialect.
    const adapter = trx.getExecutor().adapter;
    let texts = insertTexts.get(adapter);
    if (!texts) {
      texts = new Map();
      insertTexts.set(adapter, texts);
    }
    let text = texts.get(shape);
    if (text === undefined) {
      const compiled = build(trx, table, chunk).compile();
      // The compiled parameters must be exactly the values in row-major column order,
      // or this shape is not one a text can be reused for.
      if (!sameValues(compiled.parameters, values)) {
        await trx.executeQuery(compiled);
        continue;
      }
      text = compiled.sql;
      if (texts.size >= 1000) texts.clear();
      texts.set(shape, text);
    }
    await trx.executeQuery(CompiledQuery.raw(text, values));
  }
}

function build<T extends keyof Database & string>(
  trx: Transaction<Database>,
  table: T,
  rows: readonly Insertable<Database[T]>[],
) {
  // Kysely cannot relate a generic table's Insertable to its values() parameter; the rows are
  // typed by the caller's table.
  return trx.insertInto(table).values(rows as never);
}

/** SQL text of a bulk insert by Kysely instance (its adapter), then table, row count and columns. */
const insertTexts = new WeakMap<object, Map<string, string>>();

function flatValues(rows: readonly object[], columns: string[]): unknown[] | undefined {
  const values: unknown[] = [];
  for (const row of rows) {
    const record = row as Record<string, unknown>;
    const keys = Object.keys(record);
    if (keys.length !== columns.length) return undefined;
    for (let c = 0; c < columns.length; c++) {
      if (keys[c] !== columns[c]) return undefined;
      const value = record[columns[c]!];
      if (value === undefined || (typeof value === 'object' && value !== null)) return undefined;
      values.push(value);
    }
  }
  return values;
}

function sameValues(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

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
