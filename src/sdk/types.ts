/**
 * The native API's JSON, as the OpenAPI document's components name it (`/openapi.json`,
 * `#/components/schemas/<Name>`). Written by hand; test/unit/sdk-types.test.ts checks at
 * compile time that Asset, Upload, UploadToken, Webhook and WharfEvent and the server's
 * schemas of the same name accept the same values, so those cannot drift apart; the rest are
 * checked against a live server by test/integration/sdk.test.ts.
 */

export type Access = 'private' | 'public';

export interface AssetAnalysis {
  format?: string;
  mime?: string;
  width?: number;
  height?: number;
  location?: { latitude: number; longitude: number; altitude?: number };
  location_name?: string;
  /** A video's poster frame or a PDF's first page was stored; `/image` renders from it. */
  preview?: { width: number; height: number; format: string };
  /** What to show while the image loads; see placeholderDataUrl. */
  placeholder?: Placeholder;
  /** Why an image of a type transforms read has none (e.g. `IMAGE_UNDECODABLE`). */
  placeholder_error?: string;
}

/**
 * An image's stand-in until it loads: a ThumbHash (https://evanw.github.io/thumbhash/) and its
 * dominant colour.
 */
export interface Placeholder {
  /** Base64; `placeholderDataUrl` turns it into an image. */
  thumbhash: string;
  /** `#rrggbb`, for a plain background. */
  color: string;
}

/** A verified, stored file. */
export interface Asset {
  id: string;
  name: string;
  content_type: string;
  size: number;
  /** Hex SHA-256 of the bytes, verified by Wharf. */
  sha256: string;
  md5: string;
  /** `verifying`: storage could not attest the SHA-256 and Wharf is hashing the bytes. */
  status: 'ready' | 'verifying';
  number: number;
  access: Access;
  processing: 'pending' | 'done' | 'failed';
  analysis: AssetAnalysis;
  metadata: Record<string, unknown>;
  subject: string | null;
  created_at: string;
  updated_at: string;
  content_url: string;
}

/** An upload's outcome: `exists` when the account already held the content. */
export interface AssetResult {
  status: 'created' | 'exists';
  asset: Asset;
}

export interface AssetList {
  data: Asset[];
  next_cursor: string | null;
}

export interface SignedUrl {
  url: string;
  expires_at: string;
}

/** What `assets.imageUrl` signs: a rendering's parameters, or a preset (docs/images.md). */
export interface ImageUrlOptions {
  /** Width in CSS pixels (× dpr, rounded up to a multiple of 16, at most 4096). */
  w?: number;
  h?: number;
  fit?: 'cover' | 'contain' | 'inside';
  /** `auto` (default): AVIF, then WebP when the browser's Accept names them. */
  format?: 'auto' | 'webp' | 'avif' | 'jpeg' | 'png';
  q?: number;
  dpr?: number;
  /** A named preset of the account (with `dpr` only). */
  preset?: string;
  /** Seconds the URL works (default a day), or `expires_at` (RFC 3339), not both. */
  expires_in?: number;
  expires_at?: string;
  /** Show the asset as this upload of it does: its file name and type (docs/integration.md). */
  upload_id?: string;
}

export interface SignedImageUrl {
  url: string;
  expires_at: string;
  /** The canonical parameters the URL carries (sizes rounded, dpr applied). */
  params: Record<string, string | number>;
}

/** A file to upload presigned (`POST /v1/uploads`). */
export interface FileDeclaration {
  name: string;
  content_type?: string;
  size: number;
  sha256?: string;
  md5?: string;
}

export interface PendingUpload {
  status: 'pending';
  id: string;
  name: string;
  method: 'PUT';
  url: string;
  /** Send exactly these headers with the PUT. */
  headers: Record<string, string>;
  expires_at: string;
}

export interface ExistingUpload {
  status: 'exists';
  name: string;
  asset: Asset;
}

export type UploadItem = PendingUpload | ExistingUpload;

export interface UploadBatch {
  uploads: UploadItem[];
}

/** An upload's state (`GET /v1/uploads/{id}`). */
export interface Upload {
  id: string;
  /** `pending` (its bytes may still arrive), `completed` (`asset_id` is its asset) or `expired` (`ended` says why). */
  status: 'pending' | 'completed' | 'expired';
  name: string;
  content_type: string;
  size: number | null;
  expires_at: string;
  asset_id: string | null;
  token_id: string | null;
  subject: string | null;
  /** How its bytes arrive: the request's own body, a presigned PUT or form POST, S3-style parts, tus, or Resumable Uploads for HTTP. */
  kind: 'direct' | 'presigned' | 'post' | 'multipart' | 'tus' | 'rufh';
  created_at: string;
  completed_at: string | null;
  /** A pending tus or Resumable-Uploads-for-HTTP upload: where to resume it. */
  resume_url: string | null;
  /**
   * Why an `expired` upload ended without an asset, as its event says; null while pending, once
   * completed, and for uploads that ended before the server recorded it.
   */
  ended: UploadEnded | null;
}

/** How an upload ended without an asset: the event it ended with, and that upload.failed event's error. */
export interface UploadEnded {
  reason: 'expired' | 'cancelled' | 'failed';
  /** `failed`: e.g. CHECKSUM_MISMATCH, FILE_TOO_LARGE, UPLOAD_INTERRUPTED; null otherwise. */
  error: { code: string; message: string } | null;
}

