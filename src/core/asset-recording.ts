import { AFTER_COMMIT_CHECK_MS, freeAssetJob } from './assets.js';
import { checkCompletion, viewThrough } from './authorization.js';
import type { Clock } from './clock.js';
import { checkDigests } from './digests.js';
import { isWharfError, WharfError } from './errors.js';
import { failureOf, type UploadEnding } from './events.js';
import { DigestStream } from './hashing.js';
import type { IdSource } from './ids.js';
import type { Asset, Digests, ObjectInfo, Upload } from './model.js';
import type { BlobStore, FinishResult, NewJob, Store } from './ports.js';
import type { Replacement } from './privacy.js';
import { stopwatch, type Telemetry } from './telemetry.js';
import type { UploadOutcome } from './upload-types.js';

// What every upload flow ends in: verified bytes become an asset (or are refused, and go), and the
// jobs that finish the work later (verifying a large file's declared SHA-256, freeing a URL's key
// once the URL has expired). Out of UploadService, which decides when an upload may complete;
// this decides what completing it records.

/** The job queued for every new asset: sniffing, image facts, EXIF location. */
export const PROCESS_ASSET_JOB = 'process-asset';
/** The job that deletes an object once no URL can write it any more (if no asset uses it). */
export const DELETE_OBJECT_JOB = 'delete-object';
/** The job that hashes a `verifying` asset's bytes and accepts or drops it. */
export const VERIFY_ASSET_JOB = 'verify-asset';

/** See AssetRecorder.setReplacementStep. */
export type ReplacementStep = (
  accountId: string,
  key: string,
  verified: Digests,
  declaredOnly: boolean,
  contentType: string,
) => Promise<Replacement | undefined>;

export interface FinishOptions {
  /** Time since completion began (for protocols whose completion verifies stored bytes). */
  elapsed?: () => number;
  /** Where the verified bytes are, when not at the upload's own key (a sealed copy). */
  storageKey?: string | undefined;
  /** Storage could not attest the SHA-256: record the asset as `verifying` and queue the check. */
  verifying?: boolean;
  /** The type storage recorded, when the protocol let the client choose it at upload time. */
  contentType?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
}

/**
 * Records assets from verified uploads, refuses uploads whose bytes cannot be kept, and runs the
 * jobs that check or free bytes afterwards.
 */
