import type { Clock } from './clock.js';
import type { IdSource } from './ids.js';
import type { Job } from './model.js';
import type { Store } from './ports.js';
import { NO_TELEMETRY, type Telemetry } from './telemetry.js';

export type JobHandler = (job: Job) => Promise<void>;

export interface JobSettings {
  /** How long a claimed job is this worker's; after that another node may take it over. */
  leaseMs: number;
  maxAttempts: number;
}

/** Raised by a handler when retrying cannot help (the asset is gone, the input is bad). */
export class PermanentJobError extends Error {}

/**
 * The durable queue's consumer. Jobs live in the database, so any node may run any job
 * and a crash mid-job only delays it until its lease runs out; the claim itself makes
 * sure exactly one worker holds a job at a time.
 */
export class JobRunner {
  private readonly handlers = new Map<string, JobHandler>();
  readonly workerId: string;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    ids: IdSource,
    private readonly settings: JobSettings,
    private readonly telemetry: Telemetry = NO_TELEMETRY,
  ) {
    this.workerId = `worker-${ids.token(8)}`;
  }

  register(kind: string, handler: JobHandler): void {
    this.handlers.set(kind, handler);
  }

  /** The kinds of job this runner has handlers for. */
  get kinds(): string[] {
    return [...this.handlers.keys()];
  }

  /** Claims and runs one due job; false when none was due. */
  async runOne(): Promise<boolean> {
    const now = this.clock.now();
    const job = await this.store.claimJob(this.workerId, now, now + this.settings.leaseMs);
    if (!job) return false;
    const handler = this.handlers.get(job.kind);
    try {
      if (!handler) throw new PermanentJobError(`No handler for job kind "${job.kind}".`);
      await handler(job);
      await this.store.finishJob(job.id, this.workerId, this.clock.now());
      this.telemetry.jobSucceeded(job);
    } catch (err) {
      const permanent = err instanceof PermanentJobError || job.attempts >= this.settings.maxAttempts;
      // Exponential backoff: 2 s, 4 s, 8 s … so a flapping dependency is not hammered.
      const retryAt = permanent ? null : this.clock.now() + 1000 * 2 ** job.attempts;
      await this.store.failJob(job.id, this.workerId, String(err), retryAt, this.clock.now());
      // The queue keeps only the message; the sinks get the error itself (its stack, its code).
      this.telemetry.jobFailed(job, err, retryAt);
    }
    return true;
  }

  /** Runs due jobs until none is left (tests and the periodic tick use it). */
  async drain(limit = 1000): Promise<number> {
    let ran = 0;
    while (ran < limit && (await this.runOne())) ran += 1;
    return ran;
  }
}
