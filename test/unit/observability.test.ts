import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { FsBlobStore, type PutPresigner } from '../../src/blobs/fs-store.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { ManualClock } from '../../src/core/clock.js';
import { WharfError } from '../../src/core/errors.js';
import { HealthService } from '../../src/core/health.js';
import { createIdSource } from '../../src/core/ids.js';
import type { BlobStore, Store } from '../../src/core/ports.js';
import {
  failureCode,
  fanOut,
  NO_TELEMETRY,
  StreamCut,
  type Telemetry,
  UPLOAD_FAILURE_CODES,
} from '../../src/core/telemetry.js';
import { logTelemetry } from '../../src/telemetry/log.js';
import { PrometheusTelemetry } from '../../src/telemetry/prometheus.js';

function refused(env: Record<string, string>, message: RegExp) {
  assert.throws(
    () => loadConfig(env),
    (err: unknown) => err instanceof ConfigError && message.test(err.message),
  );
}

describe('metrics configuration', () => {
  test('by default metrics are served nowhere', () => {
    assert.deepEqual(loadConfig({}).metrics, { token: undefined, port: undefined, host: '127.0.0.1' });
  });

  test('a token, a port, a host', () => {
    const config = loadConfig({
      WHARF_METRICS_TOKEN: 'a-long-enough-token',
      WHARF_METRICS_PORT: '9464',
      WHARF_METRICS_HOST: '10.0.0.5',
    });
    assert.deepEqual(config.metrics, { token: 'a-long-enough-token', port: 9464, host: '10.0.0.5' });
  });

  test('refused: a short token, a bad port, the main port', () => {
    refused({ WHARF_METRICS_TOKEN: 'short' }, /WHARF_METRICS_TOKEN must be at least 16/);
    refused({ WHARF_METRICS_PORT: 'ninety' }, /WHARF_METRICS_PORT must be a whole number/);
    refused({ WHARF_METRICS_PORT: '0' }, /WHARF_METRICS_PORT must be between 1 and 65535/);
    refused(
      { WHARF_PORT: '8080', WHARF_METRICS_PORT: '8080' },
      /WHARF_METRICS_PORT must differ from WHARF_PORT/,
    );
  });
});

describe('failure codes as metric labels', () => {
  test('a WharfError gives its code; a broken stream ABORTED; anything else INTERNAL', () => {
    assert.equal(failureCode(new WharfError('CHECKSUM_MISMATCH', 'no')), 'CHECKSUM_MISMATCH');
    assert.equal(failureCode(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })), 'ABORTED');
    // A stream Wharf cut itself: a hang-up to everything else, counted under its own code.
    const cut = new StreamCut('REQUEST_TIMEOUT', 'silent');
    assert.equal(cut.code, 'ECONNRESET');
    assert.equal(failureCode(cut), 'REQUEST_TIMEOUT');
    assert.equal(
      failureCode(Object.assign(new Error('x'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })),
      'ABORTED',
    );
    // A file system call refused (the data directory lost its permissions, went read-only): as
    // the client is answered; the same code from no system call is no such refusal.
    assert.equal(
      failureCode(Object.assign(new Error('/data/x: denied'), { code: 'EACCES', syscall: 'open' })),
      'STORAGE_DENIED',
    );
    assert.equal(failureCode(Object.assign(new Error('/data/x: denied'), { code: 'EACCES' })), 'INTERNAL');
    assert.equal(failureCode('a string'), 'INTERNAL');
    assert.equal(failureCode(null), 'INTERNAL');
  });
});

describe('fanOut', () => {
  test('every sink gets every event, and one that throws does not stop the others', () => {
    const seen: string[] = [];
    const throwing: Telemetry = {
      ...NO_TELEMETRY,
      webhookDelivery: () => {
        throw new Error('broken sink');
      },
    };
    const recording: Telemetry = { ...NO_TELEMETRY, webhookDelivery: (outcome) => seen.push(outcome) };
    fanOut(throwing, recording).webhookDelivery('delivered');
    assert.deepEqual(seen, ['delivered']);
  });
});

