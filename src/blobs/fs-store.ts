import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ObjectInfo } from '../core/model.js';
import {
  type BlobStore,
  type ByteRange,
  ObjectMissing,
  type PartReference,
  type PresignedPost,
  type PresignedRequest,
  type PresignOperationRequest,
  type PresignPostRequest,
  type PresignPutRequest,
  type ReceivedPart,
  type SealHook,
  type StoredPart,
} from '../core/ports.js';
import { downloadBuffers } from '../core/read-buffers.js';
import { isDiskFull } from '../core/unavailable.js';
import { readFileRange } from './file-reader.js';
import { FsMultipartParts, fsyncPath, readComposed, readParts, removeDirectory } from './fs-multipart.js';
import { LOCAL_BUCKET } from './local-endpoint.js';
import { isProcessDir, leftOver, processTempDir, removeLeftOver, tempName } from './process-temp.js';
import { writeBehind } from './write-behind.js';

/** Removes the entries of `dir` last changed before `olderThan`; how many. */
async function removeOlder(dir: string, olderThan: number): Promise<number> {
  let removed = 0;
  for (const entry of await readdir(dir)) {
    const path = join(dir, entry);
    try {
      if ((await stat(path)).mtimeMs < olderThan) {
        await rm(path, { recursive: true, force: true });
        removed += 1;
      }
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  return removed;
}

/** Presigns requests to the embedded storage endpoint (LocalEndpoint). */
export interface PutPresigner {
  presignPut(request: PresignPutRequest): Promise<PresignedRequest>;
  presignPost(request: PresignPostRequest): Promise<PresignedPost>;
  presignOperation(request: PresignOperationRequest): Promise<PresignedRequest>;
}

const WRITE_CHUNK = 1 << 20;

/**
 * Bytes in a local directory: `objects/<key>` holds data, `meta/<key>.json` what was
 * verified about it, `tmp/` writes in progress, `multipart/` parts of multipart uploads
 * (see FsMultipartParts), `composed/<key>/` objects composed from multipart uploads: their
 * part files as they were uploaded and `object.json` listing them, which reads span, so
 * composing copies nothing. A write goes to tmp, is fsynced, checked by the seal hook, and
 * renamed into place: readers never see a partial object.
 */
export class FsBlobStore implements BlobStore {
  readonly name = 'local';
  /** The bucket Wharf's own storage endpoint serves these objects under. */
  readonly bucket = LOCAL_BUCKET;
  private readonly objects: string;
  private readonly meta: string;
  /** `tmp/`, where each process writing to this store has a directory of its own. */
  private readonly tmpRoot: string;
  /** This process's directory under tmp/ (see processTempDir), once init has made it. */
  private tmp: string;
  private readonly composed: string;
  private readonly multipart: FsMultipartParts;

  constructor(
    root: string,
    private readonly presigner: PutPresigner,
  ) {
    const base = resolve(root);
    this.objects = join(base, 'objects');
    this.meta = join(base, 'meta');
    this.tmpRoot = join(base, 'tmp');
    this.tmp = this.tmpRoot;
    this.composed = join(base, 'composed');
    this.multipart = new FsMultipartParts(join(base, 'multipart'));
  }

  /**
   * Each process writes under a directory of its own in tmp/ (processTempDir), which also
   * removes the directories of processes that are gone: what their writes left mid-way. So
   * a store opened beside a live server on the same data directory (a CLI command, or a
   * second server: tests run nodes so, and a restart may overlap the old process) never
   * removes that server's writes in flight. A server (`recover`) also settles what a crash of
   * an older release left loose in tmp/ and the multipart completions that died with it.
   * Multipart uploads outlive restarts (clients resume them).
   */
  async init({ recover }: { recover: boolean } = { recover: true }): Promise<void> {
    await Promise.all(
      [this.objects, this.meta, this.tmpRoot, this.composed].map((d) => mkdir(d, { recursive: true })),
    );
    this.tmp = await processTempDir(this.tmpRoot);
    await this.multipart.init(this.tmp);
    if (!recover) return;
    await this.sweepTemp(Number.POSITIVE_INFINITY);
    await this.multipart.recover(async (key) => (await this.head(key)) !== undefined);
  }

  async write(key: string, source: Readable, seal: SealHook): Promise<void> {
    const target = this.pathOf(this.objects, key);
    const metaTarget = `${this.pathOf(this.meta, key)}.json`;
    const temp = await tempName(this.tmp, '.part');
    const tempMeta = `${temp}.json`;
    try {
      // flush: the stream fsyncs its own descriptor before it closes, so the bytes are on
      // disk when pipeline() resolves (on the stream's 'close'). writeBehind starts the disk
      // on them meanwhile, so that fsync finds little left to write.
      const file = createWriteStream(temp, {
        flags: 'wx',
        mode: 0o640,
        flush: true,
        highWaterMark: WRITE_CHUNK,
      });
      await pipeline(source, writeBehind(file), file);
      const info = await seal();
      await this.ensureDirectory(dirname(target));
      await this.ensureDirectory(dirname(metaTarget));
      // The facts only cache what the bytes say: head() checks them against the file and
      // the core re-hashes when they are missing or damaged, so they need no fsync.
      await writeFile(tempMeta, JSON.stringify(info), { flag: 'wx', mode: 0o640 });
      // Facts describe the object at their key or nothing: the old ones go before the object
      // is replaced and the new ones arrive after it, so a crash in between leaves an object
      // without facts (hashed again when needed), never facts of bytes that are not there
      // (nor of other bytes of the same size, which head() would believe).
      await rm(metaTarget, { force: true });
      await this.renameInto(temp, target);
      await this.renameInto(tempMeta, metaTarget);
      // The rename itself must survive a power cut before the asset row may point at it. A
      // directory gone meanwhile was taken by deletePrefix, with this object in it: the object
      // is deleted, which its caller learns from the database (the asset is gone).
      await fsyncPath(dirname(target)).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
    } catch (err) {
      await rm(temp, { force: true });
      await rm(tempMeta, { force: true });
      throw err;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    let size: number;
    try {
      size = (await stat(this.pathOf(this.objects, key))).size;
    } catch (err) {
      if (!isNotFound(err)) throw err;
      const composed = await readComposed(this.pathOf(this.composed, key));
      if (!composed) return undefined;
      const { size, sha256, md5, contentType } = composed;
      return { size, sha256, md5, contentType };
    }
    let text: string;
    try {
      text = await readFile(`${this.pathOf(this.meta, key)}.json`, 'utf8');
    } catch (err) {
      if (isNotFound(err)) return { size };
      throw err;
    }
    return recordedFacts(text, size) ?? { size };
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(this.pathOf(this.objects, key), 'r');
    } catch (err) {
      if (!isNotFound(err)) throw err;
      const dir = this.pathOf(this.composed, key);
      const composed = await readComposed(dir);
      if (!composed) throw new ObjectMissing(key);
      return readParts(dir, composed, range);
    }
    return readFileRange(handle, downloadBuffers, range?.start, range?.end);
  }

  localFile(key: string): string {
    return this.pathOf(this.objects, key);
  }

  async delete(key: string): Promise<void> {
    // Facts first: a crash in between leaves bytes without facts, never facts without bytes.
    await removeFile(`${this.pathOf(this.meta, key)}.json`);
    await removeFile(this.pathOf(this.objects, key));
    // A composed object's list goes before its parts: it is never read with parts missing.
    const composed = this.pathOf(this.composed, key);
    await rm(join(composed, 'object.json'), { force: true }).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOTDIR') throw err;
    });
    await rm(composed, { recursive: true, force: true });
  }

  async deletePrefix(prefix: string): Promise<void> {
    if (!prefix.endsWith('/')) throw new Error(`A prefix ends with a slash: ${JSON.stringify(prefix)}`);
    // Keys are paths here, so a prefix is a directory in each tree; facts first, as in delete().
    // A write finishing meanwhile makes a fresh directory (see renameInto) rather than racing
    // the removal.
    for (const base of [this.meta, this.objects, this.composed]) {
      const dir = this.pathOf(base, prefix);
      for (const known of this.directories) {
        if (known === dir || known.startsWith(`${dir}${sep}`)) this.directories.delete(known);
      }
      await removeDirectory(dir, this.tmp);
    }
  }

  /** Renames into a directory that deletePrefix may have just taken away (then made again). */
  private async renameInto(from: string, to: string): Promise<void> {
    try {
      await rename(from, to);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      this.directories.delete(dirname(to));
      await this.ensureDirectory(dirname(to));
      await rename(from, to);
    }
  }

  presignPut(request: PresignPutRequest): Promise<PresignedRequest> {
    return this.presigner.presignPut(request);
  }

  presignPost(request: PresignPostRequest): Promise<PresignedPost> {
    return this.presigner.presignPost(request);
  }

  presignOperation(request: PresignOperationRequest): Promise<PresignedRequest> {
    return this.presigner.presignOperation(request);
  }

  createMultipart(key: string, contentType: string): Promise<string> {
    this.pathOf(this.objects, key);
    return this.multipart.create(key, contentType);
  }

  writePart(part: ReceivedPart): Promise<StoredPart> {
    return this.multipart.writePart(part);
  }

  listParts(key: string, multipartId: string): Promise<StoredPart[]> {
    return this.multipart.listParts(key, multipartId);
  }

  /**
   * Composes the named parts without copying them (see FsMultipartParts.compose): the object
   * is the part files themselves, listed in order, with the SHA-256 and MD5 of the whole,
   * hashed in part order as the parts arrived.
   */
  async completeMultipart(
    key: string,
    multipartId: string,
    parts: PartReference[],
  ): Promise<ObjectInfo & { etag: string }> {
    const target = this.pathOf(this.composed, key);
    const claimed = await this.multipart.claim(key, multipartId, parts);
    let info: ObjectInfo;
    try {
      info = {
        ...(await this.multipart.digestsOf(multipartId, claimed)),
        contentType: claimed.manifest.contentType,
      };
      await this.multipart.compose(claimed, target, info, claimed.etag);
    } catch (err) {
      // compose() throws only before its rename: the upload is still the claimed directory.
      await claimed.release();
      throw err;
    }
    return { ...info, etag: claimed.etag };
  }

  abortMultipart(key: string, multipartId: string): Promise<void> {
    return this.multipart.abort(key, multipartId);
  }

  /**
   * Temp files begun before `olderThan`, and multipart uploads `inUse` does not claim begun
   * before it or before this process started: only this process writes here, so an upload
   * from before its start that nothing runs is a crash's leftover, not a create in flight.
   */
  async sweepIncomplete(olderThan: number, inUse?: (key: string) => Promise<boolean>): Promise<number> {
    return (
      (await this.sweepTemp(olderThan)) +
      (await this.multipart.sweep(inUse ? Math.max(olderThan, this.startedAt) : olderThan, inUse))
    );
  }

  private readonly startedAt = Date.now();

  /**
   * Removes this process's temp files begun before `olderThan`, the directories of processes
   * that are gone, and loose files (an older release wrote into tmp/ itself) begun before
   * `olderThan`. Live processes' directories are theirs.
   */
  private async sweepTemp(olderThan: number, now = Date.now()): Promise<number> {
    let removed = 0;
    const own = basename(this.tmp);
    for (const entry of await readdir(this.tmpRoot)) {
      const path = join(this.tmpRoot, entry);
      try {
        if (path === this.tmp) {
          removed += await removeOlder(path, olderThan);
        } else if (isProcessDir(entry) && entry !== own) {
          if ((await leftOver(path, entry, now)) && (await removeLeftOver(path))) removed += 1;
        } else if ((await stat(path)).mtimeMs < olderThan) {
          // Files, and directories a deletePrefix or an abort renamed here and did not finish removing.
          await rm(path, { recursive: true, force: true });
          removed += 1;
        }
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return removed;
  }

  async close(): Promise<void> {
    await this.multipart.chains.close();
    // Nothing writes any more: this process's temp directory goes with it.
    if (this.tmp !== this.tmpRoot) await rm(this.tmp, { recursive: true, force: true });
  }

  /** Directories are removed only by deletePrefix (which forgets them), so each needs creating once per process. */
  private async ensureDirectory(path: string): Promise<void> {
    if (this.directories.has(path)) return;
    await mkdir(path, { recursive: true });
    this.directories.add(path);
  }

  private readonly directories = new Set<string>();

  /** Keys come from the core, never from clients; this is the last line of defence anyway. */
  private pathOf(base: string, key: string): string {
    const path = resolve(base, key);
    const rel = relative(base, path);
    if (rel === '' || rel.startsWith('..') || rel.split(sep).includes('..') || key.includes('\0')) {
      throw new Error(`Refusing storage key outside the store: ${JSON.stringify(key)}`);
    }
    return path;
  }

  /**
   * Takes a finished file from elsewhere on this filesystem (a tus upload's) as the object at
   * `key`: fsynced, then renamed into place, so it appears whole and without a copy. `facts`,
   * when the caller hashed the bytes as they arrived, are recorded as write() records its
   * own; without them completion hashes the bytes. Throws ENOENT when `file` is gone.
   */
  async adopt(key: string, file: string, facts?: ObjectInfo): Promise<void> {
    const target = this.pathOf(this.objects, key);
    const metaTarget = `${this.pathOf(this.meta, key)}.json`;
    await fsyncPath(file);
    await this.ensureDirectory(dirname(target));
    await rm(metaTarget, { force: true });
    await rename(file, target);
    if (facts) {
      // As in write(): facts arrive after the bytes they describe, whole (by rename).
      const tempMeta = await tempName(this.tmp, '.json');
      try {
        await this.ensureDirectory(dirname(metaTarget));
        await writeFile(tempMeta, JSON.stringify(facts), { flag: 'wx', mode: 0o640 });
        await rename(tempMeta, metaTarget);
      } catch (err) {
        await rm(tempMeta, { force: true });
        // The facts only cache what the bytes say (hashed again when missing): a full disk
        // that leaves no room for them does not undo the object now in place. Failing here
        // refused the request that brought an upload's last bytes although they were kept.
        if (!isDiskFull(err)) throw err;
      }
    }
    await fsyncPath(dirname(target));
  }
}

/** The sidecar's facts, if it is intact and describes a file of this size. */
function recordedFacts(text: string, size: number): ObjectInfo | undefined {
  try {
    const facts = JSON.parse(text) as Partial<ObjectInfo>;
    const hex = (value: unknown, length: number) =>
      typeof value === 'string' && new RegExp(`^[0-9a-f]{${length}}$`).test(value);
    if (facts.size === size && hex(facts.sha256, 64) && hex(facts.md5, 32)) return facts as ObjectInfo;
  } catch {
    // Torn by a crash: the bytes are re-hashed instead.
  }
  return undefined;
}

/**
 * Removes a file that may be gone already. unlink, not rm: rm takes an EPERM (an immutable
 * file) for a directory, retries as one and fails ENOTDIR, which hid a refusal an operator
 * must mend (STORAGE_DENIED) behind an internal error.
 */
async function removeFile(path: string): Promise<void> {
  await unlink(path).catch((err: unknown) => {
    if (!isNotFound(err)) throw err;
  });
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}
