/**
 * The embedded deployment's Store on a thread of its own.
 *
 * Why: better-sqlite3 runs every statement, and each commit's fsync, on the thread that calls
 * it. On the event loop, a commit stalled every upload and download in flight on the node
 * (≈ 0.6 ms per group commit here, far more on a slow or busy disk), and a batch of presigned
 * uploads spent half its time in SQL while the second core idled. On this thread, the loop
 * only passes calls and answers; SQL runs beside it. PostgreSQL needs none of this: its I/O
 * is already another process's.
 *
 * The Store port is all async methods whose arguments and results are plain data, so each
 * call crosses as a message (structured clone) and the store code is the same one either way.
 * Methods that only read (READ_METHODS) skip the hop: a hop to an idle thread and back costs
 * ≈ 0.1 ms, which doubled the time of a small request. They run here, over a read-only
 * connection of their own (WAL readers never wait for the writer), and see every write that
 * has been answered, since a write is answered once committed.
 * Failures come back as what callers test: a WharfError with its code and details, or an
 * Error carrying the driver's code (unique violations are told by it).
 */
import { Worker } from 'node:worker_threads';
import { ConfigError } from '../config.js';
import type { Clock } from '../core/clock.js';
import { type ErrorCode, WharfError } from '../core/errors.js';
import { createIdSource, newIdOrder } from '../core/ids.js';
import type { Store } from '../core/ports.js';
import type { DatabaseThreadEvent } from '../core/telemetry.js';
import { serviceUnavailable, storageFull } from '../core/unavailable.js';
import { connect } from './connect.js';
import { SchemaAhead } from './schema-ahead.js';
import { createSqlStore, type Migrated } from './store/index.js';
import type {
  CallBatch,
  StoreAnswer,
  StoreCall,
  ThreadFailedToOpen,
  ThreadReady,
  ThreadStart,
  ThrownFailure,
} from './store-thread-protocol.js';

// Under tsx (tests, dev) the worker is the .ts source; built, it is the .js beside this file.
const WORKER_FILE = new URL(
  import.meta.url.endsWith('.ts') ? './store-thread-worker.ts' : './store-thread-worker.js',
  import.meta.url,
);

/**
 * Store methods that only read. A write through one of them fails (the connection is
 * read-only), so a wrong entry cannot go unnoticed; a method missing here only costs a hop.
 * `ping` stays on the thread: readiness is the writer's.
 */
export const READ_METHODS: ReadonlySet<string> = new Set([
  'getSetting',
  'getAccount',
  'listAccounts',
  'findKeyByHash',
  'listKeys',
  'countKeys',
  'signerActive',
  'findTokenByHash',
  'getToken',
  'listTokens',
  'findOwnUpload',
  'getUpload',
  'getUploadByExternalId',
  'uploadsOfAsset',
  'getAsset',
  'getAssetById',
  'listAssets',
  'findAssetsBySha256',
  'countAssetsWithStorageKey',
  'getFileVersion',
  'listFileVersions',
  'fileVersionsOfAsset',
  'namespacesOfAsset',
  'getJob',
  'countJobs',
  'listEvents',
  'getEvent',
  'eventCursors',
  'getWebhook',
  'listWebhooks',
  'getDelivery',
  'listDeliveries',
  'listDeliveryAttempts',
  'getDerivative',
  'listDerivatives',
  'countDerivatives',
  'getPreset',
  'listPresets',
  'findSessionByHash',
  'listUploads',
  'accountUsage',
]);

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** What the thread's life tells the operator (bootstrap hands it to telemetry: logs, metrics). */
export type ThreadWatch = (event: DatabaseThreadEvent) => void;

/** A thread that lived this long and died is restarted at once; one that died younger waits. */
const HEALTHY_MS = 60_000;
const FIRST_RETRY_MS = 250;
const MAX_RETRY_MS = 30_000;

/**
 * Starts the thread, which opens `databaseUrl` and migrates it to the latest schema, and
 * returns a Store whose every method runs there, with what that migration did. `clock` is the
 * time the store's ids carry; `idOrder`, the caller's id source's (see newIdOrder), keeps them
 * in order with its own. If the thread dies, a new one takes its place (see StoreThread);
 * `watch` hears of it.
 */
export async function openStoreThread(
  databaseUrl: string,
  clock: Clock,
  idOrder: SharedArrayBuffer = newIdOrder(),
  watch?: ThreadWatch,
): Promise<{ store: Store; migrated: Migrated }> {
  const { worker, methods, migrated } = await startThread({
    databaseUrl,
    now: clock.now(),
    idOrder,
    reopen: false,
  });
  // Opened once the thread has created and migrated the file. Its store makes no ids (it
  // never writes); it gets the shared source all the same.
  const reads = createSqlStore(connect(databaseUrl, { readOnly: true }), createIdSource(clock, idOrder));
  const thread = new StoreThread({ databaseUrl, idOrder }, worker, clock, methods, reads, watch);
  threads.set(thread.store, thread);
  return { store: thread.store, migrated };
}

