import type { Clock } from './clock.js';
import { WharfError } from './errors.js';
import type { Upload } from './model.js';
import { type BlobStore, ObjectMissing, type Store } from './ports.js';
import { sealedKeyFor, uploadIdFromKey } from './storage-keys.js';
import type { Telemetry } from './telemetry.js';
import type { UploadKindHooks, UploadOutcome, UploadSettings } from './upload-types.js';
import type { UploadService } from './uploads.js';

/** Leftovers of writes (temp files, multipart uploads no upload runs) older than this are removed. */
const DEBRIS_AGE_MS = 3600_000;

/**
 * What each sweep does to uploads: ends those that can no longer complete (and frees their
 * bytes), completes those whose bytes arrived without a confirm, and removes storage debris.
 * Every node runs it; each step is safe beside the same step on another node.
 */
export class UploadSweep {
  constructor(
    private readonly uploads: UploadService,
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly clock: Clock,
    private readonly settings: Pick<UploadSettings, 'completionGraceMs'>,
    private readonly telemetry: Telemetry,
    /** UploadService's protocol hooks (see registerKind), read as each sweep runs. */
    private readonly kindHooks: ReadonlyMap<Upload['kind'], UploadKindHooks>,
  ) {}

  /**
   * Expires abandoned intents and frees their bytes; clears storage debris. A direct upload ends
   * once its lease has run out (its process died mid-body: see DirectUploadLeases), with no grace:
   * it has no confirm step to wait for.
   */
  async sweep(): Promise<{ expired: number; debris: number; reconciled: number }> {
    await this.uploads.endUnrecorded();
    const reconciled = await this.reconcile();
    // This process's own direct uploads first get a fresh lease, so that its sweep never ends one
    // it is streaming, whatever held its timer's renewals up. If that fails (the database away),
    // no lease is judged by this sweep: one of them may be this process's own.
    const renewed = await this.uploads.leases.renew().then(
      () => true,
      () => false,
    );
    const now = this.clock.now();
    let expired = 0;
    for (;;) {
      const stale = await this.store.listStaleUploads(
        now - this.settings.completionGraceMs,
        200,
        renewed ? now : undefined,
      );
      for (const upload of stale) {
        if (!(await this.store.expireUpload(upload.id, now))) continue;
        expired += 1;
        this.telemetry.uploadExpired(upload.kind);
        await this.freeStorage(upload);
      }
      if (stale.length < 200) break;
    }
    const inUse = (key: string, multipartId?: string) => this.runsLong(key, now, multipartId);
    let debris = await this.blobs.sweepIncomplete(now - DEBRIS_AGE_MS, inUse);
    for (const hooks of this.kindHooks.values())
      debris += (await hooks.debris?.(now - DEBRIS_AGE_MS, inUse)) ?? 0;
    this.telemetry.sweepFinished({ expired, debris, reconciled });
    return { expired, debris, reconciled };
  }

  /** What an upload that ended without an asset left in storage goes (unless an asset uses it). */
  private async freeStorage(upload: Upload): Promise<void> {
    await this.kindHooks.get(upload.kind)?.expire?.(upload);
    if ((await this.store.countAssetsWithStorageKey(upload.storageKey)) === 0) {
      await this.blobs.delete(upload.storageKey);
    }
    // A completion that died after sealing a copy (see settle), with a client that never
    // came back, left the copy where nothing else looks.
    if (upload.intent.rewritable) await this.uploads.recorder.deleteIfUnused(sealedKeyFor(upload.storageKey));
  }

