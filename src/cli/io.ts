import { getSystemErrorMap } from 'node:util';
import { errnoMessage } from './upload/files.js';
import type { CliIo } from './upload/main.js';

/**
 * The exit code of a command whose reader went away (`wharf ls | head`): what a shell reports
 * for a tool killed by SIGPIPE (128 + 13). Node ignores SIGPIPE, so a write to a closed pipe
 * fails with EPIPE instead, which crashed the command with a stack trace and exit code 1.
 */
export const CLOSED_OUTPUT_EXIT = 141;

/**
 * The process's own streams and environment, as every command takes them. `name` starts the
 * line that says the output could not be written (`wharf get`, `wharf`), as the command's own
 * messages start.
 */
export function processIo(name = 'wharf'): CliIo {
  // The reader stopped reading: there is no one left to tell anything, so stop at once, quietly,
  // as Unix tools do (an upload in flight resumes on the next run).
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(CLOSED_OUTPUT_EXIT);
    // Any other failure (a full disk, `> /dev/full`, a quota): the output is lost, so stop as
    // for EPIPE, but say why and fail (exit code 1). Thrown from this listener, it was an
    // uncaught exception: a stack trace. stderr is written synchronously to a file or a pipe,
    // so the line is out before the exit.
    process.stderr.write(`${name}: cannot write to standard output: ${reason(err)}\n`);
    process.exit(1);
  });
  // No one to tell that stderr failed: the exit code says it.
  process.stderr.on('error', (err: NodeJS.ErrnoException) => {
    process.exit(err.code === 'EPIPE' ? CLOSED_OUTPUT_EXIT : 1);
  });
  return {
    stdout: (text: string) => process.stdout.write(text),
    stderr: (text: string) => process.stderr.write(text),
    bytes: process.stdout,
    env: process.env,
    terminal: process.stderr.isTTY ? process.stderr : undefined,
    cwd: callerDirectory(process.env),
  };
}

/** A system error as `ENOSPC (no space left on device)`, else its message. */
function reason(err: NodeJS.ErrnoException): string {
  const description = err.errno === undefined ? undefined : getSystemErrorMap().get(err.errno)?.[1];
  return err.code && description ? `${err.code} (${description})` : errnoMessage(err);
}

/**
 * The directory the command was typed in. `npm run wharf -- …` runs in the package's folder
 * wherever it was typed, and npm keeps that directory in INIT_CWD: a relative path the caller
 * gives (`upload photos/`, `data backup backups/today`) is there, not in the package.
 */
export function callerDirectory(env: NodeJS.ProcessEnv): string {
  return env.npm_lifecycle_event === 'wharf' && env.INIT_CWD ? env.INIT_CWD : process.cwd();
}
