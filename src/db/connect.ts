import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, type SqliteDatabase, SqliteDialect } from 'kysely';
import type { Database } from './schema.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Connection {
  db: Kysely<Database>;
  dialect: Dialect;
}

/** `sqlite:///abs/path.db`, `sqlite:relative.db` or a bare path; PostgreSQL comes with scale-out. */
export function connect(url: string): Connection {
  if (/^postgres(ql)?:\/\//.test(url)) {
    throw new Error('PostgreSQL support is not built yet; use a SQLite path for WHARF_DATABASE_URL.');
  }
  const path = url.replace(/^sqlite:(\/\/)?/, '');
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const sqlite = new SQLite(path);
  // WAL lets readers run alongside the writer. synchronous=FULL makes each commit durable
  // before it is acknowledged: an asset that was reported created survives a power cut.
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  return {
    db: new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) }),
    dialect: 'sqlite',
  };
}

/**
 * Kysely asks better-sqlite3 to prepare every query anew, which costs more than running
 * it. Queries come from a fixed set of shapes, so compiled statements are kept. (A
 * statement is never shared mid-use: better-sqlite3 runs each one synchronously.)
 */
function withStatementCache(sqlite: SQLite.Database): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      let statement = cache.get(sql);
      if (!statement) {
        statement = sqlite.prepare(sql);
        if (cache.size >= 500) cache.clear();
        cache.set(sql, statement);
      }
      return statement;
    },
  } as SqliteDatabase;
}
