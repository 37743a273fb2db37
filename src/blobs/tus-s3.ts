import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { S3ServiceException } from '@aws-sdk/client-s3';
import { S3Store } from '@tus/s3-store';
import { ERRORS, Upload } from '@tus/utils';
import { WharfError } from '../core/errors.js';
import { hashingPassThrough } from '../core/hash-worker.js';
import type { Digests } from '../core/model.js';
import { ObjectMissing } from '../core/ports.js';
import type { ResumableStorage } from '../core/resumable.js';
import { withTmpdir } from './process-temp.js';
import { RunningDigests } from './running-digest.js';
import { reportingStoreRefusals, type S3Options, s3ClientConfig } from './s3-client.js';
import { finishedUpload, RecentlyFinished, TUS_EXTENSIONS, type TusBackend } from './tus-storage.js';

/**
 * Scaled: tus.io's S3 store writes an S3 multipart upload of the storage key itself, so the
 * finished object is already where the asset points; its `<key>.info` (and `<key>.part`, a
 * tail shorter than S3's minimum part) are bookkeeping, deleted once the object is whole.
 */
export function s3TusBackend(
  options: S3Options,
  expiresInSeconds: number,
  partsDir: string,
  /** Ends its calls still waiting on the store, as the blob store's (see s3ClientConfig). */
  abandon?: AbortSignal,
): TusBackend {
  const datastore = new WharfS3Store(partsDir, {
    // Object tags only serve bucket lifecycle rules; Wharf's sweep expires uploads itself
    // (and not every S3-compatible server supports tagging).
    useTags: false,
    expirationPeriodInMilliseconds: expiresInSeconds * 1000,
    // Another node may terminate or finish the upload: nothing about it is cached here.
    cache: new NoCache(),
    // The same client settings as the blob store's (no aws-chunked checksums Ceph 16 rejects).
    s3ClientConfig: { bucket: options.bucket, ...s3ClientConfig(options, abandon) },
  });
  datastore.extensions = [...TUS_EXTENSIONS];
  // Its client is its own; a store that is away (503) or full (507) reads as one here too.
  reportingStoreRefusals(datastore.s3Client);
  return {
    datastore,
    storage: datastore,
    // A clean stop leaves no directory of this process (processTempDir removes those of a crash).
    close: () => rm(partsDir, { recursive: true, force: true }),
  };
}

class NoCache<T> {
  async get(_key: string): Promise<T | undefined> {
    return undefined;
  }
  async set(_key: string, _value: T): Promise<void> {}
  async delete(_key: string): Promise<void> {}
  async list(): Promise<string[]> {
    return [];
  }
}

class WharfS3Store extends S3Store implements ResumableStorage {
  /**
   * What this process hashed of each upload as its bytes went by on their way to the bucket.
   * S3 cannot read back the parts of an unfinished multipart upload, so there is no catching
   * up: an upload that moved to another node or outlived a restart is hashed from the finished
   * object at completion, as before.
   */
  private readonly digests = new RunningDigests();
  /** What this process finished lately (see RecentlyFinished). */
  private readonly finished = new RecentlyFinished();

  /**
   * @param partsDir where tus.io's store keeps each part while it uploads it, and a `.part`
   *   tail it downloads: this process's own directory (processTempDir), so files a crash leaves
   *   are removed by the next start instead of lying in os.tmpdir() under random names.
   */
  constructor(
    private readonly partsDir: string,
    options: ConstructorParameters<typeof S3Store>[0],
  ) {
    super(options);
  }

  /** tus.io's part upload, its part files in partsDir (it reads os.tmpdir() as it starts). */
  protected override uploadParts(...args: Parameters<S3Store['uploadParts']>): Promise<number> {
    return withTmpdir(this.partsDir, () => super.uploadParts(...args));
  }

  /** Where tus.io's store copies a `.part` tail it downloads: in partsDir, not os.tmpdir(). */
  protected override async uniqueTmpFileName(template: string): Promise<string> {
    return join(this.partsDir, `${template}${randomUUID()}`);
  }

  /** tus.io's client, for the middleware every S3 client of Wharf's carries. */
  get s3Client() {
    return this.client;
  }

  async open(key: string, size: number): Promise<void> {
    await this.create(new Upload({ id: key, size, offset: 0 }));
  }

  append(key: string, offset: number, body: Readable): Promise<number> {
    return this.write(body, key, offset);
  }

  /**
   * tus.io's write, hashing the body on the worker on its way to the bucket when this process
   * saw every earlier byte of the upload. The tus server holds the upload's lock meanwhile.
   * The digest is kept only when the store took exactly the bytes it hashed: after a failure,
   * or a store that stopped reading early, some hashed bytes may not be stored.
   */
  override async write(readable: Readable, id: string, offset: number): Promise<number> {
    const digest = this.digests.resume(id, offset);
    if (!digest) return super.write(readable, id, offset);
    let end: number;
    try {
      end = await super.write(pipeline(readable, hashingPassThrough(digest), noop), id, offset);
    } catch (err) {
      digest.drop();
      throw err;
    }
    if (end === digest.offset) this.digests.put(id, digest);
    else digest.drop();
    return end;
  }

