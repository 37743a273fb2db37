import { rmSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { processAlive } from '../../src/blobs/process-temp.js';
import { onCleanup } from './cleanup.js';

const PREFIX = 'wharf-bench-';
const OWNER = 'owner.pid';

/**
 * This run's temporary directory, removed at exit. A run killed outright (SIGKILL) cannot
 * clean up, so each directory records its owner's pid and the next run removes
 * directories whose owner is gone: gigabytes of stale data do not pile up in /tmp.
 */
export async function createWorkDir(root: string, log: (message: string) => void): Promise<string> {
  for (const entry of await readdir(root)) {
    if (!entry.startsWith(PREFIX)) continue;
    const dir = join(root, entry);
    const owner = Number(await readFile(join(dir, OWNER), 'utf8').catch(() => 'NaN'));
    if (Number.isInteger(owner) && !processAlive(owner)) {
      log(`removing ${dir}, left behind by a benchmark run that was killed`);
      await rm(dir, { recursive: true, force: true });
    }
  }
  const dir = await mkdtemp(join(root, PREFIX));
  await writeFile(join(dir, OWNER), String(process.pid));
  onCleanup(
    'remove temporary files',
    () => rm(dir, { recursive: true, force: true }),
    () => rmSync(dir, { recursive: true, force: true }),
  );
  return dir;
}
