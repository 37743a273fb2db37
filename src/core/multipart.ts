import type { Readable } from 'node:stream';
import { requireScope, seesWholeAccount } from './authorization.js';
import type { Clock } from './clock.js';
import { checkAgainstHeld, compositeEtag, parseDigest } from './digests.js';
import { isWharfError, WharfError } from './errors.js';
import { KeyedQueue } from './keyed-queue.js';
import type { Asset, ObjectInfo, Principal, Upload, UploadIntent } from './model.js';
import { validateContentType, validateFileName } from './names.js';
import {
  type BlobStore,
  MULTIPART_LIMITS,
  type PartReference,
  type PresignedRequest,
  type Store,
  type StoredPart,
} from './ports.js';
import type { UploadOutcome } from './upload-types.js';
import type { UploadService } from './uploads.js';

export interface MultipartSettings {
  /** How long a multipart upload may take before it is aborted and its parts freed. */
  expiresInSeconds: number;
  /** How long each presigned part URL stays valid (a client re-signs for retries). */
  partUrlExpiresInSeconds: number;
}

/** How many uploads' part sizes MultipartService keeps at most (see storedSizes). */
const MAX_UPLOADS_SIZED = 1000;

/** A part arriving through the embedded endpoint and the bytes it may hold. */
interface PartClaim {
  partNumber: number;
  bytes: number;
}

/** A large file as a client declares it before sending parts. */
export interface MultipartDeclaration {
  name: string;
  contentType?: string | undefined;
  size: number;
  /** Hex or base64; the composed object must hash to it. */
  sha256?: string | undefined;
  intent?: UploadIntent | undefined;
}

export type MultipartStart =
  | { status: 'pending'; upload: Upload; multipartId: string }
  | { status: 'exists'; asset: Asset };

export interface SignedPart {
  partNumber: number;
  request: PresignedRequest;
}

/** At most this many part URLs per signing call (a 5 GiB file in 5 MiB parts needs 1024). */
export const MAX_PARTS_PER_SIGNING = 1000;

/**
 * S3-style multipart uploads. Wharf starts them (or, for clients that speak S3 themselves,
 * learns of them), signs part URLs, and on completion checks every named part against what
 * storage holds and the parts' total against the declared size *before* composing, so a
 * refused completion loses no part. The composed object is then verified like any upload.
 */
