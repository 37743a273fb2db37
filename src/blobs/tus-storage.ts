import { randomUUID } from 'node:crypto';
import { createWriteStream, type Dirent } from 'node:fs';
import { lstat, readdir, rm, stat, truncate } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import { FileStore } from '@tus/file-store';
import { S3Store } from '@tus/s3-store';
import { type DataStore, ERRORS, StreamLimiter, Upload } from '@tus/utils';
import { WharfError } from '../core/errors.js';
import { hashingPassThrough } from '../core/hash-worker.js';
import type { Digests } from '../core/model.js';
import type { ResumableStorage } from '../core/resumable.js';
import { isDiskFull, storageFull } from '../core/unavailable.js';
import type { FsBlobStore } from './fs-store.js';
import { withTmpdir } from './process-temp.js';
import { RunningDigests } from './running-digest.js';
import { reportingUnavailable, type S3Options, s3ClientConfig } from './s3-client.js';
import { writeBehind } from './write-behind.js';

/**
 * What tus.io's server is given: the datastore (tus ids are Wharf storage keys) and the same
 * bytes seen as the core's ResumableStorage.
 */
export interface TusBackend {
  datastore: DataStore;
  storage: ResumableStorage;
  /** Where the tus routes hand request bodies straight to the datastore (local files only). */
  bodies?: BodyChannel | undefined;
}

/**
 * Request bodies that go to the datastore as the Node streams they are. tus.io's server takes
 * a WHATWG Request and turns its body back into a Node stream: two adapters, a promise and
 * copies per chunk, which cost more main-thread time than hashing the bytes. The tus routes
 * offer a body here under the upload's key, hand tus.io's server the same request without
 * one (headers intact, so it checks offset and length as usual), and the datastore's write
 * takes the body from here instead of the empty one it is given.
 */
export class BodyChannel {
  private readonly bodies = new Map<string, { body: Readable; limit: number }>();

  /**
   * Offers `body` (at most `limit` bytes, as tus.io's limiter would allow) for the next write
   * of `key`; the returned function withdraws it and says whether a write took it.
   */
  offer(key: string, body: Readable, limit: number): () => boolean {
    const entry = { body, limit };
    this.bodies.set(key, entry);
    return () => {
      const left = this.bodies.get(key) === entry;
      if (left) this.bodies.delete(key);
      return !left;
    };
  }

  take(key: string): { body: Readable; limit: number } | undefined {
    const entry = this.bodies.get(key);
    this.bodies.delete(key);
    return entry;
  }
}

/**
 * What Wharf's tus endpoint offers. `checksum` is Wharf's own (the tus server has none);
 * `creation-defer-length` is left out: an upload's size is checked against the account's
 * limit and quota when it is opened, so it must be known then.
 */
export const TUS_EXTENSIONS = ['creation', 'creation-with-upload', 'termination', 'expiration', 'checksum'];

/**
 * Embedded: partial files live in their own directory (never under the blob store's objects/),
 * and a finished one is renamed into the blob store, so no object is ever partial.
 */
