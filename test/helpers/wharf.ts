import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { ManualClock } from '../../src/core/clock.js';
import type { Role } from '../../src/core/model.js';
import { createWharf, type Wharf } from '../../src/server.js';
import { type Backing, provision } from './deployment.js';

/** A Wharf started for one test file: real HTTP on a loopback port, its own data dir. */
export interface TestWharf {
  url: string;
  /** Admin key of the default account. */
  key: string;
  clock: ManualClock;
  wharf: Wharf;
  dataDir: string;
  /** Where its metadata lives: the SQLite file on embedded, a PostgreSQL database when scaled. */
  databaseUrl: string;
  /** The database and storage settings a second node needs to share this one's (see `sharing`). */
  backingEnv: Record<string, string>;
  /** A new account with its own admin key (tenancy tests). */
  newAccount(name?: string): Promise<{ accountId: string; key: string }>;
  newKey(role?: Role, accountId?: string): Promise<{ id: string; key: string }>;
  close(): Promise<void>;
}

export interface StartOptions {
  env?: Record<string, string>;
  /** Defaults to a ManualClock at the real current time, so tests can move it. */
  clock?: ManualClock;
  /** Where to send the server's log lines (silent by default). */
  logStream?: NodeJS.WritableStream;
  /** The level of those lines (WHARF_LOG_LEVEL); `info` by default. */
  logLevel?: string;
  /**
   * Another node of the same deployment: this server uses its database, storage and data
   * dir (which it leaves in place on close) instead of fresh ones.
   */
  sharing?: TestWharf;
  /** The built web console to serve (see test/helpers/console.ts); none by default. */
  consoleDir?: string;
  /** An existing data directory to run on (a restored backup), removed on close; a new one by default. */
  dataDir?: string;
  /**
   * Whether, once listening, it seals webhook signing secrets again under its server secret, as
   * Wharf.listen does (true by default); false shows a node that has not done so yet.
   */
  reseal?: boolean;
}

/**
 * A loopback port that was free when checked, for a server the test starts itself (Wharf
 * names its own port in its public URL, so it cannot listen on port 0 and say which it got).
 * Chosen at random below the kernel's ephemeral range: outgoing connections (to PostgreSQL,
 * Ceph, Wharf) and servers that listen on port 0 take their ports from that range, and one of
 * them took a port between its check and its use in CI (EADDRINUSE). Only another test's
 * freePort() can still pick the same port in that moment, one chance in thousands.
 * Above 10080, the one port in that range that fetch() refuses to connect to ("bad port", the
 * Fetch standard's port blocking): a server there failed its test in CI.
 */
const FIRST_PORT = 10_081;

export async function freePort(): Promise<number> {
  const below = await ephemeralLow();
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = FIRST_PORT + randomInt(below - FIRST_PORT);
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port found between ${FIRST_PORT} and ${below}`);
}

/** The lowest port of the kernel's ephemeral range (32768 when the file cannot be read). */
async function ephemeralLow(): Promise<number> {
  const text = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '');
  const low = Number(text.trim().split(/\s+/)[0]);
  return Number.isInteger(low) && low > 11_000 ? low : 32_768;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** The servers started and not closed yet, by URL: what a file that does not exit left running. */
const running = new Set<string>();

/**
 * A file whose test left a server running (a failing test that skipped its close) never ends:
 * its process waits on the open listener and the whole run with it, with no word of why. After
 * the file's tests and hooks have had a minute, it says what is still open and exits failing.
 * The timer is unref'd: a file that ends on its own is not held by it.
 */
after(() => {
  setTimeout(() => {
    console.error(
      `this file's tests ended a minute ago but it is still running; Wharf servers not closed: ${
        [...running].join(', ') || 'none'
      }; open resources: ${process.getActiveResourcesInfo().join(', ')}`,
    );
    process.exit(1);
  }, 60_000).unref();
});

export async function startWharf(options: StartOptions = {}): Promise<TestWharf> {
  const shared = options.sharing;
  const dataDir = shared
    ? shared.dataDir
    : (options.dataDir ?? (await mkdtemp(join(tmpdir(), 'wharf-test-'))));
  // On the scaled deployment, a database (and bucket) of its own for each server.
  const backing: Backing | undefined = shared ? undefined : await provision();
  const backingEnv = shared ? shared.backingEnv : backing!.env;
  const key = `wharf_test_${randomBytes(16).toString('hex')}`;
  const clock = options.clock ?? new ManualClock(Date.now());
  const logger = options.logStream ? { level: options.logLevel ?? 'info', stream: options.logStream } : false;
  let wharf: Wharf | undefined;
  let config: ReturnType<typeof loadConfig>;
  try {
    // The port is free when freePort() lets it go, and Wharf's public URL names it, so it is
    // chosen before the server listens: another test's server may take it in between. Then a
    // new one is tried.
    for (let attempt = 1; ; attempt++) {
      config = loadConfig({
        WHARF_HOST: '127.0.0.1',
        WHARF_PORT: String(await freePort()),
        WHARF_DATA_DIR: dataDir,
        WHARF_API_KEY: key,
        WHARF_SWEEP_INTERVAL: '0',
        // Tests run jobs themselves (core.jobs.drain()), so what they observe is deterministic.
        WHARF_JOB_INTERVAL_MS: '0',
        ...backingEnv,
        ...options.env,
      });
      wharf = await createWharf(config, { clock, logger, consoleDir: options.consoleDir ?? null });
      try {
        await wharf.app.listen({ host: config.host, port: config.port });
        if (options.reseal ?? true) await wharf.resealWebhookSecrets();
        break;
      } catch (err) {
        await wharf.close();
        wharf = undefined;
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === 5) throw err;
      }
    }
  } catch (err) {
    await wharf?.close();
    await backing?.release();
    throw err;
  }
  let accounts = 0;
  running.add(config.publicUrl);
  return {
    url: config.publicUrl,
    key,
    clock,
    wharf,
    dataDir,
    databaseUrl: config.databaseUrl,
    backingEnv,
    async newAccount(name = `tenant-${++accounts}`) {
      const accountId = `acct-${randomBytes(6).toString('hex')}`;
      await wharf.core.keys.ensureAccount(accountId, name);
      const created = await wharf.core.keys.create(accountId, 'test admin', 'admin');
      return { accountId, key: created.secret };
    },
    async newKey(role: Role = 'member', accountId = 'default') {
      const created = await wharf.core.keys.create(accountId, `test ${role}`, role);
      return { id: created.key.id, key: created.secret };
    },
    async close() {
      await wharf.close();
      running.delete(config.publicUrl);
      if (shared) return;
      await backing?.release();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
