/**
 * `npm run bench:images`: the transform the issue names, a typical 12-megapixel JPEG
 * (4000 × 3000) to a 400-pixel WebP, through Wharf's GET /v1/assets/{id}/image, in
 * interleaved rounds against two references measured in the same run:
 *
 * - **Cold** (a rendering never made before: Wharf reads the original from its store,
 *   renders, stores and records the result, then serves it) against plain sharp doing the
 *   same resize in a bare node:http server (bench/image-baseline-server.ts) that reads the
 *   original from a local file and renders straight to the socket. Target: ≥ 85 %.
 * - **Cached** (the same renderings asked again: served from storage) against Wharf's own
 *   download path, GET /v1/assets/{id}/content of originals of exactly the renderings' sizes,
 *   on the same server. Target: ≥ 100 %.
 *
 * Both servers run as compiled children on loopback. See bench/README.md ("Image transforms").
 *
 * Env: BENCH_SCALE=small, BENCH_ROUNDS, BENCH_IMAGES_CONCURRENCY, BENCH_IMAGES_CACHED_CONCURRENCY,
 * BENCH_IMAGES_PER_ROUND, BENCH_IMAGES_CACHED, BENCH_IMAGES_ENV (extra WHARF_* settings, as
 * `A=1,B=2`), BENCH_CPU_PROF=<dir>, BENCH_TMPDIR, BENCH_SKIP_BUILD=1, BENCH_MARKDOWN=1,
 * BENCH_JSON=<file>.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
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
  /** Cold requests in flight (Wharf's default WHARF_IMAGE_CONCURRENCY is 2). */
  concurrency: number;
  /** Cached and download requests in flight. */
  cachedConcurrency: number;
  /** Distinct photographs; each cold request gets its own copy of one (see `variant`). */
  photos: number;
  width: number;
  height: number;
  /** The rendering's width. */
  target: number;
  /** Cold requests per round: renderings never asked for before. */
  perRound: number;
  /** Cached (and download) requests per round. */
  cached: number;
  /** Extra WHARF_* settings for the Wharf child. */
  env: Record<string, string>;
  cpuProfileDir: string | undefined;
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

function settings(raw: string | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of (raw ?? '').split(',').filter(Boolean)) {
    const [name, value] = pair.split('=');
    if (!name?.startsWith('WHARF_') || value === undefined) {
      throw new Error(`BENCH_IMAGES_ENV takes WHARF_NAME=value pairs separated by commas, got ${pair}`);
    }
    env[name] = value;
  }
  return env;
}

function loadConfig(env: NodeJS.ProcessEnv = process.env): ImageBenchConfig {
  const small = env.BENCH_SCALE === 'small';
  return {
    rounds: whole(env, 'BENCH_ROUNDS', small ? 3 : 7, 1, 50),
    concurrency: whole(env, 'BENCH_IMAGES_CONCURRENCY', 2, 1, 64),
    cachedConcurrency: whole(env, 'BENCH_IMAGES_CACHED_CONCURRENCY', 4, 1, 64),
    photos: 3,
    width: 4000,
    height: 3000,
    target: 400,
    perRound: whole(env, 'BENCH_IMAGES_PER_ROUND', small ? 8 : 16, 1, 200),
    cached: whole(env, 'BENCH_IMAGES_CACHED', small ? 400 : 1500, 1, 100_000),
    env: settings(env.BENCH_IMAGES_ENV),
    cpuProfileDir: env.BENCH_CPU_PROF ? resolve(env.BENCH_CPU_PROF) : undefined,
    tmpRoot: resolve(env.BENCH_TMPDIR ?? tmpdir()),
    skipBuild: env.BENCH_SKIP_BUILD === '1',
  };
}

/**
 * A photo-like JPEG: smoothed noise plus grain, so it compresses like a photograph (a few
 * MiB at 12 MP, quality 88), not like a flat fill; 4:2:0 chroma as cameras write.
 */
async function photo(width: number, height: number): Promise<Buffer> {
  const smooth = await sharp(randomBytes((width / 8) * (height / 8) * 3), {
    raw: { width: width / 8, height: height / 8, channels: 3 },
  })
    .resize(width, height, { kernel: 'cubic' })
    .raw()
    .toBuffer();
  const grain = randomBytes(width * height * 3);
  for (let i = 0; i < smooth.length; i += 1) smooth[i] = (smooth[i]! * 7 + grain[i]!) >> 3;
  return sharp(smooth, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 88, chromaSubsampling: '4:2:0' })
    .toBuffer();
}

/**
 * A distinct file with the same pixels: a JPEG comment segment (COM) right after the start of
 * image. Every cold request then renders an original of its own (Wharf deduplicates identical
 * uploads, and would rightly serve a second request for the same rendering from storage),
 * while the decoding and encoding work stays exactly the same.
 */
