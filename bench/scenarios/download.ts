import { baselineDelete, baselineUpload, wharfDeleteAsset, wharfUpload } from '../lib/api.js';
import { MiB } from '../lib/config.js';
import type { BenchContext } from '../lib/context.js';
import { fileBody } from '../lib/data.js';
import { download } from '../lib/http-client.js';
import { formatNumber, type Row } from '../lib/report.js';
import { summarize } from '../lib/stats.js';
import { formatBytes } from '../lib/units.js';

/**
 * GET /v1/assets/{id}/content of one large asset against the baseline streaming the same
 * file with fs.createReadStream. Both files were just written, so both are served from
 * the page cache: this measures the servers, not the disk.
 */
export async function downloadScenario(ctx: BenchContext): Promise<Row[]> {
  const { config } = ctx;
  const size = config.downloadBytes;
  const asset = await wharfUpload(ctx.wharf, 'download.bin', fileBody(ctx, 0, size));
  const file = await baselineUpload(ctx.baseline, fileBody(ctx, 0, size));
  try {
    const wharfUrl = `${ctx.wharf.url}/v1/assets/${asset.id}/content`;
    const wharfHeaders = { 'x-api-key': ctx.wharf.apiKey };
    const baselineUrl = `${ctx.baseline.url}/files/${file.id}`;
    const get = async (url: string, headers: Record<string, string>) => {
      const got = await download(url, headers);
      if (got.status !== 200 || got.bytes !== size) {
        throw new Error(`GET ${url}: HTTP ${got.status}, ${got.bytes} of ${size} bytes`);
      }
      return size / MiB / got.seconds;
    };

    await get(wharfUrl, wharfHeaders);
    await get(baselineUrl, {});
    const wharf: number[] = [];
    const baseline: number[] = [];
    for (let round = 1; round <= config.rounds; round++) {
      wharf.push(await get(wharfUrl, wharfHeaders));
      baseline.push(await get(baselineUrl, {}));
      ctx.log(
        `  download ${formatBytes(size)}, round ${round}/${config.rounds}: Wharf ${formatNumber(wharf.at(-1)!)} MiB/s, ` +
          `baseline ${formatNumber(baseline.at(-1)!)} MiB/s`,
      );
    }
    return [
      {
        group: 'Download',
        label: `1 × ${formatBytes(size)} (baseline: fs.createReadStream)`,
        unit: 'MiB/s',
        wharf: summarize(wharf),
        baseline: summarize(baseline),
        // Issue 14: downloads at ≥ 90 % of a raw createReadStream → socket server.
        target: {
          text: '≥ 90% of baseline',
          met: summarize(wharf).median >= 0.9 * summarize(baseline).median,
        },
      },
    ];
  } finally {
    await wharfDeleteAsset(ctx.wharf, asset.id);
    await baselineDelete(ctx.baseline, file.id);
  }
}
