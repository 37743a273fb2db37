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
let lastSeq = 0;

/**
 * Runs `text` ($1… placeholders, values as text) and returns the rows of its one JSON column `rows`.
 * Each query carries a number, which the thread stores in `signal` once its answer is posted;
 * the caller takes answers off the port until it finds that number's. Before, an answer not yet
 * on the port when the caller woke (seen once, on a loaded machine) was left there and taken as
 * the next query's, and every query after got its predecessor's rows.
 */
export function pgQuerySync<T>(url: string, text: string, values: string[]): T[] {
  thread ??= start();
  const { port, signal } = thread;
  const seq = ++lastSeq;
  port.postMessage({ seq, url, text, values });
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const reply = receiveMessageOnPort(port)?.message as Reply<T> | undefined;
    if (reply?.seq === seq) {
      if ('error' in reply) throw new Error(`${reply.error} (in: ${text})`);
      return reply.rows;
    }
    // An older query's answer (its caller gave up) is dropped; none yet: wait for the signal.
    if (reply) continue;
    const left = deadline - Date.now();
    if (left <= 0) {
      // Its answer may still come; a new thread then, so that it never meets a later query.
      void thread.worker.terminate();
      thread = undefined;
      throw new Error(`PostgreSQL did not answer within ${TIMEOUT_MS} ms: ${text}`);
    }
    const answered = Atomics.load(signal, 0);
    // Answered but not yet on the port: look again after a moment.
    Atomics.wait(signal, 0, answered, answered >= seq ? 1 : left);
  }
}

type Reply<T> = { seq: number } & ({ rows: T[] } | { error: string });
