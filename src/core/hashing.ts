import { Transform, type TransformCallback } from 'node:stream';
import { WharfError } from './errors.js';
import { feed, type HashPool, hashPool, type OffThreadDigest } from './hash-worker.js';
import type { Digests } from './model.js';

/**
 * Passes bytes through unchanged while computing SHA-256 and MD5 in the same pass (on a
 * hashing worker: the event loop only copies the bytes to it) and enforcing a byte limit as
 * the bytes arrive (a too-large body fails at the limit, not after it has been stored).
 */
export class DigestStream extends Transform {
  private readonly digest: OffThreadDigest;
  private bytes = 0;
  private result: Digests | undefined;

  constructor(
    private readonly maxBytes: number = Number.POSITIVE_INFINITY,
    pool: HashPool = hashPool(),
  ) {
    super();
    this.digest = pool.open();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      callback(
        new WharfError('FILE_TOO_LARGE', `The file is larger than the limit of ${this.maxBytes} bytes.`, {
          limit: this.maxBytes,
        }),
      );
      return;
    }
    feed(this.digest, chunk, callback);
  }

  override _flush(callback: TransformCallback): void {
    this.digest.digests().then(
      ({ sha256, md5 }) => {
        this.result = { size: this.bytes, sha256, md5 };
        this.digest.drop();
        callback();
      },
      (err: Error) => callback(err),
    );
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    // Its state on the worker goes with it, however the stream ended.
    this.digest.drop();
    callback(err);
  }

  /** Available once the stream has ended. */
  digests(): Digests {
    if (!this.result) throw new Error('DigestStream.digests() called before the stream ended');
    return this.result;
  }
}
