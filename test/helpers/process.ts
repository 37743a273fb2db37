import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';

/** Wharf as its own process, started the way operators start it, for tests of start-up, signals and exit codes. */

export const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** The environment without any WHARF_* of the developer's shell: only what a test sets. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('WHARF_')) env[name] = value;
  }
  return { ...env, ...extra };
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Running {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match in the output so far or to come; rejects if the process exits first. */
  waitFor(pattern: RegExp, stream?: 'stdout' | 'stderr'): Promise<RegExpMatchArray>;
  exited: Promise<Exit>;
}

// A guard against a hung test, not a measure of anything: every wait ends on an event first.
const GUARD_MS = 180_000;

/** `command` (by default the server from source, as `npm run dev` runs it) with only `env` of WHARF_*. */
export function run(
  env: Record<string, string>,
  command: string[] = [process.execPath, '--import', 'tsx', 'src/main.ts'],
  cwd: string = REPO,
): Running {
  const child = spawn(command[0]!, command.slice(1), {
    cwd,
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { stdout: '', stderr: '' };
  const listeners = new Set<() => void>();
  for (const name of ['stdout', 'stderr'] as const) {
    child[name]!.setEncoding('utf8');
    child[name]!.on('data', (chunk: string) => {
      output[name] += chunk;
      for (const listener of listeners) listener();
    });
  }
  // Set before the listeners run: a waitFor whose pattern never came must see the exit then,
  // or it waits out GUARD_MS (it did, three minutes, in every test of a start that fails).
  let done = false;
  const exited = new Promise<Exit>((resolve) => {
    child.once('close', (code, signal) => {
      done = true;
      resolve({ code, signal });
      for (const listener of listeners) listener();
    });
  });
  return {
    child,
    stdout: () => output.stdout,
    stderr: () => output.stderr,
    exited,
    waitFor(pattern, stream = 'stdout') {
      return new Promise((resolve, reject) => {
        const guard = setTimeout(() => finish(new Error(`no ${pattern} within the guard time`)), GUARD_MS);
        const check = () => {
          const match = pattern.exec(output[stream]);
          if (match) finish(undefined, match);
          else if (done) finish(new Error(`exited before ${pattern} appeared`));
        };
        const finish = (err?: Error, match?: RegExpMatchArray) => {
          clearTimeout(guard);
          listeners.delete(check);
          if (err) {
            reject(new Error(`${err.message}\n--- stdout\n${output.stdout}\n--- stderr\n${output.stderr}`));
          } else resolve(match!);
        };
        listeners.add(check);
        check();
      });
    },
  };
}

/** Whether something accepts connections on the port (loopback). */
export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Whether a process with this id still exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs SQL on a Wharf database from outside Wharf, SQLite file or PostgreSQL alike. */
export async function sql(databaseUrl: string, statement: string): Promise<Record<string, unknown>[]> {
  if (/^postgres(ql)?:/.test(databaseUrl)) {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      return (await client.query(statement)).rows;
    } finally {
      await client.end();
    }
  }
  const db = new Database(databaseUrl.replace(/^sqlite:(\/\/)?/, ''));
  try {
    const prepared = db.prepare(statement);
    if (prepared.reader) return prepared.all() as Record<string, unknown>[];
    prepared.run();
    return [];
  } finally {
    db.close();
  }
}
