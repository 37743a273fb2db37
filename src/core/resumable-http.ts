import { createHash } from 'node:crypto';
import { PassThrough, pipeline, type Readable, Transform, type TransformCallback } from 'node:stream';
import { canSeeUpload, requireScope } from './authorization.js';
import type { Clock } from './clock.js';
import { isWharfError, WharfError } from './errors.js';
import { failureOf } from './events.js';
import type { Principal, Upload } from './model.js';
import type { Store } from './ports.js';
import {
  HEAD_BYTES,
  type ResumableDeclaration,
  type ResumableService,
  type ResumableStorage,
} from './resumable.js';
import type { UploadOutcome } from './upload-types.js';

/** What a RUFH upload resource advertises in `Upload-Limit`. */
export interface RufhLimits {
  /** The largest file (the caller's account or token limit). */
  maxSize: number;
  /** The most bytes one creation or append request may carry. */
  maxAppendSize: number;
}

export interface RufhSettings {
  /**
   * The most one request may carry (`max-append-size`), so a proxy with a body cap in front of
   * Wharf never cuts an upload that keeps to it.
   */
  maxAppendSize: number;
}

/** Where an upload stands, as HEAD reports it. */
export interface RufhState {
  upload: Upload;
  /** Bytes received (the size, once complete). */
  offset: number;
  /** The asset, once the upload completed. */
  outcome?: UploadOutcome | undefined;
  /** Why the upload, whose every byte arrived, was refused (it has ended). */
  refusal?: WharfError | undefined;
}

/** What an append (or the body of a creation request) did. */
export interface AppendResult {
  offset: number;
  /** Present when this request completed the upload. */
  outcome?: UploadOutcome | undefined;
  /**
   * Present when this request brought the last byte and the file was refused (a digest that
   * does not match, a quota it passes): the upload has ended and its bytes are gone.
   */
  refusal?: WharfError | undefined;
}

export interface AppendOptions {
  /** The client says this request carries the rest of the file (`Upload-Complete: ?1`). */
  complete: boolean;
  /** Whether the body ended because the connection did (then a short body is no error). */
  wasCut: () => boolean;
  /** The whole file's SHA-256 (hex) the request declares (RUFH's Repr-Digest on an append). */
  reprSha256?: string | undefined;
}

/**
 * Resumable Uploads for HTTP (the IETF httpbis draft) over the same ResumableStorage and
 * completion as tus: an upload resource is a pending upload of kind `rufh`; its bytes collect
 * in resumable storage across requests, nodes and restarts, and the request that delivers the
 * last byte completes it through UploadService.completeUpload like every other flow.
 *
 * The HTTP layer holds the upload's lock around `append`, `state` and `cancel` (one writer at a
 * time across nodes) and speaks the protocol's headers; this knows what the bytes mean.
 */
export class RufhService {
  constructor(
    private readonly store: Store,
    private readonly resumable: ResumableService,
    private readonly storage: ResumableStorage,
    private readonly clock: Clock,
    private readonly settings: RufhSettings,
  ) {}

  /** The limits for this caller, or the server's defaults for an anonymous discovery. */
  limits(principal: Principal | undefined): RufhLimits {
    const maxSize = principal ? this.resumable.maxFileSize(principal) : this.resumable.defaultMaxFileSize();
    return { maxSize, maxAppendSize: this.settings.maxAppendSize };
  }

  /** How long the upload may still receive bytes, in whole seconds (`max-age`). */
  maxAge(upload: Upload): number {
    return Math.max(0, Math.floor((upload.expiresAt - this.clock.now()) / 1000));
  }

  /** Records the upload and makes room for its bytes; nothing is received yet. */
  async create(principal: Principal, declaration: ResumableDeclaration): Promise<Upload> {
    const upload = await this.resumable.create(principal, declaration, 'rufh');
    try {
      await this.storage.open(upload.storageKey, upload.size ?? 0);
    } catch (err) {
      await this.store.expireUpload(upload.id, this.clock.now(), failureOf(err));
      throw err;
    }
    return upload;
  }

  /** The caller's RUFH upload with this id, whatever its state. */
  async get(principal: Principal, id: string): Promise<Upload> {
    requireScope(principal, 'upload');
    const upload = await this.store.getUpload(id);
    if (upload?.kind !== 'rufh' || !canSeeUpload(principal, upload)) {
      throw new WharfError('NOT_FOUND', 'No such upload.');
    }
    return upload;
  }