  /**
   * The `free-upload` job: frees what an upload ended outside the sweep (by its token's
   * revocation, in the transaction that queued this) left in storage, as the sweep frees an
   * expired one's. A presigned PUT or form URL still takes a write until it expires (storage
   * cannot be told): what lands there then is freed by a `delete-object` job once it has.
   */
  async freeEnded(uploadId: string): Promise<void> {
    const upload = await this.store.getUpload(uploadId);
    if (upload?.status !== 'expired') return;
    if (upload.kind === 'presigned' || upload.kind === 'post') {
      await this.store.enqueueJobs([
        this.uploads.recorder.deleteObjectJob(upload.storageKey, upload.expiresAt + 60_000),
      ]);
    }
    await this.freeStorage(upload);
  }

  /**
   * Whether `key` is written by an upload that may still run (not debris): a multipart or
   * resumable upload, or a direct upload whose lease is live (its body still streams, for more
   * than the hour debris waits, perhaps, on S3 an open multipart upload all that time). Given
   * the id of a multipart upload in storage: whether that one is what such an upload writes.
   */
  private async runsLong(key: string, now: number, multipartId?: string): Promise<boolean> {
    const uploadId = uploadIdFromKey(key);
    const upload = uploadId ? await this.store.getUpload(uploadId) : undefined;
    if (upload?.storageKey !== key || upload.status !== 'pending') return false;
    if (upload.kind === 'direct') return now <= upload.expiresAt;
    // A multipart upload writes through the one multipart upload recorded for it: Wharf's own
    // create records the id it got back before the upload exists, and on S3 a client's (S3
    // signing) is recorded once, by its first signed step, and no URL is signed for any other
    // id (the local store, where the embedded endpoint records each create, names none). So
    // another one of its key is a stray: a create the SDK retried after its answer was lost (a
    // stalled store), or one the client made and never used. While no id is recorded, the
    // client's may still be coming: every one of them is claimed. Nothing else writes a
    // multipart upload's key (tus and direct uploads have keys of their own).
    if (upload.kind === 'multipart' && multipartId !== undefined && upload.multipartId !== null) {
      return upload.multipartId === multipartId && now <= this.uploads.completableUntil(upload);
    }
    return (
      (upload.kind === 'multipart' || upload.kind === 'tus' || upload.kind === 'rufh') &&
      now <= this.uploads.completableUntil(upload)
    );
  }

  /**
   * Completes uploads whose protocol has no confirm step (or whose client never confirmed)
   * once storage holds their bytes and they verify. Wrong bytes are dropped, as on confirm.
   */
  async reconcile(): Promise<number> {
    let completed = 0;
    // Paged: uploads still running (a day-long multipart upload) must not hide newer ones.
    let page: Upload[] = [];
    do {
      page = await this.store.listAutoCompletable(500, page.at(-1));
      completed += await this.reconcilePage(page);
    } while (page.length === 500);
    return completed;
  }

  private async reconcilePage(page: Upload[]): Promise<number> {
    let completed = 0;
    for (const upload of page) {
      if (await this.completeIfArrived(upload)) completed += 1;
    }
    return completed;
  }

  /**
   * Completes a pending upload that completes by itself if storage holds its bytes (and they
   * verify); undefined while they are missing, or when storage refuses them.
   */
  async completeIfArrived(upload: Upload): Promise<UploadOutcome | undefined> {
    try {
      const hooks = this.kindHooks.get(upload.kind);
      const ready = hooks?.reconcile
        ? await hooks.reconcile(upload)
        : (await this.blobs.head(upload.storageKey)) !== undefined;
      if (!ready) return undefined;
      return await this.uploads.completeUpload(upload);
    } catch (err) {
      // One upload storage cannot account for must not stop the others.
      if (err instanceof WharfError) return undefined;
      // The sweep read this upload pending a moment ago; the request that brought its last
      // byte may have completed it since, moving or (deduplicated) freeing the bytes the sweep
      // was about to read. Settled, or its bytes gone: nothing for the sweep to do. Any other
      // storage failure is the sweep's to report.
      if (err instanceof ObjectMissing) return undefined;
      if ((await this.store.getUpload(upload.id))?.status !== 'pending') return undefined;
      throw err;
    }
  }
}
