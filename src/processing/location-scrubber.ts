import { crc32, inflateSync } from 'node:zlib';
import { fileTypeFromBuffer } from 'file-type';
import { WharfError } from '../core/errors.js';
import {
  type ImageBytes,
  type LocationStripper,
  type Patch,
  patched,
  type StripResult,
} from '../core/privacy.js';
import { parseMetadata } from './exif-guard.js';
import { type Container, chunksOf, isImageData } from './image-chunks.js';

// As much as the analyzer reads (src/processing/image-analyzer.ts): every position it could
// report is in here, so what this leaves behind the analysis cannot find either.
const HEAD_BYTES = 16 * 1024 * 1024;
/** The largest metadata chunk held to be checked; a bigger one is refused, not passed unread. */
const MAX_METADATA_CHUNK = 16 * 1024 * 1024;

/** XMP properties that say where a picture was taken. */
const XMP_LOCATION =
  /GPS(?:Latitude|Longitude|Altitude|DestLatitude|DestLongitude|AreaInformation)|photoshop:(?:City|State|Country)|Iptc4xmp\w*:(?:Location\w*|City|CountryName|CountryCode|ProvinceState|Sublocation)/;
/** IPTC (record 2) datasets naming a place: sub-location, city, state, country code and name. */
const IPTC_PLACES = new Set([0x5a, 0x5c, 0x5f, 0x64, 0x65]);

/**
 * Removes locations from images without re-encoding them: the GPS IFD of EXIF is emptied
 * and its values zeroed, XMP packets that name a place are replaced by an empty packet of
 * the same length, IPTC place names are blanked. Every change keeps the byte length, so the
 * stored copy is the original with a few ranges patched (streamed; the image data itself is
 * never decoded or changed). JPEG keeps its metadata before the image data, in the head; PNG
 * (CRCs recomputed) and WebP may keep it anywhere, so their every chunk is walked, to the end
 * of the file. Other formats carrying a location are refused, wherever they keep it: a
 * TIFF's IFDs are followed by offset, and any other format's bytes past the head are scanned
 * too. So is anything a second look still finds a location in, and metadata Wharf cannot
 * rewrite in place (compressed text, a hex-encoded EXIF profile). Hand-written because the
 * libraries that edit EXIF rewrite whole files in memory, re-encode, or need ExifTool (Perl)
 * installed; and exifr, which follows a TIFF's offsets in a file on disk, reads nothing from
 * storage by range (the bytes may be in S3).
 */
export class LocationScrubber implements LocationStripper {
  readonly headBytes = HEAD_BYTES;

  async strip(file: ImageBytes): Promise<StripResult> {
    const { head, size } = file;
    // file-type reads a TIFF's first IFD to tell it from the raw formats built on it, and
    // names no type when that IFD is past the head (libtiff writes it after the pixels).
    const type = (await fileTypeFromBuffer(head)) ?? (isTiff(head) ? { mime: 'image/tiff' } : undefined);
    if (!type) {
      // SVG is text, so file-type names no type: its metadata is XMP like any other.
      if (
        /<svg[\s>]/i.test(head.toString('latin1', 0, 4096)) &&
        (anyLocation(head) || (await restSaysWhere(file)))
      )
        throw notRemovable('image/svg+xml');
      return { kind: 'clean' };
    }
    if (!type.mime.startsWith('image/')) return { kind: 'clean' };
    let patches: Patch[];
    switch (type.mime) {
      case 'image/jpeg': {
        const copy = Buffer.from(head);
        patches = scrubJpeg(copy, head.length < size) ? [{ offset: 0, bytes: copy }] : [];
        break;
      }
      case 'image/png':
      case 'image/webp':
        patches = await scrubChunks(type.mime === 'image/png' ? 'png' : 'webp', file);
        break;
      default:
        // Any other format keeps its metadata where it likes (libtiff writes the IFDs after
        // the pixels, GIF's XMP follows the frames, an AVIF's EXIF item may sit at the end of
        // its media data): past the head too, or a large file would keep what a small one
        // with the same metadata is refused for.
        if (
          anyLocation(head) ||
          (await hasLocation(head)) ||
          (isTiff(head) && (await tiffSaysWhere(file, type.mime))) ||
          (await restSaysWhere(file))
        )
          throw notRemovable(type.mime);
        return { kind: 'clean' };
    }
    // The second look: nothing a parser of the whole head could read may still say where.
    const patchedHead = patched(head, 0, patches);
    if (anyLocation(patchedHead) || (await hasLocation(patchedHead))) {
      throw new WharfError(
        'LOCATION_NOT_REMOVABLE',
        'This image carries a location in a place Wharf cannot remove it from; remove it before uploading.',
        { detected: type.mime },
      );
    }
    return patches.length > 0 ? { kind: 'stripped', patches } : { kind: 'clean' };
  }
}