  async received(key: string): Promise<number | undefined> {
    try {
      return (await this.getUpload(key)).offset;
    } catch (err) {
      if (err !== ERRORS.FILE_NOT_FOUND) throw err;
      return undefined;
    }
  }

  override async getUpload(id: string): Promise<Upload> {
    try {
      const upload = await super.getUpload(id);
      // tus.io's store reads an `.info` whose multipart upload is gone as a finished upload. So
      // does a termination a crash cut short: it aborts the multipart upload, then deletes the
      // `.info`. Without the parts or the object they made, nothing of the upload is left.
      if (upload.offset !== upload.size || (await this.stillHeld(id))) return upload;
      throw ERRORS.FILE_NOT_FOUND;
    } catch (err) {
      if (err !== ERRORS.FILE_NOT_FOUND) throw err;
      const size = await this.objectSize(id);
      if (size !== undefined) return finishedUpload(id, size);
      // Finished and deduplicated: the account's older object holds these bytes.
      const upload = this.finished.upload(id);
      if (!upload) throw err;
      return upload;
    }
  }

  async promote(key: string): Promise<Digests | undefined> {
    let size = await this.objectSize(key);
    if (size === undefined) {
      try {
        // The last byte arrived but the server died before S3 composed the parts.
        const metadata = await this.getMetadata(key);
        const parts = await this.retrieveParts(key);
        const received = parts.reduce((sum, part) => sum + (part.Size ?? 0), 0);
        if (received !== metadata.file.size || (await this.getIncompletePartSize(key)) !== undefined) {
          throw new WharfError('UPLOAD_INCOMPLETE', 'Not every byte of this upload has arrived.');
        }
        await this.finishMultipartUpload(metadata, parts);
        size = received;
      } catch (err) {
        // Composed meanwhile by the request that brought the last byte (or the sweep, which
        // holds no lock): its bookkeeping is gone, and the object is there.
        size = await this.objectSize(key);
        // Neither its records nor an object: terminated meanwhile (by a DELETE on another
        // node, which frees storage before it records the upload as cancelled; tus.io's store
        // reads an upload whose multipart upload it aborted as whole until its `.info` goes
        // too). The core's ObjectMissing: a sweep that read it mid-termination skips it.
        if (size === undefined) throw isS3NotFound(err) ? new ObjectMissing(key) : err;
      }
    }
    await this.dropBookkeeping(key);
    this.finished.add(key, size);
    return this.digests.finish(key, size);
  }

  async discard(key: string): Promise<void> {
    this.digests.forget(key);
    try {
      await this.remove(key);
    } catch (err) {
      if (err !== ERRORS.FILE_NOT_FOUND) throw err;
    }
    await this.dropBookkeeping(key);
  }

  /** Termination: tus.io's store leaves the short tail (`.part`) behind. */
  override async remove(id: string): Promise<void> {
    this.digests.forget(id);
    await super.remove(id);
    await this.dropBookkeeping(id);
  }

  private async dropBookkeeping(key: string): Promise<void> {
    await this.client.deleteObjects({
      Bucket: this.bucket,
      Delete: { Objects: [{ Key: this.infoKey(key) }, { Key: this.partKey(key, true) }], Quiet: true },
    });
    await this.clearCache(key);
  }

  /**
   * Whether the bucket holds the bytes of an upload whose `.info` reads whole: its multipart
   * upload, or the object that multipart upload became. The parts are asked first, since their
   * completion by another request makes the object and ends the parts in one step.
   */
  private async stillHeld(key: string): Promise<boolean> {
    try {
      await this.retrieveParts(key);
      return true;
    } catch (err) {
      if (!isS3NotFound(err)) throw err;
    }
    return (await this.objectSize(key)) !== undefined;
  }

  private async objectSize(key: string): Promise<number | undefined> {
    try {
      return (await this.client.headObject({ Bucket: this.bucket, Key: key })).ContentLength ?? 0;
    } catch (err) {
      if (isS3NotFound(err)) return undefined;
      throw err;
    }
  }
}

function noop(): void {}

/**
 * S3's answers for a key or multipart upload it does not hold: `NotFound` (a HEAD's 404),
 * `NoSuchKey`, `NoSuchUpload` (and Ceph's `NoSuchKey` for an upload id it does not know).
 */
function isS3NotFound(err: unknown): boolean {
  return err instanceof S3ServiceException && S3_NOT_FOUND.has(err.name);
}

const S3_NOT_FOUND = new Set(['NotFound', 'NoSuchKey', 'NoSuchUpload']);
