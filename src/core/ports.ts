/**
 * The core's ports: what it needs from the outside, in its own terms. Adapters under
 * src/db and src/blobs implement them; nothing here knows SQL, a filesystem or an SDK.
 */
import type { Readable } from 'node:stream';
import type { EventQuery, NewEvent, UploadEnding, WharfEvent } from './events.js';
import type {
  Access,
  Account,
  ApiKey,
  Asset,
  AssetAnalysis,
  Derivative,
  FileVersion,
  ImagePreset,
  Job,
  ObjectInfo,
  ProcessingStatus,
  Upload,
  UploadIntent,
  UploadToken,
} from './model.js';
import type {
  Delivery,
  DeliveryAttempt,
  DeliveryPage,
  DeliveryQuery,
  DeliveryStatus,
  Webhook,
  WebhookChanges,
  WebhookSecrets,
} from './webhooks.js';

export interface AssetPage {
  assets: Asset[];
  /** The id to pass as `cursor` for the next page, or null at the end. */
  nextCursor: string | null;
}

export interface AssetQuery {
  limit: number;
  cursor?: string | undefined;
  namePrefix?: string | undefined;
  /**
   * A media type without parameters (`text/csv`, matching it with any parameters, such as
   * `text/csv; charset=utf-8`) or a whole top-level type (`image/*`).
   */
  contentType?: string | undefined;
  /** Only assets filed (as a version of a named file) in this namespace. */
  namespace?: string | undefined;
  /** Only assets created at or after this time (ms). */
  createdAfter?: number | undefined;
  /** Only assets created before this time (ms). */
  createdBefore?: number | undefined;
}

export interface FinishResult {
  asset: Asset;
  /** True when the content was already an asset and that asset was returned instead. */
  deduplicated: boolean;
  /** True when this call did the completion; false when it had already happened. */
  completedNow: boolean;
  /** The file version this completion recorded, when the upload targeted a named file. */
  version?: FileVersion | undefined;
  /**
   * Set when nothing was recorded: the account holds this SHA-256 under `asset`, but the candidate's
   * bytes or that asset's are not verified yet (`verifying`), and one may not stand for the other
   * before they are: the caller verifies, then completes again.
   */
  unverified?: boolean;
}

export interface AccountChanges {
  disabled?: boolean;
  maxFileSize?: number | null;
  storageQuota?: number | null;
  stripGps?: boolean;
}

export interface NewJob {
  id: string;
  kind: string;
  payload: Record<string, unknown>;
  runAt: number;
  /**
   * Jobs of one lane run at most ClaimOptions.laneLimit at a time, across every node (claimJob
   * passes over a lane that has that many running): a webhook endpoint's deliveries, so a slow
   * endpoint holds that many workers only.
   */
  lane?: string | undefined;
  /**
   * Whose the lane is (a webhook endpoint's account). A claim serves first the jobs whose owner
   * has nothing running, across every node, so one owner's slow lanes cannot keep every worker
   * from the others' (see claimJob). Jobs of no owner count as idle.
   */
  laneOwner?: string | undefined;
}

/** What a claim leaves alone. */
export interface ClaimOptions {
  /** Kinds of job not to claim (the node has no worker to spare for them). */
  skipKinds?: readonly string[] | undefined;
  /**
   * How many jobs of one lane (NewJob.lane) may run at once, across every node; 1 when absent.
   * A lane that has this many running on a good lease is passed over: its next job waits.
   */
  laneLimit?: number | undefined;
}

/** Installation-wide settings (the server secret). */
export interface SettingStore {
  /** Returns the stored value, storing `value` first if there was none (first writer wins). */
  settingOrInit(name: string, value: string): Promise<string>;
  getSetting(name: string): Promise<string | undefined>;
}

/** Accounts and their limits. */
export interface AccountStore {
  ensureAccount(account: Account): Promise<Account>;
  getAccount(id: string): Promise<Account | undefined>;
  listAccounts(): Promise<Account[]>;
  /** Disabling also ends the account's console sessions (at `at`). */
  updateAccount(id: string, changes: AccountChanges, at: number): Promise<Account | undefined>;
}

/** A page of keys: one account's (every account's without `accountId`), `limit` at most. */
export interface KeyQuery {
  accountId?: string | undefined;
  limit: number;
  cursor?: string | undefined;
}

export interface KeyPage {
  keys: ApiKey[];
  /** The last key's id when more follow; null on the last page. */
  nextCursor: string | null;
}

/** API keys, found by the hash of their secret. */
export interface KeyStore {
  insertKey(key: ApiKey, secretHash: string): Promise<void>;
  /** Inserts the key unless one with this hash exists; returns the stored key either way. */
  ensureKey(key: ApiKey, secretHash: string): Promise<ApiKey>;
  /** The key with this hash and its account, in one lookup (it runs on every request). */
  findKeyByHash(secretHash: string): Promise<{ key: ApiKey; account: Account } | undefined>;
  /** Oldest first (by id, which orders creation); a page continues after the `cursor` key's id. */
  listKeys(query: KeyQuery): Promise<KeyPage>;
  countKeys(): Promise<number>;
  revokeKey(keyId: string, at: number, accountId?: string): Promise<boolean>;
  touchKey(keyId: string, at: number): Promise<void>;
  /**
   * Whether a signed URL's signer is still active: the key unrevoked and, when a token
   * signed, that token (minted by that key) unrevoked too. One indexed lookup.
   */
  signerActive(keyId: string, tokenId: string | null): Promise<boolean>;
}

