import { fileTypeFromBuffer } from 'file-type';
import sharp from 'sharp';
import type { AssetAnalysis } from '../core/model.js';
import type { Analyzer } from '../core/processing.js';
import { MAX_FRAMES } from '../core/transforms.js';
import { parseMetadata } from './exif-guard.js';
import { webpFrames } from './image-chunks.js';

// Headers, EXIF and IPTC sit at the start of image files; 16 MiB covers the header of any
// image sharp reads and keeps memory bounded however large the file is.
const HEAD_BYTES = 16 * 1024 * 1024;

async function* once(bytes: Buffer): AsyncGenerator<Buffer> {
  yield bytes;
}

/**
 * Types whose EXIF exifr cannot find in the file: it knows no WebP container (it throws
 * "Unknown file format", so a WebP photo's GPS position went unreported) and finds nothing in
 * an AVIF or HEIC (a hunt: the location scrubber, reading it through sharp, refused to strip
 * a position the analysis never reported). sharp hands over the EXIF block of each.
 */
const EXIF_THROUGH_SHARP = new Set(['image/webp', 'image/avif', 'image/heic', 'image/heif']);

/**
 * EXIF as sharp hands it over, as exifr reads it: a TIFF structure behind an optional
 * `Exif\0\0` marker, as in JPEG.
 */
function exifBlock(exif: Buffer | undefined): Buffer | undefined {
  if (!exif) return undefined;
  return exif.subarray(0, 6).toString('latin1') === 'Exif\0\0' ? exif.subarray(6) : exif;
}

/**
 * file-type sniffs the content (never trusting the name or declared type), sharp reads an
 * image's dimensions from its header, exifr its GPS position and any place name.
 */
export class ImageAnalyzer implements Analyzer {
  readonly headBytes = HEAD_BYTES;

  async analyze(head: Buffer): Promise<AssetAnalysis> {
    const sniffed = await fileTypeFromBuffer(head);
    const analysis: AssetAnalysis = {};
    if (sniffed) {
      analysis.format = sniffed.ext;
      analysis.mime = sniffed.mime;
    }
    if (!sniffed?.mime.startsWith('image/')) return analysis;

    let exif: Buffer | undefined;
    try {
      const meta = await this.dimensions(head, sniffed.mime);
      exif = meta.exif;
      if (meta.width && meta.height) {
        // EXIF orientations 5–8 rotate the picture a quarter turn: report it as it displays.
        const turned = (meta.orientation ?? 1) >= 5;
        analysis.width = turned ? meta.height : meta.width;
        analysis.height = turned ? meta.width : meta.height;
      }
    } catch {
      // A format sharp cannot decode still has a sniffed type; dimensions stay unknown.
    }
    try {
      const source = EXIF_THROUGH_SHARP.has(sniffed.mime) ? exifBlock(exif) : head;
      const tags = (source &&
        (await parseMetadata(source, { gps: true, iptc: true, xmp: true, tiff: true }))) as
        | Record<string, unknown>
        | undefined;
      if (tags) {
        const { latitude, longitude, GPSAltitude } = tags;
        if (typeof latitude === 'number' && typeof longitude === 'number' && Number.isFinite(latitude)) {
          analysis.location = { latitude, longitude };
          if (typeof GPSAltitude === 'number') analysis.location.altitude = GPSAltitude;
        }
        const place = ['Sublocation', 'City', 'State', 'Country']
          .map((name) => tags[name])
          .filter((value): value is string => typeof value === 'string' && value.trim() !== '');
        if (place.length > 0) analysis.locationName = place.join(', ');
      }
    } catch {
      // No or malformed EXIF: nothing to report.
    }
    return analysis;
  }

  /**
   * The size the header declares. An animated WebP with more frames than transforms take is
   * not handed to libvips, whose header read costs the square of the frames (see
   * webpFrames): its VP8X chunk says the size.
   */
  private async dimensions(
    head: Buffer,
    mime: string,
  ): Promise<{ width?: number; height?: number; orientation?: number; exif?: Buffer }> {
    if (mime === 'image/webp') {
      const { frames, canvas } = await webpFrames(once(head), MAX_FRAMES);
      if (frames > MAX_FRAMES) return canvas ?? {};
    }
    // Only the header is read: no pixel limit (sharp's default refuses above 268 megapixels),
    // so the size of an image too large to transform is recorded and /image refuses it early.
    return sharp(head, { failOn: 'none', limitInputPixels: false }).metadata();
  }
}
