/**
 * `npm run bench:presign-latency`: presigning's latency at offered rates below its capacity.
 *
 * The presign section of `npm run bench` is a closed loop (50 connections, each sending its
 * next call once the last is answered), which measures capacity: its latency is the queue of
 * 50 calls, 50 ÷ calls/s at the median. Latency means something at a rate the server keeps
 * up with. So this measures the closed-loop rate first (the reference, in the same run), then
 * offers fractions of it open-loop: calls sent on a fixed schedule, each timed from when it
 * was due, not from when a connection was free (so a stall counts against every call it
 * delays). Hand-written pacing because autocannon's rate limit sends each second's calls in a
 * burst, which measures the burst.
 *
 * Env: BENCH_PRESIGN_FILES (100), BENCH_PRESIGN_FRACTIONS (0.4,0.6,0.8), BENCH_PRESIGN_SECONDS
 * (8), BENCH_ROUNDS (2: closed loop, then each fraction, per round), BENCH_TMPDIR,
 * BENCH_SKIP_BUILD=1.
 */
import http from 'node:http';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { cleanupAll, installExitHandlers } from './lib/cleanup.js';
import { formatNumber } from './lib/report.js';
import { loadAverage, positiveSetting, runLog } from './lib/run-log.js';
import { buildServers, startWharf, type WharfServer } from './lib/servers.js';
import { createWorkDir } from './lib/workdir.js';

const CONNECTIONS = 50;

const { log, seconds: elapsed } = runLog();

/** Calls per second at 50 connections, closed loop. */
async function closedLoop(wharf: WharfServer, body: string, seconds: number): Promise<number> {
  const result = await autocannon({
    url: `${wharf.url}/v1/uploads`,
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': wharf.apiKey },
    body,
    connections: CONNECTIONS,
    duration: seconds,
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${result.non2xx} non-2xx answers and ${result.errors} errors under load`);
  }
  return result['2xx'] / result.duration;
}

interface Latency {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Seconds the last answer came after the last call was due (the backlog left over). */
  lag: number;
}

/** `rate` calls a second for `seconds`, each timed from when it was due. */
async function openLoop(wharf: WharfServer, body: string, rate: number, seconds: number): Promise<Latency> {
  const url = new URL('/v1/uploads', wharf.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const headers = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-api-key': wharf.apiKey,
  };
  const post = () =>
    new Promise<number>((done, fail) => {
      const request = http.request(url, { method: 'POST', agent, headers }, (response) => {
        response.resume();
        response.on('end', () => done(response.statusCode ?? 0));
      });
      request.on('error', fail);
      request.end(body);
    });
  const total = Math.floor(rate * seconds);
  const latencies: number[] = [];
  const failures: string[] = [];
  const start = performance.now();
  const due = (i: number) => start + (i * 1000) / rate;
  let sent = 0;
  const calls: Promise<void>[] = [];
  while (sent < total) {
    while (sent < total && due(sent) <= performance.now()) {
      const at = due(sent);
      sent += 1;
      calls.push(
        post().then(
          (status) => {
            latencies.push(performance.now() - at);
            if (status !== 201) failures.push(`status ${status}`);
          },
          (err: unknown) => {
            failures.push(String(err));
          },
        ),
      );
    }
    await new Promise((tick) => setTimeout(tick, 1));
  }
  await Promise.all(calls);
  agent.destroy();
  if (failures.length > 0) throw new Error(`${failures.length} calls failed, first: ${failures[0]}`);
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return {
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    max: latencies.at(-1)!,
    lag: (performance.now() - due(total - 1)) / 1000,
  };
}

async function main(): Promise<void> {
  const files = positiveSetting('BENCH_PRESIGN_FILES', 100);
  const seconds = positiveSetting('BENCH_PRESIGN_SECONDS', 8);
  const rounds = positiveSetting('BENCH_ROUNDS', 2);
  const fractions = (process.env.BENCH_PRESIGN_FRACTIONS || '0.4,0.6,0.8').split(',').map(Number);
  if (fractions.some((f) => !(f > 0 && f <= 1)))
    throw new Error('BENCH_PRESIGN_FRACTIONS: numbers in (0, 1]');
  const one = { name: 'x.bin', size: 1024, content_type: 'application/octet-stream' };
  const body = JSON.stringify(files === 1 ? one : { files: Array.from({ length: files }, () => one) });
  log(`Presign latency: ${files} file(s) per call, ${rounds} rounds, ${seconds} s per figure`);
  log(`load average ${loadAverage()}`);
  if (process.env.BENCH_SKIP_BUILD !== '1') {
    log('building Wharf...');
    await buildServers();
  }
  const root = await createWorkDir(resolve(process.env.BENCH_TMPDIR ?? tmpdir()), log);
  const wharf = await startWharf({ dataDir: root, name: 'wharf' });
  try {
    await closedLoop(wharf, body, 3); // JIT warm-up
    for (let round = 1; round <= rounds; round++) {
      const capacity = await closedLoop(wharf, body, seconds);
      log(
        `round ${round}: closed loop, ${CONNECTIONS} connections: ${formatNumber(capacity)} calls/s ` +
          `(${formatNumber(capacity * files)} URLs/s)`,
      );
      for (const fraction of fractions) {
        const rate = Math.max(1, Math.round(capacity * fraction));
        const l = await openLoop(wharf, body, rate, seconds);
        log(
          `round ${round}: offered ${formatNumber(rate)} calls/s (${Math.round(fraction * 100)} % of the closed ` +
            `loop's, ${formatNumber(rate * files)} URLs/s): p50 ${l.p50.toFixed(0)} ms, p90 ${l.p90.toFixed(0)}, ` +
            `p99 ${l.p99.toFixed(0)}, max ${l.max.toFixed(0)}; last answer ${l.lag.toFixed(2)} s after the last call was due`,
        );
      }
    }
  } finally {
    await wharf.stop();
  }
}

installExitHandlers();
let exitCode = 0;
try {
  await main();
} catch (err) {
  process.stderr.write(
    `\nbenchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  exitCode = 1;
} finally {
  await cleanupAll();
  log(`done in ${elapsed().toFixed(0)} s`);
}
process.exit(exitCode);