/**
 * A thread that has opened (and migrated) the database, the Store methods it serves, and
 * what it migrated.
 */
async function startThread(
  start: ThreadStart,
): Promise<{ worker: Worker; methods: string[]; migrated: Migrated }> {
  const worker = new Worker(WORKER_FILE, { workerData: start });
  try {
    const { ready: methods, migrated } = await new Promise<ThreadReady>((resolve, reject) => {
      worker.once('message', (first: ThreadReady | ThreadFailedToOpen) => {
        if ('ready' in first) resolve(first);
        else reject(revive(first.openFailed));
      });
      worker.once('error', reject);
      worker.once('exit', (code) =>
        reject(new Error(`the database thread exited (code ${code}) while opening`)),
      );
    });
    for (const event of ['message', 'error', 'exit']) worker.removeAllListeners(event);
    return { worker, methods, migrated };
  } catch (err) {
    await worker.terminate();
    throw err;
  }
}

const threads = new WeakMap<Store, StoreThread>();

/** The thread serving `store` now, for tests and diagnostics (undefined: not a thread's store). */
export function storeThreadWorker(store: Store): Worker | undefined {
  return threads.get(store)?.current;
}

/**
 * Calls and answers between the event loop and the thread, and the thread's replacement.
 *
 * Why replace it: a thread that died (an uncaught error, running out of memory) would
 * otherwise leave the node answering 503 to every write until someone restarts the process,
 * while its liveness probe stays green. The calls it had not answered fail with 503 (like a
 * PostgreSQL connection that broke, each may or may not have committed), and so does every
 * write until a new thread has opened the same file, which takes a fraction of a second;
 * `/readyz` says "not ready" meanwhile. The dead thread's connection is closed as the thread
 * is torn down (better-sqlite3 closes its handles then), which rolls back a transaction it cut
 * off and lets go of its locks. A new thread never creates the file: one that is gone stays an
 * error. Reads go on throughout over the event loop's own connection. A thread that dies young (or fails to
 * start) is replaced after a wait that doubles each time, up to MAX_RETRY_MS, so a database
 * that cannot be served does not spin a core.
 */
class StoreThread {
  readonly store: Store;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private outbox: StoreCall[] = [];
  private worker: Worker;
  private startedAt = 0;
  /** Set while no thread serves (it died and the next is not ready), and for good once closed. */
  private down: WharfError | undefined;
  private diedAt = 0;
  /** Threads in a row that died young or failed to start: how long the next restart waits. */
  private failures = 0;
  private retry: NodeJS.Timeout | undefined;
  private restarting: Promise<void> | undefined;
  private closing = false;
  private readsClosed = false;

  constructor(
    private readonly start: Pick<ThreadStart, 'databaseUrl' | 'idOrder'>,
    worker: Worker,
    private readonly clock: Clock,
    methods: readonly string[],
    private readonly reads: Store,
    private readonly watch: ThreadWatch | undefined,
  ) {
    this.worker = worker;
    this.attach(worker);
    const store: Record<string, unknown> = {};
    const local = reads as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    for (const method of methods) {
      store[method] = READ_METHODS.has(method)
        ? (...args: unknown[]) =>
            this.readsClosed ? Promise.reject(closed()) : local[method]!.apply(reads, args)
        : (...args: unknown[]) => this.call(method, args);
    }
    store.close = () => this.close();
    this.store = store as unknown as Store;
  }

  get current(): Worker | undefined {
    return this.down ? undefined : this.worker;
  }

  private attach(worker: Worker): void {
    worker.on('message', (answers: StoreAnswer[]) => this.receive(answers));
    worker.on('error', (err) => this.lose(worker, err));
    worker.on('exit', (code) => this.lose(worker, new Error(`the database thread exited (code ${code})`)));
    // Idle, it must not keep the process alive; with calls out, it does (see call()).
    worker.unref();
    this.startedAt = performance.now();
  }

