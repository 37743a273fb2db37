/**
 * What the event loop and the SQLite thread say to each other (see store-thread.ts). Each
 * message is a batch: the calls (or answers) made in one turn go together, so a busy server
 * wakes the other thread once per turn, not once per call.
 */

import type { Migrated } from './store/index.js';

/** One call of a Store method, with its arguments (structured-cloned). */
export interface StoreCall {
  id: number;
  method: string;
  args: unknown[];
}

export interface CallBatch {
  /** The caller's clock as the batch left: ids the store makes carry the caller's time. */
  now: number;
  calls: StoreCall[];
}

/** A failure as it crosses threads: enough to rebuild what callers test (class and code). */
export type ThrownFailure =
  | {
      kind: 'wharf';
      code: string;
      message: string;
      details: Record<string, unknown> | undefined;
      /** What it stands for (SQLite's own error behind a 503), for the log line. */
      cause?: ThrownFailure;
    }
  | { kind: 'config'; problems: string[] }
  | { kind: 'schema_ahead'; unknown: string[] }
  | { kind: 'other'; name: string; message: string; code: unknown; stack: string | undefined };

export type StoreAnswer = { id: number; value: unknown } | { id: number; failure: ThrownFailure };

/**
 * The worker's first message: it is open and migrated, these are the Store's methods, and
 * this is what the migration did (for the server's start-up log).
 */
export interface ThreadReady {
  ready: string[];
  migrated: Migrated;
}

/** Or, instead of ready: opening the database (or migrating it) failed. */
export interface ThreadFailedToOpen {
  openFailed: ThrownFailure;
}

export interface ThreadStart {
  databaseUrl: string;
  /**
   * A thread started in place of one that died: the file must exist. Creating an empty
   * database where the node's data was would serve a blank node as if nothing happened.
   */
  reopen: boolean;
  now: number;
  /** Shared with the caller's id source, so ids of both threads sort as made (newIdOrder). */
  idOrder: SharedArrayBuffer;
}
