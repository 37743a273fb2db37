import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { fileTypeFromBuffer, fileTypeFromFile } from 'file-type';
import sharp, { type Metadata, type Sharp } from 'sharp';
import { rgbaToThumbHash } from 'thumbhash';
import { WharfError } from '../core/errors.js';
import type { ImageRenderer, RenderRequest, RenderSource } from '../core/images.js';
import type { Placeholder } from '../core/model.js';
import { MAX_DIMENSION, MAX_FRAMES } from '../core/transforms.js';
import { webpFrames } from './image-chunks.js';
import { Scratch } from './scratch.js';

/** What transforms decode, by sniffed type (never by the declared type or the name). */
const DECODABLE = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/avif']);

/**
 * libvips loaders sharp may use at all, in this process: every other loader (SVG, PDF,
 * TIFF, FITS, Matlab, ImageMagick, OpenSlide, raw vips…) is blocked, whatever a file claims
 * to be. HEIF stays for AVIF; its HEVC flavour (HEIC) has no decoder in sharp's libvips and
 * is refused by type before it gets there.
 */
const ALLOWED_LOADERS = ['Jpeg', 'Png', 'Webp', 'Nsgif', 'Heif'].flatMap((format) =>
  ['File', 'Buffer', 'Source'].map((kind) => `VipsForeignLoad${format}${kind}`),
);

let configured = false;

/** Process-wide sharp settings: the loader allow-list, and no operation cache (see below). */
export function configureSharp(): void {
  if (configured) return;
  configured = true;
  sharp.block({ operation: ['VipsForeignLoad'] });
  sharp.unblock({ operation: ALLOWED_LOADERS });
  // libvips caches recent operations by file name; every transform reads a temp file that
  // is gone a moment later, so the cache would only hold memory and deleted files open.
  sharp.cache(false);
}

/**
 * Transforms with sharp. The original is put in a private temp file first (a hard link to the
 * stored file on local storage, streamed from S3): libvips then reads it sequentially from
 * disk instead of sharp collecting the whole stream in memory, and its header can be checked
 * (type, pixel count) before anything is decoded.
 */
export class SharpRenderer implements ImageRenderer {
  constructor(
    private readonly scratch: Scratch,
    private readonly maxInputBytes: number,
  ) {
    configureSharp();
  }

  async sniff(head: Buffer): Promise<{ ext: string; mime: string } | undefined> {
    return fileTypeFromBuffer(head);
  }

  async render(
    source: RenderSource,
    request: RenderRequest,
    sink: (output: Readable) => Promise<void>,
    outlived: (finishing: Promise<void>) => void = () => {},
  ) {
    // Answered at the deadline, whatever the work is doing then. sharp's own timeout stops
    // libvips only where it reports progress (while pixels are decoded and resized): AVIF's
    // encoder (libheif, aom) then compresses for seconds without a check, and a header read
    // cannot be interrupted either. Such work goes on in the background; it is only waited for
    // (see below), and nothing of it is kept.
    let givenUp = false;
    let giveUp!: (err: WharfError) => void;
    const timedOut = new Promise<never>((_, reject) => {
      giveUp = reject;
    });
    const work = this.scratch.withDir(async (dir) => {
      const input = join(dir, 'input');
      await Scratch.place(source, input, this.maxInputBytes);
      // The clock starts before the header is read: sharp's own timeout counts only once
      // pixels flow, and reading a header is work too (an animated WebP's grows with the
      // square of its frames, see checkInput).
      const deadline = Date.now() + request.timeoutSeconds * 1000;
      const timer = setTimeout(() => {
        givenUp = true;
        giveUp(timeoutError(request.timeoutSeconds));
      }, deadline - Date.now());
      let encoded: Buffer;
      try {
        await checkInput(input, request.maxPixels);
        checkDeadline(deadline, request.timeoutSeconds);
        // Encoded whole in memory, as sharp's output stream would hold it too (it pushes one
        // buffer once libvips is done); the promise settles exactly when libvips has ended,
        // which is what the caller's transform slot waits for.
        encoded = await pipelineFor(input, request, secondsLeft(deadline))
          .toBuffer()
          .catch(() => {
            // libvips failed: the image's fault (storage's failures come from the sink, as they are).
            checkDeadline(deadline, request.timeoutSeconds);
            throw new WharfError(
              'IMAGE_UNDECODABLE',
              'The image could not be decoded (truncated or corrupt).',
            );
          });
      } finally {
        clearTimeout(timer);
      }
      // Late: already answered TRANSFORM_TIMEOUT. A rendering that outlasted the timeout is not
      // stored, or the next request would be served what this one was refused for taking too long.
      if (givenUp) return;
      await sink(new PassThrough().end(encoded));
    });
    try {
      await Promise.race([work, timedOut]);
    } catch (err) {
      // Still running past the deadline: the caller holds its slot until the work has ended
      // (libvips keeps a core busy meanwhile) and its scratch directory is removed.
      if (givenUp) outlived(work.then(noop, noop));
      throw err;
    }
  }

