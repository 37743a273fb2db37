import type { AssetRecorder } from './asset-recording.js';
import { isolatedOutcome } from './asset-recording.js';
import type { Clock } from './clock.js';
import { checkDigests, parseDigest } from './digests.js';
import { WharfError } from './errors.js';
import { endedRefusal } from './events.js';
import type { IdSource } from './ids.js';
import type { KeyedQueue } from './keyed-queue.js';
import type { Digests, ObjectInfo, Upload } from './model.js';
import { validateContentType } from './names.js';
import { type BlobStore, ObjectMissing, type Store } from './ports.js';
import { sealedKeyFor } from './storage-keys.js';
import { stopwatch, type Telemetry } from './telemetry.js';
import type { CompletionClaims, UploadOutcome, UploadSettings } from './upload-types.js';

/**
 * How long a node may hold a rewritable upload's completion (see heldAcrossNodes): far longer than
 * hashing the largest single PUT takes, and short enough that a node that died holding it does
 * not keep the upload from completing for long.
 */
const SEAL_LEASE_MS = 15 * 60_000;

/**
 * Completion: what turns a pending upload whose bytes storage holds into an asset, whichever
 * protocol brought them. Its own module because every flow ends here (confirms, the sweep's
 * reconciliation, multipart, tus, RUFH) and it is where bytes are checked against everything
 * declared and claimed; UploadService keeps the flows' beginnings and hands completions here.
 */
