import type { Readable } from 'node:stream';
import type { Clock } from './clock.js';
import type { IdSource } from './ids.js';
import type { Asset, ObjectInfo, Principal, Upload, UploadIntent } from './model.js';
import type { BlobStore, PartReference, PresignedRequest, Store, StoredPart } from './ports.js';
import type { UploadOutcome, UploadService } from './uploads.js';

export interface MultipartSettings {
  /** How long a multipart upload may take before it is aborted and its parts freed. */
  expiresInSeconds: number;
  /** How long each presigned part URL stays valid (a client re-signs for retries). */
  partUrlExpiresInSeconds: number;
}

/** A large file as a client declares it before sending parts. */
export interface MultipartDeclaration {
  name: string;
  contentType?: string | undefined;
  size: number;
  sha256?: string | undefined;
  intent?: UploadIntent | undefined;
}

export type MultipartStart =
  | { status: 'pending'; upload: Upload; multipartId: string }
  | { status: 'exists'; asset: Asset };

export interface SignedPart {
  partNumber: number;
  request: PresignedRequest;
}

/**
 * S3-style multipart uploads: Wharf starts them, signs part URLs, and on completion checks
 * every part against what storage holds, composes the object and verifies it like any upload.
 */
export class MultipartService {
  constructor(
    readonly store: Store,
    readonly blobs: BlobStore,
    readonly uploads: UploadService,
    readonly clock: Clock,
    readonly ids: IdSource,
    readonly settings: MultipartSettings,
  ) {}

  // ---- The native API (/v1/multipart) ----

  async create(_principal: Principal, _declaration: MultipartDeclaration): Promise<MultipartStart> {
    throw new Error('not yet');
  }

  async signParts(_principal: Principal, _uploadId: string, _partNumbers: number[]): Promise<SignedPart[]> {
    throw new Error('not yet');
  }

  async listParts(_principal: Principal, _uploadId: string): Promise<StoredPart[]> {
    throw new Error('not yet');
  }

  async complete(_principal: Principal, _uploadId: string, _parts: PartReference[]): Promise<UploadOutcome> {
    throw new Error('not yet');
  }

  async abort(_principal: Principal, _uploadId: string): Promise<void> {
    throw new Error('not yet');
  }

  // ---- The embedded storage endpoint (S3 multipart requests whose signature was checked) ----

  /** CreateMultipartUpload on `key`: the key's upload must be a pending multipart upload. */
  async receiveCreate(_key: string, _contentType: string | undefined): Promise<{ multipartId: string }> {
    throw new Error('not yet');
  }

  /** UploadPart: streams the part to storage; the body is drained on refusal. */
  async receivePart(_part: {
    key: string;
    multipartId: string;
    partNumber: number;
    body: Readable;
    size?: number | undefined;
    md5?: string | undefined;
  }): Promise<StoredPart> {
    throw new Error('not yet');
  }

  async receiveListParts(_key: string, _multipartId: string): Promise<StoredPart[]> {
    throw new Error('not yet');
  }

  /** CompleteMultipartUpload: composes the object, then completes the Wharf upload. */
  async receiveComplete(
    _key: string,
    _multipartId: string,
    _parts: PartReference[],
  ): Promise<ObjectInfo & { etag: string }> {
    throw new Error('not yet');
  }

  async receiveAbort(_key: string, _multipartId: string): Promise<void> {
    throw new Error('not yet');
  }
}