/** Upload tokens, found by the hash of their secret; their usage counters move with their uploads. */
export interface TokenStore {
  /** Records a new token (usage all zero). */
  insertToken(token: UploadToken, secretHash: string): Promise<void>;
  /** The token with this hash, its account, and whether the key that minted it was revoked. */
  findTokenByHash(
    secretHash: string,
  ): Promise<{ token: UploadToken; account: Account; keyRevoked: boolean } | undefined>;
  /** One token of the account (of `keyId`'s minting only, when given). */
  getToken(accountId: string, id: string, keyId?: string): Promise<UploadToken | undefined>;
  /** Newest first; a page continues before the `cursor` token's id. */
  listTokens(
    accountId: string,
    query: { limit: number; cursor?: string | undefined; keyId?: string | undefined },
  ): Promise<{ tokens: UploadToken[]; nextCursor: string | null }>;
  /** Revokes an active token; false when there is none (or it was revoked already). */
  revokeToken(accountId: string, id: string, at: number, keyId?: string): Promise<boolean>;
}

/**
 * An upload to record, and the bytes it is to hold while pending: against the account's
 * storage quota, and against its token's byte budget. `null` is a file of unknown size: it
 * holds nothing until its bytes are known (a form's file arriving at the embedded endpoint
 * holds its size then, and a multipart upload's parts as each arrives there:
 * UploadStore.holdArrived), and completion commits it only if it fits, so
 * limits stay exact without a form nobody uses holding a file's worth for a day. It is refused
 * up front only when nothing is left (a quota lowered below what is stored, a token's budget
 * used up).
 */
export interface UploadToRecord {
  upload: Upload;
  reserve: { quota: number | null; token: number | null };
}

/** What recording an upload gave it. */
export interface RecordedUpload {
  seq: number;
  reserved: Upload['reserved'];
}

/** What bounds the uploads of one call (one caller). */
export interface UploadLimits {
  /** The largest a file of unknown size may be (none may be sent when it is 0). */
  maxFileSize: number;
  /** The most pending uploads the caller's key (or token) may have, these included. */
  maxOpenUploads: number;
}

