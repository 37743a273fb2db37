import type { Insertable, Selectable } from 'kysely';
import type {
  Access,
  Account,
  ApiKey,
  Asset,
  AssetAnalysis,
  FileVersion,
  Job,
  JobStatus,
  ProcessingStatus,
  Scope,
  Upload,
  UploadEnding,
  UploadIntent,
  UploadKind,
  UploadStatus,
  UploadToken,
} from '../../core/model.js';
import type { NewJob } from '../../core/ports.js';
import type {
  AccountsTable,
  ApiKeysTable,
  AssetsTable,
  FileVersionsTable,
  JobsTable,
  UploadsTable,
  UploadTokensTable,
} from '../schema.js';

/** Row shapes to the core's records and back: numbers from bigint columns, JSON text, 0/1 flags. */

export function parseIntent(text: string): UploadIntent {
  return JSON.parse(text) as UploadIntent;
}

export function toFileVersion(row: Selectable<FileVersionsTable>, latestVersion: number): FileVersion {
  return {
    accountId: row.account_id,
    namespace: row.namespace,
    name: row.name,
    version: Number(row.version),
    latestVersion,
    assetId: row.asset_id,
    createdAt: Number(row.created_at),
  };
}

export function fromJob(job: NewJob): JobsTable {
  return {
    id: job.id,
    kind: job.kind,
    payload: JSON.stringify(job.payload),
    status: 'queued',
    attempts: 0,
    run_at: job.runAt,
    lease_until: null,
    worker: null,
    last_error: null,
    created_at: job.runAt,
    updated_at: job.runAt,
    lane: job.lane ?? null,
    lane_owner: job.laneOwner ?? null,
  };
}

export function toJob(row: Selectable<JobsTable>): Job {
  return {
    id: row.id,
    kind: row.kind,
    payload: JSON.parse(row.payload) as Record<string, unknown>,
    status: row.status as JobStatus,
    attempts: Number(row.attempts),
    runAt: Number(row.run_at),
  };
}

export function toAccount(
  row: Pick<
    Selectable<AccountsTable>,
    'id' | 'name' | 'max_file_size' | 'storage_quota' | 'disabled' | 'strip_gps' | 'created_at'
  >,
): Account {
  return {
    id: row.id,
    name: row.name,
    maxFileSize: row.max_file_size === null ? null : Number(row.max_file_size),
    storageQuota: row.storage_quota === null ? null : Number(row.storage_quota),
    disabled: Number(row.disabled) === 1,
    stripGps: Number(row.strip_gps) === 1,
    createdAt: Number(row.created_at),
  };
}

export function fromKey(key: ApiKey, secretHash: string): Insertable<ApiKeysTable> {
  return {
    id: key.id,
    account_id: key.accountId,
    name: key.name,
    role: key.scopes.includes('admin') ? 'admin' : 'member',
    scopes: key.scopes.join(','),
    name_prefix: key.namePrefix,
    namespace: key.namespace,
    prefix: key.prefix,
    secret_hash: secretHash,
    created_at: key.createdAt,
    last_used_at: key.lastUsedAt,
    revoked_at: key.revokedAt,
  };
}

export function toKey(row: Selectable<ApiKeysTable>): ApiKey {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    scopes: row.scopes.split(',').filter((scope) => scope !== '') as Scope[],
    namePrefix: row.name_prefix,
    namespace: row.namespace,
    prefix: row.prefix,
    createdAt: Number(row.created_at),
    lastUsedAt: row.last_used_at === null ? null : Number(row.last_used_at),
    revokedAt: row.revoked_at === null ? null : Number(row.revoked_at),
  };
}

export function fromUpload(u: Upload) {
  return {
    id: u.id,
    account_id: u.accountId,
    key_id: u.keyId,
    token_id: u.tokenId,
    kind: u.kind,
    name: u.name,
    content_type: u.contentType,
    size: u.size,
    sha256: u.sha256,
    md5: u.md5,
    storage_key: u.storageKey,
    status: u.status,
    seq: u.seq,
    external_id: u.externalId,
    intent: JSON.stringify(u.intent),
    auto_complete: u.intent.autoComplete ? 1 : 0,
    multipart_id: u.multipartId,
    asset_id: u.assetId,
    deduplicated: u.deduplicated ? 1 : 0,
    quota_reserved: u.reserved.quota,
    token_reserved: u.reserved.token,
    created_at: u.createdAt,
    expires_at: u.expiresAt,
    completed_at: u.completedAt,
    ...endingColumns(u.ending),
  };
}

