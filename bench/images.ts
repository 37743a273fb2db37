/**
 * `npm run bench:images`: Wharf's image transforms (GET /v1/assets/{id}/image) against the
 * same sharp pipeline in a bare node:http server (bench/image-baseline-server.ts), both as
 * compiled children on loopback, in interleaved rounds (Wharf, baseline, Wharf, baseline…).
 * "Cold" requests ask for renderings never made before: Wharf reads the original from its
 * store, renders, stores and records the result, then serves it; the baseline renders
 * straight to the socket. "Cached" requests ask again for renderings Wharf has stored; the
 * baseline, which keeps nothing, renders again. See bench/README.md ("Image transforms").
 *
 * Env: BENCH_SCALE=small, BENCH_ROUNDS, BENCH_IMAGES_CONCURRENCY, BENCH_IMAGES_SOURCES,
 * BENCH_IMAGES_PER_ROUND, BENCH_IMAGES_CACHED, BENCH_TMPDIR, BENCH_SKIP_BUILD=1,
 * BENCH_MARKDOWN=1, BENCH_JSON=<file>.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import type { ChildServer } from './lib/children.js';
import { cleanupAll, installExitHandlers } from './lib/cleanup.js';
import { MiB } from './lib/config.js';
import { agent, send } from './lib/http-client.js';
import { formatNumber, type Row, renderMarkdown, renderText } from './lib/report.js';
import { buildServers, startImageBaseline, startWharf, type WharfServer } from './lib/servers.js';
import { percentile, summarize } from './lib/stats.js';
import { createWorkDir } from './lib/workdir.js';

interface ImageBenchConfig {
  rounds: number;
  concurrency: number;
  /** Distinct originals (each a photo-like JPEG of width × height). */
  sources: number;
  width: number;
  height: number;
  /** Cold requests per round: distinct (original, width) pairs never asked for before. */
  perRound: number;
  /** Cached requests per round (cycling over renderings already stored). */
  cached: number;
  tmpRoot: string;
  skipBuild: boolean;
}

const started = performance.now();
const log = (message: string) => {
  const t = ((performance.now() - started) / 1000).toFixed(0).padStart(4);
  process.stdout.write(`[${t}s] ${message}\n`);
};

