import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  assetWithinConfinement,
  canSeeUpload,
  confineQuery,
  hasScope,
  requireReadOrUpload,
  requireScope,
  seesWholeAccount,
  signedUrlExpires,
  signerOf,
  type UrlExpiry,
  viewThrough,
} from './authorization.js';
import type { Clock } from './clock.js';
import { parseDigest } from './digests.js';
import { isWharfError, WharfError } from './errors.js';
import type { IdSource } from './ids.js';
import type { Access, Asset, Principal, Upload } from './model.js';
import {
  type AssetPage,
  type AssetQuery,
  type BlobStore,
  type ByteRange,
  type NewJob,
  ObjectMissing,
  type Store,
} from './ports.js';
import { countBytes, NO_TELEMETRY, type Telemetry } from './telemetry.js';

export const MAX_PAGE_SIZE = 1000;
const MAX_SIGNED_URL_SECONDS = 7 * 24 * 3600;
/** A signer as signerOf writes it: a key id, and a token id after a dot. */
const SIGNER = /^[\w-]+(\.[\w-]+)?$/;

export type Disposition = 'inline' | 'attachment';

/** The `free-asset` job: frees what a deleted asset kept (see AssetService.free). */
export const FREE_ASSET_JOB = 'free-asset';

/** What freeing a deleted asset needs of it (all a `free-asset` job carries). */
export type DeletedAsset = Pick<Asset, 'id' | 'accountId' | 'storageKey'>;

/**
 * How long after a commit the job that repeats the storage calls following it runs. Those calls
 * run at once, in the request; the job only finishes what a process that died in between (or a
 * storage call that failed) left, so it need not run at once and redo the work every time.
 */
export const AFTER_COMMIT_CHECK_MS = 3600_000;

/**
 * Queued in the transaction that deletes the asset, so what it kept is freed even when the
 * process dies between that commit and the frees that follow it at once (which make the job,
 * when it runs, find nothing left to do).
 */
export function freeAssetJob(jobId: string, asset: Asset, at: number): NewJob {
  return {
    id: jobId,
    kind: FREE_ASSET_JOB,
    payload: { id: asset.id, accountId: asset.accountId, storageKey: asset.storageKey },
    runAt: at + AFTER_COMMIT_CHECK_MS,
  };
}

/** The parts of a download URL that prove it was issued by this server and is unexpired. */
export interface DownloadGrant {
  assetId: string;
  /** Unix seconds. */
  expires: number;
  disposition: Disposition;
  /** The upload through which the signer saw the asset, when not as recorded (see AssetService.view). */
  view?: string | undefined;
  /** The key (and token) that signed it, which must still be active (see signerOf). */
  signer?: string | undefined;
  signature: string;
}

