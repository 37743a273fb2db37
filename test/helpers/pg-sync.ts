import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';

/**
 * A synchronous SELECT on PostgreSQL, for tests that read the database as they read SQLite
 * with better-sqlite3 (one `dbQuery` serves both deployments, and a hundred call sites
 * read it synchronously). It used to spawn `psql` per query: 70–90 ms each, which made the
 * checks that count rows before and after every refusal most of a scaled suite's time. Here a
 * thread keeps a connection and the caller waits on it with Atomics.wait, then takes the
 * answer with receiveMessageOnPort, the pattern Node documents for such a wait. Blocking the
 * event loop while waiting is what execFileSync(psql) did too.
 */
let thread: { port: MessagePort; signal: Int32Array; worker: Worker } | undefined;

function start(): { port: MessagePort; signal: Int32Array; worker: Worker } {
  const { port1, port2 } = new MessageChannel();
  const signal = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL('./pg-sync-worker.ts', import.meta.url), {
    workerData: { port: port2, signal },
    transferList: [port2],
  });
  // Neither keeps a finished test file's process alive.
  worker.unref();
  port1.unref();
  return { port: port1, signal, worker };
}

const TIMEOUT_MS = 30_000;

/** Runs `text` ($1… placeholders, values as text) and returns the rows of its one JSON column `rows`. */
export function pgQuerySync<T>(url: string, text: string, values: string[]): T[] {
  thread ??= start();
  const { port, signal } = thread;
  Atomics.store(signal, 0, 0);
  port.postMessage({ url, text, values });
  if (Atomics.wait(signal, 0, 0, TIMEOUT_MS) === 'timed-out') {
    // Its answer may still come, and must never be taken for the next query's: a new thread then.
    void thread.worker.terminate();
    thread = undefined;
    throw new Error(`PostgreSQL did not answer within ${TIMEOUT_MS} ms: ${text}`);
  }
  const reply = receiveMessageOnPort(port)?.message as { rows: T[] } | { error: string } | undefined;
  if (!reply) throw new Error(`no answer from the query thread: ${text}`);
  if ('error' in reply) throw new Error(`${reply.error} (in: ${text})`);
  return reply.rows;
}
