import type { Static } from 'typebox';
import { hexToBase64 } from '../../../core/digests.js';
import { WharfError } from '../../../core/errors.js';
import type { Asset, Principal, Upload } from '../../../core/model.js';
import type { Core } from '../../../core/wharf.js';
import type { FileUploadResponse } from './schemas.js';

export type BlobRecord = Static<typeof FileUploadResponse>;

const PURPOSE = 'active-storage-blob';
const REF = /^([ua]):([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(.+)$/s;

/**
 * What a signed id names: the upload a POST opened, or the asset a checksum lookup found.
 * The account travels inside, so the id alone (as in Rails' redirect URLs) finds the blob.
 */
export interface BlobRef {
  kind: 'upload' | 'asset';
  id: string;
  accountId: string;
}

export function signBlob(core: Core, ref: BlobRef): string {
  return core.signedIds.sign(PURPOSE, `${ref.kind === 'upload' ? 'u' : 'a'}:${ref.id}:${ref.accountId}`);
}

/** INVALID_SIGNATURE for anything this server did not sign for this purpose. */
export function verifyBlob(core: Core, token: string): BlobRef {
  const match = REF.exec(core.signedIds.verify(PURPOSE, token));
  if (!match) throw new WharfError('INVALID_SIGNATURE', 'The signed id is not valid.');
  return { kind: match[1] === 'u' ? 'upload' : 'asset', id: match[2]!, accountId: match[3]! };
}

/**
 * Who presents a signed id without a key: it was issued to a caller of this account and
 * grants reading that one blob, as a signed download URL does.
 */
export function holderOf(accountId: string): Principal {
  return {
    accountId,
    keyId: '',
    tokenId: null,
    scopes: ['read'],
    namePrefix: null,
    namespace: null,
    maxFileSize: null,
  };
}

/** The store behind the presigned URLs: Wharf itself, or an S3-compatible object store. */
export function serviceName(core: Core): string {
  return core.endpoint ? 'local' : 's3';
}

export type ResolvedBlob =
  | { upload: Upload; asset: Asset | undefined }
  | { upload?: undefined; asset: Asset };

/**
 * The blob a signed id names. ActiveStorage has no confirm step, so an upload still pending
 * is completed here if its bytes have arrived (on S3 nothing else tells Wharf they did); one
 * whose bytes have not arrived, or never will, is a blob with no file yet, which the
 * document's redirect answers with 404, as a record without one.
 */
export async function resolveBlob(core: Core, ref: BlobRef, principal: Principal): Promise<ResolvedBlob> {
  if (ref.accountId !== principal.accountId) throw new WharfError('NOT_FOUND', 'No blob has this signed id.');
  if (ref.kind === 'asset') return { asset: await core.assets.get(principal, ref.id) };
  return core.uploads.lookAt(principal, ref.id);
}

/** The checksum as the client declared it: ActiveStorage's MD5, or the SHA-256 the document mentions. */
function declaredChecksum(upload: Upload, asset: Asset | undefined): string {
  const hex = upload.md5 ?? upload.sha256 ?? asset?.md5;
  return hex ? hexToBase64(hex) : '';
}

export function uploadRecord(
  core: Core,
  upload: Upload,
  asset: Asset | undefined,
  checksum?: string,
): BlobRecord {
  return {
    // Once complete, the asset's number and the key that holds its bytes: the same as the
    // upload's own, unless the account already held the content (the upload was deduplicated
    // and its own key freed; an MD5-declared re-upload always comes this way) or its bytes
    // were stored elsewhere (a stripped copy). A record naming a freed key sent Rails looking
    // for nothing. The isolated caller's view keeps its own filename and signed_id (see
    // viewThrough): the number and key are what the native API and other seeds show it too.
    id: asset?.seq ?? upload.seq ?? 0,
    key: asset?.storageKey ?? upload.storageKey,
    filename: upload.name,
    content_type: upload.contentType,
    metadata: {},
    service_name: serviceName(core),
    byte_size: asset?.size ?? upload.size ?? 0,
    checksum: checksum ?? declaredChecksum(upload, asset),
    created_at: new Date(upload.createdAt).toISOString(),
    signed_id: signBlob(core, { kind: 'upload', id: upload.id, accountId: upload.accountId }),
  };
}

export function assetRecord(core: Core, asset: Asset, checksum?: string): BlobRecord {
  return {
    id: asset.seq,
    key: asset.storageKey,
    filename: asset.name,
    content_type: asset.contentType,
    metadata: {},
    service_name: serviceName(core),
    byte_size: asset.size,
    checksum: checksum ?? hexToBase64(asset.md5),
    created_at: new Date(asset.createdAt).toISOString(),
    signed_id: signBlob(core, { kind: 'asset', id: asset.id, accountId: asset.accountId }),
  };
}

export function blobRecord(core: Core, blob: ResolvedBlob): BlobRecord {
  return blob.upload ? uploadRecord(core, blob.upload, blob.asset) : assetRecord(core, blob.asset);
}
