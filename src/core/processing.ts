import type { Clock } from './clock.js';
import { PermanentJobError } from './jobs.js';
import type { AssetAnalysis, Job } from './model.js';
import type { BlobStore, Store } from './ports.js';

/** Reads what a file is from its first bytes: sniffed type, image size, EXIF location. */
export interface Analyzer {
  /** How many leading bytes `analyze` wants; memory stays bounded whatever the file size. */
  readonly headBytes: number;
  analyze(head: Buffer, size: number): Promise<AssetAnalysis>;
}

/** The `process-asset` job: fills an asset's analysis once its bytes are stored. */
export function processAssetJob(store: Store, blobs: BlobStore, analyzer: Analyzer, clock: Clock) {
  return async (job: Job): Promise<void> => {
    const assetId = String(job.payload.assetId);
    const asset = await store.getAssetById(assetId);
    if (!asset) throw new PermanentJobError(`Asset ${assetId} no longer exists.`);
    let analysis: AssetAnalysis = {};
    if (asset.size > 0) {
      const end = Math.min(asset.size, analyzer.headBytes) - 1;
      const chunks: Buffer[] = [];
      for await (const chunk of await blobs.read(asset.storageKey, { start: 0, end })) {
        chunks.push(chunk as Buffer);
      }
      try {
        analysis = await analyzer.analyze(Buffer.concat(chunks), asset.size);
      } catch (err) {
        // Undecodable content is a fact about the file, not a reason to retry.
        await store.recordAnalysis(asset.id, 'failed', {}, clock.now());
        throw new PermanentJobError(`Could not analyse asset ${asset.id}: ${String(err)}`);
      }
    }
    await store.recordAnalysis(asset.id, 'done', analysis, clock.now());
  };
}
