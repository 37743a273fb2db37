import type { StatsFs } from 'node:fs';
import { statfs } from 'node:fs/promises';
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type Registry as PromRegistry,
  Registry,
} from 'prom-client';
import type { UploadKind } from '../core/model.js';
import type { JobCount } from '../core/ports.js';
import {
  type DatabaseThreadEvent,
  failureCode,
  LEASE_KINDS,
  type LeaseKind,
  type SweepResult,
  type Telemetry,
  UPLOAD_FAILURE_CODES,
  type UploadCompletion,
  type WebhookDeliveryOutcome,
} from '../core/telemetry.js';

const FLOWS: UploadKind[] = ['direct', 'presigned', 'post', 'multipart', 'tus', 'rufh'];
const WEBHOOK_OUTCOMES: WebhookDeliveryOutcome[] = ['delivered', 'retrying', 'given_up'];
const JOB_STATUSES: JobCount['status'][] = ['queued', 'scheduled', 'retrying', 'running', 'failed'];

export interface PrometheusOptions {
  /** Jobs due, due later, running and given up, read from the database at each scrape. */
  countJobs: () => Promise<JobCount[]>;
  /** Job kinds that exist, so each reports 0 rather than no series at all. */
  jobKinds: () => readonly string[];
  /** Where a failed collection is reported (the scrape still answers, without that gauge). */
  onCollectError?: (err: unknown) => void;
  /** WHARF_DATA_DIR: its file system's free and total bytes are read at each scrape. */
  dataDir?: string;
}

/**
 * The core's telemetry as Prometheus metrics, plus the HTTP layer's request metrics. One
 * registry per server (never prom-client's global one): several servers may share a process.
 * Every label takes values from a fixed set (flows, route patterns, error codes, job kinds),
 * never an id, a URL or a name, so the number of series stays bounded.
 */
export class PrometheusTelemetry implements Telemetry {
  readonly registry: PromRegistry = new Registry();
  private readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly httpDuration: Histogram<'method' | 'route'>;
  private readonly uploads: Counter<'flow' | 'outcome' | 'error_code'>;
  private readonly uploadBytes: Counter<'flow'>;
  private readonly downloadBytes: Counter;
  private readonly readBackBytes: Counter;
  private readonly uploadDuration: Histogram<'flow'>;
  private readonly completionDuration: Histogram<'flow'>;
  private readonly jobsCompleted: Counter<'kind'>;
  private readonly jobFailures: Counter<'kind' | 'given_up'>;
  private readonly sweepRuns: Counter;
  private readonly sweepItems: Counter<'result'>;
  private readonly sweepLastRun: Gauge;
  private readonly webhookDeliveries: Counter<'outcome'>;
  private readonly leaseRenewalFailures: Counter<'lease'>;
  private readonly databaseThreadEvents: Counter<'event'>;