export function localTusBackend(directory: string, blobs: FsBlobStore, expiresInSeconds: number): TusBackend {
  const root = resolve(directory);
  const fileOf = (key: string): string => {
    const path = resolve(root, key);
    const rel = relative(root, path);
    if (rel === '' || rel.startsWith('..') || rel.split(sep).includes('..') || key.includes('\0')) {
      throw new Error(`Refusing tus upload key outside its directory: ${JSON.stringify(key)}`);
    }
    return path;
  };
  const digests = new RunningDigests();
  const bodies = new BodyChannel();
  // The request that brought the last byte and the sweep's reconcile may promote one upload at
  // once. Side by side, one could remove the facts file the other had just written (adopt
  // clears a key's old facts before the bytes move in): one at a time, the second finds the
  // object in place. Only this process writes the directory, so a lock in it suffices.
  const promoting = new KeyedQueue<Digests | undefined>();
  const datastore = new WharfFileStore(blobs, fileOf, digests, bodies, {
    directory: root,
    expirationPeriodInMilliseconds: expiresInSeconds * 1000,
  });
  datastore.extensions = [...TUS_EXTENSIONS];
  // FileStore keeps an upload's facts next to its bytes, in `<key>.json`.
  const infoOf = (key: string): string => `${fileOf(key)}.json`;
  const storage: ResumableStorage = {
    async open(key, size) {
      await datastore.create(
        new Upload({ id: key, size, offset: 0, creation_date: new Date().toISOString() }),
      );
    },
    append: (key, offset, body) => datastore.write(body, key, offset),
    async received(key) {
      const object = await blobs.head(key);
      if (object) return object.size;
      try {
        return (await stat(fileOf(key))).size;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    promote: (key) => promoting.run(key, () => promoteNow(key)),
    async discard(key) {
      digests.forget(key);
      await rm(fileOf(key), { force: true });
      await rm(infoOf(key), { force: true });
    },
    sweepDebris: (olderThan, inUse) => sweepTusDirectory(root, Math.max(olderThan, startedAt), inUse),
  };

  async function promoteNow(key: string): Promise<Digests | undefined> {
    const file = fileOf(key);
    let facts: Digests | undefined;
    try {
      // The bytes were hashed as they arrived (by this process, or caught up from the file
      // where another wrote them): the object's facts come with it, and completion reads
      // nothing back.
      const size = (await stat(file)).size;
      const digest = await digests.take(key, file, size);
      try {
        facts = await digest.digests();
      } finally {
        digest.drop();
      }
      await blobs.adopt(key, file, facts);
    } catch (err) {
      // Promoted already (a retry after a crash, or a concurrent finish).
      if (!isNotFound(err) || !(await blobs.head(key))) throw err;
    } finally {
      digests.forget(key);
    }
    await rm(infoOf(key), { force: true });
    return facts;
  }
  return { datastore, storage, bodies };
}

/** Runs the tasks given for one key one after another; tasks of different keys run at once. */
class KeyedQueue<T> {
  private readonly tails = new Map<string, Promise<T>>();

  run(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key);
    const next = previous ? previous.then(task, task) : task();
    this.tails.set(key, next);
    const forget = () => {
      if (this.tails.get(key) === next) this.tails.delete(key);
    };
    next.then(forget, forget);
    return next;
  }
}

const WRITE_BUFFER = 1 << 20;

// Only this process writes the directory: files older than its start are no write in flight.
const startedAt = Date.now();

/** `<account>/<upload id>…`: the files of one upload (its bytes, FileStore's `.json` facts). */
const UPLOAD_FILE = /^[A-Za-z0-9_-]{1,64}\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

/**
 * Removes the files of tus uploads that `inUse` does not claim and that nothing touched since
 * `olderThan`: the bytes and facts a crash left between an upload's expiry (or termination)
 * and the freeing of its files, which nothing would ever free later.
 */
async function sweepTusDirectory(
  root: string,
  olderThan: number,
  inUse: (key: string) => Promise<boolean>,
): Promise<number> {
  let entries: Dirent[];
  try {
    entries = await readdir(root, { recursive: true, withFileTypes: true });
  } catch (err) {
    if (isNotFound(err)) return 0;
    throw err;
  }
  const uploads = new Map<string, { files: string[]; newest: number }>();
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const file = relative(root, join(entry.parentPath, entry.name)).split(sep).join('/');
    const id = UPLOAD_FILE.exec(file)?.[0];
    if (!id) continue;
    let modified: number;
    try {
      modified = (await lstat(join(root, file))).mtimeMs;
    } catch (err) {
      if (isNotFound(err)) continue;
      throw err;
    }
    const upload = uploads.get(id) ?? { files: [], newest: 0 };
    upload.files.push(file);
    upload.newest = Math.max(upload.newest, modified);
    uploads.set(id, upload);
  }
  let removed = 0;
  for (const { files, newest } of uploads.values()) {
    if (newest >= olderThan) continue;
    // A file is the upload's bytes (named by its key) or its facts (`<key>.json`); a key may
    // itself end in `.json`, so both readings are asked about.
    const keys = new Set(files.flatMap((f) => (f.endsWith('.json') ? [f, f.slice(0, -5)] : [f])));
    let claimed = false;
    for (const key of keys) {
      if (await inUse(key)) {
        claimed = true;
        break;
      }
    }
    if (claimed) continue;
    for (const file of files) await rm(join(root, file), { force: true });
    removed += 1;
  }
  return removed;
}

/**
 * Scaled: tus.io's S3 store writes an S3 multipart upload of the storage key itself, so the
 * finished object is already where the asset points; its `<key>.info` (and `<key>.part`, a
 * tail shorter than S3's minimum part) are bookkeeping, deleted once the object is whole.
 */
