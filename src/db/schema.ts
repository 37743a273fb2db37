/** Table shapes as Kysely sees them. Times are epoch milliseconds; booleans are 0/1. */
import type { Generated } from 'kysely';

export interface SettingsTable {
  name: string;
  value: string;
}

export interface AccountsTable {
  id: string;
  name: string;
  max_file_size: number | null;
  storage_quota: number | null;
  disabled: number;
  strip_gps: Generated<number>;
  created_at: number;
  /** Sizes of the account's assets, kept with every asset recorded or deleted (004). */
  bytes_used: Generated<number>;
  /** Held by its pending uploads (004). */
  bytes_reserved: Generated<number>;
}

export interface ApiKeysTable {
  id: string;
  account_id: string;
  name: string;
  /** Kept for older readers: `admin`, or `member` for any other key. */
  role: string;
  /** Comma-separated, sorted (004). */
  scopes: string;
  name_prefix: string | null;
  namespace: string | null;
  prefix: string;
  secret_hash: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
  /** Its pending uploads (not its tokens'), for WHARF_MAX_OPEN_UPLOADS_PER_KEY (004). */
  open_uploads: Generated<number>;
}

export interface UploadTokensTable {
  id: string;
  account_id: string;
  key_id: string;
  prefix: string;
  secret_hash: string;
  subject: string | null;
  name_prefix: string | null;
  namespace: string | null;
  /** JSON array, or null for any type. */
  content_types: string | null;
  /** JSON object. */
  metadata: string;
  max_files: number | null;
  max_bytes: number | null;
  max_file_size: number | null;
  max_open_uploads: number | null;
  files_used: Generated<number>;
  bytes_used: Generated<number>;
  files_reserved: Generated<number>;
  bytes_reserved: Generated<number>;
  open_uploads: Generated<number>;
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
}

export interface UploadsTable {
  id: string;
  account_id: string;
  key_id: string;
  token_id: string | null;
  kind: string;
  name: string;
  content_type: string;
  size: number | null;
  sha256: string | null;
  md5: string | null;
  storage_key: string;
  status: string;
  seq: number | null;
  external_id: string | null;
  intent: string;
  auto_complete: Generated<number>;
  multipart_id: string | null;
  asset_id: string | null;
  deduplicated: Generated<number>;
  /** Bytes held against the account's quota while pending (004). */
  quota_reserved: Generated<number>;
  /** Bytes held against the token's budget while pending (004). */
  token_reserved: Generated<number>;
  created_at: number;
  expires_at: number;
  completed_at: number | null;
  /**
   * Why it ended without an asset (013): `expired`, `cancelled` or `failed`, the last with the
   * refusal's code and message. Null while pending, once completed, and if it ended before 013.
   */
  ended_reason: string | null;
  ended_code: string | null;
  ended_message: string | null;
}

export interface AssetsTable {
  id: string;
  account_id: string;
  name: string;
  content_type: string;
  size: number;
  sha256: string;
  md5: string;
  storage_key: string;
  status: string;
  seq: number;
  access: string;
  processing: string;
  analysis: string;
  metadata: string;
  subject: string | null;
  created_at: number;
  updated_at: number;
}

export interface CountersTable {
  name: string;
  value: number;
}

export interface FilesTable {
  account_id: string;
  namespace: string;
  name: string;
  latest_version: number;
}

export interface FileVersionsTable {
  account_id: string;
  namespace: string;
  name: string;
  version: number;
  asset_id: string;
  created_at: number;
}

export interface JobsTable {
  id: string;
  kind: string;
  payload: string;
  status: string;
  attempts: number;
  run_at: number;
  lease_until: number | null;
  worker: string | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
  /** Jobs of one lane run one at a time (a webhook endpoint's deliveries); null for no lane. */
  lane: string | null;
  /** Whose the lane is (a webhook endpoint's account): claims serve idle owners first; null for none. */
  lane_owner: string | null;
}

export interface Database {
  settings: SettingsTable;
  accounts: AccountsTable;
  api_keys: ApiKeysTable;
  upload_tokens: UploadTokensTable;
  uploads: UploadsTable;
  assets: AssetsTable;
  counters: CountersTable;
  files: FilesTable;
  file_versions: FileVersionsTable;
  jobs: JobsTable;
  locks: LocksTable;
  events: EventsTable;
  webhooks: WebhooksTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
  derivatives: DerivativesTable;
  image_presets: ImagePresetsTable;
  console_sessions: ConsoleSessionsTable;
  idempotency_records: IdempotencyRecordsTable;
}

/** Leases on named resources shared by every node (tus uploads in progress). */
export interface LocksTable {
  name: string;
  owner: string;
  expires_at: number;
  /** Set by a node waiting for the lock: the holder should let go soon. */
  release_requested: Generated<number>;
}

/** The outbox: one row per state change, in commit order (see migration 004). */
export interface EventsTable {
  /** Installation-wide: the key deliveries name (never shown; see appendEvents). */
  seq: number;
  /** The event's place among its account's: the API's `cursor` (migration 012). */
  account_seq: number;
  id: string;
  account_id: string;
  type: string;
  data: string;
  created_at: number;
}

export interface WebhooksTable {
  id: string;
  account_id: string;
  url: string;
  description: Generated<string>;
  event_types: Generated<string>;
  enabled: Generated<number>;
  secret: string;
  disabled_reason: string | null;
  failing_since: number | null;
  previous_secret: string | null;
  previous_secret_expires_at: number | null;
  created_at: number;
  updated_at: number;
}

export interface WebhookDeliveriesTable {
  id: string;
  webhook_id: string;
  account_id: string;
  event_seq: number;
  event_type: string;
  status: string;
  attempts: Generated<number>;
  next_attempt_at: number | null;
  last_attempt_at: number | null;
  response_status: number | null;
  response_body: string | null;
  latency_ms: number | null;
  last_error: string | null;
  job_id: string | null;
  created_at: number;
  updated_at: number;
}

/** One try at sending a delivery (see migration 005). */
export interface WebhookAttemptsTable {
  id: string;
  delivery_id: string;
  webhook_id: string;
  job_id: string;
  attempted_at: number;
  outcome: string;
  response_status: number | null;
  response_body: string | null;
  latency_ms: number | null;
  error: string | null;
}

/** Stored renderings of assets (see migration 007). */
export interface DerivativesTable {
  asset_id: string;
  params_key: string;
  account_id: string;
  storage_key: string;
  size: number;
  content_type: string;
  sha256: string;
  created_at: number;
}

export interface ImagePresetsTable {
  account_id: string;
  name: string;
  params: string;
  eager: number;
  created_at: number;
  updated_at: number;
}

/** A web console session (see migration 007): only the hash of its id is kept. */
export interface ConsoleSessionsTable {
  id_hash: string;
  account_id: string;
  key_id: string;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  ends_at: number;
  revoked_at: number | null;
}

/** What a creating request answered, under its client's idempotency key (see migration 016). */
export interface IdempotencyRecordsTable {
  account_id: string;
  principal_id: string;
  idempotency_key: string;
  fingerprint: string;
  state: 'running' | 'done';
  holder: string;
  status: number | null;
  response: string | null;
  created_at: number;
  lease_until: number;
  expires_at: number;
}
