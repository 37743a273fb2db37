import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { onCleanup } from './cleanup.js';

/** A server running as a child process on a loopback port. */
export interface ChildServer {
  name: string;
  pid: number;
  url: string;
  /** The last few KiB of the child's stdout and stderr, for error messages. */
  output(): string;
  /** Peak (VmHWM) and current (VmRSS) resident memory of the child, in bytes. */
  memory(): Promise<{ peakBytes: number; currentBytes: number }>;
  /** SIGTERM (graceful; lets --cpu-prof write its file), SIGKILL if it lingers. Idempotent. */
  stop(): Promise<void>;
}

export interface SpawnOptions {
  name: string;
  /** Arguments to `node`: flags, then the entry script. */
  nodeArgs: string[];
  env: Record<string, string>;
  port: number;
  /** GET here answers 200 once the server accepts requests. */
  healthPath: string;
  cwd: string;
  /** Also append everything the child prints to this file. */
  logFile?: string | undefined;
}

// Loaded into every child before its own code: when the benchmark dies without cleaning up
// (SIGKILL, a crash in tsx), the child's stdin pipe closes and the child stops itself rather
// than outliving us. Costs nothing while idle. Worker threads load --import modules too, and
// their process.stdin is not the pipe: only the main thread watches it.
const ORPHAN_GUARD = `data:text/javascript,${encodeURIComponent(
  "import{isMainThread}from'node:worker_threads';if(isMainThread){" +
    "process.stdin.on('end',()=>process.kill(process.pid,'SIGTERM'));process.stdin.on('error',()=>{});" +
    'process.stdin.resume();process.stdin.unref();}',
)}`;

const OUTPUT_TAIL = 8192;
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** The parent's environment without anything that could change how a child behaves. */
export function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined || /^(WHARF_|BENCH_|NODE_OPTIONS$|TSX_)/.test(name)) continue;
    env[name] = value;
  }
  return env;
}

export async function spawnServer(options: SpawnOptions): Promise<ChildServer> {
  const url = `http://127.0.0.1:${options.port}`;
  const child = spawn(process.execPath, ['--import', ORPHAN_GUARD, ...options.nodeArgs], {
    cwd: options.cwd,
    env: options.env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let tail = '';
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  if (options.logFile) {
    const file = createWriteStream(options.logFile, { flags: 'a' });
    child.stdout?.pipe(file, { end: false });
    child.stderr?.pipe(file, { end: false });
    child.once('exit', () => file.end());
  }
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  child.once('error', (err) => keep(Buffer.from(`\nspawn error: ${err.message}\n`)));

  const stop = async () => {
    if (!isRunning(child)) return;
    child.kill('SIGTERM');
    const done = await Promise.race([exited.then(() => true), sleep(STOP_TIMEOUT_MS, false)]);
    if (!done) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  const unregister = onCleanup(`stop ${options.name}`, stop, () => {
    if (isRunning(child)) child.kill('SIGKILL');
  });

  const server: ChildServer = {
    name: options.name,
    pid: child.pid ?? -1,
    url,
    output: () => tail,
    memory: () => readMemory(child.pid ?? -1),
    async stop() {
      await stop();
      unregister();
    },
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (!isRunning(child)) {
      unregister();
      throw new Error(`${options.name} exited during start-up (code ${child.exitCode}):\n${tail}`);
    }
    if (await healthy(url + options.healthPath)) return server;
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`${options.name} did not answer ${options.healthPath} within 30 s:\n${tail}`);
    }
    await sleep(50);
  }
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function healthy(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

async function readMemory(pid: number): Promise<{ peakBytes: number; currentBytes: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!match) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Number(match[1]) * 1024;
  };
  return { peakBytes: kib('VmHWM'), currentBytes: kib('VmRSS') };
}
