/**
 * What the core tells operators about: outcomes it alone knows (an upload verified or refused,
 * a job failed, what a sweep cleaned). A port like the others: adapters turn these events into
 * Prometheus metrics and log lines; the core knows neither.
 */
import { pipeline, type Readable, Transform } from 'node:stream';
import { isWharfError } from './errors.js';
import type { Job, UploadKind } from './model.js';
import { isDiskFull, isOutOfDescriptors, isStorageDenied } from './unavailable.js';

/**
 * One webhook delivery attempt: the receiver took it (2xx), it failed and will be retried, or
 * it failed for the last time and is given up.
 */
export type WebhookDeliveryOutcome = 'delivered' | 'retrying' | 'given_up';

export interface UploadCompletion {
  flow: UploadKind;
  deduplicated: boolean;
  /** The file's size: the bytes that came in for it. */
  bytes: number;
  /** From the upload's creation to its completion (core clock). */
  uploadSeconds: number;
  /** How long completing took: verifying the stored bytes and recording the asset. */
  completionSeconds: number;
}

export interface SweepResult {
  expired: number;
  debris: number;
  reconciled: number;
}

/**
 * The life of the embedded deployment's database thread (db/store-thread.ts): it died, a
 * thread started in its place could not open the database (the next try is due in
 * `retryInSeconds`), or a new thread serves again, `downSeconds` after the old one died.
 */
/** The leases a node renews while it works (see leaseRenewalFailed). */
export const LEASE_KINDS = ['job', 'idempotency_key', 'direct_upload'] as const;
export type LeaseKind = (typeof LEASE_KINDS)[number];

export type DatabaseThreadEvent =
  | { kind: 'died'; cause: unknown }
  | { kind: 'restart_failed'; cause: unknown; retryInSeconds: number }
  | { kind: 'restarted'; downSeconds: number };

export interface Telemetry {
  uploadCompleted(completion: UploadCompletion): void;
  /** Bytes of an upload were refused (verification, quota) or its stream broke. */
  uploadFailed(flow: UploadKind, error: unknown): void;
  /** A pending upload ran out of time and was expired by the sweep. */
  uploadExpired(flow: UploadKind): void;
  /** Bytes of assets read out of storage for a client (downloads through Wharf). */
  bytesDownloaded(bytes: number): void;
  /**
   * Bytes of a stored object read back out of storage to hash them: a completion whose digests
   * neither storage nor the node that received the bytes could vouch for, or a verify job.
   */
  bytesReadBack(bytes: number): void;
  sweepFinished(result: SweepResult): void;
  jobSucceeded(job: Job): void;
  /** A job's handler threw; `retryAt` is null when the job is given up. */
  jobFailed(job: Job, error: unknown, retryAt: number | null): void;
  webhookDelivery(outcome: WebhookDeliveryOutcome): void;
  /**
   * The database did not take a renewal of a lease this node holds: a running job's
   * (`subject`: the job), an Idempotency-Key's hold while its request runs, or the leases of the
   * direct uploads this node streams. Tried again a third of the lease later; a lease outlasts
   * two failures, and a third lets another node take the work over.
   */
  leaseRenewalFailed(lease: LeaseKind, error: unknown, subject?: Job): void;
  /** Reported by the embedded store's adapter, not the core: the core never sees the thread. */
  databaseThread(event: DatabaseThreadEvent): void;
}

/**
 * A byte stream the server itself broke off: the client sent nothing for too long
 * (`REQUEST_TIMEOUT`), or a stop's deadline came (`SERVICE_UNAVAILABLE`). Everything else
 * handles it as any broken stream (its code is a hang-up's, and it is no WharfError: an
 * upload it cuts stays resumable); only failureCode counts it under the code it carries.
 */
export class StreamCut extends Error {
  readonly code = 'ECONNRESET';
  constructor(
    readonly countedAs: 'REQUEST_TIMEOUT' | 'SERVICE_UNAVAILABLE',
    message: string,
  ) {
    super(message);
    this.name = 'StreamCut';
  }
}

