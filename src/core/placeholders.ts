/**
 * Placeholders: what a page shows while an image loads (see Placeholder in model.ts). Made by
 * processing, once per asset, from the image itself or from a video's or PDF's preview, and
 * recorded in the asset's analysis, so every listing and asset answer carries them for free.
 */

import { PROCESS_ASSET_JOB } from './asset-recording.js';
import type { Clock } from './clock.js';
import { WharfError } from './errors.js';
import type { IdSource } from './ids.js';
import { type ImageRenderer, type ImageSettings, PREVIEW_KEY } from './images.js';
import type { Asset, AssetAnalysis } from './model.js';
import type { BlobStore, Store } from './ports.js';
import type { Slots } from './slots.js';
import { TRANSFORMABLE_SOURCES } from './transforms.js';

/** Assets read per page while looking for ones without a placeholder. */
const BACKFILL_PAGE = 500;

/** What `queueMissing` found. */
export interface Backfill {
  /** Assets looked at. */
  scanned: number;
  /** Of those, queued for processing again: they will get a placeholder. */
  queued: number;
}

export class PlaceholderService {
  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly renderer: ImageRenderer,
    /** The transforms' slots: a placeholder decodes the whole image, as a transform does. */
    private readonly slots: Slots,
    private readonly settings: ImageSettings,
    private readonly clock: Clock,
    private readonly ids: IdSource,
  ) {}

  /**
   * The placeholder of `asset`, whose `analysis` processing has just made: nothing when there
   * is nothing transforms would decode (not an image, over their limits, no preview), and
   * the reason when the bytes turn out undecodable. Storage failing is thrown: the job is
   * tried again.
   */
  async make(
    asset: Asset,
    analysis: AssetAnalysis,
  ): Promise<Pick<AssetAnalysis, 'placeholder' | 'placeholderError'>> {
    const key = await this.sourceKey(asset, analysis);
    if (key === undefined) return {};
    const release = await this.slots.acquire(asset.accountId, true);
    try {
      const placeholder = await this.renderer.placeholder(
        { file: this.blobs.localFile?.(key), open: () => this.blobs.read(key) },
        { maxPixels: this.settings.maxPixels, timeoutSeconds: this.settings.timeoutSeconds },
      );
      return { placeholder };
    } catch (err) {
      // The image's own fault (a truncated file, a header that lied): a fact, not a retry,
      // and recorded so that a backfill does not try it again.
      if (err instanceof WharfError) return { placeholderError: err.code };
      throw err;
    } finally {
      release();
    }
  }

  /**
   * Queues processing again for the accounts' assets that could have a placeholder and have
   * none: those processed before placeholders existed. The server's job runner does the work
   * (a `process-asset` job each, which also sends `asset.processed` again with the new
   * analysis). Assets still pending are left to their own job. Running it twice before the
   * jobs have run queues them twice, which costs time but changes nothing.
   */
  async queueMissing(accountIds: string[]): Promise<Backfill> {
    const result: Backfill = { scanned: 0, queued: 0 };
    for (const accountId of accountIds) {
      let cursor: string | undefined;
      do {
        const page = await this.store.listAssets(accountId, { limit: BACKFILL_PAGE, cursor });
        result.scanned += page.assets.length;
        const due = page.assets.filter(
          (a) =>
            a.processing === 'done' &&
            a.analysis.placeholder === undefined &&
            a.analysis.placeholderError === undefined &&
            (a.analysis.preview !== undefined || this.decodable(a, a.analysis)),
        );
        const now = this.clock.now();
        await this.store.enqueueJobs(
          due.map((a) => ({
            id: this.ids.id(),
            kind: PROCESS_ASSET_JOB,
            payload: { assetId: a.id },
            runAt: now,
          })),
        );
        result.queued += due.length;
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
    }
    return result;
  }

  /** What the placeholder is made from, under the same limits as a transform. */
  private async sourceKey(asset: Asset, analysis: AssetAnalysis): Promise<string | undefined> {
    if (analysis.preview) return (await this.store.getDerivative(asset.id, PREVIEW_KEY))?.storageKey;
    return this.decodable(asset, analysis) ? asset.storageKey : undefined;
  }

  /** An original transforms would decode: a type they read, within their size and pixel limits. */
  private decodable(asset: Asset, analysis: AssetAnalysis): boolean {
    if (!(TRANSFORMABLE_SOURCES as readonly (string | undefined)[]).includes(analysis.format)) return false;
    if (asset.size > this.settings.maxInputBytes) return false;
    const { width, height } = analysis;
    // A header the analysis could not read: the renderer, under the same limits, says why
    // (placeholder_error), rather than the asset having neither a placeholder nor a reason.
    if (width === undefined || height === undefined) return true;
    return width * height <= this.settings.maxPixels;
  }
}
