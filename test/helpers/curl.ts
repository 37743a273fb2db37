import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const MARKER = '\n__WHARF_STATUS__:';

/**
 * Runs the real curl binary (an independent client, not our code). Response headers are
 * written to a file with -D so stdout stays the body. (Not -D /dev/stderr: Node gives a
 * child sockets for stdio, and on Linux /dev/stderr cannot be opened on a socket — curl
 * then silently writes nothing at all.)
 */
export async function curl(args: string[]): Promise<{ status: number; body: string; headers: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'wharf-curl-headers-'));
  const headerFile = join(dir, 'headers');
  try {
    const { stdout } = await run('curl', ['-sS', '-D', headerFile, '-w', `${MARKER}%{http_code}`, ...args], {
      maxBuffer: 64 * 1024 * 1024,
      encoding: 'utf8',
    });
    const at = stdout.lastIndexOf(MARKER);
    if (at === -1) throw new Error(`curl gave no status line: ${JSON.stringify(stdout.slice(0, 200))}`);
    const headers = await readFile(headerFile, 'utf8').catch(() => '');
    return { status: Number(stdout.slice(at + MARKER.length)), body: stdout.slice(0, at), headers };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
