export type UploadPhase = 'hashing' | 'uploading' | 'downloading' | 'completing' | 'done';

/** Where an upload is: reported as it goes (at most every `interval`, and at each phase change). */
export interface UploadProgress {
  phase: UploadPhase;
  /** Bytes done in this phase (hashed, or sent). */
  bytes: number;
  /** Bytes in all, when known. */
  total: number | undefined;
  /** Bytes per second over the last few seconds. */
  rate: number;
  /** Which flow carries the bytes (known from the uploading phase on). */
  strategy?: string | undefined;
}

export type ProgressListener = (progress: UploadProgress) => void;

const WINDOW_MS = 3000;

/**
 * Counts bytes of one phase and reports them, throttled: a listener that redraws a terminal or a
 * page needs a few updates a second, not one per 64 KiB chunk.
 */
export class ProgressMeter {
  private bytes = 0;
  private phase: UploadPhase = 'hashing';
  private strategy: string | undefined;
  private samples: Array<[number, number]> = [];
  private lastReport = 0;
  /** The count last reported. */
  private reported = 0;
  /** A report throttled away, due at the end of the interval. */
  private trailing: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(
    private readonly total: number | undefined,
    private readonly listener: ProgressListener | undefined,
    private readonly intervalMs = 100,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** A new phase; `from`: bytes already done (a resumed upload starts with what storage holds). */
  start(phase: UploadPhase, strategy?: string, from = 0): void {
    // Completing and done report the bytes the upload sent; every other phase counts afresh.
    // The phase that ends is reported at its final count (its last chunks may have been throttled).
    if (this.reported !== this.bytes) this.report(true);
    const carry = (phase === 'completing' || phase === 'done') && this.phase !== 'hashing';
    this.phase = phase;
    if (strategy !== undefined) this.strategy = strategy;
    if (!carry) this.bytes = from;
    this.samples = [[this.now(), this.bytes]];
    this.report(true);
  }

  add(bytes: number): void {
    this.bytes += bytes;
    this.report(false);
  }

  /** Bytes of an attempt that failed and will be sent again. */
  subtract(bytes: number): void {
    this.bytes = Math.max(0, this.bytes - bytes);
  }

  /** Sets the count (a resume starts with what storage holds). */
  set(bytes: number): void {
    this.bytes = bytes;
    this.samples = [[this.now(), bytes]];
    this.report(true);
  }

  /**
   * Reports nothing more (the operation has settled): a count that comes in after it, from a
   * read still in flight, would tell a listener that a failed upload goes on.
   */
  stop(): void {
    this.stopped = true;
    if (this.trailing !== undefined) clearTimeout(this.trailing);
    this.trailing = undefined;
  }

  get sent(): number {
    return this.bytes;
  }

  private report(force: boolean): void {
    if (!this.listener || this.stopped) return;
    const now = this.now();
    if (!force && now - this.lastReport < this.intervalMs) {
      // Delivered at the end of the interval all the same: the next count may be far off (in a
      // browser, a Blob's bytes count whole when its request starts, then nothing until it ends).
      this.trailing ??= unref(
        setTimeout(
          () => {
            this.trailing = undefined;
            if (this.reported !== this.bytes) this.report(true);
          },
          Math.max(0, Math.min(this.intervalMs, this.intervalMs - (now - this.lastReport))),
        ),
      );
      return;
    }
    if (this.trailing !== undefined) clearTimeout(this.trailing);
    this.trailing = undefined;
    this.lastReport = now;
    this.reported = this.bytes;
    this.samples.push([now, this.bytes]);
    while (this.samples.length > 2 && now - this.samples[0]![0] > WINDOW_MS) this.samples.shift();
    const [t0, b0] = this.samples[0]!;
    const rate = now > t0 ? ((this.bytes - b0) * 1000) / (now - t0) : 0;
    this.listener({
      phase: this.phase,
      bytes: this.bytes,
      total: this.total,
      rate: Math.max(0, rate),
      strategy: this.strategy,
    });
  }
}

/** A timer that does not keep Node running (browsers' timers are numbers: nothing to do). */
function unref<T>(timer: T): T {
  (timer as { unref?: () => void }).unref?.();
  return timer;
}
