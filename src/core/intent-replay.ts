import type { AssetService } from './assets.js';
import { viewThrough } from './authorization.js';
import { isWharfError, WharfError } from './errors.js';
import type { Principal } from './model.js';
import type { BlobStore, Store } from './ports.js';
import type { IntentResult, UploadOutcome } from './upload-types.js';

/**
 * What an idempotency record keeps of a presigned declaration's answer (see
 * core/idempotency.ts): the ids it named, not its URLs. The URLs are bearer credentials until
 * they expire and a batch's answer runs to 600 KB; kept for a day in the database, they would be
 * both. They are signed again on a replay, with the time and expiry of the first signing, which
 * gives the same URLs.
 */
export type KeptIntent =
  /** A pending upload, and the Content-Type as the client spelled it (see asDeclared). */
  | { upload: string; type?: string | undefined }
  /** Content the account held: the asset, and the name the file was declared with. */
  | { asset: string; name: string };

export function keptIntents(
  results: readonly IntentResult[],
  declared: readonly { name: string; contentType?: string | undefined }[],
): KeptIntent[] {
  return results.map((result, i) =>
    result.status === 'pending'
      ? { upload: result.upload.id, type: declared[i]?.contentType }
      : { asset: result.asset.id, name: declared[i]?.name ?? result.asset.name },
  );
}

/**
 * The answer of a declaration again, from what its record kept: each pending upload's PUT
 * signed as it was at first (its creation as the signing time, its expiry: the same URL and
 * headers, expired if it has), each held asset as it is now.
 */
export async function presignAgain(
  store: Store,
  blobs: BlobStore,
  principal: Principal,
  kept: readonly KeptIntent[],
): Promise<IntentResult[]> {
  const results: IntentResult[] = [];
  for (const item of kept) {
    if ('asset' in item) {
      const asset = await store.getAsset(principal.accountId, item.asset);
      if (!asset) throw gone();
      results.push({ status: 'exists', asset });
      continue;
    }
    const upload = await store.getUpload(item.upload);
    if (!upload || upload.accountId !== principal.accountId || upload.size === null) throw gone();
    const request = await blobs.presignPut({
      key: upload.storageKey,
      contentType: asDeclared(item.type, upload.contentType),
      size: upload.size,
      md5: upload.md5,
      sha256: upload.sha256,
      // Whole seconds, as signed at first; an upload made in a token's last second expires with
      // the token, under a URL that was signed for 1.
      expiresInSeconds: Math.max(1, Math.ceil((upload.expiresAt - upload.createdAt) / 1000)),
      now: upload.createdAt,
    });
    results.push({ status: 'pending', upload, request });
  }
  return results;
}

/**
 * What an idempotency record keeps of a direct upload's answer: the asset, the upload through
 * which the answer showed it when it did (see UploadOutcome.through), and whether the content
 * was new. The answer is built again from these, as the asset is now.
 */
export interface KeptUpload {
  asset: string;
  through?: string | undefined;
  deduplicated: boolean;
}

export function keptUpload(outcome: UploadOutcome): KeptUpload {
  return { asset: outcome.asset.id, through: outcome.through?.id, deduplicated: outcome.deduplicated };
}

/**
 * A direct upload's answer again, without its bytes: the asset as the first answer showed it.
 * An asset deleted since, or no longer the caller's to see, is NOT_FOUND.
 */
export async function uploadedAgain(
  assets: AssetService,
  principal: Principal,
  kept: KeptUpload,
): Promise<UploadOutcome> {
  try {
    const { asset, through } = await assets.view(principal, kept.asset, kept.through);
    return {
      asset: through ? viewThrough(asset, through) : asset,
      deduplicated: kept.deduplicated,
      through,
    };
  } catch (err) {
    if (isWharfError(err, 'NOT_FOUND')) throw gone();
    throw err;
  }
}

function gone(): WharfError {
  return new WharfError('NOT_FOUND', 'What the first answer under this Idempotency-Key named is gone.');
}

/**
 * The Content-Type a presigned PUT is signed for: the client's own spelling when it names the
 * type Wharf records (`image/PNG` for `image/png`). The client sends the header as it declared
 * it, and storage checks the signature over the exact text; some seed APIs answer with no
 * header list to copy from.
 */
export function asDeclared(raw: string | undefined, recorded: string): string {
  const spelled = raw?.trim();
  return spelled && spelled.toLowerCase() === recorded ? spelled : recorded;
}
