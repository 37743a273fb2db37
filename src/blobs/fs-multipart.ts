import { randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { compositeEtag } from '../core/digests.js';
import { WharfError } from '../core/errors.js';
import { DigestStream, Md5Stream } from '../core/hashing.js';
import type { Digests, ObjectInfo } from '../core/model.js';
import {
  type ByteRange,
  MULTIPART_LIMITS,
  type PartReference,
  type ReceivedPart,
  type StoredPart,
} from '../core/ports.js';
import { downloadBuffers } from '../core/read-buffers.js';
import { readFileRange } from './file-reader.js';
import { type NamedPart, PartChains } from './part-chain.js';
import { leftOver, tempName } from './process-temp.js';
import { RunningDigest } from './running-digest.js';

/** What `manifest.json` of a multipart upload records. */
interface Manifest {
  key: string;
  contentType: string;
}

/** A part file: where it lies and which file it is (a replaced part is another file). */
type PartFile = StoredPart & NamedPart;

/** A multipart upload taken for composition: its parts, checked, and where they lie. */
export interface ClaimedUpload {
  manifest: Manifest;
  /** The claimed directory, holding the part files. */
  dir: string;
  parts: PartFile[];
  /** The composite ETag S3 gives the object: MD5 of the parts' binary MD5s, `-N`. */
  etag: string;
  /** Gives the upload back untouched (composition failed; the client may retry). */
  release(): Promise<void>;
  /** Deletes the parts once the object is in place. */
  remove(): Promise<void>;
}

// Each part file starts with the binary MD5 of the bytes after it, so a part and its ETag are
// written by one rename and can never disagree (a sidecar could be torn from its part).
const HEADER = 16;
const CHUNK = 1 << 20;
const MANIFEST = 'manifest.json';
/** A composed object's list of parts and facts (see compose). */
const OBJECT = 'object.json';
// Completion renames the directory to this prefix first: of two completions one wins the
// rename, and parts written meanwhile find no upload rather than vanish into a composed one.
// The claim names its owner (`.completing-<id>@<owner>`, the owner being the claiming store's
// temp directory's name, see processTempDir): a server starting beside a live one on the same
// data directory then settles only the claims of processes that are gone.
const CLAIMED = '.completing-';
const ID = /^[A-Za-z0-9_-]{16,64}$/;

/**
 * S3 multipart uploads on a local disk: `<dir>/<multipartId>/manifest.json` and one file per
 * part named by its number. Parts stream through `tmp` and are renamed into place after an
 * fsync, so a part is either whole or absent.
 */
export class FsMultipartParts {
  /** The whole object's digests, hashed part by part as they arrive (see PartChains). */
  readonly chains = new PartChains();

  /** This process's own temp directory (FsBlobStore's), given by init. */
  private tmp: string;

  constructor(private readonly dir: string) {
    this.tmp = dir;
  }

  async init(tmp: string): Promise<void> {
    this.tmp = tmp;
    await mkdir(this.dir, { recursive: true });
  }

  async create(key: string, contentType: string): Promise<string> {
    const id = randomBytes(24).toString('base64url');
    const dir = join(this.dir, id);
    await mkdir(dir);
    const manifest: Manifest = { key, contentType };
    const temp = await tempName(this.tmp, '.manifest');
    await writeFile(temp, JSON.stringify(manifest), { flag: 'wx', mode: 0o640, flush: true });
    await rename(temp, join(dir, MANIFEST));
    await fsyncPath(dir);
    return id;
  }

  async writePart(part: ReceivedPart): Promise<StoredPart> {
    const dir = await this.openUpload(part.key, part.multipartId);
    const number = checkPartNumber(part.partNumber);
    if (part.size !== undefined && part.size > MULTIPART_LIMITS.maxPartSize) {
      throw new WharfError(
        'FILE_TOO_LARGE',
        `Your proposed upload exceeds the maximum allowed size: a part may be ${MULTIPART_LIMITS.maxPartSize} bytes.`,
        { limit: MULTIPART_LIMITS.maxPartSize, size: part.size },
      );
    }
    const temp = await tempName(this.tmp, '.part');
    // Only the part's MD5 (its ETag) is needed here: the whole object's SHA-256 and MD5 are
    // the chain's, hashed in part order once the part is stored. The part's own SHA-256 only
    // when the client declared it (x-amz-checksum-sha256), to check it.
    const limit = Math.min(MULTIPART_LIMITS.maxPartSize, part.maxSize ?? Number.POSITIVE_INFINITY);
    const digest = part.sha256 === undefined ? new Md5Stream(limit) : new DigestStream(limit);
    try {
      await pipeline(
        part.body,
        digest,
        createWriteStream(temp, { flags: 'wx', mode: 0o640, start: HEADER, highWaterMark: CHUNK }),
      );
      const got: { size: number; md5: string; sha256?: string } =
        digest instanceof DigestStream ? digest.digests() : digest.md5();
      const { size, md5 } = got;
      if (part.size !== undefined && size !== part.size) {
        throw new WharfError('SIZE_MISMATCH', `Expected ${part.size} bytes, received ${size}.`);
      }
      if (part.md5 !== undefined && part.md5 !== md5) {
        throw new WharfError(
          'CHECKSUM_MISMATCH',
          'The Content-MD5 you specified did not match what we received.',
        );
      }
      if (part.sha256 !== undefined && part.sha256 !== got.sha256) {
        throw new WharfError(
          'CHECKSUM_MISMATCH',
          'The SHA256 you specified did not match the calculated checksum.',
          { algorithm: 'sha256' },
        );
      }
      const handle = await open(temp, 'r+');
      try {
        await handle.write(Buffer.from(md5, 'hex'), 0, HEADER, 0);
        // One fsync covers the header and the streamed bytes.
        await handle.sync();
      } finally {
        await handle.close();
      }
      try {
        // Replaces an earlier part of this number in one step, as S3 does.
        await rename(temp, join(dir, String(number)));
      } catch (err) {
        // Completed or aborted while the part streamed.
        if (isNotFound(err)) throw noSuchUpload();
        throw err;
      }
      let claimed = false;
      try {
        await this.syncDir(dir);
      } catch (err) {
        // Claimed by a completion between the rename and this (a client that completes while a
        // part's PUT is still answering): the part was stored before it, and went with the
        // upload, whose claim syncs its directory; that completion used it if it named it, as
        // S3 would. Before, this answered 500.
        if (!isNotFound(err)) throw err;
        claimed = true;
      }
      if (!claimed) this.chains.advance(part.multipartId, dir, HEADER);
      return { partNumber: number, size, etag: `"${md5}"`, lastModified: Date.now() };
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }

  /** Makes a part's rename into an upload's directory durable (a seam for tests of the race above). */
  protected syncDir(dir: string): Promise<void> {
    return fsyncPath(dir);
  }

  async listParts(key: string, multipartId: string): Promise<StoredPart[]> {
    const dir = await this.openUpload(key, multipartId);
    const parts = await partsIn(dir).catch((err: unknown) => {
      if (isNotFound(err)) throw noSuchUpload();
      throw err;
    });
    return parts.map(({ partNumber, size, etag, lastModified }) => ({
      partNumber,
      size,
      etag,
      lastModified,
    }));
  }

  /**
   * Takes the upload for composition and checks the named parts as S3 does; on a refusal
   * the upload is given back unchanged. Throws MULTIPART_NOT_FOUND when another completion
   * (or an abort) got there first.
   */
  async claim(key: string, multipartId: string, named: PartReference[]): Promise<ClaimedUpload> {
    checkOrder(named);
    const dir = await this.openUpload(key, multipartId);
    const claimed = join(this.dir, `${CLAIMED}${multipartId}@${basename(this.tmp)}`);
    try {
      await rename(dir, claimed);
    } catch (err) {
      if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'ENOTEMPTY') throw noSuchUpload();
      throw err;
    }
    const release = async () => {
      await rename(claimed, dir);
    };
    try {
      const manifest = await readManifest(claimed);
      const held = new Map((await partsIn(claimed)).map((p) => [p.partNumber, p]));
      const parts = named.map((ref) => {
        const part = held.get(ref.partNumber);
        if (!part || unquote(part.etag) !== unquote(ref.etag)) {
          throw new WharfError(
            'INVALID_PART',
            'One or more of the specified parts could not be found or its entity tag did not match.',
            { partNumber: ref.partNumber },
          );
        }
        return part;
      });
      parts.forEach((part, i) => {
        if (i < parts.length - 1 && part.size < MULTIPART_LIMITS.minPartSize) {
          throw new WharfError(
            'PART_TOO_SMALL',
            'Your proposed upload is smaller than the minimum allowed size.',
            {
              partNumber: part.partNumber,
            },
          );
        }
      });
      const etag = compositeEtag(parts);
      return {
        manifest,
        dir: claimed,
        parts,
        etag,
        release,
        remove: () => rm(claimed, { recursive: true, force: true }),
      };
    } catch (err) {
      if (isNotFound(err)) {
        // Its manifest or a part vanished under the claim: an abort was removing the upload
        // as it was claimed. What is left is the abort's to lose, not an upload to give back.
        await rm(claimed, { recursive: true, force: true });
        throw noSuchUpload();
      }
      await release();
      throw err;
    }
  }

  /**
   * The SHA-256 and MD5 of the claimed parts in order: what the chain hashed as they arrived,
   * and the rest now (on the main thread if the worker cannot).
   */
  async digestsOf(multipartId: string, claimed: ClaimedUpload): Promise<Digests> {
    try {
      return await this.chains.digests(multipartId, claimed.parts, HEADER);
    } catch {
      const digest = new RunningDigest();
      for (const part of claimed.parts) await hashInto(digest, part.path, part.size);
      return digest.digests();
    }
  }

  /**
   * Makes the claimed upload the object in `target` (a directory: its part files, and
   * `object.json` listing them in order with the object's facts) without copying a byte: the
   * list is written and fsynced, then the directory is renamed into place, so the object
   * appears whole or not at all. Parts not named are deleted after. Throws before the rename
   * only; the caller gives the upload back then.
   */
  async compose(claimed: ClaimedUpload, target: string, info: ObjectInfo, etag: string): Promise<void> {
    const object: ComposedObject = {
      size: info.size,
      sha256: info.sha256!,
      md5: info.md5!,
      contentType: info.contentType ?? claimed.manifest.contentType,
      etag,
      parts: claimed.parts.map((p) => ({ partNumber: p.partNumber, size: p.size })),
    };
    const temp = join(claimed.dir, `${OBJECT}.${randomUUID()}`);
    await writeFile(temp, JSON.stringify(object), { flag: 'wx', mode: 0o640, flush: true });
    await rename(temp, join(claimed.dir, OBJECT));
    await fsyncPath(claimed.dir);
    // A directory made here must itself survive a power cut: its parent learns of it.
    const made = await mkdir(dirname(target), { recursive: true });
    if (made) await fsyncPath(dirname(made));
    await rename(claimed.dir, target);
    await fsyncPath(dirname(target));
    const named = new Set(claimed.parts.map((p) => String(p.partNumber)));
    for (const entry of await readdir(target)) {
      if (entry !== OBJECT && !named.has(entry)) await rm(join(target, entry), { force: true });
    }
  }

  async abort(key: string, multipartId: string): Promise<void> {
    this.chains.forget(multipartId);
    let dir: string;
    try {
      dir = await this.openUpload(key, multipartId);
    } catch (err) {
      if (err instanceof WharfError && err.code === 'MULTIPART_NOT_FOUND') return;
      throw err;
    }
    // Renamed away first, as completion claims it: a part finishing meanwhile then finds no
    // upload (and is refused) rather than landing in a directory being removed.
    await removeDirectory(dir, this.tmp);
  }

  /**
   * Removes uploads started before `olderThan` (claimed ones too: their completion died),
   * except those of keys `inUse` claims.
   */
  async sweep(olderThan: number, inUse?: (key: string) => Promise<boolean>): Promise<number> {
    let removed = 0;
    for (const entry of await readdir(this.dir)) {
      const dir = join(this.dir, entry);
      try {
        const started = await stat(join(dir, MANIFEST)).then(
          (s) => s.mtimeMs,
          async (err: unknown) => {
            // No manifest: a create that crashed before writing it.
            if (isNotFound(err)) return (await stat(dir)).mtimeMs;
            throw err;
          },
        );
        const key = inUse && (await readManifest(dir).catch(() => undefined))?.key;
        if (started < olderThan && !(key && (await inUse(key)))) {
          await rm(dir, { recursive: true, force: true });
          removed += 1;
        }
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return removed;
  }

  /**
   * At start this process completes nothing yet, so a claimed upload whose owner is gone (or
   * that names none: an older release's) is one whose completion died: if its object is in
   * place (`exists`) only the parts remain to free, else it is open again. A claim of a live
   * process (another server on this data directory) is that server's completion in progress.
   */
  async recover(exists: (key: string) => Promise<boolean>, now = Date.now()): Promise<void> {
    for (const entry of await readdir(this.dir)) {
      if (!entry.startsWith(CLAIMED)) continue;
      const claimed = join(this.dir, entry);
      const [id = '', owner] = entry.slice(CLAIMED.length).split('@');
      if (owner !== undefined && !(await leftOver(claimed, owner, now))) continue;
      const manifest = await readManifest(claimed).catch(() => undefined);
      if (!manifest || (await exists(manifest.key))) {
        await rm(claimed, { recursive: true, force: true });
      } else {
        await rename(claimed, join(this.dir, id));
      }
    }
  }

  /** The upload's directory, if it exists and is for `key`; else MULTIPART_NOT_FOUND. */
  private async openUpload(key: string, multipartId: string): Promise<string> {
    if (!ID.test(multipartId)) throw noSuchUpload();
    const dir = join(this.dir, multipartId);
    let manifest: Manifest;
    try {
      manifest = await readManifest(dir);
    } catch (err) {
      if (isNotFound(err)) throw noSuchUpload();
      throw err;
    }
    if (manifest.key !== key) throw noSuchUpload();
    return dir;
  }
}

/** What `object.json` of a composed object records: its facts and its parts in order. */
export interface ComposedObject {
  size: number;
  sha256: string;
  md5: string;
  contentType: string;
  etag: string;
  parts: Array<{ partNumber: number; size: number }>;
}

/** A composed object's list and facts, or undefined when `dir` holds no composed object. */
export async function readComposed(dir: string): Promise<ComposedObject | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, OBJECT), 'utf8');
  } catch (err) {
    if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
  // Written whole and fsynced before the directory became the object: never torn.
  return JSON.parse(text) as ComposedObject;
}

