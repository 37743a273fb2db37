import { DELETE_OBJECT_JOB } from './asset-recording.js';
import { requireScope } from './authorization.js';
import type { Clock } from './clock.js';
import { isWharfError, WharfError } from './errors.js';
import type { IdSource } from './ids.js';
import type { Principal, Upload } from './model.js';
import type { MultipartService } from './multipart.js';
import type { Store } from './ports.js';
import type { RufhService } from './resumable-http.js';
import { sealedKeyFor } from './storage-keys.js';
import type { UploadService } from './uploads.js';

/**
 * Runs a resumable (tus, RUFH) upload's cancel while holding that upload's lock across nodes, as
 * its own protocol's DELETE does. The lock is the HTTP layer's (tus.io's Locker), so it is passed
 * in; without one (no resumable endpoint is served) nothing else can be writing the upload.
 */
export type ResumableHold = (upload: Upload, work: () => Promise<void>) => Promise<void>;

const unheld: ResumableHold = (_upload, work) => work();

/**
 * Cancelling a pending upload through the native API (`DELETE /v1/uploads/{id}`), whatever its
 * kind. Why: a presigned upload an app decides not to send kept what it reserved (the account's
 * quota, its token's bytes and files, an open-upload slot) until it expired, up to a day later.
 * The upload ends at once with upload.cancelled, and Store.expireUpload gives back everything it
 * held in that same transaction; its bytes go.
 *
 * Each kind ends the way its own protocol ends it, in the same line as its writes and
 * completions, so a cancel racing them leaves one outcome: a multipart upload through its abort,
 * a tus or RUFH upload through its termination (under its lock, see ResumableHold), a single PUT
 * or form here, in its storage key's line. Across nodes the database decides: an upload ends (or
 * completes) only while it is pending.
 */
export class UploadCancellation {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly ids: IdSource,
    private readonly uploads: UploadService,
    private readonly multipart: MultipartService,
    private readonly rufh: RufhService,
  ) {}

  /**
   * Ends the upload. Cancelling one that already ended without an asset (cancelled, expired,
   * failed) does nothing, so a client may retry a cancel whose answer it lost; a completed one
   * is UPLOAD_NOT_PENDING (its asset is deleted as an asset). The caller's sight of the upload
   * is checked as for its completion: another's reads as missing.
   */
  async cancel(principal: Principal, uploadId: string, hold: ResumableHold = unheld): Promise<void> {
    requireScope(principal, 'upload');
    const upload = await this.uploads.get(principal, uploadId);
    if (upload.status === 'completed') throw completed();
    if (upload.status === 'expired') return;
    switch (upload.kind) {
      case 'multipart':
        return this.multipart.abort(principal, uploadId);
      case 'tus':
      case 'rufh':
        return hold(upload, () => this.rufh.cancel(upload)).catch((err: unknown) => {
          // Ended while this waited for the lock (a DELETE of its protocol, the sweep).
          if (!isWharfError(err, 'UPLOAD_EXPIRED')) throw err;
        });
      case 'direct':
        // Its bytes are the request's body: the request ending is its only way to end. One whose
        // request ended here but whose ending the database could not take then is ended now.
        if (await this.uploads.endIfUnrecorded(upload.id)) return;
        throw new WharfError(
          'UPLOAD_NOT_PENDING',
          'A direct upload ends with its request: close the request to cancel it.',
        );
      case 'presigned':
      case 'post':
        return this.uploads.inLineOf(upload, () => this.endSingle(upload));
    }
  }

  /**
   * A single PUT or form. Wharf's own endpoint refuses bytes for an ended upload, but a bucket
   * takes a PUT or form to the URL's key until the URL expires: what lands there is freed then
   * by a `delete-object` job (it frees nothing an asset uses), queued before the upload ends so
   * no crash in between leaves such bytes to nobody.
   */
  private async endSingle(upload: Upload): Promise<void> {
    await this.store.enqueueJobs([
      {
        id: this.ids.id(),
        kind: DELETE_OBJECT_JOB,
        payload: { key: upload.storageKey },
        runAt: upload.expiresAt + 60_000,
      },
    ]);
    if (!(await this.store.expireUpload(upload.id, this.clock.now(), { reason: 'cancelled' }))) {
      // Ended meanwhile: completed (on another node), or ended without an asset.
      if ((await this.store.getUpload(upload.id))?.status === 'completed') throw completed();
      return;
    }
    // What arrived is nobody's now, and no sweep looks at an ended upload's key again. A rewritable
    // URL's completion may have sealed a copy before it found the upload ended (see settle).
    await this.uploads.recorder.deleteIfUnused(upload.storageKey);
    if (upload.intent.rewritable) await this.uploads.recorder.deleteIfUnused(sealedKeyFor(upload.storageKey));
  }
}

function completed(): WharfError {
  return new WharfError('UPLOAD_NOT_PENDING', 'This upload has already been completed; delete its asset.');
}
