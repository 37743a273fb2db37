import { WharfError } from './errors.js';

/** Seconds a refused client is told to wait (Retry-After): about as long as a small upload takes. */
const RETRY_AFTER_SECONDS = 5;

/**
 * How many upload bodies each account is streaming through this process at once, and the most
 * it may (WHARF_MAX_UPLOAD_STREAMS_PER_ACCOUNT). Each costs the process a socket and a file or
 * a storage write (two descriptors, buffers): one account that held thousands of slow bodies
 * open used up the process's descriptors (EMFILE), and every other account's requests, and
 * /healthz, timed out. Over the cap a body is refused before a byte of it is read
 * (TOO_MANY_UPLOAD_STREAMS, 429 with Retry-After), so one account gets at most its share.
 *
 * In memory, per process: it is this process's descriptors and memory that run out, so a
 * count shared across nodes would protect nothing more. Every path that streams a body into
 * an upload takes a stream once its account is known (after authentication, or a verified
 * signature) and gives it back when its work on the body ends, however it ends (stored,
 * refused, cut by the client or for idling).
 */
export class UploadStreams {
  private readonly open = new Map<string, number>();

  constructor(private readonly perAccount: number) {}

  /** Takes one of the account's streams (or refuses), and returns its release (idempotent). */
  take(accountId: string): () => void {
    const held = this.open.get(accountId) ?? 0;
    if (held >= this.perAccount) {
      throw new WharfError(
        'TOO_MANY_UPLOAD_STREAMS',
        `This account is already sending ${this.perAccount} upload bodies to this server at once; retry when one has ended.`,
        { limit: this.perAccount, retry_after: RETRY_AFTER_SECONDS },
      );
    }
    this.open.set(accountId, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(accountId) ?? 1) - 1;
      if (left > 0) this.open.set(accountId, left);
      else this.open.delete(accountId);
    };
  }

  /** Runs `work` (which reads a body) holding one of the account's streams. */
  async holding<T>(accountId: string, work: () => Promise<T>): Promise<T> {
    const release = this.take(accountId);
    try {
      return await work();
    } finally {
      release();
    }
  }

  /** How many bodies the account is streaming now. */
  held(accountId: string): number {
    return this.open.get(accountId) ?? 0;
  }
}
