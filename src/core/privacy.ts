/**
 * The account setting `strip_gps`: for services whose users must not leak where they are,
 * new images are stored without their location. The upload is verified against what the
 * client sent, exactly as for every other account; then, before it becomes an asset, a copy
 * without the location replaces it. The asset's sha256/md5 describe the stored copy (what
 * downloads, ETags and dedupe see); `analysis.uploaded` keeps the digests of what was sent,
 * and `analysis.had_gps` says a location was removed. The original never becomes readable.
 */
import { createHash } from 'node:crypto';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import { WharfError } from './errors.js';
import { DigestStream } from './hashing.js';
import type { AssetAnalysis, Digests } from './model.js';
import type { BlobStore, Store } from './ports.js';

/** Bytes that replace as many bytes of the original, from `offset` on. */
export interface Patch {
  offset: number;
  bytes: Buffer;
}

export type StripResult = { kind: 'clean' } | { kind: 'stripped'; patches: Patch[] };

/** An image as the stripper sees it: its first bytes at hand, the rest streamed on demand. */
export interface ImageBytes {
  head: Buffer;
  size: number;
  /** The bytes after the head, to the end. */
  rest(): Promise<AsyncIterable<Buffer>>;
  /**
   * `length` bytes from `offset` (fewer where the file ends): for formats whose metadata is
   * found by following offsets (TIFF's IFDs may sit anywhere, libtiff writes them last).
   */
  range(offset: number, length: number): Promise<Buffer>;
}

/** Finds locations in an image and says how to patch them away, keeping every length. */
export interface LocationStripper {
  /** How much of the file to hand over at once; formats that need more read the rest. */
  readonly headBytes: number;
  /** Throws LOCATION_NOT_REMOVABLE when a location is there but cannot be removed. */
  strip(file: ImageBytes): Promise<StripResult>;
}

/** What completion records instead of the upload's own bytes. */
export interface Replacement {
  storageKey: string;
  digests: Digests;
  analysis: AssetAnalysis;
}

/** Where the copy without a location goes: beside the upload's key, out of every presigned URL's reach. */
function strippedKeyFor(key: string): string {
  const at = key.indexOf('/');
  return `${key.slice(0, at)}/nogps${key.slice(at)}`;
}

export class LocationPrivacy {
  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly stripper: LocationStripper,
  ) {}

  /**
   * The replacement for verified bytes at `key`, when the account strips locations and the
   * image has one. The upload's own object is left for the caller to delete once the asset
   * is recorded. When the digests are only declared (a large file storage could not hash),
   * the copy's pass hashes the original too and checks it.
   */
  async replacementFor(
    accountId: string,
    key: string,
    digests: Digests,
    declaredOnly: boolean,
    contentType: string,
  ): Promise<Replacement | undefined> {
    const account = await this.store.getAccount(accountId);
    if (!account?.stripGps || digests.size === 0) return undefined;
    const headLength = Math.min(digests.size, this.stripper.headBytes);
    const chunks: Buffer[] = [];
    for await (const chunk of await this.blobs.read(key, { start: 0, end: headLength - 1 })) {
      chunks.push(chunk as Buffer);
    }
    const head = Buffer.concat(chunks);
    const rest = () => this.blobs.read(key, { start: head.length, end: digests.size - 1 });
    const range = async (offset: number, length: number) => {
      const end = Math.min(digests.size, offset + length) - 1;
      if (offset < 0 || end < offset) return Buffer.alloc(0);
      const parts: Buffer[] = [];
      for await (const chunk of await this.blobs.read(key, { start: offset, end }))
        parts.push(chunk as Buffer);
      return Buffer.concat(parts);
    };
    const result = await this.stripper.strip({ head, size: digests.size, rest, range });
    if (result.kind === 'clean') return undefined;
    const { patches } = result;

    // The original as stored, patched on its way through, in one stream; the original's
    // digests are computed on the way, so what was verified is what was copied.
    const originalSha256 = createHash('sha256').update(head);
    const originalMd5 = createHash('md5').update(head);
    const copy = new DigestStream();
    const body = new PassThrough();
    const target = strippedKeyFor(key);
    const feed = (async () => {
      body.write(patched(head, 0, patches));
      let at = head.length;
      if (digests.size > at) {
        for await (const chunk of await rest()) {
          originalSha256.update(chunk as Buffer);
          originalMd5.update(chunk as Buffer);
          const written = body.write(patched(chunk as Buffer, at, patches));
          at += (chunk as Buffer).length;
          if (!written) await new Promise((resolve) => body.once('drain', resolve));
        }
      }
      body.end();
    })();
    feed.catch((err: unknown) => body.destroy(err as Error));
    const source: Readable = pipeline(body, copy, () => {});
    await this.blobs.write(target, source, () => {
      const d = copy.digests();
      if (d.size !== digests.size) {
        throw new WharfError('SIZE_MISMATCH', 'The stored bytes changed while being copied.');
      }
      return { ...d, contentType };
    });
    await feed;
    const uploaded = {
      sha256: originalSha256.digest('hex'),
      md5: originalMd5.digest('hex'),
      size: digests.size,
    };
    if (uploaded.sha256 !== digests.sha256 || (!declaredOnly && uploaded.md5 !== digests.md5)) {
      await this.blobs.delete(target);
      throw new WharfError(
        'CHECKSUM_MISMATCH',
        'The SHA-256 of the received bytes does not match the declared one.',
        { algorithm: 'sha256' },
      );
    }
    return {
      storageKey: target,
      digests: copy.digests(),
      analysis: { hadGps: true, uploaded },
    };
  }
}

/** A copy of the bytes at [at, at + length) with the patches that reach them applied. */
export function patched(bytes: Buffer, at: number, patches: readonly Patch[]): Buffer {
  let out = bytes;
  for (const patch of patches) {
    const from = Math.max(at, patch.offset);
    const to = Math.min(at + bytes.length, patch.offset + patch.bytes.length);
    if (from >= to) continue;
    if (out === bytes) out = Buffer.from(bytes);
    patch.bytes.copy(out, from - at, from - patch.offset, to - patch.offset);
  }
  return out;
}
