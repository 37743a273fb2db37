import { type Config, ConfigError, readConfig } from './config.js';
import { describeCause } from './core/unavailable.js';
import { SchemaAhead } from './db/schema-ahead.js';
import { databaseSetting } from './db/setting.js';
import { parseDatabaseUrl } from './db/url.js';
import { tuneGarbageCollector } from './gc-tuning.js';
import { runtimeProblem } from './runtime.js';
import type { Wharf } from './server.js';
import { keepFilesPrivate } from './umask.js';

/**
 * The process around the server: start-up, signals, messages and exit codes. Exit 0 after a
 * stop asked by SIGTERM or SIGINT (during start-up too); 1 when the start fails, with one line
 * per problem on stderr (a stack trace only for what Wharf did not foresee).
 */
async function main(): Promise<number> {
  // First, before anything slow (migrations, the bucket check): a signal during start-up stops
  // the start instead of killing the process halfway through it.
  const signal = stopSignal();
  const problem = runtimeProblem();
  if (problem) return failed([problem]);
  // Before the first upload: Buffers then stop setting off a full collection each 64 MiB.
  tuneGarbageCollector();
  // Before the first file: the data directory, the database, tus's files (see umask.ts).
  keepFilesPrivate();
  let config: Config;
  try {
    const loaded = readConfig();
    config = loaded.config;
    for (const warning of loaded.warnings) process.stderr.write(`wharf: warning: ${warning}\n`);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const warning of err.warnings) process.stderr.write(`wharf: warning: ${warning}\n`);
      return failed(err.problems);
    }
    throw err;
  }
  const timeoutMs = config.shutdownTimeoutSeconds * 1000;

  let keyShown = false;
  let signalled = false;
  void signal.then(() => {
    signalled = true;
  });
  const starting = start(
    config,
    () => signalled,
    (secret) => {
      // Written before the key is stored (see Wharf.listen); on Linux a write to a pipe or a
      // file is synchronous, so it is out before the insert.
      process.stdout.write(
        `\nNo API key existed, so one was created (admin, default account). It is shown only now:\n\n  ${secret}\n\n`,
      );
      keyShown = true;
    },
  );
  let first: { wharf: Wharf } | { signal: NodeJS.Signals };
  try {
    first = await Promise.race([starting.then((wharf) => ({ wharf })), signal.then((s) => ({ signal: s }))]);
  } catch (err) {
    const lines = startFailure(err, config);
    if (keyShown)
      lines.push('The key printed above was not stored and does not work; the next start makes another.');
    return failed(lines);
  }

  if ('signal' in first) {
    process.stderr.write(`wharf: ${first.signal} during start-up: stopping.\n`);
    // The step under way ends first (a migration is not cut in half); one that hangs (a store
    // that does not answer) is left behind once the shutdown timeout has passed.
    const { settlesWithin } = await import('./server.js');
    const stopped = starting.then(
      (wharf) => wharf.close({ deadlineMs: 0 }),
      () => undefined,
    );
    if (!(await settlesWithin(stopped, timeoutMs))) {
      process.stderr.write(
        `wharf: start-up was still waiting after WHARF_SHUTDOWN_TIMEOUT (${config.shutdownTimeoutSeconds} s); exiting.\n`,
      );
    }
    return 0;
  }

  const { wharf } = first;
  wharf.app.log.info(`Wharf is listening; public URL ${config.publicUrl}`);
  if (wharf.metricsUrl) wharf.app.log.info(`Metrics are served at ${wharf.metricsUrl}/metrics`);
  const ending = await Promise.race([
    signal.then((received) => ({ received })),
    wharf.superseded.then((migrations) => ({ migrations })),
  ]);
  // A signal's stop first reads as not ready for WHARF_SHUTDOWN_DELAY; a superseded node's
  // does not wait, as it must write no more than it has to.
  const delayMs = 'received' in ending ? config.shutdownDelaySeconds * 1000 : 0;
  if ('received' in ending) {
    const waiting =
      delayMs > 0
        ? `/readyz answers 503 for ${config.shutdownDelaySeconds} s (WHARF_SHUTDOWN_DELAY), then requests in flight have`
        : 'requests in flight have';
    wharf.app.log.info(
      `${ending.received}: stopping; ${waiting} ${config.shutdownTimeoutSeconds} s to finish (WHARF_SHUTDOWN_TIMEOUT)`,
    );
  } else {
    // Logged by the sweep that found it; said on stderr too, as a start refused for it is,
    // naming the same setting.
    const { label } = databaseSetting(process.env, config);
    process.stderr.write(
      `wharf: ${label}: a newer Wharf migrated this database (${ending.migrations.join(', ')}) while this one ran: stopping; run that version or a later one.\n`,
    );
  }
  // The last resort, should closing itself hang (a database that no longer answers).
  setTimeout(
    () => {
      process.stderr.write('wharf: the server did not stop in time; exiting anyway.\n');
      process.exit(1);
    },
    delayMs + timeoutMs + 30_000,
  ).unref();
  const { cut } = await wharf.close({ delayMs, deadlineMs: timeoutMs });
  wharf.app.log.info(
    cut > 0 ? `stopped; ${cut} request(s) still running at the deadline were cut off` : 'stopped',
  );
  // Superseded: a failure for the supervisor (restarting this version is refused at start).
  return 'received' in ending ? 0 : 1;
}

