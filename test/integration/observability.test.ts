import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { statfsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { dbQuery, declare, eventually, putPresigned, uploadRaw } from '../helpers/assets.js';
import { onS3, pendingWrites, storedKeys } from '../helpers/deployment.js';
import { api, sha256Hex } from '../helpers/http.js';
import {
  ERROR,
  INFO,
  LogCollector,
  labelValues,
  parseScrape,
  type Scrape,
  seriesValue,
  WARN,
} from '../helpers/observe.js';
import { sql } from '../helpers/process.js';
import { Receiver } from '../helpers/receiver.js';
import { freePort, startWharf, type TestWharf } from '../helpers/wharf.js';

const TOKEN = `metrics-${randomBytes(12).toString('hex')}`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function scrape(url: string, token: string | undefined = TOKEN): Promise<Scrape> {
  const res = await fetch(`${url}/metrics`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parseScrape(await res.text());
}

/** The test server's S3 bucket, through a client of the test's own. */
async function withBucket<T>(
  w: TestWharf,
  work: (s3: import('@aws-sdk/client-s3').S3Client, bucket: string) => Promise<T>,
): Promise<T> {
  const { S3Client } = await import('@aws-sdk/client-s3');
  const env = w.backingEnv;
  const s3 = new S3Client({
    endpoint: env.WHARF_S3_ENDPOINT,
    region: env.WHARF_S3_REGION,
    forcePathStyle: true,
    credentials: {
      accessKeyId: env.WHARF_S3_ACCESS_KEY_ID!,
      secretAccessKey: env.WHARF_S3_SECRET_ACCESS_KEY!,
    },
  });
  try {
    return await work(s3, env.WHARF_S3_BUCKET!);
  } finally {
    s3.destroy();
  }
}

/** Removes an asset's bytes from storage behind Wharf's back. */
async function removeStoredBytes(w: TestWharf, assetId: string): Promise<void> {
  const [row] = dbQuery<{ storage_key: string }>(w, 'select storage_key from assets where id = ?', assetId);
  assert.ok(row, 'the asset is recorded');
  if (!onS3(w)) {
    await rm(join(w.dataDir, 'blobs', 'objects', row.storage_key));
    return;
  }
  const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
  await withBucket(w, (s3, Bucket) => s3.send(new DeleteObjectCommand({ Bucket, Key: row.storage_key })));
}

describe('GET /metrics', () => {
  let w: TestWharf;
  const logs = new LogCollector();
  before(async () => {
    w = await startWharf({
      // The webhook test's receiver listens on loopback.
      env: { WHARF_METRICS_TOKEN: TOKEN, WHARF_WEBHOOK_ALLOW_PRIVATE: 'true' },
      logStream: logs.stream,
    });
  });
  after(async () => {
    await w?.close();
  });

  test('counts uploads by flow and outcome, bytes in and out, durations and requests by route', async () => {
    const before = await scrape(w.url);
    const delta = (name: string, labels: Record<string, string> = {}) =>
      seriesValue(after, name, labels) - seriesValue(before, name, labels);

    const bytes = randomBytes(1000);
    const created = await uploadRaw(w, w.key, 'm.bin', bytes);
    assert.equal(created.status, 201);
    assert.equal((await uploadRaw(w, w.key, 'again.bin', bytes)).status, 200, 'deduplicated');
    const refused = await uploadRaw(w, w.key, 'bad.bin', randomBytes(10), {
      query: { sha256: sha256Hex('other bytes') },
    });
    assert.equal(refused.body.error.code, 'CHECKSUM_MISMATCH');

    const presignedBytes = randomBytes(2000);
    const intent = await declare(w, w.key, { name: 'p.bin', size: presignedBytes.length });
    // Ninety seconds between the intent and its completion: the upload-duration histogram sees them.
    w.clock.advance(90_000);
    assert.equal((await putPresigned(intent, presignedBytes)).status, 200);
    const completed = await api(w.url, w.key, 'POST', `/v1/uploads/${intent.id}/complete`);
    assert.equal(completed.status, 200, JSON.stringify(completed.body));

    const assetId = created.body.asset.id;
    const downloadId = `download-${randomBytes(6).toString('hex')}`;
    const download = await fetch(`${w.url}/v1/assets/${assetId}/content`, {
      headers: { 'x-api-key': w.key, 'x-request-id': downloadId },
    });
    assert.equal(download.status, 200);
    assert.equal((await download.arrayBuffer()).byteLength, bytes.length);
    // A streamed response ends on the server (the file's end read, the response finished,
    // then counted) a moment after the client holds every byte: wait for its log line.
    await logs.waitFor((l) => l.reqId === downloadId && l.msg === 'request completed', 'of the download');

    const after = await scrape(w.url);
    assert.equal(delta('wharf_uploads_total', { flow: 'direct', outcome: 'completed' }), 1);
    assert.equal(delta('wharf_uploads_total', { flow: 'direct', outcome: 'deduplicated' }), 1);
    assert.equal(
      delta('wharf_uploads_total', { flow: 'direct', outcome: 'failed', error_code: 'CHECKSUM_MISMATCH' }),
      1,
    );
    assert.equal(delta('wharf_uploads_total', { flow: 'presigned', outcome: 'completed' }), 1);
    assert.equal(delta('wharf_upload_bytes_total', { flow: 'direct' }), 2 * bytes.length);
    assert.equal(delta('wharf_upload_bytes_total', { flow: 'presigned' }), presignedBytes.length);
    assert.equal(delta('wharf_download_bytes_total'), bytes.length);

    assert.equal(delta('wharf_upload_duration_seconds_count', { flow: 'presigned' }), 1);
    assert.equal(delta('wharf_upload_duration_seconds_bucket', { flow: 'presigned', le: '60' }), 0);
    assert.equal(delta('wharf_upload_duration_seconds_bucket', { flow: 'presigned', le: '300' }), 1);
    assert.equal(delta('wharf_upload_completion_duration_seconds_count', { flow: 'presigned' }), 1);
    assert.equal(delta('wharf_upload_completion_duration_seconds_count', { flow: 'direct' }), 2);

    const requests = (method: string, route: string, status: string) =>
      delta('wharf_http_requests_total', { method, route, status });
    assert.equal(requests('POST', '/v1/assets', '201'), 1);
    assert.equal(requests('POST', '/v1/assets', '200'), 1);
    assert.equal(requests('POST', '/v1/assets', '400'), 1);
    assert.equal(requests('POST', '/v1/uploads', '201'), 1);
    assert.equal(requests('POST', '/v1/uploads/:id/complete', '200'), 1);
    assert.equal(requests('GET', '/v1/assets/:id/content', '200'), 1);
    // On embedded the bytes went to Wharf's own storage endpoint, under its route pattern.
    if (!onS3(w)) assert.equal(requests('PUT', '/s3/*', '200'), 1);

    // Labels come from fixed sets: never an id, a URL with its query, or a file name.
    for (const value of labelValues(after, 'wharf_')) {
      assert.doesNotMatch(value, UUID, `label value ${value}`);
      for (const forbidden of [assetId, intent.id, '?', 'm.bin', 'p.bin', w.key]) {
        assert.ok(!value.includes(forbidden), `label value ${value} contains ${forbidden}`);
      }
    }
  });

  test('requests the HTTP parser refuses (400, 431, 408) are counted under route "unmatched" and logged at info', async () => {
    const before = await scrape(w.url);
    const port = Number(new URL(w.url).port);
    /** Writes `bytes` on a connection of its own; the status Wharf answers before closing it. */
    const refused = (bytes: string, then?: (server: Socket) => void) =>
      new Promise<number>((resolve, reject) => {
        const socket = connect({ port, host: '127.0.0.1' });
        const onConnection = (server: Socket) => {
          if (server.remotePort !== socket.localPort) return;
          w.wharf.app.server.off('connection', onConnection);
          then?.(server);
        };
        w.wharf.app.server.on('connection', onConnection);
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('error', reject);
        socket.on('close', () =>
          resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(Buffer.concat(chunks).toString('latin1'))?.[1] ?? 0)),
        );
        socket.write(bytes);
      });
    assert.equal(await refused('GET /healthz HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n'), 400);
    assert.equal(
      await refused(`GET /v1/assets HTTP/1.1\r\nHost: x\r\nx-filler: ${'a'.repeat(20_000)}\r\n\r\n`),
      431,
    );
    // Headers that never end: Node gives up after its headersTimeout (60 s) by emitting this
    // clientError, which the test emits itself as soon as the headers have arrived.
    assert.equal(
      await refused('GET /healthz HTTP/1.1\r\nHost: x\r\n', (server) => {
        server.once('data', () =>
          w.wharf.app.server.emit(
            'clientError',
            Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }),
            server,
          ),
        );
      }),
      408,
    );

    const after = await scrape(w.url);
    // The method is read from the refused bytes when they hold the request line, else "unknown".
    const unmatched = (scrape: Scrape, status: string) =>
      [...scrape]
        .filter(
          ([key]) =>
            key.startsWith('wharf_http_requests_total{') &&
            key.includes('route="unmatched"') &&
            key.includes(`status="${status}"`),
        )
        .reduce((sum, [, value]) => sum + value, 0);
    for (const status of ['400', '431', '408']) {
      assert.equal(unmatched(after, status) - unmatched(before, status), 1, `status ${status}`);
    }
    const get400 = { method: 'GET', route: 'unmatched', status: '400' };
    assert.equal(
      seriesValue(after, 'wharf_http_requests_total', get400) -
        seriesValue(before, 'wharf_http_requests_total', get400),
      1,
    );
    const timeouts = { method: 'unknown', route: 'unmatched', status: '408' };
    assert.equal(
      seriesValue(after, 'wharf_http_requests_total', timeouts) -
        seriesValue(before, 'wharf_http_requests_total', timeouts),
      1,
    );

    for (const [status, code] of [
      [400, 'MALFORMED_REQUEST'],
      [431, 'HEADERS_TOO_LARGE'],
      [408, 'REQUEST_TIMEOUT'],
    ] as const) {
      const line = await logs.waitFor(
        (l) =>
          l.msg === 'refused a request the HTTP parser could not read' &&
          (l.res as { statusCode?: number } | undefined)?.statusCode === status,
        `of the ${status}`,
      );
      assert.equal(line.level, INFO);
      assert.equal(line.code, code);
      assert.equal(line.remoteAddress, '127.0.0.1');
    }
  });

  test('job queue depth is read from the database at scrape; runs, failures and retries are counted and logged', async () => {
    await w.wharf.core.jobs.drain();
    const jobs = async (status: string) =>
      seriesValue(await scrape(w.url), 'wharf_jobs', { kind: 'process-asset', status });
    const before = await scrape(w.url);
    assert.equal(seriesValue(before, 'wharf_jobs', { kind: 'process-asset', status: 'queued' }), 0);

    const kept = (await uploadRaw(w, w.key, 'kept.bin', randomBytes(100))).body.asset;
    const deleted = (await uploadRaw(w, w.key, 'deleted.bin', randomBytes(100))).body.asset;
    const unreadable = (await uploadRaw(w, w.key, 'unreadable.bin', randomBytes(100))).body.asset;
    assert.equal(await jobs('queued'), 3, 'three new assets, three processing jobs waiting');

    // One asset is deleted before its job runs (nothing left to do: the job is done, not a
    // failure), another loses its bytes (storage may come back: retried later). A job nothing
    // can run (a kind this version has no handler for, as after a downgrade) is given up.
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${deleted.id}`)).status, 204);
    await removeStoredBytes(w, unreadable.id);
    const now = w.clock.now();
    const stray = '0190a0a0-0000-7000-8000-000000000001';
    await sql(
      w.databaseUrl,
      `insert into jobs (id, kind, payload, status, attempts, run_at, created_at, updated_at)
       values ('${stray}', 'retired-kind', '{}', 'queued', 0, ${now}, ${now}, ${now})`,
    );
    await w.wharf.core.jobs.drain();

    const after = await scrape(w.url);
    const delta = (name: string, labels: Record<string, string>) =>
      seriesValue(after, name, labels) - seriesValue(before, name, labels);
    assert.equal(
      delta('wharf_jobs_completed_total', { kind: 'process-asset' }),
      2,
      'kept, and the deleted one',
    );
    assert.equal(delta('wharf_job_failures_total', { kind: 'process-asset', given_up: 'true' }), 0);
    assert.equal(delta('wharf_job_failures_total', { kind: 'process-asset', given_up: 'false' }), 1);
    assert.equal(delta('wharf_job_failures_total', { kind: 'retired-kind', given_up: 'true' }), 1);
    // The retry waits for its next attempt: not yet due, so not among the jobs queued.
    assert.equal(
      seriesValue(after, 'wharf_jobs', { kind: 'process-asset', status: 'retrying' }),
      1,
      'the retry',
    );
    assert.equal(seriesValue(after, 'wharf_jobs', { kind: 'process-asset', status: 'queued' }), 0);
    assert.equal(seriesValue(after, 'wharf_jobs', { kind: 'process-asset', status: 'failed' }), 0);
    assert.equal(seriesValue(after, 'wharf_jobs', { kind: 'retired-kind', status: 'failed' }), 1, 'given up');
    assert.equal(seriesValue(after, 'wharf_jobs', { kind: 'verify-asset', status: 'queued' }), 0);
    assert.ok(kept.id);

    const givenUp = logs.find((l) => l.msg === 'background job failed and was given up');
    assert.ok(givenUp, 'the job given up is logged');
    assert.equal(givenUp.level, ERROR);
    const job = givenUp.job as { kind: string; id: string; attempt: number };
    assert.equal(job.kind, 'retired-kind');
    assert.equal(job.id, stray);
    assert.match(job.id, UUID);
    assert.equal(job.attempt, 1);
    assert.match((givenUp.err as { message: string }).message, /No handler for job kind "retired-kind"/);
    assert.equal(
      logs.lines.filter((l) => l.msg === 'background job failed and was given up').length,
      1,
      'the deleted asset’s job is not among them',
    );

    const retrying = logs.find((l) => l.msg === 'background job failed; it will be retried');
    assert.ok(retrying, 'the job to be retried is logged');
    assert.equal(retrying.level, WARN);
    assert.equal((retrying.job as { attempt: number }).attempt, 1);
    assert.ok((retrying.err as { message?: string }).message, 'with its error');
    assert.ok(Date.parse(String(retrying.retryAt)) > w.clock.now(), 'and when it runs again');
  });

  test('jobs queued for later (a presigned URL’s back-stop) are scheduled, not queued, until they are due', async () => {
    await w.wharf.core.jobs.drain();
    const jobs = async (status: string) =>
      seriesValue(await scrape(w.url), 'wharf_jobs', { kind: 'delete-object', status });
    const bytes = randomBytes(100);
    const intent = await declare(w, w.key, { name: 'backstop.bin', size: bytes.length });
    assert.equal((await putPresigned(intent, bytes)).status, 200);
    const completed = await api(w.url, w.key, 'POST', `/v1/uploads/${intent.id}/complete`);
    assert.equal(completed.status, 200, JSON.stringify(completed.body));
    await w.wharf.core.jobs.drain();
    // Its URL's delete-object runs once the URL has expired: normal traffic, no backlog.
    const [row] = dbQuery<{ n: number }>(
      w,
      "select count(*) as n from jobs where kind = 'delete-object' and status = 'queued' and attempts = 0 and run_at > ?",
      w.clock.now(),
    );
    const later = Number(row?.n);
    assert.ok(later >= 1, 'the upload queued its back-stop for later');
    assert.equal(await jobs('scheduled'), later);
    assert.equal(await jobs('queued'), 0, 'nothing due is waiting');
  });

  test('the sweep reports what it expired, cleaned and reconciled; expiries count as upload outcomes', async () => {
    const before = await scrape(w.url);
    await declare(w, w.key, { name: 'abandoned.bin', size: 10 });
    // Past the intent's expiry and the grace period after it.
    w.clock.advance(3 * 3600_000);
    const result = await w.wharf.core.uploads.sweep();
    assert.ok(result.expired >= 1);
    const after = await scrape(w.url);
    const delta = (name: string, labels: Record<string, string> = {}) =>
      seriesValue(after, name, labels) - seriesValue(before, name, labels);
    assert.equal(delta('wharf_sweep_runs_total'), 1);
    assert.equal(delta('wharf_sweep_items_total', { result: 'expired' }), result.expired);
    assert.equal(delta('wharf_sweep_items_total', { result: 'debris' }), result.debris);
    assert.equal(delta('wharf_sweep_items_total', { result: 'reconciled' }), result.reconciled);
    assert.equal(delta('wharf_uploads_total', { flow: 'presigned', outcome: 'expired' }), result.expired);
    assert.ok(seriesValue(after, 'wharf_sweep_last_run_timestamp_seconds') > 0);
  });

  test('webhook delivery attempts are counted by outcome', async () => {
    const receiver = await Receiver.start();
    try {
      const created = await api(w.url, w.key, 'POST', '/v1/webhooks', { url: receiver.url });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      receiver.secrets.push(created.body.secret);
      const count = async (outcome: string) =>
        seriesValue(await scrape(w.url), 'wharf_webhook_deliveries_total', { outcome });
      const before = { delivered: await count('delivered'), retrying: await count('retrying') };

      assert.equal((await uploadRaw(w, w.key, 'hooked.bin', randomBytes(50))).status, 201);
      await w.wharf.core.jobs.drain();
      assert.ok(receiver.accepted.length > 0, "the upload's events were delivered");
      assert.equal((await count('delivered')) - before.delivered, receiver.accepted.length);

      // The receiver fails: each attempt is counted, and a retry is scheduled.
      receiver.answer = () => ({ status: 503 });
      const answered = receiver.requests.length;
      assert.equal((await uploadRaw(w, w.key, 'hooked-again.bin', randomBytes(50))).status, 201);
      await w.wharf.core.jobs.drain();
      const failedAttempts = receiver.requests.length - answered;
      assert.ok(failedAttempts > 0);
      assert.equal((await count('retrying')) - before.retrying, failedAttempts);
      assert.equal(await count('given_up'), 0);
    } finally {
      await receiver.close();
    }
  });

  test('Node process metrics are included', async () => {
    const metrics = await scrape(w.url);
    assert.ok(seriesValue(metrics, 'process_cpu_user_seconds_total') > 0);
    assert.ok(seriesValue(metrics, 'process_resident_memory_bytes') > 0);
    assert.ok(metrics.has('nodejs_eventloop_lag_seconds{}'));
  });

  test('the data directory’s file system: its size and the bytes free on it, as statfs reads them', async () => {
    const metrics = await scrape(w.url);
    const fs = statfsSync(w.dataDir);
    assert.equal(seriesValue(metrics, 'wharf_data_dir_size_bytes'), fs.blocks * fs.bsize);
    const free = seriesValue(metrics, 'wharf_data_dir_free_bytes');
    // Other tests write to the same disk meanwhile: close, not equal.
    assert.ok(
      Math.abs(free - fs.bavail * fs.bsize) < 256 * 2 ** 20,
      `${free} free vs ${fs.bavail * fs.bsize}`,
    );
    assert.ok(free > 0 && free <= fs.blocks * fs.bsize);
  });
});

describe('metrics exposure', () => {
  test('by default /metrics is served nowhere', async () => {
    const w = await startWharf();
    try {
      assert.equal((await fetch(`${w.url}/metrics`)).status, 404);
      const withToken = await fetch(`${w.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(withToken.status, 404);
      assert.equal(w.wharf.metricsUrl, undefined);
    } finally {
      await w.close();
    }
  });

  test('WHARF_METRICS_TOKEN: the main port serves /metrics to a Bearer of the token only', async () => {
    const w = await startWharf({ env: { WHARF_METRICS_TOKEN: TOKEN } });
    try {
      const none = await api(w.url, undefined, 'GET', '/metrics');
      assert.equal(none.status, 401);
      assert.equal(none.body.error.code, 'UNAUTHORIZED');
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer /);
      for (const authorization of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, `Basic ${TOKEN}`, TOKEN]) {
        assert.equal(
          (await fetch(`${w.url}/metrics`, { headers: { authorization } })).status,
          401,
          authorization,
        );
      }
      // An API key, even an admin's, is not the metrics token.
      assert.equal((await fetch(`${w.url}/metrics`, { headers: { 'x-api-key': w.key } })).status, 401);
      assert.ok((await scrape(w.url)).size > 0);
      // A fresh server already has the series the documented alerts read, at 0 (see
      // docs/operations.md: increase() sees no increase in a series that first appears at 1).
      const text = await (
        await fetch(`${w.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
      ).text();
      const lines = new Set(text.split('\n'));
      for (const line of [
        'wharf_uploads_total{flow="direct",outcome="failed",error_code="STORAGE_FULL"} 0',
        'wharf_uploads_total{flow="tus",outcome="failed",error_code="ABORTED"} 0',
        'wharf_job_failures_total{kind="delete-object",given_up="true"} 0',
        'wharf_jobs{kind="delete-object",status="scheduled"} 0',
      ]) {
        assert.ok(lines.has(line), line);
      }
    } finally {
      await w.close();
    }
  });

  test('WHARF_METRICS_PORT: a listener of its own on loopback; the main port does not serve /metrics', async () => {
    const port = await freePort();
    const w = await startWharf({ env: { WHARF_METRICS_PORT: String(port) } });
    try {
      assert.equal(w.wharf.metricsUrl, `http://127.0.0.1:${port}`);
      const metrics = await scrape(w.wharf.metricsUrl!, undefined);
      assert.ok(seriesValue(metrics, 'wharf_webhook_deliveries_total', { outcome: 'delivered' }) === 0);
      assert.equal((await fetch(`${w.wharf.metricsUrl}/healthz`)).status, 404, 'only /metrics there');
      assert.equal((await fetch(`${w.url}/metrics`)).status, 404);
      // It counts the main port's requests: one registry for both.
      await fetch(`${w.url}/healthz`);
      const after = await scrape(w.wharf.metricsUrl!, undefined);
      assert.equal(
        seriesValue(after, 'wharf_http_requests_total', { method: 'GET', route: '/healthz', status: '200' }),
        1,
      );
    } finally {
      await w.close();
    }
  });

  test('with both, the token is required on the separate listener too', async () => {
    const port = await freePort();
    const w = await startWharf({ env: { WHARF_METRICS_PORT: String(port), WHARF_METRICS_TOKEN: TOKEN } });
    try {
      const url = w.wharf.metricsUrl!;
      const refused = await fetch(`${url}/metrics`);
      assert.equal(refused.status, 401);
      assert.match(refused.headers.get('www-authenticate') ?? '', /^Bearer /);
      assert.ok((await scrape(url)).size > 0);
      assert.ok((await scrape(w.url)).size > 0);
    } finally {
      await w.close();
    }
  });
});

