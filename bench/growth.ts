/**
 * `npm run bench:growth`: does throughput hold as the asset table grows? Two Wharf servers on
 * the embedded default, one holding 10,000 assets and one 100,000 (seeded as Wharf records
 * them: asset, upload, events and jobs rows; see bench/lib/seed.ts), measured in alternating
 * rounds: presign (POST /v1/uploads, one file per call) and list (GET /v1/assets, the first
 * page of 100) under autocannon, 50 connections. The smaller table is the baseline; the
 * target is the larger within 10 %. Also prints SQLite's query plans for the hot queries.
 *
 * Env: BENCH_GROWTH_SIZES (default 10000,100000), BENCH_ROUNDS (5), BENCH_GROWTH_SECONDS (5),
 * BENCH_TMPDIR, BENCH_SKIP_BUILD=1, BENCH_MARKDOWN=1, BENCH_JSON=<file>.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { wharfUpload } from './lib/api.js';
import { cleanupAll, installExitHandlers } from './lib/cleanup.js';
import { agent, expectJson, send } from './lib/http-client.js';
import { formatNumber, type Row, renderMarkdown, renderText } from './lib/report.js';
import { loadAverage, positiveSetting, runLog } from './lib/run-log.js';
import { queryPlan, seedAssets } from './lib/seed.js';
import { buildServers, startWharf, type WharfServer } from './lib/servers.js';
import { summarize } from './lib/stats.js';
import { createWorkDir } from './lib/workdir.js';

const TARGET = 0.9;
const CONNECTIONS = 50;

const { log, seconds: elapsed } = runLog();

interface Server {
  size: number;
  wharf: WharfServer;
  dir: string;
}

/** A fresh Wharf whose database holds `size` assets. */
async function seededServer(root: string, size: number): Promise<Server> {
  const dir = join(root, `wharf-${size}`);
  await mkdir(dir);
  let wharf = await startWharf({ dataDir: dir, name: `wharf (${size} assets)` });
  // One real upload, processed, is the template every seeded asset is cloned from.
  const asset = await wharfUpload(wharf, 'template.bin', randomBytes(1024));
  for (let i = 0; i < 200; i++) {
    const sent = await send('GET', `${wharf.url}/v1/assets/${asset.id}`, {
      headers: { 'x-api-key': wharf.apiKey },
    });
    if (expectJson<{ processing: string }>(sent, 'asset', 200).processing !== 'pending') break;
    await sleep(100);
  }
  await wharf.stop();
  const seedStart = performance.now();
  seedAssets(join(dir, 'wharf.db'), asset.id, size - 1);
  log(`  seeded ${formatNumber(size)} assets in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`);
  wharf = await startWharf({ dataDir: dir, name: `wharf (${size} assets)` });
  return { size, wharf, dir };
}

async function rate(wharf: WharfServer, request: 'presign' | 'list', seconds: number): Promise<number> {
  const result = await autocannon({
    url: `${wharf.url}${request === 'presign' ? '/v1/uploads' : '/v1/assets'}`,
    method: request === 'presign' ? 'POST' : 'GET',
    headers: { 'content-type': 'application/json', 'x-api-key': wharf.apiKey },
    body:
      request === 'presign'
        ? JSON.stringify({ name: 'x.bin', size: 1024, content_type: 'application/octet-stream' })
        : undefined,
    connections: CONNECTIONS,
    duration: seconds,
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${wharf.name}: ${result.non2xx} non-2xx and ${result.errors} errors under load`);
  }
  return result['2xx'] / result.duration;
}

async function main(): Promise<Row[]> {
  const sizes = (process.env.BENCH_GROWTH_SIZES ?? '10000,100000').split(',').map(Number);
  if (sizes.length !== 2 || sizes.some((s) => !Number.isInteger(s) || s < 2)) {
    throw new Error('BENCH_GROWTH_SIZES must name two sizes, e.g. 10000,100000');
  }
  const rounds = positiveSetting('BENCH_ROUNDS', 5);
  const seconds = positiveSetting('BENCH_GROWTH_SECONDS', 5);
  log(`Wharf growth benchmark: ${sizes.join(' vs ')} assets, ${rounds} interleaved rounds of ${seconds} s`);
  log(`load average ${loadAverage()}`);
  if (process.env.BENCH_SKIP_BUILD !== '1') {
    log('building Wharf and the reference servers...');
    await buildServers();
  }
  const root = await createWorkDir(resolve(process.env.BENCH_TMPDIR ?? tmpdir()), log);
  const [small, large] = [await seededServer(root, sizes[0]!), await seededServer(root, sizes[1]!)];
  try {
    log(`query plans at ${formatNumber(large.size)} assets (SQLite EXPLAIN QUERY PLAN):`);
    const db = join(large.dir, 'wharf.db');
    for (const [what, sql] of [
      ['list, first page', 'select * from assets where account_id = ? order by id desc limit 101'],
      [
        'list, next page',
        "select * from assets where account_id = ? and id < 'z' order by id desc limit 101",
      ],
      [
        'stale uploads (sweep)',
        "select * from uploads where status = 'pending' and expires_at < 1 order by expires_at limit 200",
      ],
    ] as const) {
      const params = sql.includes('account_id = ?') ? ['default'] : [];
      log(`  ${what}: ${queryPlan(db, sql, ...params).join(' / ')}`);
    }
    for (const request of ['presign', 'list'] as const) await rate(small.wharf, request, 2);
    for (const request of ['presign', 'list'] as const) await rate(large.wharf, request, 2);
    const figures = { presign: [[], []], list: [[], []] } as Record<'presign' | 'list', [number[], number[]]>;
    for (let round = 1; round <= rounds; round++) {
      for (const request of ['presign', 'list'] as const) {
        for (const [i, server] of [small, large].entries()) {
          figures[request][i]!.push(await rate(server.wharf, request, seconds));
        }
        log(
          `  ${request}, round ${round}/${rounds}: ${formatNumber(small.size)} assets ` +
            `${formatNumber(figures[request][0].at(-1)!)}/s, ${formatNumber(large.size)} assets ` +
            `${formatNumber(figures[request][1].at(-1)!)}/s`,
        );
      }
    }
    return (['presign', 'list'] as const).map((request) => {
      const base = summarize(figures[request][0]);
      const grown = summarize(figures[request][1]);
      return {
        group: 'Growth',
        label:
          `${request === 'presign' ? 'presign, 1 file/call' : 'list, first page of 100'}, c=${CONNECTIONS}: ` +
          `${formatNumber(large.size)} assets (baseline: ${formatNumber(small.size)})`,
        unit: 'req/s',
        wharf: grown,
        baseline: base,
        target: { text: `≥ ${TARGET * 100}% of baseline`, met: grown.median >= TARGET * base.median },
      };
    });
  } finally {
    await small.wharf.stop();
    await large.wharf.stop();
  }
}

installExitHandlers();
let exitCode = 0;
try {
  const rows = await main();
  process.stdout.write(
    `\nResults (medians of interleaved rounds, min–max in brackets)\n\n${renderText(rows)}\n`,
  );
  if (process.env.BENCH_MARKDOWN) process.stdout.write(`\n${renderMarkdown(rows)}\n`);
  if (process.env.BENCH_JSON) await writeFile(process.env.BENCH_JSON, `${JSON.stringify(rows, null, 2)}\n`);
} catch (err) {
  process.stderr.write(
    `\nbenchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  exitCode = 1;
} finally {
  agent.destroy();
  await cleanupAll();
  log(`load average ${loadAverage()}; done in ${elapsed().toFixed(0)} s`);
}
process.exit(exitCode);