export class UploadCompletion {
  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly clock: Clock,
    private readonly ids: IdSource,
    private readonly settings: Pick<UploadSettings, 'inlineVerifyMaxBytes'>,
    private readonly telemetry: Telemetry,
    private readonly recorder: AssetRecorder,
    /** The per-storage-key line that PUTs, forms and completions take (UploadService.holdOpen). */
    private readonly sealing: KeyedQueue,
    /** UploadService.assertNotEnded: whether an upload may still be completed, judged at `at`. */
    private readonly assertNotEnded: (upload: Upload, at: number) => void,
  ) {}

  /**
   * Completes an upload whichever way it arrived: idempotent, and checks what storage
   * holds against everything declared and claimed. Also what reconciliation runs. It asks
   * nobody: a caller's request goes through `complete` (or `lookAt`), which check who asks.
   * `received`: the digests of the bytes as they arrived, from the storage that received them
   * (a tus upload hashed on its way to S3), used when storage itself cannot attest them, so
   * completion reads nothing back. `at`: when the completion was asked (see assertNotEnded:
   * an upload that waits for its client's confirm ends by time, whoever asks).
   */
  async completeUpload(
    upload: Upload,
    claims: CompletionClaims = {},
    received?: Digests,
    at = this.clock.now(),
  ): Promise<UploadOutcome> {
    const elapsed = stopwatch();
    const claimed = {
      sha256: claims.sha256 ? parseDigest('sha256', claims.sha256, 'sha256') : null,
      md5: claims.md5 ? parseDigest('md5', claims.md5, 'md5') : null,
    };
    if (upload.status === 'completed') {
      const outcome = await this.completedOutcome(upload);
      // What the client sent, which a stored copy without its GPS position no longer is.
      const sent = outcome.asset.analysis.uploaded ?? outcome.asset;
      // A confirm that contradicts the bytes is refused even after the fact.
      if (claims.size !== undefined && claims.size !== sent.size) {
        throw new WharfError('SIZE_MISMATCH', `Claimed ${claims.size} bytes; the file has ${sent.size}.`);
      }
      checkDigests(sent, claimed);
      return outcome;
    }
    if (upload.status === 'expired') throw endedRefusal(upload);
    if (upload.kind === 'direct') {
      throw new WharfError(
        'UPLOAD_NOT_PENDING',
        'A direct upload completes by itself when its request ends.',
      );
    }
    // Pending, but past the grace: left as it is for the sweep, which ends it and frees its bytes.
    this.assertNotEnded(upload, at);
    // Held while the bytes are checked and recorded: see holdOpen.
    return this.sealing.run(upload.storageKey, () => {
      const finish = () => this.checkAndFinish(upload, claims, claimed, received, elapsed);
      return upload.intent.rewritable ? this.heldAcrossNodes(upload, finish) : finish();
    });
  }

  /**
   * A rewritable upload's completion, held across nodes by a lease in the database. Its seal
   * copies what the URL's key holds at that moment (see settle), and the URL may be written again
   * meanwhile: a completion on another node sealing a second PUT would replace the bytes this one
   * is hashing and recording (a hunt recorded one file's SHA-256 for another's bytes). `sealing`
   * holds only this process's. The other node's request is asked to retry; by then it finds the
   * upload complete.
   */
  private async heldAcrossNodes<T>(upload: Upload, work: () => Promise<T>): Promise<T> {
    const name = `seal:${upload.id}`;
    const owner = this.ids.id();
    const now = this.clock.now();
    if (!(await this.store.acquireLock(name, owner, now + SEAL_LEASE_MS, now))) {
      throw new WharfError('SERVICE_UNAVAILABLE', 'Another node is completing this upload; retry shortly.');
    }
    try {
      return await work();
    } finally {
      await this.store.releaseLock(name, owner).catch(() => undefined);
    }
  }

  /** The part of completeUpload that reads the stored bytes, checks them and records the asset. */
  private async checkAndFinish(
    upload: Upload,
    claims: CompletionClaims,
    claimed: { sha256: string | null; md5: string | null },
    received: Digests | undefined,
    elapsed: () => number,
  ): Promise<UploadOutcome> {
    // Another completion may have ended it while this one waited for the key.
    const current = await this.store.getUpload(upload.id);
    if (current && current.status !== 'pending') {
      // Ended meanwhile (an abort, perhaps on another node, after this one's caller had stored or
      // composed the bytes): no sweep looks at an ended upload's key again, so they go now.
      if (current.status === 'expired') await this.recorder.deleteIfUnused(upload.storageKey);
      return this.completeUpload(current, claims, received);
    }
    const settled = await this.settle(upload);
    const key = settled.key;
    let info = settled.info;
    if (info && received && received.size === info.size) {
      info = { ...info, sha256: info.sha256 ?? received.sha256, md5: info.md5 ?? received.md5 };
    }
    const now = this.clock.now();
    if (!info) {
      if (now > upload.expiresAt) throw new WharfError('UPLOAD_EXPIRED', 'This upload has expired.');
      throw new WharfError('UPLOAD_INCOMPLETE', 'No bytes have been uploaded for this upload yet.');
    }
    // Storage attests size (and maybe MD5) but not the SHA-256: a large file whose SHA-256
    // was declared is recorded now and hashed by a job; anything claimed now is hashed now.
    const deferred =
      !info.sha256 &&
      upload.sha256 !== null &&
      info.size > this.settings.inlineVerifyMaxBytes &&
      !claimed.sha256 &&
      !claimed.md5;
    let digests: Digests;
    try {
      digests = deferred
        ? { size: info.size, sha256: upload.sha256!, md5: info.md5 ?? '' }
        : await this.recorder.attest(key, info);
    } catch (err) {
      if (!(err instanceof ObjectMissing)) throw err;
      // Gone between the look and the read: ended meanwhile by a cancel or an abort on another
      // node (`sealing` orders them only within this process), which freed the bytes. Answered
      // as that ending says, as if it had come first (a hunt saw 500s here).
      const current = await this.store.getUpload(upload.id);
      if (current && current.status !== 'pending') return this.completeUpload(current, claims, received);
      throw new WharfError('UPLOAD_INCOMPLETE', 'No bytes have been uploaded for this upload yet.');
    }
    try {
      refuseEncoded(info);
      if (upload.size !== null && digests.size !== upload.size) {
        throw new WharfError(
          'SIZE_MISMATCH',
          `Declared ${upload.size} bytes; storage holds ${digests.size}.`,
        );
      }
      if (claims.size !== undefined && digests.size !== claims.size) {
        throw new WharfError('SIZE_MISMATCH', `Claimed ${claims.size} bytes; storage holds ${digests.size}.`);
      }
      checkDigests(digests, {
        // A RUFH append may declare the SHA-256 after the upload was made (see UploadIntent.reprSha256).
        sha256: upload.sha256 ?? upload.intent.reprSha256 ?? null,
        md5: deferred && !info.md5 ? null : upload.md5,
      });
      checkDigests(digests, claimed);
    } catch (err) {
      // Wrong bytes are never kept. A single PUT or form may be sent again while the intent
      // is open; a multipart upload's parts went into what was just refused, so nothing is
      // left to complete: it ends now (upload.failed, its reservation returned).
      if (upload.kind === 'multipart') {
        await this.recorder.refuse(upload, key, err);
        throw err;
      }
      this.telemetry.uploadFailed(upload.kind, err);
      await this.blobs.delete(key);
      // A form's file held its size from the moment it arrived (holdArrived). With the file gone
      // the form holds nothing again, as before it was sent: otherwise bytes nobody stores kept
      // blocking the quota and the token's max_bytes for the form's whole day (a hunt's refused
      // FileSpin register left QUOTA_EXCEEDED behind). A form sent again is held again then.
      // Still under the key's seal (see holdOpen), so no new file's hold is given back here.
      if (upload.kind === 'post') await this.store.holdArrived(upload.id, { quota: 0, token: 0 });
      throw err;
    }
    return this.recorder.finish(upload, digests, {
      elapsed,
      storageKey: key,
      verifying: deferred,
      // Protocols where the client picks the type as it writes (forms, S3 clients' multipart).
      contentType:
        upload.kind === 'post' || upload.kind === 'multipart'
          ? formContentType(upload, info.contentType)
          : undefined,
      metadata: claims.metadata,
    });
  }

  /**
   * Where a pending upload's bytes are to be checked. A URL that storage cannot make
   * write-once could replace them after they were verified, so they are first copied to a
   * key no URL names, and the URL's key is deleted (again once the URL has expired, by a
   * job, in case the client wrote to it after this). A retry after a crash finds the copy.
   */
  private async settle(upload: Upload): Promise<{ key: string; info: ObjectInfo | undefined }> {
    if (!upload.intent.rewritable || !this.blobs.copy) {
      return { key: upload.storageKey, info: await this.blobs.head(upload.storageKey) };
    }
    const sealed = sealedKeyFor(upload.storageKey);
    if (await this.blobs.head(upload.storageKey)) {
      try {
        await this.blobs.copy(upload.storageKey, sealed);
      } catch (err) {
        // Gone between the look and the copy: a completion of the same upload running beside
        // this one (two nodes, a client's retry) sealed it first. Its copy is what counts.
        if (!(err instanceof ObjectMissing)) throw err;
      }
      await this.blobs.delete(upload.storageKey);
      await this.store.enqueueJobs([
        this.recorder.deleteObjectJob(upload.storageKey, upload.expiresAt + 60_000),
      ]);
    }
    return { key: sealed, info: await this.blobs.head(sealed) };
  }

  private async completedOutcome(upload: Upload): Promise<UploadOutcome> {
    const asset = upload.assetId ? await this.store.getAsset(upload.accountId, upload.assetId) : undefined;
    if (!asset) throw new WharfError('NOT_FOUND', 'The asset of this upload has since been deleted.');
    return isolatedOutcome(
      upload,
      { asset, deduplicated: upload.deduplicated },
      upload.completedAt ?? asset.createdAt,
    );
  }
}

/**
 * The type of a POST form's file: the one settled when the form was made, else (a form whose
 * policy let the client choose) the one the form sent, checked like any declared type; an
 * unusable one falls back to the intent's.
 */
export function formContentType(upload: Upload, sent: string | undefined): string {
  // S3 labels an untyped object binary/octet-stream: that says nothing the intent doesn't.
  if (upload.intent.boundType || sent === undefined || sent === 'binary/octet-stream') {
    return upload.contentType;
  }
  try {
    return validateContentType(sent);
  } catch {
    return upload.contentType;
  }
}

/**
 * Bytes a client stored in a Content-Encoding (a presigned PUT straight to a bucket with
 * `Content-Encoding: gzip`, which the bucket records) are not the file's own: stored as they are
 * under the file's type, they would read as garbage, and a bucket serving them itself would decode
 * them for some readers and not others. Refused like every other upload route's encoded body.
 */
function refuseEncoded(info: ObjectInfo): void {
  const codings = (info.contentEncoding ?? '')
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return;
  throw new WharfError(
    'UNSUPPORTED_MEDIA_TYPE',
    `The bytes were stored with Content-Encoding ${codings.join(', ')}, which Wharf does not decode: PUT the file's own bytes, without Content-Encoding.`,
  );
}
