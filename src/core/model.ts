/** The records the core works with. Times are epoch milliseconds. */

/**
 * What a key may do. `admin`: everything (keys and tokens of the account included); `read`:
 * list, get, download and sign download URLs; `upload`: create and complete uploads, and read
 * what it uploaded; `write`: change what exists (delete assets, change access).
 */
export type Scope = 'admin' | 'read' | 'upload' | 'write';

/** How keys were described before scopes: `member` is read, upload and write. */
export type Role = 'admin' | 'member';

export interface Account {
  id: string;
  name: string;
  /** Per-account limit; null falls back to the server-wide default. */
  maxFileSize: number | null;
  /** Total bytes the account may store (its plan's upload limit); null means unlimited. */
  storageQuota: number | null;
  disabled: boolean;
  /** Remove GPS positions from the stored original of every new image (see docs/images.md). */
  stripGps: boolean;
  createdAt: number;
}

export interface ApiKey {
  id: string;
  accountId: string;
  name: string;
  /** Sorted; `admin` alone when it is an admin key (admin implies every other scope). */
  scopes: Scope[];
  /** When set, the key works only on assets whose names start with it. */
  namePrefix: string | null;
  /** When set, the key works only on named files of this namespace (see authorization.ts). */
  namespace: string | null;
  /** The first characters of the key, shown in listings so people can tell keys apart. */
  prefix: string;
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

/** Who is calling: resolved from an API key, or from an upload token. */
export interface Principal {
  accountId: string;
  /** The key; for an upload token, the key that minted it. */
  keyId: string;
  /** Set when the caller presented an upload token. */
  tokenId: string | null;
  scopes: readonly Scope[];
  namePrefix: string | null;
  namespace: string | null;
  /** The account's own file size limit, if it has one. */
  maxFileSize: number | null;
  /** What an upload token adds to every upload it makes. */
  grant?: UploadGrant | undefined;
}

/** An upload token's limits and what it stamps on its uploads (see UploadToken). */
export interface UploadGrant {
  maxFileSize: number | null;
  /** Exact types or families (`image/*`); null allows any. */
  contentTypes: string[] | null;
  metadata: Record<string, unknown>;
  subject: string | null;
  maxOpenUploads: number | null;
  expiresAt: number;
}

/**
 * A short-lived credential an app mints on its back end for one of its users (a browser, a
 * phone): it may only upload, within its limits, and read what it uploaded. Usage counters are
 * kept by the store in the same transactions that open and settle its uploads.
 */
export interface UploadToken {
  id: string;
  accountId: string;
  /** The key that minted it; revoking that key stops the token too. */
  keyId: string;
  /** The first characters of the secret, to tell tokens apart. */
  prefix: string;
  /** The app's user id: recorded on the assets the token creates. */
  subject: string | null;
  namePrefix: string | null;
  namespace: string | null;
  contentTypes: string[] | null;
  metadata: Record<string, unknown>;
  maxFiles: number | null;
  /** Total bytes of every file it uploads. */
  maxBytes: number | null;
  maxFileSize: number | null;
  maxOpenUploads: number | null;
  usage: TokenUsage;
  createdAt: number;
  expiresAt: number;
  revokedAt: number | null;
}

export interface TokenUsage {
  /** Completed uploads (content the account already held counts too: the token sent it). */
  filesUsed: number;
  bytesUsed: number;
  /** Held by pending uploads: given back if they fail or expire, made "used" when they complete. */
  filesReserved: number;
  bytesReserved: number;
  openUploads: number;
}

/** `verifying`: recorded, but storage could not attest the SHA-256; a job is hashing it. */
export type AssetStatus = 'ready' | 'verifying';

/** Who may read an asset without a key or a signed URL. */
export type Access = 'private' | 'public';

/** Where processing of a new asset stands (type sniffing, image facts, EXIF location). */
export type ProcessingStatus = 'pending' | 'done' | 'failed';

/**
 * A stand-in for an image until it loads: a ThumbHash (https://evanw.github.io/thumbhash/),
 * about 25 bytes that decode to a blurred picture of the right aspect ratio and colours
 * (alpha included), and its most common colour for a plain background.
 */
export interface Placeholder {
  /** The ThumbHash, base64 (standard alphabet, padded). */
  thumbhash: string;
  /** The dominant colour, `#rrggbb`. */
  color: string;
}

/** What processing learned from the bytes themselves. */
export interface AssetAnalysis {
  /** Sniffed from the content (e.g. `jpg`, `png`, `pdf`), not from the name. */
  format?: string;
  mime?: string;
  width?: number;
  height?: number;
  /** From EXIF GPS. */
  location?: { latitude: number; longitude: number; altitude?: number };
  /** A place name the file itself carries (IPTC/XMP city, region, country). */
  locationName?: string;
  /** Video and audio: length in seconds. */
  duration?: number;
  /** Video: the video stream's codec (`h264`); audio: the audio codec (`mp3`). */
  codec?: string;
  /** Video: the audio stream's codec, when there is one. */
  audioCodec?: string;
  /** PDF: number of pages. */
  pages?: number;
  /** A poster frame (video) or first page (PDF) was stored: transforms start from it. */
  preview?: { width: number; height: number; format: string };
  /** What a page shows while the image (or the preview) loads; see Placeholder. */
  placeholder?: Placeholder;
  /**
   * Why an image of a type transforms read has no placeholder: the code a transform of it
   * fails with (e.g. IMAGE_UNDECODABLE for a truncated or corrupt file, TRANSFORM_TIMEOUT).
   */
  placeholderError?: string;
  /** Tools this server lacks that the file's type needed (e.g. `ffprobe`), so facts are missing. */
  missingTools?: string[];
  /** Why media facts or a preview are missing although the tools exist. */
  mediaError?: string;
  /**
   * The account strips GPS positions and this image carried one: the stored bytes are a copy
   * without it, and `uploaded` holds the digests of what the client sent.
   */
  hadGps?: boolean;
  uploaded?: { sha256: string; md5: string; size: number };
}

export interface Asset {
  id: string;
  accountId: string;
  name: string;
  contentType: string;
  size: number;
  /** Lower-case hex. */
  sha256: string;
  md5: string;
  storageKey: string;
  status: AssetStatus;
  /** A small integer id, unique per installation (for APIs whose ids are integers). */
  seq: number;
  access: Access;
  processing: ProcessingStatus;
  analysis: AssetAnalysis;
  metadata: Record<string, unknown>;
  /** The app's user the asset was uploaded for (an upload token's subject). */
  subject: string | null;
  createdAt: number;
  updatedAt: number;
}

/**
 * How the bytes arrive: through the API (`direct`), to a presigned URL (`presigned`), a POST
 * form (`post`), S3-style parts (`multipart`), the tus protocol (`tus`) or the IETF draft
 * Resumable Uploads for HTTP (`rufh`).
 */
export type UploadKind = 'direct' | 'presigned' | 'post' | 'multipart' | 'tus' | 'rufh';

/** Where a finished upload is filed, besides being an asset: a version of a named file. */
export interface FileTarget {
  namespace: string;
  name: string;
}

/** What a protocol asked for when it opened the upload, applied when it completes. */
export interface UploadIntent {
  /** Complete as soon as storage holds the bytes (protocols with no confirm step). */
  autoComplete?: boolean;
  /**
   * SHA-256 (hex) of the whole file that a RUFH append declared (Repr-Digest) on an upload whose
   * creation declared none: checked at completion as a declared one is.
   */
  reprSha256?: string;
  /** Its presigned URL can overwrite the key until it expires: completion seals a copy. */
  rewritable?: boolean;
  /**
   * The content type was settled before the bytes (bound by the URL or policy, or a form that
   * carries none); otherwise the type the client sends with them is the file's.
   */
  boundType?: boolean;
  file?: FileTarget;
  access?: Access;
  metadata?: Record<string, unknown>;
  /** Recorded on the asset it creates (an upload token's subject). */
  subject?: string;
  /** Types the file may turn out to have (checked again at completion, when the client chose it). */
  contentTypes?: string[];
  /** The largest the file may be (checked at completion when the size was not known before). */
  maxSize?: number;
  /**
   * Made by a caller that does not see the whole account: it never learns that the account
   * already held its content (no "exists" answers; a deduplicated completion shows the asset
   * as this upload declared it, see authorization.ts `viewThrough`).
   */
  isolated?: boolean;
  /**
   * SHA-256 (hex) of the file's first min(size, 4 MiB) bytes, declared by the client or
   * computed as they arrived: how a client that lost its state finds an unfinished resumable
   * upload of a file again (see ResumableService.findUnfinished).
   */
  headSha256?: string;
}
export type UploadStatus = 'pending' | 'completed' | 'expired';

/** Why an upload ended without an asset (its `expired` status, and its event, say that it did). */
export type UploadEnding =
  | { reason: 'expired' }
  | { reason: 'cancelled' }
  | { reason: 'failed'; code: string; message: string };

export interface Upload {
  id: string;
  accountId: string;
  /** The key it was made with; for an upload token, the key that minted it. */
  keyId: string;
  tokenId: string | null;
  kind: UploadKind;
  name: string;
  contentType: string;
  /** Declared size; null for direct uploads, whose size is only known at the end. */
  size: number | null;
  sha256: string | null;
  md5: string | null;
  storageKey: string;
  status: UploadStatus;
  /** Assigned when the upload is recorded; its asset takes the same number. */
  seq: number | null;
  /** An id the client chose (unique per account), for APIs that let it. */
  externalId: string | null;
  intent: UploadIntent;
  /**
   * Storage's id of the multipart upload that writes this upload's key (S3's UploadId), once
   * known: set at creation by Wharf, or on first sight when the client created it itself.
   */
  multipartId: string | null;
  assetId: string | null;
  /** Whether completion found the content already stored and returned that asset. */
  deduplicated: boolean;
  /**
   * Bytes held for it while it is pending, against the account's storage quota and against its
   * token's byte budget; written by the store when it records the upload.
   */
  reserved: { quota: number; token: number };
  createdAt: number;
  expiresAt: number;
  completedAt: number | null;
  /**
   * Why it ended without an asset, recorded as it ended (migration 013): null while pending, once
   * completed, and for uploads that ended before Wharf recorded it.
   */
  ending: UploadEnding | null;
}

/** What storage knows of an object. Digests are lower-case hex, absent when unknown. */
export interface ObjectInfo {
  size: number;
  md5?: string | undefined;
  sha256?: string | undefined;
  contentType?: string | undefined;
  /**
   * A Content-Encoding storage recorded with the object (an S3 bucket keeps the PUT's header):
   * the bytes are then not the file's own, and a bucket may serve them decoded.
   */
  contentEncoding?: string | undefined;
}

export interface Digests {
  size: number;
  sha256: string;
  md5: string;
}

/** One version of a named file in a namespace; versions point at assets (deduplicated). */
export interface FileVersion {
  accountId: string;
  namespace: string;
  name: string;
  version: number;
  latestVersion: number;
  assetId: string;
  createdAt: number;
}

export type JobStatus = 'queued' | 'running' | 'done' | 'failed';

export interface Job {
  id: string;
  kind: string;
  payload: Record<string, unknown>;
  status: JobStatus;
  attempts: number;
  runAt: number;
}

/** A stored rendering of an asset (a resized image, a video's poster frame). */
export interface Derivative {
  assetId: string;
  accountId: string;
  /** The canonical parameters it was made with (`w320-q80-webp`, `preview`). */
  paramsKey: string;
  /** Identical renderings of one asset share an object. */
  storageKey: string;
  size: number;
  contentType: string;
  /** Lower-case hex of the stored bytes: the derivative's strong ETag. */
  sha256: string;
  createdAt: number;
}

/** A named set of transform parameters of an account (`?preset=thumbnail`). */
export interface ImagePreset {
  accountId: string;
  name: string;
  /** Canonical parameters (see src/core/transforms.ts). */
  params: {
    w?: number;
    h?: number;
    fit?: 'cover' | 'contain' | 'inside';
    format: 'auto' | 'webp' | 'avif' | 'jpeg' | 'png';
    q?: number;
  };
  /** Rendered by a job as soon as an image arrives, not on first request. */
  eager: boolean;
  createdAt: number;
  updatedAt: number;
}