describe('/healthz and /readyz', () => {
  let w: TestWharf;
  const logs = new LogCollector();
  before(async () => {
    w = await startWharf({ logStream: logs.stream });
  });
  after(async () => {
    await w?.close();
  });

  /** Readiness answers are reused for a second (of the server's clock): move past it. */
  async function readyz() {
    w.clock.advance(2000);
    return api(w.url, undefined, 'GET', '/readyz');
  }

  test('both answer 200 when the database and storage work; the probe leaves nothing in storage', async () => {
    assert.deepEqual((await api(w.url, undefined, 'GET', '/healthz')).body, { status: 'ok' });
    const ready = await readyz();
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, {
      status: 'ready',
      checks: { database: { status: 'ok' }, storage: { status: 'ok' } },
    });
    assert.deepEqual(
      (await storedKeys(w)).filter((key) => key.includes('readyz')),
      [],
      'the probe object is deleted',
    );
  });

  test('storage that refuses writes: uploads fail, /healthz stays 200, /readyz is 503 naming storage', async () => {
    let restore: () => Promise<void>;
    if (onS3(w)) {
      // The bucket is gone (deleted, or never there): every write fails.
      const { CreateBucketCommand, DeleteBucketCommand } = await import('@aws-sdk/client-s3');
      await withBucket(w, (s3, Bucket) => s3.send(new DeleteBucketCommand({ Bucket })));
      restore = () =>
        withBucket(w, (s3, Bucket) => s3.send(new CreateBucketCommand({ Bucket }))).then(() => {});
    } else {
      // Root ignores permissions, so a chmod would not stop the test's writes: where writes
      // begin (blobs/tmp) becomes a file, and every write fails (ENOTDIR) as EACCES would.
      const tmp = join(w.dataDir, 'blobs', 'tmp');
      await rm(tmp, { recursive: true });
      await writeFile(tmp, 'not a directory');
      restore = async () => {
        await rm(tmp);
        await mkdir(tmp);
      };
    }
    try {
      const upload = await uploadRaw(w, w.key, 'doomed.txt', 'these bytes have nowhere to go', {
        headers: { 'x-request-id': 'doomed-upload' },
      });
      assert.equal(upload.status, 500);
      const failure = await logs.waitFor(
        (l) => l.reqId === 'doomed-upload' && l.level >= INFO && !!l.err,
        'of the failure',
      );
      assert.equal(failure.level, ERROR, 'a storage failure is an error, not a client hang-up');

      assert.equal((await api(w.url, undefined, 'GET', '/healthz')).status, 200, 'the process is alive');
      const ready = await readyz();
      assert.equal(ready.status, 503);
      assert.equal(ready.body.status, 'unavailable');
      assert.deepEqual(ready.body.checks, {
        database: { status: 'ok' },
        storage: { status: 'failed', reason: 'error' },
      });
      assert.equal(ready.body.error.code, 'NOT_READY');
      assert.match(ready.body.error.message, /storage/);
      assert.doesNotMatch(JSON.stringify(ready.body), new RegExp(w.dataDir), 'no paths to anonymous callers');
      const warned = logs.find((l) => l.msg === 'readiness check failed' && l.check === 'storage');
      assert.equal(warned?.level, WARN);
      assert.ok(warned?.err, 'the log has the cause');
    } finally {
      await restore();
    }
    assert.equal((await readyz()).status, 200, 'ready again once storage is back');
  });
});