/** Uploads: intents, completion, expiry. */
export interface UploadStore {
  /**
   * Records upload intents and gives each its `seq` and its `reserved` bytes, returned in the
   * order given (the store may run in another thread: it never writes to its arguments, and
   * the caller applies them). In the same transaction, reserves what they hold against the account's
   * quota, the token's budgets and the open-upload limits; every reservation of one call
   * succeeds or none does (QUOTA_EXCEEDED, TOKEN_FILES_EXHAUSTED, TOKEN_BYTES_EXHAUSTED,
   * TOO_MANY_OPEN_UPLOADS, or the token's TOKEN_EXPIRED / UNAUTHORIZED). A clashing
   * `externalId` fails the whole call with ID_EXISTS.
   */
  insertUploads(uploads: UploadToRecord[], limits: UploadLimits): Promise<RecordedUpload[]>;
  /**
   * A completed upload of `assetId` made with this token, or (without a token) this key or a
   * token it minted: preferably the one that created the asset, else the latest.
   */
  findOwnUpload(
    accountId: string,
    assetId: string,
    owner: { keyId: string; tokenId: string | null },
  ): Promise<Upload | undefined>;
  getUpload(id: string): Promise<Upload | undefined>;
  getUploadByExternalId(accountId: string, externalId: string): Promise<Upload | undefined>;
  /** The completed uploads of this asset's content, earliest first (every name and file it came under). */
  uploadsOfAsset(accountId: string, assetId: string): Promise<Upload[]>;
  /**
   * Atomically: records `candidate` as an asset unless the account already holds that
   * SHA-256 (then the existing asset is returned), and marks the upload completed.
   * If the upload was completed already, returns its asset without changing anything.
   * In the same transaction: files the asset as the next version of the upload's target
   * file, if it has one, queues `jobs` when a new asset was recorded (`ifDeduplicated` when
   * the account held the content already), and settles its
   * reservations: the account's stored bytes grow by a new asset's size unless that would pass
   * its quota (QUOTA_EXCEEDED), and the token's usage by the file unless that would pass its
   * byte budget (TOKEN_BYTES_EXHAUSTED). An upload made with a token that was revoked, or whose
   * minting key was, is refused (UNAUTHORIZED), read on those rows under the same locks as a
   * revocation takes, so a revocation answered before the commit is never missed. Each refusal
   * changes nothing.
   */
  finishUpload(
    uploadId: string,
    candidate: Asset,
    at: number,
    jobs: NewJob[],
    ifDeduplicated: NewJob[],
  ): Promise<FinishResult>;
  /**
   * Pending uploads that complete by themselves (no confirm step), oldest first; a page
   * continues after the `after` upload of the previous one.
   */
  listAutoCompletable(limit: number, after?: Upload): Promise<Upload[]>;
  /**
   * An account's pending uploads that complete by themselves and were declared with this
   * content (SHA-256 or MD5, hex) and size, newest first. With `owner`, only those made with
   * that token, or (without a token) that key or a token it minted (see findOwnUpload).
   */
  listAutoCompletableByDigest(
    accountId: string,
    digest: { sha256: string } | { md5: string },
    size: number,
    limit: number,
    owner?: { keyId: string; tokenId: string | null },
  ): Promise<Upload[]>;
  /**
   * Pending uploads that have ended by time, earliest expiry first: those whose expiry is before
   * `before`, and with `leasedBefore`, direct uploads whose expiry (their lease: see
   * DirectUploadLeases) is before that.
   */
  listStaleUploads(before: number, limit: number, leasedBefore?: number): Promise<Upload[]>;
  /**
   * Moves the expiry of these pending direct uploads to `until` (their leases, renewed by the
   * process streaming them), never back; how many it moved. One statement for them all.
   */
  renewUploads(ids: string[], until: number): Promise<number>;
  /**
   * Ends a pending upload without an asset (expired, cancelled by its client, or failed), gives
   * back what it held (reservations) and records why as an event; false if it was no longer
   * pending.
   */
  expireUpload(id: string, at: number, ending?: UploadEnding): Promise<boolean>;
  /**
   * The bytes of a pending upload of unknown size arrived (a form's file, or the parts of a
   * multipart upload stored or arriving so far): atomically, it holds `hold` (bytes
   * against the account's quota, and against its token's budget) in place of what it held,
   * unless that would pass the quota (QUOTA_EXCEEDED) or the token's `max_bytes`
   * (TOKEN_BYTES_EXHAUSTED), which change nothing. A smaller hold (zero: refused bytes were
   * dropped and the upload stays open) always succeeds. False when it is no longer pending.
   */
  holdArrived(id: string, hold: { quota: number; token: number }): Promise<boolean>;
  /** Records storage's multipart upload id for a pending upload, in place of any before. */
  setUploadMultipartId(id: string, multipartId: string): Promise<void>;
  /**
   * Records storage's multipart upload id for a pending upload that has none yet; true when
   * the upload's id is now this one (recorded now or before), false when it is another.
   */
  claimUploadMultipartId(id: string, multipartId: string): Promise<boolean>;
  /**
   * An account's pending uploads of these kinds declared with this size, newest first: what a
   * client that lost its state may resume (the caller narrows by digest and by owner).
   */
  listPendingBySize(
    accountId: string,
    kinds: Upload['kind'][],
    size: number,
    limit: number,
  ): Promise<Upload[]>;
  /** Replaces a pending upload's intent (a fact about its bytes learnt as they arrived). */
  setUploadIntent(id: string, intent: UploadIntent): Promise<void>;
}

/** Assets: verified, deduplicated content. */
export interface AssetStore {
  getAsset(accountId: string, id: string): Promise<Asset | undefined>;
  /** Only for signed URLs, which carry their own proof and no account. */
  getAssetById(id: string): Promise<Asset | undefined>;
  findAssetBySha256(accountId: string, sha256: string): Promise<Asset | undefined>;
  findAssetsBySha256(accountId: string, sha256s: string[]): Promise<Asset[]>;
  listAssets(accountId: string, query: AssetQuery): Promise<AssetPage>;
  /**
   * `rejected`: verification found other bytes than declared (a different event). `jobs` are
   * queued in the same transaction, and only if this call deleted the asset.
   */
  deleteAsset(
    accountId: string,
    id: string,
    at: number,
    reason: 'deleted' | 'rejected',
    jobs: NewJob[],
  ): Promise<Asset | undefined>;
  /** How many assets still point at these bytes (0 means they may be freed). */
  countAssetsWithStorageKey(storageKey: string): Promise<number>;
  setAssetAccess(accountId: string, id: string, access: Access, at: number): Promise<Asset | undefined>;
  recordAnalysis(
    id: string,
    processing: ProcessingStatus,
    analysis: AssetAnalysis,
    at: number,
  ): Promise<void>;
  /**
   * Marks a `verifying` asset ready once its bytes were hashed and matched; records the MD5. False
   * when it was not `verifying` any more (another check got there first): nothing changed.
   */
  markAssetVerified(id: string, md5: string, at: number): Promise<boolean>;
}

/** Named files and their versions. */
export interface FileStore {
  /** A version of a named file: the given one, or the latest when `version` is undefined. */
  getFileVersion(
    accountId: string,
    namespace: string,
    name: string,
    version?: number,
  ): Promise<FileVersion | undefined>;
  listFileVersions(accountId: string, namespace: string, name: string): Promise<FileVersion[]>;
  /** The namespaces whose named files have a version that is this asset. */
  namespacesOfAsset(accountId: string, assetId: string): Promise<string[]>;
}

