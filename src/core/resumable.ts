import type { Readable } from 'node:stream';
import { canSeeUpload, requireReadOrUpload, requireScope, seesWholeAccount } from './authorization.js';
import type { Clock } from './clock.js';
import { parseDigest } from './digests.js';
import { isWharfError, WharfError } from './errors.js';
import { failureOf } from './events.js';
import type { Digests, Principal, Upload } from './model.js';
import { validateContentType, validateFileName } from './names.js';
import type { Store } from './ports.js';
import { refusedForResources } from './unavailable.js';
import type { UploadOutcome } from './upload-types.js';
import type { UploadService } from './uploads.js';

/**
 * Where a resumable protocol (tus, RUFH) keeps an upload's bytes while they arrive: somewhere
 * that is not an object yet, so a partial file is never readable. Keyed by the upload's
 * storage key.
 */
export interface ResumableStorage {
  /** Makes room for a new upload of `size` bytes at `key`, with nothing received yet. */
  open(key: string, size: number): Promise<void>;
  /**
   * Appends `body` at `offset` (which must be what was received so far) and returns the offset
   * after it. A body that ends before the client meant it to (a cut connection whose stream
   * was ended, not failed) keeps every byte it delivered: that is what resuming starts from.
   * The caller holds the upload's lock and bounds the body to the upload's size.
   */
  append(key: string, offset: number, body: Readable): Promise<number>;
  /**
   * Bytes received so far (the object's size once promoted); undefined when storage has no
   * record of the upload.
   */
  received(key: string): Promise<number | undefined>;
  /**
   * Makes an upload whose bytes all arrived the object at its storage key (visible whole, and
   * durable), and drops the protocol's own records of it. Idempotent: a key that already holds
   * the object is left as it is. Returns the bytes' digests when this node hashed every one of
   * them as it arrived (completion then reads nothing back), else undefined. ObjectMissing when
   * storage holds neither the upload nor the object: it was discarded meanwhile (a termination,
   * which frees the bytes before it records the upload as cancelled, on another node perhaps).
   */
  promote(key: string): Promise<Digests | undefined>;
  /** Frees an unfinished upload's bytes and records; nothing when they are already gone. */
  discard(key: string): Promise<void>;
  /**
   * Removes bytes and records of uploads `inUse` does not claim, written before `olderThan`
   * (or before this process started, where only this process writes): what a crash left
   * between an upload's end and the freeing of its storage. Returns how many uploads' worth.
   */
  sweepDebris?(olderThan: number, inUse: (key: string) => Promise<boolean>): Promise<number>;
}

export interface ResumableSettings {
  /** How long a resumable upload may run before it expires and its bytes are freed. */
  expiresInSeconds: number;
}

/** A file as a resumable client declares it when it opens the upload. */
export interface ResumableDeclaration {
  name: string | undefined;
  contentType?: string | undefined;
  size: number;
  /** Hex or base64; optional, verified at completion when given. */
  sha256?: string | undefined;
  /** Hex or base64; optional, verified at completion when given. */
  md5?: string | undefined;
  /** Hex or base64: SHA-256 of the first min(size, HEAD_BYTES) bytes (see findUnfinished). */
  headSha256?: string | undefined;
}

/** The resumable protocols, each its own upload kind over the same ResumableStorage. */
export type ResumableKind = 'tus' | 'rufh';
export const RESUMABLE_KINDS: readonly ResumableKind[] = ['tus', 'rufh'];

/**
 * An upload as it stands at `now`, for what the API shows of it: a pending upload that has ended
 * by time reads as expired, though the sweep records that (and frees its bytes) only when it
 * next runs. A tus or RUFH upload ends at its expiry: no byte may arrive any more, its resume
 * URL answers 410, and its completion comes only with its last byte (before, it read as pending
 * for the hour until the sweep, with a resume URL that could only fail). An upload that waits for
 * its client's confirm ends `graceMs` later, once what it received in time may no longer be
 * confirmed (UploadService.completableUntil): it read as pending while its confirm answered 410.
 * Other kinds complete by themselves whenever their bytes are found: pending until the sweep.
 * Read, never written.
 */
