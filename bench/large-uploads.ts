/**
 * `npm run bench:large`: one large file through each of Wharf's upload flows on the embedded
 * default (SQLite + local directory) — direct, S3-style multipart, tus — next to a raw
 * node:http baseline, with throughput and the server's peak RSS at two or more sizes.
 * See bench/README.md ("Large uploads"). Env: BENCH_LARGE_SIZES (e.g. 256M,4G),
 * BENCH_LARGE_ROUNDS, BENCH_LARGE_FLOWS, BENCH_LARGE_PART_MIB, BENCH_LARGE_CONCURRENCY,
 * BENCH_LARGE_SIGN_BATCH, BENCH_LARGE_TUS_CHUNK_MIB, BENCH_LARGE_QUICK=1, BENCH_TMPDIR,
 * BENCH_SKIP_BUILD=1, BENCH_MARKDOWN=1, BENCH_JSON=<file>.
 */
import { createCipheriv, createHash, type Hash, randomBytes } from 'node:crypto';
import { open, rm, statfs, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { cleanupAll, installExitHandlers } from './lib/cleanup.js';
import { GiB, MiB } from './lib/config.js';
import { agent } from './lib/http-client.js';
import { formatNumber } from './lib/report.js';
import { buildServers } from './lib/servers.js';
import { type Summary, summarize } from './lib/stats.js';
import { formatBytes } from './lib/units.js';
import { createWorkDir } from './lib/workdir.js';
import {
  FLOWS,
  type Flow,
  type FlowResult,
  type FlowSettings,
  REFERENCE,
  runFlow,
  type Source,
  scaled,
} from './scenarios/large-flows.js';

interface LargeConfig extends FlowSettings {
  sizes: number[];
  rounds: number;
  flows: Flow[];
  tmpRoot: string;
  quick: boolean;
}

// "Does not grow with size": the larger upload may peak a little higher (GC timing,
// buffers), but not by more than this. The same tolerance as the main benchmark's RSS row.
const RSS_TOLERANCE_BYTES = 32 * MiB;
// bench/lib/servers.ts starts Wharf with WHARF_MAX_FILE_SIZE=8 GiB.
const MAX_SIZE = 8 * GiB;

const started = performance.now();
const log = (message: string) => {
  const t = ((performance.now() - started) / 1000).toFixed(0).padStart(5);
  process.stdout.write(`[${t}s] ${message}\n`);
};

function loadConfig(env: NodeJS.ProcessEnv = process.env): LargeConfig {
  const quick = env.BENCH_LARGE_QUICK === '1';
  const sizes = (env.BENCH_LARGE_SIZES ?? (quick ? '16M,64M' : '256M,4G')).split(',').map(parseSize);
  if (sizes.length === 0) throw new Error('BENCH_LARGE_SIZES names no size');
  // Scaled: the raw store is the reference, and a bare tus file store has no scaled twin.
  const defaultFlows = scaled ? 'direct,multipart,tus' : 'direct,multipart,tus,tus-bare,tus-bare-verified';
  const flows = (env.BENCH_LARGE_FLOWS ?? defaultFlows)
    .split(',')
    .map((f) => f.trim())
    .filter((f) => f !== '');
  for (const f of flows) {
    if (!(FLOWS as readonly string[]).includes(f)) {
      throw new Error(`BENCH_LARGE_FLOWS: unknown flow ${JSON.stringify(f)} (known: ${FLOWS.join(', ')})`);
    }
  }
  return {
    quick,
    sizes: [...new Set(sizes)].sort((a, b) => a - b),
    rounds: whole(env, 'BENCH_LARGE_ROUNDS', quick ? 1 : 3, 1, 20),
    // The reference is always measured: every Wharf figure is quoted against it.
    flows: [REFERENCE, ...(flows as Flow[]).filter((f) => f !== REFERENCE)],
    tmpRoot: resolve(env.BENCH_TMPDIR ?? tmpdir()),
    partBytes: whole(env, 'BENCH_LARGE_PART_MIB', quick ? 8 : 64, 5, 5 * 1024) * MiB,
    partConcurrency: whole(env, 'BENCH_LARGE_CONCURRENCY', 4, 1, 64),
    signBatch: whole(env, 'BENCH_LARGE_SIGN_BATCH', 16, 1, 1000),
    tusChunkBytes: whole(env, 'BENCH_LARGE_TUS_CHUNK_MIB', quick ? 8 : 256, 1, 64 * 1024) * MiB,
  };
}

/** "256M", "4G", "4GiB", "512MiB": binary units; a bare number is bytes. */
function parseSize(raw: string): number {
  const match = /^\s*(\d+)\s*([KMG]?)(?:i?B)?\s*$/i.exec(raw);
  if (!match) throw new Error(`BENCH_LARGE_SIZES: cannot read ${JSON.stringify(raw)} (e.g. 256M,4G)`);
  const unit = { '': 1, K: 1024, M: MiB, G: GiB }[match[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  const bytes = Number(match[1]) * unit;
  if (bytes < MiB || bytes > MAX_SIZE) {
    throw new Error(`BENCH_LARGE_SIZES: ${raw} is outside 1 MiB – ${formatBytes(MAX_SIZE)}`);
  }
  return bytes;
}

function whole(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be a whole number between ${min} and ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/**
 * Writes `largest` bytes of incompressible pseudo-random data (AES-CTR keystream, 4 MiB at
 * a time, never the whole file in memory) and returns the SHA-256 of the first `size`
 * bytes for every size, from one pass.
 */
async function writeSource(path: string, sizes: number[]): Promise<Map<number, string>> {
  const largest = sizes.at(-1)!;
  const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
  const zeros = Buffer.alloc(4 * MiB);
  const hash: Hash = createHash('sha256');
  const digests = new Map<number, string>();
  const handle = await open(path, 'wx', 0o600);
  try {
    for (let written = 0; written < largest; ) {
      // Chunks end at every size boundary, so each prefix's digest is a copy taken there.
      const boundary = sizes.find((s) => s > written)!;
      const n = Math.min(zeros.length, boundary - written);
      const chunk = cipher.update(n === zeros.length ? zeros : zeros.subarray(0, n));
      hash.update(chunk);
      await handle.write(chunk);
      written += n;
      if (written === boundary) digests.set(boundary, hash.copy().digest('hex'));
    }
    // Written back before the first timed upload, which would otherwise share the disk with it.
    await handle.sync();
  } finally {
    await handle.close();
  }
  return digests;
}

/** Peak disk use of one case: the source, the stored object and, for multipart, its parts. */
async function checkDiskSpace(dir: string, config: LargeConfig): Promise<void> {
  const largest = config.sizes.at(-1)!;
  const needed = largest * (config.flows.includes('multipart') ? 3 : 2) + GiB;
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  if (free < needed) {
    throw new Error(
      `${dir} has ${formatNumber(free / GiB)} GiB free; a ${formatBytes(largest)} run needs about ` +
        `${formatNumber(needed / GiB)} GiB (set BENCH_TMPDIR or smaller BENCH_LARGE_SIZES)`,
    );
  }
}

type Results = Map<Flow, Map<number, FlowResult[]>>;

async function main(config: LargeConfig): Promise<{ results: Results; failures: Map<Flow, string> }> {
  log(
    `Wharf large-upload benchmark: sizes ${config.sizes.map(formatBytes).join(', ')}, ` +
      `${config.rounds} interleaved round(s), flows ${config.flows.join(', ')}; ` +
      `${cpus().length} cores, ${formatBytes(Math.round(totalmem() / GiB) * GiB)} RAM, Node ${process.versions.node}, Linux ${release()}`,
  );
  log(
    `multipart: ${formatBytes(config.partBytes)} parts, ${config.partConcurrency} at a time, signed ${config.signBatch} per call; ` +
      `tus: ${formatBytes(config.tusChunkBytes)} per PATCH`,
  );
  log(`load average ${loadAverage()} (1, 5, 15 min)`);
  if (process.env.BENCH_SKIP_BUILD === '1') log('BENCH_SKIP_BUILD=1: running dist/ as it is');
  else {
    log('building Wharf (tsconfig.build.json) and the reference servers...');
    await buildServers();
  }

  const workDir = await createWorkDir(config.tmpRoot, log);
  await checkDiskSpace(workDir, config);
  const sourcePath = join(workDir, 'source.bin');
  log(`writing ${formatBytes(config.sizes.at(-1)!)} of random source data in ${workDir}`);
  const digests = await writeSource(sourcePath, config.sizes);

  const results: Results = new Map(config.flows.map((f) => [f, new Map()]));
  const failures = new Map<Flow, string>();
  let caseNumber = 0;
  for (const size of config.sizes) {
    const source: Source = { path: sourcePath, size, sha256: digests.get(size)! };
    for (let round = 1; round <= config.rounds; round++) {
      // Interleaved: the baseline, then each Wharf flow, then again, so a disk that slows
      // down mid-run hits every flow alike.
      for (const flow of config.flows) {
        if (failures.has(flow)) continue;
        const dir = join(workDir, `case-${++caseNumber}-${flow}`);
        try {
          const result = await runFlow(flow, source, dir, config);
          const perSize = results.get(flow)!;
          perSize.set(size, [...(perSize.get(size) ?? []), result]);
          log(
            `  ${formatBytes(size)}, round ${round}/${config.rounds}, ${flow.padEnd(9)}: ` +
              `${formatNumber(size / MiB / result.seconds)} MiB/s (${formatNumber(result.seconds)} s), ` +
              `peak RSS ${formatNumber(result.peakBytes / MiB)} MiB (idle ${formatNumber(result.idleBytes / MiB)})` +
              (result.detail ? `; ${result.detail}` : ''),
          );
        } catch (err) {
          // One flow that is missing or broken must not hide the others' figures.
          const reason = err instanceof Error ? err.message : String(err);
          failures.set(flow, reason.split('\n')[0]!.slice(0, 300));
          log(`  ${formatBytes(size)}, round ${round}, ${flow}: FAILED, skipped from here on: ${reason}`);
        }
      }
    }
  }
  await rm(sourcePath, { force: true });
  return { results, failures };
}

// ---- The table: one line per flow, the sizes side by side ----

interface Table {
  header: string[];
  rows: string[][];
}

function buildTable(config: LargeConfig, results: Results, failures: Map<Flow, string>): Table {
  const sizes = config.sizes;
  const throughput = (flow: Flow, size: number): Summary | undefined => {
    const runs = results.get(flow)?.get(size);
    return runs && runs.length > 0 ? summarize(runs.map((r) => size / MiB / r.seconds)) : undefined;
  };
  const peak = (flow: Flow, size: number): Summary | undefined => {
    const runs = results.get(flow)?.get(size);
    return runs && runs.length > 0 ? summarize(runs.map((r) => r.peakBytes / MiB)) : undefined;
  };
  const header = [
    'Flow',
    ...sizes.flatMap((s) => [`${formatBytes(s)} MiB/s`, 'vs baseline']),
    ...sizes.map((s) => `${formatBytes(s)} peak RSS MiB`),
    `RSS growth ${formatBytes(sizes[0]!)} → ${formatBytes(sizes.at(-1)!)}`,
  ];
  const rows = config.flows.map((flow) => {
    const cells = [LABELS[flow]];
    for (const size of sizes) {
      const t = throughput(flow, size);
      const b = throughput(REFERENCE, size);
      cells.push(cell(t));
      cells.push(flow === REFERENCE || !t || !b ? '' : `${((t.median / b.median) * 100).toFixed(0)}%`);
    }
    // The raw S3 upload runs in the bench process: there is no server of ours to measure.
    for (const size of sizes) cells.push(flow === 's3-raw' ? '—' : cell(peak(flow, size)));
    const small = peak(flow, sizes[0]!);
    const large = peak(flow, sizes.at(-1)!);
    if (failures.has(flow)) cells.push('FAILED (below)');
    else if (flow === 's3-raw') cells.push('');
    else if (sizes.length < 2 || !small || !large) cells.push('');
    else {
      const growth = large.median - small.median;
      const flat = growth * MiB <= RSS_TOLERANCE_BYTES;
      cells.push(`${growth >= 0 ? '+' : ''}${formatNumber(growth)} ${flat ? '(flat)' : '(GROWS)'}`);
    }
    return cells;
  });
  return { header, rows };
}

/** Wharf's tus flow against each bare @tus/server that ran, per size (issue 14's "tus ≥ bare"). */
function tusVersusBare(config: LargeConfig, results: Results): string {
  const median = (flow: Flow, size: number) => {
    const runs = results.get(flow)?.get(size);
    return runs && runs.length > 0 ? summarize(runs.map((r) => size / MiB / r.seconds)).median : undefined;
  };
  const lines: string[] = [];
  for (const bare of ['tus-bare', 'tus-bare-verified'] as const) {
    const ratios = config.sizes.flatMap((size) => {
      const wharf = median('tus', size);
      const reference = median(bare, size);
      return wharf && reference ? [`${formatBytes(size)} ${((wharf / reference) * 100).toFixed(0)}%`] : [];
    });
    if (ratios.length > 0) lines.push(`Wharf tus vs ${LABELS[bare]}: ${ratios.join(', ')}`);
  }
  return lines.length > 0 ? `\n${lines.join('\n')}\n` : '';
}

const LABELS: Record<Flow, string> = {
  baseline: 'baseline: raw node:http',
  's3-raw': 'baseline: AWS SDK straight to the bucket',
  direct: 'Wharf direct (POST /v1/assets)',
  multipart: 'Wharf multipart (/v1/multipart)',
  tus: 'Wharf tus (/v1/tus/)',
  'tus-bare': 'bare @tus/server + file store',
  'tus-bare-verified': 'bare @tus/server + file store, hashing + fsync',
};

function cell(summary: Summary | undefined): string {
  if (!summary) return '—';
  if (summary.values.length === 1) return formatNumber(summary.median);
  return `${formatNumber(summary.median)} (${formatNumber(summary.min)}–${formatNumber(summary.max)})`;
}

function renderText({ header, rows }: Table): string {
  const table = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...table.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === 0 || i === r.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function renderMarkdown({ header, rows }: Table): string {
  const row = (r: string[]) => `| ${r.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`;
  return [row(header), `|${header.map(() => '---').join('|')}|`, ...rows.map(row)].join('\n');
}

function loadAverage(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(', ');
}

installExitHandlers();
let exitCode = 0;
try {
  const config = loadConfig();
  const { results, failures } = await main(config);
  const table = buildTable(config, results, failures);
  process.stdout.write(
    `\nLarge uploads on the ${scaled ? 'scaled deployment (PostgreSQL + S3)' : 'embedded default (SQLite + local directory)'}; medians of ${config.rounds} ` +
      'interleaved round(s), min–max in brackets.\n' +
      'MiB/s: first request to the answer that names the stored asset. Peak RSS: VmHWM of a fresh server ' +
      'process per upload.\n\n' +
      `${renderText(table)}\n`,
  );
  process.stdout.write(tusVersusBare(config, results));
  for (const [flow, reason] of failures) process.stdout.write(`\n${LABELS[flow]} FAILED: ${reason}\n`);
  if (process.env.BENCH_MARKDOWN) process.stdout.write(`\n${renderMarkdown(table)}\n`);
  if (process.env.BENCH_JSON) {
    const raw = Object.fromEntries(
      [...results].map(([flow, perSize]) => [flow, Object.fromEntries(perSize)]),
    );
    await writeFile(
      process.env.BENCH_JSON,
      `${JSON.stringify({ config, results: raw, failures: Object.fromEntries(failures) }, null, 2)}\n`,
    );
  }
  if (failures.size > 0) exitCode = 1;
} catch (err) {
  process.stderr.write(
    `\nbenchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  exitCode = 1;
} finally {
  agent.destroy();
  await cleanupAll();
  log(`load average ${loadAverage()}; done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
}
process.exit(exitCode);