export class MultipartService {
  /**
   * The steps that end an upload (complete, abort), one at a time per upload on this node. Side
   * by side, an abort could mark the upload ended while a completion was composing its parts,
   * leaving an object nobody owned; and a second completion (a retry, a double click) found the
   * parts already taken and answered 404 instead of the asset.
   */
  private readonly ending = new KeyedQueue();
  /** Parts arriving now through the embedded endpoint, per upload, with the bytes each claims (see receivePart). */
  private readonly arriving = new Map<string, PartClaim[]>();
  /**
   * The sizes of the parts stored, per upload, listed once and kept up to date as parts land
   * (see claimRoom). Why: listing them for every part read every part file's header, so an
   * upload's n-th part cost n reads (a hunt: 10 ms a part with one stored, up to 1 s with 1,000).
   * Only this process writes the embedded endpoint's parts; a failed write forgets the upload's
   * sizes (its part may or may not have replaced the old one), and the next part lists again.
   */
  private readonly storedSizes = new Map<string, Map<number, number>>();
  /** Orders, per upload, each part's count of the room left against other parts' claims ending. */
  private readonly admission = new KeyedQueue();

  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly uploads: UploadService,
    private readonly clock: Clock,
    private readonly settings: MultipartSettings,
  ) {
    uploads.registerKind('multipart', {
      reconcile: (upload) => this.composeIfWhole(upload),
      expire: (upload) => this.freeParts(upload),
    });
  }

  // ---- The native API (/v1/multipart) ----

  /**
   * Starts a multipart upload of a declared file, or returns the asset the account already
   * holds with the declared SHA-256.
   */
  async create(principal: Principal, declaration: MultipartDeclaration): Promise<MultipartStart> {
    requireScope(principal, 'upload');
    const name = validateFileName(declaration.name);
    const contentType = validateContentType(declaration.contentType);
    const size = declaration.size;
    const limit = this.uploads.maxFileSize(principal);
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new WharfError('VALIDATION_FAILED', 'size must be a non-negative integer.');
    }
    if (size > limit || size > MULTIPART_LIMITS.maxParts * MULTIPART_LIMITS.maxPartSize) {
      throw new WharfError('FILE_TOO_LARGE', `The file is larger than the limit of ${limit} bytes.`, {
        limit,
      });
    }
    const sha256 = declaration.sha256 ? parseDigest('sha256', declaration.sha256, 'sha256') : null;
    // Only a caller that sees the whole account may learn that it already holds some content.
    if (sha256 && seesWholeAccount(principal)) {
      const known = await this.store.findAssetBySha256(principal.accountId, sha256);
      // Content still being verified may turn out to be other bytes: the file is sent again.
      if (known?.status === 'ready') {
        checkAgainstHeld({ size }, known);
        return { status: 'exists', asset: known };
      }
    }
    const upload = this.newMultipartUpload(principal, {
      name,
      contentType,
      size,
      sha256,
      intent: { ...declaration.intent, boundType: true },
    });
    // A crash between these two leaves a multipart upload nothing tracks: the sweep's
    // debris pass aborts it once it is older than any upload may run.
    upload.multipartId = await this.blobs.createMultipart(upload.storageKey, contentType);
    try {
      await this.uploads.record(principal, [{ upload, reserve: { quota: size, token: size } }]);
    } catch (err) {
      // Refused (quota, budget, too many open uploads): nothing may be left to send parts to.
      await this.blobs.abortMultipart(upload.storageKey, upload.multipartId);
      throw err;
    }
    return { status: 'pending', upload, multipartId: upload.multipartId };
  }

  /**
   * A pending multipart upload of the caller's for a file whose size is not known yet (an
   * S3 client that creates the multipart upload itself, at the URL Wharf signs for it).
   */
  newMultipartUpload(
    principal: Principal,
    file: {
      name: string;
      contentType: string;
      size: number | null;
      sha256: string | null;
      intent?: UploadIntent | undefined;
    },
  ): Upload {
    const now = this.clock.now();
    return this.uploads.newUpload(
      principal,
      'multipart',
      {
        ...file,
        md5: null,
        externalId: null,
        // Completes by itself once storage holds the whole file, even if the client never
        // confirms (a tab closed after the last part).
        intent: { ...file.intent, autoComplete: true },
        expiresAt: now + this.settings.expiresInSeconds * 1000,
      },
      now,
    );
  }

  async signParts(principal: Principal, uploadId: string, partNumbers: number[]): Promise<SignedPart[]> {
    const upload = await this.openUpload(principal, uploadId);
    if (partNumbers.length === 0 || partNumbers.length > MAX_PARTS_PER_SIGNING) {
      throw new WharfError('VALIDATION_FAILED', `Sign 1 to ${MAX_PARTS_PER_SIGNING} parts per request.`);
    }
    const unique = [...new Set(partNumbers.map(checkPartNumber))];
    const now = this.clock.now();
    const expiresInSeconds = this.partUrlExpiry(upload, now);
    return Promise.all(
      unique.map(async (partNumber) => ({
        partNumber,
        request: await this.blobs.presignOperation({
          operation: 'UploadPart',
          key: upload.storageKey,
          multipartId: multipartIdOf(upload),
          partNumber,
          expiresInSeconds,
          now,
        }),
      })),
    );
  }

  /**
   * What storage holds so far, so a client that lost its state resumes where it stopped (or,
   * after expiry, finds the ETags to complete with).
   */
  async listParts(principal: Principal, uploadId: string): Promise<StoredPart[]> {
    const upload = await this.multipartUpload(principal, uploadId);
    this.uploads.assertNotEnded(upload);
    return this.blobs.listParts(upload.storageKey, multipartIdOf(upload));
  }

  /** Composes the named parts and completes the upload; idempotent once it has succeeded. */
  async complete(principal: Principal, uploadId: string, parts: PartReference[]): Promise<UploadOutcome> {
    // Judged as of the request: one asked in time is not refused for the time its turn or the
    // composing took (see UploadService.assertNotEnded).
    const at = this.clock.now();
    // Checked before waiting in line: a caller that may not see the upload never waits on it.
    await this.multipartUpload(principal, uploadId);
    return this.ending.run(uploadId, async () => {
      // Read again in turn: a completion that waited for another answers with its asset.
      const upload = await this.multipartUpload(principal, uploadId);
      if (upload.status === 'completed') return this.uploads.completeUpload(upload);
      this.uploads.assertNotEnded(upload, at);
      try {
        await this.compose(upload, multipartIdOf(upload), parts);
      } catch (err) {
        // The parts went while this composed: another node aborted or cancelled the upload
        // after the read above. Answered as if that had come first (410), not as storage's 404.
        if (isWharfError(err, 'MULTIPART_NOT_FOUND'))
          this.uploads.assertNotEnded(await this.multipartUpload(principal, uploadId), at);
        throw err;
      }
      return this.uploads.completeUpload(upload, {}, undefined, at);
    });
  }

  /** Ends the upload and frees its parts. Aborting an aborted upload is a no-op. */
  async abort(principal: Principal, uploadId: string): Promise<void> {
    await this.multipartUpload(principal, uploadId);
    await this.ending.run(uploadId, async () => {
      const upload = await this.multipartUpload(principal, uploadId);
      if (upload.status === 'completed') {
        throw new WharfError('UPLOAD_NOT_PENDING', 'This upload has already been completed.');
      }
      // This node's line keeps its own completions out; another node's completion can still
      // win between the read above and this write. The database decides: only an upload still
      // pending ends here. One completed meanwhile answers as completed (its asset stands, its
      // parts are its object now); one ended without an asset was ended, and freed, already.
      if (!(await this.store.expireUpload(upload.id, this.clock.now(), { reason: 'cancelled' }))) {
        if ((await this.store.getUpload(upload.id))?.status === 'completed') {
          throw new WharfError('UPLOAD_NOT_PENDING', 'This upload has already been completed.');
        }
        return;
      }
      await this.freeParts(upload);
    });
  }

  // ---- The embedded storage endpoint (S3 requests whose signature was checked) ----

  /** CreateMultipartUpload on the key of a pending multipart upload. */
  async receiveCreate(key: string, contentType?: string | undefined): Promise<{ multipartId: string }> {
    const upload = await this.uploads.openUploadByKey(key, 'multipart');
    const multipartId = await this.blobs.createMultipart(key, typeFromClient(upload, contentType));
    await this.store.setUploadMultipartId(upload.id, multipartId);
    return { multipartId };
  }

  /** UploadPart: streams the part to storage. The body is drained on refusal. */
  async receivePart(part: {
    key: string;
    multipartId: string;
    partNumber: number;
    body: Readable;
    size?: number | undefined;
    md5?: string | undefined;
    sha256?: string | undefined;
  }): Promise<StoredPart> {
    try {
      const upload = await this.uploads.openUploadByKey(part.key, 'multipart');
      checkMultipartId(upload, part.multipartId);
      checkPartNumber(part.partNumber);
      const limit = upload.size ?? (await this.uploads.unknownSizeLimit(upload));
      const partLimit = Math.min(limit, MULTIPART_LIMITS.maxPartSize);
      if (part.size !== undefined && part.size > partLimit) {
        throw new WharfError(
          'FILE_TOO_LARGE',
          `The part (${part.size} bytes) is larger than a part of this file may be: ${partLimit} bytes.`,
          { limit: partLimit, size: part.size },
        );
      }
      if (!this.blobs.writePart) throw new Error(`Storage ${this.blobs.name} does not receive parts itself.`);
      // All the parts together may not hold more than the file may: the parts stored (but the one
      // this replaces) and those arriving now. Otherwise one upload of a declared size, or one
      // whose account has a quota, could fill the disk with parts it can never complete. Those
      // of a file of unknown size are held against the quota and the token's budget too.
      const claim = await this.claimRoom(upload, part, limit);
      let written: StoredPart | undefined;
      try {
        // Counted as a presigned PUT's bytes are: refused (a wrong Content-MD5), cut, or not stored.
        written = await this.blobs
          .writePart({ ...part, partNumber: part.partNumber, maxSize: claim.bytes })
          .catch(this.uploads.failed('multipart'));
        return written;
      } finally {
        const release = await this.admission.lock(upload.id);
        try {
          const claims = this.arriving.get(upload.id) ?? [];
          claims.splice(claims.indexOf(claim), 1);
          if (claims.length === 0) this.arriving.delete(upload.id);
          const sizes = this.storedSizes.get(upload.id);
          const replaced = sizes?.get(part.partNumber) ?? 0;
          if (written) sizes?.set(written.partNumber, written.size);
          else this.storedSizes.delete(upload.id);
          // A part stored whole, no smaller than the one it replaced, holds what its claim held.
          const unchanged =
            written !== undefined &&
            sizes !== undefined &&
            written.size === claim.bytes &&
            replaced <= written.size;
          if (upload.size === null && !unchanged) await this.holdStored(upload, part);
        } finally {
          release();
        }
      }
    } catch (err) {
      part.body.resume();
      throw err;
    }
  }

  /**
   * Counts the room a part may fill and claims it, or refuses the part. Why under a lock that ending
   * claims also take: a part that lands while this lists the stored ones would otherwise be in
   * neither count (listed before it landed, its claim gone after), and parts sent all at once could
   * add up past the limit. A part both listed and claimed (it landed meanwhile, or replaces itself)
   * counts once, at the larger.
   */
  private async claimRoom(
    upload: Upload,
    part: { key: string; multipartId: string; partNumber: number; size?: number | undefined },
    limit: number,
  ): Promise<PartClaim> {
    const uploadId = upload.id;
    const release = await this.admission.lock(uploadId);
    try {
      const sizes = await this.sizesOf(uploadId, part);
      const held = new Map(sizes);
      const claims = this.arriving.get(uploadId) ?? [];
      for (const c of claims) held.set(c.partNumber, Math.max(held.get(c.partNumber) ?? 0, c.bytes));
      held.delete(part.partNumber);
      let room = limit;
      for (const bytes of held.values()) room -= bytes;
      if ((part.size ?? 0) > room || room <= 0) {
        throw new WharfError(
          'FILE_TOO_LARGE',
          `The parts are larger than the file may be: ${limit} bytes in all, ${Math.max(room, 0)} left.`,
          { limit },
        );
      }
      // A part of unknown length claims all the room left, and is cut off there.
      const claim = { partNumber: part.partNumber, bytes: part.size ?? room };
      // The size of the file is unknown, so nothing was reserved for it: its parts are held as
      // they arrive, this one before a byte of it is written (a part that cannot fit is refused
      // whole, storing nothing), as a form's file is held (see UploadService.holdArrived).
      if (upload.size === null) await this.holdParts(upload, partsHeld(sizes, [...claims, claim]));
      claims.push(claim);
      this.arriving.set(uploadId, claims);
      return claim;
    } finally {
      release();
    }
  }

  /** The sizes of an upload's stored parts, listed once and then kept (see storedSizes). Under its admission lock. */
  private async sizesOf(
    uploadId: string,
    part: { key: string; multipartId: string },
  ): Promise<Map<number, number>> {
    let sizes = this.storedSizes.get(uploadId);
    if (!sizes) {
      sizes = new Map();
      for (const stored of await this.blobs.listParts(part.key, part.multipartId)) {
        sizes.set(stored.partNumber, stored.size);
      }
      // Uploads that end without a word (expired by the sweep) leave theirs: forget them all
      // now and then rather than track every ending; forgotten sizes are listed again.
      if (this.storedSizes.size >= MAX_UPLOADS_SIZED) this.storedSizes.clear();
      this.storedSizes.set(uploadId, sizes);
    }
    return sizes;
  }

  /**
   * Holds `bytes` against the account's quota and the token's budget for an upload of unknown
   * size, in place of what it held (set, not added: each hold is counted under the upload's
   * admission lock from every part stored or arriving, so the last one written is the truth).
   * Refuses with QUOTA_EXCEEDED or TOKEN_BYTES_EXHAUSTED (S3's QuotaExceeded) what does not fit.
   * Content the account already holds would cost it nothing, but no part can tell: completion
   * commits only the bytes that are new.
   */
  private async holdParts(upload: Upload, bytes: number): Promise<void> {
    if (await this.store.holdArrived(upload.id, { quota: bytes, token: bytes })) return;
    // Ended since it was looked up (aborted, cancelled, completed or expired meanwhile).
    const current = await this.store.getUpload(upload.id);
    if (current) this.uploads.assertOpen(current);
    throw new WharfError('UPLOAD_EXPIRED', 'This upload has expired.');
  }

  /**
   * Once a part's write is over (under the admission lock): the upload holds its parts as they
   * now stand, the part's claim giving way to the bytes it stored, or to none (a failed write,
   * after which the parts are listed again). Shrinking always succeeds; whatever fails here
   * (the upload ended meanwhile, the database) leaves the larger hold, which the upload gives
   * back when it ends, and which its next part's claim sets right.
   */
  private async holdStored(upload: Upload, part: { key: string; multipartId: string }): Promise<void> {
    try {
      const bytes = partsHeld(await this.sizesOf(upload.id, part), this.arriving.get(upload.id) ?? []);
      await this.store.holdArrived(upload.id, { quota: bytes, token: bytes });
    } catch {
      // As above: the hold stays as the part's claim left it.
    }
  }

  async receiveListParts(key: string, multipartId: string): Promise<StoredPart[]> {
    const upload = await this.uploads.uploadByKey(key, 'multipart');
    this.uploads.assertNotEnded(upload);
    checkMultipartId(upload, multipartId);
    return this.blobs.listParts(key, multipartId);
  }

  /** CompleteMultipartUpload: composes the object, then completes the Wharf upload. */
  async receiveComplete(
    key: string,
    multipartId: string,
    parts: PartReference[],
  ): Promise<ObjectInfo & { etag: string }> {
    const at = this.clock.now();
    const first = await this.uploads.uploadByKey(key, 'multipart');
    checkMultipartId(first, multipartId);
    // In line with every other ending of this upload, as the native complete is: a Complete sent
    // twice at once would otherwise find the parts gone before the object was in place (404).
    return this.ending.run(first.id, async () => {
      const upload = await this.uploads.uploadByKey(key, 'multipart');
      if (upload.status === 'completed') {
        // S3 answers a Complete retried after it succeeded as it answered the first (SDKs and
        // Uppy retry one whose answer was lost); the parts are gone, the asset is the answer.
        const { asset } = await this.uploads.completeUpload(upload);
        return {
          size: asset.size,
          md5: asset.md5,
          contentType: asset.contentType,
          etag: compositeEtag(parts),
        };
      }
      this.uploads.assertNotEnded(upload, at);
      const composed = await this.compose(upload, multipartId, parts);
      await this.uploads.completeUpload(upload, {}, undefined, at);
      return composed;
    });
  }

  /** AbortMultipartUpload: frees the parts and ends the upload (whatever state it is in). */
  async receiveAbort(key: string, multipartId: string): Promise<void> {
    const upload = await this.uploads.uploadByKey(key, 'multipart');
    checkMultipartId(upload, multipartId);
    if (upload.status === 'pending') {
      await this.store.expireUpload(upload.id, this.clock.now(), { reason: 'cancelled' });
    }
    this.storedSizes.delete(upload.id);
    await this.blobs.abortMultipart(key, multipartId);
  }

  // ---- Reconciliation and expiry ----

  /**
   * Ends as cancelled a pending upload whose multipart upload storage no longer holds and whose
   * object is not there: a client that speaks S3 itself (Uppy's cancelAll) sent the Abort
   * Wharf signed straight to the bucket, which tells Wharf nothing. Left pending, the upload
   * held its token's file and open-upload slots until it expired. True if it ended here.
   */
  async endIfAborted(upload: Upload): Promise<boolean> {
    if (upload.multipartId === null) return false;
    const multipartId = upload.multipartId;
    // In line with the upload's other endings: a completion composing now has the parts taken
    // and the object not yet in place.
    return this.ending.run(upload.id, async () => {
      if ((await this.store.getUpload(upload.id))?.status !== 'pending') return false;
      try {
        await this.blobs.listParts(upload.storageKey, multipartId);
        return false;
      } catch (err) {
        if (!isWharfError(err, 'MULTIPART_NOT_FOUND')) throw err;
      }
      // Looked at after the parts: S3 puts the object in place before it drops the parts, so
      // a Complete is never taken for an Abort.
      if (await this.blobs.head(upload.storageKey)) return false;
      this.storedSizes.delete(upload.id);
      return this.store.expireUpload(upload.id, this.clock.now(), { reason: 'cancelled' });
    });
  }

  /**
   * The sweep's question for a pending multipart upload: is the object there? If not, and storage holds
   * parts 1..N that add up to exactly the declared size, every byte arrived and only the
   * client's confirmation is missing, so Wharf composes them itself.
   */
  private async composeIfWhole(upload: Upload): Promise<boolean> {
    if (await this.blobs.head(upload.storageKey)) return true;
    if (upload.multipartId === null || upload.size === null || upload.status !== 'pending') return false;
    const multipartId = upload.multipartId;
    const size = upload.size;
    // In this process's line for the upload, as a client's completion is: the local store
    // composes in two steps (the parts are claimed, then become the object), and a completion
    // that ran between them found neither and answered 404 (the sweep a restart runs raced a
    // client completing the upload the crash had cut off).
    return this.ending.run(upload.id, async () => {
      if ((await this.store.getUpload(upload.id))?.status !== 'pending') return false;
      // Nor while a part arrives through this process, and no part starts arriving until this
      // is done (claimRoom takes the same lock): a last part already in place but whose PUT had
      // not yet answered was composed under it, and its PUT, finding its upload's directory
      // gone, answered 500 (kill -9 rounds: the sweep a restart runs). The client's own complete
      // follows its parts' answers; the next sweep looks again.
      const release = await this.admission.lock(upload.id);
      try {
        if (this.arriving.has(upload.id)) return false;
        let stored: StoredPart[];
        try {
          stored = await this.blobs.listParts(upload.storageKey, multipartId);
        } catch (err) {
          // Composed meanwhile (by the completion this waited for): the object is there.
          if (isWharfError(err, 'MULTIPART_NOT_FOUND'))
            return (await this.blobs.head(upload.storageKey)) !== undefined;
          throw err;
        }
        const whole =
          stored.length > 0 &&
          stored.every((part, i) => part.partNumber === i + 1) &&
          stored.every((part, i) => i === stored.length - 1 || part.size >= MULTIPART_LIMITS.minPartSize) &&
          stored.reduce((sum, part) => sum + part.size, 0) === size;
        if (!whole) return false;
        await this.compose(upload, multipartId, stored);
        return true;
      } finally {
        release();
      }
    });
  }

  private async freeParts(upload: Upload): Promise<void> {
    this.storedSizes.delete(upload.id);
    if (upload.multipartId !== null) await this.blobs.abortMultipart(upload.storageKey, upload.multipartId);
  }

  /**
   * Checks the named parts against storage's and their total against the declared size, then
   * composes. Storage refuses what it would refuse anyway (order, small parts); these checks
   * come first because a composed object of the wrong size could only be deleted, parts and all.
   */
  private async compose(
    upload: Upload,
    multipartId: string,
    parts: PartReference[],
  ): Promise<ObjectInfo & { etag: string }> {
    if (parts.length === 0 || parts.length > MULTIPART_LIMITS.maxParts) {
      throw new WharfError('VALIDATION_FAILED', `Name 1 to ${MULTIPART_LIMITS.maxParts} parts.`);
    }
    for (let i = 1; i < parts.length; i++) {
      if (parts[i]!.partNumber <= parts[i - 1]!.partNumber) {
        throw new WharfError('INVALID_PART_ORDER', 'Parts must be listed in ascending order of part number.');
      }
    }
    let stored: Map<number, StoredPart>;
    try {
      stored = new Map(
        (await this.blobs.listParts(upload.storageKey, multipartId)).map((p) => [p.partNumber, p]),
      );
    } catch (err) {
      // Composed already (a retried or concurrent completion): the object is the answer.
      if (isWharfError(err, 'MULTIPART_NOT_FOUND')) return this.alreadyComposed(upload, err);
      throw err;
    }
    let total = 0;
    for (const part of parts) {
      const held = stored.get(part.partNumber);
      if (!held || unquote(held.etag) !== unquote(part.etag)) {
        throw new WharfError(
          'INVALID_PART',
          `Part ${part.partNumber} was not uploaded, or its ETag is not the one given.`,
          { partNumber: part.partNumber },
        );
      }
      total += held.size;
    }
    if (upload.size !== null && total !== upload.size) {
      throw new WharfError(
        'SIZE_MISMATCH',
        `The parts hold ${total} bytes; the upload declared ${upload.size}.`,
        { declared: upload.size, received: total },
      );
    }
    try {
      const composed = await this.blobs.completeMultipart(upload.storageKey, multipartId, parts);
      this.storedSizes.delete(upload.id);
      return composed;
    } catch (err) {
      if (isWharfError(err, 'MULTIPART_NOT_FOUND')) return this.alreadyComposed(upload, err);
      throw err;
    }
  }

  private async alreadyComposed(
    upload: Upload,
    notFound: WharfError,
  ): Promise<ObjectInfo & { etag: string }> {
    const info = await this.blobs.head(upload.storageKey);
    if (!info) throw notFound;
    return { ...info, etag: info.md5 ? `"${info.md5}"` : '""' };
  }

  private async multipartUpload(principal: Principal, uploadId: string): Promise<Upload> {
    requireScope(principal, 'upload');
    const upload = await this.uploads.get(principal, uploadId);
    if (upload.kind !== 'multipart') throw new WharfError('NOT_FOUND', 'No such multipart upload.');
    return upload;
  }

  private async openUpload(principal: Principal, uploadId: string): Promise<Upload> {
    const upload = await this.multipartUpload(principal, uploadId);
    this.uploads.assertOpen(upload);
    return upload;
  }

  /** Part URLs never outlive their upload. */
  private partUrlExpiry(upload: Upload, now: number): number {
    const left = Math.floor((upload.expiresAt - now) / 1000);
    return Math.max(1, Math.min(this.settings.partUrlExpiresInSeconds, left));
  }
}