  async placeholder(source: RenderSource, request: Omit<RenderRequest, 'spec'>): Promise<Placeholder> {
    return this.scratch.withDir(async (dir) => {
      const input = join(dir, 'input');
      await Scratch.place(source, input, this.maxInputBytes);
      const deadline = Date.now() + request.timeoutSeconds * 1000;
      await checkInput(input, request.maxPixels);
      checkDeadline(deadline, request.timeoutSeconds);
      try {
        return await placeholderOf(input, request.maxPixels, secondsLeft(deadline));
      } catch {
        checkDeadline(deadline, request.timeoutSeconds);
        throw new WharfError('IMAGE_UNDECODABLE', 'The image could not be decoded (truncated or corrupt).');
      }
    });
  }
}

/** TRANSFORM_TIMEOUT once the transform's time is up. */
function checkDeadline(deadline: number, timeoutSeconds: number): void {
  if (Date.now() < deadline) return;
  throw timeoutError(timeoutSeconds);
}

function timeoutError(timeoutSeconds: number): WharfError {
  return new WharfError('TRANSFORM_TIMEOUT', `The transform took over ${timeoutSeconds} s.`, {
    retry_after: 5,
  });
}

function noop(): void {}

/** What is left of the transform's time, for sharp's timeout (whole seconds; 0 would mean none). */
function secondsLeft(deadline: number): number {
  return Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
}

/** ThumbHash encodes at most 100 × 100 pixels; more detail would not survive its blur anyway. */
const PLACEHOLDER_SIDE = 100;

/** The image shrunk (never enlarged) into 100 × 100 as RGBA, then its ThumbHash and dominant colour. */
async function placeholderOf(path: string, maxPixels: number, timeoutSeconds: number) {
  const { data, info } = await sharp(path, {
    limitInputPixels: maxPixels,
    ...FIRST_FRAME,
    failOn: 'error',
    sequentialRead: true,
    autoOrient: true,
  })
    .resize(PLACEHOLDER_SIDE, PLACEHOLDER_SIDE, { fit: 'inside', withoutEnlargement: true })
    // Whatever the source holds (grey, 16 bits a channel, CMYK): 8-bit sRGB with alpha.
    .toColourspace('srgb')
    .ensureAlpha()
    .raw({ depth: 'uchar' })
    .timeout({ seconds: timeoutSeconds })
    .toBuffer({ resolveWithObject: true });
  const color = dominantColor(data);
  const grid = await hashable(data, info.width, info.height);
  const hash = rgbaToThumbHash(grid.width, grid.height, grid.data);
  return { thumbhash: Buffer.from(hash).toString('base64'), color };
}