describe('series that exist from the start', () => {
  test('every flow’s failures by the codes uploads end with, and each job kind’s failures, at 0', async () => {
    const metrics = new PrometheusTelemetry({ countJobs: async () => [], jobKinds: () => ['delete-object'] });
    const lines = new Set((await metrics.scrape()).body.split('\n'));
    // What the documented disk-full alert reads: without it, increase() misses the first failure.
    assert.ok(lines.has('wharf_uploads_total{flow="direct",outcome="failed",error_code="STORAGE_FULL"} 0'));
    for (const flow of ['direct', 'presigned', 'post', 'multipart', 'tus', 'rufh']) {
      for (const code of UPLOAD_FAILURE_CODES) {
        const line = `wharf_uploads_total{flow="${flow}",outcome="failed",error_code="${code}"} 0`;
        assert.ok(lines.has(line), line);
      }
    }
    for (const given_up of ['true', 'false']) {
      const line = `wharf_job_failures_total{kind="delete-object",given_up="${given_up}"} 0`;
      assert.ok(lines.has(line), line);
    }
    assert.ok(lines.has('wharf_jobs_completed_total{kind="delete-object"} 0'));
    for (const status of ['queued', 'scheduled', 'retrying', 'running', 'failed']) {
      const line = `wharf_jobs{kind="delete-object",status="${status}"} 0`;
      assert.ok(lines.has(line), line);
    }

    // A failure counts on its series; a code outside the set still counts, on a series of its own.
    metrics.uploadFailed('direct', new WharfError('STORAGE_FULL', 'full'));
    metrics.uploadFailed('direct', new WharfError('TOKEN_BYTES_EXHAUSTED', 'spent'));
    metrics.jobFailed({ kind: 'delete-object' } as never, new Error('x'), null);
    const after = new Set((await metrics.scrape()).body.split('\n'));
    assert.ok(after.has('wharf_uploads_total{flow="direct",outcome="failed",error_code="STORAGE_FULL"} 1'));
    assert.ok(
      after.has('wharf_uploads_total{flow="direct",outcome="failed",error_code="TOKEN_BYTES_EXHAUSTED"} 1'),
    );
    assert.ok(after.has('wharf_job_failures_total{kind="delete-object",given_up="true"} 1'));
    assert.ok(after.has('wharf_job_failures_total{kind="delete-object",given_up="false"} 0'));
  });
});

/**
 * Metrics and a log that keeps its lines (level, fields, message) behind one Telemetry, and
 * `count`: the value of the series `name` whose one label `label` has a given value.
 */
function observed(name: string, label: string) {
  const metrics = new PrometheusTelemetry({ countJobs: async () => [], jobKinds: () => [] });
  const lines: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
  const record = (level: string) => (fields: object, msg: string) =>
    lines.push({ level, fields: fields as Record<string, unknown>, msg });
  const logger = { info: record('info'), warn: record('warn'), error: record('error') };
  const count = async (value: string) => {
    const series = `${name}{${label}="${value}"}`;
    const line = (await metrics.scrape()).body.split('\n').find((l) => l.startsWith(`${series} `));
    assert.ok(line, `no series ${series}`);
    return Number(line.split(' ').at(-1));
  };
  return {
    count,
    lines,
    both: fanOut(
      metrics,
      logTelemetry(() => logger),
    ),
  };
}

describe('the database thread’s events', () => {
  test('each is counted from zero, and logged: a death and a failed start at error, the return at warn', async () => {
    const { count, lines, both } = observed('wharf_database_thread_events_total', 'event');
    for (const event of ['died', 'restart_failed', 'restarted']) assert.equal(await count(event), 0);

    const cause = new TypeError('boom');
    both.databaseThread({ kind: 'died', cause });
    both.databaseThread({ kind: 'restart_failed', cause, retryInSeconds: 0.5 });
    both.databaseThread({ kind: 'restarted', downSeconds: 0.8 });

    for (const event of ['died', 'restart_failed', 'restarted']) assert.equal(await count(event), 1);
    assert.deepEqual(
      lines.map((l) => l.level),
      ['error', 'error', 'warn'],
    );
    assert.equal(lines[0]!.fields.err, cause);
    assert.match(lines[0]!.msg, /SQLite thread died/);
    assert.equal(lines[1]!.fields.retryInSeconds, 0.5);
    assert.equal(lines[2]!.fields.downSeconds, 0.8);
  });
});

describe('lease renewals that fail', () => {
  test('are counted by lease from zero and logged at warn, a job’s with the job it held', async () => {
    const { count, lines, both } = observed('wharf_lease_renewal_failures_total', 'lease');
    for (const lease of ['job', 'idempotency_key', 'direct_upload']) assert.equal(await count(lease), 0);

    const cause = new Error('database is locked');
    const job = { id: 'job_1', kind: 'process', attempts: 2 } as never;
    both.leaseRenewalFailed('job', cause, job);
    both.leaseRenewalFailed('job', cause, job);
    both.leaseRenewalFailed('idempotency_key', cause);
    both.leaseRenewalFailed('direct_upload', cause);

    assert.equal(await count('job'), 2);
    assert.equal(await count('idempotency_key'), 1);
    assert.equal(await count('direct_upload'), 1);
    assert.deepEqual(
      lines.map((l) => [l.level, l.msg]),
      [
        ['warn', 'job lease renewal failed'],
        ['warn', 'job lease renewal failed'],
        ['warn', 'idempotency key hold renewal failed'],
        ['warn', 'direct upload lease renewal failed'],
      ],
    );
    assert.deepEqual(lines[0]!.fields.job, { kind: 'process', id: 'job_1', attempt: 2 });
    for (const line of lines) assert.equal(line.fields.err, cause);
  });
});

