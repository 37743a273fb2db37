import { join } from 'node:path';
import type { IdSource } from '../../src/core/ids.js';
import type { Store } from '../../src/core/ports.js';
import { connect } from '../../src/db/connect.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { createSqlStore } from '../../src/db/store/index.js';
import { createDatabase, deployment } from './deployment.js';

export interface TwoStores {
  first: Store;
  second: Store;
  /** The database's URL, for a connection of the test's own. */
  url: string;
  close(): Promise<void>;
}

let databases = 0;

/**
 * A fresh database, migrated, opened through two connections as two processes (or nodes)
 * would: a SQLite file in `dir` on embedded, a PostgreSQL database of its own when the suite
 * runs scaled. What holds across nodes has to hold across connections, not just within one.
 */
export async function twoStores(dir: string, ids: IdSource): Promise<TwoStores> {
  let url = `sqlite://${join(dir, `stores-${++databases}.db`)}`;
  let release: (() => Promise<void>) | undefined;
  if (deployment === 'scaled') {
    const database = await createDatabase();
    url = database.env.WHARF_DATABASE_URL!;
    release = database.release;
  }
  const a = connect(url);
  await migrateToLatest(a.db);
  const first = createSqlStore(a, ids);
  const second = createSqlStore(connect(url), ids);
  return {
    first,
    second,
    url,
    async close() {
      await first.close();
      await second.close();
      await release?.();
    },
  };
}

/** `store` with the calls of one of its methods counted: `calls()` says how many so far. */
export function countingCalls<K extends keyof Store>(
  store: Store,
  method: K,
): { store: Store; calls(): number } {
  let calls = 0;
  const original = store[method] as (...args: unknown[]) => unknown;
  const counted = {
    ...store,
    [method]: (...args: unknown[]) => {
      calls += 1;
      return original.apply(store, args);
    },
  } as Store;
  return { store: counted, calls: () => calls };
}