export function asOf(upload: Upload, now: number, graceMs: number): Upload {
  if (upload.status !== 'pending') return upload;
  const resumable = (RESUMABLE_KINDS as readonly string[]).includes(upload.kind);
  // One that completes by itself (autoComplete) ends only when the sweep finds its bytes never
  // all arrived (see UploadService.assertNotEnded): pending until then.
  if (!resumable && upload.intent.autoComplete) return upload;
  const end = resumable ? upload.expiresAt : upload.expiresAt + graceMs;
  // As the sweep will record it: ended by its deadline.
  return now <= end ? upload : { ...upload, status: 'expired', ending: { reason: 'expired' } };
}

/**
 * How much of a file's beginning its head digest covers: enough to tell files of one size
 * apart, small enough that a phone hashes it in an instant before it asks what it may resume.
 */
export const HEAD_BYTES = 4 * 1024 * 1024;

/** How a client that lost its state describes a file it wants to resume. */
export interface UnfinishedQuery {
  size: number;
  /** Hex or base64, of the whole file. */
  sha256?: string | undefined;
  /** Hex or base64, of the first min(size, HEAD_BYTES) bytes. */
  headSha256?: string | undefined;
}

/** A pending resumable upload and how many of its bytes arrived. */
export interface UnfinishedUpload {
  upload: Upload;
  offset: number;
}

/**
 * Resumable uploads (tus): the upload is recorded when the client opens it, its bytes collect
 * in ResumableStorage across as many requests (and nodes, and restarts) as it takes, and once
 * the last byte is there it completes exactly as every other flow does (verified, deduplicated,
 * processed) through UploadService.completeUpload.
 */
export class ResumableService {
  constructor(
    private readonly store: Store,
    private readonly uploads: UploadService,
    private readonly storage: ResumableStorage,
    private readonly clock: Clock,
    private readonly settings: ResumableSettings,
  ) {
    uploads.registerKind('tus', {
      reconcile: (upload) => this.reconcile(upload),
      expire: (upload) => this.discard(upload),
      // Once for the storage both kinds share (its inUse claims either kind's uploads).
      debris: async (olderThan, inUse) => (await this.storage.sweepDebris?.(olderThan, inUse)) ?? 0,
    });
    uploads.registerKind('rufh', {
      reconcile: (upload) => this.reconcile(upload),
      expire: (upload) => this.discard(upload),
    });
  }

  /** The size limit of the caller's account (what the protocol advertises and enforces). */
  maxFileSize(principal: Principal): number {
    return this.uploads.maxFileSize(principal);
  }

  /** The server's size limit, for discovery without a key (an account may have its own). */
  defaultMaxFileSize(): number {
    return this.uploads.maxFileSize({ maxFileSize: null, grant: undefined });
  }