/** How an upload's ending is stored: three nullable columns (013), all null while it has none. */
export function endingColumns(ending: UploadEnding | null) {
  return {
    ended_reason: ending?.reason ?? null,
    ended_code: ending?.reason === 'failed' ? ending.code : null,
    ended_message: ending?.reason === 'failed' ? ending.message : null,
  };
}

function toEnding(row: Selectable<UploadsTable>): UploadEnding | null {
  switch (row.ended_reason) {
    case 'expired':
    case 'cancelled':
      return { reason: row.ended_reason };
    case 'failed':
      return { reason: 'failed', code: row.ended_code ?? '', message: row.ended_message ?? '' };
    default:
      // Ended before 013 recorded why (or still pending, or completed).
      return null;
  }
}

export function toUpload(row: Selectable<UploadsTable>): Upload {
  return {
    id: row.id,
    accountId: row.account_id,
    keyId: row.key_id,
    tokenId: row.token_id,
    kind: row.kind as UploadKind,
    name: row.name,
    contentType: row.content_type,
    size: row.size === null ? null : Number(row.size),
    sha256: row.sha256,
    md5: row.md5,
    storageKey: row.storage_key,
    status: row.status as UploadStatus,
    seq: row.seq === null ? null : Number(row.seq),
    externalId: row.external_id,
    intent: parseIntent(row.intent),
    multipartId: row.multipart_id,
    assetId: row.asset_id,
    deduplicated: Number(row.deduplicated) === 1,
    reserved: { quota: Number(row.quota_reserved), token: Number(row.token_reserved) },
    createdAt: Number(row.created_at),
    expiresAt: Number(row.expires_at),
    completedAt: row.completed_at === null ? null : Number(row.completed_at),
    ending: toEnding(row),
  };
}

export function fromAsset(a: Asset): AssetsTable {
  return {
    id: a.id,
    account_id: a.accountId,
    name: a.name,
    content_type: a.contentType,
    size: a.size,
    sha256: a.sha256,
    md5: a.md5,
    storage_key: a.storageKey,
    status: a.status,
    seq: a.seq,
    access: a.access,
    processing: a.processing,
    analysis: JSON.stringify(a.analysis),
    metadata: JSON.stringify(a.metadata),
    subject: a.subject,
    created_at: a.createdAt,
    updated_at: a.updatedAt,
  };
}

export function toAsset(row: Selectable<AssetsTable>): Asset {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    contentType: row.content_type,
    size: Number(row.size),
    sha256: row.sha256,
    md5: row.md5,
    storageKey: row.storage_key,
    status: row.status as Asset['status'],
    seq: Number(row.seq),
    access: row.access as Access,
    processing: row.processing as ProcessingStatus,
    analysis: JSON.parse(row.analysis) as AssetAnalysis,
    metadata: JSON.parse(row.metadata) as Record<string, unknown>,
    subject: row.subject,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

export function fromToken(token: UploadToken, secretHash: string): Insertable<UploadTokensTable> {
  return {
    id: token.id,
    account_id: token.accountId,
    key_id: token.keyId,
    prefix: token.prefix,
    secret_hash: secretHash,
    subject: token.subject,
    name_prefix: token.namePrefix,
    namespace: token.namespace,
    content_types: token.contentTypes === null ? null : JSON.stringify(token.contentTypes),
    metadata: JSON.stringify(token.metadata),
    max_files: token.maxFiles,
    max_bytes: token.maxBytes,
    max_file_size: token.maxFileSize,
    max_open_uploads: token.maxOpenUploads,
    created_at: token.createdAt,
    expires_at: token.expiresAt,
    revoked_at: token.revokedAt,
  };
}

function count(value: number | null): number | null {
  return value === null ? null : Number(value);
}

export function toToken(row: Selectable<UploadTokensTable>): UploadToken {
  return {
    id: row.id,
    accountId: row.account_id,
    keyId: row.key_id,
    prefix: row.prefix,
    subject: row.subject,
    namePrefix: row.name_prefix,
    namespace: row.namespace,
    contentTypes: row.content_types === null ? null : (JSON.parse(row.content_types) as string[]),
    metadata: JSON.parse(row.metadata) as Record<string, unknown>,
    maxFiles: count(row.max_files),
    maxBytes: count(row.max_bytes),
    maxFileSize: count(row.max_file_size),
    maxOpenUploads: count(row.max_open_uploads),
    usage: {
      filesUsed: Number(row.files_used),
      bytesUsed: Number(row.bytes_used),
      filesReserved: Number(row.files_reserved),
      bytesReserved: Number(row.bytes_reserved),
      openUploads: Number(row.open_uploads),
    },
    createdAt: Number(row.created_at),
    expiresAt: Number(row.expires_at),
    revokedAt: row.revoked_at === null ? null : Number(row.revoked_at),
  };
}