  /**
   * Where the upload stands. A pending upload whose every byte arrived but whose completion a
   * crash interrupted is completed now (the caller holds its lock), unless `complete` is false
   * (the caller could not take the lock): then it reads as every byte received, not complete.
   */
  async state(upload: Upload, { complete = true } = {}): Promise<RufhState> {
    const current = await this.current(upload);
    if (current.status === 'completed') {
      let outcome: UploadOutcome | undefined;
      try {
        outcome = await this.resumable.finish(current);
      } catch (err) {
        // Its asset was deleted since: the upload is still complete.
        if (!isWharfError(err, 'NOT_FOUND')) throw err;
      }
      return { upload: current, offset: current.size ?? 0, outcome };
    }
    this.assertOpen(current);
    const received = await this.storage.received(current.storageKey);
    if (received === undefined) throw lost();
    if (received === current.size && complete)
      return { upload: current, offset: received, ...(await this.complete(current)) };
    return { upload: current, offset: received };
  }

  /**
   * Appends a request's body at `offset` (which must be the upload's): at most what the
   * declared size leaves, else the upload fails. The request that brings the last byte with
   * `complete` set completes it; a body that ends short of the size while claiming to be the
   * rest (and was not cut) contradicts the declared length.
   */
  async append(
    upload: Upload,
    offset: number,
    body: Readable | undefined,
    options: AppendOptions,
  ): Promise<AppendResult> {
    let current: Upload;
    try {
      current = await this.current(upload);
    } catch (err) {
      body?.resume();
      throw err;
    }
    const size = current.size ?? 0;
    if (current.status === 'completed') {
      body?.resume();
      // A retry of the request that completed it (its answer was lost): answered again.
      if (offset === size && options.complete && !body) {
        return { offset: size, outcome: await this.resumable.finish(current) };
      }
      throw new WharfError('UPLOAD_NOT_PENDING', 'This upload is complete.', { offset: size });
    }
    let received: number;
    try {
      this.assertOpen(current);
      if (options.reprSha256) current = await this.resumable.declareWhole(current, options.reprSha256);
      const stored = await this.storage.received(current.storageKey);
      if (stored === undefined) throw lost();
      received = stored;
      if (received !== offset) {
        throw new WharfError('OFFSET_MISMATCH', `The upload's offset is ${received}, not ${offset}.`, {
          expected_offset: received,
          provided_offset: offset,
        });
      }
    } catch (err) {
      body?.resume();
      throw err;
    }
    if (!body) return this.appended(current, received, undefined, options, false);

    // The head digest is recorded as soon as the head has passed, not when the request ends:
    // a client killed later in this very request finds its upload by the file.
    let recording: Promise<void> | undefined;
    const undeclared = current.intent.headSha256 === undefined;
    const head =
      offset === 0 && size > 0
        ? new HeadDigest(Math.min(size, HEAD_BYTES), (digest) => {
            if (undeclared)
              recording = this.store.setUploadIntent(current.id, { ...current.intent, headSha256: digest });
          })
        : undefined;
    const bounded = new Bounded(size - offset);
    const piped = head ? pipeline(body, head, bounded, noop) : pipeline(body, bounded, noop);
    // An overrun ends what storage reads cleanly, the refusal staying ours: tus.io's S3 store
    // loses a stream that fails while it reads an incomplete part stored before (its write then
    // never settles, holding the upload's lock) and leaks the part file it was filling.
    const source = new PassThrough();
    piped.pipe(source);
    piped.once('error', (err) => {
      if (bounded.overflowed) source.end();
      else source.destroy(err);
    });
    // A storage failure mid-write leaves the upload as far as storage says it got.
    let after: number;
    try {
      after = await this.storage.append(current.storageKey, offset, source);
      if (bounded.overflowed) throw tooLong(size);
    } catch (err) {
      if (!bounded.overflowed) {
        // Storage stopped reading (it failed: a full disk, a used-up S3 quota, a store away),
        // and what it did not read would stay in the pipe, holding the request's body: the
        // rest is read and dropped (up to the length, as ever), so the connection is free for
        // the client's next request. Left there, a HEAD on it waited out the idle timeout.
        piped.unpipe(source);
        piped.resume();
        throw err;
      }
      // More than the length: the draft has the upload end (its offset would pass it).
      const refusal = tooLong(size);
      await this.fail(current, refusal);
      throw refusal;
    } finally {
      await recording?.catch(noop);
    }
    return this.appended(current, after, head?.digest(), options, true);
  }

  /** After an append: the head digest checked or recorded, and the upload completed if whole. */
  private async appended(
    current: Upload,
    after: number,
    headDigest: string | undefined,
    options: AppendOptions,
    wrote: boolean,
  ): Promise<AppendResult> {
    const size = current.size ?? 0;
    const wrongHead = headDigest ? await this.recordHead(current, headDigest) : undefined;
    if (wrongHead) {
      // With the whole file here, it was processed and refused, as a wrong SHA-256 would be.
      if (after === size) return { offset: after, refusal: wrongHead };
      throw wrongHead;
    }
    if (after === size) {
      // Every byte is here: it completes now, whatever the client said or whether it is still
      // there to hear (the sweep would complete it anyway); a client that said "not yet" or
      // lost the answer learns it from the next HEAD.
      return { offset: after, ...(await this.complete(current)) };
    }
    if (options.complete && !options.wasCut()) {
      const err = new WharfError(
        'INCONSISTENT_LENGTH',
        `The request said it carried the rest of the file, but the upload has ${after} of ${size} bytes.`,
        { offset: after, length: size },
      );
      // Bytes that claimed to end the file and did not: the upload cannot be trusted to go on.
      // A request without any only said "done" too early, and changed nothing.
      if (wrote) await this.fail(current, err);
      throw err;
    }
    return { offset: after };
  }

