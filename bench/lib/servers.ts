import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gcFlagsFor } from '../../src/gc-tuning.js';
import { type ChildServer, cleanEnv, freePort, spawnServer } from './children.js';
import { GiB } from './config.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Compiles Wharf (tsconfig.build.json → dist/src) and the two reference servers
 * (bench/tsconfig.servers.json → dist/bench), so every server child runs plain compiled
 * JavaScript with no TypeScript loader in the process.
 */
export async function buildServers(): Promise<void> {
  const tsc = join(REPO_ROOT, 'node_modules', '.bin', 'tsc');
  for (const project of ['tsconfig.build.json', 'bench/tsconfig.servers.json']) {
    await run(tsc, ['-p', project]);
  }
}

/**
 * The reference servers (raw pipeline, bare Fastify, bare tus, image pipeline) run with the V8
 * setting Wharf gives itself at start (src/gc-tuning.ts), so a ratio measures code, not a flag.
 * On the command line: the children run on this same Node, whose V8 knows it.
 */
const REFERENCE_NODE_ARGS = [gcFlagsFor(process.versions.v8)].filter((flag) => flag !== undefined);

export interface WharfServer extends ChildServer {
  apiKey: string;
  dataDir: string;
}

export interface WharfOptions {
  dataDir: string;
  /** Adds `--cpu-prof` so the child writes a V8 CPU profile there when it stops. */
  cpuProfileDir?: string | undefined;
  /** Extra `node` flags, before the entry script. */
  nodeArgs?: string[];
  logFile?: string | undefined;
  name?: string;
  /** More WHARF_* settings (e.g. image limits). */
  env?: Record<string, string>;
}

export async function startWharf(options: WharfOptions): Promise<WharfServer> {
  const port = await freePort();
  const apiKey = `bench_${randomBytes(16).toString('hex')}`;
  const profiling = options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`] : [];
  if (options.cpuProfileDir) await mkdir(options.cpuProfileDir, { recursive: true });
  const server = await spawnServer({
    name: options.name ?? 'wharf',
    nodeArgs: [...profiling, ...(options.nodeArgs ?? []), join(REPO_ROOT, 'dist', 'src', 'main.js')],
    env: {
      ...cleanEnv(),
      WHARF_DATA_DIR: options.dataDir,
      WHARF_PORT: String(port),
      WHARF_HOST: '127.0.0.1',
      WHARF_API_KEY: apiKey,
      WHARF_LOG_LEVEL: 'warn',
      WHARF_MAX_FILE_SIZE: String(8 * GiB),
      ...options.env,
    },
    port,
    healthPath: '/healthz',
    cwd: REPO_ROOT,
    logFile: options.logFile,
  });
  return { ...server, apiKey, dataDir: options.dataDir };
}

/** bench/baseline-server.ts: raw node:http, hash + temp file + fsync + rename; GET streams a file. */
export async function startBaseline(options: {
  dataDir: string;
  name?: string;
  nodeArgs?: string[];
  logFile?: string | undefined;
}): Promise<ChildServer> {
  const port = await freePort();
  return spawnServer({
    name: options.name ?? 'baseline',
    nodeArgs: [
      ...REFERENCE_NODE_ARGS,
      ...(options.nodeArgs ?? []),
      join(REPO_ROOT, 'dist', 'bench', 'baseline-server.js'),
    ],
    env: { ...cleanEnv(), BASELINE_PORT: String(port), BASELINE_DIR: options.dataDir },
    port,
    healthPath: '/healthz',
    cwd: REPO_ROOT,
    logFile: options.logFile,
  });
}

/** bench/image-baseline-server.ts: Wharf's transform pipeline in bare node:http, no store or cache. */
export async function startImageBaseline(options: { dataDir: string; logFile?: string | undefined }) {
  const port = await freePort();
  return spawnServer({
    name: 'image-baseline',
    nodeArgs: [...REFERENCE_NODE_ARGS, join(REPO_ROOT, 'dist', 'bench', 'image-baseline-server.js')],
    env: { ...cleanEnv(), IMAGE_BASELINE_PORT: String(port), IMAGE_BASELINE_DIR: options.dataDir },
    port,
    healthPath: '/healthz',
    cwd: REPO_ROOT,
    logFile: options.logFile,
  });
}

/** bench/bare-fastify.ts: the ceiling for a Fastify JSON route on this machine. */
export async function startBareFastify(): Promise<ChildServer> {
  const port = await freePort();
  return spawnServer({
    name: 'bare-fastify',
    nodeArgs: [...REFERENCE_NODE_ARGS, join(REPO_ROOT, 'dist', 'bench', 'bare-fastify.js')],
    env: { ...cleanEnv(), BARE_PORT: String(port) },
    port,
    healthPath: '/healthz',
    cwd: REPO_ROOT,
  });
}

/**
 * bench/bare-tus.ts: tus.io's server and file store on raw node:http, at `${url}/files/`;
 * with `verify`, also hashing each PATCH (SHA-256 + MD5) and fsyncing the finished file.
 */
export async function startBareTus(options: {
  dataDir: string;
  name?: string;
  verify?: boolean;
}): Promise<ChildServer> {
  const port = await freePort();
  return spawnServer({
    name: options.name ?? 'bare-tus',
    nodeArgs: [...REFERENCE_NODE_ARGS, join(REPO_ROOT, 'dist', 'bench', 'bare-tus.js')],
    env: {
      ...cleanEnv(),
      BARE_TUS_PORT: String(port),
      BARE_TUS_DIR: options.dataDir,
      BARE_TUS_VERIFY: options.verify ? '1' : '0',
    },
    port,
    healthPath: '/healthz',
    cwd: REPO_ROOT,
  });
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`${command} ${args.join(' ')} failed (exit ${code}):\n${output}`));
    });
  });
}
