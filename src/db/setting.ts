import { join } from 'node:path';
import type { Config } from '../config.js';

/**
 * The setting that chose the database, as a message about it names it: WHARF_DATABASE_URL when
 * the operator set it; otherwise they set only WHARF_DATA_DIR (or not even that), and the
 * database is the embedded default's `wharf.db` in it (config.ts), named with its path. Shared
 * by the server's messages (main.ts) and the admin CLI's (cli/command.ts), so that both name
 * what the operator is to check, and neither a variable they never set.
 */
export function databaseSetting(env: NodeJS.ProcessEnv, config: Config): { name: string; label: string } {
  // Empty is unset, as config.ts reads it.
  if (env.WHARF_DATABASE_URL) return { name: 'WHARF_DATABASE_URL', label: 'WHARF_DATABASE_URL' };
  return { name: 'WHARF_DATA_DIR', label: `WHARF_DATA_DIR (${join(config.dataDir, 'wharf.db')})` };
}
