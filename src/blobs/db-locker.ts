import { randomUUID } from 'node:crypto';
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils';
import type { LockStore } from '../core/ports.js';
import { isStorageFull } from '../core/unavailable.js';

export interface StoreLockerOptions {
  /** How long a lease lasts unless renewed: how long a crashed holder blocks an upload. */
  leaseMs?: number;
  /** How often a holder renews its lease and checks whether someone asked it to let go. */
  pollMs?: number;
  /** Longest wait for a lock before the request fails. */
  acquireTimeoutMs?: number;
  /** Real time: leases measure elapsed time between processes, never a test's manual clock. */
  now?: () => number;
}

/**
 * tus.io's Locker over the Store's leases, so one upload is written by one request at a time
 * across every node of a deployment (the in-memory locker only covers one process).
 *
 * A holder renews its lease while it works; a crashed one blocks the upload for at most one
 * lease. A request that finds the upload locked asks that holder (once) to let go (tus's
 * requestRelease: a client resuming after a broken connection whose old request the server
 * still thinks is running) and polls, backing off, until the lease is free, it gives up, or
 * its own request is aborted.
 */
export class StoreLocker implements Locker {
  private readonly leaseMs: number;
  private readonly pollMs: number;
  private readonly acquireTimeoutMs: number;
  readonly now: () => number;

  constructor(
    readonly store: LockStore,
    options: StoreLockerOptions = {},
  ) {
    this.leaseMs = options.leaseMs ?? 10_000;
    this.pollMs = options.pollMs ?? 250;
    this.acquireTimeoutMs = options.acquireTimeoutMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  newLock(id: string): Lock {
    return new StoreLock(this, `tus:${id}`, {
      leaseMs: this.leaseMs,
      pollMs: this.pollMs,
      acquireTimeoutMs: this.acquireTimeoutMs,
    });
  }
}

class StoreLock implements Lock {
  private readonly owner = randomUUID();
  private timer: NodeJS.Timeout | undefined;
  private held = false;
  /** The lease watcher's poll under way, if any (it never rejects). */
  private polling: Promise<void> | undefined;

  constructor(
    private readonly locker: StoreLocker,
    private readonly name: string,
    private readonly timing: { leaseMs: number; pollMs: number; acquireTimeoutMs: number },
  ) {}

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const { store, now } = this.locker;
    const deadline = now() + this.timing.acquireTimeoutMs;
    let delay = 10;
    // The holder is asked to let go once: the one holding the upload when this request came
    // (older than it). A request that waits on, say one whose client left while its body sat
    // unread in the socket so it cannot tell, must not cut a newer one that took the upload
    // meanwhile: a resuming client's live request (seen on the scaled deployment).
    let asked = false;
    for (;;) {
      if (signal.aborted) throw ERRORS.ERR_LOCK_TIMEOUT;
      const at = now();
      if (await store.acquireLock(this.name, this.owner, at + this.timing.leaseMs, at)) break;
      if (!asked) asked = await store.requestLockRelease(this.name, at);
      if (now() >= deadline) throw ERRORS.ERR_LOCK_TIMEOUT;
      await sleep(delay, signal);
      delay = Math.min(delay * 2, this.timing.pollMs * 2);
    }
    this.held = true;
    this.watch(requestRelease);
  }

  async unlock(): Promise<void> {
    this.held = false;
    clearTimeout(this.timer);
    // A poll under way finishes first: its renewal, landing after the release, would take the
    // lease again for a holder that is gone, and every other request would wait it out.
    await this.polling;
    await this.locker.store.releaseLock(this.name, this.owner);
  }

  /** Renews the lease and passes a release request on to the holder, until unlocked. */
  private watch(requestRelease: RequestRelease): void {
    const { store, now } = this.locker;
    let renewedAt = now();
    let asked = false;
    let passedOn = false;
    const tick = async () => {
      if (!this.held) return;
      try {
        if (now() - renewedAt >= this.timing.leaseMs / 3) {
          const at = now();
          // Lost (the lease ran out, say the process stalled): whoever took it is writing now.
          if (!(await store.acquireLock(this.name, this.owner, at + this.timing.leaseMs, at))) asked = true;
          renewedAt = at;
        }
        if (!asked && (await store.lockReleaseRequested(this.name, this.owner))) asked = true;
        // Only to a holder that still holds it: the poll may have been under way when the holder
        // unlocked, and the ask (for the request it has answered) would reach whatever its
        // connection carries next.
        if (asked && !passedOn && this.held) {
          // Once: the holder winds down (tus gives it a moment to drain) and unlocks; the
          // lease is renewed meanwhile so nobody else writes before it has. Not awaited: a
          // holder may unlock from within it, and unlock waits for this poll.
          passedOn = true;
          void Promise.resolve(requestRelease()).catch(() => undefined);
        }
      } catch {
        // A failed poll (the database restarting, the server shutting down) is retried next
        // tick; the lease covers the gap.
      }
      if (this.held) this.schedule(tick);
    };
    this.schedule(tick);
  }

  private schedule(tick: () => Promise<void>): void {
    this.timer = setTimeout(() => {
      this.polling = tick();
    }, this.timing.pollMs);
    this.timer.unref();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A lock for a request that only reads: whether it holds the upload (see readingLocker). */
export interface ReadingLock extends Lock {
  /** Whether lock() took the lease (false: there was no room to record it). */
  readonly held: boolean;
}

/**
 * `locker` for requests that only read an upload (a HEAD's offset). They take its lock as any
 * request does, so that a holder whose client went silent lets go first and the offset read is
 * where its bytes ended. But the lease is a database write, which a full disk refuses
 * (SQLITE_FULL), and a client could then not learn where to resume: such a request reads
 * without it. No one can take the lock meanwhile, and a writer that held it already finds no
 * room either (its PATCH gives back what it wrote); at worst the offset read is ahead of where
 * that PATCH ends, and the client's next PATCH is told so (409). Any other failure stands.
 */
export function readingLocker(locker: Locker): { newLock(id: string): ReadingLock } {
  return {
    newLock(id) {
      const lock = locker.newLock(id);
      let held = false;
      return {
        get held() {
          return held;
        },
        async lock(signal, requestRelease) {
          try {
            await lock.lock(signal, requestRelease);
            held = true;
          } catch (err) {
            if (!isStorageFull(err)) throw err;
          }
        },
        async unlock() {
          if (held) await lock.unlock();
          held = false;
        },
      };
    },
  };
}
