import { readFile } from 'node:fs/promises';
import autocannon from 'autocannon';
import type { ChildServer } from '../lib/children.js';
import type { BenchContext } from '../lib/context.js';
import { formatNumber, type Row } from '../lib/report.js';
import { startBareFastify } from '../lib/servers.js';
import { type Summary, summarize } from '../lib/stats.js';

const WARMUP_SECONDS = 2;

interface Load {
  requestsPerSecond: number;
  p99Ms: number;
  /** CPU time (user + system, every thread) the server spent per answered call. */
  cpuMsPerCall: number;
}

// Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ; 100 on Linux).
const USER_HZ = 100;

/**
 * CPU seconds a process has used. On a machine shared with other work, calls per second
 * measure the share of the cores a server got; CPU time per call is what it costs, and it
 * barely moves with the load around it.
 */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
}

/**
 * Presigned-upload creation under load: autocannon, 50 connections, POST /v1/uploads with
 * one file per call and with 100. The reference is a bare Fastify route in its own child
 * given the same bodies: what the framework and this machine allow before Wharf does
 * anything. No sha256 is declared, so no dedupe lookup happens.
 */
export async function presignScenario(ctx: BenchContext): Promise<Row[]> {
  const { config } = ctx;
  const bare = await startBareFastify();
  try {
    const one = { name: 'x.bin', size: 1024, content_type: 'application/octet-stream' };
    const single = JSON.stringify(one);
    const batch = JSON.stringify({ files: Array.from({ length: config.presignBatch }, () => one) });
    const wharfHeaders = { 'content-type': 'application/json', 'x-api-key': ctx.wharf.apiKey };
    const bareHeaders = { 'content-type': 'application/json' };

    // JIT warm-up of every route and body shape before anything is timed.
    for (const body of [single, batch]) {
      await load(ctx.wharf, wharfHeaders, body, WARMUP_SECONDS, config.presignConnections);
      await load(bare, bareHeaders, body, WARMUP_SECONDS, config.presignConnections);
    }

    const measure = async (body: string, label: string) => {
      const w: Load[] = [];
      const b: Load[] = [];
      for (let round = 1; round <= config.rounds; round++) {
        w.push(await load(ctx.wharf, wharfHeaders, body, config.presignSeconds, config.presignConnections));
        b.push(await load(bare, bareHeaders, body, config.presignSeconds, config.presignConnections));
        ctx.log(
          `  presign ${label}, round ${round}/${config.rounds}: Wharf ${formatNumber(w.at(-1)!.requestsPerSecond)} ` +
            `calls/s (p99 ${formatNumber(w.at(-1)!.p99Ms)} ms, CPU ${formatNumber(w.at(-1)!.cpuMsPerCall)} ms/call), bare Fastify ` +
            `${formatNumber(b.at(-1)!.requestsPerSecond)} req/s (p99 ${formatNumber(b.at(-1)!.p99Ms)} ms, ` +
            `CPU ${formatNumber(b.at(-1)!.cpuMsPerCall)} ms/call)`,
        );
      }
      return { wharf: w, bare: b };
    };

    const s = await measure(single, '1 file/call');
    const m = await measure(batch, `${config.presignBatch} files/call`);
    const rate = (loads: Load[], factor = 1): Summary =>
      summarize(loads.map((l) => l.requestsPerSecond * factor));
    const p99 = (loads: Load[]): Summary => summarize(loads.map((l) => l.p99Ms));
    const cpu = (loads: Load[]): Summary => summarize(loads.map((l) => l.cpuMsPerCall));

    const singleRate = rate(s.wharf);
    const batchUrls = rate(m.wharf, config.presignBatch);
    const bareSingle = rate(s.bare);
    const c = `c=${config.presignConnections}`;
    return [
      {
        group: 'Presign',
        label: `1 file/call, ${c} (baseline: bare Fastify)`,
        unit: 'uploads/s',
        wharf: singleRate,
        baseline: bareSingle,
        // Issue 14: one file per call at ≥ 30 % of what the bare route answers.
        target: { text: '≥ 30% of bare Fastify', met: singleRate.median >= 0.3 * bareSingle.median },
      },
      {
        group: 'Presign',
        label: `1 file/call, ${c}, p99 latency`,
        unit: 'ms',
        wharf: p99(s.wharf),
        baseline: p99(s.bare),
        lowerIsBetter: true,
      },
      {
        group: 'Presign',
        // Issue 14: URLs per second when batched at least the bare route's request rate.
        label: `${config.presignBatch} files/call, ${c} (baseline: bare Fastify req/s, 1 file/call)`,
        unit: 'URLs/s',
        wharf: batchUrls,
        baseline: bareSingle,
        target: { text: '≥ bare Fastify req/s', met: batchUrls.median >= bareSingle.median },
      },
      {
        group: 'Presign',
        label: `${config.presignBatch} files/call, ${c} (baseline: bare Fastify, same body)`,
        unit: 'calls/s',
        wharf: rate(m.wharf),
        baseline: rate(m.bare),
      },
      {
        group: 'Presign',
        label: `${config.presignBatch} files/call, ${c}, p99 latency`,
        unit: 'ms',
        wharf: p99(m.wharf),
        baseline: p99(m.bare),
        lowerIsBetter: true,
        target: { text: '< 100 ms', met: p99(m.wharf).median < 100 },
      },
      {
        group: 'Presign',
        label: `1 file/call, ${c}, server CPU per call (load-independent cost)`,
        unit: 'ms',
        wharf: cpu(s.wharf),
        baseline: cpu(s.bare),
        lowerIsBetter: true,
      },
      {
        group: 'Presign',
        label: `${config.presignBatch} files/call, ${c}, server CPU per call (baseline: bare Fastify, 1 file/call)`,
        unit: 'ms',
        wharf: cpu(m.wharf),
        baseline: cpu(s.bare),
        lowerIsBetter: true,
      },
      {
        group: 'Bare Fastify',
        label: `small JSON POST, ${c} (machine reference)`,
        unit: 'req/s',
        baseline: bareSingle,
        target: { text: '~70,000 req/s (issue)', met: undefined },
      },
    ];
  } finally {
    await bare.stop();
  }
}

/** One autocannon run; any non-2xx answer or connection error makes the figure meaningless. */
async function load(
  server: ChildServer,
  headers: Record<string, string>,
  body: string,
  seconds: number,
  connections: number,
): Promise<Load> {
  const cpuBefore = await cpuSeconds(server.pid);
  const result = await autocannon({
    url: `${server.url}/v1/uploads`,
    method: 'POST',
    headers,
    body,
    connections,
    duration: seconds,
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(
      `${server.name}: ${result.non2xx} non-2xx answers and ${result.errors} errors under load ` +
        `(${result.timeouts} timeouts)\n${server.output()}`,
    );
  }
  const cpu = (await cpuSeconds(server.pid)) - cpuBefore;
  return {
    requestsPerSecond: result['2xx'] / result.duration,
    p99Ms: result.latency.p99,
    cpuMsPerCall: (cpu * 1000) / result['2xx'],
  };
}
