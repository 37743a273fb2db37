/**
 * Image transform parameters: what a request may ask for, and the one canonical form it is
 * reduced to. Only canonical parameters are signed, stored and used as cache keys, and the
 * canonical space is small on purpose (sizes on a 16-pixel grid up to 4096, qualities in
 * steps of 5, `dpr` folded into the size), so nobody can fill storage with near-identical
 * variants of one image.
 */
import { WharfError } from './errors.js';

export const FITS = ['cover', 'contain', 'inside'] as const;
export type Fit = (typeof FITS)[number];
export const OUTPUT_FORMATS = ['webp', 'avif', 'jpeg', 'png'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
export type RequestedFormat = OutputFormat | 'auto';

/** Largest width or height of any derivative. */
export const MAX_DIMENSION = 4096;
/**
 * Most frames (pages) an animated source may have to be transformed. Only its first frame is
 * rendered, but decoders read every frame's header first, and libwebp does so at a cost that
 * grows with the square of the count (see webpFrames in src/processing/image-chunks.ts): at
 * this many it is a few tens of milliseconds.
 */
export const MAX_FRAMES = 5000;
/** Widths and heights are rounded up to a multiple of this. */
export const DIMENSION_STEP = 16;
export const QUALITY_STEP = 5;
export const MAX_DPR = 3;

/** Quality when none is asked for: each format's usual sweet spot for photographs. */
export const DEFAULT_QUALITY: Record<Exclude<OutputFormat, 'png'>, number> = {
  jpeg: 80,
  webp: 80,
  avif: 50,
};

export const PRESET_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** Parameters as they arrive in a query string or a preset body (already type-checked). */
export interface TransformInput {
  w?: number | undefined;
  h?: number | undefined;
  fit?: Fit | undefined;
  format?: RequestedFormat | undefined;
  q?: number | undefined;
  dpr?: number | undefined;
}

/**
 * The canonical request: sizes already multiplied by dpr, rounded and clamped; fit only when
 * it matters (both sizes given); quality only when asked for (the format may still be auto).
 */
export interface CanonicalTransform {
  w?: number;
  h?: number;
  fit?: Fit;
  format: RequestedFormat;
  q?: number;
}

/** What is actually rendered and stored: a concrete format and quality. */
export interface OutputSpec {
  w?: number;
  h?: number;
  fit: Fit;
  format: OutputFormat;
  /** Absent for PNG, which is lossless. */
  q?: number;
}

function dimension(value: number | undefined, dpr: number, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1) {
    throw new WharfError('VALIDATION_FAILED', `${name} must be a positive whole number of pixels.`);
  }
  const scaled = Math.ceil((value * dpr) / DIMENSION_STEP) * DIMENSION_STEP;
  return Math.min(MAX_DIMENSION, Math.max(DIMENSION_STEP, scaled));
}

/** Reduces parameters to their canonical form (see the module comment). */
export function canonicalize(input: TransformInput): CanonicalTransform {
  const dpr = input.dpr ?? 1;
  if (!Number.isFinite(dpr) || dpr < 1 || dpr > MAX_DPR) {
    throw new WharfError('VALIDATION_FAILED', `dpr must be between 1 and ${MAX_DPR}.`);
  }
  const w = dimension(input.w, dpr, 'w');
  const h = dimension(input.h, dpr, 'h');
  const canonical: CanonicalTransform = { format: input.format ?? 'auto' };
  if (!(canonical.format === 'auto' || (OUTPUT_FORMATS as readonly string[]).includes(canonical.format))) {
    throw new WharfError('VALIDATION_FAILED', `format must be auto or one of ${OUTPUT_FORMATS.join(', ')}.`);
  }
  if (w !== undefined) canonical.w = w;
  if (h !== undefined) canonical.h = h;
  if (input.fit !== undefined && !(FITS as readonly string[]).includes(input.fit)) {
    throw new WharfError('VALIDATION_FAILED', `fit must be one of ${FITS.join(', ')}.`);
  }
  // With one side or none, every fit gives the same picture: one variant, not three.
  if (w !== undefined && h !== undefined) canonical.fit = input.fit ?? 'inside';
  if (input.q !== undefined && canonical.format !== 'png') {
    if (!Number.isFinite(input.q) || input.q < 1 || input.q > 100) {
      throw new WharfError('VALIDATION_FAILED', 'q must be between 1 and 100.');
    }
    canonical.q = Math.min(100, Math.max(QUALITY_STEP, Math.round(input.q / QUALITY_STEP) * QUALITY_STEP));
  }
  return canonical;
}