/** The durable job queue. */
export interface JobStore {
  enqueueJobs(jobs: NewJob[]): Promise<void>;
  /**
   * Claims one due job for `worker` until `leaseUntil` (a job whose lease ran out is due
   * again), none of `options.skipKinds`. Exactly one claimant wins, across processes and nodes,
   * and a lane (NewJob.lane) with `options.laneLimit` jobs running is passed over: its next job
   * waits for one of them. The first due job whose owner (NewJob.laneOwner) has nothing running
   * is taken before any other; only when there is none, the first due job at all.
   */
  claimJob(worker: string, now: number, leaseUntil: number, options?: ClaimOptions): Promise<Job | undefined>;
  finishJob(id: string, worker: string, at: number): Promise<void>;
  /** Extends `worker`'s lease of a running job; false when the job is no longer its to run. */
  renewJob(id: string, worker: string, leaseUntil: number): Promise<boolean>;
  /** Records a failure; `retryAt` null gives up on the job. */
  failJob(id: string, worker: string, error: string, retryAt: number | null, at: number): Promise<void>;
  getJob(id: string): Promise<Job | undefined>;
  /**
   * Deletes up to `limit` finished jobs that were due before `before`, oldest first; how many.
   * Failed (given-up) jobs stay for operators to see.
   */
  pruneJobs(before: number, limit: number): Promise<number>;
}

/** Leases on named resources shared by every node. */
export interface LockStore {
  /**
   * Takes or renews the lease on `name` for `owner` until `until`; false while another
   * owner's lease runs (one winner across nodes). A new lease starts with no release request.
   */
  acquireLock(name: string, owner: string, until: number, now: number): Promise<boolean>;
  /** Drops `owner`'s lease (nothing if it is not the holder). */
  releaseLock(name: string, owner: string): Promise<void>;
  /** Asks whoever holds `name` to let go; returns false when nobody holds it. */
  requestLockRelease(name: string, now: number): Promise<boolean>;
  /** Whether someone asked the holder `owner` of `name` to let go. */
  lockReleaseRequested(name: string, owner: string): Promise<boolean>;
}

/**
 * Jobs of one kind in one state: `queued` ones are due now (a first run or a retry) and wait for
 * a worker; `scheduled` ones have their first run later (back-stops such as a presigned URL's
 * delete-object, due once the URL has expired: normal traffic, not a backlog); `retrying` ones
 * failed and wait for their next attempt.
 */
export interface JobCount {
  kind: string;
  status: 'queued' | 'scheduled' | 'retrying' | 'running' | 'failed';
  count: number;
}

/** Questions operators ask of the database (metrics, readiness); nothing here writes. */
export interface StatsStore {
  /**
   * Jobs not done yet (queued: due at `now`; scheduled: a first run due later; retrying: a
   * retry due later; running) and given up (failed), by kind and status.
   */
  countJobs(now: number): Promise<JobCount[]>;
  /** A trivial query: resolves once the database answered. */
  ping(): Promise<void>;
  /**
   * Migrations the database has run that this version does not know, sorted: a newer Wharf
   * took it over while this process runs (see Wharf.superseded). Empty when it is this one's.
   */
  newerMigrations(): Promise<string[]>;
}

/** Where an account's events begin and end, for telling a reader's cursor is one it can continue from. */
export interface EventCursors {
  latest: number;
  pruned: number;
}

/** The events outbox (written by the other slices, in the transactions they describe). */
export interface EventStore {
  /** The account's events in commit order, after `query.after`, of the given types. */
  listEvents(accountId: string, query: EventQuery): Promise<WharfEvent[]>;
  getEvent(accountId: string, seq: number): Promise<WharfEvent | undefined>;
  /** The account's latest cursor handed out, and the highest one retention removed (0: none). */
  eventCursors(accountId: string): Promise<EventCursors>;
  /**
   * Deletes up to `limit` events older than `before` that no pending delivery needs, raising each
   * account's pruned cursor to the highest it deleted; returns how many.
   */
  pruneEvents(before: number, limit: number): Promise<number>;
}

/** What a settled attempt leaves on its delivery. */
export interface DeliverySettlement {
  status: DeliveryStatus;
  nextAttemptAt: number | null;
}

/** Webhook endpoints, their deliveries and the log of every attempt. */
export interface WebhookStore {
  /**
   * Inserts an endpoint unless its account already has `maxPerAccount`: false then, and nothing
   * is inserted. Counted and inserted in one transaction with the account row locked, so
   * concurrent creations (on any node) cannot together go past the limit.
   */
  insertWebhook(webhook: Webhook, sealedSecret: string, maxPerAccount: number): Promise<boolean>;
  /** Any account's endpoint when `accountId` is undefined (the delivery job). */
  getWebhook(id: string, accountId?: string): Promise<Webhook | undefined>;
  getWebhookSecrets(id: string): Promise<WebhookSecrets | undefined>;
  /** Every endpoint's sealed secrets, of every account (sealing them again under a new key). */
  listAllWebhookSecrets(): Promise<Array<{ id: string; current: string; previous: string | null }>>;
  /**
   * Replaces an endpoint's sealed secrets with the same secrets sealed under another key, only
   * if they are still `from` (a rotation meanwhile wins); false when they were not.
   */
  resealWebhookSecrets(
    id: string,
    from: { current: string; previous: string | null },
    to: { current: string; previous: string | null },
  ): Promise<boolean>;
  listWebhooks(accountId: string): Promise<Webhook[]>;
  /**
   * Changes an endpoint. Enabling clears the disabled reason and the failure streak; disabling
   * cancels its pending deliveries (in the same transaction).
   */
  updateWebhook(
    accountId: string,
    id: string,
    changes: WebhookChanges,
    at: number,
  ): Promise<Webhook | undefined>;
  /**
   * Replaces the secret; the one it replaces (whatever it is at that moment, in the same
   * statement) keeps signing until `previousExpiresAt` (null: not kept at all).
   */
  rotateWebhookSecret(
    accountId: string,
    id: string,
    sealedSecret: string,
    previousExpiresAt: number | null,
    at: number,
  ): Promise<Webhook | undefined>;
  /** Deletes an endpoint and cancels its pending deliveries; false if there was none. */
  deleteWebhook(accountId: string, id: string, at: number): Promise<boolean>;
  /**
   * Disables an enabled endpoint, cancels its pending deliveries and records `event`
   * (webhook.disabled), all in one transaction. With `unlessSucceededAfter` (an attempt's id),
   * only if no attempt to the endpoint succeeded after that one. Returns false when nothing changed.
   */
  disableWebhook(
    id: string,
    reason: string,
    at: number,
    event: NewEvent,
    unlessSucceededAfter?: string,
  ): Promise<boolean>;