/**
 * The codes uploads end with when their bytes are refused or broken off, as failureCode gives
 * them: the refusals of the bytes themselves, a full disk, the stream broken off by the client
 * (ABORTED) or cut by Wharf (see StreamCut), a fault. Metrics start each flow's `failed` series
 * of these at 0, so an alert on one (increase() over a window) sees the first failure after a
 * start: a series that first appears at 1 shows no increase. Other codes still count, their
 * series appearing with their first failure.
 */
export const UPLOAD_FAILURE_CODES = [
  'CHECKSUM_MISMATCH',
  'SIZE_MISMATCH',
  'FILE_TOO_LARGE',
  'FILE_TOO_SMALL',
  'QUOTA_EXCEEDED',
  'STORAGE_FULL',
  'ABORTED',
  'REQUEST_TIMEOUT',
  'SERVICE_UNAVAILABLE',
  'INTERNAL',
] as const;

/** Error codes as metric labels: a WharfError's code, else one of a few fixed values (bounded). */
export function failureCode(error: unknown): string {
  if (isWharfError(error)) return error.code;
  if (error instanceof StreamCut) return error.countedAs;
  if (isDiskFull(error)) return 'STORAGE_FULL';
  // As the HTTP layer answers it (see refusedForResources).
  if (isOutOfDescriptors(error)) return 'SERVICE_UNAVAILABLE';
  if (isStorageDenied(error)) return 'STORAGE_DENIED';
  const code = (error as { code?: unknown } | null)?.code;
  // The client went away mid-stream: not a fault of Wharf's.
  if (code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNABORTED') {
    return 'ABORTED';
  }
  return 'INTERNAL';
}

/** Seconds since it was made, on a monotonic clock (durations, never dates). */
export function stopwatch(): () => number {
  const start = performance.now();
  return () => (performance.now() - start) / 1000;
}

function noop(): void {}

/** `source`, reporting each chunk to `telemetry` as downloaded bytes as it is read. */
export function countBytes(source: Readable, telemetry: Telemetry): Readable {
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      telemetry.bytesDownloaded(chunk.length);
      done(null, chunk);
    },
  });
  // pipeline() carries a storage failure or a consumer's destroy across both streams.
  return pipeline(source, counter, noop);
}

/** For cores built without observability (the CLI, unit tests). */
export const NO_TELEMETRY: Telemetry = {
  uploadCompleted: noop,
  uploadFailed: noop,
  uploadExpired: noop,
  bytesDownloaded: noop,
  bytesReadBack: noop,
  sweepFinished: noop,
  jobSucceeded: noop,
  jobFailed: noop,
  webhookDelivery: noop,
  leaseRenewalFailed: noop,
  databaseThread: noop,
};

/**
 * Sends every event to each of `sinks` (metrics and logs). Reporting is never worth failing
 * the upload or job it reports on, so a sink that throws is skipped.
 */
export function fanOut(...sinks: Telemetry[]): Telemetry {
  const each =
    <K extends keyof Telemetry>(method: K) =>
    (...args: Parameters<Telemetry[K]>): void => {
      for (const sink of sinks) {
        try {
          (sink[method] as (...a: Parameters<Telemetry[K]>) => void)(...args);
        } catch {
          // See above: observability must not break what it observes.
        }
      }
    };
  return {
    uploadCompleted: each('uploadCompleted'),
    uploadFailed: each('uploadFailed'),
    uploadExpired: each('uploadExpired'),
    bytesDownloaded: each('bytesDownloaded'),
    bytesReadBack: each('bytesReadBack'),
    sweepFinished: each('sweepFinished'),
    jobSucceeded: each('jobSucceeded'),
    jobFailed: each('jobFailed'),
    webhookDelivery: each('webhookDelivery'),
    leaseRenewalFailed: each('leaseRenewalFailed'),
    databaseThread: each('databaseThread'),
  };
}
