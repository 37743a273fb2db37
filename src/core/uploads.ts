import { pipeline, type Readable } from 'node:stream';
import { AssetRecorder } from './asset-recording.js';
import {
  canSeeUpload,
  requireReadOrUpload,
  requireScope,
  seesWholeAccount,
  uploadIntent,
} from './authorization.js';
import type { Clock } from './clock.js';
import { formContentType, UploadCompletion } from './completion.js';
import { checkAgainstHeld, checkDigests, parseDigest } from './digests.js';
import { DirectUploadLeases } from './direct-leases.js';
import { isWharfError, WharfError } from './errors.js';
import { endedRefusal, failureOf, type UploadEnding } from './events.js';
import { DigestStream } from './hashing.js';
import type { IdSource } from './ids.js';
import { asDeclared, type KeptIntent, presignAgain } from './intent-replay.js';
import { KeyedQueue } from './keyed-queue.js';
import type { Asset, Digests, Principal, Upload } from './model.js';
import { validateContentType, validateFileName } from './names.js';
import type { BlobStore, PresignedPost, Store, UploadLimits, UploadToRecord } from './ports.js';
import { storageKeyFor, uploadIdFromKey } from './storage-keys.js';
import { NO_TELEMETRY, type Telemetry } from './telemetry.js';
import { UploadStreams } from './upload-streams.js';
import { UploadSweep } from './upload-sweep.js';
import type {
  CompletionClaims,
  DirectUpload,
  FileDeclaration,
  IntentResult,
  PostDeclaration,
  PresignOptions,
  ReceivedObject,
  ReceivedPost,
  UploadKindHooks,
  UploadOutcome,
  UploadSettings,
} from './upload-types.js';

const MAX_EXPIRES_SECONDS = 7 * 24 * 3600;
const EXTERNAL_ID = /^[A-Za-z0-9_-]{1,128}$/;

function noop(): void {}

function checkExternalId(id: string | undefined): string | null {
  if (id === undefined) return null;
  if (!EXTERNAL_ID.test(id)) {
    throw new WharfError('VALIDATION_FAILED', 'An upload id must be 1 to 128 letters, digits, _ or -.');
  }
  return id;
}

