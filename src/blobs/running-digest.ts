import { createHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { type HashPool, hashPool, type OffThreadDigest } from '../core/hash-worker.js';
import type { Digests } from '../core/model.js';

const READ_CHUNK = 1 << 20;

/**
 * SHA-256 and MD5 of a byte sequence that grows at its end (a tus upload's file, a multipart
 * upload's parts in order), carried from one request to the next so the whole is hashed once,
 * as it arrives. `offset` is how many bytes it has seen. Node's hashes (OpenSSL, with SHA-NI)
 * are 3–6× faster here than any whose state can be saved to disk, so the state lives in this
 * process only: a node that lacks it (a restart, another node) hashes what it has not seen
 * from the stored bytes (`catchUp`), once, and carries on from there.
 */
export class RunningDigest {
  private readonly sha256: Hash;
  private readonly md5: Hash;
  offset: number;

  constructor(from?: RunningDigest) {
    this.sha256 = from ? from.sha256.copy() : createHash('sha256');
    this.md5 = from ? from.md5.copy() : createHash('md5');
    this.offset = from ? from.offset : 0;
  }

  update(chunk: Buffer): void {
    this.sha256.update(chunk);
    this.md5.update(chunk);
    this.offset += chunk.length;
  }

  /** The digests of what it has seen so far; it can go on being updated. */
  digests(): Digests {
    return {
      size: this.offset,
      sha256: this.sha256.copy().digest('hex'),
      md5: this.md5.copy().digest('hex'),
    };
  }

  /**
   * Hashes bytes [`this.offset`, `end`) of `path`, where `fileStart` is the file offset of
   * this digest's byte 0 (a part file's header comes before its bytes). Throws when the file
   * ends first: the digest is then unusable.
   */
  async catchUp(path: string, end: number, fileStart = 0): Promise<void> {
    if (end < this.offset) throw new Error(`cannot hash backwards from ${this.offset} to ${end}`);
    if (end === this.offset) return;
    const handle = await open(path, 'r');
    try {
      const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, end - this.offset));
      while (this.offset < end) {
        const want = Math.min(buffer.length, end - this.offset);
        const { bytesRead } = await handle.read(buffer, 0, want, fileStart + this.offset);
        if (bytesRead === 0) throw new Error(`${path} ended at ${this.offset} of ${end} bytes`);
        this.update(buffer.subarray(0, bytesRead));
      }
    } finally {
      await handle.close();
    }
  }
}

/**
 * Running digests by key, at most `limit` (the oldest go first: an upload abandoned for long
 * is hashed again from its bytes if it ever resumes), kept on the hashing worker so the
 * event loop only copies bytes to it. A digest is taken out while a request adds to it and
 * put back after, so no two requests share one. One whose worker died is of no use: the next
 * request hashes the stored bytes again, like a node that never saw them.
 */
export class RunningDigests {
  private readonly states = new Map<string, OffThreadDigest>();

  constructor(
    private readonly limit = 10_000,
    private readonly pool: HashPool = hashPool(),
  ) {}

  /**
   * The digest of the first `offset` bytes of `path` (`fileStart` as in catchUp), taken out of
   * the cache: what this process hashed of them, caught up (on the worker) with what it has
   * not seen. The caller puts it back or drops it.
   */
  async take(key: string, path: string, offset: number, fileStart = 0): Promise<OffThreadDigest> {
    const cached = this.states.get(key);
    this.states.delete(key);
    let digest = cached;
    if (!digest?.usable || digest.offset > offset) {
      cached?.drop();
      digest = this.pool.open();
    }
    try {
      await digest.catchUp(path, offset, fileStart);
    } catch (err) {
      digest.drop();
      throw err;
    }
    return digest;
  }

  /**
   * For stores whose bytes cannot be read back before the upload is whole (the parts of an S3
   * multipart upload): the digest of exactly the first `offset` bytes, taken out of the cache,
   * or undefined when this process did not see them all (nothing to catch up from: completion
   * then hashes the finished object). A fresh one at offset 0.
   */
  resume(key: string, offset: number): OffThreadDigest | undefined {
    const cached = this.states.get(key);
    this.states.delete(key);
    if (cached?.usable && cached.offset === offset) return cached;
    cached?.drop();
    return offset === 0 ? this.pool.open() : undefined;
  }

  /**
   * The digests of all `size` bytes of `key`, when this process hashed exactly that many;
   * forgets the key either way.
   */
  async finish(key: string, size: number): Promise<Digests | undefined> {
    const digest = this.states.get(key);
    this.states.delete(key);
    if (!digest) return undefined;
    try {
      if (!digest.usable || digest.offset !== size) return undefined;
      return await digest.digests();
    } finally {
      digest.drop();
    }
  }

  put(key: string, digest: OffThreadDigest): void {
    // Nothing of it stays staged in this process between requests.
    digest.flush();
    this.states.get(key)?.drop();
    this.states.delete(key);
    this.states.set(key, digest);
    if (this.states.size > this.limit) {
      const oldest = this.states.keys().next().value!;
      this.states.get(oldest)?.drop();
      this.states.delete(oldest);
    }
  }

  forget(key: string): void {
    this.states.get(key)?.drop();
    this.states.delete(key);
  }
}