  getDelivery(id: string): Promise<Delivery | undefined>;
  findDelivery(accountId: string, webhookId: string, id: string): Promise<Delivery | undefined>;
  /** Newest first. */
  listDeliveries(accountId: string, webhookId: string, query: DeliveryQuery): Promise<DeliveryPage>;
  listDeliveryAttempts(deliveryId: string): Promise<DeliveryAttempt[]>;
  /** The first attempt `jobId` made at this delivery. */
  firstAttempt(deliveryId: string, jobId: string): Promise<DeliveryAttempt | undefined>;
  /** How many attempts `jobId` made at this delivery (logged ones: a node that stopped mid-attempt logged none). */
  countAttempts(deliveryId: string, jobId: string): Promise<number>;
  /**
   * Logs an attempt and what it tells about the endpoint (a success ends its failure streak, a
   * failure starts one). The delivery takes `settlement` only while `attempt.jobId` is still its
   * job (a replay may have superseded it); returns whether it did.
   */
  recordDeliveryAttempt(attempt: DeliveryAttempt, settlement: DeliverySettlement): Promise<boolean>;
  /** Ends a pending delivery without sending it (its endpoint is gone or disabled). */
  cancelDelivery(id: string, reason: string, at: number): Promise<void>;
  /** Makes a delivery pending again, sent now by a new job with the same webhook-id. */
  replayDelivery(id: string, at: number): Promise<Delivery | undefined>;
  /**
   * Re-queues the endpoint's deliveries of events since `since` (succeeded ones only when
   * asked) whose events are still kept, and creates deliveries for the events since then it
   * wants but never got (made while it was disabled, or before it existed).
   */
  replayDeliveriesSince(
    webhook: Webhook,
    since: number,
    includeSucceeded: boolean,
    at: number,
  ): Promise<{ requeued: number; created: number }>;
  /** Deletes up to `limit` finished deliveries made before `before`, with their attempts. */
  pruneDeliveries(before: number, limit: number): Promise<number>;
}

/** Stored renderings of assets (the `derivatives` table). */
export interface DerivativeStore {
  getDerivative(assetId: string, paramsKey: string): Promise<Derivative | undefined>;
  /**
   * Records a derivative unless one with its key exists or its asset is gone (deleted while
   * it was rendered); returns the stored row, or undefined when the asset is gone.
   */
  insertDerivative(derivative: Derivative): Promise<Derivative | undefined>;
  /** A derivative of the asset with these bytes (to share one object between identical renderings). */
  findDerivativeBySha256(assetId: string, sha256: string): Promise<Derivative | undefined>;
  listDerivatives(assetId: string): Promise<Derivative[]>;
  countDerivatives(assetId: string): Promise<number>;
  deleteDerivatives(assetId: string): Promise<void>;
  /** Forgets the asset's derivatives whose bytes are the object at `storageKey`. */
  deleteDerivativesStoredAt(assetId: string, storageKey: string): Promise<void>;
}

/** Named transform presets per account (the `image_presets` table). */
export interface PresetStore {
  getPreset(accountId: string, name: string): Promise<ImagePreset | undefined>;
  listPresets(accountId: string): Promise<ImagePreset[]>;
  /** Creates or replaces; keeps the first creation time. */
  putPreset(preset: ImagePreset): Promise<ImagePreset>;
  deletePreset(accountId: string, name: string): Promise<boolean>;
}

/** A web console session as stored: never its id, only the id's SHA-256. */
export interface ConsoleSession {
  idHash: string;
  accountId: string;
  keyId: string;
  createdAt: number;
  lastSeenAt: number;
  /** Slides with use (the idle timeout), never past `endsAt`. */
  expiresAt: number;
  /** The absolute end of the session. */
  endsAt: number;
  revokedAt: number | null;
}