/** Applies a device pixel ratio to a canonical transform (a preset used with `dpr`). */
export function withDpr(transform: CanonicalTransform, dpr: number | undefined): CanonicalTransform {
  if (dpr === undefined || dpr === 1) return transform;
  return canonicalize({ ...transform, dpr });
}

/** The canonical query string: fixed order, nothing but canonical values (what is signed). */
export function canonicalQuery(t: CanonicalTransform): string {
  const parts: string[] = [];
  if (t.w !== undefined) parts.push(`w=${t.w}`);
  if (t.h !== undefined) parts.push(`h=${t.h}`);
  if (t.fit !== undefined) parts.push(`fit=${t.fit}`);
  parts.push(`format=${t.format}`);
  if (t.q !== undefined) parts.push(`q=${t.q}`);
  return parts.join('&');
}

/** Sniffed source formats (file-type's extensions) that can be transformed. */
export const TRANSFORMABLE_SOURCES = ['jpg', 'png', 'webp', 'gif', 'avif'] as const;

/**
 * The format a response takes. `auto` prefers AVIF, then WebP, when the client names them in
 * Accept; otherwise the source's own family (JPEG stays JPEG; anything that may carry
 * transparency becomes PNG, which every client reads).
 */
export function negotiateFormat(
  requested: RequestedFormat,
  accept: string | undefined,
  sourceFormat: string,
): OutputFormat {
  if (requested !== 'auto') return requested;
  const accepted = acceptedImageTypes(accept);
  if (accepted.has('image/avif')) return 'avif';
  if (accepted.has('image/webp')) return 'webp';
  return sourceFormat === 'jpg' ? 'jpeg' : 'png';
}

/**
 * The media types an Accept header names explicitly with a non-zero q. Written by hand
 * because the rule is ours, not the client's ordering: only an explicit mention counts
 * (`*\/*` or `image/*` alone must not turn a JPEG into AVIF for a client that never said it
 * decodes AVIF), and Wharf's own preference order decides among the accepted ones.
 */
export function acceptedImageTypes(accept: string | undefined): Set<string> {
  const types = new Set<string>();
  for (const item of (accept ?? '').split(',')) {
    const [type = '', ...params] = item.split(';').map((s) => s.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    if (q !== undefined && !(Number(q.slice(2)) > 0)) continue;
    if (type !== '') types.add(type);
  }
  return types;
}

/** The concrete rendering of a canonical transform in a negotiated format. */
export function outputSpec(t: CanonicalTransform, format: OutputFormat): OutputSpec {
  const spec: OutputSpec = { fit: t.fit ?? 'inside', format };
  if (t.w !== undefined) spec.w = t.w;
  if (t.h !== undefined) spec.h = t.h;
  if (format !== 'png') spec.q = t.q ?? DEFAULT_QUALITY[format];
  return spec;
}

/** The derivatives table's key for a rendering; also names the stored object. */
export function specKey(spec: OutputSpec): string {
  const parts: string[] = [];
  if (spec.w !== undefined) parts.push(`w${spec.w}`);
  if (spec.h !== undefined) parts.push(`h${spec.h}`);
  if (spec.w !== undefined && spec.h !== undefined) parts.push(spec.fit);
  if (spec.q !== undefined) parts.push(`q${spec.q}`);
  parts.push(spec.format);
  return parts.join('-');
}

export const CONTENT_TYPES: Record<OutputFormat, string> = {
  webp: 'image/webp',
  avif: 'image/avif',
  jpeg: 'image/jpeg',
  png: 'image/png',
};

export const EXTENSIONS: Record<OutputFormat, string> = {
  webp: 'webp',
  avif: 'avif',
  jpeg: 'jpg',
  png: 'png',
};
