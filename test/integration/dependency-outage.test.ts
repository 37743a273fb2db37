import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { deployment, queryPostgres, storesOnS3 } from '../helpers/deployment.js';
import { sha256Hex } from '../helpers/http.js';
import { startWharfProcess, type WharfProcess } from '../helpers/server-process.js';
import { freePort } from '../helpers/wharf.js';

/*
 * The scaled deployment's dependencies going away mid-run: PostgreSQL stopped and started
 * again, then the S3 store's gateway (Ceph radosgw) stopped and started again, each while
 * Wharf (its own process) serves requests and uploads are in flight. While a dependency is
 * down every answer is a success that does not need it, or 503 SERVICE_UNAVAILABLE with
 * Retry-After: never a 500, never a request that hangs past a bound, never a crash. Nothing
 * acknowledged is lost, and Wharf serves again once the dependency is back, without a restart.
 *
 * The PostgreSQL server and the Ceph cluster are this test's own (scripts/services/*.sh with a
 * state directory of their own), never the shared ones other tests use.
 */
const skip =
  (deployment !== 'scaled' || !storesOnS3) &&
  'needs PostgreSQL and an S3 store to stop (the scaled deployment); the embedded deployment runs in one process with nothing to lose';

const run = promisify(execFile);
/** A request that takes longer than this while a dependency is away counts as a hang. */
const REQUEST_BOUND_MS = 45_000;

interface Services {
  state: string;
  env: Record<string, string>;
  service(name: 'postgres' | 'ceph', command: 'start' | 'stop' | 'pause' | 'resume'): Promise<string>;
}

async function ownServices(): Promise<Services> {
  const state = await mkdtemp(join(tmpdir(), 'wharf-outage-services-'));
  const service: Services['service'] = async (name, command) => {
    const { stdout } = await run(`scripts/services/${name}.sh`, [command], {
      env: { ...process.env, WHARF_SERVICES_STATE: state },
      maxBuffer: 1 << 20,
    });
    return stdout;
  };
  const env: Record<string, string> = {};
  for (const name of ['postgres', 'ceph'] as const) {
    for (const line of (await service(name, 'start')).split('\n')) {
      const m = /^(WHARF_TEST_[A-Z0-9_]+)=(.*)$/.exec(line);
      if (m) env[m[1]!] = m[2]!;
    }
  }
  return { state, env, service };
}

interface Answer {
  label: string;
  status: number;
  retryAfter: string | null;
  body: string;
  ms: number;
}

/** Polls `check` (every 100 ms, for up to a minute: the machine may be busy). */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (check()) return;
    await sleep(100);
  }
  assert.fail(`never happened: ${what}`);
}

/** One request with a bound: a hang is reported as such, a dropped connection too. */
async function ask(label: string, url: string, init: RequestInit = {}): Promise<Answer> {
  const started = performance.now();
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_BOUND_MS) });
    const body = await res.text();
    return {
      label,
      status: res.status,
      retryAfter: res.headers.get('retry-after'),
      body,
      ms: performance.now() - started,
    };
  } catch (err) {
    const e = err as Error;
    const what =
      e.name === 'TimeoutError'
        ? `no answer within ${REQUEST_BOUND_MS} ms`
        : `no answer: ${String(e.cause ?? e)}`;
    return { label, status: 0, retryAfter: null, body: what, ms: performance.now() - started };
  }
}

/**
 * While a dependency is away: an answer that did not need it (a success, or a refusal of the
 * request itself, 4xx), or 503 SERVICE_UNAVAILABLE with Retry-After. Never another 5xx, never
 * no answer.
 */
function assertRefusedWell(answer: Answer): void {
  const text = `${answer.label}: ${answer.status} ${answer.body.slice(0, 300)}`;
  assert.notEqual(answer.status, 0, text);
  if (answer.status < 500) return;
  assert.equal(answer.status, 503, text);
  assert.ok(
    answer.retryAfter && /^\d+$/.test(answer.retryAfter),
    `${text}: Retry-After ${answer.retryAfter}`,
  );
  // The native shape names the code; each compat API answers in its own shape.
  const error = answer.body.startsWith('{') ? JSON.parse(answer.body).error : undefined;
  if (typeof error === 'object' && error !== null) assert.equal(error.code, 'SERVICE_UNAVAILABLE', text);
}

