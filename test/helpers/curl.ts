import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
const MARKER = '\n__WHARF_STATUS__:';

/**
 * Runs the real curl binary (an independent client, not our code). Response headers are
 * written to stderr with -D so stdout stays the body.
 */
export async function curl(args: string[]): Promise<{ status: number; body: string; headers: string }> {
  const { stdout, stderr } = await run(
    'curl',
    ['-sS', '-D', '/dev/stderr', '-w', `${MARKER}%{http_code}`, ...args],
    {
      maxBuffer: 64 * 1024 * 1024,
      encoding: 'utf8',
    },
  );
  const at = stdout.lastIndexOf(MARKER);
  return { status: Number(stdout.slice(at + MARKER.length)), body: stdout.slice(0, at), headers: stderr };
}