/** Web console sessions, found by the hash of their id. */
export interface SessionStore {
  insertSession(session: ConsoleSession): Promise<void>;
  /** The session with this hash, the key it stands for and that key's account, in one lookup. */
  findSessionByHash(
    idHash: string,
  ): Promise<{ session: ConsoleSession; key: ApiKey; account: Account } | undefined>;
  /** Records use: `lastSeenAt` and the new `expiresAt`. */
  touchSession(idHash: string, at: number, expiresAt: number): Promise<void>;
  /** Ends a session; false when there was none, or it had ended already. */
  revokeSession(idHash: string, at: number): Promise<boolean>;
  /** Deletes up to `limit` sessions that expired or were revoked before `before`; returns how many. */
  pruneSessions(before: number, limit: number): Promise<number>;
}

/** Whose idempotency key it is: one client's keys never meet another's (see core/idempotency.ts). */
export interface IdempotencyScope {
  accountId: string;
  /** `key:<id>` or `token:<id>`: the credential that sent the request. */
  principalId: string;
  key: string;
}

/** What claiming an idempotency key found. */
export type IdempotencyClaim =
  /** The key is this request's to answer: nobody held it, or its hold had lapsed. */
  | { kind: 'claimed' }
  /** The same request was answered before: this is its answer. */
  | { kind: 'replay'; status: number; response: string }
  /** The key was used for a different request. */
  | { kind: 'mismatch' }
  /** The same request is being answered right now (by this node or another). */
  | { kind: 'running' };

/** Records of creating requests under their clients' idempotency keys. */
export interface IdempotencyStore {
  /**
   * Takes the key for a request with this fingerprint, as `holder` (an id of this claim), until
   * `leaseUntil`, unless it holds the answer of an earlier request (kept until its `expiresAt`)
   * or another claim holds it. A hold whose lease lapsed (its node died) is taken over by the
   * same request, never by another one.
   */
  claimIdempotency(
    scope: IdempotencyScope,
    fingerprint: string,
    holder: string,
    at: { now: number; leaseUntil: number; expiresAt: number },
  ): Promise<IdempotencyClaim>;
  /** Extends `holder`'s hold; false when the key is no longer its own. */
  renewIdempotency(scope: IdempotencyScope, holder: string, leaseUntil: number): Promise<boolean>;
  /** Keeps the answer under the key, if `holder` still holds it. */
  finishIdempotency(
    scope: IdempotencyScope,
    holder: string,
    answer: { status: number; response: string },
  ): Promise<void>;
  /** Lets go of the key without an answer (the request failed), if `holder` still holds it. */
  releaseIdempotency(scope: IdempotencyScope, holder: string): Promise<void>;
  /** Deletes up to `limit` records that expired before `before`; returns how many. */
  pruneIdempotency(before: number, limit: number): Promise<number>;
}

export interface UploadQuery {
  limit: number;
  /** `id` of the last upload of the previous page (newest first). */
  cursor?: string | undefined;
  status?: Upload['status'] | undefined;
  /** Only uploads made with this key (not its tokens) … */
  keyId?: string | undefined;
  /** … or with this upload token. */
  tokenId?: string | undefined;
  /**
   * Pending tus and RUFH uploads that expired before this are `expired` to the `status` filter,
   * as they are shown (see asOf in resumable.ts).
   */
  resumableExpiredBefore?: number | undefined;
  /**
   * Pending uploads that wait for their confirm (not auto_complete) that expired before this (the completion grace ago) are
   * `expired` to the `status` filter too; given with resumableExpiredBefore.
   */
  expiredBefore?: number | undefined;
}

/** What an account holds: bytes against its quota, and how many assets and pending uploads. */
export interface AccountUsage {
  bytesUsed: number;
  bytesReserved: number;
  assets: number;
  pendingUploads: number;
}

/** Read-only listings across tables: uploads, an account's usage, the named files of an asset. */
export interface ListingStore {
  /** Newest first. */
  listUploads(
    accountId: string,
    query: UploadQuery,
  ): Promise<{ uploads: Upload[]; nextCursor: string | null }>;
  accountUsage(accountId: string): Promise<AccountUsage>;
  /** Every version of a named file that is this asset, by namespace, name and version. */
  fileVersionsOfAsset(accountId: string, assetId: string): Promise<FileVersion[]>;
}

/** Everything the core keeps in its database, one slice per table or concern. */
export interface Store
  extends SettingStore,
    AccountStore,
    KeyStore,
    TokenStore,
    UploadStore,
    AssetStore,
    FileStore,
    JobStore,
    LockStore,
    EventStore,
    WebhookStore,
    StatsStore,
    DerivativeStore,
    PresetStore,
    SessionStore,
    IdempotencyStore,
    ListingStore {
  close(): Promise<void>;
}

export interface PresignPutRequest {
  key: string;
  contentType: string;
  size: number;
  /** Lower-case hex; bound into the signature as Content-MD5 when present. */
  md5?: string | null;
  /** Lower-case hex; bound as x-amz-checksum-sha256 when present. */
  sha256?: string | null;
  /**
   * The client sends Content-Type and Content-Length and no other header, so no other may be
   * signed in (not even S3's write-once If-None-Match: such URLs can overwrite until expiry).
   */
  contentTypeOnly?: boolean | undefined;
  expiresInSeconds: number;
  now: number;
}

