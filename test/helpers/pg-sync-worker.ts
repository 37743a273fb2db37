import { type MessagePort, workerData } from 'node:worker_threads';
import pg from 'pg';

/** The thread behind queryPostgres (see pg-sync.ts): one pool per database URL, kept. */
interface Request {
  seq: number;
  url: string;
  text: string;
  values: string[];
}

const { port, signal } = workerData as { port: MessagePort; signal: Int32Array };
const pools = new Map<string, pg.Pool>();

port.on('message', async ({ seq, url, text, values }: Request) => {
  let pool = pools.get(url);
  if (!pool) {
    pool = new pg.Pool({ connectionString: url, max: 1, allowExitOnIdle: true });
    // An idle connection ended from outside (a test's database dropped at its end, with FORCE)
    // is no error of a query: the pool opens another when one is next needed.
    pool.on('error', () => {});
    pools.set(url, pool);
  }
  try {
    const result = await pool.query<{ rows: unknown[] }>(text, values);
    port.postMessage({ seq, rows: result.rows[0]!.rows });
  } catch (err) {
    port.postMessage({ seq, error: (err as Error).message });
  }
  // Posted first, then woken: the waiting thread looks for this number's answer on its port.
  Atomics.store(signal, 0, seq);
  Atomics.notify(signal, 0);
});
