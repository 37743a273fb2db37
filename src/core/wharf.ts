import { createHmac } from 'node:crypto';
import { AssetService } from './assets.js';
import type { Clock } from './clock.js';
import { StorageEndpointService } from './endpoint.js';
import type { IdSource } from './ids.js';
import { DEFAULT_ACCOUNT_ID, KeyService } from './keys.js';
import type { BlobStore, PresignVerifier, Store } from './ports.js';
import { UploadService, type UploadSettings } from './uploads.js';

export interface CoreDeps {
  store: Store;
  blobs: BlobStore;
  clock: Clock;
  ids: IdSource;
  /** The server secret every signing key is derived from. */
  secret: string;
  uploads: UploadSettings;
  /** Present when Wharf itself is the object store (embedded deployment). */
  endpoint?: PresignVerifier | undefined;
}

/** The core: every protocol Wharf speaks ends up calling these services. */
export interface Core {
  keys: KeyService;
  uploads: UploadService;
  assets: AssetService;
  endpoint: StorageEndpointService | undefined;
  clock: Clock;
}

/** Distinct keys per purpose, so a signature of one kind can never pass as another. */
export function deriveKey(secret: string, purpose: string): Buffer {
  return createHmac('sha256', secret).update(`wharf:${purpose}`).digest();
}

export function createCore(deps: CoreDeps): Core {
  const uploads = new UploadService(deps.store, deps.blobs, deps.clock, deps.ids, deps.uploads);
  return {
    keys: new KeyService(deps.store, deps.clock, deps.ids),
    uploads,
    assets: new AssetService(deps.store, deps.blobs, deps.clock, deriveKey(deps.secret, 'download')),
    endpoint: deps.endpoint && new StorageEndpointService(deps.endpoint, uploads, deps.clock),
    clock: deps.clock,
  };
}

export { DEFAULT_ACCOUNT_ID };
