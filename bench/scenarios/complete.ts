import { randomBytes } from 'node:crypto';
import {
  baselineUpload,
  type PendingUpload,
  wharfComplete,
  wharfCreateUploads,
  wharfPresignedPut,
} from '../lib/api.js';
import type { BenchContext } from '../lib/context.js';
import { runPool } from '../lib/http-client.js';
import { formatNumber, type Row } from '../lib/report.js';
import { percentile, summarize } from '../lib/stats.js';
import { formatBytes } from '../lib/units.js';

const CREATE_BATCH = 500;

interface Rate {
  perSecond: number;
  p99Ms: number;
}

/**
 * The presigned path for many small files: N intents are prepared (untimed), the bytes are
 * PUT to every presigned URL with the returned headers (timed: PUTs/s), then every upload
 * is completed (timed: completes/s). Every file has its own random bytes, so nothing is
 * deduplicated. The PUT's reference is the baseline server storing the same small bodies.
 */
export async function completeScenario(ctx: BenchContext): Promise<Row[]> {
  const { config } = ctx;
  const n = config.completeFiles;
  const size = config.completeFileBytes;
  const c = config.completeConcurrency;
  const puts: Rate[] = [];
  const basePuts: Rate[] = [];
  const completes: Rate[] = [];

  // Warm-up round, small and untimed, so the first timed round is not paying for JIT.
  await oneRound(ctx, 'warm', Math.min(n, 200));

  for (let round = 1; round <= config.rounds; round++) {
    const r = await oneRound(ctx, String(round), n);
    puts.push(r.put);
    basePuts.push(r.basePut);
    completes.push(r.complete);
    ctx.log(
      `  ${n} × ${formatBytes(size)}, round ${round}/${config.rounds}: PUT ${formatNumber(r.put.perSecond)}/s ` +
        `(baseline ${formatNumber(r.basePut.perSecond)}/s), complete ${formatNumber(r.complete.perSecond)}/s`,
    );
  }

  const label = `${n} × ${formatBytes(size)}, c=${c}`;
  const rate = (rates: Rate[]) => summarize(rates.map((r) => r.perSecond));
  const p99 = (rates: Rate[]) => summarize(rates.map((r) => r.p99Ms));
  return [
    {
      group: 'Presigned PUT',
      label: `${label} (baseline: raw upload)`,
      unit: 'PUTs/s',
      wharf: rate(puts),
      baseline: rate(basePuts),
    },
    {
      group: 'Presigned PUT',
      label: `${label}, p99 latency`,
      unit: 'ms',
      wharf: p99(puts),
      baseline: p99(basePuts),
      lowerIsBetter: true,
    },
    { group: 'Complete', label, unit: 'completes/s', wharf: rate(completes) },
    {
      group: 'Complete',
      label: `${label}, p99 latency`,
      unit: 'ms',
      wharf: p99(completes),
      lowerIsBetter: true,
    },
  ];
}

async function oneRound(ctx: BenchContext, tag: string, n: number) {
  const { config } = ctx;
  const size = config.completeFileBytes;
  const c = config.completeConcurrency;
  const files = Array.from({ length: n }, (_, i) => ({
    name: `small-${tag}-${i}.bin`,
    size,
    content_type: 'application/octet-stream',
  }));
  const intents: PendingUpload[] = [];
  for (let i = 0; i < n; i += CREATE_BATCH) {
    intents.push(...(await wharfCreateUploads(ctx.wharf, files.slice(i, i + CREATE_BATCH))));
  }
  const pool = randomBytes(n * size);
  const bytesOf = (i: number) => pool.subarray(i * size, (i + 1) * size);
  const indexed = intents.map((intent, i) => ({ intent, bytes: bytesOf(i) }));

  const put = await runPool(indexed, c, async ({ intent, bytes }) => {
    await wharfPresignedPut(intent, bytes);
  });
  // Fresh random bytes: the baseline stores new content too.
  const basePool = randomBytes(n * size);
  const basePut = await runPool(
    Array.from({ length: n }, (_, i) => basePool.subarray(i * size, (i + 1) * size)),
    c,
    async (bytes) => {
      await baselineUpload(ctx.baseline, bytes);
    },
  );
  const complete = await runPool(intents, c, async (intent) => {
    await wharfComplete(ctx.wharf, intent.id);
  });
  const asRate = (run: { seconds: number; latenciesMs: number[] }): Rate => ({
    perSecond: n / run.seconds,
    p99Ms: percentile(run.latenciesMs, 99),
  });
  return { put: asRate(put), basePut: asRate(basePut), complete: asRate(complete) };
}
