import { existsSync } from 'node:fs';
import type { DatabaseTarget } from './url.js';

/**
 * Why a command on the server's data finds no database to work on, or undefined when there is
 * one. Opening a SQLite file that is not there creates it, empty: a command run without the
 * server's environment (no WHARF_DATA_DIR in a production install's directory, a mistyped one)
 * would then work on a database of its own, and its keys would be unknown to the server.
 * PostgreSQL has nothing to check here (its server holds the database), nor has `:memory:`.
 * `consequence` says what that means to the command, e.g. "nothing to back up"; `setting` is the
 * one that chose the path (see databaseSetting), which the operator is to check.
 */
export function missingDatabase(
  target: DatabaseTarget,
  consequence: string,
  setting: string,
): string | undefined {
  if (target.dialect !== 'sqlite' || target.path === ':memory:' || existsSync(target.path)) return undefined;
  return `There is no database at ${target.path}: ${consequence} (is ${setting} right?).`;
}
