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

export type StripResult = { kind: 'clean' } | { kind: 'stripped'; head: Buffer };

/** Finds and removes locations in the first bytes of an image, keeping their length. */
export interface LocationStripper {
  readonly headBytes: number;
  /** Throws LOCATION_NOT_REMOVABLE when a location is there but cannot be removed. */
  strip(head: Buffer, size: number): Promise<StripResult>;
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
    const result = await this.stripper.strip(head, digests.size);
    if (result.kind === 'clean') return undefined;

    // The patched head, then the rest of the original as stored, in one stream; the original's
    // digests are computed on the way, so what was verified is what was copied.
    const originalSha256 = createHash('sha256').update(head);
    const originalMd5 = createHash('md5').update(head);
    const copy = new DigestStream();
    const body = new PassThrough();
    const target = strippedKeyFor(key);
    const feed = (async () => {
      body.write(result.head);
      if (digests.size > head.length) {
        const rest = await this.blobs.read(key, { start: head.length, end: digests.size - 1 });
        for await (const chunk of rest) {
          originalSha256.update(chunk as Buffer);
          originalMd5.update(chunk as Buffer);
          if (!body.write(chunk)) await new Promise((resolve) => body.once('drain', resolve));
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
