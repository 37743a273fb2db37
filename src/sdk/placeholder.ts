import { thumbHashToDataURL } from 'thumbhash';
import type { Placeholder } from './types.js';

/**
 * The picture an asset's placeholder stands for, as a `data:image/png;base64,…` URL: for an
 * `<img>`'s `src` or a CSS background until the image loads, or Next.js's `blurDataURL`. It
 * is at most 32 pixels on its longest side, blurred, with the image's shape and colours
 * (transparency included); the browser scales it up. Runs anywhere the SDK does, so a
 * server can put it in the page it renders.
 *
 * Takes `asset.analysis.placeholder`, or its `thumbhash` alone.
 */
export function placeholderDataUrl(placeholder: Placeholder | string): string {
  const base64 = typeof placeholder === 'string' ? placeholder : placeholder.thumbhash;
  // atob: in browsers, Node, Deno and Bun alike (Buffer is Node's alone).
  const hash = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return thumbHashToDataURL(hash);
}