export class AssetService {
  private readonly deletionHooks: Array<(asset: DeletedAsset) => Promise<void>> = [];

  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly clock: Clock,
    private readonly ids: IdSource,
    private readonly signingKey: Buffer,
    private readonly telemetry: Telemetry = NO_TELEMETRY,
  ) {}

  /** The assets the caller may read (`read` scope), narrowed by its confinement. */
  async list(principal: Principal, query: AssetQuery): Promise<AssetPage> {
    const limit = Math.min(Math.max(query.limit, 1), MAX_PAGE_SIZE);
    const confined = confineQuery(principal, { ...query, limit });
    if (!confined) return { assets: [], nextCursor: null };
    const page = await this.store.listAssets(principal.accountId, confined);
    if (principal.namespace === null) return page;
    // One lookup per asset, for namespace-confined callers only (see namespaceView).
    const assets = await Promise.all(page.assets.map((asset) => this.namespaceView(principal, asset)));
    return { ...page, assets: assets.filter((asset): asset is Asset => asset !== undefined) };
  }

  /**
   * An asset the caller may read: with `read`, any of its account within its confinement;
   * otherwise (or beyond that) one its own uploads made, as its upload declared it (see
   * viewThrough). Anything else is missing to it, as another account's asset is.
   */
  async get(principal: Principal, id: string): Promise<Asset> {
    const { asset, through } = await this.view(principal, id);
    return through ? viewThrough(asset, through) : asset;
  }

  /**
   * The asset as recorded, and the upload through which the caller sees it when not as
   * recorded (see get): a URL the caller signs carries that upload, so whoever follows the
   * URL sees what the signer saw, never the record's first uploader's name.
   */
  async view(
    principal: Principal,
    id: string,
    /**
     * Show the asset as this upload of it does (its name, type, metadata: see viewThrough), not
     * as the caller's own view would: a back end signing a URL for one of its users' uploads of
     * content another user sent first. The upload must be a completed upload of the asset that
     * the caller may see (as GET /v1/uploads/{id}); any other is NOT_FOUND.
     */
    uploadId?: string,
  ): Promise<{ asset: Asset; through?: Upload | undefined }> {
    requireReadOrUpload(principal);
    const asset = await this.store.getAsset(principal.accountId, id);
    if (asset && uploadId !== undefined)
      return { asset, through: await this.uploadOf(principal, asset, uploadId) };
    const seen = asset && (await this.viewOf(principal, asset));
    if (!seen) throw new WharfError('NOT_FOUND', 'No such asset.');
    return seen;
  }

  /**
   * The upload to show `asset` through, named by the caller: a completed upload of it that the
   * caller may see. Seeing the upload is enough, even where the caller's own view of the asset
   * is none (its first upload is outside a confined key's name prefix): shown through the upload,
   * the asset is what the caller may see, its name and type the upload's.
   */
  private async uploadOf(principal: Principal, asset: Asset, uploadId: string): Promise<Upload | undefined> {
    const upload = await this.store.getUpload(uploadId);
    if (
      !upload ||
      upload.assetId !== asset.id ||
      upload.status !== 'completed' ||
      !canSeeUpload(principal, upload)
    ) {
      throw new WharfError('NOT_FOUND', 'No such upload of this asset.', { upload_id: uploadId });
    }
    // The upload that made the asset is the asset's own view.
    return upload.deduplicated ? upload : undefined;
  }

  /** How the caller sees `asset` (see view), or undefined when it may not read it at all. */
  private async viewOf(
    principal: Principal,
    asset: Asset,
  ): Promise<{ asset: Asset; through?: Upload | undefined } | undefined> {
    if (!hasScope(principal, 'read') && !hasScope(principal, 'upload')) return undefined;
    if (hasScope(principal, 'read') && (await this.withinConfinement(principal, asset))) {
      if (principal.namespace === null) return { asset };
      const through = await this.namespaceUpload(principal, asset);
      if (through !== undefined) return { asset, through: through ?? undefined };
    }
    const own = await this.store.findOwnUpload(principal.accountId, asset.id, principal);
    if (!own) return undefined;
    return { asset, through: own.deduplicated ? own : undefined };
  }

  /** A signed URL's asset as its signer saw it: through the upload it names, which must be of that asset. */
  async seenThrough(asset: Asset, uploadId: string | undefined): Promise<Asset> {
    if (uploadId === undefined) return asset;
    const upload = await this.store.getUpload(uploadId);
    if (!upload || upload.accountId !== asset.accountId || upload.assetId !== asset.id) {
      throw new WharfError('NOT_FOUND', 'No such asset.');
    }
    return viewThrough(asset, upload);
  }

  /**
   * The account's asset with this content, if any (digests in hex or base64): what an upload
   * of known content answers with instead of a new upload, so it needs the `upload` scope.
   * Only for a caller that sees the whole account: anyone else would learn what it holds.
   */
  async findByDigest(
    principal: Principal,
    digest: { sha256?: string; md5?: string },
  ): Promise<Asset | undefined> {
    requireScope(principal, 'upload');
    if (!seesWholeAccount(principal)) return undefined;
    // Never by MD5 alone: two files with one MD5 are made in seconds, so a file planted in the
    // account would stand for another whose uploader then never sends it. Nor content still
    // being verified, which may turn out to be other bytes (see AssetRecorder.verifyAsset).
    if (!digest.sha256) return undefined;
    const held = await this.store.findAssetBySha256(
      principal.accountId,
      parseDigest('sha256', digest.sha256, 'sha256'),
    );
    return held?.status === 'ready' ? held : undefined;
  }

  async delete(principal: Principal, id: string): Promise<void> {
    await this.changeable(principal, id);
    const now = this.clock.now();
    // Read first for the job's storage key, which never changes; the store queues the job
    // only if it deleted the row.
    const found = await this.store.getAsset(principal.accountId, id);
    const asset =
      found &&
      (await this.store.deleteAsset(principal.accountId, id, now, 'deleted', [
        freeAssetJob(this.ids.id(), found, now),
      ]));
    if (!asset) throw new WharfError('NOT_FOUND', 'No such asset.');
    // The deletion is committed, so the answer is that it happened, whatever becomes of the
    // bytes now: freeing them here is a head start on the `free-asset` job queued with it,
    // which retries (and logs) a storage that refuses for now (read-only, an outage). A 500
    // here told the client an asset it could no longer find was not deleted.
    await this.free(asset).catch(() => undefined);
  }

  /** Lets a capability free what it keeps for an asset (derivatives) once the asset is deleted. */
  onDelete(hook: (asset: DeletedAsset) => Promise<void>): void {
    this.deletionHooks.push(hook);
  }

  /**
   * What a deleted (or rejected) asset kept: its bytes, unless another asset uses them, and
   * whatever the deletion hooks keep for it. Runs right after the deletion and again as the
   * `free-asset` job queued with it; each part finds nothing to do the second time.
   */
  async free(asset: DeletedAsset): Promise<void> {
    if ((await this.store.countAssetsWithStorageKey(asset.storageKey)) === 0) {
      await this.blobs.delete(asset.storageKey);
    }
    for (const hook of this.deletionHooks) await hook(asset);
  }

  /**
   * Changes the asset's access (`write`), and answers it as `get` shows it to the caller, or
   * undefined when the caller may not read it (`write` without `read`, say, and not through an
   * upload of its own): changing an asset does not open its name, subject and metadata.
   */
  async setAccess(principal: Principal, id: string, access: Access): Promise<Asset | undefined> {
    await this.changeable(principal, id);
    const asset = await this.store.setAssetAccess(principal.accountId, id, access, this.clock.now());
    if (!asset) throw new WharfError('NOT_FOUND', 'No such asset.');
    const seen = await this.viewOf(principal, asset);
    return seen?.through ? viewThrough(seen.asset, seen.through) : seen?.asset;
  }

  /**
   * Changing an asset (`write`): one the caller's confinement lets it see; a namespace-confined
   * caller only one filed nowhere but its namespace (the asset is shared by every version).
   */
  private async changeable(principal: Principal, id: string): Promise<void> {
    requireScope(principal, 'write');
    if (principal.namePrefix === null && principal.namespace === null) return;
    const asset = await this.store.getAsset(principal.accountId, id);
    // An asset outside its confinement that the caller reads through its own upload of the
    // content (first uploaded by another under a name outside its prefix) is not missing to it:
    // it is shared, and refused below as such (403), not answered 404 where GET answers 200.
    const seen =
      asset &&
      ((await this.withinConfinement(principal, asset)) ||
        Boolean(await this.store.findOwnUpload(principal.accountId, asset.id, principal)));
    if (!seen) throw new WharfError('NOT_FOUND', 'No such asset.');
    // The asset is one per content: uploaded again under another name or outside the
    // namespace (by a key that may read or change everything), it is that uploader's too,
    // and not the confined key's alone to change or delete.
    const uploads = await this.store.uploadsOfAsset(principal.accountId, id);
    if (principal.namePrefix !== null) {
      const prefix = principal.namePrefix;
      if (uploads.some((upload) => !upload.name.startsWith(prefix))) {
        throw new WharfError(
          'NAME_PREFIX_DENIED',
          'The asset was also uploaded under a name outside your prefix.',
          {
            name_prefix: prefix,
          },
        );
      }
    }
    if (principal.namespace !== null) {
      const namespace = principal.namespace;
      const elsewhere = (await this.store.namespacesOfAsset(principal.accountId, id)).filter(
        (filed) => filed !== namespace,
      );
      if (elsewhere.length > 0 || uploads.some((upload) => upload.intent.file?.namespace !== namespace)) {
        throw new WharfError(
          'NAMESPACE_DENIED',
          elsewhere.length > 0
            ? 'The asset is also a file of another namespace.'
            : 'The asset was also uploaded outside your namespace.',
          { namespace },
        );
      }
    }
  }

  /**
   * An asset filed in a namespace-confined caller's namespace, as that namespace knows it. Its
   * record (name, metadata, subject) is its first uploader's: when that upload, or any other of
   * the same bytes, came from outside the namespace, the caller sees it as the earliest upload
   * of the namespace declared it (viewThrough), as an isolated caller sees a shared asset, so
   * filing the same bytes in the namespace reveals nothing uploaded elsewhere. null: as
   * recorded; undefined: no upload of the namespace made it (its own upload, if any, decides).
   */
  private async namespaceUpload(principal: Principal, asset: Asset): Promise<Upload | null | undefined> {
    const uploads = await this.store.uploadsOfAsset(principal.accountId, asset.id);
    const inside = uploads.filter((upload) => upload.intent.file?.namespace === principal.namespace);
    if (inside.length === uploads.length) return null;
    return inside[0];
  }

  private async namespaceView(principal: Principal, asset: Asset): Promise<Asset | undefined> {
    const through = await this.namespaceUpload(principal, asset);
    if (through === undefined) return undefined;
    return through === null ? asset : viewThrough(asset, through);
  }

  private async withinConfinement(principal: Principal, asset: Asset): Promise<boolean> {
    return assetWithinConfinement(principal, asset, () =>
      this.store.namespacesOfAsset(principal.accountId, asset.id),
    );
  }

  /**
   * An asset's bytes for a request with a key: the key's own asset as `get` finds it, or else,
   * when its owner made it public, the public asset (`public: true`), which anyone may read
   * whatever key they hold. Public means anyone: an app fetching another account's public image
   * with its own key in every request is not refused what a keyless request is given. The key's
   * own refusal stands for an asset that is not public.
   */
  async getReadable(principal: Principal, id: string): Promise<{ asset: Asset; public: boolean }> {
    try {
      return { asset: await this.get(principal, id), public: false };
    } catch (err) {
      if (!isWharfError(err, 'NOT_FOUND') && !isWharfError(err, 'SCOPE_DENIED')) throw err;
      const open = await this.getPublic(id).catch((e: unknown) => {
        if (isWharfError(e, 'NOT_FOUND')) return undefined;
        throw e;
      });
      if (open === undefined) throw err;
      return { asset: open, public: true };
    }
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
    return this.accountActive(asset.accountId);
  }

  private async accountActive(accountId: string): Promise<boolean> {
    const account = await this.store.getAccount(accountId);
    return account !== undefined && !account.disabled;
  }

  /**
   * A keyless credential that names its account rather than an asset (an ActiveStorage
   * signed_id) stops with the account too, as a signed URL does (getKeyless), and before
   * anything it names is looked up: such a look may complete an upload, which a disabled
   * account's credential must not bring about.
   */
  async requireKeylessAccount(accountId: string): Promise<void> {
    if (!(await this.accountActive(accountId))) {
      throw new WharfError('ACCOUNT_DISABLED', 'The account that owns this blob is disabled.');
    }
  }

  /** Bytes are served only once verified: a `verifying` asset may still turn out wrong. */
  assertReadable(asset: Asset): void {
    if (asset.status === 'verifying') {
      throw new WharfError('ASSET_VERIFYING', 'The bytes are still being verified; try again shortly.');
    }
  }

  async read(asset: Asset, range?: ByteRange): Promise<Readable> {
    this.assertReadable(asset);
    const bytes = await this.blobs.read(asset.storageKey, range).catch(async (err: unknown) => {
      if (!(err instanceof ObjectMissing)) throw err;
      throw await this.missingBytes(asset.id);
    });
    return countBytes(bytes, this.telemetry);
  }

  /**
   * Why bytes a record named were not in storage. A delete (on this node or another) removes
   * the record, then the bytes: a read that found the record just before is answered as the next
   * request would be, 404, not as data lost. Only bytes of an asset still recorded are missing.
   */
  async missingBytes(assetId: string): Promise<WharfError> {
    if (!(await this.store.getAssetById(assetId))) return new WharfError('NOT_FOUND', 'No such asset.');
    return bytesMissing(assetId);
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
    /** Seconds from now, or a moment (see UrlExpiry). */
    expiry: UrlExpiry,
    disposition: Disposition,
    /**
     * The upload whose view to show: one the caller holds (an ActiveStorage blob is its upload),
     * or the id of one it names (see view).
     */
    as?: Upload | string,
  ): Promise<DownloadGrant> {
    const seen = await this.view(principal, id, typeof as === 'string' ? as : undefined);
    const { asset } = seen;
    const through =
      typeof as === 'object' && as.deduplicated && as.assetId === asset.id && as.accountId === asset.accountId
        ? as
        : seen.through;
    const expires = signedUrlExpires(principal, expiry, this.clock.now(), MAX_SIGNED_URL_SECONDS);
    const view = through?.id;
    const signer = signerOf(principal);
    return {
      assetId: asset.id,
      expires,
      disposition,
      view,
      signer,
      signature: this.sign(asset.id, expires, disposition, view, signer),
    };
  }

  /** Resolves a signed download URL to its asset, whichever account owns it. */
  async redeem(grant: DownloadGrant): Promise<Asset> {
    const expected = Buffer.from(
      this.sign(grant.assetId, grant.expires, grant.disposition, grant.view, grant.signer),
    );
    const given = Buffer.from(grant.signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw new WharfError('INVALID_SIGNATURE', 'The URL signature is not valid.');
    }
    if (Math.floor(this.clock.now() / 1000) > grant.expires) {
      throw new WharfError('URL_EXPIRED', 'This URL has expired.');
    }
    await this.requireActiveSigner(grant.signer);
    return this.seenThrough(await this.getKeyless(grant.assetId), grant.view);
  }

  /**
   * A verified signed URL's signer (see signerOf) must still be active: URL_REVOKED once its
   * key, or its upload token or the key that minted it, is revoked. Looked up on every
   * redemption (one indexed query), never cached, so a revocation stops the URLs at once on
   * every node. A URL without a signer (signed before signers were recorded, or by no key)
   * has nothing to check.
   */
  async requireActiveSigner(signer: string | undefined): Promise<void> {
    if (signer === undefined) return;
    // The signature covered it, so it is as signerOf wrote it.
    const [keyId = '', tokenId] = signer.split('.', 2);
    if (!(await this.store.signerActive(keyId, tokenId ?? null))) {
      throw new WharfError(
        'URL_REVOKED',
        tokenId === undefined
          ? 'The key that signed this URL has been revoked.'
          : 'The upload token that signed this URL, or the key that minted it, has been revoked.',
      );
    }
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

  private sign(
    assetId: string,
    expires: number,
    disposition: Disposition,
    view: string | undefined,
    signer: string | undefined,
  ): string {
    // Without a view or a signer, the text signed before they existed: URLs handed out
    // earlier still work.
    return createHmac('sha256', this.signingKey)
      .update(`download\n${assetId}\n${expires}\n${disposition}${signedExtras(view, signer)}`)
      .digest('base64url');
  }
}

/**
 * The optional parts of a signed URL's signed text, each only when present, so a URL without
 * them is signed as before they existed. A signer is checked to be as signerOf writes it (ids,
 * no newline) first, so a presented value cannot carry text that passes for another part.
 */
export function signedExtras(view: string | undefined, signer: string | undefined): string {
  if (signer !== undefined && !SIGNER.test(signer)) {
    throw new WharfError('INVALID_SIGNATURE', 'The URL signature is not valid.');
  }
  return `${view === undefined ? '' : `\nview\n${view}`}${signer === undefined ? '' : `\nsigner\n${signer}`}`;
}

/** An asset whose recorded bytes storage no longer holds: lost data, not a bad request. */
export function bytesMissing(assetId: string): WharfError {
  return new WharfError(
    'BYTES_MISSING',
    'The stored bytes of this asset are missing from storage; an operator must restore them or delete the asset.',
    { asset_id: assetId },
  );
}
