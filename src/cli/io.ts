import type { CliIo } from './upload/main.js';

/** The process's own streams and environment, as every command takes them. */
export function processIo(): CliIo {
  return {
    stdout: (text: string) => process.stdout.write(text),
    stderr: (text: string) => process.stderr.write(text),
    env: process.env,
    terminal: process.stderr.isTTY ? process.stderr : undefined,
  };
}
