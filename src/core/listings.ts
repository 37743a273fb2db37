import type { AssetService } from './assets.js';
import { hasScope, requireReadOrUpload, requireScope, seesWholeAccount } from './authorization.js';
import type { Clock } from './clock.js';
import { WharfError } from './errors.js';
import type { Account, FileVersion, Principal, Upload } from './model.js';
import type { AccountUsage, Store, UploadQuery } from './ports.js';
import { asOf } from './resumable.js';

export const MAX_UPLOADS_PER_PAGE = 1000;

/**
 * Read-only views the console shows and any client may use: an account's uploads (the pending
 * ones above all), its usage against its quota, and the named files an asset is a version of.
 */
export class ListingService {
  constructor(
    private readonly store: Store,
    private readonly assets: AssetService,
    private readonly clock: Clock,
    /** UploadSettings.completionGraceMs: when uploads other than tus and RUFH end (see asOf). */
    private readonly graceMs: number,
  ) {}

  /** An upload as it stands now (see asOf): what the API shows of one the caller may see. */
  seen(upload: Upload): Upload {
    return asOf(upload, this.clock.now(), this.graceMs);
  }

  /**
   * Uploads, newest first. A caller that sees the whole account sees all of them; any other
   * (an upload key, a confined key, a token) only those it made itself. Each as it stands now,
   * and filtered so (see asOf).
   */
  async uploads(
    principal: Principal,
    query: Omit<UploadQuery, 'keyId' | 'tokenId'>,
  ): Promise<{ uploads: Upload[]; nextCursor: string | null }> {
    requireReadOrUpload(principal);
    const limit = Math.min(Math.max(query.limit, 1), MAX_UPLOADS_PER_PAGE);
    const own = seesWholeAccount(principal)
      ? {}
      : principal.tokenId !== null
        ? { tokenId: principal.tokenId }
        : { keyId: principal.keyId };
    const now = this.clock.now();
    const page = await this.store.listUploads(principal.accountId, {
      ...query,
      limit,
      ...own,
      resumableExpiredBefore: now,
      expiredBefore: now - this.graceMs,
    });
    return { ...page, uploads: page.uploads.map((upload) => asOf(upload, now, this.graceMs)) };
  }

  /** The caller's account, its limits and what it holds (keys that read the whole account). */
  async usage(principal: Principal): Promise<{ account: Account; usage: AccountUsage }> {
    requireScope(principal, 'read');
    if (!hasScope(principal, 'admin') && !seesWholeAccount(principal)) {
      throw new WharfError('SCOPE_DENIED', 'A confined key does not see the whole account.', {
        required: 'read',
      });
    }
    const account = await this.store.getAccount(principal.accountId);
    if (!account) throw new WharfError('NOT_FOUND', 'No such account.');
    return { account, usage: await this.store.accountUsage(principal.accountId) };
  }

  /**
   * The named files this asset is a version of (the caller must be able to read the asset), each
   * with every version it has, oldest first.
   */
  async filesOfAsset(
    principal: Principal,
    assetId: string,
  ): Promise<Array<{ file: FileVersion; versions: FileVersion[] }>> {
    await this.assets.get(principal, assetId);
    // Named files are read with `read` and within the caller's confinement: one who reads the
    // asset only through its own upload (a token, an upload-only key) would otherwise learn
    // the names, namespaces and versions others filed the same bytes under.
    if (!hasScope(principal, 'read')) return [];
    let found = await this.store.fileVersionsOfAsset(principal.accountId, assetId);
    if (principal.namespace !== null) found = found.filter((v) => v.namespace === principal.namespace);
    const prefix = principal.namePrefix;
    if (prefix !== null) found = found.filter((v) => v.name.startsWith(prefix));
    return Promise.all(
      found.map(async (file) => ({
        file,
        versions: await this.store.listFileVersions(principal.accountId, file.namespace, file.name),
      })),
    );
  }
}
