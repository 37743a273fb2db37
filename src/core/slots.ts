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
 */
export class Slots {
  private running = 0;
  /**
   * Waiters by account. A Map keeps insertion order: the first account is the next to be
   * served, and an account that was served and still has waiters goes to the back.
   */
  private readonly waiting = new Map<string, Array<() => void>>();
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
   * are the ones refused while its own processing waits.
   */
  async acquire(accountId: string, queueAlways = false): Promise<() => void> {
    if (this.running < this.size) {
      this.running += 1;
    } else {
      const own = this.waiting.get(accountId);
      if (!queueAlways && this.queued >= this.queueLimit) {
        throw new WharfError('TRANSFORMS_BUSY', 'Too many image transforms are running; try again shortly.', {
          retry_after: this.retryAfterSeconds,
        });
      }
      if (!queueAlways && (own?.length ?? 0) >= this.accountLimit) {
        throw new WharfError(
          'TRANSFORMS_BUSY',
          'This account has too many image transforms waiting; try again shortly.',
          { retry_after: this.retryAfterSeconds },
        );
      }
      // The slot is handed over by release(): `running` stays the same.
      await new Promise<void>((resolve) => {
        if (own) own.push(resolve);
        else this.waiting.set(accountId, [resolve]);
        this.queued += 1;
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.next();
      if (next) next();
      else this.running -= 1;
    };
  }

  /** The next waiter: the oldest of the account whose turn it is; that account goes to the back. */
  private next(): (() => void) | undefined {
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
