import type { Clock } from './clock.js';
import type { IdSource } from './ids.js';
import type { Job } from './model.js';
import type { Store } from './ports.js';
import { type Renewal, renewEvery } from './renewal.js';
import { NO_TELEMETRY, type Telemetry } from './telemetry.js';

export type JobHandler = (job: Job) => Promise<void>;

export interface JobSettings {
  /**
   * How long a claimed job is this worker's unless renewed; after that another node may take it
   * over. The runner renews it while the job runs, so this is how long a job whose node died
   * waits before it runs again, not a bound on how long a job may take.
   */
  leaseMs: number;
  /** How often a running job's lease is renewed (a third of the lease when absent). */
  renewEveryMs?: number | undefined;
  maxAttempts: number;
  /** How many jobs this node runs at once (WHARF_JOB_CONCURRENCY); 1 when absent. */
  concurrency?: number | undefined;
  /**
   * How many jobs of one lane run at once, across every node; 1 when absent. Only deliveries
   * have lanes (one per endpoint), so this is WHARF_WEBHOOK_CONCURRENCY.
   */
  laneLimit?: number | undefined;
}

export interface KindOptions {
  /**
   * Jobs of this kind wait on others (a webhook endpoint's answer): they never take the node's
   * last free worker, so the other kinds (asset processing) always have one to run on.
   */
  spareOneWorker?: boolean;
}

/** How often and how far apart a kind of job is tried. */
export interface RetryPolicy {
  maxAttempts: number;
  /** How long to wait after the `attempts`-th failed attempt (1 after the first) before the next. */
  delayMs(attempts: number): number;
}

/**
 * What a job's failure log line names besides the job itself: what the job was working on (a
 * delivery's endpoint and event), which its id alone does not tell whoever reads the log.
 */
export type JobLogFields = Readonly<Record<string, unknown>>;

/** Raised by a handler when retrying cannot help (the asset is gone, the input is bad). */
export class PermanentJobError extends Error {
  constructor(
    message: string,
    readonly logFields?: JobLogFields,
  ) {
    super(message);
  }
}

/**
 * Raised by a handler that knows when the next attempt should be (a receiver's Retry-After, a
 * schedule with jitter it has already recorded): the runner retries at `retryAt`, not by its
 * policy. An expected outcome (a receiver that answered 500), not a fault of Wharf's: its log
 * line has no stack.
 */
export class RetryJobError extends Error {
  constructor(
    message: string,
    readonly retryAt: number,
    readonly logFields?: JobLogFields,
  ) {
    super(message);
  }
}

/**
 * The durable queue's consumer. Jobs live in the database, so any node may run any job
 * and a crash mid-job only delays it until its lease runs out; the claim itself makes
 * sure exactly one worker holds a job at a time.
 */
/** How long a running job's lease is renewed at most (see JobRunner.keepLease). */
const MAX_RENEWED_MS = 30 * 60_000;

/** Finished jobs deleted per statement (see JobRunner.prune). */
const PRUNE_PAGE = 1000;

