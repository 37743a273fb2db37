import { createReadStream } from 'node:fs';
import { deployment } from '../../test/helpers/deployment.js';
import { baselineDelete, baselineUpload, wharfDeleteAsset, wharfUpload } from '../lib/api.js';
import { MiB } from '../lib/config.js';
import type { BenchContext } from '../lib/context.js';
import { fileBody } from '../lib/data.js';
import { download } from '../lib/http-client.js';
import { rawBucket } from '../lib/raw-s3.js';
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
  // Scaled: the reference is the store itself, a presigned GET of the same bytes in a bucket.
  const raw = deployment === 'scaled' ? await rawObject(ctx, size) : undefined;
  try {
    const wharfUrl = `${ctx.wharf.url}/v1/assets/${asset.id}/content`;
    const wharfHeaders = { 'x-api-key': ctx.wharf.apiKey };
    const baselineUrl = raw?.url ?? `${ctx.baseline.url}/files/${file.id}`;
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
        label: `1 × ${formatBytes(size)} (baseline: ${raw ? 'S3 GetObject, presigned' : 'fs.createReadStream'})`,
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
    await raw?.drop();
  }
}

/** The first `size` bytes of the data file as an object in a fresh bucket, and a GET URL for it. */
async function rawObject(ctx: BenchContext, size: number): Promise<{ url: string; drop(): Promise<void> }> {
  const { GetObjectCommand, PutObjectCommand } = await import('@aws-sdk/client-s3');
  const { getSignedUrl } = await import('@aws-sdk/s3-request-presigner');
  const { s3, bucket, drop } = await rawBucket();
  await s3.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: 'download.bin',
      Body: createReadStream(ctx.dataFile, { start: 0, end: size - 1 }),
      ContentLength: size,
    }),
  );
  const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: 'download.bin' }), {
    expiresIn: 3600,
  });
  return { url, drop };
}
