import { placeholderDataUrl } from '../sdk/placeholder.js';
import { type Asset, api } from './api.js';

/**
 * Raster types a browser shows without running anything of the file's own, which Wharf serves
 * inline (src/http/api/assets/content.ts). SVG is not among them: it can carry scripts, so it is
 * never shown, only downloaded.
 */
const PREVIEWABLE = /^image\/(png|jpeg|gif|webp|avif)$/;

/**
 * Where the console shows an asset's thumbnail, or null for no picture: a 320-pixel rendering
 * from the transform endpoint (stored once, no EXIF), for raster images and for videos and PDFs
 * whose poster or first page processing made. SVG is never rendered (the endpoint refuses it).
 */
export function thumbnailUrl(asset: Pick<Asset, 'id' | 'content_type' | 'analysis'>): string | null {
  const raster = PREVIEWABLE.test(asset.content_type.split(';')[0]!.trim());
  return raster || asset.analysis?.preview !== undefined ? api.thumbnailUrl(asset.id) : null;
}

/** Video and audio Wharf serves inline (sandboxed): played with the browser's own elements. */
export function mediaKind(asset: Pick<Asset, 'content_type'>): 'video' | 'audio' | null {
  const type = asset.content_type.split(';')[0]!.trim();
  if (/^video\/[\w.+-]+$/.test(type)) return 'video';
  if (/^audio\/[\w.+-]+$/.test(type)) return 'audio';
  return null;
}

/**
 * What a thumbnail shows until it loads: the asset's placeholder (its ThumbHash, scaled up,
 * over its dominant colour), or nothing. An object, which Preact sets through the CSSOM: the
 * page's CSP forbids style attributes, not style properties set by script.
 */
export function placeholderStyle(asset: Pick<Asset, 'analysis'>): { background: string } | undefined {
  const placeholder = asset.analysis?.placeholder;
  if (!placeholder) return undefined;
  return {
    background: `${placeholder.color} url("${placeholderDataUrl(placeholder)}") center / cover no-repeat`,
  };
}
