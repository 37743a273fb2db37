import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import {
  type DatabaseConnection,
  Kysely,
  type LogConfig,
  PostgresDialect,
  SqliteAdapter,
  type SqliteDatabase,
  SqliteDialect,
  sql,
} from 'kysely';
import pg from 'pg';
import { WharfError } from '../core/errors.js';
import { isConnectionFailure, serviceUnavailable, storageFull } from '../core/unavailable.js';
import { createDatabaseFile } from './file-mode.js';
import type { Database } from './schema.js';
import { parseDatabaseUrl } from './url.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Connection {
  db: Kysely<Database>;
  dialect: Dialect;
}

export interface ConnectOptions {
  /** A second, read-only connection to a SQLite file that exists (see db/store-thread.ts). */
  readOnly?: boolean;
  /** Kysely's query log (tests read the SQL a store method sends, to check its plan). */
  log?: LogConfig;
  /**
   * SQLite: open the file only if it exists (a restarted database thread, see
   * db/store-thread.ts), never create an empty one in its place.
   */
  mustExist?: boolean;
  /**
   * SQLite: leave the file's journal mode as it is, for the caller to set WAL mode (useWal)
   * once it has checked that the database is Wharf's. Setting it writes SQLite's header into an
   * empty file, which a command that then refuses it (no Wharf schema) would leave grown.
   */
  deferWal?: boolean;
}

/**
 * How long a statement waits for another connection's lock (another process writing to the
 * same file) before it fails with SQLITE_BUSY, answered 503 (see sqliteQueries).
 */
export const BUSY_TIMEOUT_MS = 5_000;

/** `postgres://…` / `postgresql://…`, or SQLite: `sqlite:///abs/path.db`, `sqlite:relative.db` or a bare path. */
export function connect(url: string, options: ConnectOptions = {}): Connection {
  const target = parseDatabaseUrl(url);
  // The configuration has refused such a URL already; this guards other callers.
  if ('problem' in target) throw new Error(`The database URL ${target.problem}.`);
  if (target.dialect === 'postgres') return connectPostgres(target.url, options.log);
  const path = target.path;
  if (options.readOnly) {
    // A second connection beside the writer (see db/store-thread.ts): the file exists and
    // is in WAL mode already, and any write through it fails (SQLITE_READONLY).
    const reader = new SQLite(path, { readonly: true, fileMustExist: true });
    reader.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    return sqliteConnection(reader, options.log);
  }
  if (path !== ':memory:' && !options.mustExist) {
    // Private to Wharf's user, as the data directory is (see bootstrap.ts checkDataDir), and
    // created before SQLite opens it: SQLite would make it readable by every user.
    mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
    createDatabaseFile(path);
  }
  const sqlite = new SQLite(path, { fileMustExist: options.mustExist === true });
  // WAL lets readers run alongside the writer. synchronous=FULL makes each commit durable
  // before it is acknowledged: an asset that was reported created survives a power cut.
  if (!options.deferWal) sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  // Temporary storage in memory, not in files. Every batch of uploads and events is a
  // multi-row INSERT inside a transaction, which journals the pages it changes so that it
  // alone can be undone; as a file, that cost a write() per page: 9 % of the SQLite thread's
  // time under batched presigning, and 7 % less CPU per recorded upload without it. Such a
  // journal is bounded by the pages one statement touches. The server's listings, whose
  // sorts could spill, run on the read-only connection, which keeps files.
  sqlite.pragma('temp_store = MEMORY');
  return sqliteConnection(sqlite, options.log);
}

/** WAL mode, as connect() sets it, on a SQLite connection opened with `deferWal`. */
export async function useWal(connection: Connection): Promise<void> {
  if (connection.dialect === 'sqlite') await sql`pragma journal_mode = WAL`.execute(connection.db);
}

/**
 * SQLite's DDL is transactional (ALTER TABLE, CREATE and DROP INDEX roll back like any write),
 * but Kysely's adapter says otherwise, so its migrator ran each statement of a migration on its
 * own and recorded the migration only at the end: a process killed mid-way (the OOM killer, a
 * supervisor's stop timeout while a large table is rewritten) left half a migration committed,
 * and every later start failed on its first statement ("duplicate column name"). Saying it is
 * makes the migrator run the pending migrations in one transaction, as on PostgreSQL: all of
 * them, or none. No migration of Wharf's uses what a transaction refuses (VACUUM, or the
 * foreign_keys pragma, which a transaction ignores).
 */
class TransactionalDdlSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

class WharfSqliteDialect extends SqliteDialect {
  override createAdapter(): SqliteAdapter {
    return new TransactionalDdlSqliteAdapter();
  }
}

function sqliteConnection(sqlite: SQLite.Database, log: LogConfig | undefined): Connection {
  const dialect = new WharfSqliteDialect({
    database: withStatementCache(sqlite),
    onCreateConnection: sqliteQueries,
  });
  return { db: new Kysely<Database>({ dialect, log }), dialect: 'sqlite' };
}

const INT8_OID = 20;

function connectPostgres(url: string, log: LogConfig | undefined): Connection {
  // bigint columns hold epoch milliseconds and byte sizes, all far below 2^53, and counts
  // come back as int8 too: numbers, as SQLite gives them, rather than pg's default strings.
  // Set on this pool only, not on pg's global parsers.
  const types = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === INT8_OID && format !== 'binary'
        ? (value: string) => Number(value)
        : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
  };
  const pool = new pg.Pool({
    connectionString: url,
    types,
    Client: WharfPgClient,
    // A database that does not answer is refused quickly rather than waited for.
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
  });
  // An idle pooled connection that the server closes (a restart, a failover, an admin's
  // pg_terminate_backend) is reported here; unheard, it would crash the process. The pool
  // has already dropped it and opens a new one for the next query.
  pool.on('error', () => {});
  const dialect = new PostgresDialect({
    pool: unavailableWhenUnreachable(pool),
    onCreateConnection: refuseNul,
  });
  return { db: new Kysely<Database>({ dialect, log }), dialect: 'postgres' };
}

const CONNECT_TIMEOUT_MS = 5_000;
const DISK_FULL_STATE = '53100';
/** No query of Wharf's runs this long; one that does is on a connection that stopped answering. */
const QUERY_TIMEOUT_MS = 30_000;

/** PostgreSQL's own words for "not now": connection exceptions, shutting down or starting, full. */
function isUnavailableState(sqlState: string | undefined): boolean {
  return (
    sqlState !== undefined &&
    (sqlState.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(sqlState))
  );
}

/**
 * A failure to get a connection is the database being away (refused, timed out, dropped while
 * connecting), unless the server itself answered with a reason (bad credentials, no such
 * database: configuration, reported as it is).
 */
function unavailableWhenUnreachable(pool: pg.Pool): pg.Pool {
  const connect = pool.connect.bind(pool);
  return Object.assign(Object.create(pool) as pg.Pool, {
    async connect() {
      try {
        return await connect();
      } catch (err) {
        if (err instanceof pg.DatabaseError && !isUnavailableState(err.code)) throw err;
        throw serviceUnavailable('database', err);
      }
    },
    end: () => pool.end(),
  });
}

/**
 * A pg client that knows when its connection is gone, so a query that failed because of that
 * is reported as the database being unavailable (503), while a query the database refused
 * stays what it is. pg reports a dropped connection with errors that carry no code; the
 * client's own 'error'/'end' events (emitted before queries are failed) say it for sure.
 * It also bounds each query: pg's query_timeout leaves the connection in use, so on a
 * connection that stopped answering every later query would wait too.
 */
class WharfPgClient extends pg.Client {
  lost = false;

  constructor(config?: string | pg.ClientConfig) {
    super(config);
    // Also keeps a checked-out client's connection error from crashing the process (the pool
    // listens only to idle clients).
    this.on('error', () => {
      this.lost = true;
    });
    this.on('end', () => {
      this.lost = true;
    });
  }

  classify(err: unknown): unknown {
    if (err instanceof pg.DatabaseError) {
      // 53100 disk_full: the database server's disk, refused like a full disk of Wharf's own.
      if (err.code === DISK_FULL_STATE) return storageFull(err);
      return isUnavailableState(err.code) ? serviceUnavailable('database', err) : err;
    }
    if (this.lost || isConnectionFailure(err)) return serviceUnavailable('database', err);
    return err;
  }
}