export class AssetRecorder {
  private replacement: ReplacementStep | undefined;

  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly clock: Clock,
    private readonly ids: IdSource,
    private readonly telemetry: Telemetry,
    /** Records how a direct upload ended (see UploadService.endDirect). */
    private readonly endDirect: (uploadId: string, ending: UploadEnding) => Promise<void>,
  ) {}

  /**
   * A step between verification and the asset that may put other bytes in the upload's place
   * (src/core/privacy.ts: a copy without a GPS position). The upload's own object is deleted
   * once the asset is recorded.
   */
  setReplacementStep(step: ReplacementStep): void {
    this.replacement = step;
  }

  /** The `delete-object` job: frees a key no asset uses. */
  async deleteIfUnused(key: string): Promise<void> {
    if ((await this.store.countAssetsWithStorageKey(key)) === 0) await this.blobs.delete(key);
  }

  /**
   * The `verify-asset` job: hashes the stored bytes of a `verifying` asset. A match makes it
   * ready (and queues processing); a mismatch deletes the asset and frees the bytes, so a
   * wrong file never becomes readable however the client declared it.
   */
  async verifyAsset(assetId: string, uploadMd5: string | null): Promise<'ready' | 'rejected' | 'gone'> {
    const asset = await this.store.getAssetById(assetId);
    if (asset?.status !== 'verifying') return 'gone';
    const actual = await this.attest(asset.storageKey, { size: asset.size });
    const now = this.clock.now();
    const matches =
      actual.size === asset.size &&
      actual.sha256 === asset.sha256 &&
      (asset.md5 === '' || actual.md5 === asset.md5) &&
      (uploadMd5 === null || actual.md5 === uploadMd5);
    if (matches) {
      // The verify job and a completion deduplicating onto the asset may both check it: the one
      // that makes it ready queues its processing, once (one asset.processed, one webhook).
      if (!(await this.store.markAssetVerified(asset.id, actual.md5, now))) return 'ready';
      await this.store.enqueueJobs([
        { id: this.ids.id(), kind: PROCESS_ASSET_JOB, payload: { assetId: asset.id }, runAt: now },
      ]);
      return 'ready';
    }
    // What it kept is freed by the job queued with the deletion, or at once by the caller.
    await this.store.deleteAsset(asset.accountId, asset.id, now, 'rejected', [
      freeAssetJob(this.ids.id(), asset, now),
    ]);
    return 'rejected';
  }

  /** The size and digests of stored bytes; hashes them when storage cannot say. */
  async attest(key: string, info: ObjectInfo): Promise<Digests> {
    if (info.sha256 && info.md5) return { size: info.size, sha256: info.sha256, md5: info.md5 };
    const digest = new DigestStream();
    const stream = await this.blobs.read(key);
    for await (const _ of stream.pipe(digest)) {
      // Drain: the digest is all we want.
    }
    const read = digest.digests();
    this.telemetry.bytesReadBack(read.size);
    return read;
  }

  async finish(
    upload: Upload,
    verified: Digests,
    {
      verifying: declaredOnly = false,
      contentType,
      metadata,
      storageKey: uploadedKey = upload.storageKey,
      elapsed = stopwatch(),
    }: FinishOptions = {},
  ): Promise<UploadOutcome> {
    const type = contentType ?? upload.contentType;
    try {
      checkCompletion(upload.intent, verified.size, type);
    } catch (err) {
      await this.refuse(upload, uploadedKey, err);
      throw err;
    }
    let replaced: Replacement | undefined;
    try {
      replaced = await this.replacement?.(upload.accountId, uploadedKey, verified, declaredOnly, type);
    } catch (err) {
      if (!(err instanceof WharfError)) throw err;
      await this.refuse(upload, uploadedKey, err);
      throw err;
    }
    const storageKey = replaced?.storageKey ?? uploadedKey;
    const digests = replaced?.digests ?? verified;
    // A replacement was made from bytes it hashed itself: nothing is left to verify.
    const verifying = declaredOnly && !replaced;
    const now = this.clock.now();
    let candidate: Asset = {
      id: this.ids.id(),
      accountId: upload.accountId,
      name: upload.name,
      contentType: type,
      size: digests.size,
      sha256: digests.sha256,
      md5: digests.md5,
      storageKey: storageKey,
      status: verifying ? 'verifying' : 'ready',
      seq: upload.seq ?? 0,
      access: upload.intent.access ?? 'private',
      processing: 'pending',
      analysis: replaced?.analysis ?? {},
      metadata: { ...metadata, ...upload.intent.metadata },
      subject: upload.intent.subject ?? null,
      createdAt: now,
      updatedAt: now,
    };
    // Bytes this completion leaves unused are freed right after it commits; the same frees are
    // queued in its transaction, so a process that dies in between still frees them.
    const unused = (keys: string[]) =>
      keys.map((key) => this.deleteObjectJob(key, now + AFTER_COMMIT_CHECK_MS));
    const replacedKeys = replaced ? [uploadedKey] : [];
    const jobsFor = (asset: Asset): NewJob[] => [
      ...this.afterUrlExpiry(upload),
      ...unused(replacedKeys),
      asset.status === 'verifying'
        ? {
            id: this.ids.id(),
            kind: VERIFY_ASSET_JOB,
            payload: { assetId: asset.id, md5: upload.md5 },
            runAt: now,
          }
        : { id: this.ids.id(), kind: PROCESS_ASSET_JOB, payload: { assetId: asset.id }, runAt: now },
    ];
    let result: Awaited<ReturnType<Store['finishUpload']>>;
    try {
      for (let attempt = 1; ; attempt++) {
        result = await this.store.finishUpload(upload.id, candidate, now, jobsFor(candidate), [
          ...this.afterUrlExpiry(upload),
          ...unused([...new Set([storageKey, ...replacedKeys])]),
        ]);
        if (!result.unverified) break;
        if (attempt === 3) {
          throw new WharfError(
            'SERVICE_UNAVAILABLE',
            'A file with this content is still being verified; retry shortly.',
          );
        }
        candidate = await this.verifyBeforeDeduplicating(upload, storageKey, candidate, result.asset);
      }
    } catch (err) {
      // The account's quota, its file size limit or the token's budget cannot take the file (each
      // as it is now: lowered since the upload began, it applies), or its token was revoked
      // while it was under way: it is not kept.
      const refused = refusedOnRecording(err);
      if (refused) {
        await this.refuse(upload, uploadedKey, err);
        if (replaced) await this.blobs.delete(storageKey);
      }
      // Ended while its bytes were being completed (aborted, cancelled, or expired by the
      // sweep, which had found no object yet): they are nobody's now, and no later sweep
      // looks at an upload that is no longer pending. Freed here, unless an asset uses them.
      if (isWharfError(err, 'UPLOAD_EXPIRED')) {
        for (const key of new Set([uploadedKey, storageKey])) {
          if ((await this.store.countAssetsWithStorageKey(key)) === 0) await this.blobs.delete(key);
        }
      } else if (upload.kind === 'direct' && !refused) {
        await this.abandonDirect(upload, [uploadedKey, storageKey], err);
      }
      throw err;
    }
    if (result.completedNow) this.telemetry.uploadCompleted(completion(upload, result, now, elapsed));
    if (replaced) {
      // The upload's own bytes were replaced: never kept once the completion is recorded.
      if (result.completedNow) await this.blobs.delete(uploadedKey);
      if (result.asset.storageKey !== storageKey) await this.blobs.delete(storageKey);
    } else if (result.completedNow && result.deduplicated) {
      // The account already holds these bytes under the existing asset.
      await this.blobs.delete(storageKey);
    }
    return isolatedOutcome(
      upload,
      { asset: result.asset, deduplicated: result.deduplicated, version: result.version },
      now,
    );
  }

  /**
   * Before one file's bytes may stand for another's (deduplication), both are verified: a
   * candidate whose SHA-256 was only declared is hashed now (a mismatch refuses it, as its verify
   * job would), and a `verifying` asset holding that SHA-256 is verified now (a mismatch deletes
   * it, and this upload then becomes the asset). Why not deduplicate at once: onto an unverified
   * asset, verified bytes would be freed and then lost with it if it is rejected; from unverified
   * bytes, a caller that knows only a file's SHA-256 and size would be given the file.
   */
  private async verifyBeforeDeduplicating(
    upload: Upload,
    key: string,
    candidate: Asset,
    held: Asset,
  ): Promise<Asset> {
    let checked = candidate;
    if (candidate.status === 'verifying') {
      const actual = await this.attest(key, { size: candidate.size });
      try {
        if (actual.size !== candidate.size) {
          throw new WharfError(
            'SIZE_MISMATCH',
            `Declared ${candidate.size} bytes; storage holds ${actual.size}.`,
          );
        }
        checkDigests(actual, { sha256: candidate.sha256, md5: upload.md5 });
      } catch (err) {
        await this.refuse(upload, key, err);
        throw err;
      }
      checked = { ...candidate, md5: actual.md5, status: 'ready' };
    }
    if (held.status === 'verifying') await this.verifyAsset(held.id, null);
    return checked;
  }

  /**
   * A direct upload whose completion could not be recorded (SQLITE_FULL on a full disk, an
   * outage): it has no later completion to wait for, so its bytes go at once (first: on a
   * full disk they are the room), unless an asset turns out to use them after all (a commit
   * whose answer was lost), and the upload ends. An ending the database cannot take now (it is
   * down or full) the next sweep records (see unrecorded); bytes that cannot be deleted now wait
   * for the sweep once the upload expires.
   */
  private async abandonDirect(upload: Upload, keys: string[], err: unknown): Promise<void> {
    this.telemetry.uploadFailed('direct', err);
    for (const key of new Set(keys)) {
      const unused = await this.store.countAssetsWithStorageKey(key).then(
        (n) => n === 0,
        () => false,
      );
      if (unused) await this.blobs.delete(key).catch(() => undefined);
    }
    await this.endDirect(upload.id, failureOf(err));
  }

  /** A completion that cannot be accepted: the upload ends (what it held is given back) and its bytes go. */
  async refuse(upload: Upload, storageKey: string, err: unknown): Promise<void> {
    this.telemetry.uploadFailed(upload.kind, err);
    await this.store.expireUpload(upload.id, this.clock.now(), failureOf(err));
    await this.blobs.delete(storageKey);
    const cleanup = this.afterUrlExpiry(upload);
    if (cleanup.length > 0) await this.store.enqueueJobs(cleanup);
  }

  /**
   * A presigned PUT or POST URL outlives its upload: storage takes a write to it again once
   * Wharf has deleted the object there (content the account already held, refused bytes, an
   * asset deleted while the URL lives), and nothing would ever free those bytes or count them.
   * Once the URL has expired, its key is freed unless an asset uses it. (Rewritable URLs get
   * the same job from settle.)
   */
  private afterUrlExpiry(upload: Upload): NewJob[] {
    if ((upload.kind !== 'presigned' && upload.kind !== 'post') || upload.intent.rewritable) return [];
    return [this.deleteObjectJob(upload.storageKey, upload.expiresAt + 60_000)];
  }

  /** The `delete-object` job for `key`, due at `at`. */
  deleteObjectJob(key: string, at: number): NewJob {
    return { id: this.ids.id(), kind: DELETE_OBJECT_JOB, payload: { key }, runAt: at };
  }
}