function variant(jpeg: Buffer, n: number): Buffer {
  const text = Buffer.from(`wharf-bench ${n} ${randomBytes(8).toString('hex')}`);
  const segment = Buffer.alloc(4 + text.length);
  segment.writeUInt16BE(0xfffe, 0);
  segment.writeUInt16BE(text.length + 2, 2);
  text.copy(segment, 4);
  return Buffer.concat([jpeg.subarray(0, 2), segment, jpeg.subarray(2)]);
}

/**
 * CPU seconds a process has used so far (user + system, all its threads: libvips' included),
 * from /proc. Per rendering, this is what a busy machine's other work cannot inflate much,
 * unlike rates and latencies.
 */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start at the state, field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
/** USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK). */
const CLOCK_TICKS = 100;

interface Timed {
  /** Requests per second over the whole batch (first sent to last received). */
  rate: number;
  latenciesMs: number[];
  bytes: number;
}

/** GETs every URL, `concurrency` at a time; each must answer 200 with a body. */
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

async function upload(wharf: WharfServer, name: string, type: string, bytes: Buffer): Promise<string> {
  const created = await send('POST', `${wharf.url}/v1/assets?name=${name}`, {
    headers: { 'x-api-key': wharf.apiKey, 'content-type': type },
    body: bytes,
  });
  if (created.status !== 201) throw new Error(`upload: HTTP ${created.status} ${created.body}`);
  return (JSON.parse(created.body.toString('utf8')) as { asset: { id: string } }).asset.id;
}

/** Waits until Wharf's processing job has run on every asset, so none runs during a round. */
async function processed(wharf: WharfServer, ids: string[]): Promise<void> {
  for (const id of ids) {
    for (let attempt = 0; ; attempt += 1) {
      const got = await send('GET', `${wharf.url}/v1/assets/${id}`, {
        headers: { 'x-api-key': wharf.apiKey },
      });
      const asset = JSON.parse(got.body.toString('utf8')) as { processing?: string };
      if (asset.processing === 'done') break;
      if (attempt > 600) throw new Error(`asset ${id} still ${asset.processing} after a minute`);
      await sleep(100);
    }
  }
}