describe('HealthService', () => {
  let dir: string;
  let blobs: FsBlobStore;
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const ids = createIdSource(clock);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wharf-health-'));
    blobs = new FsBlobStore(dir, {} as PutPresigner);
    await blobs.init();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** The one Store method readiness uses; the rest of the port is never called. */
  function storeWith(ping: () => Promise<void>) {
    let pings = 0;
    const store = {
      ping: () => {
        pings += 1;
        return ping();
      },
    } as unknown as Store;
    return { store, pings: () => pings };
  }

  test('ready when the database answers and storage writes, reads and deletes the probe', async () => {
    const { store } = storeWith(async () => {});
    const health = new HealthService(store, blobs, clock, ids, { timeoutMs: 5000, cacheMs: 1000 });
    assert.deepEqual(await health.readiness(), {
      ready: true,
      stopping: false,
      checks: { database: { status: 'ok' }, storage: { status: 'ok' } },
    });
    const left = (await readdir(join(dir, 'objects'), { recursive: true, withFileTypes: true })).filter((e) =>
      e.isFile(),
    );
    assert.deepEqual(left, [], 'the probe object is deleted');
  });

  test('a database that never answers fails its check by timeout, without holding the answer up', async () => {
    const { store } = storeWith(() => new Promise(() => {}));
    // Storage in memory here: a busy disk must not make this check time out too.
    const objects = new Map<string, Buffer>();
    const memory = {
      write: async (key: string, source: Readable) => {
        const chunks: Buffer[] = [];
        for await (const chunk of source) chunks.push(chunk as Buffer);
        objects.set(key, Buffer.concat(chunks));
      },
      read: async (key: string) => Readable.from([objects.get(key)!]),
      delete: async (key: string) => {
        objects.delete(key);
      },
    } as unknown as BlobStore;
    const health = new HealthService(store, memory, clock, ids, { timeoutMs: 50, cacheMs: 1000 });
    const result = await health.readiness();
    assert.equal(result.ready, false);
    assert.deepEqual(result.checks.database, { status: 'failed', reason: 'timeout' });
    assert.deepEqual(result.checks.storage, { status: 'ok' });
  });

  test('storage that fails is reported as an error, the error kept for the log', async () => {
    const { store } = storeWith(async () => {});
    const broken = {
      write: async () => {
        throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
      },
    } as unknown as BlobStore;
    const health = new HealthService(store, broken, clock, ids, { timeoutMs: 5000, cacheMs: 1000 });
    const { ready, checks } = await health.readiness();
    assert.equal(ready, false);
    assert.equal(checks.storage.status, 'failed');
    assert.equal(checks.storage.reason, 'error');
    assert.equal((checks.storage.error as { code: string }).code, 'EACCES');
  });

  test('storage with no room left (ENOSPC, EDQUOT) is `full` and the node stays ready; EROFS, EIO are not', async () => {
    const { store } = storeWith(async () => {});
    const failingWith = (code: string) =>
      ({
        write: async () => {
          throw Object.assign(new Error(`${code}: the write failed`), { code });
        },
      }) as unknown as BlobStore;
    for (const code of ['ENOSPC', 'EDQUOT']) {
      const health = new HealthService(store, failingWith(code), clock, ids, {
        timeoutMs: 5000,
        cacheMs: 1000,
      });
      const { ready, checks } = await health.readiness();
      assert.equal(ready, true, `${code}: reads are still served`);
      assert.equal(checks.storage.status, 'full', code);
    }
    for (const code of ['EROFS', 'EIO']) {
      const health = new HealthService(store, failingWith(code), clock, ids, {
        timeoutMs: 5000,
        cacheMs: 1000,
      });
      const { ready, checks } = await health.readiness();
      assert.equal(ready, false, code);
      assert.deepEqual([checks.storage.status, checks.storage.reason], ['failed', 'error'], code);
    }
  });

  test('once stopping, not ready at the next answer, a reused one included', async () => {
    const { store } = storeWith(async () => {});
    const health = new HealthService(store, blobs, clock, ids, { timeoutMs: 5000, cacheMs: 1000 });
    assert.equal((await health.readiness()).ready, true);
    health.stopping();
    const { ready, stopping, checks } = await health.readiness();
    assert.deepEqual({ ready, stopping }, { ready: false, stopping: true });
    assert.deepEqual(checks.storage, { status: 'ok' }, 'the checks still say what they found');
  });

  test('an answer is reused for cacheMs; callers at the same time share one run', async () => {
    const { store, pings } = storeWith(async () => {});
    const health = new HealthService(store, blobs, clock, ids, { timeoutMs: 5000, cacheMs: 1000 });
    await Promise.all([health.readiness(), health.readiness(), health.readiness()]);
    assert.equal(pings(), 1, 'one run for three concurrent callers');
    clock.advance(999);
    await health.readiness();
    assert.equal(pings(), 1, 'reused within the period');
    clock.advance(1);
    await health.readiness();
    assert.equal(pings(), 2, 'checked again after it');
  });
});
