import { Transform, type TransformCallback } from 'node:stream';
import { WharfError } from './errors.js';
import { feed, type HashPool, hashPool, type OffThreadDigest } from './hash-worker.js';
import type { Digests } from './model.js';

/**
 * Passes bytes through unchanged while hashing them in the same pass (on a hashing worker:
 * the event loop only copies the bytes to it) and enforcing a byte limit as the bytes arrive
 * (a too-large body fails at the limit, not after it has been stored). What it computes, and
 * reads back at the end, is the subclass's.
 */
abstract class HashingStream<R> extends Transform {
  private bytes = 0;
  private value: R | undefined;

  constructor(
    protected readonly digest: OffThreadDigest,
    private readonly maxBytes: number,
    /** What the bytes are, in the FILE_TOO_LARGE message. */
    private readonly noun: string,
  ) {
    super();
  }

  /** What was computed, once every byte has been accepted. */
  protected abstract computed(): Promise<R>;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      callback(
        new WharfError(
          'FILE_TOO_LARGE',
          `The ${this.noun} is larger than the limit of ${this.maxBytes} bytes.`,
          {
            limit: this.maxBytes,
          },
        ),
      );
      return;
    }
    feed(this.digest, chunk, callback);
  }

  override _flush(callback: TransformCallback): void {
    this.computed().then(
      (value) => {
        this.value = value;
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
  protected result(): R {
    if (this.value === undefined) throw new Error(`${this.constructor.name} read before the stream ended`);
    return this.value;
  }
}

/** SHA-256 and MD5 of a file as it streams through. */
export class DigestStream extends HashingStream<Digests> {
  constructor(maxBytes: number = Number.POSITIVE_INFINITY, pool: HashPool = hashPool()) {
    super(pool.open(), maxBytes, 'file');
  }

  protected computed(): Promise<Digests> {
    return this.digest.digests();
  }

  /** Available once the stream has ended. */
  digests(): Digests {
    return this.result();
  }
}

/** MD5 and size of a multipart part as it streams through (its ETag; the object is hashed whole apart). */
export class Md5Stream extends HashingStream<{ size: number; md5: string }> {
  constructor(maxBytes: number, pool: HashPool = hashPool()) {
    super(pool.open({ md5Only: true }), maxBytes, 'part');
  }

  protected computed(): Promise<{ size: number; md5: string }> {
    return this.digest.md5();
  }

  /** Available once the stream has ended. */
  md5(): { size: number; md5: string } {
    return this.result();
  }
}