function whole(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function loadConfig(env: NodeJS.ProcessEnv = process.env): ImageBenchConfig {
  const small = env.BENCH_SCALE === 'small';
  return {
    rounds: whole(env, 'BENCH_ROUNDS', small ? 3 : 5, 1, 50),
    concurrency: whole(env, 'BENCH_IMAGES_CONCURRENCY', 2, 1, 64),
    sources: whole(env, 'BENCH_IMAGES_SOURCES', small ? 4 : 8, 1, 100),
    width: 2048,
    height: 1536,
    perRound: whole(env, 'BENCH_IMAGES_PER_ROUND', small ? 12 : 24, 1, 1000),
    cached: whole(env, 'BENCH_IMAGES_CACHED', small ? 300 : 1000, 1, 100_000),
    tmpRoot: resolve(env.BENCH_TMPDIR ?? tmpdir()),
    skipBuild: env.BENCH_SKIP_BUILD === '1',
  };
}

/** A photo-like JPEG: smoothed noise (so it compresses like a photo, not like a flat fill). */
async function photo(width: number, height: number): Promise<Buffer> {
  const small = await sharp(randomBytes((width / 8) * (height / 8) * 3), {
    raw: { width: width / 8, height: height / 8, channels: 3 },
  })
    .resize(width, height, { kernel: 'cubic' })
    .raw()
    .toBuffer();
  const grain = randomBytes(width * height * 3);
  for (let i = 0; i < small.length; i += 1) small[i] = (small[i]! * 7 + grain[i]!) >> 3;
  return sharp(small, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
}

interface Timed {
  /** Requests per second over the whole batch (first sent to last received). */
  rate: number;
  latenciesMs: number[];
  bytes: number;
}

/** GETs every URL, `concurrency` at a time; each must answer 200 with an image. */
async function run(urls: string[], headers: Record<string, string>, concurrency: number): Promise<Timed> {
  const latenciesMs: number[] = [];
  let bytes = 0;
  let next = 0;
  const begin = performance.now();
  const worker = async () => {
    while (next < urls.length) {
      const url = urls[next++]!;
      const got = await send('GET', url, { headers, timeoutMs: 120_000 });
      if (got.status !== 200 || got.body.length === 0) {
        throw new Error(`GET ${url}: HTTP ${got.status} ${got.body.toString('utf8').slice(0, 300)}`);
      }
      latenciesMs.push(got.seconds * 1000);
      bytes += got.body.length;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - begin) / 1000;
  return { rate: urls.length / seconds, latenciesMs, bytes };
}

async function main(config: ImageBenchConfig): Promise<Row[]> {
  log(
    `Wharf image benchmark, ${config.rounds} interleaved rounds, c=${config.concurrency}; ${cpus().length} cores, ` +
      `${Math.round(totalmem() / 1024 ** 3)} GiB RAM, Node ${process.versions.node}, Linux ${release()}`,
  );
  log(
    `load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(', ')} (1, 5, 15 min)`,
  );
  if (!config.skipBuild) {
    log('building Wharf (tsconfig.build.json) and the reference servers...');
    await buildServers();
  }
  const workDir = await createWorkDir(config.tmpRoot, log);
  const wharfDir = join(workDir, 'wharf');
  const baselineDir = join(workDir, 'baseline');
  await mkdir(wharfDir);
  await mkdir(baselineDir);

  const totalCold = config.rounds * config.perRound + config.perRound;
  const wharf: WharfServer = await startWharf({
    dataDir: wharfDir,
    // Every cold request is a new rendering of its original: allow as many as the run makes.
    env: { WHARF_IMAGE_MAX_VARIANTS: String(totalCold + 10) },
  });
  const baseline: ChildServer = await startImageBaseline({ dataDir: baselineDir });
  log(`Wharf pid ${wharf.pid} at ${wharf.url}; baseline pid ${baseline.pid} at ${baseline.url}`);
  try {
    log(`writing ${config.sources} photo-like ${config.width}×${config.height} JPEGs to both servers`);
    const ids: string[] = [];
    const names: string[] = [];
    for (let i = 0; i < config.sources; i += 1) {
      const bytes = await photo(config.width, config.height);
      const name = `photo-${i}.jpg`;
      const created = await send('POST', `${wharf.url}/v1/assets?name=${name}`, {
        headers: { 'x-api-key': wharf.apiKey, 'content-type': 'image/jpeg' },
        body: bytes,
      });
      if (created.status !== 201) throw new Error(`upload: HTTP ${created.status} ${created.body}`);
      ids.push((JSON.parse(created.body.toString('utf8')) as { asset: { id: string } }).asset.id);
      await writeFile(join(baselineDir, name), bytes);
      names.push(name);
      if (i === 0) log(`  each original is about ${(bytes.length / MiB).toFixed(2)} MiB`);
    }

    // Widths on Wharf's 16-pixel grid, so each request is exactly one new rendering, around
    // the size a page shows (768–1536 px): never the same (original, width) twice.
    let made = 0;
    const batch = (count: number) =>
      Array.from({ length: count }, () => {
        const n = made++;
        return { source: n % config.sources, width: 768 + 16 * Math.floor(n / config.sources) };
      });
    const wharfUrl = (r: { source: number; width: number }) =>
      `${wharf.url}/v1/assets/${ids[r.source]}/image?w=${r.width}&format=webp&q=80`;
    const baselineUrl = (r: { source: number; width: number }) =>
      `${baseline.url}/image/${names[r.source]}?w=${r.width}`;
    const key = { 'x-api-key': wharf.apiKey };

    // Warm-up: both servers load sharp and render once; checks that both give the same size.
    const warm = batch(config.perRound);
    await run(warm.map(wharfUrl), key, config.concurrency);
    await run(warm.map(baselineUrl), {}, config.concurrency);
    const [a, b] = await Promise.all([
      send('GET', wharfUrl(warm[0]!), { headers: key }),
      send('GET', baselineUrl(warm[0]!)),
    ]);
    const [ma, mb] = await Promise.all([sharp(a.body).metadata(), sharp(b.body).metadata()]);
    if (ma.width !== mb.width || ma.height !== mb.height || ma.format !== mb.format) {
      throw new Error(
        `the servers disagree: Wharf ${ma.format} ${ma.width}×${ma.height}, baseline ${mb.format} ${mb.width}×${mb.height}`,
      );
    }
    const stored = warm.map(wharfUrl);

    const coldW: number[] = [];
    const coldB: number[] = [];
    const coldLatW: number[] = [];
    const coldLatB: number[] = [];
    const cachedW: number[] = [];
    const cachedB: number[] = [];
    for (let round = 1; round <= config.rounds; round += 1) {
      const fresh = batch(config.perRound);
      const w = await run(fresh.map(wharfUrl), key, config.concurrency);
      const bl = await run(fresh.map(baselineUrl), {}, config.concurrency);
      coldW.push(w.rate);
      coldB.push(bl.rate);
      coldLatW.push(percentile(w.latenciesMs, 50));
      coldLatB.push(percentile(bl.latenciesMs, 50));
      const again = Array.from({ length: config.cached }, (_, i) => stored[i % stored.length]!);
      const cw = await run(again, key, config.concurrency);
      // The baseline stores nothing: asking again means rendering again (fewer requests, same rate).
      const cb = await run(warm.slice(0, config.perRound).map(baselineUrl), {}, config.concurrency);
      cachedW.push(cw.rate);
      cachedB.push(cb.rate);
      log(
        `  round ${round}/${config.rounds}: cold Wharf ${formatNumber(w.rate)}/s (p50 ${formatNumber(coldLatW.at(-1)!)} ms), ` +
          `baseline ${formatNumber(bl.rate)}/s (p50 ${formatNumber(coldLatB.at(-1)!)} ms); ` +
          `cached Wharf ${formatNumber(cw.rate)}/s, baseline ${formatNumber(cb.rate)}/s`,
      );
    }
    const peakW = (await wharf.memory()).peakBytes / MiB;
    const peakB = (await baseline.memory()).peakBytes / MiB;
    const what = `${config.width}×${config.height} JPEG → 768–${768 + 16 * Math.ceil(made / config.sources)} px WebP q80, c=${config.concurrency}`;
    return [
      {
        group: 'Cold transform',
        label: `${what}; Wharf stores each (baseline: raw sharp to the socket)`,
        unit: 'renderings/s',
        wharf: summarize(coldW),
        baseline: summarize(coldB),
      },
      {
        group: 'Cold transform',
        label: 'median latency',
        unit: 'ms',
        wharf: summarize(coldLatW),
        baseline: summarize(coldLatB),
        lowerIsBetter: true,
      },
      {
        group: 'Cached',
        label: `the same renderings asked again, c=${config.concurrency} (baseline renders again)`,
        unit: 'requests/s',
        wharf: summarize(cachedW),
        baseline: summarize(cachedB),
      },
      {
        group: 'Peak RSS',
        label: 'VmHWM of each server after the run',
        unit: 'MiB',
        wharf: summarize([peakW]),
        baseline: summarize([peakB]),
        lowerIsBetter: true,
      },
    ];
  } finally {
    await baseline.stop();
    await wharf.stop();
  }
}

installExitHandlers();
let exitCode = 0;
try {
  const config = loadConfig();
  const rows = await main(config);
  process.stdout.write(
    `\nResults (medians of ${config.rounds} interleaved rounds, min–max in brackets)\n\n${renderText(rows)}\n\n` +
      'Ratio: Wharf ÷ baseline; a percentage for rates (higher is better), × for latency and memory (lower is better).\n',
  );
  if (process.env.BENCH_MARKDOWN) process.stdout.write(`\n${renderMarkdown(rows)}\n`);
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
  log(
    `load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(', ')}; done in ${((performance.now() - started) / 1000).toFixed(0)} s`,
  );
}
process.exit(exitCode);
