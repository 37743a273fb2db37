/**
 * The core's ports: what it needs from the outside, in its own terms. Adapters under
 * src/db and src/blobs implement them; nothing here knows SQL, a filesystem or an SDK.
 */
import type { Readable } from 'node:stream';
import type {
  Access,
  Account,
  ApiKey,
  Asset,
  AssetAnalysis,
  FileVersion,
  Job,
  ObjectInfo,
  ProcessingStatus,
  Upload,
} from './model.js';

export interface AssetPage {
  assets: Asset[];
  /** The id to pass as `cursor` for the next page, or null at the end. */
  nextCursor: string | null;
}

export interface AssetQuery {
  limit: number;
  cursor?: string | undefined;
  namePrefix?: string | undefined;
  /** Exact type (`image/png`) or a whole top-level type (`image/*`). */
  contentType?: string | undefined;
}

export interface FinishResult {
  asset: Asset;
  /** True when the content was already an asset and that asset was returned instead. */
  deduplicated: boolean;
  /** True when this call did the completion; false when it had already happened. */
  completedNow: boolean;
  /** The file version this completion recorded, when the upload targeted a named file. */
  version?: FileVersion | undefined;
}

export interface AccountChanges {
  disabled?: boolean;
  maxFileSize?: number | null;
  storageQuota?: number | null;
}

export interface Usage {
  bytes: number;
  assets: number;
}

export interface NewJob {
  id: string;
  kind: string;
  payload: Record<string, unknown>;
  runAt: number;
}

export interface Store {
  /** Returns the stored value, storing `value` first if there was none (first writer wins). */
  settingOrInit(name: string, value: string): Promise<string>;

  ensureAccount(account: Account): Promise<Account>;
  getAccount(id: string): Promise<Account | undefined>;
  listAccounts(): Promise<Account[]>;
  updateAccount(id: string, changes: AccountChanges): Promise<Account | undefined>;
  usage(accountId: string): Promise<Usage>;

  insertKey(key: ApiKey, secretHash: string): Promise<void>;
  /** Inserts the key unless one with this hash exists; returns the stored key either way. */
  ensureKey(key: ApiKey, secretHash: string): Promise<ApiKey>;
  /** The key with this hash and its account, in one lookup (it runs on every request). */
  findKeyByHash(secretHash: string): Promise<{ key: ApiKey; account: Account } | undefined>;
  listKeys(accountId?: string): Promise<ApiKey[]>;
  countKeys(): Promise<number>;
  revokeKey(keyId: string, at: number, accountId?: string): Promise<boolean>;
  touchKey(keyId: string, at: number): Promise<void>;

  /**
   * Records upload intents and gives each its `seq` (set on the objects passed in). A
   * clashing `externalId` fails the whole call with ID_EXISTS.
   */
  insertUploads(uploads: Upload[]): Promise<void>;
  getUpload(id: string): Promise<Upload | undefined>;
  getUploadByExternalId(accountId: string, externalId: string): Promise<Upload | undefined>;
  /**
   * Atomically: records `candidate` as an asset unless the account already holds that
   * SHA-256 (then the existing asset is returned), and marks the upload completed.
   * If the upload was completed already, returns its asset without changing anything.
   * In the same transaction: files the asset as the next version of the upload's target
   * file, if it has one, and queues `jobs` when a new asset was recorded.
   */
  finishUpload(uploadId: string, candidate: Asset, at: number, jobs: NewJob[]): Promise<FinishResult>;
  /** Pending uploads that complete by themselves (no confirm step), oldest first. */
  listAutoCompletable(limit: number): Promise<Upload[]>;
  /** Pending uploads whose expiry is before `before`, oldest first. */
  listStaleUploads(before: number, limit: number): Promise<Upload[]>;
  /** Marks a pending upload expired; false if it was no longer pending. */
  expireUpload(id: string): Promise<boolean>;

  getAsset(accountId: string, id: string): Promise<Asset | undefined>;
  /** Only for signed URLs, which carry their own proof and no account. */
  getAssetById(id: string): Promise<Asset | undefined>;
  findAssetBySha256(accountId: string, sha256: string): Promise<Asset | undefined>;
  findAssetsBySha256(accountId: string, sha256s: string[]): Promise<Asset[]>;
  findAssetByMd5(accountId: string, md5: string): Promise<Asset | undefined>;
  listAssets(accountId: string, query: AssetQuery): Promise<AssetPage>;
  deleteAsset(accountId: string, id: string): Promise<Asset | undefined>;
  /** How many assets still point at these bytes (0 means they may be freed). */
  countAssetsWithStorageKey(storageKey: string): Promise<number>;
  setAssetAccess(accountId: string, id: string, access: Access): Promise<Asset | undefined>;
  recordAnalysis(
    id: string,
    processing: ProcessingStatus,
    analysis: AssetAnalysis,
    at: number,
  ): Promise<void>;
  /** Marks a `verifying` asset ready once its bytes were hashed and matched; records the MD5. */
  markAssetVerified(id: string, md5: string, at: number): Promise<void>;

  /** A version of a named file: the given one, or the latest when `version` is undefined. */
  getFileVersion(
    accountId: string,
    namespace: string,
    name: string,
    version?: number,
  ): Promise<FileVersion | undefined>;
  listFileVersions(accountId: string, namespace: string, name: string): Promise<FileVersion[]>;

  enqueueJobs(jobs: NewJob[]): Promise<void>;
  /**
   * Claims one due job for `worker` until `leaseUntil` (a job whose lease ran out is due
   * again). Exactly one claimant wins, across processes and nodes.
   */
  claimJob(worker: string, now: number, leaseUntil: number): Promise<Job | undefined>;
  finishJob(id: string, worker: string, at: number): Promise<void>;
  /** Records a failure; `retryAt` null gives up on the job. */
  failJob(id: string, worker: string, error: string, retryAt: number | null, at: number): Promise<void>;
  getJob(id: string): Promise<Job | undefined>;

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
  method: 'PUT' | 'POST';
  url: string;
  /** Headers the client must send exactly as given. */
  headers: Record<string, string>;
  /**
   * Storage will accept further PUTs to this URL until it expires, even after completion (it
   * could not be made write-once). Completion then moves the bytes out of the URL's reach.
   */
  rewritable?: boolean | undefined;
}

/** A browser-form upload policy (S3 POST Object): every condition is enforced by storage. */
export interface PresignPostRequest {
  /** The exact key the form may write. */
  key: string;
  /** When set, the form must send exactly this Content-Type. */
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
  read(key: string, range?: ByteRange): Promise<Readable>;
  delete(key: string): Promise<void>;
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
  /** Removes debris of writes that never finished (temp files, incomplete parts). */
  sweepIncomplete(olderThan: number): Promise<number>;
  close(): Promise<void>;
}

/** An incoming request as the embedded storage endpoint sees it, before its body is read. */
export interface SignedRequest {
  method: string;
  /** Path and query exactly as sent (still percent-encoded): the signature covers them. */
  rawUrl: string;
  headers: Record<string, string | string[] | undefined>;
}

/** Checks presigned requests addressed to the embedded storage endpoint. */
export interface PresignVerifier {
  /** Returns the object key the request is allowed to write; throws a WharfError otherwise. */
  verify(request: SignedRequest, now: number): Promise<{ key: string }>;
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