/**
 * ThumbHash's least side: its encoder, given a picture of 3 pixels or fewer on a side, answers
 * a hash that decodes to noise (a 1 × 1 dot, or a 100:1 panorama shrunk to 100 × 1).
 */
const PLACEHOLDER_MIN_SIDE = 8;

/**
 * The shrunk pixels as ThumbHash can encode them: a side under the least is stretched to it
 * (each pixel repeated, so colours stay exact), the other side kept, or grown with it as far as
 * 100. A panorama's placeholder comes out less wide than the image, which ThumbHash, whose
 * ratio tops out near 7:1, could not have shown anyway.
 */
async function hashable(
  data: Buffer,
  width: number,
  height: number,
): Promise<{ data: Buffer; width: number; height: number }> {
  if (Math.min(width, height) >= PLACEHOLDER_MIN_SIDE) return { data, width, height };
  const scale = PLACEHOLDER_MIN_SIDE / Math.min(width, height);
  const side = (n: number) =>
    Math.max(PLACEHOLDER_MIN_SIDE, Math.min(PLACEHOLDER_SIDE, Math.round(n * scale)));
  const [w, h] = [side(width), side(height)];
  const grown = await sharp(data, { raw: { width, height, channels: 4 } })
    .resize(w, h, { fit: 'fill', kernel: 'nearest' })
    .raw()
    .toBuffer();
  return { data: grown, width: w, height: h };
}

/**
 * The most common colour of RGBA pixels, as `#rrggbb`: the fullest of 16 × 16 × 16 bins
 * (each pixel counted by its opacity), then the mean of the pixels in it. By hand because
 * sharp's `stats().dominant` answers the bin's centre, up to 8 off in each channel: a plain
 * #3366cc image would say #3868c8.
 */
function dominantColor(rgba: Uint8Array): string {
  const weights = new Float64Array(4096);
  const sums = new Float64Array(4096 * 3);
  // A wholly transparent image still has a colour to give: then every pixel counts alike.
  let anyVisible = false;
  for (let i = 3; i < rgba.length; i += 4) if (rgba[i]! > 0) anyVisible = true;
  for (let i = 0; i < rgba.length; i += 4) {
    const r = rgba[i]!;
    const g = rgba[i + 1]!;
    const b = rgba[i + 2]!;
    const weight = anyVisible ? rgba[i + 3]! : 1;
    const bin = ((r >> 4) << 8) | ((g >> 4) << 4) | (b >> 4);
    weights[bin]! += weight;
    sums[bin * 3]! += r * weight;
    sums[bin * 3 + 1]! += g * weight;
    sums[bin * 3 + 2]! += b * weight;
  }
  let best = 0;
  for (let bin = 1; bin < 4096; bin++) if (weights[bin]! > weights[best]!) best = bin;
  const hex = [0, 1, 2]
    .map((c) =>
      Math.round(sums[best * 3 + c]! / weights[best]!)
        .toString(16)
        .padStart(2, '0'),
    )
    .join('');
  return `#${hex}`;
}