/**
 * The bytes of a composed object (or of `range` of it), read across its part files in order,
 * each without its header. Part files are opened as the stream reaches them.
 */
export function readParts(dir: string, object: ComposedObject, range?: ByteRange): Readable {
  return Readable.from(
    (async function* () {
      let at = 0;
      for (const part of object.parts) {
        const first = at;
        at += part.size;
        const from = Math.max(0, (range?.start ?? 0) - first);
        const to = Math.min(part.size - 1, (range?.end ?? Number.POSITIVE_INFINITY) - first);
        if (to < from) continue;
        const handle = await open(join(dir, String(part.partNumber)), 'r');
        yield* readFileRange(handle, downloadBuffers, HEADER + from, HEADER + to);
      }
    })(),
    { objectMode: false },
  );
}

/** Hashes a part file's bytes (after its header) into `digest`. */
async function hashInto(digest: RunningDigest, path: string, size: number): Promise<void> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, size)));
    for (let done = 0; done < size; ) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - done), HEADER + done);
      if (bytesRead === 0) throw new Error(`${path} is shorter than its ${size} bytes`);
      digest.update(buffer.subarray(0, bytesRead));
      done += bytesRead;
    }
  } finally {
    await handle.close();
  }
}

async function partsIn(dir: string): Promise<PartFile[]> {
  const parts: PartFile[] = [];
  for (const entry of await readdir(dir)) {
    if (!/^[1-9]\d{0,4}$/.test(entry)) continue;
    const path = join(dir, entry);
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      // Replaced between the listing and the open: the new one is listed by the next call.
      if (isNotFound(err)) continue;
      throw err;
    }
    try {
      const header = Buffer.alloc(HEADER);
      const { bytesRead } = await handle.read(header, 0, HEADER, 0);
      const info = await handle.stat();
      if (bytesRead !== HEADER) continue;
      parts.push({
        partNumber: Number(entry),
        size: info.size - HEADER,
        etag: `"${header.toString('hex')}"`,
        lastModified: info.mtimeMs,
        path,
        ino: info.ino,
        mtimeMs: info.mtimeMs,
      });
    } finally {
      await handle.close();
    }
  }
  return parts.sort((a, b) => a.partNumber - b.partNumber);
}

