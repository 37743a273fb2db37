import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { baselineUpload, wharfUpload } from '../lib/api.js';
import type { ChildServer } from '../lib/children.js';
import { MiB } from '../lib/config.js';
import type { BenchContext } from '../lib/context.js';
import { fileBody } from '../lib/data.js';
import { formatNumber, type Row } from '../lib/report.js';
import { startBaseline, startWharf } from '../lib/servers.js';
import { summarize } from '../lib/stats.js';
import { formatBytes } from '../lib/units.js';

// "Does not grow with size": the larger upload may peak a little higher (GC timing,
// buffers), but not by more than this.
const TOLERANCE_BYTES = 32 * MiB;

/** Fresh servers are started here: the shared ones are not needed. */
export type RssContext = Pick<BenchContext, 'config' | 'workDir' | 'dataFile' | 'dataFileBytes' | 'log'>;

interface Peak {
  idle: number;
  peak: number;
}

/**
 * Peak resident memory (VmHWM, the kernel's high-water mark, so nothing is missed between
 * samples) of a fresh server process that receives one direct upload, for a small and a
 * large size. A streaming server peaks at the same level for both.
 */
export async function rssScenario(ctx: RssContext): Promise<Row[]> {
  const [small, large] = ctx.config.rssUploadBytes;
  const results: { size: number; wharf: Peak; baseline: Peak }[] = [];
  for (const size of [small, large]) {
    const wharf = await measure(ctx, size, 'wharf');
    const baseline = await measure(ctx, size, 'baseline');
    results.push({ size, wharf, baseline });
    ctx.log(
      `  peak RSS, ${formatBytes(size)} upload: Wharf ${formatNumber(wharf.peak / MiB)} MiB ` +
        `(idle ${formatNumber(wharf.idle / MiB)}), baseline ${formatNumber(baseline.peak / MiB)} MiB ` +
        `(idle ${formatNumber(baseline.idle / MiB)})`,
    );
  }
  const [s, l] = results as [(typeof results)[0], (typeof results)[0]];
  const mib = (bytes: number) => summarize([bytes / MiB]);
  const growth = l.wharf.peak - s.wharf.peak;
  return [
    ...results.map((r) => ({
      group: 'Peak RSS',
      label: `VmHWM, fresh process, ${formatBytes(r.size)} direct upload`,
      unit: 'MiB',
      wharf: mib(r.wharf.peak),
      baseline: mib(r.baseline.peak),
      lowerIsBetter: true,
    })),
    {
      group: 'Peak RSS',
      label: `growth ${formatBytes(s.size)} → ${formatBytes(l.size)}`,
      unit: 'MiB',
      wharf: mib(growth),
      baseline: mib(l.baseline.peak - s.baseline.peak),
      noRatio: true,
      target: { text: 'must not grow with size', met: growth <= TOLERANCE_BYTES },
    },
  ];
}

async function measure(ctx: RssContext, size: number, which: 'wharf' | 'baseline'): Promise<Peak> {
  const dir = join(ctx.workDir, `rss-${which}-${size}`);
  await mkdir(dir, { recursive: true });
  let server: ChildServer | undefined;
  try {
    const body = fileBody(ctx, 0, size);
    const name = `${which} (RSS, ${formatBytes(size)})`;
    if (which === 'wharf') {
      const wharf = await startWharf({ dataDir: dir, name });
      server = wharf;
      return await peakDuring(wharf, () => wharfUpload(wharf, 'rss.bin', body));
    }
    const baseline = await startBaseline({ dataDir: dir, name });
    server = baseline;
    return await peakDuring(baseline, () => baselineUpload(baseline, body));
  } finally {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function peakDuring(server: ChildServer, work: () => Promise<unknown>): Promise<Peak> {
  const idle = (await server.memory()).peakBytes;
  await work();
  return { idle, peak: (await server.memory()).peakBytes };
}