function notRemovable(mime: string, why?: string): WharfError {
  return new WharfError(
    'LOCATION_NOT_REMOVABLE',
    why ??
      `This account removes locations from images, and Wharf cannot remove one from ${mime} without re-encoding it: upload a JPEG, PNG or WebP, or remove the location first.`,
    { detected: mime },
  );
}

/**
 * PNG and WebP: every chunk but the image data, wherever it sits. EXIF and uncompressed XMP
 * are patched; any other chunk that still says where (compressed text, a hex-encoded EXIF
 * profile, a private chunk) is refused, as is a metadata chunk too large to hold.
 */
async function scrubChunks(container: Container, file: ImageBytes): Promise<Patch[]> {
  const mime = `image/${container}`;
  const patches: Patch[] = [];
  for await (const chunk of chunksOf(container, wholeFile(file), MAX_METADATA_CHUNK)) {
    if (!chunk.data) {
      if (!isImageData(container, chunk.type))
        throw notRemovable(mime, 'The image has more metadata than Wharf reads.');
      continue;
    }
    const data = Buffer.from(chunk.data);
    const body = container === 'png' && chunk.type !== 'trailing' ? data.subarray(0, chunk.length) : data;
    let changed = false;
    if (chunk.type === 'eXIf' || chunk.type === 'EXIF') {
      changed = wipeGps(body, startsWith(body, 0, 'Exif\0\0') ? 6 : 0, body.length);
    } else if (
      (chunk.type === 'iTXt' && startsWith(body, 0, 'XML:com.adobe.xmp\0') && body[18] === 0) ||
      chunk.type === 'XMP '
    ) {
      changed = blankXmp(body, 0, body.length);
    }
    if (anyLocation(body) || (container === 'png' && textSaysWhere(chunk.type, body))) {
      throw notRemovable(
        mime,
        `The image carries a location in its ${JSON.stringify(chunk.type)} chunk, which Wharf cannot rewrite; remove it before uploading.`,
      );
    }
    if (!changed) continue;
    if (container === 'png') {
      if (data.length < chunk.length + 4)
        throw notRemovable(mime, 'The image ends inside a chunk that says where it was taken.');
      data.writeUInt32BE(crc32(Buffer.concat([Buffer.from(chunk.type, 'latin1'), body])), chunk.length);
    }
    patches.push({ offset: chunk.offset, bytes: data });
  }
  return patches;
}

/** Bytes a reader decompresses or decodes from a PNG text chunk: XMP, or EXIF as hex ("Raw profile type exif"). */
function textSaysWhere(type: string, body: Buffer): boolean {
  if (type !== 'tEXt' && type !== 'zTXt' && type !== 'iTXt') return false;
  const keywordEnd = body.indexOf(0);
  if (keywordEnd < 0) return false;
  const keyword = body.toString('latin1', 0, keywordEnd);
  let text: Buffer;
  try {
    if (type === 'tEXt') text = body.subarray(keywordEnd + 1);
    else if (type === 'zTXt')
      text = inflateSync(body.subarray(keywordEnd + 2), { maxOutputLength: MAX_METADATA_CHUNK });
    else {
      // keyword \0 compressed? method language \0 translated keyword \0 text
      const compressed = body[keywordEnd + 1] === 1;
      const language = body.indexOf(0, keywordEnd + 3);
      const translated = language < 0 ? -1 : body.indexOf(0, language + 1);
      if (translated < 0) return false;
      const raw = body.subarray(translated + 1);
      text = compressed ? inflateSync(raw, { maxOutputLength: MAX_METADATA_CHUNK }) : raw;
    }
  } catch {
    // Text no reader can decompress says nothing to anyone (a bigger one is refused above).
    return false;
  }
  if (anyLocation(text)) return true;
  if (!/^Raw profile type /i.test(keyword)) return false;
  // ImageMagick's form: "\n<name>\n<length>\n<hex, in lines>".
  const lines = text.toString('latin1').split('\n');
  return anyLocation(Buffer.from(lines.slice(3).join('').replace(/\s+/g, ''), 'hex'));
}

