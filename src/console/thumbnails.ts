import { type Asset, api } from './api.js';

/**
 * Raster types a browser shows without running anything of the file's own, which Wharf serves
 * inline (src/http/api/assets/content.ts). SVG is not among them: it can carry scripts, so it is
 * never shown, only downloaded.
 */
const PREVIEWABLE = /^image\/(png|jpeg|gif|webp|avif|bmp)$/;

/**
 * Where the console shows an asset's thumbnail, or null for no picture. For now the image's own
 * content (the browser scales it); when the image transform endpoint exists, this becomes its
 * small, resized URL (`…/image?w=320&h=320&fit=cover&format=webp`), for SVG too.
 */
export function thumbnailUrl(asset: Pick<Asset, 'id' | 'content_type'>): string | null {
  return PREVIEWABLE.test(asset.content_type.split(';')[0]!.trim()) ? api.contentUrl(asset.id) : null;
}

/** Video and audio Wharf serves inline (sandboxed): played with the browser's own elements. */
export function mediaKind(asset: Pick<Asset, 'content_type'>): 'video' | 'audio' | null {
  const type = asset.content_type.split(';')[0]!.trim();
  if (/^video\/[\w.+-]+$/.test(type)) return 'video';
  if (/^audio\/[\w.+-]+$/.test(type)) return 'audio';
  return null;
}