async function main(config: ImageBenchConfig): Promise<Row[]> {
  log(
    `Wharf image benchmark, ${config.rounds} interleaved rounds; ${cpus().length} cores, ` +
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

  const coldTotal = (config.rounds + 1) * config.perRound;
  const wharf: WharfServer = await startWharf({
    dataDir: wharfDir,
    cpuProfileDir: config.cpuProfileDir,
    env: config.env,
  });
  const baseline: ChildServer = await startImageBaseline({ dataDir: baselineDir });
  log(`Wharf pid ${wharf.pid} at ${wharf.url}; baseline pid ${baseline.pid} at ${baseline.url}`);
  if (Object.keys(config.env).length > 0) log(`Wharf settings: ${JSON.stringify(config.env)}`);
  let originalBytes = 0;
  try {
    log(`making ${config.photos} photo-like ${config.width}×${config.height} JPEGs`);
    const photos: Buffer[] = [];
    for (let i = 0; i < config.photos; i += 1) photos.push(await photo(config.width, config.height));
    originalBytes = photos[0]!.length;
    log(
      `  ${photos.map((p) => `${(p.length / MiB).toFixed(2)} MiB`).join(', ')}; ` +
        `writing ${coldTotal} distinct copies to both servers`,
    );
    const ids: string[] = [];
    const names: string[] = [];
    for (let n = 0; n < coldTotal; n += 1) {
      const bytes = variant(photos[n % photos.length]!, n);
      const name = `photo-${n}.jpg`;
      ids.push(await upload(wharf, name, 'image/jpeg', bytes));
      await writeFile(join(baselineDir, name), bytes);
      names.push(name);
    }
    await processed(wharf, ids);

    let made = 0;
    const batch = (count: number) => Array.from({ length: count }, () => made++);
    const query = `w=${config.target}&format=webp&q=80`;
    const wharfUrl = (n: number) => `${wharf.url}/v1/assets/${ids[n]}/image?${query}`;
    const baselineUrl = (n: number) => `${baseline.url}/image/${names[n]}?w=${config.target}`;
    const key = { 'x-api-key': wharf.apiKey };

    // Warm-up: both load sharp and render; checks that both give the same picture.
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
    log(
      `  renderings are ${ma.format} ${ma.width}×${ma.height}, about ${formatNumber(a.body.length / 1024)} KiB`,
    );

    // The cached path's reference: originals of exactly the stored renderings' sizes, served
    // by the same server through GET /content (random bytes, so nothing deduplicates them).
    const stored = warm.map(wharfUrl);
    const sizes: number[] = [];
    for (const url of stored) sizes.push((await send('GET', url, { headers: key })).body.length);
    const plainIds: string[] = [];
    for (const [i, size] of sizes.entries()) {
      plainIds.push(await upload(wharf, `plain-${i}.bin`, 'application/octet-stream', randomBytes(size)));
    }
    await processed(wharf, plainIds);
    const plain = plainIds.map((id) => `${wharf.url}/v1/assets/${id}/content`);
    await run(plain, key, config.cachedConcurrency);

    const coldW: number[] = [];
    const coldB: number[] = [];
    const coldLatW: number[] = [];
    const coldLatB: number[] = [];
    const cachedW: number[] = [];
    const downloadW: number[] = [];
    const cpuW: number[] = [];
    const cpuB: number[] = [];
    const cpuCached: number[] = [];
    const cpuDownload: number[] = [];
    const cycle = (urls: string[]) => Array.from({ length: config.cached }, (_, i) => urls[i % urls.length]!);
    for (let round = 1; round <= config.rounds; round += 1) {
      // Who goes first alternates, so a drift in the machine's load favours neither.
      const first = round % 2 === 1;
      const fresh = batch(config.perRound);
      const measured = async (pid: number, cpu: number[], work: () => Promise<Timed>) => {
        const before = await cpuSeconds(pid);
        const timed = await work();
        cpu.push((((await cpuSeconds(pid)) - before) * 1000) / config.perRound);
        return timed;
      };
      const coldWharf = () =>
        measured(wharf.pid, cpuW, () => run(fresh.map(wharfUrl), key, config.concurrency));
      const coldPlain = () =>
        measured(baseline.pid, cpuB, () => run(fresh.map(baselineUrl), {}, config.concurrency));
      const w = first ? await coldWharf() : undefined;
      const bl = await coldPlain();
      const wc = w ?? (await coldWharf());
      const perRequest = async (cpu: number[], work: () => Promise<Timed>) => {
        const before = await cpuSeconds(wharf.pid);
        const timed = await work();
        cpu.push((((await cpuSeconds(wharf.pid)) - before) * 1e6) / config.cached);
        return timed;
      };
      const cachedRun = () => perRequest(cpuCached, () => run(cycle(stored), key, config.cachedConcurrency));
      const downloadRun = () =>
        perRequest(cpuDownload, () => run(cycle(plain), key, config.cachedConcurrency));
      const c1 = first ? await cachedRun() : undefined;
      const d = await downloadRun();
      const c = c1 ?? (await cachedRun());
      coldW.push(wc.rate);
      coldB.push(bl.rate);
      coldLatW.push(percentile(wc.latenciesMs, 50));
      coldLatB.push(percentile(bl.latenciesMs, 50));
      cachedW.push(c.rate);
      downloadW.push(d.rate);
      log(
        `  round ${round}/${config.rounds}: cold Wharf ${formatNumber(wc.rate)}/s (p50 ${formatNumber(coldLatW.at(-1)!)} ms), ` +
          `plain sharp ${formatNumber(bl.rate)}/s (p50 ${formatNumber(coldLatB.at(-1)!)} ms); ` +
          `CPU ${formatNumber(cpuW.at(-1)!)} vs ${formatNumber(cpuB.at(-1)!)} ms each; ` +
          `cached ${formatNumber(c.rate)}/s, download ${formatNumber(d.rate)}/s ` +
          `(CPU ${formatNumber(cpuCached.at(-1)!)} vs ${formatNumber(cpuDownload.at(-1)!)} µs each)`,
      );
    }
    const peakW = (await wharf.memory()).peakBytes / MiB;
    const peakB = (await baseline.memory()).peakBytes / MiB;
    const cold = summarize(coldW);
    const coldPlain = summarize(coldB);
    const cached = summarize(cachedW);
    const download = summarize(downloadW);
    const size = `${(originalBytes / MiB).toFixed(1)} MiB`;
    return [
      {
        group: 'Cold transform',
        label: `${config.width}×${config.height} JPEG (${size}) → ${config.target} px WebP q80, c=${config.concurrency}; Wharf stores each (baseline: plain sharp to the socket)`,
        unit: 'renderings/s',
        wharf: cold,
        baseline: coldPlain,
        target: { text: '≥ 85% of plain sharp', met: cold.median >= 0.85 * coldPlain.median },
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
        group: 'Cold transform',
        label: 'CPU time per rendering (user + system, every thread of the server process)',
        unit: 'ms',
        wharf: summarize(cpuW),
        baseline: summarize(cpuB),
        lowerIsBetter: true,
      },
      {
        group: 'Cached',
        label: `the same renderings asked again, c=${config.cachedConcurrency} (baseline: GET /content of originals of the same sizes, same server)`,
        unit: 'requests/s',
        wharf: cached,
        baseline: download,
        target: { text: '≥ the download path', met: cached.median >= download.median },
      },
      {
        group: 'Cached',
        label: 'Wharf’s CPU time per request (baseline: per download)',
        unit: 'µs',
        wharf: summarize(cpuCached),
        baseline: summarize(cpuDownload),
        lowerIsBetter: true,
      },
      {
        group: 'Peak RSS',
        label: 'VmHWM of each server after the run (baseline: the plain sharp server)',
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
  if (config.cpuProfileDir)
    process.stdout.write(
      `\nCPU profile of the Wharf child in ${config.cpuProfileDir}: npx tsx bench/profile-summary.ts <file>\n`,
    );
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