  private call(method: string, args: unknown[]): Promise<unknown> {
    if (this.down) return Promise.reject(this.down);
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) this.worker.ref();
      this.outbox.push({ id, method, args });
      // The calls of this turn go in one message.
      if (this.outbox.length === 1) queueMicrotask(() => this.flush());
    });
  }

  private flush(): void {
    if (this.outbox.length === 0) return;
    const batch: CallBatch = { now: this.clock.now(), calls: this.outbox };
    this.outbox = [];
    try {
      this.worker.postMessage(batch);
    } catch (err) {
      // An argument that cannot be cloned (a bug of the caller's): only its batch fails.
      for (const call of batch.calls) this.settle(call.id, undefined, err);
    }
  }

  private receive(answers: StoreAnswer[]): void {
    for (const answer of answers) {
      if ('failure' in answer) this.settle(answer.id, undefined, revive(answer.failure));
      else this.settle(answer.id, answer.value, undefined);
    }
  }

  private settle(id: number, value: unknown, err: unknown): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
    if (err === undefined) pending.resolve(value);
    else pending.reject(err);
  }

  private failPending(err: WharfError): void {
    this.outbox = [];
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, err);
  }

  /** `worker` is gone (an error, then its exit: the first counts): start another unless closing. */
  private lose(worker: Worker, cause: unknown): void {
    if (worker !== this.worker || this.down) return;
    if (this.closing) {
      this.down = closed();
      this.failPending(this.down);
      return;
    }
    this.down = serviceUnavailable('database', cause);
    this.diedAt = performance.now();
    this.failPending(this.down);
    this.failures = performance.now() - this.startedAt >= HEALTHY_MS ? 0 : this.failures + 1;
    this.watch?.({ kind: 'died', cause });
    this.restartAfter(this.failures === 0 ? 0 : this.backoff());
  }

  private backoff(): number {
    return Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, this.failures - 1));
  }

  private restartAfter(delayMs: number): void {
    // Unreferenced: a process with nothing else to do (a CLI command) need not wait for it.
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.restarting = this.restart().finally(() => {
        this.restarting = undefined;
      });
    }, delayMs);
    this.retry.unref();
  }

  private async restart(): Promise<void> {
    let started: Awaited<ReturnType<typeof startThread>>;
    try {
      started = await startThread({ ...this.start, now: this.clock.now(), reopen: true });
    } catch (err) {
      if (this.closing) return;
      this.failures += 1;
      const delay = this.backoff();
      this.watch?.({ kind: 'restart_failed', cause: err, retryInSeconds: delay / 1000 });
      this.restartAfter(delay);
      return;
    }
    if (this.closing) {
      await started.worker.terminate();
      return;
    }
    this.worker = started.worker;
    this.attach(started.worker);
    this.down = undefined;
    this.watch?.({ kind: 'restarted', downSeconds: (performance.now() - this.diedAt) / 1000 });
  }

  private async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.retry);
    // A new thread being started is stopped as soon as it is up (see restart()).
    await this.restarting;
    // The read-only connection first, so that the writer's is the file's last: SQLite
    // checkpoints the WAL into wharf.db and deletes wharf.db-wal and -shm only when the last
    // connection closes, and a read-only one cannot. Closed the other way round, every clean
    // stop left a WAL of recent commits beside wharf.db, which a backup copied over the data
    // directory then had replayed onto it: a corrupt database.
    this.readsClosed = true;
    await this.reads.close();
    if (!this.down) {
      // The store's own close (the connection) on the thread, then the thread.
      await this.call('close', []).catch((err: unknown) => {
        // The thread died meanwhile: its connection went with it.
        if (!this.down) throw err;
      });
      await this.worker.terminate();
    }
    this.down = closed();
    this.failPending(this.down);
  }
}

function closed(): WharfError {
  return new WharfError('SERVICE_UNAVAILABLE', 'The database is closed.');
}

function revive(failure: ThrownFailure): Error {
  if (failure.kind === 'wharf') {
    const err = new WharfError(failure.code as ErrorCode, failure.message, failure.details);
    // SQLite's own error behind a 503 (a locked database): what its log line says.
    if (failure.cause) (err as Error).cause = revive(failure.cause);
    return err;
  }
  if (failure.kind === 'config') return new ConfigError(failure.problems);
  if (failure.kind === 'schema_ahead') return new SchemaAhead(failure.unknown);
  // A commit that found the disk full: the same refusal as a full disk anywhere else.
  if (failure.code === 'SQLITE_FULL') return storageFull(reviveOther(failure));
  return reviveOther(failure);
}

function reviveOther(failure: Extract<ThrownFailure, { kind: 'other' }>): Error {
  const err = new Error(failure.message) as Error & { code?: unknown };
  err.name = failure.name;
  if (failure.code !== undefined) err.code = failure.code;
  // Where it failed is what a 500's log line needs: the thread's stack, not this function's.
  if (failure.stack) err.stack = `${failure.stack}\n    (on the SQLite thread)`;
  return err;
}