/**
 * The refusals finishUpload decides in its transaction, which record nothing: the account's
 * quota and its file size limit (both as they are at completion), the token's byte budget, and
 * the token revoked (or its minting key) before the upload was recorded (UNAUTHORIZED, what any
 * request with it is told then). The upload ends with them.
 */
function refusedOnRecording(err: unknown): boolean {
  return (
    isWharfError(err, 'QUOTA_EXCEEDED') ||
    isWharfError(err, 'FILE_TOO_LARGE') ||
    isWharfError(err, 'TOKEN_BYTES_EXHAUSTED') ||
    isWharfError(err, 'UNAUTHORIZED')
  );
}

/**
 * What an isolated caller (see authorization.ts) is told of its completed upload: content the
 * account already held reads as created, through the view of its own upload.
 */
export function isolatedOutcome(upload: Upload, outcome: UploadOutcome, at: number): UploadOutcome {
  if (!upload.intent.isolated || !outcome.deduplicated) return outcome;
  return { ...outcome, asset: viewThrough(outcome.asset, upload, at), deduplicated: false, through: upload };
}

/** What telemetry learns of a completion this call did. */
function completion(upload: Upload, result: FinishResult, now: number, elapsed: () => number) {
  return {
    flow: upload.kind,
    deduplicated: result.deduplicated,
    bytes: result.asset.size,
    uploadSeconds: Math.max(0, now - upload.createdAt) / 1000,
    completionSeconds: elapsed(),
  };
}