  /** The client cancelled: the bytes are freed and the upload can never complete. */
  async cancel(upload: Upload): Promise<void> {
    const current = await this.current(upload);
    if (current.status === 'completed') {
      throw new WharfError('UPLOAD_NOT_PENDING', 'A finished upload cannot be cancelled; delete its asset.');
    }
    if (current.status === 'expired') throw new WharfError('UPLOAD_EXPIRED', 'This upload has expired.');
    await this.resumable.discard(current);
    await this.resumable.terminated(current);
  }

  /** Completes the upload; a refusal (wrong digest, over quota) has ended it (see ResumableService.finish). */
  private async complete(upload: Upload): Promise<{ outcome?: UploadOutcome; refusal?: WharfError }> {
    try {
      return { outcome: await this.resumable.finish(upload) };
    } catch (err) {
      if (!isWharfError(err) || err.code === 'SERVICE_UNAVAILABLE' || err.code === 'STORAGE_FULL') throw err;
      return { refusal: err };
    }
  }

  /** The upload cannot go on: it ends as failed and its bytes are freed. */
  private fail(upload: Upload, err: WharfError): Promise<void> {
    return this.resumable.fail(upload, err);
  }

  /**
   * The head digest of bytes that just arrived from offset 0: checked against the one the
   * client declared (a mismatch is a file other than the one it described), else recorded so
   * that a client that lost its state finds this upload by its file.
   */
  private async recordHead(upload: Upload, digest: string): Promise<WharfError | undefined> {
    const declared = upload.intent.headSha256;
    if (declared === digest) return undefined;
    if (declared !== undefined) {
      const err = new WharfError(
        'CHECKSUM_MISMATCH',
        `The first ${Math.min(upload.size ?? 0, HEAD_BYTES)} bytes do not match the declared digest.`,
        { algorithm: 'sha256' },
      );
      await this.fail(upload, err);
      return err;
    }
    await this.store.setUploadIntent(upload.id, { ...upload.intent, headSha256: digest });
    return undefined;
  }

  private async current(upload: Upload): Promise<Upload> {
    return (await this.store.getUpload(upload.id)) ?? upload;
  }

  private assertOpen(upload: Upload): void {
    if (upload.status === 'expired' || !this.resumable.isOpen(upload)) {
      throw new WharfError('UPLOAD_EXPIRED', 'This upload was cancelled, failed or has expired.');
    }
  }
}

function noop(): void {}

function lost(): WharfError {
  // Storage no longer has the bytes (an operator removed them): the upload cannot resume.
  return new WharfError('UPLOAD_EXPIRED', 'The bytes of this upload are gone; start again.');
}

function tooLong(size: number): WharfError {
  return new WharfError('FILE_TOO_LARGE', `The upload's length is ${size} bytes; more were sent.`, {
    limit: size,
  });
}

/**
 * Passes at most `limit` bytes and fails the stream at the first byte past them, so that a
 * body without a Content-Length (chunked) that runs on is not read any further; the append then
 * ends the upload (the draft: an offset past the length invalidates it).
 */
class Bounded extends Transform {
  overflowed = false;
  private left: number;

  constructor(limit: number) {
    super();
    this.left = limit;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (chunk.length > this.left) {
      this.overflowed = true;
      callback(tooLong(this.left));
      return;
    }
    this.left -= chunk.length;
    callback(null, chunk);
  }
}

/**
 * SHA-256 of the first `length` bytes that pass, computed on the way (nothing is buffered);
 * `done` hears it the moment the last of them passes.
 */
class HeadDigest extends Transform {
  private readonly hash = createHash('sha256');
  private seen = 0;
  private value: string | undefined;

  constructor(
    private readonly length: number,
    private readonly done: (digest: string) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.seen < this.length) {
      const take = Math.min(chunk.length, this.length - this.seen);
      this.hash.update(take === chunk.length ? chunk : chunk.subarray(0, take));
      this.seen += take;
      if (this.seen === this.length) {
        this.value = this.hash.digest('hex');
        this.done(this.value);
      }
    }
    callback(null, chunk);
  }

  /** The digest once the whole head passed; undefined when the body ended before. */
  digest(): string | undefined {
    return this.value;
  }
}
