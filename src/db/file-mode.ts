import { closeSync, openSync, statSync } from 'node:fs';

/**
 * The mode of a SQLite file Wharf creates. The database holds the server secret
 * (`settings.server_secret`, unless WHARF_SECRET is set), API key hashes and every record:
 * only Wharf's own user reads it. SQLite would create it 0644 (less the umask); its `-wal`,
 * `-shm` and `-journal` files take the database file's mode, so they follow this one.
 */
export const DATABASE_FILE_MODE = 0o600;

/**
 * Creates `path` empty with DATABASE_FILE_MODE unless it exists, for SQLite to open next (an
 * empty file is a new database to SQLite, and `VACUUM INTO` accepts one as its target). Given
 * here, the mode is private whatever umask the caller runs with (a umask only takes bits away). A
 * file that exists keeps its mode: an operator's choice is not changed (see
 * exposedDatabaseFiles). Any other failure is left for SQLite's own open to report, as it
 * always has (it cannot create the file either).
 */
export function createDatabaseFile(path: string): void {
  try {
    closeSync(openSync(path, 'wx', DATABASE_FILE_MODE));
  } catch {
    // EEXIST: kept as it is. Anything else: SQLite says it.
  }
}

/**
 * Those of the database file and its `-wal` and `-shm` that give other users of the machine
 * any access: an install made before Wharf created them private (SQLite's 0644). Missing files
 * are not listed.
 */
export function exposedDatabaseFiles(path: string): Array<{ file: string; mode: string }> {
  const exposed: Array<{ file: string; mode: string }> = [];
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    let mode: number;
    try {
      mode = statSync(file).mode & 0o777;
    } catch {
      continue;
    }
    if ((mode & 0o007) !== 0) exposed.push({ file, mode: mode.toString(8).padStart(4, '0') });
  }
  return exposed;
}