describe('request ids', () => {
  let w: TestWharf;
  const logs = new LogCollector();
  before(async () => {
    w = await startWharf({ logStream: logs.stream });
  });
  after(async () => {
    await w?.close();
  });

  test('every response carries one, generated when the request brings none', async () => {
    const res = await fetch(`${w.url}/healthz`);
    assert.match(res.headers.get('x-request-id') ?? '', UUID);
    const other = await fetch(`${w.url}/healthz`);
    assert.notEqual(other.headers.get('x-request-id'), res.headers.get('x-request-id'));
  });

  test('an incoming x-request-id is echoed on successes, errors, 404s, compat, tus and storage routes', async () => {
    const cases: [string, string, number][] = [
      ['GET', '/healthz', 200],
      ['GET', '/v1/assets', 401],
      ['GET', '/no/such/route', 404],
      ['GET', '/v1/assets/%E0%A4%A', 400],
      ['POST', '/api/v1/upload/direct', 401],
      ['GET', '/api_gateway/file-service/ns/x.txt', 401],
      ['POST', '/v1/tus/', 401],
      ['OPTIONS', '/v1/tus/', 204],
      ['PUT', '/s3/wharf/default/x.bin?X-Amz-Signature=nope', onS3(w) ? 404 : 400],
    ];
    for (const [method, path, status] of cases) {
      const id = `lb-${randomBytes(6).toString('hex')}.trace:1`;
      const res = await fetch(w.url + path, { method, headers: { 'x-request-id': id } });
      assert.equal(res.status, status, `${method} ${path}`);
      assert.equal(res.headers.get('x-request-id'), id, `${method} ${path} (${res.status})`);
      const body = await res.text();
      if (path.startsWith('/s3/') && !onS3(w)) {
        assert.match(
          body,
          new RegExp(`<RequestId>${id.replace(/\./g, '\\.')}</RequestId>`),
          'the S3 error names it',
        );
      }
    }
  });

  test('an unusable incoming id is replaced (too long, unsafe characters)', async () => {
    for (const id of ['a'.repeat(129), 'has space', '<script>', 'semi;colon', '']) {
      const res = await fetch(`${w.url}/healthz`, { headers: { 'x-request-id': id } });
      assert.match(res.headers.get('x-request-id') ?? '', UUID, JSON.stringify(id));
    }
    const longest = 'b'.repeat(128);
    const res = await fetch(`${w.url}/healthz`, { headers: { 'x-request-id': longest } });
    assert.equal(res.headers.get('x-request-id'), longest);
  });

  test('each log line of a request carries its id', async () => {
    const id = `log-${randomBytes(6).toString('hex')}`;
    const res = await fetch(`${w.url}/v1/assets`, { headers: { 'x-request-id': id, 'x-api-key': w.key } });
    assert.equal(res.status, 200);
    await logs.waitFor((l) => l.reqId === id && l.msg === 'request completed', 'of the request');
    const mine = logs.lines.filter((l) => l.reqId === id).map((l) => l.msg);
    assert.deepEqual(mine, ['incoming request', 'request completed']);
  });
});

