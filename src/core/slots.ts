import { WharfError } from './errors.js';

/**
 * A fixed number of slots for expensive work (image transforms) with a bounded queue in
 * front: a burst beyond slots + queue is refused at once (TRANSFORMS_BUSY, 503 with
 * Retry-After) instead of piling up decoded images until memory runs out. Hand-written
 * because it is short, and the refusal when the queue is full, which is the point, is not
 * what the usual promise-pool libraries do (they queue without bound).
 *
 * The queue is shared fairly between accounts: a freed slot goes to the accounts with
 * waiters in turn (round-robin; first come, first served within an account), and one
 * account may hold at most half the queue. Otherwise one account's flood of new renderings
 * (many widths of a huge image) would fill the queue and every other account's single
 * request would wait behind all of it, or be refused.
 *
 * A request's wait ends when its client leaves (its AbortSignal) or after a bound (see
 * SlotWait): a queue place held for nobody made the account's next requests refused, and
 * every waiter behind it waited for a rendering no one would read.
 */
/** How long one waiter may wait for a slot. */
export interface SlotWait {
  /** Aborted when nobody waits for the work any more: its queue place is given up at once. */
  signal?: AbortSignal | undefined;
  /** Milliseconds in the queue after which the wait ends with TRANSFORMS_BUSY. */
  maxWaitMs?: number | undefined;
}

/** One waiter: `grant` hands it a slot, `leave` takes it out of the queue without one. */
interface Waiter {
  grant(): void;
}

export class Slots {
  private running = 0;
  /**
   * Waiters by account. A Map keeps insertion order: the first account is the next to be
   * served, and an account that was served and still has waiters goes to the back.
   */
  private readonly waiting = new Map<string, Waiter[]>();
  private queued = 0;
  /** Queue places one account may hold: half the queue, at least one. */
  private readonly accountLimit: number;

  constructor(
    private readonly size: number,
    private readonly queueLimit: number,
    /** Seconds a refused client is told to wait (Retry-After). */
    private readonly retryAfterSeconds = 2,
  ) {
    this.accountLimit = Math.max(1, Math.floor(queueLimit / 2));
  }

  /**
   * Resolves with a release function once a slot is free for `accountId`'s work.
   * `queueAlways` waits however long the queue is (background jobs, which are already paced
   * by the job runner); it still counts in its account's share, so that account's requests
   * are the ones refused while its own processing waits. `wait` ends a wait early: rejected
   * with the signal's reason once it aborts (at once when it already has, even with a slot
   * free: nobody would read the work), or with TRANSFORMS_BUSY past `maxWaitMs` in the queue.
   */
  async acquire(accountId: string, queueAlways = false, wait: SlotWait = {}): Promise<() => void> {
    wait.signal?.throwIfAborted();
    if (this.running < this.size) {
      this.running += 1;
    } else {
      const own = this.waiting.get(accountId);
      if (!queueAlways && this.queued >= this.queueLimit) {
        throw this.busy('Too many image transforms are running; try again shortly.');
      }
      if (!queueAlways && (own?.length ?? 0) >= this.accountLimit) {
        throw this.busy('This account has too many image transforms waiting; try again shortly.');
      }
      // The slot is handed over by release(): `running` stays the same.
      await this.enqueue(accountId, wait);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.next();
      if (next) next.grant();
      else this.running -= 1;
    };
  }

  private enqueue(accountId: string, { signal, maxWaitMs }: SlotWait): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const settle = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', abandon);
      };
      // Out of the queue without a slot: the place goes to the next request.
      const leave = (reason: unknown) => {
        const waiters = this.waiting.get(accountId);
        const at = waiters?.indexOf(waiter) ?? -1;
        // Already handed a slot (granted in the same turn): that grant stands.
        if (!waiters || at === -1) return;
        settle();
        waiters.splice(at, 1);
        if (waiters.length === 0) this.waiting.delete(accountId);
        this.queued -= 1;
        reject(reason);
      };
      const abandon = () => leave(signal?.reason);
      const waiter: Waiter = {
        grant: () => {
          settle();
          resolve();
        },
      };
      const own = this.waiting.get(accountId);
      if (own) own.push(waiter);
      else this.waiting.set(accountId, [waiter]);
      this.queued += 1;
      signal?.addEventListener('abort', abandon, { once: true });
      if (maxWaitMs !== undefined) {
        timer = setTimeout(
          () => leave(this.busy('No image transform slot came free in time; try again shortly.')),
          maxWaitMs,
        );
      }
    });
  }

  private busy(message: string): WharfError {
    return new WharfError('TRANSFORMS_BUSY', message, { retry_after: this.retryAfterSeconds });
  }

  /** The next waiter: the oldest of the account whose turn it is; that account goes to the back. */
  private next(): Waiter | undefined {
    const first = this.waiting.entries().next();
    if (first.done) return undefined;
    const [accountId, waiters] = first.value;
    const next = waiters.shift();
    this.waiting.delete(accountId);
    if (waiters.length > 0) this.waiting.set(accountId, waiters);
    this.queued -= 1;
    return next;
  }

  get stats(): { running: number; queued: number } {
    return { running: this.running, queued: this.queued };
  }
}
