import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Clock } from './clock.js';
import { parseDigest } from './digests.js';
import { WharfError } from './errors.js';
import type { Access, Asset, Principal } from './model.js';
import type { AssetPage, AssetQuery, BlobStore, ByteRange, Store } from './ports.js';

export const MAX_PAGE_SIZE = 1000;
const MAX_SIGNED_URL_SECONDS = 7 * 24 * 3600;

export type Disposition = 'inline' | 'attachment';

/** The parts of a download URL that prove it was issued by this server and is unexpired. */
export interface DownloadGrant {
  assetId: string;
  /** Unix seconds. */
  expires: number;
  disposition: Disposition;
  signature: string;
}

export class AssetService {
  private readonly deletionHooks: Array<(asset: Asset) => Promise<void>> = [];

  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly clock: Clock,
    private readonly signingKey: Buffer,
  ) {}

  async list(principal: Principal, query: AssetQuery): Promise<AssetPage> {
    const limit = Math.min(Math.max(query.limit, 1), MAX_PAGE_SIZE);
    return this.store.listAssets(principal.accountId, { ...query, limit });
  }

  async get(principal: Principal, id: string): Promise<Asset> {
    const asset = await this.store.getAsset(principal.accountId, id);
    // Another account's asset is indistinguishable from a missing one.
    if (!asset) throw new WharfError('NOT_FOUND', 'No such asset.');
    return asset;
  }

  /** The account's asset with this content, if any (digests in hex or base64). */
  async findByDigest(
    principal: Principal,
    digest: { sha256?: string; md5?: string },
  ): Promise<Asset | undefined> {
    if (digest.sha256) {
      return this.store.findAssetBySha256(
        principal.accountId,
        parseDigest('sha256', digest.sha256, 'sha256'),
      );
    }
    if (digest.md5)
      return this.store.findAssetByMd5(principal.accountId, parseDigest('md5', digest.md5, 'md5'));
    return undefined;
  }

  async delete(principal: Principal, id: string): Promise<void> {
    const asset = await this.store.deleteAsset(principal.accountId, id, this.clock.now());
    if (!asset) throw new WharfError('NOT_FOUND', 'No such asset.');
    if ((await this.store.countAssetsWithStorageKey(asset.storageKey)) === 0) {
      await this.blobs.delete(asset.storageKey);
    }
    await this.afterDelete(asset);
  }

  /** Lets a capability free what it keeps for an asset (derivatives) once the asset is deleted. */
  onDelete(hook: (asset: Asset) => Promise<void>): void {
    this.deletionHooks.push(hook);
  }

  /** Runs the deletion hooks; also called when verification rejects an asset. */
  async afterDelete(asset: Asset): Promise<void> {
    for (const hook of this.deletionHooks) await hook(asset);
  }

  async setAccess(principal: Principal, id: string, access: Access): Promise<Asset> {
    const asset = await this.store.setAssetAccess(principal.accountId, id, access, this.clock.now());
    if (!asset) throw new WharfError('NOT_FOUND', 'No such asset.');
    return asset;
  }

  /** An asset anyone may read: its owner made it public. Private ones look missing. */
  async getPublic(id: string): Promise<Asset> {
    const asset = await this.store.getAssetById(id);
    if (asset?.access !== 'public' || !(await this.ownerActive(asset))) {
      throw new WharfError('NOT_FOUND', 'No such asset.');
    }
    return asset;
  }

  /** Keyless reads (public assets, signed URLs) stop with the account: disabling it is immediate. */
  private async ownerActive(asset: Asset): Promise<boolean> {
    const account = await this.store.getAccount(asset.accountId);
    return account !== undefined && !account.disabled;
  }

  /** Bytes are served only once verified: a `verifying` asset may still turn out wrong. */
  assertReadable(asset: Asset): void {
    if (asset.status === 'verifying') {
      throw new WharfError('ASSET_VERIFYING', 'The bytes are still being verified; try again shortly.');
    }
  }

  async read(asset: Asset, range?: ByteRange): Promise<Readable> {
    this.assertReadable(asset);
    return this.blobs.read(asset.storageKey, range);
  }

  /**
   * A URL at which storage serves the bytes itself, when it offers one (S3 with
   * WHARF_S3_DOWNLOADS=redirect); undefined when downloads stream through Wharf.
   */
  async directUrl(
    asset: Asset,
    response: { contentType: string; disposition: string; expiresInSeconds: number },
  ): Promise<string | undefined> {
    this.assertReadable(asset);
    return this.blobs.presignGet?.(asset.storageKey, { ...response, now: this.clock.now() });
  }

  async grantDownload(
    principal: Principal,
    id: string,
    expiresInSeconds: number,
    disposition: Disposition,
  ): Promise<DownloadGrant> {
    const asset = await this.get(principal, id);
    if (
      !Number.isInteger(expiresInSeconds) ||
      expiresInSeconds < 1 ||
      expiresInSeconds > MAX_SIGNED_URL_SECONDS
    ) {
      throw new WharfError(
        'VALIDATION_FAILED',
        `expires_in must be between 1 and ${MAX_SIGNED_URL_SECONDS} seconds.`,
      );
    }
    const expires = Math.floor(this.clock.now() / 1000) + expiresInSeconds;
    return { assetId: asset.id, expires, disposition, signature: this.sign(asset.id, expires, disposition) };
  }

  /** Resolves a signed download URL to its asset, whichever account owns it. */
  async redeem(grant: DownloadGrant): Promise<Asset> {
    const expected = Buffer.from(this.sign(grant.assetId, grant.expires, grant.disposition));
    const given = Buffer.from(grant.signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw new WharfError('INVALID_SIGNATURE', 'The URL signature is not valid.');
    }
    if (Math.floor(this.clock.now() / 1000) > grant.expires) {
      throw new WharfError('URL_EXPIRED', 'This URL has expired.');
    }
    return this.getKeyless(grant.assetId);
  }

  /** The asset a verified signed URL names, whichever account owns it, unless that account is disabled. */
  async getKeyless(id: string): Promise<Asset> {
    const asset = await this.store.getAssetById(id);
    if (!asset) throw new WharfError('NOT_FOUND', 'No such asset.');
    if (!(await this.ownerActive(asset))) {
      throw new WharfError('ACCOUNT_DISABLED', 'The account that owns this asset is disabled.');
    }
    return asset;
  }

  private sign(assetId: string, expires: number, disposition: Disposition): string {
    return createHmac('sha256', this.signingKey)
      .update(`download\n${assetId}\n${expires}\n${disposition}`)
      .digest('base64url');
  }
}
