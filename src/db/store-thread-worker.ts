/**
 * The SQLite thread (see store-thread.ts): opens the database, migrates it, and runs each
 * Store call it is sent on the one connection, answering in batches.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ConfigError } from '../config.js';
import { WharfError } from '../core/errors.js';
import { createIdSource } from '../core/ids.js';
import { SchemaAhead } from './schema-ahead.js';
import { openSqlStore } from './store/index.js';
import type {
  CallBatch,
  StoreAnswer,
  StoreCall,
  ThreadReady,
  ThreadStart,
  ThrownFailure,
} from './store-thread-protocol.js';

const port = parentPort;
if (!port) throw new Error('store-thread-worker runs as a worker thread');
const start = workerData as ThreadStart;

// The caller's clock as of the batch being run: its ids read the time the caller sees (a test's
// ManualClock as much as the system clock), and stay monotonic within a millisecond.
let callerNow = start.now;
const ids = createIdSource({ now: () => callerNow }, start.idOrder);

function describe(err: unknown): ThrownFailure {
  if (err instanceof WharfError) {
    const { cause } = err as Error;
    return {
      kind: 'wharf',
      code: err.code,
      message: err.message,
      details: err.details,
      ...(cause === undefined ? {} : { cause: describe(cause) }),
    };
  }
  // A database a newer Wharf migrated: rebuilt as such, so that the start names the setting
  // the operator used (main.ts).
  if (err instanceof SchemaAhead) return { kind: 'schema_ahead', unknown: err.unknown };
  // What the operator must change: said as it is, at start.
  if (err instanceof ConfigError) return { kind: 'config', problems: err.problems };
  const e = err as { name?: unknown; message?: unknown; code?: unknown; stack?: unknown } | null;
  return {
    kind: 'other',
    name: typeof e?.name === 'string' ? e.name : 'Error',
    message: typeof e?.message === 'string' ? e.message : String(err),
    code: e?.code,
    stack: typeof e?.stack === 'string' ? e.stack : undefined,
  };
}

let outbox: StoreAnswer[] = [];
function answer(message: StoreAnswer): void {
  outbox.push(message);
  // Answers of this turn go together, as soon as its promises have settled.
  if (outbox.length === 1) {
    queueMicrotask(() => {
      const batch = outbox;
      outbox = [];
      port?.postMessage(batch);
    });
  }
}

openSqlStore(start.databaseUrl, ids, { mustExist: start.reopen }).then(
  ({ store, migrated }) => {
    const methods = store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const run = (call: StoreCall): void => {
      const method = methods[call.method];
      if (typeof method !== 'function') {
        answer({ id: call.id, failure: describe(new Error(`the store has no method ${call.method}`)) });
        return;
      }
      // Each is a promise: a method that throws synchronously is answered like one that rejects.
      Promise.resolve()
        .then(() => method.apply(store, call.args))
        .then(
          (value) => answer({ id: call.id, value }),
          (err: unknown) => answer({ id: call.id, failure: describe(err) }),
        );
    };
    port.on('message', (batch: CallBatch) => {
      callerNow = batch.now;
      for (const call of batch.calls) run(call);
    });
    const ready: ThreadReady = {
      ready: Object.keys(methods).filter((name) => typeof methods[name] === 'function'),
      // Always set: the thread is a server's, which migrates (never `migrate: false`).
      migrated: migrated!,
    };
    port.postMessage(ready);
  },
  (err: unknown) => port.postMessage({ openFailed: describe(err) }),
);