describe('dependencies going away (scaled deployment)', { skip }, () => {
  let services: Services;
  let wharf: WharfProcess;
  let dataDir: string;
  let base: string;
  const key = `outage-key-${randomBytes(8).toString('hex')}`;
  const h = { 'x-api-key': key };
  /** Every upload Wharf acknowledged: asset id → SHA-256 of what was sent. */
  const acknowledged = new Map<string, string>();
  const figures: string[] = [];

  async function upload(name: string, bytes: Buffer | ReadableStream<Uint8Array>): Promise<Answer> {
    const answer = await ask(`POST /v1/assets ${name}`, `${base}/v1/assets?name=${name}`, {
      method: 'POST',
      headers: { ...h, 'content-type': 'application/octet-stream' },
      body: bytes instanceof Buffer ? new Uint8Array(bytes) : bytes,
      ...(bytes instanceof Buffer ? {} : { duplex: 'half' }),
    } as RequestInit);
    return answer;
  }

  async function acknowledgedUpload(name: string, bytes: Buffer): Promise<void> {
    const answer = await upload(name, bytes);
    assert.equal(answer.status, 201, answer.body);
    acknowledged.set(JSON.parse(answer.body).asset.id, sha256Hex(bytes));
  }

  /** A body that sends its first half at once and the rest only when `release` resolves. */
  function heldBody(bytes: Buffer, release: Promise<void>): ReadableStream<Uint8Array> {
    const half = bytes.length >> 1;
    return new ReadableStream({
      async start(controller) {
        controller.enqueue(new Uint8Array(bytes.subarray(0, half)));
        await release;
        controller.enqueue(new Uint8Array(bytes.subarray(half)));
        controller.close();
      },
    });
  }

  /** Every acknowledged asset downloads byte for byte. */
  async function allAcknowledgedSurvive(): Promise<number> {
    for (const [id, sha] of acknowledged) {
      const res = await fetch(`${base}/v1/assets/${id}/content`, { headers: h });
      const body = Buffer.from(await res.arrayBuffer());
      assert.equal(res.status, 200, `asset ${id}`);
      assert.equal(sha256Hex(body), sha, `asset ${id}: its bytes`);
    }
    return acknowledged.size;
  }

  /** Polls (a request a second) until Wharf serves `check` again; returns how long that took. */
  async function recovers(check: () => Promise<boolean>): Promise<number> {
    const started = performance.now();
    for (let i = 0; i < 120; i++) {
      if (await check()) return performance.now() - started;
      await sleep(1000);
    }
    assert.fail(`Wharf did not recover within two minutes:\n${wharf.tail()}`);
  }

  /** The requests sent while a dependency is away: every API, reads and writes. */
  function duringOutage(assetId: string): Array<[string, () => Promise<Answer>]> {
    const json = { ...h, 'content-type': 'application/json' };
    return [
      ['list assets', () => ask('GET /v1/assets', `${base}/v1/assets`, { headers: h })],
      ['read an asset', () => ask('GET /v1/assets/:id', `${base}/v1/assets/${assetId}`, { headers: h })],
      [
        'download an asset',
        () => ask('GET /v1/assets/:id/content', `${base}/v1/assets/${assetId}/content`, { headers: h }),
      ],
      ['direct upload', () => upload('during.bin', randomBytes(64 * 1024))],
      [
        'declare an upload',
        () =>
          ask('POST /v1/uploads', `${base}/v1/uploads`, {
            method: 'POST',
            headers: json,
            body: JSON.stringify({ name: 'intent.bin', size: 10 }),
          }),
      ],
      [
        'start a multipart upload',
        () =>
          ask('POST /v1/multipart', `${base}/v1/multipart`, {
            method: 'POST',
            headers: json,
            body: JSON.stringify({ name: 'parts.bin', size: 10 }),
          }),
      ],
      [
        'create a tus upload',
        () =>
          ask('POST /v1/tus/', `${base}/v1/tus/`, {
            method: 'POST',
            headers: {
              ...h,
              'tus-resumable': '1.0.0',
              'upload-length': '10',
              'upload-metadata': `filename ${Buffer.from('t.bin').toString('base64')}`,
            },
          }),
      ],
      [
        'netiks read',
        () => ask('GET /api/v1/assets/:id/', `${base}/api/v1/assets/${assetId}/`, { headers: h }),
      ],
      [
        'Inspect read',
        () => ask('GET /api/inspect/v1/file/:id', `${base}/api/inspect/v1/file/${assetId}`, { headers: h }),
      ],
      [
        'file service read',
        () =>
          ask('GET /api_gateway/file-service/…', `${base}/api_gateway/file-service/docs/a.txt`, {
            headers: h,
          }),
      ],
      [
        'ActiveStorage create blob',
        () =>
          ask('POST /api/v1/upload/direct', `${base}/api/v1/upload/direct`, {
            method: 'POST',
            headers: json,
            body: JSON.stringify({
              blob: {
                filename: 'a.txt',
                content_type: 'text/plain',
                byte_size: 3,
                checksum: 'rL0Y20zC+Fzt72VPzMSk2A==',
              },
            }),
          }),
      ],
      ['keys', () => ask('GET /v1/keys', `${base}/v1/keys`, { headers: h })],
    ];
  }

  async function outage(
    name: 'postgres' | 'ceph',
    dependency: string,
    t: { diagnostic(message: string): void },
  ): Promise<void> {
    const pid = wharf.child.pid;
    const before = randomBytes(256 * 1024);
    await acknowledgedUpload(`before-${name}.bin`, before);
    const [assetId] = [...acknowledged.keys()];

    // Uploads in flight when the dependency goes: half their bytes sent, the rest after.
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    const inFlight = Array.from({ length: 3 }, (_, i) => {
      const bytes = randomBytes(1024 * 1024 + i);
      return { bytes, answer: upload(`inflight-${name}-${i}.bin`, heldBody(bytes, released)) };
    });
    // Each has begun: Wharf records a direct upload before it stores a byte.
    await until(
      () =>
        queryPostgres<{ n: number }>(
          services.env.WHARF_TEST_PG_URL!,
          'select count(*)::int as n from uploads where name like ?',
          [`inflight-${name}-%`],
        )[0]!.n === inFlight.length,
      'the in-flight uploads reached Wharf',
    );

    const answers: Answer[] = [];
    const whileDown = async () => {
      release();
      for (const [i, flight] of inFlight.entries()) {
        const answer = await flight.answer;
        answers.push(answer);
        assertRefusedWell(answer);
        if (answer.status === 201)
          acknowledged.set(JSON.parse(answer.body).asset.id, sha256Hex(flight.bytes));
        else assert.equal(answer.status, 503, `in flight ${i}`);
      }
      // Every API, twice (the second time no connection is left from before the outage).
      for (let round = 0; round < 2; round++) {
        for (const [, send] of duringOutage(assetId!)) {
          const answer = await send();
          answers.push(answer);
          assertRefusedWell(answer);
        }
      }
      assert.equal(
        (await ask('healthz', `${base}/healthz`)).status,
        200,
        'liveness does not need the dependency',
      );
      assert.ok(wharf.running(), `Wharf is still running:\n${wharf.tail()}`);
    };

    const stopped = performance.now();
    await services.service(name, 'pause');
    try {
      await whileDown();
    } finally {
      release();
      await services.service(name, 'resume');
    }
    const down = performance.now() - stopped;
    const refused = answers.filter((a) => a.status === 503).length;
    const slowest = Math.max(...answers.map((a) => a.ms));

    const back = await recovers(async () => (await upload('probe.bin', randomBytes(100))).status === 201);
    assert.ok(
      wharf.running() && wharf.child.pid === pid,
      'the same process serves again, not a restarted one',
    );
    const after = randomBytes(300 * 1024);
    await acknowledgedUpload(`after-${name}.bin`, after);
    const survived = await allAcknowledgedSurvive();
    const line =
      `${dependency} outage: ${answers.length} requests while down, ${refused} answered 503 with Retry-After, ` +
      `${answers.length - refused} served without it, 0 errors, slowest answer ${Math.round(slowest)} ms; ` +
      `down ${Math.round(down / 1000)} s, serving again ${Math.round(back)} ms after the restart; ` +
      `${survived} acknowledged assets all intact`;
    figures.push(line);
    t.diagnostic(line);
  }

  before(async () => {
    services = await ownServices();
    dataDir = await mkdtemp(join(tmpdir(), 'wharf-outage-'));
    const env = {
      WHARF_DATA_DIR: dataDir,
      WHARF_PORT: String(await freePort()),
      WHARF_API_KEY: key,
      WHARF_DATABASE_URL: services.env.WHARF_TEST_PG_URL!,
      WHARF_STORAGE: 's3',
      WHARF_S3_ENDPOINT: services.env.WHARF_TEST_S3_ENDPOINT!,
      WHARF_S3_REGION: services.env.WHARF_TEST_S3_REGION!,
      WHARF_S3_BUCKET: 'wharf-outage',
      WHARF_S3_ACCESS_KEY_ID: services.env.WHARF_TEST_S3_ACCESS_KEY_ID!,
      WHARF_S3_SECRET_ACCESS_KEY: services.env.WHARF_TEST_S3_SECRET_ACCESS_KEY!,
      WHARF_S3_FORCE_PATH_STYLE: 'true',
      // The background sweep and jobs keep running through the outages, as in production.
      WHARF_SWEEP_INTERVAL: '1',
    };
    wharf = await startWharfProcess(env);
    base = wharf.url;
  });

  after(async () => {
    await wharf?.kill();
    if (services) {
      for (const name of ['postgres', 'ceph'] as const) await services.service(name, 'stop').catch(() => {});
      await rm(services.state, { recursive: true, force: true });
    }
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('PostgreSQL stopped and started again: 503 while down, nothing lost, serving again without a restart', async (t) => {
    await outage('postgres', 'PostgreSQL', t);
  });

  test('the S3 store (radosgw) stopped and started again: 503 while down, nothing lost, serving again without a restart', async (t) => {
    await outage('ceph', 'S3 store', t);
  });

  test('Wharf never exited', () => {
    assert.ok(wharf.running(), wharf.tail());
  });
});
