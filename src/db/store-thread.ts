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
import type { Clock } from '../core/clock.js';
import { type ErrorCode, WharfError } from '../core/errors.js';
import { createIdSource, newIdOrder } from '../core/ids.js';
import type { Store } from '../core/ports.js';
import { serviceUnavailable } from '../core/unavailable.js';
import { connect } from './connect.js';
import { createSqlStore } from './store/index.js';
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
  'findTokenByHash',
  'getToken',
  'listTokens',
  'findOwnUpload',
  'getUpload',
  'getUploadByExternalId',
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
  'getWebhook',
  'listWebhooks',
  'countWebhooks',
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

/**
 * Starts the thread, which opens `databaseUrl` and migrates it to the latest schema, and
 * returns a Store whose every method runs there. `clock` is the time the store's ids carry;
 * `idOrder`, the caller's id source's (see newIdOrder), keeps them in order with its own.
 */
export async function openStoreThread(
  databaseUrl: string,
  clock: Clock,
  idOrder: SharedArrayBuffer = newIdOrder(),
): Promise<Store> {
  const start: ThreadStart = { databaseUrl, now: clock.now(), idOrder };
  const worker = new Worker(WORKER_FILE, { workerData: start });
  let methods: string[];
  try {
    methods = await new Promise<string[]>((resolve, reject) => {
      worker.once('message', (first: ThreadReady | ThreadFailedToOpen) => {
        if ('ready' in first) resolve(first.ready);
        else reject(revive(first.openFailed));
      });
      worker.once('error', reject);
      worker.once('exit', (code) =>
        reject(new Error(`the database thread exited (code ${code}) while opening`)),
      );
    });
  } catch (err) {
    await worker.terminate();
    throw err;
  }
  for (const event of ['message', 'error', 'exit']) worker.removeAllListeners(event);
  // Opened once the thread has created and migrated the file. Its store makes no ids (it
  // never writes); it gets the shared source all the same.
  const reads = createSqlStore(connect(databaseUrl, { readOnly: true }), createIdSource(clock, idOrder));
  return new StoreThread(worker, clock, methods, reads).store;
}

class StoreThread {
  readonly store: Store;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private outbox: StoreCall[] = [];
  /** Set once the thread is gone: every call after that fails with it. */
  private gone: WharfError | undefined;
  private closing = false;

  constructor(
    private readonly worker: Worker,
    private readonly clock: Clock,
    methods: readonly string[],
    private readonly reads: Store,
  ) {
    worker.on('message', (answers: StoreAnswer[]) => this.receive(answers));
    worker.on('error', (err) => this.lose(err));
    worker.on('exit', (code) => this.lose(new Error(`the database thread exited (code ${code})`)));
    // Idle, it must not keep the process alive; with calls out, it does (see call()).
    worker.unref();
    const store: Record<string, unknown> = {};
    const local = reads as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    for (const method of methods) {
      store[method] = READ_METHODS.has(method)
        ? (...args: unknown[]) => (this.gone ? Promise.reject(this.gone) : local[method]!.apply(reads, args))
        : (...args: unknown[]) => this.call(method, args);
    }
    store.close = () => this.close();
    this.store = store as unknown as Store;
  }

  private call(method: string, args: unknown[]): Promise<unknown> {
    if (this.gone) return Promise.reject(this.gone);
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

  /** The thread died: the database is unavailable to this process from now on (503s). */
  private lose(cause: unknown): void {
    if (this.gone) return;
    this.gone = this.closing
      ? new WharfError('SERVICE_UNAVAILABLE', 'The database is closed.')
      : serviceUnavailable('database', cause);
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, this.gone);
  }

  private async close(): Promise<void> {
    if (this.gone) return;
    // The store's own close (the connection) on the thread, then the thread, then the reader.
    await this.call('close', []);
    this.closing = true;
    await this.worker.terminate();
    await this.reads.close();
  }
}

function revive(failure: ThrownFailure): Error {
  if (failure.kind === 'wharf')
    return new WharfError(failure.code as ErrorCode, failure.message, failure.details);
  const err = new Error(failure.message) as Error & { code?: unknown };
  err.name = failure.name;
  if (failure.code !== undefined) err.code = failure.code;
  // Where it failed is what a 500's log line needs: the thread's stack, not this function's.
  if (failure.stack) err.stack = `${failure.stack}\n    (on the SQLite thread)`;
  return err;
}
