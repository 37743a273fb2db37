import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import os, { hostname } from 'node:os';
import { join } from 'node:path';

/** A directory of another machine (a data directory shared between hosts) counts as left over after this long untouched. */
const FOREIGN_STALE_MS = 24 * 3600_000;

// Host names may hold dashes: the pid and the random part are the last two fields.
const PROCESS_DIR = /^(.+)-(\d+)-[0-9a-f]{8}$/;

/** Whether `entry` is a name processTempDir gives a process's directory. */
export function isProcessDir(entry: string): boolean {
  return PROCESS_DIR.test(entry);
}

/**
 * A fresh directory of this process's own under `root`, for temporary files that a crash
 * (SIGKILL, power loss) would leave behind, named `<host>-<pid>-<random>`. Directories left by
 * processes of this host that are gone are removed first, whatever their age; those of other
 * hosts (a data directory shared between machines) once untouched for a day. Processes that
 * share `root`, in this process (tests) or another, never remove each other's directories
 * while they live.
 */
export async function processTempDir(root: string, now = Date.now()): Promise<string> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  for (const entry of await readdir(root)) {
    if (await leftOver(join(root, entry), entry, now)) await removeLeftOver(join(root, entry));
  }
  const dir = join(root, `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`);
  await mkdir(dir, { mode: 0o700 });
  return dir;
}

/**
 * Whether `entry` (a name processTempDir made, at `path`) belongs to a process that is gone:
 * one of this host that no longer runs, or one of another host untouched for a day. Other
 * names count as left over once untouched for a day too.
 */
export async function leftOver(path: string, entry: string, now: number): Promise<boolean> {
  const match = PROCESS_DIR.exec(entry);
  if (match && match[1] === hostname()) return !processAlive(Number(match[2]));
  const info = await stat(path).catch(() => undefined);
  return info !== undefined && now - info.mtimeMs > FOREIGN_STALE_MS;
}

/**
 * Removes a directory left over, unless it cannot: one another user made (a CLI command run as
 * root in the service's data directory, killed mid-work) is left for that user to remove.
 * Failing there would stop every start of the service (a restart loop under systemd) over a
 * few stray files. Any failure counts, not only EACCES and EPERM: Node's recursive rm reports
 * a file it may not unlink as whatever its retry as a directory then met (ENOTDIR). Returns
 * whether it is gone.
 */
export async function removeLeftOver(path: string): Promise<boolean> {
  try {
    await rm(path, { recursive: true, force: true });
    return true;
  } catch {
    return false;
  }
}

/**
 * A fresh name for a temp file in `dir` (a directory processTempDir made), made again first if
 * it is gone: an operator clearing tmp/ by hand then costs the writes in flight, not every write
 * until a restart.
 */
export async function tempName(dir: string, suffix: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return join(dir, `${randomUUID()}${suffix}`);
}

/** Whether a process with this pid exists on this host (under any user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Runs `work` with `os.tmpdir()` answering `dir`, for the synchronous part of `work` only
 * (nothing else runs meanwhile). For a library that takes its temporary directory from
 * `os.tmpdir()` and offers no option (see WharfS3Store.uploadParts); the test that uploads
 * through it checks where its files went, so a version that reads it later is caught.
 */
export function withTmpdir<T>(dir: string, work: () => T): T {
  const tmpdir = os.tmpdir;
  os.tmpdir = () => dir;
  try {
    return work();
  } finally {
    os.tmpdir = tmpdir;
  }
}