export interface PresignedRequest {
  method: 'PUT' | 'POST' | 'GET' | 'DELETE';
  url: string;
  /** Headers the client must send exactly as given. */
  headers: Record<string, string>;
  /**
   * Storage will accept further PUTs to this URL until it expires, even after completion (it
   * could not be made write-once). Completion then moves the bytes out of the URL's reach.
   */
  rewritable?: boolean | undefined;
}

/** The S3 API requests a client that speaks S3 itself (Uppy 6) may have presigned. */
export type S3Operation =
  | 'PutObject'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'ListParts'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload';

/**
 * One S3 request on one key, presigned for a client. The URL is the S3 API's own (method,
 * `?uploads`, `?uploadId=…&partNumber=…`), so the client talks S3 to it unchanged.
 */
export interface PresignOperationRequest {
  operation: S3Operation;
  key: string;
  /** PutObject and CreateMultipartUpload: the Content-Type the client must send (signed). */
  contentType?: string | undefined;
  /** Every multipart operation but CreateMultipartUpload. */
  multipartId?: string | undefined;
  /** UploadPart: 1 to 10000. */
  partNumber?: number | undefined;
  expiresInSeconds: number;
  now: number;
}

/** A part storage holds for a multipart upload. */
export interface StoredPart {
  partNumber: number;
  size: number;
  /** As storage reports it: S3's quoted hex MD5 of the part. */
  etag: string;
  /** When storage stored it (ms), where storage says. */
  lastModified?: number | undefined;
}

/** A part named for composition: its number and the ETag the client was given for it. */
export interface PartReference {
  partNumber: number;
  etag: string;
}

/** S3's rules for multipart uploads, which every store applies alike. */
export const MULTIPART_LIMITS = {
  minPartSize: 5 * 1024 * 1024,
  maxPartSize: 5 * 1024 * 1024 * 1024,
  maxParts: 10_000,
} as const;

/** A part arriving at the embedded storage endpoint after its signature was checked. */
export interface ReceivedPart {
  key: string;
  multipartId: string;
  partNumber: number;
  body: Readable;
  /** From Content-Length, when sent. */
  size?: number | undefined;
  /** Hex MD5 the client bound with Content-MD5, if any. */
  md5?: string | undefined;
  /** Hex SHA-256 the client declared with x-amz-checksum-sha256, if any. */
  sha256?: string | undefined;
  /** The most bytes the part may hold (what the upload has room for); refused beyond. */
  maxSize?: number | undefined;
}

/** A checksum fed the bytes in order as they stream past, and read once at the end. */
export interface RunningChecksum {
  update(chunk: Uint8Array): void;
  digest(): Promise<Uint8Array>;
}

/**
 * The checksums an S3 client may declare in `x-amz-checksum-<name>` (S3's flexible checksums)
 * that the embedded endpoint verifies, by that name in lower case, with the digest's length in
 * bytes. SHA-256 is not listed: the core's own hashing verifies it.
 */
export type ChecksumAlgorithms = ReadonlyMap<
  string,
  { readonly bytes: number; readonly create: () => Promise<RunningChecksum> }
>;

/** A browser-form upload policy (S3 POST Object): every condition is enforced by storage. */
export interface PresignPostRequest {
  /** The exact key the form may write. */
  key: string;
  /**
   * When set, the form must send exactly this Content-Type. Otherwise the policy names no
   * Content-Type: the form sends none (storage refuses it as an extra input field), and the
   * stored object's type is storage's default, not the file's (the core records that).
   */
  contentType?: string | undefined;
  minSize: number;
  maxSize: number;
  expiresInSeconds: number;
  now: number;
}

/** A direct download from storage; the header values are sent back as they are given. */
export interface PresignGetRequest {
  /** The response's Content-Type. */
  contentType: string;
  /** The response's whole Content-Disposition header. */
  disposition: string;
  expiresInSeconds: number;
  now: number;
}

export interface PresignedPost {
  /** Where the form is POSTed. */
  url: string;
  /** Form fields to send, in this order, before the `file` field. */
  fields: Record<string, string>;
  /** The form can be posted again until it expires, even after completion (see PresignedRequest). */
  rewritable?: boolean | undefined;
}

export interface ByteRange {
  start: number;
  /** Inclusive, as in HTTP Range. */
  end: number;
}

/**
 * Facts checked and recorded once every byte is written and flushed, before the object
 * becomes visible. Throwing aborts the write: the object never appears.
 */
export type SealHook = () => Promise<ObjectInfo> | ObjectInfo;

