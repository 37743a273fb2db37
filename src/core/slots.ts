import { WharfError } from './errors.js';

/**
 * A fixed number of slots for expensive work (image transforms) with a bounded queue in
 * front: a burst beyond slots + queue is refused at once (TRANSFORMS_BUSY, 503 with
 * Retry-After) instead of piling up decoded images until memory runs out. Hand-written
 * because it is twenty lines, and the refusal when the queue is full, which is the point,
 * is not what the usual promise-pool libraries do (they queue without bound).
 */
export class Slots {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly size: number,
    private readonly queueLimit: number,
    /** Seconds a refused client is told to wait (Retry-After). */
    private readonly retryAfterSeconds = 2,
  ) {}

  /**
   * Resolves with a release function once a slot is free. `queueAlways` waits however long
   * the queue is (background jobs, which are already paced by the job runner).
   */
  async acquire(queueAlways = false): Promise<() => void> {
    if (this.running < this.size) {
      this.running += 1;
    } else {
      if (!queueAlways && this.waiting.length >= this.queueLimit) {
        throw new WharfError('TRANSFORMS_BUSY', 'Too many image transforms are running; try again shortly.', {
          retry_after: this.retryAfterSeconds,
        });
      }
      // The slot is handed over by release(): `running` stays the same.
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.running -= 1;
    };
  }

  get stats(): { running: number; queued: number } {
    return { running: this.running, queued: this.waiting.length };
  }
}
