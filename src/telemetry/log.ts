import { PermanentJobError, RetryJobError } from '../core/jobs.js';
import type { Job } from '../core/model.js';
import {
  type DatabaseThreadEvent,
  type LeaseKind,
  NO_TELEMETRY,
  type SweepResult,
  type Telemetry,
} from '../core/telemetry.js';

/** The few pino methods used here (Fastify's logger is one). */
export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * An error as a line that need not show its stack shows it: its class, message and code. Under
 * a key other than `err`, which the logger's serializer gives a stack (an empty one here).
 */
export function stacklessError(err: unknown): { type: string; message: string; code?: string } {
  const code = (err as { code?: unknown } | null)?.code;
  return {
    type: err instanceof Error ? err.constructor.name : typeof err,
    message: err instanceof Error ? err.message : String(err),
    ...(typeof code === 'string' && { code }),
  };
}

/**
 * The core's events that deserve a log line: background work, which no request log shows.
 * `logger()` is asked each time because the server's logger is made after the core.
 */
export function logTelemetry(logger: () => Logger | undefined): Telemetry {
  return {
    ...NO_TELEMETRY,
    jobFailed(job: Job, err: unknown, retryAt: number | null) {
      const fields = {
        job: { kind: job.kind, id: job.id, attempt: job.attempts },
        ...((err instanceof RetryJobError || err instanceof PermanentJobError) && err.logFields),
        // A retry the handler asked for (a receiver's 500) is an outcome it expected: its stack,
        // the same on every attempt, says nothing (see RetryJobError).
        ...(err instanceof RetryJobError ? { error: stacklessError(err) } : { err }),
        ...(retryAt !== null && { retryAt: new Date(retryAt).toISOString() }),
      };
      if (retryAt === null) logger()?.error(fields, 'background job failed and was given up');
      else logger()?.warn(fields, 'background job failed; it will be retried');
    },
    leaseRenewalFailed(lease: LeaseKind, err: unknown, job?: Job) {
      if (lease === 'job' && job) {
        logger()?.warn(
          { job: { kind: job.kind, id: job.id, attempt: job.attempts }, err },
          'job lease renewal failed',
        );
      } else if (lease === 'idempotency_key') {
        logger()?.warn({ err }, 'idempotency key hold renewal failed');
      } else {
        logger()?.warn({ err }, 'direct upload lease renewal failed');
      }
    },
    sweepFinished(result: SweepResult) {
      if (result.expired + result.debris + result.reconciled > 0) logger()?.info({ sweep: result }, 'sweep');
    },
    databaseThread(event: DatabaseThreadEvent) {
      if (event.kind === 'died') {
        logger()?.error(
          { err: event.cause },
          'the SQLite thread died; starting a new one (writes answer 503 until it is ready)',
        );
      } else if (event.kind === 'restart_failed') {
        logger()?.error(
          { err: event.cause, retryInSeconds: event.retryInSeconds },
          'a new SQLite thread could not open the database; trying again',
        );
      } else {
        logger()?.warn({ downSeconds: event.downSeconds }, 'a new SQLite thread serves the database');
      }
    },
  };
}