/** One storage backend (ActiveStorage's "service"): where bytes live. */
export interface BlobStore {
  readonly name: string;
  /** The bucket objects live in (the embedded endpoint's own, or the S3 store's). */
  readonly bucket: string;
  /** Writes `source` under `key`; visible only whole, after `seal` accepted it. */
  write(key: string, source: Readable, seal: SealHook): Promise<void>;
  head(key: string): Promise<ObjectInfo | undefined>;
  /** The object's bytes (or `range` of them); ObjectMissing when storage holds no such key. */
  read(key: string, range?: ByteRange): Promise<Readable>;
  /**
   * The file on this machine that holds the object, for stores that keep objects as files
   * (absent otherwise). Such a file is only ever replaced whole by a rename, never rewritten in
   * place, so a hard link to it keeps the bytes it had; tools that need a seekable file can
   * read it without copying (see `RenderSource`).
   */
  localFile?(key: string): string;
  delete(key: string): Promise<void>;
  /** Deletes every object whose key starts with `prefix` (a whole "directory": it ends with `/`). */
  deletePrefix(prefix: string): Promise<void>;
  /** A server-side copy (only stores whose presigned URLs can be rewritable need it). */
  copy?(from: string, to: string): Promise<void>;
  /** A URL a client can PUT the bytes to directly, with size, type and digests bound. */
  presignPut(request: PresignPutRequest): Promise<PresignedRequest>;
  /** A POST policy for browser forms, binding the key, a size range, the type and the expiry. */
  presignPost(request: PresignPostRequest): Promise<PresignedPost>;
  /**
   * A URL that downloads the object straight from storage, the response's type and
   * disposition fixed by its signature. Absent when downloads stream through Wharf.
   */
  presignGet?: ((key: string, request: PresignGetRequest) => Promise<string>) | undefined;
  /** Presigns one S3 API request on `key` (see PresignOperationRequest). */
  presignOperation(request: PresignOperationRequest): Promise<PresignedRequest>;

  /** Starts a multipart upload of `key`, typed `contentType`; returns storage's id for it. */
  createMultipart(key: string, contentType: string): Promise<string>;
  /**
   * Stores one part (the embedded store receives parts itself; with S3 clients send them to
   * the bucket). Replaces an earlier part of that number. Throws MULTIPART_NOT_FOUND.
   */
  writePart?(part: ReceivedPart): Promise<StoredPart>;
  /** Every part stored so far, by part number. Throws MULTIPART_NOT_FOUND when unknown. */
  listParts(key: string, multipartId: string): Promise<StoredPart[]>;
  /**
   * Composes the named parts, in order, into the object at `key`, which becomes visible only
   * whole, and ends the multipart upload. Refuses (INVALID_PART, PART_TOO_SMALL,
   * MULTIPART_NOT_FOUND) as S3 does.
   */
  completeMultipart(
    key: string,
    multipartId: string,
    parts: PartReference[],
  ): Promise<ObjectInfo & { etag: string }>;
  /** Ends a multipart upload and frees its parts; a no-op when it is already gone. */
  abortMultipart(key: string, multipartId: string): Promise<void>;

  /**
   * Removes debris of writes that never finished (temp files, incomplete parts) begun before
   * `olderThan`, except multipart uploads of keys `inUse` claims: an upload may legitimately
   * run for a day, while a crashed write's leftovers should go within the hour. A store that
   * knows each multipart upload's id names it, so that `inUse` can claim only the one its
   * upload writes through (see UploadSweep.runsLong).
   */
  sweepIncomplete(
    olderThan: number,
    inUse?: (key: string, multipartId?: string) => Promise<boolean>,
  ): Promise<number>;
  /**
   * Ends the writes of `key` that never finished and frees what they stored, for stores where a
   * write outlives the process that made it (an S3 multipart upload a direct upload's body
   * streamed into, left open by a process that died). Best effort: what it cannot end,
   * sweepIncomplete ends later. Absent where a dead process's writes go with it (the local
   * store's temp files are its process's: see processTempDir).
   */
  abortWrites?(key: string): Promise<void>;
  close(): Promise<void>;
}

/** An incoming request as the embedded storage endpoint sees it, before its body is read. */
export interface SignedRequest {
  method: string;
  /** Path and query exactly as sent (still percent-encoded): the signature covers them. */
  rawUrl: string;
  headers: Record<string, string | string[] | undefined>;
}

/** What a valid signature vouches for; the caller checks it covers what its operation needs. */
export interface VerifiedRequest {
  key: string;
  /** Query parameters other than the signature's own (`uploadId`, `partNumber`, `uploads`). */
  query: Record<string, string>;
  /** Lower-case names of the headers the signature covers. */
  signedHeaders: string[];
}

/** Checks presigned requests addressed to the embedded storage endpoint. */
export interface PresignVerifier {
  /** Checks signature and expiry; throws a WharfError unless the request is as signed. */
  verify(request: SignedRequest, now: number): Promise<VerifiedRequest>;
  /**
   * Checks a POST Object form's policy and signature against the fields that arrived before
   * the file. Returns the key and the conditions the file itself must still meet.
   */
  verifyPost(fields: Record<string, string>, now: number): Promise<PostConditions>;
}

/** What a verified POST policy still requires of the file part. */
export interface PostConditions {
  key: string;
  minSize: number;
  maxSize: number;
  /** Exact Content-Type required of the form, if the policy names one. */
  contentType?: string | undefined;
}

/**
 * What BlobStore.read throws for a key storage does not hold. Wharf deletes an object only
 * after its record, so a recorded object that is missing was removed behind Wharf's back
 * (an operator's cleanup, a bucket restored from an older copy): the core answers it with a
 * stable error, or makes a rendering again, instead of failing as an unknown error.
 */
export class ObjectMissing extends Error {
  constructor(readonly key: string) {
    super(`Storage holds no object under ${key}.`);
    this.name = 'ObjectMissing';
  }
}
