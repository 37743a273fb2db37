import type { Readable } from 'node:stream';
import type { Clock } from './clock.js';
import { PermanentJobError } from './jobs.js';
import type { Asset, AssetAnalysis, Job } from './model.js';
import type { BlobStore, Store } from './ports.js';

/** Reads what a file is from its first bytes: sniffed type, image size, EXIF location. */
export interface Analyzer {
  /** How many leading bytes `analyze` wants; memory stays bounded whatever the file size. */
  readonly headBytes: number;
  analyze(head: Buffer, size: number): Promise<AssetAnalysis>;
}

export type MediaKind = 'video' | 'audio' | 'pdf';

/** Sniffed types transforms start from directly (the others need a preview first). */
export const TRANSFORMABLE_MIMES = new Set([
  'image/jpeg',
  'image/png',
  'image/webp',
  'image/gif',
  'image/avif',
]);

/** Facts external tools read from a whole file (they need all of it, seekable). */
export interface MediaFacts {
  duration?: number;
  codec?: string;
  audioCodec?: string;
  width?: number;
  height?: number;
  pages?: number;
  preview?: { width: number; height: number; format: string };
  /** Why facts or a preview are missing although the tools exist (a stable code). */
  error?: string;
}

/** Receives a preview image (a video's poster frame, a PDF's first page) as it is made. */
export type PreviewSink = (image: Readable, format: 'jpeg' | 'png') => Promise<void>;

/** Video, audio and PDF facts and previews, from ffprobe/ffmpeg and poppler (src/processing/media-tools.ts). */
export interface MediaProber {
  /** The tools this kind needs that this server does not have (found out at start). */
  missingTools(kind: MediaKind): string[];
  /**
   * Reads the whole file from `source` and runs the tools on it. A file the tools cannot
   * read is a fact (`error`), not a failure; storage failing is a failure.
   */
  inspect(kind: MediaKind, source: Readable, size: number, preview?: PreviewSink): Promise<MediaFacts>;
}

/** What processing does beyond the analyzer, when the server has it. */
export interface ProcessingExtras {
  media?: MediaProber | undefined;
  /** Stores a preview as the asset's `preview` derivative; whether one exists already. */
  previews?: {
    store(asset: Asset, image: Readable, format: 'jpeg' | 'png'): Promise<unknown>;
    exists(assetId: string): Promise<boolean>;
  };
  /**
   * The placeholder of an image, or of a video's or PDF's preview (made just before), when
   * transforms can decode it, or why they could not (`placeholder`, `placeholderError`).
   */
  placeholder?(
    asset: Asset,
    analysis: AssetAnalysis,
  ): Promise<Pick<AssetAnalysis, 'placeholder' | 'placeholderError'>>;
  /** Runs once the analysis is recorded (eager presets queue their renderings). */
  afterProcessed?(asset: Asset, analysis: AssetAnalysis): Promise<void>;
}

/** Facts recorded at completion, about the upload rather than the bytes: processing keeps them. */
const FROM_COMPLETION = ['hadGps', 'uploaded'] as const;

export function mediaKind(mime: string | undefined): MediaKind | undefined {
  if (mime === undefined) return undefined;
  if (mime.startsWith('video/')) return 'video';
  if (mime.startsWith('audio/')) return 'audio';
  if (mime === 'application/pdf') return 'pdf';
  return undefined;
}

/** The `process-asset` job: fills an asset's analysis once its bytes are stored. */
export function processAssetJob(
  store: Store,
  blobs: BlobStore,
  analyzer: Analyzer,
  clock: Clock,
  extras: ProcessingExtras = {},
) {
  return async (job: Job): Promise<void> => {
    const assetId = String(job.payload.assetId);
    const asset = await store.getAssetById(assetId);
    // Deleted before its turn came (an upload then a delete a moment later): nothing to do.
    // Not a failure: a job given up is what operators alert on.
    if (!asset) return;
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
        await store.recordAnalysis(asset.id, 'failed', carried(asset), clock.now());
        throw new PermanentJobError(`Could not analyse asset ${asset.id}: ${String(err)}`);
      }
    }
    const kind = mediaKind(analysis.mime);
    if (kind && extras.media) Object.assign(analysis, await inspectMedia(asset, kind, blobs, extras));
    if (extras.placeholder) Object.assign(analysis, await extras.placeholder(asset, analysis));
    analysis = { ...analysis, ...carried(asset) };
    await store.recordAnalysis(asset.id, 'done', analysis, clock.now());
    await extras.afterProcessed?.(asset, analysis);
  };
}

function carried(asset: Asset): AssetAnalysis {
  const kept: AssetAnalysis = {};
  for (const key of FROM_COMPLETION) {
    if (asset.analysis[key] !== undefined) Object.assign(kept, { [key]: asset.analysis[key] });
  }
  return kept;
}

async function inspectMedia(
  asset: Asset,
  kind: MediaKind,
  blobs: BlobStore,
  { media, previews }: ProcessingExtras,
): Promise<AssetAnalysis> {
  const missing = media!.missingTools(kind);
  if (missing.length > 0) return { missingTools: missing };
  // A retried job that already stored the preview does not make it again.
  const wantsPreview = kind !== 'audio' && previews !== undefined && !(await previews.exists(asset.id));
  const sink: PreviewSink | undefined = wantsPreview
    ? async (image, format) => {
        await previews.store(asset, image, format);
      }
    : undefined;
  const facts = await media!.inspect(kind, await blobs.read(asset.storageKey), asset.size, sink);
  const { error, ...rest } = facts;
  return error === undefined ? rest : { ...rest, mediaError: error };
}