// Kysely runs every query as `client.query(sql, parameters)`, which returns a promise.
const clientQuery = pg.Client.prototype.query;
WharfPgClient.prototype.query = function (this: WharfPgClient, ...args: unknown[]) {
  const result = (clientQuery as (...a: unknown[]) => unknown).apply(this, args);
  if (!(result instanceof Promise)) return result;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      // Given up: the pool drops an ending client when it is released.
      this.lost = true;
      this.end().catch(() => {});
      reject(serviceUnavailable('database', new Error(`no answer to a query in ${QUERY_TIMEOUT_MS} ms`)));
    }, QUERY_TIMEOUT_MS);
    timer.unref();
  });
  result.catch(() => {}); // Its failure after the deadline is the deadline's.
  return Promise.race([result, deadline]).then(
    (value) => {
      clearTimeout(timer);
      return value;
    },
    (err: unknown) => {
      clearTimeout(timer);
      throw this.classify(err);
    },
  );
} as typeof clientQuery;

/**
 * PostgreSQL text cannot hold U+0000, and a query that binds one fails as a server error.
 * No valid id, name or cursor contains it, so such a value is refused as invalid input, the
 * same on every query. SQLite would store and compare it like any other character: refused
 * there too, so every text field (a key's name, a webhook's description, a listing's prefix,
 * a seed API's) is taken or refused alike on both deployments.
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
 * SQLite's own refusals of a query, as Wharf's, told by the error's code (never its message).
 * The database is unavailable for the moment (503, with Retry-After), not a bug of Wharf's
 * (500), when:
 * - SQLITE_CANTOPEN: a file SQLite needs (its WAL index, a temp file for a sort) could not be
 *   opened, which on a database open and working is the process out of file descriptors under
 *   load (SQLite keeps no errno);
 * - SQLITE_BUSY (and its extended codes): another process (a `sqlite3` shell's open write
 *   transaction, a script, a slow commit of the CLI's) held the write lock for longer than the
 *   busy timeout (BUSY_TIMEOUT_MS), or wrote after this transaction read (BUSY_SNAPSHOT). It
 *   was answered 500 while the requests behind it in the SQLite thread's queue, whose wait
 *   started later, outlasted the lock and succeeded. The transaction is rolled back (see
 *   withStatementCache): nothing of it is kept, and the client's retry is safe;
 * - SQLITE_LOCKED (and its extended codes): the same, between connections of one process.
 */
async function sqliteQueries(connection: DatabaseConnection): Promise<void> {
  await refuseNul(connection);
  const execute = connection.executeQuery.bind(connection);
  // better-sqlite3 runs (and fails) a query before the call returns: a throw, not a rejection.
  connection.executeQuery = async (query) => {
    try {
      return await execute(query);
    } catch (err) {
      throw isSqliteUnavailable(err) ? serviceUnavailable('database', err) : err;
    }
  };
}

/**
 * Whether `err` is one of SQLite's "not now" (see sqliteQueries). better-sqlite3 gives the
 * extended code: any of SQLITE_BUSY's and SQLITE_LOCKED's is still the lock of another
 * connection; SQLITE_CANTOPEN's (a directory, a path too long) are not load, and stay what they are.
 */
function isSqliteUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  if (code === 'SQLITE_CANTOPEN') return true;
  return ['SQLITE_BUSY', 'SQLITE_LOCKED'].some((lock) => code === lock || code.startsWith(`${lock}_`));
}

/**
 * Kysely asks better-sqlite3 to prepare every query anew, which costs more than running
 * it. Queries come from a fixed set of shapes, so compiled statements are kept. (A
 * statement is never shared mid-use: better-sqlite3 runs each one synchronously.)
 */
function withStatementCache(sqlite: SQLite.Database): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  // SQLite rolls a transaction back by itself after some errors (SQLITE_FULL, SQLITE_IOERR,
  // SQLITE_NOMEM, a busy commit). Kysely's ROLLBACK then fails ("cannot rollback - no
  // transaction is active"), and that error replaces the one that mattered: a full disk was
  // answered as a bare 500. As Rails does, only a transaction still open is rolled back.
  const rollback = sqlite.prepare('rollback');
  const rollbackIfOpen = {
    reader: false,
    run: () => (sqlite.inTransaction ? rollback.run() : { changes: 0, lastInsertRowid: 0 }),
  };
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      if (sql === 'rollback') return rollbackIfOpen;
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
