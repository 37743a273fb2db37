import { execFile } from 'node:child_process';
import { REPO } from './process.js';
import type { TestWharf } from './wharf.js';

/**
 * `wharf …` (an admin command) as an operator runs it where the server runs: from source, on
 * the same data dir, database and storage as the test's server, with no other WHARF_ setting
 * of the test process than `extraEnv`.
 */
export function wharfCli(
  w: TestWharf,
  args: string[],
  extraEnv: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('WHARF_')) env[name] = value;
  Object.assign(env, { WHARF_DATA_DIR: w.dataDir, ...w.backingEnv, ...extraEnv });
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      { cwd: REPO, env, encoding: 'utf8' },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? -1) : 0, stdout, stderr }),
    );
  });
}
