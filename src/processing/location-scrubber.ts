import { crc32 } from 'node:zlib';
import { fileTypeFromBuffer } from 'file-type';
import { WharfError } from '../core/errors.js';
import type { LocationStripper, StripResult } from '../core/privacy.js';
import { parseMetadata } from './exif-guard.js';

// As much as the analyzer reads (src/processing/image-analyzer.ts): every position it could
// report is in here, so what this leaves behind the analysis cannot find either.
const HEAD_BYTES = 16 * 1024 * 1024;

/** XMP properties that say where a picture was taken. */
const XMP_LOCATION =
  /GPS(?:Latitude|Longitude|Altitude|DestLatitude|DestLongitude|AreaInformation)|photoshop:(?:City|State|Country)|Iptc4xmp\w*:(?:Location\w*|City|CountryName|CountryCode|ProvinceState|Sublocation)/;
/** IPTC (record 2) datasets naming a place: sub-location, city, state, country code and name. */
const IPTC_PLACES = new Set([0x5a, 0x5c, 0x5f, 0x64, 0x65]);

/**
 * Removes locations from images without re-encoding them: the GPS IFD of EXIF is emptied
 * and its values zeroed, XMP packets that name a place are replaced by an empty packet of
 * the same length, IPTC place names are blanked. Every change keeps the byte length, so the
 * stored copy is the patched head followed by the untouched rest of the original (streamed;
 * the image data itself is never decoded or changed). JPEG, PNG (CRCs recomputed) and WebP;
 * other formats carrying a location are refused, as is anything a second look still finds
 * a location in. Hand-written because the libraries that edit EXIF rewrite whole files in
 * memory, re-encode, or need ExifTool (Perl) installed.
 */
export class LocationScrubber implements LocationStripper {
  readonly headBytes = HEAD_BYTES;

  async strip(head: Buffer, size: number): Promise<StripResult> {
    const type = await fileTypeFromBuffer(head);
    if (!type?.mime.startsWith('image/')) return { kind: 'clean' };
    const copy = Buffer.from(head);
    let removed: boolean;
    switch (type.mime) {
      case 'image/jpeg':
        removed = scrubJpeg(copy, head.length < size);
        break;
      case 'image/png':
        removed = scrubPng(copy);
        break;
      case 'image/webp':
        removed = scrubWebp(copy);
        break;
      default:
        if (anyLocation(head) || (await hasLocation(head))) {
          throw new WharfError(
            'LOCATION_NOT_REMOVABLE',
            `This account removes locations from images, and Wharf cannot remove one from ${type.mime} without re-encoding it: upload a JPEG, PNG or WebP, or remove the location first.`,
            { detected: type.mime },
          );
        }
        return { kind: 'clean' };
    }
    if (anyLocation(copy) || (await hasLocation(copy))) {
      throw new WharfError(
        'LOCATION_NOT_REMOVABLE',
        'This image carries a location in a place Wharf cannot remove it from; remove it before uploading.',
        { detected: type.mime },
      );
    }
    return removed ? { kind: 'stripped', head: copy } : { kind: 'clean' };
  }
}

/**
 * A scan that knows no container: any TIFF structure (EXIF, wherever a format keeps it) whose
 * GPS IFD has entries, or XMP text naming a place. It catches what exifr cannot parse (EXIF
 * in AVIF and HEIC, say), and checks that nothing is left after stripping.
 */
function anyLocation(bytes: Buffer): boolean {
  if (XMP_LOCATION.test(bytes.toString('latin1'))) return true;
  const probe = Buffer.from(bytes);
  for (const header of ['II*\0', 'MM\0*']) {
    for (let at = probe.indexOf(header, 0, 'latin1'); at >= 0; at = probe.indexOf(header, at + 1, 'latin1')) {
      if (wipeGps(probe, at, Math.min(probe.length, at + 0x10000))) return true;
    }
  }
  return false;
}

