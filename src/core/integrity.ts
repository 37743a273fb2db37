/**
 * `wharf assets verify`: reads every stored asset back and checks its bytes against what
 * Wharf recorded when it verified the upload (size, SHA-256, MD5). Uploads are checked as
 * they arrive; this is the check for later: a disk that rots, a bucket restored from an older
 * copy, an operator's cleanup, a backup put back incomplete. It reads and hashes the bytes
 * themselves: the facts a store keeps beside an object (the local store's, S3's ETag) are
 * what would be wrong with it.
 */
import { pipeline } from 'node:stream/promises';
import { DigestStream } from './hashing.js';
import type { Asset, Digests } from './model.js';
import { type BlobStore, ObjectMissing, type Store } from './ports.js';

/** How a stored asset differs from its record. */
export type IntegrityProblemKind = 'missing' | 'size_mismatch' | 'checksum_mismatch';

export interface IntegrityProblem {
  kind: IntegrityProblemKind;
  asset: Asset;
  /** What storage holds; absent when it holds nothing under the asset's key. */
  found?: Digests;
}

export interface IntegrityReport {
  /** Assets whose bytes were read and compared. */
  checked: number;
  /** Bytes read to do it. */
  bytes: number;
  /** Assets the server is still verifying (stored where storage could not hash): not checked. */
  skipped: number;
  problems: IntegrityProblem[];
}

export interface IntegrityOptions {
  /** Called as each problem is found (a long check reports as it goes). */
  onProblem?: (problem: IntegrityProblem) => void;
}

const PAGE = 200;
/** Reads at a time: enough to overlap an S3 store's latency, few enough to leave the disk to the server. */
const CONCURRENCY = 4;

export class IntegrityService {
  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
  ) {}

  /** Checks every asset of `accountIds`, a page at a time; storage failing (not a missing object) is thrown. */
  async verify(accountIds: string[], options: IntegrityOptions = {}): Promise<IntegrityReport> {
    const report: IntegrityReport = { checked: 0, bytes: 0, skipped: 0, problems: [] };
    for (const accountId of accountIds) {
      let cursor: string | undefined;
      do {
        const page = await this.store.listAssets(accountId, { limit: PAGE, cursor });
        const due = page.assets.filter((asset) => asset.status === 'ready');
        report.skipped += page.assets.length - due.length;
        await eachLimited(due, CONCURRENCY, async (asset) => {
          const { problem, read } = await this.check(asset);
          report.bytes += read;
          if (problem === undefined) {
            report.checked += 1;
            return;
          }
          // Deleted, or replaced, while it was being read: nothing is wrong with what remains.
          const now = await this.store.getAssetById(asset.id);
          if (now?.status !== 'ready' || now.storageKey !== asset.storageKey) return;
          report.checked += 1;
          report.problems.push(problem);
          options.onProblem?.(problem);
        });
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
    }
    return report;
  }

  private async check(asset: Asset): Promise<{ problem?: IntegrityProblem; read: number }> {
    const digest = new DigestStream();
    try {
      // pipeline(): a read that fails half-way fails the check instead of leaving it waiting.
      await pipeline(await this.blobs.read(asset.storageKey), digest, async (digested) => {
        for await (const _ of digested) {
          // Drain: the digests are all this wants.
        }
      });
    } catch (err) {
      if (err instanceof ObjectMissing) return { problem: { kind: 'missing', asset }, read: 0 };
      throw err;
    }
    const found = digest.digests();
    if (found.size !== asset.size)
      return { problem: { kind: 'size_mismatch', asset, found }, read: found.size };
    // An MD5 is '' only while it is unknown (the asset was still being verified); the SHA-256 always counts.
    if (found.sha256 !== asset.sha256 || (asset.md5 !== '' && found.md5 !== asset.md5)) {
      return { problem: { kind: 'checksum_mismatch', asset, found }, read: found.size };
    }
    return { read: found.size };
  }
}

/** Runs `work` over `items`, at most `limit` at once; the first failure is thrown once all have settled. */
async function eachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!);
  });
  const results = await Promise.allSettled(lanes);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