/** Bytes a window of the rest shares with the one before: a TIFF structure anyLocation follows, and some. */
const SCAN_OVERLAP = 0x10000 + 64;
/** How much of the rest is looked at at once. */
const SCAN_WINDOW = 4 * 1024 * 1024;

/**
 * The bytes after the head, looked at as anyLocation looks at the head: in windows that
 * overlap by what it reads past a match, so memory stays flat however large the file.
 */
async function restSaysWhere(file: ImageBytes): Promise<boolean> {
  if (file.size <= file.head.length) return false;
  let carry = file.head.subarray(Math.max(0, file.head.length - SCAN_OVERLAP));
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const look = () => {
    const window = Buffer.concat([carry, ...pending]);
    carry = Buffer.from(window.subarray(Math.max(0, window.length - SCAN_OVERLAP)));
    pending = [];
    pendingBytes = 0;
    return anyLocation(window);
  };
  for await (const chunk of await file.rest()) {
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes >= SCAN_WINDOW && look()) return true;
  }
  return pendingBytes > 0 && look();
}

function isTiff(head: Buffer): boolean {
  const magic = head.toString('latin1', 0, 4);
  return magic === 'II*\0' || magic === 'MM\0*' || magic === 'II+\0' || magic === 'MM\0+';
}

/** IFDs (pages, sub-images, EXIF) walked in one TIFF; a file with more is refused, not passed unread. */
const MAX_IFDS = 1000;
/** TIFF tags whose values hold metadata that may say where: XMP, IPTC, Photoshop's resources (IPTC again). */
const TIFF_METADATA_TAGS = new Set([700, 33723, 34377]);
/** TIFF tags pointing at further IFDs: SubIFDs, EXIF. (GPS is looked at, not walked.) */
const TIFF_IFD_TAGS = new Set([330, 0x8769]);
const GPS_IFD_TAG = 0x8825;

/**
 * A TIFF (or a raw format built on it: DNG, CR2, NEF…), classic or BigTIFF, followed from
 * its header through every IFD, wherever in the file it is: a GPS IFD with entries, or XMP
 * or IPTC that names a place. Values are read from storage by offset, so only the IFDs and
 * the metadata are read, never the pixels.
 */