export function s3TusBackend(options: S3Options, expiresInSeconds: number, partsDir: string): TusBackend {
  const datastore = new WharfS3Store(partsDir, {
    // Object tags only serve bucket lifecycle rules; Wharf's sweep expires uploads itself
    // (and not every S3-compatible server supports tagging).
    useTags: false,
    expirationPeriodInMilliseconds: expiresInSeconds * 1000,
    // Another node may terminate or finish the upload: nothing about it is cached here.
    cache: new NoCache(),
    // The same client settings as the blob store's (no aws-chunked checksums Ceph 16 rejects).
    s3ClientConfig: { bucket: options.bucket, ...s3ClientConfig(options) },
  });
  datastore.extensions = [...TUS_EXTENSIONS];
  // Its client is its own; a store that is away reads as one here too (503, not 500).
  reportingUnavailable(datastore.s3Client);
  return { datastore, storage: datastore };
}

/**
 * A finished upload's bytes are an object and its tus records are gone; tus.io's server still
 * asks after it within the request that finished it, and must see it whole.
 */
function finishedUpload(id: string, size: number): Upload {
  return new Upload({ id, size, offset: size });
}

class WharfFileStore extends FileStore {
  constructor(
    private readonly blobs: FsBlobStore,
    private readonly fileOf: (key: string) => string,
    private readonly digests: RunningDigests,
    private readonly bodies: BodyChannel,
    options: ConstructorParameters<typeof FileStore>[0],
  ) {
    super(options);
  }

  /**
   * FileStore's write, hashing the bytes on their way to the file (after catching up with any
   * this process has not seen), with a larger write buffer; the body comes straight from the
   * routes when they offered it (see BodyChannel). The tus server holds the upload's lock
   * meanwhile, on every node, so nothing else writes the file.
   */
  override async write(readable: Readable, id: string, offset: number): Promise<number> {
    const offered = this.bodies.take(id);
    let source = readable;
    if (offered) {
      // What tus.io's server passes is then empty; it ends by itself.
      readable.resume();
      source = offered.body.pipe(new StreamLimiter(offered.limit));
      offered.body.once('error', (err) => source.destroy(err));
    }
    const file = this.fileOf(id);
    const digest = await this.digests.take(id, file, offset);
    try {
      // Hashed on the worker; a worker that falls behind holds the body here (see
      // OffThreadDigest.update), and one that dies fails the write.
      // writeBehind: the disk writes as the bytes come, so the fsync at completion (see
      // FsBlobStore.adopt) finds little left to write.
      const out = createWriteStream(file, { flags: 'r+', start: offset, highWaterMark: WRITE_BUFFER });
      await pipelineAsync(source, hashingPassThrough(digest), writeBehind(out), out);
    } catch (err) {
      // Some hashed bytes may not have reached the file: this digest is of no use. (A client
      // that went away ends its body instead; see the tus routes.)
      digest.drop();
      if (isDiskFull(err)) {
        // This PATCH's bytes filled the disk. Kept, they would leave the whole node without
        // room (the database included) until the upload expires: given back, the upload's
        // offset is where this PATCH began, and the client resumes from there.
        await truncate(file, offset);
        throw storageFull(err);
      }
      throw ERRORS.FILE_WRITE_ERROR;
    }
    this.digests.put(id, digest);
    return digest.offset;
  }

  override async getUpload(id: string): Promise<Upload> {
    try {
      return await super.getUpload(id);
    } catch (err) {
      // NO_LONGER_EXISTS: the facts are still there but the file was just moved into the store.
      if (err !== ERRORS.FILE_NOT_FOUND && err !== ERRORS.FILE_NO_LONGER_EXISTS) throw err;
      const object = await this.blobs.head(id);
      if (!object) throw err;
      return finishedUpload(id, object.size);
    }
  }
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
      return await super.getUpload(id);
    } catch (err) {
      if (err !== ERRORS.FILE_NOT_FOUND) throw err;
      const size = await this.objectSize(id);
      if (size === undefined) throw err;
      return finishedUpload(id, size);
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
        if (size === undefined) throw err;
      }
    }
    await this.dropBookkeeping(key);
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

  private async objectSize(key: string): Promise<number | undefined> {
    try {
      return (await this.client.headObject({ Bucket: this.bucket, Key: key })).ContentLength ?? 0;
    } catch (err) {
      if ((err as { name?: string }).name === 'NotFound' || (err as { name?: string }).name === 'NoSuchKey') {
        return undefined;
      }
      throw err;
    }
  }
}

function noop(): void {}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}