/** Refuses what must not be decoded, from the type and the header alone. */
async function checkInput(path: string, maxPixels: number): Promise<void> {
  const type = await fileTypeFromFile(path);
  if (type?.mime === 'image/heic' || type?.mime === 'image/heif') {
    throw new WharfError(
      'UNSUPPORTED_IMAGE',
      'HEIC images cannot be decoded here (no HEVC decoder): convert to JPEG, PNG, WebP or AVIF.',
      { detected: type.mime },
    );
  }
  if (!type || !DECODABLE.has(type.mime)) {
    throw new WharfError(
      'UNSUPPORTED_IMAGE',
      `Only JPEG, PNG, WebP, GIF and AVIF images can be transformed${type ? `, not ${type.mime}` : ''}.`,
      { ...(type && { detected: type.mime }) },
    );
  }
  if (type.mime === 'image/webp') {
    // Counted before libvips reads the header, which is what costs (see webpFrames).
    const stream = createReadStream(path);
    try {
      const { frames } = await webpFrames(stream, MAX_FRAMES);
      if (frames > MAX_FRAMES) throw tooManyFrames();
    } finally {
      stream.destroy();
    }
  }
  let meta: Metadata;
  try {
    // The header only: no pixel is decoded, so a bomb's declared size costs nothing here.
    meta = await sharp(path, { limitInputPixels: false, ...FIRST_FRAME }).metadata();
  } catch {
    throw new WharfError('IMAGE_UNDECODABLE', 'The image header could not be read.');
  }
  if (!meta.width || !meta.height) {
    throw new WharfError('IMAGE_UNDECODABLE', 'The image header declares no size.');
  }
  if (meta.format === 'heif' && meta.compression !== 'av1') {
    throw new WharfError('UNSUPPORTED_IMAGE', 'Only AV1-coded HEIF (AVIF) can be decoded here.', {
      detected: `heif/${meta.compression}`,
    });
  }
  // GIF and AVIF headers cost what the file's size costs, but one limit holds for every format.
  if ((meta.pages ?? 1) > MAX_FRAMES) throw tooManyFrames(meta.pages);
  if (meta.width * meta.height > maxPixels) {
    throw new WharfError(
      'IMAGE_TOO_LARGE',
      `The image is ${meta.width}×${meta.height}; transforms accept at most ${maxPixels} pixels.`,
      { width: meta.width, height: meta.height, limit_pixels: maxPixels },
    );
  }
}

function tooManyFrames(frames?: number): WharfError {
  return new WharfError(
    'IMAGE_TOO_LARGE',
    `The image has more than ${MAX_FRAMES} frames; animations that long are not transformed.`,
    { ...(frames !== undefined && { frames }), limit_frames: MAX_FRAMES },
  );
}

/**
 * Only the first frame (page) of an animation is decoded: a rendering is a still image. (The
 * default, said here because it is what keeps an animation's cost that of one frame.)
 */
const FIRST_FRAME = { pages: 1, page: 0 } as const;

function pipelineFor(path: string, { spec, maxPixels }: RenderRequest, timeoutSeconds: number): Sharp {
  const image = sharp(path, {
    // Again here, in case the file changed its mind between header and decode.
    limitInputPixels: maxPixels,
    ...FIRST_FRAME,
    failOn: 'error',
    sequentialRead: true,
    // EXIF orientation applied to the pixels: the derivative has no EXIF left to say it.
    autoOrient: true,
  });
  // Never larger than the original, nor than MAX_DIMENSION either way: one side alone is
  // bounded by the other's maximum, so a 100 × 100000 strip cannot become a huge output.
  const opaque = spec.format === 'jpeg';
  image.resize({
    width: spec.w ?? MAX_DIMENSION,
    height: spec.h ?? MAX_DIMENSION,
    fit: spec.w !== undefined && spec.h !== undefined ? spec.fit : 'inside',
    withoutEnlargement: true,
    background: opaque ? { r: 255, g: 255, b: 255, alpha: 1 } : { r: 0, g: 0, b: 0, alpha: 0 },
  });
  if (opaque) image.flatten({ background: '#ffffff' });
  image.timeout({ seconds: timeoutSeconds });
  // No keepMetadata/withMetadata: sharp writes no EXIF, XMP, IPTC or ICC, so no GPS position
  // or camera serial number ever reaches a derivative (pixels are converted to sRGB).
  switch (spec.format) {
    case 'jpeg':
      return image.jpeg({ quality: spec.q, mozjpeg: false });
    case 'webp':
      return image.webp({ quality: spec.q, effort: 4 });
    case 'avif':
      // effort 2 of 9: AVIF's encoder is by far the slowest; this keeps a cold render in
      // the same range as WebP's at a small cost in size.
      return image.avif({ quality: spec.q, effort: 2 });
    case 'png':
      return image.png({ compressionLevel: 6 });
  }
}
