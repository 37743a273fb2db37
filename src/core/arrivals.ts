import { requireScope, seesWholeAccount } from './authorization.js';
import { parseDigest } from './digests.js';
import type { Asset, Principal, Upload } from './model.js';
import type { Store } from './ports.js';
import type { UploadService } from './uploads.js';

/** How many pending uploads of the same content are looked at (the newest first). */
const CANDIDATES = 10;

/**
 * Content a client declares again before Wharf knew its first upload had arrived. Flows
 * without a confirm step (ActiveStorage's direct upload) learn of a PUT to an S3 bucket only
 * when something looks; a second declaration of the same content is such a look, so it finds
 * the earlier upload whose bytes are in storage and completes it, rather than opening another
 * upload of bytes the account already holds.
 */
export class ArrivalService {
  constructor(
    private readonly store: Store,
    private readonly uploads: UploadService,
  ) {}

  /**
   * Completes the newest pending self-completing upload of this content and size whose bytes
   * are in storage, and returns it with its asset (as that upload's uploader sees it);
   * undefined when there is none. Digests in hex or base64.
   *
   * Which uploads count is what the caller may be told of, as for AssetService.findByDigest:
   * any of the account's when it sees the whole account, else only its own (an upload token's,
   * or a key's and its tokens'). Anyone else's would hand the caller a file it never sent,
   * found by nothing more than its SHA-256 and size (a hunt got another user's file this way
   * with an upload token).
   */
  async completeByDigest(
    principal: Principal,
    digest: { sha256?: string | undefined; md5?: string | undefined },
    size: number,
  ): Promise<{ upload: Upload; asset: Asset } | undefined> {
    requireScope(principal, 'upload');
    // Never by MD5 alone: another file with the same MD5 would be completed and answered with
    // (see AssetService.findByDigest).
    if (!digest.sha256) return undefined;
    const content = { sha256: parseDigest('sha256', digest.sha256, 'sha256') };
    const pending = await this.store.listAutoCompletableByDigest(
      principal.accountId,
      content,
      size,
      CANDIDATES,
      seesWholeAccount(principal) ? undefined : principal,
    );
    for (const upload of pending) {
      const outcome = await this.uploads.completeIfArrived(upload);
      if (outcome) return { upload, asset: outcome.asset };
    }
    return undefined;
  }
}