async function hasLocation(bytes: Buffer): Promise<boolean> {
  let tags: Record<string, unknown> | undefined;
  try {
    tags = (await parseMetadata(bytes, { gps: true, xmp: true, iptc: true, tiff: true })) as
      | Record<string, unknown>
      | undefined;
  } catch {
    // A format exifr does not read (WebP): our own walk was the check.
    return false;
  }
  if (!tags) return false;
  // A blanked IPTC place name still parses, as spaces: only a value that says something counts.
  const says = (value: unknown) => (typeof value === 'string' ? value.trim() !== '' : value != null);
  return Object.entries(tags).some(
    ([key, value]) =>
      (key.startsWith('GPS') ||
        key === 'latitude' ||
        key === 'longitude' ||
        ['City', 'State', 'Country', 'Sublocation', 'CountryCode', 'ProvinceState'].includes(key)) &&
      says(value),
  );
}

/** JPEG: the metadata segments before the first scan. */
function scrubJpeg(buf: Buffer, truncated: boolean): boolean {
  let removed = false;
  let at = 2;
  while (at + 4 <= buf.length) {
    if (buf[at] !== 0xff) return removed;
    const marker = buf[at + 1]!;
    if (marker === 0xff) {
      at += 1; // fill byte
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return removed; // start of scan, end of image
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      at += 2;
      continue;
    }
    const length = buf.readUInt16BE(at + 2);
    const start = at + 4;
    const end = at + 2 + length;
    if (end > buf.length) break;
    if (marker === 0xe1) {
      if (startsWith(buf, start, 'Exif\0\0')) removed = wipeGps(buf, start + 6, end) || removed;
      else if (startsWith(buf, start, 'http://ns.adobe.com/')) removed = blankXmp(buf, start, end) || removed;
    } else if (marker === 0xed) {
      removed = blankIptcPlaces(buf, start, end) || removed;
    }
    at = end;
  }
  if (truncated) {
    // Metadata runs past what was read: what is beyond could not be checked.
    throw new WharfError('LOCATION_NOT_REMOVABLE', 'The image has more metadata than Wharf reads.');
  }
  return removed;
}

/** PNG: eXIf and uncompressed XMP (iTXt) chunks, CRC recomputed for each one changed. */
function scrubPng(buf: Buffer): boolean {
  let removed = false;
  let at = 8;
  while (at + 12 <= buf.length) {
    const length = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    const start = at + 8;
    const end = start + length;
    if (end + 4 > buf.length || type === 'IEND') break;
    let changed = false;
    if (type === 'eXIf') {
      changed = wipeGps(buf, startsWith(buf, start, 'Exif\0\0') ? start + 6 : start, end);
    } else if (type === 'iTXt' && startsWith(buf, start, 'XML:com.adobe.xmp\0')) {
      const compressed = buf[start + 18] === 1;
      if (compressed) {
        if (XMP_LOCATION.test(buf.toString('latin1', start, end))) {
          throw new WharfError('LOCATION_NOT_REMOVABLE', 'The image has compressed XMP metadata.');
        }
      } else {
        changed = blankXmp(buf, start, end);
      }
    }
    if (changed) {
      buf.writeUInt32BE(crc32(buf.subarray(at + 4, end)), end);
      removed = true;
    }
    at = end + 4;
  }
  return removed;
}

/** WebP: the RIFF EXIF and XMP chunks (no checksums). */
function scrubWebp(buf: Buffer): boolean {
  let removed = false;
  let at = 12;
  while (at + 8 <= buf.length) {
    const type = buf.toString('latin1', at, at + 4);
    const length = buf.readUInt32LE(at + 4);
    const start = at + 8;
    const end = start + length;
    if (end > buf.length) break;
    if (type === 'EXIF') {
      removed = wipeGps(buf, startsWith(buf, start, 'Exif\0\0') ? start + 6 : start, end) || removed;
    } else if (type === 'XMP ') {
      removed = blankXmp(buf, start, end) || removed;
    }
    at = end + (length % 2);
  }
  return removed;
}

