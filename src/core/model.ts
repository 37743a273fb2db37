/** The records the core works with. Times are epoch milliseconds. */

export type Role = 'admin' | 'member';

export interface Account {
  id: string;
  name: string;
  /** Per-account limit; null falls back to the server-wide default. */
  maxFileSize: number | null;
  disabled: boolean;
  createdAt: number;
}

export interface ApiKey {
  id: string;
  accountId: string;
  name: string;
  role: Role;
  /** The first characters of the key, shown in listings so people can tell keys apart. */
  prefix: string;
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

/** Who is calling: resolved from an API key. */
export interface Principal {
  accountId: string;
  keyId: string;
  role: Role;
  /** The account's own file size limit, if it has one. */
  maxFileSize: number | null;
}

export type AssetStatus = 'ready';

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
  metadata: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
}

export type UploadKind = 'direct' | 'presigned';
export type UploadStatus = 'pending' | 'completed' | 'expired';

export interface Upload {
  id: string;
  accountId: string;
  keyId: string;
  kind: UploadKind;
  name: string;
  contentType: string;
  /** Declared size; null for direct uploads, whose size is only known at the end. */
  size: number | null;
  sha256: string | null;
  md5: string | null;
  storageKey: string;
  status: UploadStatus;
  assetId: string | null;
  /** Whether completion found the content already stored and returned that asset. */
  deduplicated: boolean;
  createdAt: number;
  expiresAt: number;
  completedAt: number | null;
}

/** What storage knows of an object. Digests are lower-case hex, absent when unknown. */
export interface ObjectInfo {
  size: number;
  md5?: string | undefined;
  sha256?: string | undefined;
  contentType?: string | undefined;
}

export interface Digests {
  size: number;
  sha256: string;
  md5: string;
}