  /** Records a new pending upload; its storage key is where the protocol keeps the bytes. */
  async create(
    principal: Principal,
    declaration: ResumableDeclaration,
    kind: ResumableKind = 'tus',
  ): Promise<Upload> {
    requireScope(principal, 'upload');
    if (declaration.name === undefined) {
      throw new WharfError('VALIDATION_FAILED', 'The upload must name its file (metadata "filename").');
    }
    const name = validateFileName(declaration.name);
    const contentType = validateContentType(declaration.contentType);
    const size = declaration.size;
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new WharfError('VALIDATION_FAILED', 'The upload length must be a non-negative integer.');
    }
    const limit = this.uploads.maxFileSize(principal);
    if (size > limit) {
      throw new WharfError('FILE_TOO_LARGE', `The file is larger than the limit of ${limit} bytes.`, {
        limit,
      });
    }
    const sha256 = declaration.sha256 ? parseDigest('sha256', declaration.sha256, 'sha256') : null;
    const headSha256 = declaration.headSha256
      ? parseDigest('sha256', declaration.headSha256, 'head_sha256')
      : size <= HEAD_BYTES
        ? (sha256 ?? undefined)
        : undefined;
    // The size is held against the quota now rather than refused after gigabytes; content
    // the account already holds costs nothing, so none is held for it (completion commits
    // only what fits). Only a caller that sees the whole account may benefit: others would
    // learn what the account holds.
    const known = sha256 !== null && seesWholeAccount(principal) && (await this.known(principal, sha256));
    const now = this.clock.now();
    const upload = this.uploads.newUpload(
      principal,
      kind,
      {
        name,
        contentType,
        size,
        sha256,
        md5: declaration.md5 ? parseDigest('md5', declaration.md5, 'md5') : null,
        externalId: null,
        // No confirm step: the last byte completes it, and the sweep's reconcile finishes one
        // whose completion a crash interrupted.
        intent: { autoComplete: true, ...(headSha256 && { headSha256 }) },
        expiresAt: now + this.settings.expiresInSeconds * 1000,
      },
      now,
    );
    await this.uploads.record(principal, [{ upload, reserve: { quota: known ? 0 : size, token: size } }]);
    return upload;
  }

  /**
   * The file's SHA-256 (hex) that a request after the creation declares (Repr-Digest on a RUFH
   * append or a tus PATCH): it must agree with what the upload declared, else it is recorded and
   * completion checks it (see UploadIntent.reprSha256). Before any byte is appended.
   */
  async declareWhole(upload: Upload, sha256: string): Promise<Upload> {
    const declared = upload.sha256 ?? upload.intent.reprSha256;
    if (declared === sha256) return upload;
    if (declared) {
      throw new WharfError(
        'INVALID_DIGEST',
        "Repr-Digest names another file than the upload's declared SHA-256.",
      );
    }
    const intent = { ...upload.intent, reprSha256: sha256 };
    await this.store.setUploadIntent(upload.id, intent);
    return { ...upload, intent };
  }

  /** The caller's resumable upload at this storage key, whatever its state. */
  async get(principal: Principal, key: string, kind: ResumableKind = 'tus'): Promise<Upload> {
    requireScope(principal, 'upload');
    const upload = await this.uploads.getByStorageKey(principal, key);
    if (upload.kind !== kind) throw new WharfError('NOT_FOUND', 'No such upload.');
    return upload;
  }

  /**
   * Resume without client state: the caller's pending resumable uploads (tus and RUFH) of a
   * file of this size whose whole SHA-256 or head digest is the one given, with how many bytes
   * of each arrived, newest first. A key sees its own uploads and its tokens' (with `read`,
   * every upload of its account it may see); a token only its own.
   */
  async findUnfinished(principal: Principal, query: UnfinishedQuery): Promise<UnfinishedUpload[]> {
    requireReadOrUpload(principal);
    if (!Number.isSafeInteger(query.size) || query.size < 0) {
      throw new WharfError('VALIDATION_FAILED', 'size must be a non-negative integer.');
    }
    const sha256 = query.sha256 ? parseDigest('sha256', query.sha256, 'sha256') : undefined;
    const head = query.headSha256 ? parseDigest('sha256', query.headSha256, 'head_sha256') : undefined;
    if (sha256 === undefined && head === undefined) {
      throw new WharfError('VALIDATION_FAILED', 'Name the file by sha256 or head_sha256 (and its size).');
    }
    // Few: an account's pending uploads of one exact size, bounded by its open-upload limits.
    const candidates = await this.store.listPendingBySize(
      principal.accountId,
      [...RESUMABLE_KINDS],
      query.size,
      100,
    );
    const now = this.clock.now();
    const found: UnfinishedUpload[] = [];
    for (const upload of candidates) {
      if (!canSeeUpload(principal, upload) || now > upload.expiresAt) continue;
      // A file no longer than the head is its own head: either digest names it.
      const whole = query.size <= HEAD_BYTES;
      const known = upload.intent.headSha256;
      const matches =
        (sha256 !== undefined && (upload.sha256 === sha256 || (whole && known === sha256))) ||
        (head !== undefined && (known === head || (whole && upload.sha256 === head)));
      if (!matches) continue;
      const offset = await this.storage.received(upload.storageKey);
      if (offset === undefined) continue;
      found.push({ upload, offset });
    }
    return found;
  }

  /** Whether the upload may still receive bytes (pending and not past its expiry). */
  isOpen(upload: Upload): boolean {
    return upload.status === 'pending' && this.clock.now() <= upload.expiresAt;
  }

  /**
   * Every byte arrived: the bytes become the object at the upload's key, then an asset. A
   * refusal (a wrong SHA-256, a type or size the upload may not have, the quota) ends the
   * upload: its bytes are gone, so resuming could not help, and the client, the listing and
   * the events say so at once (`upload.failed`), and its reservation is given back, instead
   * of it waiting, pending, for the expiry sweep.
   */
  async finish(upload: Upload): Promise<UploadOutcome> {
    const current = (await this.store.getUpload(upload.id)) ?? upload;
    return this.keptWhenFull(current, async () => {
      const received =
        current.status === 'pending' ? await this.storage.promote(current.storageKey) : undefined;
      return this.completing(current, () => this.uploads.completeUpload(current, {}, received));
    });
  }

  /** Whether every byte of a pending upload is in storage (its completion may not have run). */
  async allReceived(upload: Upload): Promise<boolean> {
    return (await this.received(upload)) === upload.size;
  }

  /** How many bytes of a pending upload are in storage; undefined when storage has no record of it. */
  received(upload: Upload): Promise<number | undefined> {
    return this.storage.received(upload.storageKey);
  }

  /**
   * Completes an upload whose bytes all arrived but whose completion never ran (the server
   * died in between); undefined while bytes are still missing. What a client's HEAD and the
   * sweep (see `reconcile`) run.
   */
  async recover(upload: Upload): Promise<UploadOutcome | undefined> {
    if (upload.status !== 'pending') return undefined;
    if (!(await this.allReceived(upload))) return undefined;
    return this.keptWhenFull(upload, async () => {
      await this.storage.promote(upload.storageKey);
      return this.completing(upload, () => this.uploads.completeUpload(upload));
    });
  }

  /**
   * Completes an upload whose every byte is in storage. A full disk on the way (promoting the
   * bytes, or the database recording the asset) is STORAGE_FULL, but not the refusal of a
   * request whose bytes were given back: they were written, and stay. The upload is pending
   * with all of them (its offset is its length), and completes once there is room, at the
   * client's next HEAD or by the sweep; the answer says so, so a client does not send them
   * again (its PATCH from the old offset would be refused: the offset has moved on).
   */
  private async keptWhenFull(upload: Upload, complete: () => Promise<UploadOutcome>): Promise<UploadOutcome> {
    try {
      return await complete();
    } catch (err) {
      const refused = refusedForResources(err);
      if (!isWharfError(refused, 'STORAGE_FULL')) throw err;
      const kept = new WharfError(
        'STORAGE_FULL',
        'Every byte of the upload arrived and is kept, but there is no room to complete it: once space has been freed, HEAD the upload to complete it (or the sweep will).',
        { offset: upload.size ?? 0 },
      );
      (kept as Error).cause = err;
      throw kept;
    }
  }

  /** Runs a completion; a refusal of Wharf's ends the upload (see `finish`). */
  private async completing(upload: Upload, complete: () => Promise<UploadOutcome>): Promise<UploadOutcome> {
    try {
      return await complete();
    } catch (err) {
      // Storage or the database being away, or a full disk, is not the file's fault: the
      // upload stays open, its bytes kept, and a HEAD or the sweep completes it later.
      if (!isWharfError(err) || err.code === 'SERVICE_UNAVAILABLE' || err.code === 'STORAGE_FULL') throw err;
      await this.fail(upload, err);
      throw err;
    }
  }

  /** The upload cannot go on: it ends as failed and what storage holds of it is freed. */
  async fail(upload: Upload, err: WharfError): Promise<void> {
    if (await this.store.expireUpload(upload.id, this.clock.now(), failureOf(err))) {
      await this.discard(upload);
    }
  }

  /**
   * For UploadService's sweep: puts the bytes of a pending tus upload whose last byte arrived
   * at its storage key, and says whether they are there (completion then runs as for any
   * auto-completing upload).
   */
  async reconcile(upload: Upload): Promise<boolean> {
    if (!(await this.allReceived(upload))) return false;
    await this.storage.promote(upload.storageKey);
    return true;
  }

  /** For the sweep (an expired upload) and termination: frees the bytes received so far. */
  async discard(upload: Upload): Promise<void> {
    await this.storage.discard(upload.storageKey);
  }

  /** The client terminated the upload (its bytes are already freed): it can never complete. */
  async terminated(upload: Upload): Promise<void> {
    await this.store.expireUpload(upload.id, this.clock.now(), { reason: 'cancelled' });
  }

  private async known(principal: Principal, sha256: string): Promise<boolean> {
    return (await this.store.findAssetBySha256(principal.accountId, sha256))?.status === 'ready';
  }
}