async function start(
  config: Config,
  stopping: () => boolean,
  announceKey: (secret: string) => void,
): Promise<Wharf> {
  // Loaded once the configuration has passed: a start refused for its configuration answers at
  // once, without loading the server's two thousand modules first.
  const { createWharf } = await import('./server.js');
  const wharf = await createWharf(config, { logger: { level: config.logLevel }, announceKey });
  // Stopped while it was made (migrations, the storage check): it never listens, nor makes a
  // first key; the caller closes it.
  if (stopping()) return wharf;
  try {
    await wharf.listen();
  } catch (err) {
    await wharf.close({ deadlineMs: 0 });
    throw err;
  }
  return wharf;
}

/**
 * Resolves with the first SIGTERM or SIGINT. Later ones change nothing: Ctrl-C under npm
 * delivers SIGINT twice (from the terminal, and forwarded by npm), and the shutdown timeout
 * already bounds the stop.
 */
function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    for (const name of ['SIGTERM', 'SIGINT'] as const) process.on(name, () => resolve(name));
  });
}

/** What an operator reads when the start fails: a line per problem, naming what to change. */
function startFailure(err: unknown, config: Config): string[] {
  // Named by what the operator set, as the admin CLI names it: on the embedded default that is
  // WHARF_DATA_DIR, not the WHARF_DATABASE_URL they never set.
  if (err instanceof SchemaAhead) return [err.refusal(databaseSetting(process.env, config).label)];
  if (err instanceof ConfigError) return err.problems;
  const e = err as NodeJS.ErrnoException & { hostname?: string; $metadata?: unknown };
  const at = `${config.host}:${config.port}`;
  if (e?.syscall === 'listen' && e.code === 'EADDRINUSE') {
    return [`WHARF_PORT ${config.port}: ${at} is already in use (another Wharf, or another server?).`];
  }
  if (e?.syscall === 'listen' && e.code === 'EACCES') {
    return [`WHARF_PORT ${config.port}: not allowed to listen on ${at} (ports below 1024 need privileges).`];
  }
  if (e?.syscall === 'listen' && e.code === 'EADDRNOTAVAIL') {
    return [`WHARF_HOST ${config.host} is not an address of this machine.`];
  }
  if (e?.code === 'ENOTFOUND' && e.hostname === config.host) {
    return [`WHARF_HOST ${config.host} does not resolve to an address.`];
  }
  if (e && typeof e === 'object' && '$metadata' in e) {
    return [`the S3 store refused the start (WHARF_S3_*): ${e.name}: ${e.message}`];
  }
  // SQLite found the file but may not open it, or not write it: say which file, as the data
  // directory's own check does, not just SQLite's sentence (which names none).
  if (typeof e?.code === 'string' && /^SQLITE_(?:CANTOPEN|READONLY|PERM|AUTH)/.test(e.code)) {
    const target = parseDatabaseUrl(config.databaseUrl);
    const file = 'dialect' in target && target.dialect === 'sqlite' ? target.path : config.databaseUrl;
    const user = typeof process.getuid === 'function' ? ` (uid ${process.getuid()})` : '';
    return [
      `${databaseSetting(process.env, config).name}: the database ${file} cannot be opened and written: ` +
        `${e.message} (${e.code}). Check that it is a file this user${user} may read and write, and so ` +
        'are the -wal and -shm files beside it and their directory.',
    ];
  }
  // Network errors and the database's own refusals explain themselves in one line, with what
  // lies under a "the database is unavailable" (a refused connection, an unknown host).
  if (typeof e?.code === 'string' && typeof e.message === 'string') {
    const cause = describeCause(e.cause);
    return [`start failed: ${e.message}${cause ? ` (${cause})` : ''}`];
  }
  return [`start failed: ${(err as Error)?.stack ?? String(err)}`];
}

function failed(lines: string[]): number {
  for (const line of lines) process.stderr.write(`wharf: ${line}\n`);
  return 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`wharf: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
