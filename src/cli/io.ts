import type { CliIo } from './upload/main.js';

/**
 * The exit code of a command whose reader went away (`wharf ls | head`): what a shell reports
 * for a tool killed by SIGPIPE (128 + 13). Node ignores SIGPIPE, so a write to a closed pipe
 * fails with EPIPE instead, which crashed the command with a stack trace and exit code 1.
 */
export const CLOSED_OUTPUT_EXIT = 141;

/** The process's own streams and environment, as every command takes them. */
export function processIo(): CliIo {
  // The reader stopped reading: there is no one left to tell anything, so stop at once, quietly,
  // as Unix tools do (an upload in flight resumes on the next run). Other errors stay errors.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(CLOSED_OUTPUT_EXIT);
    });
  }
  return {
    stdout: (text: string) => process.stdout.write(text),
    stderr: (text: string) => process.stderr.write(text),
    bytes: process.stdout,
    env: process.env,
    terminal: process.stderr.isTTY ? process.stderr : undefined,
    cwd: callerDirectory(process.env),
  };
}

/**
 * The directory the command was typed in. `npm run wharf -- …` runs in the package's folder
 * wherever it was typed, and npm keeps that directory in INIT_CWD: a relative path the caller
 * gives (`upload photos/`, `data backup backups/today`) is there, not in the package.
 */
export function callerDirectory(env: NodeJS.ProcessEnv): string {
  return env.npm_lifecycle_event === 'wharf' && env.INIT_CWD ? env.INIT_CWD : process.cwd();
}
