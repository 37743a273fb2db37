import { createWriteStream, type Dirent } from 'node:fs';
import { lstat, readdir, rm, stat, truncate } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import { FileStore } from '@tus/file-store';
import { ERRORS, Upload } from '@tus/utils';
import { hashingPassThrough } from '../core/hash-worker.js';
import { KeyedQueue } from '../core/keyed-queue.js';
import type { Digests } from '../core/model.js';
import { ObjectMissing } from '../core/ports.js';
import type { ResumableStorage } from '../core/resumable.js';
import { isDiskFull, isOutOfDescriptors, outOfDescriptors, storageFull } from '../core/unavailable.js';
import type { FsBlobStore } from './fs-store.js';
import { RunningDigests } from './running-digest.js';
import {
  BodyChannel,
  finishedUpload,
  RecentlyFinished,
  TUS_EXTENSIONS,
  type TusBackend,
} from './tus-storage.js';
import { writeBehind } from './write-behind.js';

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
  const finished = new RecentlyFinished();
  // The request that brought the last byte and the sweep's reconcile may promote one upload at
  // once. Side by side, one could remove the facts file the other had just written (adopt
  // clears a key's old facts before the bytes move in): one at a time, the second finds the
  // object in place. Only this process writes the directory, so a lock in it suffices.
  const promoting = new KeyedQueue();
  const datastore = new WharfFileStore(blobs, fileOf, digests, bodies, finished, {
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
    async promote(key) {
      const facts = await promoting.run(key, () => promoteNow(key));
      const size = facts?.size ?? (await blobs.head(key))?.size;
      if (size !== undefined) finished.add(key, size);
      return facts;
    },
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
      if (!isNotFound(err)) throw err;
      // Promoted already (a retry after a crash, or a concurrent finish), else discarded
      // meanwhile (a termination frees storage before it records the upload as cancelled).
      if (!(await blobs.head(key))) throw new ObjectMissing(key);
    } finally {
      digests.forget(key);
    }
    await rm(infoOf(key), { force: true });
    return facts;
  }
  return { datastore, storage, bodies };
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

class WharfFileStore extends FileStore {
  constructor(
    private readonly blobs: FsBlobStore,
    private readonly fileOf: (key: string) => string,
    private readonly digests: RunningDigests,
    private readonly bodies: BodyChannel,
    private readonly finished: RecentlyFinished,
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
    let limiter: BodyLimit | undefined;
    if (offered) {
      // What tus.io's server passes is then empty; it ends by itself.
      readable.resume();
      limiter = new BodyLimit(offered.limit);
      source = offered.body.pipe(limiter);
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
      if (limiter?.overflowed) {
        // A body without a Content-Length that went on past the upload's length (tus.io checks
        // a declared one before any byte is read). It is refused whole, as that one is: what
        // of it reached the file is given back, the rest is read and dropped, and tus's own
        // refusal answers (413 FILE_TOO_LARGE with the length). Before, this failed as a write
        // error (500), keeping whatever had been written.
        offered!.overflowed = true;
        offered!.body.resume();
        await truncate(file, offset);
        throw ERRORS.ERR_SIZE_EXCEEDED;
      }
      if (isDiskFull(err)) {
        // This PATCH's bytes filled the disk. Kept, they would leave the whole node without
        // room (the database included) until the upload expires: given back, the upload's
        // offset is where this PATCH began, and the client resumes from there.
        await truncate(file, offset);
        throw storageFull(err);
      }
      // The file could not be opened for want of a descriptor: nothing was written, and the
      // client may resume once connections have ended.
      if (isOutOfDescriptors(err)) throw outOfDescriptors(err);
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
      if (object) return finishedUpload(id, object.size);
      // Finished and deduplicated: the account's older object holds these bytes.
      const upload = this.finished.upload(id);
      if (!upload) throw err;
      return upload;
    }
  }
}

/**
 * At most `limit` bytes pass (tus.io's StreamLimiter, as its server would bound the body it
 * reads); the first byte past them fails the stream, and `overflowed` says it was that.
 */
class BodyLimit extends Transform {
  overflowed = false;

  constructor(private left: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (chunk.length > this.left) {
      this.overflowed = true;
      callback(new Error('The body goes past the upload length.'));
      return;
    }
    this.left -= chunk.length;
    callback(null, chunk);
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}
