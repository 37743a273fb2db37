import { type Kysely, PostgresIntrospector, sql } from 'kysely';

/**
 * The type for text columns. SQLite compares text bytewise (BINARY); PostgreSQL uses the
 * database's locale unless told otherwise, which would order ids, cursors and names
 * differently (and `id < cursor` would skip or repeat rows). `COLLATE "C"` is bytewise on
 * any PostgreSQL database, whatever locale it was created with. Every text column gets
 * it, so two columns compared with each other never disagree on their collation.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations run on any schema
export function text(db: Kysely<any>) {
  return db.introspection instanceof PostgresIntrospector ? sql`text collate "C"` : 'text';
}
