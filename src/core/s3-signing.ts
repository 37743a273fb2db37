import { requireScope } from './authorization.js';
import type { Clock } from './clock.js';
import { WharfError } from './errors.js';
import type { IdSource } from './ids.js';
import type { Principal, Upload } from './model.js';
import { checkPartNumber, type MultipartService } from './multipart.js';
import { validateContentType, validateFileName } from './names.js';
import {
  type BlobStore,
  MULTIPART_LIMITS,
  type PresignedRequest,
  type S3Operation,
  type Store,
} from './ports.js';
import type { UploadSettings } from './upload-types.js';
import type { UploadService } from './uploads.js';

/** One S3 request a browser client (Uppy 6's `signRequest`) asks Wharf to presign. */
export interface S3SignRequest {
  operation: S3Operation;
  /** The key the client proposes (for new uploads) or names (for multipart steps). */
  key: string;
  multipartId?: string | undefined;
  partNumber?: number | undefined;
  contentType?: string | undefined;
  expiresInSeconds?: number | undefined;
}

export interface S3Signature {
  request: PresignedRequest;
  /** The key the request writes: Wharf's own for a new upload, the client's otherwise. */
  key: string;
  upload: Upload;
}

/** Checks once more whether a browser-signed upload reached storage (see `scheduleReconcile`). */
export const RECONCILE_UPLOAD_JOB = 'reconcile-upload';
const RECONCILE_DELAYS_MS = [1000, 2000, 5000, 10_000, 30_000, 60_000];

// Uppy names objects `<uuid>-<file name>`; the file's own name is what the asset should carry.
const UPPY_KEY_PREFIX = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-(.+)$/i;

/**
 * Presigns S3 requests for clients that speak S3 themselves. A request that starts an object
 * (PutObject, CreateMultipartUpload) starts a new upload of the caller's and is signed for
 * Wharf's key for it, never the one proposed; every later step must name a key of one of
 * the caller's own pending uploads, and the URL is signed for that key only.
 */