async function tiffSaysWhere(file: ImageBytes, mime: string): Promise<boolean> {
  const { head } = file;
  const le = head[0] === 0x49;
  const big = head[2 + (le ? 0 : 1)] === 43;
  const u16 = (b: Buffer, at: number) => (le ? b.readUInt16LE(at) : b.readUInt16BE(at));
  const u32 = (b: Buffer, at: number) => (le ? b.readUInt32LE(at) : b.readUInt32BE(at));
  const u64 = (b: Buffer, at: number) => Number(le ? b.readBigUInt64LE(at) : b.readBigUInt64BE(at));
  const offsetSize = big ? 8 : 4;
  const entrySize = big ? 20 : 12;
  const countSize = big ? 8 : 2;
  const offsetAt = (b: Buffer, at: number) => (big ? u64(b, at) : u32(b, at));
  const countAt = (b: Buffer, at: number) => (big ? u64(b, at) : u16(b, at));
  const read = async (offset: number, length: number): Promise<Buffer> => {
    if (length > MAX_METADATA_CHUNK)
      throw notRemovable(mime, 'The image has more metadata than Wharf reads.');
    return offset + length <= head.length
      ? head.subarray(offset, offset + length)
      : file.range(offset, length);
  };
  const tooManyIfds = () =>
    notRemovable(
      mime,
      `The image has more than ${MAX_IFDS} pages or sub-images for Wharf to check for a location.`,
    );
  if (head.length < (big ? 16 : 8)) return false;
  const queue = [offsetAt(head, big ? 8 : 4)];
  const seen = new Set<number>();
  while (queue.length > 0) {
    const at = queue.shift()!;
    if (at < 8 || at >= file.size || seen.has(at)) continue;
    seen.add(at);
    if (seen.size > MAX_IFDS) throw tooManyIfds();
    // The count and, in the same read, as many entries as most IFDs have.
    let ifd = await read(at, countSize + 64 * entrySize + offsetSize);
    if (ifd.length < countSize) continue;
    const count = countAt(ifd, 0);
    const length = countSize + count * entrySize + offsetSize;
    if (ifd.length < length && at + ifd.length < file.size) ifd = await read(at, length);
    const entries = Math.min(count, Math.floor((ifd.length - countSize) / entrySize));
    for (let i = 0; i < entries; i += 1) {
      const entry = countSize + i * entrySize;
      const tag = u16(ifd, entry);
      if (tag !== GPS_IFD_TAG && !TIFF_METADATA_TAGS.has(tag) && !TIFF_IFD_TAGS.has(tag)) continue;
      const size = TIFF_TYPE_SIZES[u16(ifd, entry + 2)] ?? 1;
      const n = big ? u64(ifd, entry + 4) : u32(ifd, entry + 4);
      const field = entry + (big ? 12 : 8);
      if (!TIFF_METADATA_TAGS.has(tag) && n > MAX_IFDS) throw tooManyIfds();
      // A value that fits in the field is in it (left-justified); a longer one is at its offset.
      const data =
        size * n <= offsetSize
          ? ifd.subarray(field, field + size * n)
          : await read(offsetAt(ifd, field), size * n);
      if (TIFF_METADATA_TAGS.has(tag)) {
        if (anyLocation(data) || blankIptcPlaces(Buffer.from(data), 0, data.length)) return true;
        continue;
      }
      // IFD pointers: LONG or IFD (4 bytes), or BigTIFF's LONG8 or IFD8.
      if (size !== 4 && size !== 8) continue;
      const pointers: number[] = [];
      for (let p = 0; p + size <= data.length; p += size)
        pointers.push(size === 8 ? u64(data, p) : u32(data, p));
      if (tag === GPS_IFD_TAG) {
        const gps = (pointers[0] ?? 0) < 8 ? Buffer.alloc(0) : await read(pointers[0]!, countSize);
        if (gps.length === countSize && countAt(gps, 0) > 0) return true;
      } else {
        queue.push(...pointers.slice(0, MAX_IFDS + 1));
      }
    }
    if (ifd.length >= countSize + count * entrySize + offsetSize)
      queue.push(offsetAt(ifd, countSize + count * entrySize));
    if (queue.length > MAX_IFDS) throw tooManyIfds();
  }
  return false;
}

/** The file from its first byte: the head already read, then the rest from storage. */
async function* wholeFile(file: ImageBytes): AsyncGenerator<Buffer> {
  yield file.head;
  if (file.size > file.head.length) yield* await file.rest();
}

/**
 * A scan that knows no container: any TIFF structure (EXIF, wherever a format keeps it) whose
 * GPS IFD has entries, or XMP text naming a place. It catches what exifr cannot parse (EXIF
 * in AVIF and HEIC, say), and checks that nothing is left after stripping.
 */
function anyLocation(bytes: Buffer): boolean {
  if (XMP_LOCATION.test(xmpText(bytes.toString('latin1')))) return true;
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

/** Bytes per value of each TIFF field type (BigTIFF's 8-byte ones too). */
const TIFF_TYPE_SIZES: Record<number, number> = {
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
  16: 8,
  17: 8,
  18: 8,
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
    const bytes = (TIFF_TYPE_SIZES[u16(entry + 2)] ?? 1) * u32(entry + 4);
    if (bytes > 4) {
      const value = tiff + u32(entry + 8);
      if (inside(value, bytes)) buf.fill(0, value, value + bytes);
    }
  }
  buf.fill(0, gps, Math.min(end, gps + 2 + entries * 12 + 4));
  return true;
}

/** XMP as its readers see it: in UTF-16 (which XMP allows), every other byte is NUL. */
function xmpText(latin1: string): string {
  return latin1.includes('\0') ? latin1.replaceAll('\0', '') : latin1;
}

/** Replaces an XMP packet that names a place by an empty one, padded with spaces to its length. */
function blankXmp(buf: Buffer, start: number, end: number): boolean {
  const text = buf.toString('latin1', start, end);
  if (!XMP_LOCATION.test(text)) {
    // Seen only with the NULs gone: UTF-16 XMP, where spaces written byte by byte would be
    // other characters, not an empty packet.
    if (XMP_LOCATION.test(xmpText(text))) {
      throw new WharfError(
        'LOCATION_NOT_REMOVABLE',
        'The image has UTF-16 XMP metadata that says where it was taken.',
      );
    }
    return false;
  }
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
