import { baselineDelete, baselineUpload, type Stored, wharfDeleteAsset, wharfUpload } from '../lib/api.js';
import { MiB } from '../lib/config.js';
import type { BenchContext } from '../lib/context.js';
import { fileBody } from '../lib/data.js';
import type { FileBody } from '../lib/http-client.js';
import { formatNumber, type Row } from '../lib/report.js';
import { summarize } from '../lib/stats.js';
import { formatBytes } from '../lib/units.js';

const TARGET_RATIO = 0.85;

/**
 * Direct upload throughput: bytes through the server, hashed, written and fsynced, as
 * MiB/s of the whole request (first byte sent to response received). Wharf and the raw
 * baseline alternate, round by round, so a disk that slows down mid-run hits both.
 */
export async function directUploadScenario(ctx: BenchContext): Promise<Row[]> {
  const { config } = ctx;
  await checkSameDigests(ctx);

  const single = await interleave(
    ctx,
    `1 × ${formatBytes(config.singleUploadBytes)}`,
    1,
    config.singleUploadBytes,
  );
  const concurrent = await interleave(
    ctx,
    `${config.concurrentUploads} × ${formatBytes(config.concurrentUploadBytes)} concurrent`,
    config.concurrentUploads,
    config.concurrentUploadBytes,
  );
  return [single, concurrent];
}

/** Warm-up that also proves both servers see, and hash, the very same bytes. */
async function checkSameDigests(ctx: BenchContext): Promise<void> {
  const body = fileBody(ctx, 0, Math.min(16 * MiB, ctx.dataFileBytes));
  const w = await wharfUpload(ctx.wharf, 'warmup.bin', body);
  const b = await baselineUpload(ctx.baseline, body);
  if (w.sha256 !== b.sha256 || w.md5 !== b.md5) {
    throw new Error(
      `Wharf and the baseline disagree on the digests of the same bytes: ${w.sha256} vs ${b.sha256}`,
    );
  }
  await wharfDeleteAsset(ctx.wharf, w.id);
  await baselineDelete(ctx.baseline, b.id);
}

async function interleave(ctx: BenchContext, label: string, count: number, bytes: number): Promise<Row> {
  const wharf: number[] = [];
  const baseline: number[] = [];
  for (let round = 1; round <= ctx.config.rounds; round++) {
    const w = await timedBatch(ctx, count, bytes, (body, i) =>
      wharfUpload(ctx.wharf, `round-${round}-${i}.bin`, body),
    );
    wharf.push(w.mibPerSecond);
    await Promise.all(w.stored.map((s) => wharfDeleteAsset(ctx.wharf, s.id)));

    const b = await timedBatch(ctx, count, bytes, (body) => baselineUpload(ctx.baseline, body));
    baseline.push(b.mibPerSecond);
    await Promise.all(b.stored.map((s) => baselineDelete(ctx.baseline, s.id)));

    ctx.log(
      `  upload ${label}, round ${round}/${ctx.config.rounds}: Wharf ${formatNumber(w.mibPerSecond)} MiB/s, ` +
        `baseline ${formatNumber(b.mibPerSecond)} MiB/s`,
    );
  }
  const w = summarize(wharf);
  const b = summarize(baseline);
  return {
    group: 'Direct upload',
    label,
    unit: 'MiB/s',
    wharf: w,
    baseline: b,
    target: { text: `≥ ${TARGET_RATIO * 100}% of baseline`, met: w.median >= TARGET_RATIO * b.median },
  };
}

/** `count` uploads at once, each from its own region of the source file; MiB/s over the wall time. */
async function timedBatch(
  ctx: BenchContext,
  count: number,
  bytes: number,
  upload: (body: FileBody, index: number) => Promise<Stored>,
): Promise<{ mibPerSecond: number; stored: Stored[] }> {
  const bodies = Array.from({ length: count }, (_, i) => fileBody(ctx, i * bytes, bytes));
  const start = performance.now();
  const stored = await Promise.all(bodies.map((body, i) => upload(body, i)));
  const seconds = (performance.now() - start) / 1000;
  return { mibPerSecond: (count * bytes) / MiB / seconds, stored };
}