async function readManifest(dir: string): Promise<Manifest> {
  const parsed = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as Partial<Manifest>;
  if (typeof parsed.key !== 'string' || typeof parsed.contentType !== 'string') {
    throw new Error(`Damaged multipart manifest in ${dir}`);
  }
  return { key: parsed.key, contentType: parsed.contentType };
}

function checkPartNumber(partNumber: number): number {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MULTIPART_LIMITS.maxParts) {
    throw new WharfError('VALIDATION_FAILED', 'Part number must be an integer between 1 and 10000.');
  }
  return partNumber;
}

function checkOrder(named: PartReference[]): void {
  if (named.length === 0) {
    throw new WharfError('INVALID_PART', 'You must specify at least one part.');
  }
  for (const [i, ref] of named.entries()) {
    if (
      !Number.isInteger(ref.partNumber) ||
      ref.partNumber < 1 ||
      ref.partNumber > MULTIPART_LIMITS.maxParts
    ) {
      throw new WharfError('INVALID_PART', 'Part numbers are integers from 1 to 10000.', {
        partNumber: ref.partNumber,
      });
    }
    if (i > 0 && ref.partNumber <= named[i - 1]!.partNumber) {
      throw new WharfError('INVALID_PART_ORDER', 'The list of parts was not in ascending order.');
    }
  }
}

function unquote(etag: string): string {
  return etag.trim().replace(/^"|"$/g, '').toLowerCase();
}

function noSuchUpload(): WharfError {
  return new WharfError(
    'MULTIPART_NOT_FOUND',
    'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
  );
}

/** Opens a directory to fsync it, which makes renames into it durable. */
/**
 * Removes a directory others may be renaming files into: it is first renamed into `tmp` (on the
 * same filesystem; atomic), then removed there, so a rename into it either moved with it or finds
 * it gone, never a removal half done (ENOTEMPTY). Nothing when it does not exist. What a crash
 * leaves in `tmp` the temp sweep removes.
 */
export async function removeDirectory(dir: string, tmp: string): Promise<void> {
  const doomed = await tempName(tmp, '.removed');
  try {
    await rename(dir, doomed);
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  await rm(doomed, { recursive: true, force: true });
}

export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}