  constructor(options: PrometheusOptions) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });

    this.httpRequests = new Counter({
      name: 'wharf_http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status (499: the client left first; 408: Wharf cut a silent client).',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'wharf_http_request_duration_seconds',
      help: 'Time from request to the end of the response, by method and route pattern.',
      labelNames: ['method', 'route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.uploads = new Counter({
      name: 'wharf_uploads_total',
      help: 'Uploads by flow and outcome (completed, deduplicated, failed with error_code, expired).',
      labelNames: ['flow', 'outcome', 'error_code'],
      registers,
    });
    this.uploadBytes = new Counter({
      name: 'wharf_upload_bytes_total',
      help: 'Bytes of completed uploads (deduplicated ones included), by flow.',
      labelNames: ['flow'],
      registers,
    });
    this.downloadBytes = new Counter({
      name: 'wharf_download_bytes_total',
      help: 'Bytes of assets streamed to clients through Wharf (not redirects to storage).',
      registers,
    });
    this.readBackBytes = new Counter({
      name: 'wharf_verify_read_bytes_total',
      help: 'Bytes of stored objects read back from storage to hash them (completions whose bytes were not hashed as they arrived, verify jobs).',
      registers,
    });
    this.uploadDuration = new Histogram({
      name: 'wharf_upload_duration_seconds',
      help: 'From an upload’s creation to its completion, by flow.',
      labelNames: ['flow'],
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
      registers,
    });
    this.completionDuration = new Histogram({
      name: 'wharf_upload_completion_duration_seconds',
      help: 'How long completing an upload took (verifying stored bytes, recording the asset), by flow.',
      labelNames: ['flow'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.jobsCompleted = new Counter({
      name: 'wharf_jobs_completed_total',
      help: 'Background jobs that ran to completion, by kind.',
      labelNames: ['kind'],
      registers,
      // Each kind's series from the first scrape (the kinds are known only once the core is
      // built, after this): adding 0 makes a missing one and changes none.
      collect() {
        for (const kind of options.jobKinds()) this.inc({ kind }, 0);
      },
    });
    this.jobFailures = new Counter({
      name: 'wharf_job_failures_total',
      help: 'Background job runs that failed, by kind; given_up="true" when no retry follows.',
      labelNames: ['kind', 'given_up'],
      registers,
      collect() {
        for (const kind of options.jobKinds()) {
          for (const given_up of ['true', 'false']) this.inc({ kind, given_up }, 0);
        }
      },
    });
    new Gauge({
      name: 'wharf_jobs',
      help: 'Background jobs queued (due now), scheduled (first run later), retrying (next attempt later), running and given up (failed), by kind; read from the database at scrape.',
      labelNames: ['kind', 'status'],
      registers,
      async collect() {
        this.reset();
        for (const kind of options.jobKinds()) {
          for (const status of JOB_STATUSES) this.set({ kind, status }, 0);
        }
        try {
          for (const row of await options.countJobs()) {
            this.set({ kind: row.kind, status: row.status }, row.count);
          }
        } catch (err) {
          // No numbers beat wrong zeros: the gauge is left out of this scrape.
          this.reset();
          options.onCollectError?.(err);
        }
      },
    });
    if (options.dataDir !== undefined) this.watchDisk(options.dataDir, options.onCollectError, registers);
    this.sweepRuns = new Counter({
      name: 'wharf_sweep_runs_total',
      help: 'Sweeps that ran to the end.',
      registers,
    });
    this.sweepItems = new Counter({
      name: 'wharf_sweep_items_total',
      help: 'What sweeps did: uploads expired, storage debris removed, uploads reconciled (completed).',
      labelNames: ['result'],
      registers,
    });
    this.sweepLastRun = new Gauge({
      name: 'wharf_sweep_last_run_timestamp_seconds',
      help: 'When the last sweep ended (Unix time); alert when it falls behind.',
      registers,
    });
    this.webhookDeliveries = new Counter({
      name: 'wharf_webhook_deliveries_total',
      help: 'Webhook delivery attempts by outcome (delivered, retrying, given_up).',
      labelNames: ['outcome'],
      registers,
    });

    this.leaseRenewalFailures = new Counter({
      name: 'wharf_lease_renewal_failures_total',
      help: 'Renewals of a lease this node holds that the database did not take (job, idempotency_key, direct_upload).',
      labelNames: ['lease'],
      registers,
    });

    this.databaseThreadEvents = new Counter({
      name: 'wharf_database_thread_events_total',
      help: 'Embedded deployment: the SQLite thread died, a new one failed to open the database, or a new one took over (died, restart_failed, restarted).',
      labelNames: ['event'],
      registers,
    });

    // Series that exist from the start, so rate() and alerts see the first increment.
    for (const flow of FLOWS) {
      for (const outcome of ['completed', 'deduplicated', 'expired']) this.uploads.inc({ flow, outcome }, 0);
      for (const error_code of UPLOAD_FAILURE_CODES)
        this.uploads.inc({ flow, outcome: 'failed', error_code }, 0);
      this.uploadBytes.inc({ flow }, 0);
    }
    for (const result of ['expired', 'debris', 'reconciled']) this.sweepItems.inc({ result }, 0);
    for (const outcome of WEBHOOK_OUTCOMES) this.webhookDeliveries.inc({ outcome }, 0);
    for (const lease of LEASE_KINDS) this.leaseRenewalFailures.inc({ lease }, 0);
    for (const event of ['died', 'restart_failed', 'restarted']) this.databaseThreadEvents.inc({ event }, 0);
  }

  /**
   * The data directory's file system, read at each scrape: uploads are refused with
   * STORAGE_FULL once it is full, so operators alert on it before that.
   */
  private watchDisk(
    dir: string,
    onError: PrometheusOptions['onCollectError'],
    registers: PromRegistry[],
  ): void {
    const gauge = (name: string, help: string, bytes: (fs: StatsFs) => number) =>
      new Gauge({
        name,
        help,
        registers,
        async collect() {
          try {
            this.set(bytes(await statfs(dir)));
          } catch (err) {
            // No number beats a wrong one: the gauge is left out of this scrape.
            this.reset();
            onError?.(err);
          }
        },
      });
    gauge(
      'wharf_data_dir_free_bytes',
      'Bytes free to Wharf on the file system of WHARF_DATA_DIR (temp files, tus uploads; on embedded the objects and the database too).',
      (fs) => fs.bavail * fs.bsize,
    );
    gauge(
      'wharf_data_dir_size_bytes',
      'Size of the file system of WHARF_DATA_DIR, bytes.',
      (fs) => fs.blocks * fs.bsize,
    );
  }

  /** The text a scrape gets, and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** One answered request; `route` is the matched route's pattern, never the URL. */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.httpRequests.inc({ method, route, status: String(status) });
    this.httpDuration.observe({ method, route }, seconds);
  }

  observeRefusal(method: string, route: string, status: number): void {
    this.httpRequests.inc({ method, route, status: String(status) });
  }

  uploadCompleted(c: UploadCompletion): void {
    this.uploads.inc({ flow: c.flow, outcome: c.deduplicated ? 'deduplicated' : 'completed' });
    this.uploadBytes.inc({ flow: c.flow }, c.bytes);
    this.uploadDuration.observe({ flow: c.flow }, c.uploadSeconds);
    this.completionDuration.observe({ flow: c.flow }, c.completionSeconds);
  }

  uploadFailed(flow: UploadKind, error: unknown): void {
    this.uploads.inc({ flow, outcome: 'failed', error_code: failureCode(error) });
  }

  uploadExpired(flow: UploadKind): void {
    this.uploads.inc({ flow, outcome: 'expired' });
  }

  bytesDownloaded(bytes: number): void {
    this.downloadBytes.inc(bytes);
  }

  bytesReadBack(bytes: number): void {
    this.readBackBytes.inc(bytes);
  }

  sweepFinished(result: SweepResult): void {
    this.sweepRuns.inc();
    this.sweepItems.inc({ result: 'expired' }, result.expired);
    this.sweepItems.inc({ result: 'debris' }, result.debris);
    this.sweepItems.inc({ result: 'reconciled' }, result.reconciled);
    this.sweepLastRun.setToCurrentTime();
  }

  jobSucceeded(job: { kind: string }): void {
    this.jobsCompleted.inc({ kind: job.kind });
  }

  jobFailed(job: { kind: string }, _error: unknown, retryAt: number | null): void {
    this.jobFailures.inc({ kind: job.kind, given_up: String(retryAt === null) });
  }

  webhookDelivery(outcome: WebhookDeliveryOutcome): void {
    this.webhookDeliveries.inc({ outcome });
  }

  leaseRenewalFailed(lease: LeaseKind): void {
    this.leaseRenewalFailures.inc({ lease });
  }

  databaseThread(event: DatabaseThreadEvent): void {
    this.databaseThreadEvents.inc({ event: event.kind });
  }
}
