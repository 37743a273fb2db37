import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { WharfError } from './errors.js';
import type { Digests } from './model.js';

/**
 * Passes bytes through unchanged while computing SHA-256 and MD5 in the same pass and
 * enforcing a byte limit as the bytes arrive (a too-large body fails at the limit, not
 * after it has been stored).
 */
export class DigestStream extends Transform {
  private readonly sha256: Hash = createHash('sha256');
  private readonly md5: Hash = createHash('md5');
  private bytes = 0;
  private result: Digests | undefined;

  constructor(private readonly maxBytes: number = Number.POSITIVE_INFINITY) {
    super();
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
    this.sha256.update(chunk);
    this.md5.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.result = { size: this.bytes, sha256: this.sha256.digest('hex'), md5: this.md5.digest('hex') };
    callback();
  }

  /** Available once the stream has ended. */
  digests(): Digests {
    if (!this.result) throw new Error('DigestStream.digests() called before the stream ended');
    return this.result;
  }
}