describe('a connection Wharf cuts itself is not reported as a client that hung up', () => {
  const logs = new LogCollector();

  /** A raw upload that sends 10 bytes of the 100,000 it announces, then nothing. */
  function stalledUpload(w: TestWharf, id: string) {
    const request = httpRequest(`${w.url}/v1/assets?name=stalled.bin`, {
      method: 'POST',
      headers: {
        'x-api-key': w.key,
        'x-request-id': id,
        'content-type': 'application/octet-stream',
        'content-length': '100000',
      },
    });
    request.on('error', () => {
      // Expected: Wharf cuts this connection.
    });
    request.write(randomBytes(10));
    return request;
  }

  test('a silent client (WHARF_BODY_IDLE_TIMEOUT): its own log line, counted as 408', async () => {
    const w = await startWharf({
      env: { WHARF_METRICS_TOKEN: TOKEN, WHARF_BODY_IDLE_TIMEOUT: '1' },
      logStream: logs.stream,
    });
    try {
      const before = await scrape(w.url);
      const id = `silent-${randomBytes(6).toString('hex')}`;
      const request = stalledUpload(w, id);
      const line = await logs.waitFor(
        (l) => l.reqId === id && l.msg === 'connection cut: nothing moved on it for WHARF_BODY_IDLE_TIMEOUT',
        'of the cut',
      );
      request.destroy();
      assert.equal(line.level, INFO);
      assert.deepEqual(
        logs.lines.filter((l) => l.reqId === id && /client closed/.test(String(l.msg))),
        [],
        'not logged as the client leaving',
      );
      const after = await scrape(w.url);
      const delta = (status: string) =>
        seriesValue(after, 'wharf_http_requests_total', { method: 'POST', route: '/v1/assets', status }) -
        seriesValue(before, 'wharf_http_requests_total', { method: 'POST', route: '/v1/assets', status });
      assert.equal(delta('408'), 1);
      assert.equal(delta('499'), 0);
      // The upload it carried failed under the same code, not as a client's hang-up.
      const uploads = (code: string) =>
        seriesValue(after, 'wharf_uploads_total', { flow: 'direct', outcome: 'failed', error_code: code }) -
        seriesValue(before, 'wharf_uploads_total', { flow: 'direct', outcome: 'failed', error_code: code });
      assert.equal(uploads('REQUEST_TIMEOUT'), 1);
      assert.equal(uploads('ABORTED'), 0);
      // And the upload itself says so (its `ended`, as its upload.failed event).
      const listed = await api(w.url, w.key, 'GET', '/v1/uploads?status=expired');
      const stalled = listed.body.data.find((u: { name: string }) => u.name === 'stalled.bin');
      assert.equal(stalled?.ended?.error?.code, 'REQUEST_TIMEOUT', JSON.stringify(listed.body));
    } finally {
      await w.close();
    }
  });

  test('a request still running at the shutdown deadline: its own log line', async () => {
    const w = await startWharf({ logStream: logs.stream });
    let request: ReturnType<typeof stalledUpload> | undefined;
    try {
      const id = `deadline-${randomBytes(6).toString('hex')}`;
      request = stalledUpload(w, id);
      await logs.waitFor((l) => l.reqId === id && l.msg === 'incoming request', 'of the request');
      const { cut } = await w.wharf.close({ deadlineMs: 200 });
      assert.equal(cut, 1);
      const line = await logs.waitFor(
        (l) =>
          l.reqId === id &&
          l.msg === 'connection cut: the request still ran at the shutdown deadline (WHARF_SHUTDOWN_TIMEOUT)',
        'of the cut',
      );
      assert.equal(line.level, INFO);
      // Its upload failed as the stop's 503, not as a client's hang-up (every other failure series stands at 0).
      const failed = (
        await w.wharf.metrics.registry.getSingleMetric('wharf_uploads_total')?.get()
      )?.values.filter((v) => v.labels.outcome === 'failed' && v.value > 0);
      assert.deepEqual(
        failed?.map((v) => [v.labels.error_code, v.value]),
        [['SERVICE_UNAVAILABLE', 1]],
      );
    } finally {
      request?.destroy();
      await w.close();
    }
  });
});