const TYPE_SIZES: Record<number, number> = {
  1: 1,
  2: 1,
  3: 2,
  4: 4,
  5: 8,
  6: 1,
  7: 1,
  8: 2,
  9: 4,
  10: 8,
  11: 4,
  12: 8,
  13: 4,
};

/**
 * Empties the GPS IFD of the TIFF structure at [tiff, end): every out-of-line value it points
 * at is zeroed, then the IFD itself (0 entries, no next IFD). IFD0 keeps pointing at it, which
 * is valid EXIF, and nothing else moves.
 */
function wipeGps(buf: Buffer, tiff: number, end: number): boolean {
  if (tiff + 8 > end) return false;
  const order = buf.toString('latin1', tiff, tiff + 2);
  if (order !== 'II' && order !== 'MM') return false;
  const le = order === 'II';
  const u16 = (offset: number) => (le ? buf.readUInt16LE(offset) : buf.readUInt16BE(offset));
  const u32 = (offset: number) => (le ? buf.readUInt32LE(offset) : buf.readUInt32BE(offset));
  const inside = (offset: number, length: number) => offset >= tiff && offset + length <= end;
  const ifd0 = tiff + u32(tiff + 4);
  if (!inside(ifd0, 2)) return false;
  const count = u16(ifd0);
  let gps: number | undefined;
  for (let i = 0; i < count; i += 1) {
    const entry = ifd0 + 2 + i * 12;
    if (!inside(entry, 12)) return false;
    if (u16(entry) === 0x8825) gps = tiff + u32(entry + 8);
  }
  if (gps === undefined || !inside(gps, 2)) return false;
  const entries = u16(gps);
  if (entries === 0) return false;
  for (let i = 0; i < entries; i += 1) {
    const entry = gps + 2 + i * 12;
    if (!inside(entry, 12)) break;
    const bytes = (TYPE_SIZES[u16(entry + 2)] ?? 1) * u32(entry + 4);
    if (bytes > 4) {
      const value = tiff + u32(entry + 8);
      if (inside(value, bytes)) buf.fill(0, value, value + bytes);
    }
  }
  buf.fill(0, gps, Math.min(end, gps + 2 + entries * 12 + 4));
  return true;
}

/** Replaces an XMP packet that names a place by an empty one, padded with spaces to its length. */
function blankXmp(buf: Buffer, start: number, end: number): boolean {
  const text = buf.toString('latin1', start, end);
  if (!XMP_LOCATION.test(text)) return false;
  // Keep the header that says what the segment or chunk is (up to the packet itself).
  const packet = text.search(/<\?xpacket|<x:xmpmeta/);
  const from = packet >= 0 ? start + packet : start;
  const empty = Buffer.from(
    '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>',
  );
  const tail = Buffer.from('<?xpacket end="w"?>');
  buf.fill(0x20, from, end);
  if (end - from >= empty.length + tail.length) {
    empty.copy(buf, from);
    tail.copy(buf, end - tail.length);
  }
  return true;
}

/** Blanks the values of IPTC place datasets (1C 02 tag length value) with spaces. */
function blankIptcPlaces(buf: Buffer, start: number, end: number): boolean {
  let removed = false;
  for (let at = start; at + 5 <= end; at += 1) {
    if (buf[at] !== 0x1c || buf[at + 1] !== 0x02 || !IPTC_PLACES.has(buf[at + 2]!)) continue;
    const length = buf.readUInt16BE(at + 3);
    if (length & 0x8000 || at + 5 + length > end) continue;
    buf.fill(0x20, at + 5, at + 5 + length);
    removed = removed || length > 0;
    at += 4 + length;
  }
  return removed;
}

function startsWith(buf: Buffer, at: number, text: string): boolean {
  return buf.toString('latin1', at, at + text.length) === text;
}