export class UploadService {
  /** The leases of the direct uploads this process streams; the server renews them periodically. */
  readonly leases: DirectUploadLeases;
  /** Turns verified bytes into assets; runs the jobs that check or free bytes afterwards. */
  readonly recorder: AssetRecorder;
  /**
   * The upload bodies each account streams through this process at once: every flow that reads
   * one takes a stream first (direct uploads here, the storage endpoint, tus, RUFH).
   */
  readonly streams: UploadStreams;
  private readonly sweeper: UploadSweep;
  private readonly completion: UploadCompletion;

  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly clock: Clock,
    private readonly ids: IdSource,
    private readonly settings: UploadSettings,
    private readonly telemetry: Telemetry = NO_TELEMETRY,
  ) {
    this.leases = new DirectUploadLeases(store, clock, settings.directUploadLeaseMs);
    this.streams = new UploadStreams(
      settings.maxUploadStreamsPerAccount ?? Number.POSITIVE_INFINITY,
      settings.maxUploadStreamsPerToken ?? Number.POSITIVE_INFINITY,
    );
    this.sweeper = new UploadSweep(this, store, blobs, clock, settings, telemetry, this.kindHooks);
    this.recorder = new AssetRecorder(store, blobs, clock, ids, telemetry, (id, ending) =>
      this.endDirect(id, ending),
    );
    this.completion = new UploadCompletion(
      store,
      blobs,
      clock,
      ids,
      settings,
      telemetry,
      this.recorder,
      this.sealing,
      (upload, at) => this.assertNotEnded(upload, at),
    );
    // A direct upload the sweep ends had its process die mid-body (its lease ran out): on S3 its
    // write is a multipart upload left open, freed now rather than as debris an hour later.
    this.registerKind('direct', { expire: async (upload) => this.blobs.abortWrites?.(upload.storageKey) });
  }

  /** The largest file the caller may upload: its account's limit, or its token's if smaller. */
  maxFileSize(principal: Pick<Principal, 'maxFileSize' | 'grant'>): number {
    return Math.min(
      principal.maxFileSize ?? this.settings.maxFileSize,
      principal.grant?.maxFileSize ?? Number.POSITIVE_INFINITY,
    );
  }

  /** WHARF_MAX_FILES_PER_REQUEST: how many files one presign call may declare. */
  get maxFilesPerRequest(): number {
    return this.settings.maxFilesPerRequest;
  }

  /** The file size limit of an account, for requests that carry no principal (storage). */
  async accountFileLimit(accountId: string): Promise<number> {
    const account = await this.store.getAccount(accountId);
    return this.maxFileSize({ maxFileSize: account?.maxFileSize ?? null });
  }

  private readonly kindHooks = new Map<Upload['kind'], UploadKindHooks>();
  /**
   * Per storage key: bytes arriving at the embedded endpoint replace what is stored there only
   * while no completion of that upload runs, and a completion checks only bytes nothing is
   * replacing (see holdOpen). In-process: the embedded endpoint is one server's.
   */
  private readonly sealing = new KeyedQueue();
  /**
   * Direct uploads of this process that ended but whose ending could not be recorded (SQLITE_FULL
   * while the disk was full, a database outage), with that ending and when it happened. A direct
   * upload ends with its request; until its lease ran out (see DirectUploadLeases) it held its
   * token's files, bytes and open-upload slot and listed as pending, and then it would be recorded
   * as expired rather than as the failure it was. Each sweep records them again (see
   * endUnrecorded); a cancel of one records it at once. In memory: only this process knows its
   * request is over.
   */
  private readonly unrecorded = new Map<string, { ending: UploadEnding; at: number }>();

  /** Lets a protocol's service take part in reconciliation and expiry of its uploads. */
  registerKind(kind: Upload['kind'], hooks: UploadKindHooks): void {
    this.kindHooks.set(kind, hooks);
  }

  /**
   * Bytes through Wharf: streamed to storage, hashed in the same pass, verified, then an asset.
   * One of the account's upload streams is held until the body is over (see UploadStreams).
   */
  async uploadDirect(principal: Principal, input: DirectUpload): Promise<UploadOutcome> {
    let release: () => void;
    try {
      release = this.streams.take(principal);
    } catch (err) {
      input.body.resume();
      throw err;
    }
    try {
      return await this.streamDirect(principal, input);
    } finally {
      release();
    }
  }

  private async streamDirect(principal: Principal, input: DirectUpload): Promise<UploadOutcome> {
    let upload: Upload;
    let limit: number;
    let contentType: string;
    let expectedSha256: string | null;
    let expectedMd5: string | null;
    try {
      requireScope(principal, 'upload');
      const name = validateFileName(input.name);
      contentType = validateContentType(input.contentType);
      expectedSha256 = input.expected?.sha256 ? parseDigest('sha256', input.expected.sha256, 'sha256') : null;
      expectedMd5 = input.expected?.md5 ? parseDigest('md5', input.expected.md5, 'md5') : null;
      limit = this.maxFileSize(principal);
      if (input.declaredSize !== undefined && input.declaredSize > limit) {
        throw new WharfError('FILE_TOO_LARGE', `The file is larger than the limit of ${limit} bytes.`, {
          limit,
        });
      }
      // The row exists before any byte is written, so a crash mid-write leaves something
      // the sweep can find and clean.
      const leaseEnd = this.leases.until();
      upload = this.newUpload(principal, 'direct', {
        name,
        contentType,
        size: null,
        sha256: expectedSha256,
        md5: expectedMd5,
        externalId: null,
        intent: input.intent ?? {},
        expiresAt: leaseEnd,
      });
      // Its expiry is a lease, renewed while the body streams (see DirectUploadLeases), not its
      // token's: a request that began while the token was valid is taken whole, however long the
      // link takes (a token expiring mid-body must not let the sweep end a live upload).
      upload.expiresAt = leaseEnd;
      // Nothing is held against the quota: bytes the account already holds cost nothing, so
      // only the completion, with the content known, can tell (it commits only what fits). A
      // token's budget counts every file it sends, so a declared length is held now.
      await this.record(principal, [{ upload, reserve: { quota: 0, token: input.declaredSize ?? null } }]);
    } catch (err) {
      input.body.resume();
      // Refused for its bytes (too large by its Content-Length, no room to record it): counted
      // as a failed upload, as the same refusal found while writing is.
      if (isWharfError(err, 'FILE_TOO_LARGE') || isWharfError(err, 'STORAGE_FULL')) {
        this.telemetry.uploadFailed('direct', err);
      }
      throw err;
    }

    // Renewed until the request is over, its ending recorded (or remembered: see unrecorded).
    this.leases.hold(upload.id);
    try {
      let digests: Digests | undefined;
      try {
        digests = await this.writeVerified(upload.storageKey, input.body, limit, contentType, async (d) => {
          checkDigests(d, { sha256: expectedSha256, md5: expectedMd5 });
          const trailing = input.trailing?.();
          if (trailing) checkDigests(d, trailing);
          await input.beforeCommit?.();
        });
      } catch (thrown) {
        const err = input.explain ? input.explain(thrown) : thrown;
        this.telemetry.uploadFailed('direct', err);
        // The client is told why its upload failed, even when recording that failed too.
        await this.endDirect(upload.id, failureOf(err));
        throw err;
      }
      return await this.recorder.finish(upload, digests);
    } finally {
      this.leases.release(upload.id);
    }
  }

  /**
   * Ends a direct upload whose request is over. When the database cannot take the write (full,
   * down), the ending is remembered and recorded by a later sweep (see unrecorded).
   */
  private async endDirect(uploadId: string, ending: UploadEnding): Promise<void> {
    const at = this.clock.now();
    try {
      await this.store.expireUpload(uploadId, at, ending);
    } catch {
      this.unrecorded.set(uploadId, { ending, at });
    }
  }

  /** Whether some direct upload's ending still waits to be recorded (see endUnrecorded). */
  get hasUnrecorded(): boolean {
    return this.unrecorded.size > 0;
  }

  /**
   * Records the endings of this process's direct uploads that could not be recorded when their
   * requests ended. Stops at the first that still fails (the database is still full or down):
   * the next sweep tries again. Returns how many it ended.
   */
  async endUnrecorded(): Promise<number> {
    let ended = 0;
    for (const [id, { ending, at }] of [...this.unrecorded]) {
      try {
        if (await this.store.expireUpload(id, at, ending)) ended += 1;
      } catch {
        break;
      }
      this.unrecorded.delete(id);
    }
    return ended;
  }

  /**
   * Whether `uploadId` is a direct upload of this process whose request is over but whose ending
   * is not recorded yet; if so, records it now (a failure to is thrown, and it stays remembered).
   */
  async endIfUnrecorded(uploadId: string): Promise<boolean> {
    const left = this.unrecorded.get(uploadId);
    if (!left) return false;
    await this.store.expireUpload(uploadId, left.at, left.ending);
    this.unrecorded.delete(uploadId);
    return true;
  }

  /** A declaration's answer again, from what its idempotency record kept (see intent-replay.ts). */
  presignAgain(principal: Principal, kept: readonly KeptIntent[]): Promise<IntentResult[]> {
    return presignAgain(this.store, this.blobs, principal, kept);
  }

  /** Upload intents: one presigned request per file, or the existing asset for known content. */
  async createPresigned(
    principal: Principal,
    files: FileDeclaration[],
    options: PresignOptions = {},
  ): Promise<IntentResult[]> {
    requireScope(principal, 'upload');
    if (files.length === 0) throw new WharfError('VALIDATION_FAILED', 'At least one file is required.');
    if (files.length > this.settings.maxFilesPerRequest) {
      throw new WharfError(
        'TOO_MANY_FILES',
        `At most ${this.settings.maxFilesPerRequest} files per request.`,
      );
    }
    const limit = this.maxFileSize(principal);
    // A batch's refusal names the file, even in a list of one; a request of one file (the native
    // API's single form, ActiveStorage's, Inspect's) has no list to name it in.
    const batch = options.batch ?? files.length > 1;
    const place = (index: number) => (batch ? index : undefined);
    const declared = files.map((file, index) =>
      atIndex(place(index), () => this.validateDeclaration(file, limit)),
    );

    // One moment for the expiry, the upload's creation and the URL's signing: a replay signs the
    // URL again from the creation and the expiry recorded (see intent-replay.ts).
    const now = this.clock.now();
    const expiresInSeconds = this.expiry(options.expiresInSeconds, principal, now);

    // Only a caller that sees the whole account may learn that it already holds some content.
    const hashes = seesWholeAccount(principal)
      ? [...new Set(declared.flatMap((f) => (f.sha256 ? [f.sha256] : [])))]
      : [];
    // Content still being verified may turn out to be other bytes: the file is sent again.
    const existing = new Map(
      (hashes.length > 0 ? await this.store.findAssetsBySha256(principal.accountId, hashes) : [])
        .filter((a) => a.status === 'ready')
        .map((a) => [a.sha256, a]),
    );

    const expiresAt = now + expiresInSeconds * 1000;
    const results: IntentResult[] = [];
    const uploads: UploadToRecord[] = [];
    for (const [index, file] of declared.entries()) {
      const known = file.sha256 ? existing.get(file.sha256) : undefined;
      if (known) {
        // Content the account already holds costs no new storage.
        atIndex(place(index), () => checkAgainstHeld(file, known));
        results.push({ status: 'exists', asset: known });
        continue;
      }
      const upload = atIndex(place(index), () =>
        this.newUpload(principal, 'presigned', { ...file, expiresAt }, now),
      );
      uploads.push({ upload, reserve: { quota: file.size, token: file.size } });
      const request = await this.blobs.presignPut({
        key: upload.storageKey,
        contentType: asDeclared(files[index]?.contentType, upload.contentType),
        size: file.size,
        md5: options.contentTypeOnly ? null : file.md5,
        sha256: options.contentTypeOnly ? null : file.sha256,
        contentTypeOnly: options.contentTypeOnly,
        expiresInSeconds,
        now,
      });
      if (request.rewritable) upload.intent = { ...upload.intent, rewritable: true };
      results.push({ status: 'pending', upload, request });
    }
    if (uploads.length > 0) await this.record(principal, uploads);
    return results;
  }

  /** A browser-form (POST policy) upload: the policy binds the key, a size range and expiry. */
  async createPost(
    principal: Principal,
    declaration: PostDeclaration,
  ): Promise<{ upload: Upload; post: PresignedPost }> {
    requireScope(principal, 'upload');
    const name = validateFileName(declaration.name);
    const boundType =
      declaration.contentType === undefined ? undefined : validateContentType(declaration.contentType);
    const formType = boundType ?? validateContentType(declaration.impliedContentType);
    const limit = this.maxFileSize(principal);
    const maxSize = Math.min(declaration.maxSize ?? limit, limit);
    const externalId = checkExternalId(declaration.externalId);
    const expiresInSeconds = this.expiry(declaration.expiresInSeconds, principal);
    const now = this.clock.now();
    const upload = this.newUpload(
      principal,
      'post',
      {
        name,
        contentType: formType,
        size: null,
        sha256: null,
        md5: null,
        externalId,
        // Either way the type is settled now: nothing the form may send can change it.
        intent: { ...declaration.intent, boundType: true },
        expiresAt: now + expiresInSeconds * 1000,
      },
      now,
    );
    const post = await this.blobs.presignPost({
      key: upload.storageKey,
      contentType: boundType,
      minSize: 0,
      maxSize,
      expiresInSeconds,
      now,
    });
    if (post.rewritable) upload.intent = { ...upload.intent, rewritable: true };
    // The size is unknown until the form arrives: nothing is held until then (see
    // UploadToRecord). On the embedded endpoint the file is held as it arrives (holdArrived);
    // on S3 it is first counted when the upload completes, which commits it only if it fits.
    await this.record(principal, [{ upload, reserve: { quota: null, token: null } }], maxSize);
    return { upload, post };
  }

  /** The upload that writes this storage key (APIs that identify uploads by their path). */
  async getByStorageKey(principal: Principal, key: string): Promise<Upload> {
    const uploadId = uploadIdFromKey(key);
    const upload = uploadId ? await this.store.getUpload(uploadId) : undefined;
    return visible(principal, upload?.storageKey === key ? upload : undefined);
  }

  /** The upload a client named with its own id. */
  async getByExternalId(principal: Principal, externalId: string): Promise<Upload> {
    return visible(principal, await this.store.getUploadByExternalId(principal.accountId, externalId));
  }

  /** An upload the caller may see: any of its account's with `read`, its own with `upload`. */
  async get(principal: Principal, uploadId: string): Promise<Upload> {
    return visible(principal, await this.store.getUpload(uploadId));
  }

  /**
   * Bytes PUT to a presigned URL of the embedded storage endpoint. The caller has already
   * checked the signature; this checks the intent is still open and the bytes are what
   * was declared, and makes the object visible only then.
   */
  async receive(input: ReceivedObject): Promise<Digests> {
    const upload = await this.openUploadFor(input.key, 'presigned', input.body, input.startedAt);
    // An upload signed without a size (an S3 client presigning PutObject) may send up to the limit.
    const limit = upload.size ?? (await this.unknownSizeLimit(upload));
    if (
      (upload.size !== null && input.size !== upload.size) ||
      input.size > limit ||
      // Media types are case-insensitive: the signature bound the header as the client spelled it.
      input.contentType.toLowerCase() !== upload.contentType
    ) {
      input.body.resume();
      if (upload.size === null && input.size > limit) {
        throw new WharfError(
          'FILE_TOO_LARGE',
          `The file (${input.size} bytes) is larger than the limit of ${limit} bytes.`,
          { limit, size: input.size },
        );
      }
      throw new WharfError('SIZE_MISMATCH', 'The request does not match the declared size and type.');
    }
    let release: (() => void) | undefined;
    try {
      const digests = await this.writeVerified(
        input.key,
        input.body,
        limit,
        upload.contentType,
        async (d) => {
          if (d.size !== input.size) {
            throw new WharfError('SIZE_MISMATCH', `Expected ${input.size} bytes, received ${d.size}.`);
          }
          checkDigests(d, input.expected);
          checkDigests(d, { sha256: upload.sha256, md5: upload.md5 });
          release = await this.holdOpen(upload, input.startedAt);
        },
      ).catch(this.failed('presigned'));
      if (upload.intent.autoComplete) await this.recorder.finish(upload, digests);
      return digests;
    } finally {
      release?.();
    }
  }

  /**
   * Called once a PUT's or a form's bytes have all arrived, before they replace what storage
   * holds at the upload's key: waits for a completion of the upload that is running, then
   * checks that the upload is still open (its expiry as of `startedAt`), and holds the key until the caller releases it (once
   * the bytes are in place, or recorded when the upload completes by itself). A completion
   * holds the key while it checks and records the bytes, so bytes that finish arriving after it
   * are refused rather than replacing what it verified.
   */
  private async holdOpen(upload: Upload, startedAt: number): Promise<() => void> {
    const release = await this.sealing.lock(upload.storageKey);
    try {
      const current = await this.store.getUpload(upload.id);
      if (!current) throw new WharfError('NOT_FOUND', 'No upload is waiting for this key.');
      this.assertOpen(current, startedAt);
      return release;
    } catch (err) {
      release();
      throw err;
    }
  }

  /**
   * The upload of this kind, open when the request began, that a request to the embedded endpoint
   * writes. On a refusal the request's body is drained, so the client reads the answer.
   */
  private async openUploadFor(
    key: string,
    kind: Upload['kind'],
    body: Readable,
    startedAt: number,
  ): Promise<Upload> {
    try {
      const upload = await this.uploadByKey(key, kind);
      this.assertOpen(upload, startedAt);
      return upload;
    } catch (err) {
      body.resume();
      throw err;
    }
  }

  /**
   * Refuses a request that carries no key of its own (one to the embedded endpoint, whose URL a
   * key signed) for an account that is disabled: its keys stop working at once, and so do the
   * URLs they signed, as its signed download URLs do.
   */
  async requireActiveAccount(accountId: string): Promise<void> {
    const account = await this.store.getAccount(accountId);
    if (account?.disabled) throw new WharfError('ACCOUNT_DISABLED', 'This account is disabled.');
  }

  /** The upload that writes `key` through the embedded endpoint, whatever its state. */
  async uploadByKey(key: string, kind: Upload['kind']): Promise<Upload> {
    const uploadId = uploadIdFromKey(key);
    const upload = uploadId ? await this.store.getUpload(uploadId) : undefined;
    if (!upload || upload.storageKey !== key || upload.kind !== kind) {
      throw new WharfError('NOT_FOUND', 'No upload is waiting for this key.');
    }
    return upload;
  }

  /** The still-open upload of this kind that writes `key` (the embedded endpoint's check). */
  async openUploadByKey(key: string, kind: Upload['kind']): Promise<Upload> {
    const upload = await this.uploadByKey(key, kind);
    this.assertOpen(upload);
    return upload;
  }

  /**
   * Runs `work` in the line of the upload's storage key that PUTs and forms to the embedded
   * endpoint (see holdOpen) and completions take: what ends an upload from outside (a cancel)
   * then never interleaves with bytes being put in place or checked.
   */
  inLineOf<T>(upload: Upload, work: () => Promise<T>): Promise<T> {
    return this.sealing.run(upload.storageKey, work);
  }

  /**
   * Until when a pending upload whose bytes arrived in time may still be completed (see
   * UploadSettings.completionGraceMs). Past it the upload has ended, whether or not the sweep
   * has recorded that yet (see assertNotEnded).
   */
  completableUntil(upload: Upload): number {
    return upload.expiresAt + this.settings.completionGraceMs;
  }

  /**
   * Refuses to complete an upload that has ended (or to list or complete a multipart upload's
   * parts), judged in a request that began `at`. Bytes are taken only while the upload is open
   * (assertOpen), so whatever storage holds of a pending upload arrived in time. An upload that
   * waits for its client's confirm (a presigned PUT or form: POST complete, netiks' confirm,
   * FileSpin's register, Inspect's complete) may be confirmed until completableUntil; past it
   * that upload has ended though the sweep, which runs when it runs, has not recorded it yet
   * (completing it then made an asset of bytes the sweep would otherwise have freed). One that
   * completes by itself once its bytes are all there (intent.autoComplete: multipart, tus, RUFH,
   * /v1/s3/sign, ActiveStorage) is not ended by time: its bytes could only arrive in time, and
   * the sweep completes it whenever it finds them, however late (a Wharf that was down for
   * longer than the hour must not free files the bucket accepted while their URLs were valid);
   * the sweep ends it only when its bytes never all arrived.
   */
  assertNotEnded(upload: Upload, at = this.clock.now()): void {
    if (upload.status === 'completed') throw alreadyCompleted(upload);
    if (upload.status === 'expired') throw endedRefusal(upload);
    if (!upload.intent.autoComplete && at > this.completableUntil(upload)) {
      throw new WharfError('UPLOAD_EXPIRED', 'This upload has expired.');
    }
  }

  /** Refuses an upload that can no longer receive bytes (in a request that began `at`). */
  assertOpen(upload: Upload, at = this.clock.now()): void {
    if (upload.status === 'completed') throw alreadyCompleted(upload);
    if (upload.status === 'expired') throw endedRefusal(upload);
    if (at > upload.expiresAt) {
      throw new WharfError('UPLOAD_EXPIRED', 'This upload has expired.');
    }
  }

  /** A POST Object form's file, after the endpoint verified the policy that names its key. */
  async receivePost(input: ReceivedPost): Promise<Digests> {
    const upload = await this.openUploadFor(input.key, 'post', input.body, input.startedAt);
    // A form's file has the type the form gave it, unless the policy bound one.
    const contentType = formContentType(upload, input.contentType);
    let release: (() => void) | undefined;
    try {
      const digests = await this.writeVerified(
        input.key,
        input.body,
        input.maxSize,
        contentType,
        async (d) => {
          if (d.size < input.minSize) {
            throw new WharfError(
              'FILE_TOO_SMALL',
              `The file is smaller than the minimum of ${input.minSize} bytes.`,
            );
          }
          release = await this.holdOpen(upload, input.startedAt);
          await this.holdArrived(upload, d, input.startedAt);
        },
      ).catch(this.failed('post'));
      if (upload.intent.autoComplete) await this.recorder.finish(upload, digests, { contentType });
      return digests;
    } finally {
      release?.();
    }
  }

  /**
   * A form's file, whose size was unknown until now, has arrived at the embedded endpoint: it is
   * held against the account's quota and the token's budget before it is kept, so files waiting
   * for their completion count as any pending upload does, and one that cannot fit is refused
   * now (the form may be sent again). Content the account already holds costs it nothing, as at
   * completion, for a caller that may learn so (see resumable.ts).
   */
  private async holdArrived(upload: Upload, digests: Digests, startedAt: number): Promise<void> {
    const known =
      !upload.intent.isolated &&
      (await this.store.findAssetBySha256(upload.accountId, digests.sha256))?.status === 'ready';
    const hold = { quota: known ? 0 : digests.size, token: digests.size };
    if (await this.store.holdArrived(upload.id, hold)) return;
    // Ended since holdOpen looked (another node aborted or expired it).
    const current = await this.store.getUpload(upload.id);
    if (current) this.assertOpen(current, startedAt);
    throw new WharfError('UPLOAD_EXPIRED', 'This upload has expired.');
  }

  /**
   * Turns a presigned upload into an asset once storage holds the declared bytes. Idempotent.
   * The upload by its id, or one the caller already looked up (by its storage key, say): the
   * `upload` scope and the caller's sight of it are checked here either way, so no protocol's
   * confirm step can complete an upload for a caller that may not (a hunt completed netiks
   * uploads with a read-only key through completeUpload, which asks nobody).
   */
  async complete(
    principal: Principal,
    upload: string | Upload,
    claims: CompletionClaims = {},
  ): Promise<UploadOutcome> {
    requireScope(principal, 'upload');
    const own = typeof upload === 'string' ? await this.get(principal, upload) : visible(principal, upload);
    return this.completeUpload(own, claims);
  }

  /**
   * An upload the caller may see, with its asset once it has one. An upload that completes by
   * itself (no confirm step: ActiveStorage's) is completed first if its bytes have arrived: a
   * look at it only brings forward what the sweep does, so any caller that may see it brings
   * it, as the keyless redirect of its signed id does. Any other pending upload is left for its
   * confirm (see `complete`).
   */
  async lookAt(
    principal: Principal,
    uploadId: string,
  ): Promise<{ upload: Upload; asset: Asset | undefined }> {
    const upload = await this.get(principal, uploadId);
    if (upload.status === 'pending' && !upload.intent.autoComplete) return { upload, asset: undefined };
    // Ended without an asset: there is nothing to bring forward (nor a refusal to answer).
    if (upload.status === 'expired') return { upload, asset: undefined };
    try {
      return { upload, asset: (await this.completeUpload(upload)).asset };
    } catch (err) {
      // Bytes that have not arrived, or never will (the upload expired without them).
      if (isWharfError(err, 'UPLOAD_INCOMPLETE') || isWharfError(err, 'UPLOAD_EXPIRED')) {
        return { upload, asset: undefined };
      }
      throw err;
    }
  }

  /** The most an upload of undeclared size may send: its account's limit, or its token's. */
  async unknownSizeLimit(upload: Upload): Promise<number> {
    return Math.min(
      await this.accountFileLimit(upload.accountId),
      upload.intent.maxSize ?? Number.POSITIVE_INFINITY,
    );
  }

  /**
   * Completes an upload whichever way it arrived: idempotent, and checks what storage holds
   * against everything declared and claimed (see UploadCompletion). It asks nobody: a caller's
   * request goes through `complete` (or `lookAt`), which check who asks.
   */
  completeUpload(
    upload: Upload,
    claims: CompletionClaims = {},
    received?: Digests,
    at = this.clock.now(),
  ): Promise<UploadOutcome> {
    return this.completion.completeUpload(upload, claims, received, at);
  }

  /**
   * Expires abandoned intents and frees their bytes; completes uploads whose bytes arrived with
   * no confirm; clears storage debris (see UploadSweep).
   */
  sweep(): Promise<{ expired: number; debris: number; reconciled: number }> {
    return this.sweeper.sweep();
  }

  /** The `free-upload` job (see UploadSweep.freeEnded). */
  freeEnded(uploadId: string): Promise<void> {
    return this.sweeper.freeEnded(uploadId);
  }

  /** Completes uploads with no confirm step whose bytes storage holds (see UploadSweep). */
  reconcile(): Promise<number> {
    return this.sweeper.reconcile();
  }

  /** Completes one such upload if its bytes have arrived (see UploadSweep.completeIfArrived). */
  completeIfArrived(upload: Upload): Promise<UploadOutcome | undefined> {
    return this.sweeper.completeIfArrived(upload);
  }

  /**
   * A pending upload of the caller's, with a fresh id and the storage key that id gives. What
   * the caller's scopes, confinement and token allow and stamp is applied here (every flow
   * builds its uploads through this); an upload never outlives the token it was made with (but
   * for a direct upload's body, which began in time: its expiry is a lease, see uploadDirect).
   */
  newUpload(
    principal: Principal,
    kind: Upload['kind'],
    fields: Pick<
      Upload,
      'name' | 'contentType' | 'size' | 'sha256' | 'md5' | 'externalId' | 'intent' | 'expiresAt'
    >,
    now = this.clock.now(),
  ): Upload {
    const intent = uploadIntent(principal, fields);
    const id = this.ids.id();
    return {
      id,
      accountId: principal.accountId,
      keyId: principal.keyId,
      tokenId: principal.tokenId,
      kind,
      name: fields.name,
      contentType: fields.contentType,
      size: fields.size,
      sha256: fields.sha256,
      md5: fields.md5,
      storageKey: storageKeyFor(principal.accountId, id, fields.name),
      status: 'pending',
      seq: null,
      externalId: fields.externalId,
      intent,
      multipartId: null,
      assetId: null,
      deduplicated: false,
      reserved: { quota: 0, token: 0 },
      createdAt: now,
      expiresAt: Math.min(fields.expiresAt, principal.grant?.expiresAt ?? Number.POSITIVE_INFINITY),
      completedAt: null,
      ending: null,
    };
  }

  /**
   * Records new uploads of the caller's, holding what they need against its account's quota,
   * its token's budgets and its open-upload limit, all at once (see UploadStore.insertUploads).
   * `maxFileSize` bounds what an upload of unknown size holds (default: the caller's limit).
   */
  async record(principal: Principal, uploads: UploadToRecord[], maxFileSize?: number): Promise<void> {
    const limits: UploadLimits = {
      maxFileSize: maxFileSize ?? this.maxFileSize(principal),
      maxOpenUploads:
        principal.tokenId === null
          ? this.settings.maxOpenUploadsPerKey
          : Math.min(
              principal.grant?.maxOpenUploads ?? this.settings.maxOpenUploadsPerToken,
              this.settings.maxOpenUploadsPerToken,
            ),
    };
    const recorded = await this.store.insertUploads(uploads, limits);
    uploads.forEach(({ upload }, i) => {
      upload.seq = recorded[i]!.seq;
      upload.reserved = recorded[i]!.reserved;
    });
  }

  /** How long a URL may stay valid: as asked (within bounds), never past the caller's token. */
  private expiry(requested: number | undefined, principal: Principal, now = this.clock.now()): number {
    let seconds = this.settings.uploadExpiresInSeconds;
    if (requested !== undefined) {
      if (!Number.isInteger(requested) || requested < 1 || requested > MAX_EXPIRES_SECONDS) {
        throw new WharfError('VALIDATION_FAILED', `Expiry must be 1 to ${MAX_EXPIRES_SECONDS} seconds.`);
      }
      seconds = requested;
    }
    const grant = principal.grant;
    if (grant) seconds = Math.min(seconds, Math.max(1, Math.floor((grant.expiresAt - now) / 1000)));
    return seconds;
  }

  private validateDeclaration(file: FileDeclaration, limit: number) {
    const name = validateFileName(file.name);
    const contentType = validateContentType(file.contentType);
    if (!Number.isSafeInteger(file.size) || file.size < 0) {
      throw new WharfError('VALIDATION_FAILED', 'size must be a non-negative integer.');
    }
    if (file.size > limit) {
      throw new WharfError('FILE_TOO_LARGE', `The file is larger than the limit of ${limit} bytes.`, {
        limit,
      });
    }
    return {
      name,
      contentType,
      size: file.size,
      sha256: file.sha256 ? parseDigest('sha256', file.sha256, 'sha256') : null,
      md5: file.md5 ? parseDigest('md5', file.md5, 'md5') : null,
      externalId: checkExternalId(file.externalId),
      intent: file.intent ?? {},
    };
  }

  /**
   * Reports bytes of a `flow` upload refused or broken off on their way in: a presigned PUT's,
   * a form's, a multipart part's, a tus PATCH's (whose protocol the HTTP layer speaks).
   */
  transferFailed(flow: Upload['kind'], err: unknown): void {
    this.telemetry.uploadFailed(flow, err);
  }

  /** Reports bytes of a `flow` upload refused or broken off, then rethrows (for `.catch`). */
  failed(flow: Upload['kind']): (err: unknown) => never {
    return (err) => {
      this.transferFailed(flow, err);
      throw err;
    };
  }

  private async writeVerified(
    key: string,
    body: Readable,
    limit: number,
    contentType: string,
    verify: (digests: Digests) => void | Promise<void>,
  ): Promise<Digests> {
    const digest = new DigestStream(limit);
    // pipeline() carries a client abort on `body` into `digest`, which the store reads.
    const source = pipeline(body, digest, noop);
    await this.blobs.write(key, source, async () => {
      const d = digest.digests();
      await verify(d);
      return { ...d, contentType };
    });
    return digest.digests();
  }
}

function visible(principal: Principal, upload: Upload | undefined): Upload {
  requireReadOrUpload(principal);
  if (!upload || !canSeeUpload(principal, upload)) throw new WharfError('NOT_FOUND', 'No such upload.');
  return upload;
}

/** A refusal of one file of a batch names the file (none: a request of one file, named by itself). */
function atIndex<T>(index: number | undefined, work: () => T): T {
  if (index === undefined) return work();
  try {
    return work();
  } catch (err) {
    if (err instanceof WharfError) {
      throw new WharfError(err.code, `files[${index}]: ${err.message}`, { ...err.details, index });
    }
    throw err;
  }
}

/**
 * A completed upload's refusal names its asset: a client that lost the answer that completed it
 * (or whose upload the sweep completed, its bytes all there) learns where its file is without
 * another request.
 */
function alreadyCompleted(upload: Upload): WharfError {
  return new WharfError(
    'UPLOAD_NOT_PENDING',
    'This upload has already been completed.',
    upload.assetId ? { asset_id: upload.assetId } : undefined,
  );
}