export class JobRunner {
  private readonly handlers = new Map<string, { handler: JobHandler; policy: RetryPolicy }>();
  /** Kinds that may take only some of the workers: how many they may, how many they hold. */
  private readonly capped = new Map<string, { max: number; running: number }>();
  readonly workerId: string;
  /** Exponential backoff: 2 s, 4 s, 8 s … so a flapping dependency is not hammered. */
  private readonly defaultPolicy: RetryPolicy;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    ids: IdSource,
    private readonly settings: JobSettings,
    private readonly telemetry: Telemetry = NO_TELEMETRY,
  ) {
    this.workerId = `worker-${ids.token(8)}`;
    this.defaultPolicy = { maxAttempts: settings.maxAttempts, delayMs: (attempts) => 1000 * 2 ** attempts };
  }

  /**
   * Retention: finished jobs due before `before` are deleted, a page at a time. Every upload,
   * deletion and delivery leaves a few (processing, its back-stops, the delivery), and nothing
   * reads one once it is done: kept, they grew the table by some 30,000 rows an hour under a
   * modest steady load, for ever. Failed ones stay. Run by the periodic sweep.
   */
  async prune(before: number): Promise<number> {
    let pruned = 0;
    for (;;) {
      const n = await this.store.pruneJobs(before, PRUNE_PAGE);
      pruned += n;
      if (n < PRUNE_PAGE) return pruned;
    }
  }

  /** How long a claimed job stays this worker's (a handler's own timeouts must stay below it). */
  get leaseMs(): number {
    return this.settings.leaseMs;
  }

  register(
    kind: string,
    handler: JobHandler,
    policy: RetryPolicy = this.defaultPolicy,
    options: KindOptions = {},
  ): void {
    this.handlers.set(kind, { handler, policy });
    if (options.spareOneWorker) {
      this.capped.set(kind, { max: Math.max(1, (this.settings.concurrency ?? 1) - 1), running: 0 });
    }
  }

  /** The kinds of job this runner has handlers for. */
  get kinds(): string[] {
    return [...this.handlers.keys()];
  }

  /** Claims and runs one due job; false when none was due. */
  async runOne(): Promise<boolean> {
    const now = this.clock.now();
    // A capped kind's place is taken before the claim (workers claim at once: counting after
    // it, two could both take the last place); the claim skips kinds that have none left.
    const skip: string[] = [];
    const reserved: string[] = [];
    for (const [kind, cap] of this.capped) {
      if (cap.running >= cap.max) skip.push(kind);
      else {
        cap.running += 1;
        reserved.push(kind);
      }
    }
    let job: Job | undefined;
    try {
      job = await this.store.claimJob(this.workerId, now, now + this.settings.leaseMs, {
        skipKinds: skip,
        laneLimit: this.settings.laneLimit,
      });
    } finally {
      for (const kind of reserved) if (kind !== job?.kind) this.capped.get(kind)!.running -= 1;
    }
    if (!job) return false;
    try {
      await this.run(job);
    } finally {
      const cap = this.capped.get(job.kind);
      if (cap) cap.running -= 1;
    }
    return true;
  }

  private async run(job: Job): Promise<void> {
    const registered = this.handlers.get(job.kind);
    const renewal = this.keepLease(job);
    try {
      if (!registered) throw new PermanentJobError(`No handler for job kind "${job.kind}".`);
      await registered.handler(job);
      await this.store.finishJob(job.id, this.workerId, this.clock.now());
      this.telemetry.jobSucceeded(job);
    } catch (err) {
      const policy = registered?.policy ?? this.defaultPolicy;
      const permanent = err instanceof PermanentJobError || job.attempts >= policy.maxAttempts;
      let retryAt: number | null = null;
      if (!permanent) {
        retryAt =
          err instanceof RetryJobError ? err.retryAt : this.clock.now() + policy.delayMs(job.attempts);
      }
      await this.store.failJob(job.id, this.workerId, String(err), retryAt, this.clock.now());
      // The queue keeps only the message; the sinks get the error itself (its stack, its code).
      this.telemetry.jobFailed(job, err, retryAt);
    } finally {
      renewal.stop();
    }
  }

  /**
   * Renews the job's lease while it runs, a third of a lease apart. A short lease is what lets
   * a job whose node died (a crash, `kill -9`) run again soon: a delivery that node was sending
   * held its endpoint's slot (WHARF_WEBHOOK_CONCURRENCY) for the whole lease, five minutes when
   * it was fixed. Renewed, a job may also run longer than one lease (a large video's preview)
   * without another node taking it over meanwhile.
   */
  private keepLease(job: Job): Renewal {
    const started = this.clock.now();
    return renewEvery(
      this.settings.renewEveryMs ?? Math.floor(this.settings.leaseMs / 3),
      () => this.store.renewJob(job.id, this.workerId, this.clock.now() + this.settings.leaseMs),
      // A handler that never returns (every one has its own timeouts; a bug may not) keeps its
      // job, and a delivery's endpoint place, no longer than this: then the lease lapses.
      () => this.clock.now() - started > MAX_RENEWED_MS,
      (err) => this.telemetry.leaseRenewalFailed('job', err, job),
    );
  }

  /** Runs due jobs until none is left (tests and the periodic tick use it). */
  async drain(limit = 1000): Promise<number> {
    let ran = 0;
    while (ran < limit && (await this.runOne())) ran += 1;
    return ran;
  }
}