/**
 * What an upload's parts hold in all: each part number once, at the larger of the part stored
 * and any claim arriving to replace it (until a replacement lands, the part it replaces stays).
 */
function partsHeld(stored: Map<number, number>, claims: PartClaim[]): number {
  const held = new Map(stored);
  for (const c of claims) held.set(c.partNumber, Math.max(held.get(c.partNumber) ?? 0, c.bytes));
  let total = 0;
  for (const bytes of held.values()) total += bytes;
  return total;
}

export function checkPartNumber(partNumber: number): number {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MULTIPART_LIMITS.maxParts) {
    throw new WharfError(
      'VALIDATION_FAILED',
      `Part numbers are integers from 1 to ${MULTIPART_LIMITS.maxParts}.`,
    );
  }
  return partNumber;
}

function multipartIdOf(upload: Upload): string {
  if (upload.multipartId === null) {
    throw new WharfError('MULTIPART_NOT_FOUND', 'The multipart upload has not been started in storage.');
  }
  return upload.multipartId;
}

/** Requests may only name the multipart upload Wharf recorded for the key. */
function checkMultipartId(upload: Upload, multipartId: string): void {
  if (upload.multipartId !== multipartId) {
    throw new WharfError('MULTIPART_NOT_FOUND', 'The specified multipart upload does not exist.');
  }
}

/** The type a client sent when creating a multipart upload, unless Wharf bound one (as S3 records it). */
function typeFromClient(upload: Upload, sent: string | undefined): string {
  if (upload.intent.boundType || sent === undefined) return upload.contentType;
  try {
    return validateContentType(sent);
  } catch {
    return upload.contentType;
  }
}

function unquote(etag: string): string {
  return etag.replace(/^"+|"+$/g, '').replace(/^&quot;|&quot;$/g, '');
}
