/**
 * The chunks of a PNG or WebP, read as the file's bytes stream past. PNG and WebP let metadata
 * sit anywhere, after the image data included (WebP's own spec orders EXIF and XMP last), so a
 * scan of the first bytes alone cannot say a file carries no location. Image data (IDAT,
 * VP8 …) is skipped without being held; every other chunk is handed over whole, up to
 * `maxHeld` bytes. Hand-written because the chunk libraries read whole files into memory.
 */
export type Container = 'png' | 'webp';

export interface ImageChunk {
  /** The chunk's four-letter type; `trailing` for bytes after the file's last chunk. */
  type: string;
  /** Where the chunk's data starts in the file. */
  offset: number;
  /** Its data's length as the file states it (what was there, when the file ends early). */
  length: number;
  /** The data followed, for PNG, by its CRC; absent for image data and for chunks over `maxHeld`. */
  data?: Buffer;
}

const IMAGE_DATA: Record<Container, ReadonlySet<string>> = {
  png: new Set(['IDAT', 'fdAT']),
  webp: new Set(['VP8 ', 'VP8L', 'ALPH', 'ANMF']),
};

/** Pixels, not metadata: never held, never patched. */
export function isImageData(container: Container, type: string): boolean {
  return IMAGE_DATA[container].has(type);
}

/** Sequential reads over a stream of buffers: only what a caller asked for is kept. */
class Reader {
  private readonly iterator: AsyncIterator<Buffer>;
  private pending: Buffer[] = [];
  private buffered = 0;
  position = 0;

  constructor(source: AsyncIterable<Buffer>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<void> {
    while (this.buffered < n) {
      const next = await this.iterator.next();
      if (next.done) return;
      this.pending.push(next.value);
      this.buffered += next.value.length;
    }
  }

  /** The next n bytes, or fewer where the file ends. */
  async read(n: number): Promise<Buffer> {
    await this.fill(n);
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    const taken = all.subarray(0, n);
    const left = all.subarray(taken.length);
    this.pending = left.length > 0 ? [left] : [];
    this.buffered = left.length;
    this.position += taken.length;
    return taken;
  }

  /** Passes over n bytes; answers how many there were. */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0) {
        const next = await this.iterator.next();
        if (next.done) break;
        this.pending = [next.value];
        this.buffered = next.value.length;
      }
      const head = this.pending[0]!;
      const step = Math.min(left, head.length);
      if (step === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(step);
      this.buffered -= step;
      left -= step;
    }
    this.position += n - left;
    return n - left;
  }

  /** Everything that is left, read to the end: how long it was, and the bytes if at most max. */
  async rest(max: number): Promise<{ length: number; data?: Buffer }> {
    const held: Buffer[] = [...this.pending];
    let length = this.buffered;
    this.pending = [];
    this.buffered = 0;
    for (let next = await this.iterator.next(); !next.done; next = await this.iterator.next()) {
      length += next.value.length;
      if (length <= max) held.push(next.value);
    }
    this.position += length;
    return length <= max ? { length, data: Buffer.concat(held) } : { length };
  }
}

/** The chunks after the signature (PNG) or RIFF header (WebP), in file order. */
export async function* chunksOf(
  container: Container,
  source: AsyncIterable<Buffer>,
  maxHeld: number,
): AsyncGenerator<ImageChunk> {
  const reader = new Reader(source);
  // PNG: an 8-byte signature. WebP: RIFF, the size of what follows it, WEBP.
  const start = await reader.read(container === 'png' ? 8 : 12);
  const riffEnd =
    container === 'webp' && start.length === 12 ? 8 + start.readUInt32LE(4) : Number.POSITIVE_INFINITY;
  while (reader.position < riffEnd) {
    const header = await reader.read(8);
    if (header.length < 8) {
      if (header.length > 0)
        yield {
          type: 'trailing',
          offset: reader.position - header.length,
          length: header.length,
          data: header,
        };
      return;
    }
    const type = header.toString('latin1', container === 'png' ? 4 : 0, container === 'png' ? 8 : 4);
    const length = container === 'png' ? header.readUInt32BE(0) : header.readUInt32LE(4);
    // PNG: a 4-byte CRC follows the data. WebP: a pad byte follows data of odd length.
    const after = container === 'png' ? 4 : length % 2;
    const offset = reader.position;
    if (isImageData(container, type) || length + after > maxHeld) {
      await reader.skip(length + after);
      yield { type, offset, length };
    } else {
      const data = await reader.read(length + after);
      yield { type, offset, length, data };
    }
    if (container === 'png' && type === 'IEND') break;
  }
  // Bytes after the last chunk: no decoder reads them, but anything could be hidden there.
  const offset = reader.position;
  const rest = await reader.rest(maxHeld);
  if (rest.length > 0)
    yield { type: 'trailing', offset, length: rest.length, ...(rest.data ? { data: rest.data } : {}) };
}

/** What the chunk headers of a WebP say about its frames, read without decoding a pixel. */
export interface WebpFrames {
  /** ANMF chunks seen, counting stopped at `stopAfter` + 1. */
  frames: number;
  /** The canvas size from VP8X, when the file is in the extended format. */
  canvas?: { width: number; height: number };
}

/**
 * Counts a WebP's frames from its chunk headers, stopping once there are more than
 * `stopAfter`. libwebp's demuxer looks up each frame by walking its list of frames from the
 * first, and libvips asks it for every frame when it reads the header (for the delays), so
 * reading the header of an animated WebP costs the square of its frame count: 100,000
 * frames of 16 × 16 (4.8 MB) took 50 s before a single pixel was decoded, in calls no
 * timeout reaches. Walking the headers here costs what reading the file costs.
 */
export async function webpFrames(source: AsyncIterable<Buffer>, stopAfter: number): Promise<WebpFrames> {
  const result: WebpFrames = { frames: 0 };
  // Held: VP8X (10 bytes) and other small chunks; frames and image data are passed over.
  for await (const chunk of chunksOf('webp', source, 16)) {
    if (chunk.type === 'ANMF' && ++result.frames > stopAfter) break;
    if (chunk.type === 'VP8X' && chunk.data && chunk.data.length >= 10) {
      result.canvas = { width: chunk.data.readUIntLE(4, 3) + 1, height: chunk.data.readUIntLE(7, 3) + 1 };
    }
  }
  return result;
}