describe('a client that hangs up mid-upload', () => {
  let w: TestWharf;
  const logs = new LogCollector();
  before(async () => {
    w = await startWharf({ env: { WHARF_METRICS_TOKEN: TOKEN }, logStream: logs.stream });
  });
  after(async () => {
    await w?.close();
  });

  test('is logged at info, not as an error; counted as a 499 and an aborted upload', async () => {
    const before = await scrape(w.url);
    const id = `hangup-${randomBytes(6).toString('hex')}`;
    const request = httpRequest(`${w.url}/v1/assets?name=big.bin`, {
      method: 'POST',
      headers: {
        'x-api-key': w.key,
        'x-request-id': id,
        'content-type': 'application/octet-stream',
        'content-length': String(64 * 1024 * 1024),
      },
    });
    request.on('error', () => {
      // Expected: this client hangs up.
    });
    // More than one S3 part (8 MiB), so the write has visibly started on either store.
    request.write(randomBytes(9 * 1024 * 1024));
    for (let i = 0; (await pendingWrites(w)).length === 0; i++) {
      assert.ok(i < 600, 'the upload started writing');
      await sleep(50);
    }
    request.destroy();

    const line = await logs.waitFor(
      (l) => l.reqId === id && l.msg === 'client closed the connection before the request was complete',
      'of the hang-up',
    );
    assert.equal(line.level, INFO);
    assert.deepEqual(
      logs.lines.filter((l) => l.reqId === id && l.level >= WARN),
      [],
      'nothing about it at warn or error',
    );
    const after = await scrape(w.url);
    const delta = (name: string, labels: Record<string, string>) =>
      seriesValue(after, name, labels) - seriesValue(before, name, labels);
    assert.equal(
      delta('wharf_http_requests_total', { method: 'POST', route: '/v1/assets', status: '499' }),
      1,
    );
    assert.equal(
      delta('wharf_uploads_total', { flow: 'direct', outcome: 'failed', error_code: 'ABORTED' }),
      1,
    );
  });
});

