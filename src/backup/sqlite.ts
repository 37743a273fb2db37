/**
 * The database side of `wharf data backup` (src/backup/backup.ts): a consistent copy of a live
 * SQLite database, and what that copy says storage must hold. SQL against the SQLite file
 * itself, beside the running server's connections, so it lives with the adapters, not the core.
 */
import SQLite from 'better-sqlite3';
import { createDatabaseFile } from '../db/file-mode.js';

/** An object the database refers to: an asset's bytes or a stored rendering's. */
export interface ReferencedObject {
  key: string;
  size: number;
  sha256: string;
  /** Recorded for assets; renderings carry only a SHA-256. */
  md5: string | null;
  what: 'asset' | 'rendering';
  /** The asset (a rendering's: the asset it was made from). */
  assetId: string;
  accountId: string;
  /** The asset's name; none for a rendering. */
  name: string | null;
}

/**
 * Copies the live database at `livePath` into `target` (which must not exist) as one read
 * transaction sees it. `VACUUM INTO` is SQLite's own consistent copy: in WAL mode a reader
 * blocks no writer, so the server keeps committing meanwhile, and the copy is compact. SQLite's
 * online backup API was the other choice; it starts over whenever another connection writes,
 * which on a busy server could be forever.
 */
export function snapshotDatabase(livePath: string, target: string): void {
  const db = new SQLite(livePath, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    db.prepare('VACUUM INTO ?').run(target);
  } finally {
    db.close();
  }
}

/**
 * Whether a Wharf has run on the live database at `livePath`: it has had migrations
 * (db/migrate.ts). An empty file has none, nor tables to copy objects from. A schema behind or
 * ahead of this version's is still Wharf's, and copied as it is.
 */
export function hasWharfSchema(livePath: string): boolean {
  const db = new SQLite(livePath, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const table = db.prepare(
      `select 1 from sqlite_master where type = 'table' and name = 'wharf_migrations'`,
    );
    return (
      table.get() !== undefined && db.prepare('select 1 from wharf_migrations limit 1').get() !== undefined
    );
  } finally {
    db.close();
  }
}

/** Every object the database at `path` refers to, once per storage key (dedupe shares keys). */
export function referencedObjects(path: string): Map<string, ReferencedObject> {
  const db = new SQLite(path, { readonly: true, fileMustExist: true });
  try {
    const rows = db
      .prepare(
        `select storage_key as key, size, sha256, md5, 'asset' as what,
                id as assetId, account_id as accountId, name
           from assets
         union all
         select storage_key, size, sha256, null, 'rendering', asset_id, account_id, null
           from derivatives`,
      )
      .all() as ReferencedObject[];
    const objects = new Map<string, ReferencedObject>();
    // An asset's record (with its MD5) wins over a rendering's at the same key.
    for (const row of rows) if (!objects.has(row.key) || row.what === 'asset') objects.set(row.key, row);
    return objects;
  } finally {
    db.close();
  }
}

/** Which of `keys` the database at `path` still refers to. */
export function stillReferenced(path: string, keys: string[]): Set<string> {
  const db = new SQLite(path, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const find = db.prepare(
      `select 1 from assets where storage_key = @key
       union all select 1 from derivatives where storage_key = @key limit 1`,
    );
    return new Set(keys.filter((key) => find.get({ key }) !== undefined));
  } finally {
    db.close();
  }
}

/**
 * Holds `path` (a lock file) for this process until `release`, or answers false when another
 * process holds it. SQLite's own file lock, so a process that dies releases it with no stale
 * lock file to clean up. It answers at once (no busy timeout; better-sqlite3 waits 5 s unless
 * told): an operator who started a second backup into the same directory is told straight
 * away, rather than after 5 s, or not at all when the first ended meanwhile.
 */
export function holdLock(path: string): { release(): void } | false {
  createDatabaseFile(path);
  const db = new SQLite(path, { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('begin exclusive');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') return false;
    throw err;
  }
  return { release: () => db.close() };
}