/** An upload as listed (`GET /v1/uploads`): as `getUpload` answers it, with its offset when looked up by file. */
export interface UploadListItem extends Upload {
  /** Looked up by file (`size`): bytes received, to resume from. */
  offset?: number;
}

export interface UploadList {
  data: UploadListItem[];
  next_cursor: string | null;
}

export interface MultipartRequest {
  name: string;
  content_type?: string;
  size: number;
  sha256?: string;
}

export interface MultipartUpload {
  status: 'pending';
  id: string;
  uploadId: string;
  key: string;
  part_size: number;
  expires_at: string;
}

export interface ExistingMultipart {
  status: 'exists';
  asset: Asset;
}

export interface SignedPart {
  partNumber: number;
  url: string;
  headers: Record<string, string>;
  expires_at: string;
}

export interface StoredPart {
  PartNumber: number;
  Size: number;
  ETag: string;
}

export interface MultipartResult {
  status: 'created' | 'exists';
  location: string;
  asset: Asset;
}

export interface FileVersion {
  namespace: string;
  name: string;
  version: number;
  latest_version: number;
  created_at: string;
  asset: Asset;
}

export interface FileVersionEntry {
  namespace: string;
  name: string;
  version: number;
  latest_version: number;
  created_at: string;
  asset_id: string;
}

/** A named file an asset is a version of (`GET /v1/assets/{id}/files`). */
export interface AssetFile {
  namespace: string;
  name: string;
  /** The version that is this asset. */
  version: number;
  latest_version: number;
  /** Every version of the file, oldest first. */
  versions: Array<{ version: number; asset_id: string; created_at: string }>;
}

export type Scope = 'admin' | 'read' | 'upload' | 'write';

export interface Key {
  id: string;
  account_id: string;
  name: string;
  role: 'admin' | 'member';
  scopes: Scope[];
  name_prefix: string | null;
  namespace: string | null;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

/** A page of keys, oldest first. */
export interface KeyList {
  data: Key[];
  /** Pass as `cursor` for the next page; null on the last. */
  next_cursor: string | null;
}

export interface KeyRequest {
  name: string;
  role?: 'admin' | 'member';
  scopes?: Scope[];
  name_prefix?: string;
  namespace?: string;
}

export interface CreatedKey {
  key: Key;
  /** Shown only this once. */
  secret: string;
}

export interface UploadTokenUsage {
  files_used: number;
  bytes_used: number;
  files_reserved: number;
  bytes_reserved: number;
  open_uploads: number;
}

export interface UploadToken {
  id: string;
  account_id: string;
  key_id: string;
  prefix: string;
  status: 'active' | 'expired' | 'revoked';
  subject: string | null;
  name_prefix: string | null;
  namespace: string | null;
  content_types: string[] | null;
  metadata: Record<string, unknown>;
  max_files: number | null;
  max_bytes: number | null;
  max_file_size: number | null;
  max_open_uploads: number | null;
  usage: UploadTokenUsage;
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
}

export interface UploadTokenRequest {
  expires_in?: number;
  max_files?: number;
  max_bytes?: number;
  max_file_size?: number;
  content_types?: string[];
  name_prefix?: string;
  namespace?: string;
  metadata?: Record<string, unknown>;
  subject?: string;
  max_open_uploads?: number;
}

export interface MintedUploadToken {
  token: UploadToken;
  /** The token itself (`wharf_ut_…`), shown only this once. */
  secret: string;
}

export interface UploadTokenList {
  data: UploadToken[];
  next_cursor: string | null;
}

export interface Webhook {
  id: string;
  url: string;
  description: string;
  event_types: string[];
  enabled: boolean;
  disabled_reason: string | null;
  failing_since: string | null;
  created_at: string;
  updated_at: string;
}

export interface WebhookRequest {
  url: string;
  event_types?: string[];
  description?: string;
  enabled?: boolean;
}

export interface WebhookChanges {
  url?: string;
  event_types?: string[];
  description?: string;
  enabled?: boolean;
}

export interface WebhookWithSecret {
  webhook: Webhook;
  secret: string;
}

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed' | 'cancelled';

export interface Delivery {
  id: string;
  webhook_id: string;
  event_id: string | null;
  event_type: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: string | null;
  last_attempt_at: string | null;
  response_status: number | null;
  response_body: string | null;
  latency_ms: number | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
}

export interface DeliveryAttempt {
  attempted_at: string;
  outcome: 'succeeded' | 'failed' | 'gone';
  response_status: number | null;
  response_body: string | null;
  latency_ms: number | null;
  error: string | null;
}

export interface DeliveryDetail extends Delivery {
  attempt_log: DeliveryAttempt[];
  payload: Record<string, unknown> | null;
}

export interface DeliveryPage {
  data: Delivery[];
  next_cursor: string | null;
}

export interface ReplayResult {
  requeued: number;
  created: number;
}

export interface WharfEvent {
  id: string;
  cursor: string;
  type: string;
  timestamp: string;
  data: Record<string, unknown>;
}

export interface EventPage {
  data: WharfEvent[];
  cursor: string;
  has_more: boolean;
}

/** The caller's account and what it holds against its quota (`GET /v1/account`). */
export interface Account {
  id: string;
  name: string;
  /** The account's file size limit (null: the server's). */
  max_file_size: number | null;
  /** Bytes it may store (null: no limit). */
  storage_quota: number | null;
  usage: {
    bytes_used: number;
    bytes_reserved: number;
    bytes_free: number | null;
    assets: number;
    pending_uploads: number;
  };
  created_at: string;
}

export interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}
