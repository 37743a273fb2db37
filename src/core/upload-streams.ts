import { WharfError } from './errors.js';

/** Seconds a refused client is told to wait (Retry-After): about as long as a small upload takes. */
const RETRY_AFTER_SECONDS = 5;

/** Whose body streams: its account, the upload token sending it, and (storage endpoint) its upload. */
export interface StreamOwner {
  accountId: string;
  /** The upload token sending the body (a direct or resumable request's, or the signed upload's). */
  tokenId?: string | null | undefined;
  /**
   * The upload a presigned URL's body goes to (its storage key), and how many of its bodies may
   * stream at once: two for a PUT or form (one, and a retry of it), a few for multipart parts.
   */
  upload?: { key: string; most: number } | undefined;
}

/**
 * How many upload bodies each account is streaming through this process at once, and the most
 * it may (WHARF_MAX_UPLOAD_STREAMS_PER_ACCOUNT). Each costs the process a socket and a file or
 * a storage write (two descriptors, buffers): one account that held thousands of slow bodies
 * open used up the process's descriptors (EMFILE), and every other account's requests, and
 * /healthz, timed out. Over the cap a body is refused before a byte of it is read
 * (TOO_MANY_UPLOAD_STREAMS, 429 with Retry-After), so one account gets at most its share.
 *
 * Below the account, an upload token (a browser's user) may stream at most
 * WHARF_MAX_UPLOAD_STREAMS_PER_TOKEN bodies, and one presigned URL at most its upload's few
 * (`StreamOwner.upload`): otherwise one token limited to one upload opened the account's whole
 * cap of trickling PUTs to its one URL, and every other user of the account was refused for as
 * long as they trickled. A body takes its places at every level at once, or none.
 *
 * In memory, per process: it is this process's descriptors and memory that run out, so a
 * count shared across nodes would protect nothing more. Every path that streams a body into
 * an upload takes a stream once its account is known (after authentication, or a verified
 * signature) and gives it back when its work on the body ends, however it ends (stored,
 * refused, cut by the client or for idling).
 */
export class UploadStreams {
  private readonly accounts = new Counter();
  private readonly tokens = new Counter();
  private readonly uploads = new Counter();

  constructor(
    private readonly perAccount: number,
    /** The most one upload token may stream at once (unlimited when absent). */
    readonly perToken: number = Number.POSITIVE_INFINITY,
  ) {}

  /** Takes one stream of the owner's account, token and upload (or refuses), and returns its release (idempotent). */
  take(owner: StreamOwner | string): () => void {
    const { accountId, tokenId, upload } = typeof owner === 'string' ? { accountId: owner } : owner;
    // Checked all before any is taken: a refusal holds nothing.
    if (upload && this.uploads.held(upload.key) >= upload.most) {
      refuse('upload', upload.most, `This upload is already receiving ${upload.most} bodies at once`);
    }
    if (tokenId && this.tokens.held(tokenId) >= this.perToken) {
      refuse(
        'token',
        this.perToken,
        `This upload token is already sending ${this.perToken} upload bodies at once`,
      );
    }
    if (this.accounts.held(accountId) >= this.perAccount) {
      refuse(
        'account',
        this.perAccount,
        `This account is already sending ${this.perAccount} upload bodies to this server at once`,
      );
    }
    const releases = [
      this.accounts.take(accountId),
      ...(tokenId ? [this.tokens.take(tokenId)] : []),
      ...(upload ? [this.uploads.take(upload.key)] : []),
    ];
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const release of releases) release();
    };
  }

  /** Runs `work` (which reads a body) holding one of the owner's streams. */
  async holding<T>(owner: StreamOwner | string, work: () => Promise<T>): Promise<T> {
    const release = this.take(owner);
    try {
      return await work();
    } finally {
      release();
    }
  }

  /** How many bodies the account is streaming now. */
  held(accountId: string): number {
    return this.accounts.held(accountId);
  }

  /** How many bodies the upload token is streaming now. */
  heldByToken(tokenId: string): number {
    return this.tokens.held(tokenId);
  }

  /** How many bodies go to the upload's storage key now. */
  heldByUpload(key: string): number {
    return this.uploads.held(key);
  }
}

function refuse(scope: 'account' | 'token' | 'upload', limit: number, what: string): never {
  throw new WharfError('TOO_MANY_UPLOAD_STREAMS', `${what}; retry when one has ended.`, {
    limit,
    scope,
    retry_after: RETRY_AFTER_SECONDS,
  });
}

/** Counts held per name; a name is forgotten when its count falls to none. */
class Counter {
  private readonly open = new Map<string, number>();

  held(name: string): number {
    return this.open.get(name) ?? 0;
  }

  take(name: string): () => void {
    this.open.set(name, this.held(name) + 1);
    return () => {
      const left = this.held(name) - 1;
      if (left > 0) this.open.set(name, left);
      else this.open.delete(name);
    };
  }
}
