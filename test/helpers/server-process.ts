import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Wharf as a real separate process (`node src/main.ts`), the way it runs in production: what
 * the tests do to it (SIGKILL, its dependencies going away) happens to a process of its own,
 * and a crash is seen as its exit, not as the test runner's.
 */
export interface WharfProcess {
  child: ChildProcess;
  url: string;
  /** The last lines it wrote to stdout (its log, JSON lines) and stderr, for failure messages. */
  tail(): string;
  /** Everything it wrote to stdout (its log: JSON lines only) and stderr so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves when it has exited (with its code or signal). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Whether it is still running. */
  running(): boolean;
  /** SIGKILL, then waits for the exit. */
  kill(): Promise<void>;
}

/**
 * Whether the Wharf started with `env` answers at `url`: /healthz says ok and, when it was given
 * WHARF_API_KEY, that key is known there. /healthz alone is any server's answer: a port freed
 * by a SIGKILL was taken meanwhile by another test file's server, the restart's check met that
 * one, and the test's own key was refused (401) by it (a CI run). Another server keeps the
 * check waiting, and the process, which cannot listen, exits with why.
 */
export async function answersAsItself(url: string, env: Record<string, string>): Promise<boolean> {
  const answer = async (path: string, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { headers }).then(
      async (r) => {
        await r.arrayBuffer();
        return r.status;
      },
      () => 0,
    );
  if ((await answer('/healthz')) !== 200) return false;
  const key = env.WHARF_API_KEY;
  return !key || (await answer('/v1/assets?limit=1', { 'x-api-key': key })) !== 401;
}

export async function startWharfProcess(env: Record<string, string>): Promise<WharfProcess> {
  const port = env.WHARF_PORT;
  if (!port) throw new Error('startWharfProcess needs WHARF_PORT');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, WHARF_HOST: '127.0.0.1', WHARF_LOG_LEVEL: 'error', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Both streams: the log (errors included) goes to stdout, start-up refusals to stderr. Before,
  // stdout was dropped, and a kill-rounds failure whose server answered 500 said nothing of why.
  let output = '';
  const written = { stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk: string) => {
    written.stdout += chunk;
  });
  child.stderr!.on('data', (chunk: string) => {
    written.stderr += chunk;
  });
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      output = (output + chunk).slice(-8000);
    });
  }
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const handle: WharfProcess = {
    child,
    url,
    tail: () => output,
    stdout: () => written.stdout,
    stderr: () => written.stderr,
    exited,
    running: () => exit === undefined,
    async kill() {
      if (exit === undefined) child.kill('SIGKILL');
      await exited;
    },
  };
  // Ready once it answers as itself (see answersAsItself); a process that exits first failed to start.
  for (let i = 0; i < 600; i++) {
    if (exit !== undefined) {
      throw new Error(`Wharf exited while starting (${JSON.stringify(exit)}):\n${output}`);
    }
    if (await answersAsItself(url, env)) return handle;
    await sleep(100);
  }
  await handle.kill();
  throw new Error(`Wharf did not answer /healthz within a minute:\n${output}`);
}
