import { parseDigest } from './digests.js';
import type { Principal } from './model.js';
import type { Store } from './ports.js';
import type { UploadOutcome, UploadService } from './uploads.js';

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
   * Completes the caller's newest pending self-completing upload of this content and size
   * whose bytes are in storage, and returns its outcome; undefined when there is none.
   * Digests in hex or base64.
   */
  async completeByDigest(
    principal: Principal,
    digest: { sha256?: string | undefined; md5?: string | undefined },
    size: number,
  ): Promise<UploadOutcome | undefined> {
    // Never by MD5 alone: another file with the same MD5 would be completed and answered with
    // (see AssetService.findByDigest).
    if (!digest.sha256) return undefined;
    const content = { sha256: parseDigest('sha256', digest.sha256, 'sha256') };
    const pending = await this.store.listAutoCompletableByDigest(
      principal.accountId,
      content,
      size,
      CANDIDATES,
    );
    for (const upload of pending) {
      const outcome = await this.uploads.completeIfArrived(upload);
      if (outcome) return outcome;
    }
    return undefined;
  }
}
