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
 * count, so its text is reused (see runReused). Rows of any other shape go through the builder
 * as usual.
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
    const shape = `insert\u0000${table}\u0000${chunk.length}\u0000${columns.join('\u0000')}`;
    await runReused(trx, shape, values, () => build(trx, table, chunk));
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

/** SQL texts by Kysely instance (its adapter: one per dialect), then by shape (see runReused). */
const reusedTexts = new WeakMap<object, Map<string, string>>();

/**
 * Runs a statement whose SQL text depends only on `shape`, with `parameters` in the order the
 * compiled statement binds them. The first time, Kysely builds and compiles it (`build`, with
 * these very values); its text is kept if its parameters are exactly `parameters`, and later
 * runs only bind new values to it. For the statements every group commit runs: building a query
 * costs more than SQLite takes to run one of these (a profile of the SQLite thread at one file
 * per call put 43 % of its time in JavaScript, most of it around the SQL).
 */
export async function runReused<R = Record<string, unknown>>(
  trx: Transaction<Database>,
  shape: string,
  parameters: readonly unknown[],
  build: () => Compilable,
): Promise<R[]> {
  const adapter = trx.getExecutor().adapter;
  let texts = reusedTexts.get(adapter);
  if (!texts) {
    texts = new Map();
    reusedTexts.set(adapter, texts);
  }
  const text = texts.get(shape);
  if (text !== undefined) {
    return (await trx.executeQuery<R>(CompiledQuery.raw(text, [...parameters]))).rows;
  }
  const compiled = build().compile();
  // Only a text whose parameters are exactly these values can be reused with others.
  if (sameValues(compiled.parameters, parameters)) {
    if (texts.size >= 1000) texts.clear();
    texts.set(shape, compiled.sql);
  }
  return (await trx.executeQuery<R>(compiled as CompiledQuery<R>)).rows;
}

interface Compilable {
  compile(): CompiledQuery<unknown>;
}

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

/**
 * Adds to several named counters in one statement (`bumps`: name → amount) and returns each
 * one's new value, inside the caller's transaction. The rows are written, and so locked on
 * PostgreSQL, in name order: two transactions bumping some of the same counters lock them in the
 * same order, so they wait for each other rather than deadlock. For a group commit that numbers
 * the rows of several accounts, each from its own counter: one statement, however many accounts.
 */
export async function bumpCounters(
  trx: Transaction<Database>,
  bumps: ReadonlyMap<string, number>,
): Promise<Map<string, number>> {
  const rows = [...bumps]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => ({ name, value }));
  const answer = await runReused<{ name: string; value: number | string }>(
    trx,
    `bump-counters:${rows.length}`,
    rows.flatMap((r) => [r.name, r.value]),
    () =>
      trx
        .insertInto('counters')
        .values(rows)
        .onConflict((oc) =>
          oc
            .column('name')
            .doUpdateSet((eb) => ({ value: eb('counters.value', '+', eb.ref('excluded.value')) })),
        )
        .returning(['name', 'value']),
  );
  return new Map(answer.map((r) => [r.name, Number(r.value)]));
}

/** SQLite and PostgreSQL report a unique-key clash by code; never by message text. */
export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === '23505';
}
