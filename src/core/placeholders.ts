/**
 * Placeholders: what a page shows while an image loads (see Placeholder in model.ts). Made by
 * processing, once per asset, from the image itself or from a video's or PDF's preview, and
 * recorded in the asset's analysis, so every listing and asset answer carries them for free.
 */
import { WharfError } from './errors.js';
import { type ImageRenderer, type ImageSettings, PREVIEW_KEY } from './images.js';
import type { Asset, AssetAnalysis, Placeholder } from './model.js';
import type { BlobStore, Store } from './ports.js';
import type { Slots } from './slots.js';
import { TRANSFORMABLE_SOURCES } from './transforms.js';

export class PlaceholderService {
  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly renderer: ImageRenderer,
    /** The transforms' slots: a placeholder decodes the whole image, as a transform does. */
    private readonly slots: Slots,
    private readonly settings: ImageSettings,
  ) {}

  /**
   * The placeholder of `asset`, whose `analysis` processing has just made; undefined when
   * there is nothing transforms could decode (not an image, too large, no preview, or bytes
   * that turn out undecodable). Storage failing is thrown: the job is tried again.
   */
  async make(asset: Asset, analysis: AssetAnalysis): Promise<Placeholder | undefined> {
    const key = await this.sourceKey(asset, analysis);
    if (key === undefined) return undefined;
    const release = await this.slots.acquire(true);
    try {
      return await this.renderer.placeholder(
        { file: this.blobs.localFile?.(key), open: () => this.blobs.read(key) },
        { maxPixels: this.settings.maxPixels, timeoutSeconds: this.settings.timeoutSeconds },
      );
    } catch (err) {
      // The image's own fault (a truncated file, a header that lied): a fact, not a retry.
      if (err instanceof WharfError) return undefined;
      throw err;
    } finally {
      release();
    }
  }

  /** What the placeholder is made from, under the same limits as a transform. */
  private async sourceKey(asset: Asset, analysis: AssetAnalysis): Promise<string | undefined> {
    if (analysis.preview) return (await this.store.getDerivative(asset.id, PREVIEW_KEY))?.storageKey;
    if (!(TRANSFORMABLE_SOURCES as readonly (string | undefined)[]).includes(analysis.format))
      return undefined;
    if (asset.size > this.settings.maxInputBytes) return undefined;
    const { width, height } = analysis;
    if (width === undefined || height === undefined || width * height > this.settings.maxPixels)
      return undefined;
    return asset.storageKey;
  }
}