export class S3SigningService {
  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly uploads: UploadService,
    private readonly multipart: MultipartService,
    private readonly clock: Clock,
    private readonly ids: IdSource,
    private readonly settings: Pick<UploadSettings, 'uploadExpiresInSeconds'>,
  ) {}

  async sign(principal: Principal, request: S3SignRequest): Promise<S3Signature> {
    requireScope(principal, 'upload');
    const now = this.clock.now();
    if (request.operation === 'PutObject' || request.operation === 'CreateMultipartUpload') {
      return this.start(principal, request, now);
    }
    const upload = await this.uploads.getByStorageKey(principal, request.key);
    if (upload.kind !== 'multipart') {
      throw new WharfError('NOT_FOUND', 'No multipart upload of yours writes this key.');
    }
    // Parts are taken only while the upload is open; what it holds may be listed, completed or
    // aborted until it ends, as through the native API (see UploadService.assertNotEnded).
    const sendsBytes = request.operation === 'UploadPart';
    if (sendsBytes) this.uploads.assertOpen(upload, now);
    else this.uploads.assertNotEnded(upload, now);
    const multipartId = request.multipartId;
    if (!multipartId || multipartId.length > 1024) {
      throw new WharfError('VALIDATION_FAILED', 'uploadId is required for this request.');
    }
    // On S3 the client created the multipart upload itself; its first step tells Wharf the
    // id, which the expiry sweep needs to free the parts. Recorded once: two first steps naming
    // different ids side by side get one of them signed, and the sweep may then abort any
    // other multipart upload of the key once it is an hour old (see UploadSweep.runsLong).
    const recorded =
      upload.multipartId === null
        ? await this.store.claimUploadMultipartId(upload.id, multipartId)
        : upload.multipartId === multipartId;
    if (!recorded) {
      throw new WharfError('MULTIPART_NOT_FOUND', 'That is not the multipart upload of this key.');
    }
    const partNumber = sendsBytes ? checkPartNumber(request.partNumber ?? Number.NaN) : undefined;
    if (partNumber !== undefined) await this.checkPartWithin(principal, partNumber);
    const signed = await this.blobs.presignOperation({
      operation: request.operation,
      key: upload.storageKey,
      multipartId,
      partNumber,
      expiresInSeconds: this.expiry(
        request.expiresInSeconds,
        sendsBytes ? upload.expiresAt : this.uploads.completableUntil(upload),
        now,
      ),
      now,
    });
    // Storage tells Wharf of neither: a job looks (an Abort ends the upload as cancelled, freeing
    // what it held, rather than it holding its token's slots until it expires).
    if (request.operation === 'CompleteMultipartUpload' || request.operation === 'AbortMultipartUpload') {
      await this.scheduleReconcile(upload, now);
    }
    return { request: signed, key: upload.storageKey, upload };
  }

  /**
   * Refuses a part number no file within the caller's limits can have. Why: a part URL on S3
   * binds no size and the bucket tells Wharf nothing until completion, so a token of 1,000 bytes
   * could have 10,000 parts signed and stored, kept until the upload ends. Every part but the
   * last holds at least 5 MiB (S3 refuses a completion otherwise), so a file of `limit` bytes
   * has at most ceil(limit / 5 MiB) parts, numbered from 1 as Uppy numbers them. The limit is
   * the caller's largest file, and what its token's `max_bytes` has left once its pending
   * uploads settle (theirs may be given back; completion judges against what they then hold).
   */
  private async checkPartWithin(principal: Principal, partNumber: number): Promise<void> {
    if (partNumber === 1) return;
    const limit = this.uploads.maxFileSize(principal);
    if (partNumber > partsWithin(limit)) {
      throw new WharfError(
        'FILE_TOO_LARGE',
        `Part ${partNumber} cannot belong to a file within the limit of ${limit} bytes ` +
          `(every part but the last holds at least ${MULTIPART_LIMITS.minPartSize} bytes).`,
        { limit, partNumber },
      );
    }
    if (principal.tokenId === null) return;
    const token = await this.store.getToken(principal.accountId, principal.tokenId);
    if (token?.maxBytes == null) return;
    if (partNumber > partsWithin(token.maxBytes - token.usage.bytesUsed)) {
      throw new WharfError(
        'TOKEN_BYTES_EXHAUSTED',
        `Part ${partNumber} cannot belong to a file within what is left of this upload token's ` +
          `${token.maxBytes} bytes.`,
        {
          max_bytes: token.maxBytes,
          used: token.usage.bytesUsed,
          reserved: token.usage.bytesReserved,
          partNumber,
        },
      );
    }
  }

  private async start(principal: Principal, request: S3SignRequest, now: number): Promise<S3Signature> {
    const name = validateFileName(fileNameFromKey(request.key));
    // Uppy asks to sign CreateMultipartUpload without the file's type but then sends it: the
    // type is left unsigned, and the one storage records becomes the asset's. A PutObject URL
    // always binds one (application/octet-stream when none is named).
    const boundType = request.operation === 'PutObject' || request.contentType !== undefined;
    const contentType = validateContentType(request.contentType);
    const file = { name, contentType, size: null, sha256: null, intent: { boundType } };
    const upload =
      request.operation === 'CreateMultipartUpload'
        ? this.multipart.newMultipartUpload(principal, file)
        : this.uploads.newUpload(
            principal,
            'presigned',
            {
              ...file,
              md5: null,
              externalId: null,
              intent: { autoComplete: true, boundType },
              expiresAt: now + this.settings.uploadExpiresInSeconds * 1000,
            },
            now,
          );
    const signed = await this.blobs.presignOperation({
      operation: request.operation,
      key: upload.storageKey,
      contentType: boundType ? contentType : undefined,
      expiresInSeconds: this.expiry(request.expiresInSeconds, upload.expiresAt, now),
      now,
    });
    if (signed.rewritable) upload.intent = { ...upload.intent, rewritable: true };
    // The size is unknown (the client signs before it says): nothing is held up front, and
    // completion commits the file only if it fits (see UploadToRecord). A multipart upload's
    // parts arriving at the embedded endpoint are held as they arrive (see receivePart); on S3
    // they go to the bucket and Wharf sees them only when the upload completes.
    await this.uploads.record(principal, [{ upload, reserve: { quota: null, token: null } }]);
    if (request.operation === 'PutObject') await this.scheduleReconcile(upload, now);
    return { request: signed, key: upload.storageKey, upload };
  }

  /**
   * The client never tells Wharf that storage accepted its request, so Wharf looks: soon,
   * then less often, until the object is there (the sweep keeps looking after that).
   */
  private async scheduleReconcile(upload: Upload, now: number): Promise<void> {
    await this.store.enqueueJobs([
      {
        id: this.ids.id(),
        kind: RECONCILE_UPLOAD_JOB,
        payload: { uploadId: upload.id, attempt: 0 },
        runAt: now + RECONCILE_DELAYS_MS[0]!,
      },
    ]);
  }

  /**
   * The `reconcile-upload` job: completes the upload if storage holds it, ends a multipart one
   * whose multipart upload storage no longer holds (aborted), else looks again later.
   */
  async reconcileJob(uploadId: string, attempt: number): Promise<void> {
    const upload = await this.store.getUpload(uploadId);
    if (upload?.status !== 'pending') return;
    if (await this.blobs.head(upload.storageKey)) {
      try {
        await this.uploads.completeUpload(upload);
      } catch (err) {
        // Wrong bytes were dropped by the completion; the upload stays open for a retry.
        if (!(err instanceof WharfError)) throw err;
      }
      return;
    }
    if (upload.kind === 'multipart' && (await this.multipart.endIfAborted(upload))) return;
    const delay = RECONCILE_DELAYS_MS[attempt + 1];
    const now = this.clock.now();
    // A Complete may be signed (and sent) until the upload ends, after its expiry.
    if (delay === undefined || now > this.uploads.completableUntil(upload)) return;
    await this.store.enqueueJobs([
      {
        id: this.ids.id(),
        kind: RECONCILE_UPLOAD_JOB,
        payload: { uploadId, attempt: attempt + 1 },
        runAt: now + delay,
      },
    ]);
  }

  /** The validity of a URL: as asked, within the server's bound, never past `until`. */
  private expiry(requested: number | undefined, until: number, now: number): number {
    const left = Math.max(1, Math.floor((until - now) / 1000));
    const wanted = requested ?? this.settings.uploadExpiresInSeconds;
    if (!Number.isInteger(wanted) || wanted < 1) {
      throw new WharfError('VALIDATION_FAILED', 'expiresIn must be a positive number of seconds.');
    }
    return Math.min(wanted, this.settings.uploadExpiresInSeconds, left);
  }
}

/** How many parts a file of at most `limit` bytes can have: all but the last hold 5 MiB or more. */
function partsWithin(limit: number): number {
  return Math.max(1, Math.ceil(limit / MULTIPART_LIMITS.minPartSize));
}

/** The file name in a client's proposed key: its last segment, without Uppy's uuid prefix. */
export function fileNameFromKey(key: string): string {
  const last = key.split('/').pop() ?? '';
  return UPPY_KEY_PREFIX.exec(last)?.[1] ?? last;
}
