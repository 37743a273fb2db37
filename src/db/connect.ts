import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { type DatabaseConnection, Kysely, PostgresDialect, type SqliteDatabase, SqliteDialect } from 'kysely';
import pg from 'pg';
import { WharfError } from '../core/errors.js';
import type { Database } from './schema.js';
import { parseDatabaseUrl } from './url.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Connection {
  db: Kysely<Database>;
  dialect: Dialect;
}

/** `postgres://…` / `postgresql://…`, or SQLite: `sqlite:///abs/path.db`, `sqlite:relative.db` or a bare path. */
export function connect(url: string): Connection {
  const target = parseDatabaseUrl(url);
  // The configuration has refused such a URL already; this guards other callers.
  if ('problem' in target) throw new Error(`The database URL ${target.problem}.`);
  if (target.dialect === 'postgres') return connectPostgres(target.url);
  const path = target.path;
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

const INT8_OID = 20;

function connectPostgres(url: string): Connection {
  // bigint columns hold epoch milliseconds and byte sizes, all far below 2^53, and counts
  // come back as int8 too: numbers, as SQLite gives them, rather than pg's default strings.
  // Set on this pool only, not on pg's global parsers.
  const types = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === INT8_OID && format !== 'binary'
        ? (value: string) => Number(value)
        : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
  };
  const pool = new pg.Pool({ connectionString: url, types });
  // An idle pooled connection that the server closes (a restart, a failover, an admin's
  // pg_terminate_backend) is reported here; unheard, it would crash the process. The pool
  // has already dropped it and opens a new one for the next query.
  pool.on('error', () => {});
  const dialect = new PostgresDialect({ pool, onCreateConnection: refuseNul });
  return { db: new Kysely<Database>({ dialect }), dialect: 'postgres' };
}

/**
 * PostgreSQL text cannot hold U+0000, and a query that binds one fails as a server error.
 * SQLite stores and compares it like any other character. No valid id, name or cursor
 * contains it, so such a value is refused as invalid input, the same on every query.
 */
async function refuseNul(connection: DatabaseConnection): Promise<void> {
  const execute = connection.executeQuery.bind(connection);
  connection.executeQuery = (query) => {
    if (query.parameters.some((p) => typeof p === 'string' && p.includes('\0'))) {
      return Promise.reject(new WharfError('VALIDATION_FAILED', 'Text may not contain NUL characters.'));
    }
    return execute(query);
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
