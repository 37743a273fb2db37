/**
 * `npm run bench`: Wharf against a raw Node baseline, both as child processes on loopback.
 * See bench/README.md for what each figure means. Env: BENCH_SCALE=small|full (default
 * full), BENCH_ROUNDS, BENCH_ONLY=upload,presign,complete,download,rss, BENCH_TMPDIR,
 * BENCH_CPU_PROF=<dir>, BENCH_LOG_DIR=<dir>, BENCH_CHILD_NODE_ARGS, BENCH_MARKDOWN=1, BENCH_JSON=<file>,
 * and per-size overrides.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { deployment, provision } from '../test/helpers/deployment.js';
import type { ChildServer } from './lib/children.js';
import { cleanupAll, installExitHandlers } from './lib/cleanup.js';
import { type BenchConfig, GiB, loadBenchConfig, type Section } from './lib/config.js';
import type { BenchContext } from './lib/context.js';
import { writeRandomFile } from './lib/data.js';
import { agent } from './lib/http-client.js';
import { renderHotspots, summarizeProfile } from './lib/profile.js';
import { type Row, renderMarkdown, renderText } from './lib/report.js';
import { buildServers, startBaseline, startWharf, type WharfServer } from './lib/servers.js';
import { formatBytes } from './lib/units.js';
import { createWorkDir } from './lib/workdir.js';
import { completeScenario } from './scenarios/complete.js';
import { directUploadScenario } from './scenarios/direct-upload.js';
import { downloadScenario } from './scenarios/download.js';
import { presignScenario } from './scenarios/presign.js';
import { type RssContext, rssScenario } from './scenarios/rss.js';

const SHARED: Record<Exclude<Section, 'rss'>, (ctx: BenchContext) => Promise<Row[]>> = {
  upload: directUploadScenario,
  presign: presignScenario,
  complete: completeScenario,
  download: downloadScenario,
};

const started = performance.now();
const log = (message: string) => {
  const t = ((performance.now() - started) / 1000).toFixed(0).padStart(4);
  process.stdout.write(`[${t}s] ${message}\n`);
};

async function main(config: BenchConfig): Promise<Row[]> {
  log(
    `Wharf benchmark, scale ${config.scale}, ${config.rounds} interleaved rounds; ` +
      `${cpus().length} cores, ${formatBytes(Math.round(totalmem() / GiB) * GiB)} RAM, Node ${process.versions.node}, Linux ${release()}`,
  );
  // The disk and CPU may be shared: a busy machine at the start explains odd figures later.
  log(`load average ${loadAverage()} (1, 5, 15 min)`);
  log('building Wharf (tsconfig.build.json) and the reference servers...');
  await buildServers();

  const workDir = await createWorkDir(config.tmpRoot, log);
  const dataFileBytes = Math.max(
    config.singleUploadBytes,
    config.downloadBytes,
    config.concurrentUploads * config.concurrentUploadBytes,
  );
  const dataFile = join(workDir, 'source.bin');
  log(`writing ${formatBytes(dataFileBytes)} of random source data in ${workDir}`);
  await writeRandomFile(dataFile, dataFileBytes);

  const rows: Row[] = [];
  const base = { config, workDir, dataFile, dataFileBytes, log };
  try {
    const shared = config.sections.filter((s): s is Exclude<Section, 'rss'> => s !== 'rss');
    if (shared.length > 0) {
      const servers = await startShared(config, workDir);
      try {
        const ctx: BenchContext = { ...base, ...servers };
        for (const section of shared) {
          log(`section: ${section}`);
          rows.push(...(await SHARED[section](ctx)));
        }
      } finally {
        await servers.baseline.stop();
        await servers.wharf.stop();
        await servers.release();
      }
    }
    if (config.sections.includes('rss')) {
      log('section: rss (a fresh server per size)');
      rows.push(...(await rssScenario(base satisfies RssContext)));
    }
  } catch (err) {
    // Whatever was measured before the failure is still worth seeing.
    if (rows.length > 0) process.stdout.write(`\nPartial results before the failure:\n${renderText(rows)}\n`);
    throw err;
  }
  if (config.cpuProfileDir) await printProfiles(config.cpuProfileDir);
  return rows;
}

async function startShared(
  config: BenchConfig,
  workDir: string,
): Promise<{ wharf: WharfServer; baseline: ChildServer; release(): Promise<void> }> {
  const wharfDir = join(workDir, 'wharf');
  const baselineDir = join(workDir, 'baseline');
  await mkdir(wharfDir);
  await mkdir(baselineDir);
  const logs = config.childLogDir;
  if (logs) await mkdir(logs, { recursive: true });
  // Scaled (WHARF_TEST_DEPLOYMENT=scaled, as for the tests): a fresh database and bucket.
  const backing = await provision();
  log(`deployment: ${deployment}`);
  const wharf = await startWharf({
    dataDir: wharfDir,
    env: backing.env,
    cpuProfileDir: config.cpuProfileDir,
    nodeArgs: config.childNodeArgs,
    logFile: logs && join(logs, 'wharf.log'),
  });
  const baseline = await startBaseline({
    dataDir: baselineDir,
    nodeArgs: config.childNodeArgs,
    logFile: logs && join(logs, 'baseline.log'),
  });
  log(`Wharf pid ${wharf.pid} at ${wharf.url}; baseline pid ${baseline.pid} at ${baseline.url}`);
  return { wharf, baseline, release: () => backing.release() };
}

async function printProfiles(dir: string): Promise<void> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort();
  const latest = files.at(-1);
  if (!latest) return;
  const summary = await summarizeProfile(join(dir, latest), 15);
  process.stdout.write(
    `\nCPU profile of the Wharf server: ${join(dir, latest)} (${(summary.busyMs / 1000).toFixed(1)} s busy)\n` +
      `${renderHotspots('Self time by origin:', summary.origins)}\n${renderHotspots('Self time by function:', summary.functions)}\n`,
  );
}

function loadAverage(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(', ');
}

function printResults(config: BenchConfig, rows: Row[]): void {
  process.stdout.write(
    `\nResults (${config.scale} scale; medians of ${config.rounds} interleaved rounds, min–max in brackets)\n\n`,
  );
  process.stdout.write(`${renderText(rows)}\n\n`);
  process.stdout.write(
    'Ratio: Wharf ÷ baseline; a percentage for rates (higher is better), × for latency and memory (lower is better).\n' +
      'Baselines: raw node:http (hash + temp file + fsync + rename) for bytes; a bare Fastify route for request rates.\n',
  );
  if (process.env.BENCH_MARKDOWN) process.stdout.write(`\n${renderMarkdown(rows)}\n`);
}

installExitHandlers();
let exitCode = 0;
try {
  const config = loadBenchConfig();
  const rows = await main(config);
  printResults(config, rows);
  if (process.env.BENCH_JSON)
    await writeFile(process.env.BENCH_JSON, `${JSON.stringify({ config, rows }, null, 2)}\n`);
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