describe('bytes refused or broken off on their way in count as failed uploads on every flow', () => {
  let w: TestWharf;
  const logs = new LogCollector();
  before(async () => {
    w = await startWharf({ logStream: logs.stream });
  });
  after(async () => {
    await w?.close();
  });

  const failed = async (flow: string, code: string) =>
    seriesValue(parseScrape((await w.wharf.metrics.scrape()).body), 'wharf_uploads_total', {
      flow,
      outcome: 'failed',
      error_code: code,
    });

  /** Waits for `flow`'s failures under `code` to have moved by one from `before`. */
  const counted = (flow: string, code: string, before: number) =>
    eventually(async () => (await failed(flow, code)) === before + 1, `a ${flow} ${code} counted`);

  async function tusUpload(size: number): Promise<string> {
    const res = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        'Tus-Resumable': '1.0.0',
        Authorization: `Bearer ${w.key}`,
        'Upload-Length': String(size),
        'Upload-Metadata': `filename ${Buffer.from('t.bin').toString('base64')}`,
      },
    });
    assert.equal(res.status, 201, await res.text());
    return res.headers.get('location')!;
  }

  async function multipartPart(size: number): Promise<{ url: string; headers: Record<string, string> }> {
    const started = await api(w.url, w.key, 'POST', '/v1/multipart', {
      name: 'm.bin',
      content_type: 'application/octet-stream',
      size,
    });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const signed = await api(w.url, w.key, 'POST', `/v1/multipart/${started.body.id}/parts`, {
      partNumbers: [1],
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    return signed.body.parts[0];
  }

  /** Sends `sent` of the `length` bytes a request announces, once Wharf has it, then hangs up. */
  async function hangUp(
    url: string,
    method: string,
    headers: Record<string, string>,
    length: number,
    sent: number,
  ) {
    const id = `hangup-${randomBytes(6).toString('hex')}`;
    const request = httpRequest(url, {
      method,
      headers: { ...headers, 'x-request-id': id, 'content-length': String(length) },
    });
    request.on('error', () => {
      // Expected: this client hangs up.
    });
    request.write(randomBytes(sent));
    await logs.waitFor((l) => l.reqId === id && l.msg === 'incoming request', 'of the request');
    await sleep(100);
    request.destroy();
  }

  test('a tus PATCH whose Upload-Checksum is wrong (460): CHECKSUM_MISMATCH', async () => {
    const before = await failed('tus', 'CHECKSUM_MISMATCH');
    const url = await tusUpload(1000);
    const res = await fetch(url, {
      method: 'PATCH',
      headers: {
        'Tus-Resumable': '1.0.0',
        Authorization: `Bearer ${w.key}`,
        'Content-Type': 'application/offset+octet-stream',
        'Upload-Offset': '0',
        'Upload-Checksum': `sha256 ${createHash('sha256').update('other bytes').digest('base64')}`,
      },
      body: new Uint8Array(randomBytes(1000)),
    });
    assert.equal(res.status, 460, await res.text());
    assert.equal(await failed('tus', 'CHECKSUM_MISMATCH'), before + 1);
  });

  test('a tus PATCH the client hangs up on (499): ABORTED', async () => {
    const before = await failed('tus', 'ABORTED');
    const url = await tusUpload(4 * 2 ** 20);
    await hangUp(
      url,
      'PATCH',
      {
        'tus-resumable': '1.0.0',
        authorization: `Bearer ${w.key}`,
        'content-type': 'application/offset+octet-stream',
        'upload-offset': '0',
      },
      4 * 2 ** 20,
      2 ** 20,
    );
    await counted('tus', 'ABORTED', before);
  });

  /** The headers of a tus PATCH of a whole file. */
  const tusPatch = (extra: Record<string, string> = {}) => ({
    'Tus-Resumable': '1.0.0',
    Authorization: `Bearer ${w.key}`,
    'Content-Type': 'application/offset+octet-stream',
    'Upload-Offset': '0',
    ...extra,
  });

  /** `bytes` sent chunked: no Content-Length, so only the bytes show how long the body is. */
  const chunked = (bytes: Buffer) =>
    ({
      body: Readable.toWeb(
        Readable.from([bytes.subarray(0, 65_536), bytes.subarray(65_536)]),
      ) as ReadableStream,
      duplex: 'half',
    }) as RequestInit;

  /** Sends a tus PATCH past the length of an upload of 100,000 bytes: refused 413 FILE_TOO_LARGE. */
  async function tusOverrun(init: (bytes: Buffer) => RequestInit) {
    const url = await tusUpload(100_000);
    const res = await fetch(url, { method: 'PATCH', ...init(randomBytes(200_000)) });
    const text = await res.text();
    assert.equal(res.status, 413, text);
    assert.equal(JSON.parse(text).error.code, 'FILE_TOO_LARGE');
  }

  test('a tus PATCH whose chunked body runs past the upload’s length (413): FILE_TOO_LARGE, once', async () => {
    const before = await failed('tus', 'FILE_TOO_LARGE');
    const aborted = await failed('tus', 'ABORTED');
    await tusOverrun((bytes) => ({ headers: tusPatch(), ...chunked(bytes) }));
    assert.equal(await failed('tus', 'FILE_TOO_LARGE'), before + 1);
    assert.equal(await failed('tus', 'ABORTED'), aborted, 'not counted as a hang-up too');
  });

  test('a tus PATCH with an Upload-Checksum whose body runs past the upload’s length (413): FILE_TOO_LARGE, once', async () => {
    const before = await failed('tus', 'FILE_TOO_LARGE');
    const aborted = await failed('tus', 'ABORTED');
    await tusOverrun((bytes) => ({
      headers: tusPatch({
        'Upload-Checksum': `sha256 ${createHash('sha256').update(bytes).digest('base64')}`,
      }),
      ...chunked(bytes),
    }));
    assert.equal(await failed('tus', 'FILE_TOO_LARGE'), before + 1);
    assert.equal(await failed('tus', 'ABORTED'), aborted, 'not counted as a hang-up too');
  });

  test('a tus PATCH whose Content-Length goes past the upload’s length (413): refused before a byte is read, not counted', async () => {
    const before = await failed('tus', 'FILE_TOO_LARGE');
    const aborted = await failed('tus', 'ABORTED');
    // As a Resumable Uploads for HTTP append's Content-Length past the end is (its headers).
    await tusOverrun((bytes) => ({ headers: tusPatch(), body: new Uint8Array(bytes) }));
    await tusOverrun((bytes) => ({
      headers: tusPatch({
        'Upload-Checksum': `sha256 ${createHash('sha256').update(bytes).digest('base64')}`,
      }),
      body: new Uint8Array(bytes),
    }));
    assert.equal(await failed('tus', 'FILE_TOO_LARGE'), before);
    assert.equal(await failed('tus', 'ABORTED'), aborted);
  });

  /** A Resumable Uploads for HTTP upload of `size` bytes, none sent yet: its resource's URL. */
  async function rufhUpload(size: number): Promise<string> {
    const res = await fetch(`${w.url}/v1/resumable/?name=r.bin`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${w.key}`, 'Upload-Complete': '?0', 'Upload-Length': String(size) },
    });
    assert.equal(res.status, 201, await res.text());
    return new URL(res.headers.get('location')!, w.url).href;
  }

  /** The headers of an append of the whole file. */
  const rufhAppend = () => ({
    authorization: `Bearer ${w.key}`,
    'upload-offset': '0',
    'upload-complete': '?1',
    'content-type': 'application/partial-upload',
  });

  test('a Resumable Uploads for HTTP append whose Content-Digest is wrong (400): CHECKSUM_MISMATCH, once', async () => {
    const before = await failed('rufh', 'CHECKSUM_MISMATCH');
    const url = await rufhUpload(1000);
    const res = await fetch(url, {
      method: 'PATCH',
      headers: {
        ...rufhAppend(),
        'content-digest': `sha-256=:${createHash('sha256').update('other bytes').digest('base64')}:`,
      },
      body: new Uint8Array(randomBytes(1000)),
    });
    const text = await res.text();
    assert.equal(res.status, 400, text);
    assert.equal(JSON.parse(text).error.code, 'CHECKSUM_MISMATCH');
    assert.equal(await failed('rufh', 'CHECKSUM_MISMATCH'), before + 1);
  });

  test('a Resumable Uploads for HTTP append the client hangs up on (499): ABORTED, once', async () => {
    const before = await failed('rufh', 'ABORTED');
    const url = await rufhUpload(4 * 2 ** 20);
    await hangUp(url, 'PATCH', rufhAppend(), 4 * 2 ** 20, 2 ** 20);
    await counted('rufh', 'ABORTED', before);
    // What arrived was kept (the upload resumes from it), and counted no more than once.
    await eventually(async () => {
      const head = await fetch(url, { method: 'HEAD', headers: { authorization: `Bearer ${w.key}` } });
      return Number(head.headers.get('upload-offset')) > 0;
    }, 'the bytes that arrived kept');
    assert.equal(await failed('rufh', 'ABORTED'), before + 1);
  });

  test('a Resumable Uploads for HTTP append past the upload’s length (413): FILE_TOO_LARGE, once', async () => {
    const before = await failed('rufh', 'FILE_TOO_LARGE');
    const aborted = await failed('rufh', 'ABORTED');
    const url = await rufhUpload(100_000);
    // Chunked, so only its bytes show it too long (a Content-Length past the end is refused first).
    const bytes = randomBytes(200_000);
    const res = await fetch(url, {
      method: 'PATCH',
      headers: rufhAppend(),
      body: Readable.toWeb(
        Readable.from([bytes.subarray(0, 65_536), bytes.subarray(65_536)]),
      ) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    const text = await res.text();
    assert.equal(res.status, 413, text);
    assert.equal(JSON.parse(text).error.code, 'FILE_TOO_LARGE');
    assert.equal(await failed('rufh', 'FILE_TOO_LARGE'), before + 1);
    assert.equal(await failed('rufh', 'ABORTED'), aborted, 'not counted as a hang-up too');
  });

  test('a multipart part whose Content-MD5 is wrong (400 BadDigest): CHECKSUM_MISMATCH', async (t) => {
    if (onS3(w)) return t.skip('parts go straight to the bucket');
    const before = await failed('multipart', 'CHECKSUM_MISMATCH');
    const part = await multipartPart(1000);
    const res = await fetch(part.url, {
      method: 'PUT',
      headers: { ...part.headers, 'content-md5': createHash('md5').update('x').digest('base64') },
      body: new Uint8Array(randomBytes(1000)),
    });
    const text = await res.text();
    assert.equal(res.status, 400, text);
    assert.match(text, /<Code>BadDigest<\/Code>/);
    assert.equal(await failed('multipart', 'CHECKSUM_MISMATCH'), before + 1);
  });

  test('a multipart part the client hangs up on (499): ABORTED', async (t) => {
    if (onS3(w)) return t.skip('parts go straight to the bucket');
    const before = await failed('multipart', 'ABORTED');
    const size = 6 * 2 ** 20;
    const part = await multipartPart(size);
    await hangUp(part.url, 'PUT', part.headers, 5 * 2 ** 20, 2 ** 20);
    await counted('multipart', 'ABORTED', before);
  });
});
