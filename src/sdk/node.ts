import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, open, readFile, readlink, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type ClientOptions, type Download, type DownloadOptions, Wharf } from './client.js';
import type { HasherFactory } from './hash.js';
import { throwIfAborted } from './http.js';
import { typeFromName } from './media-types.js';
import type { UploadSource } from './sources.js';
import type { ResumeRecord, ResumeStore } from './upload.js';

export * from './index.js';

/** node:crypto's SHA-256 (native, several times faster than the portable one). */
export const nodeSha256: HasherFactory = () => {
  const hash = createHash('sha256');
  return {
    update: (chunk) => {
      hash.update(chunk);
    },
    hex: () => hash.digest('hex'),
  };
};

/** A client with Node's defaults (native hashing). */
export function connect(options: ClientOptions): Wharf {
  return new Wharf({ sha256: nodeSha256, ...options });
}

/**
 * A file on disk, read in ranges as the upload asks (never whole). Its type, unless given, is
 * the one its name's extension stands for (as a browser types a File), else none (the upload
 * declares application/octet-stream). Its resumable state is kept under its resolved path
 * (its identity), with its fingerprint (the path, size and modification time); whether the
 * upload kept there is continued depends on the file's SHA-256, read anew (a rewrite can keep
 * both), and an upload begun before the file changed is given up.
 */
export async function fileSource(path: string, options: { name?: string; type?: string } = {}) {
  const absolute = resolve(path);
  const info = await stat(absolute);
  if (!info.isFile()) throw new Error(`${path} is not a file.`);
  const name = options.name ?? basename(absolute);
  const source: UploadSource = {
    name,
    size: info.size,
    type: options.type ?? typeFromName(name),
    reopenable: true,
    fingerprint: `path:${absolute}:${info.size}:${Math.trunc(info.mtimeMs)}`,
    identity: `path:${absolute}`,
    open: (start = 0, end = info.size) =>
      end <= start
        ? new ReadableStream({ start: (c) => c.close() })
        : (Readable.toWeb(
            createReadStream(absolute, { start, end: end - 1, highWaterMark: 256 * 1024 }),
          ) as ReadableStream<Uint8Array>),
  };
  return source;
}

/**
 * Resumable state on disk: one small JSON file per upload in `dir` (named by a hash of its
 * key), written to a temporary name and renamed, so a crash never leaves half a record, and
 * readable only by its owner (it names uploads that the credential may continue).
 */
export class FileResumeStore implements ResumeStore {
  constructor(readonly dir: string) {}

  private file(key: string): string {
    return join(this.dir, `${createHash('sha256').update(key).digest('hex').slice(0, 32)}.json`);
  }

  async get(key: string): Promise<ResumeRecord | undefined> {
    try {
      const saved = JSON.parse(await readFile(this.file(key), 'utf8')) as {
        key: string;
        record: ResumeRecord;
      };
      return saved.key === key ? saved.record : undefined;
    } catch {
      return undefined;
    }
  }

  async set(key: string, record: ResumeRecord): Promise<void> {
    await writePrivateFile(this.file(key), JSON.stringify({ key, record }));
  }

  async delete(key: string): Promise<void> {
    await rm(this.file(key), { force: true });
  }
}

/**
 * @internal Writes `text` to `path` whole (a reader sees the old file or the new one, never
 * half) and readable by its owner only (0600), making its folder (0700) when missing. The bytes
 * go to a new file beside `path` under a random name, created exclusively (O_EXCL) with mode
 * 0600: a file someone else placed there first, even under the very name, is never opened, so
 * nothing written here lands in a file another user can read. It is flushed, then renamed over
 * `path`; on failure it is removed and `path` left as it was. FileResumeStore keeps its records
 * with it, and the wharf CLI its config file (which holds a key).
 */
export async function writePrivateFile(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${randomBytes(8).toString('hex')}.tmp`;
  // Outside the try: a name that was taken (EEXIST) is someone else's file, not ours to remove.
  const handle = await open(temp, 'wx', 0o600);
  try {
    try {
      await handle.writeFile(text);
      // 0600 exactly, whatever the umask took from it at creation (through our descriptor).
      await handle.chmod(0o600);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/**
 * Downloads an asset to `path`. A regular file (or nothing yet) is written to a temporary file
 * beside it, flushed, checked against the asset's SHA-256, then renamed over it, so `path` is
 * either the whole verified file or untouched. A symbolic link is written through: the file it
 * points to is replaced that way (beside it, not beside the link), the link kept. Anything else
 * already there (a FIFO, a device, a terminal) cannot be renamed over and is written to
 * directly, checked as the bytes pass: a mismatch still fails with INTEGRITY_ERROR, but the
 * bytes were written by then. So is an inherited descriptor that `path` names (/dev/stdout,
 * /dev/fd/3…, or a link to one), left open; `descriptor` in the result says which. A replaced
 * file's mode is kept, and, run as root, its owner and group. In a world-writable sticky folder, a link owned by neither this user
 * nor the folder's owner is not followed (EACCES). Aborted (`signal`), the temporary file is
 * removed.
 */
export async function downloadToFile(
  wharf: Wharf,
  assetId: string,
  path: string,
  options: Omit<DownloadOptions, 'range'> = {},
): Promise<{ size: number; sha256: string | undefined; descriptor?: number }> {
  // Before the download: a target that cannot be written fails without a byte fetched.
  const target = await writeTarget(resolve(path));
  const download = await wharf.assets.download(assetId, options);
  if (target.kind === 'descriptor') {
    // Never closed: fd 1 and 2 stay the process's stdout and stderr.
    const { fd } = target;
    const out =
      fd === 1 ? process.stdout : fd === 2 ? process.stderr : createWriteStream('', { fd, autoClose: false });
    return { ...(await copy(download, out, fd > 2, options.signal)), descriptor: fd };
  }
  if (target.kind === 'direct') {
    return copy(download, createWriteStream(target.path, { flags: 'w', mode: 0o644 }), true, options.signal);
  }
  const temp = join(dirname(target.path), tempName(basename(target.path)));
  const mode = target.mode ?? 0o644;
  try {
    const saved = await copy(download, createWriteStream(temp, { flags: 'wx', mode }), true, options.signal);
    const handle = await open(temp, 'r+');
    try {
      // Run as root (sudo, a deploy script), the replaced file's owner and group too, as `cp`
      // over it would keep them: a file of another user's must not turn into root's. Anyone else
      // may only give a file away to themselves, so theirs is always their own.
      if (target.owner && process.getuid?.() === 0) await handle.chown(target.owner.uid, target.owner.gid);
      // The replaced file's mode exactly (the umask narrowed the one it was created with).
      if (target.mode !== undefined) await handle.chmod(target.mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target.path);
    return saved;
  } catch (err) {
    await rm(temp, { force: true });
    throw namingTarget(err, temp, path);
  }
}

/** The longest file name most filesystems take (NAME_MAX: ext4, XFS, Btrfs, tmpfs), in bytes. */
const NAME_MAX = 255;

/**
 * The temporary file's name for a target named `base`: `.base.<12 hex>.part`, beside it (one
 * filesystem, so the rename is atomic). Its 19 bytes more made a target of 237 to 255 bytes fail
 * with ENAMETOOLONG, so a long name is cut to fit, by bytes (the limit is in bytes, not UTF-16
 * units) and never inside a UTF-8 sequence (a cut one would be encoded as U+FFFD, longer still).
 */
function tempName(base: string): string {
  const suffix = `.${randomBytes(6).toString('hex')}.part`;
  const room = NAME_MAX - 1 - suffix.length;
  const bytes = Buffer.from(base);
  if (bytes.length <= room) return `.${base}${suffix}`;
  let end = room;
  // Back to the start of the sequence the cut falls in (continuation bytes are 10xxxxxx).
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return `.${bytes.subarray(0, end).toString()}${suffix}`;
}

/**
 * An error about the temporary file (a folder that is not there, or not writable: `open`),
 * told as one about `path`, the target the caller named: the temporary file is ours, not theirs.
 */
function namingTarget(err: unknown, temp: string, path: string): unknown {
  const errno = err as NodeJS.ErrnoException & { dest?: string };
  // A rename's error names both files: left as it is.
  if (errno?.path !== temp || errno.dest !== undefined) return err;
  errno.message = errno.message.replace(`'${temp}'`, `'${path}'`);
  errno.path = path;
  return errno;
}

/**
 * Downloads an asset into `out` (process.stdout, a socket, any Writable), checked against its
 * SHA-256 as the bytes pass: a mismatch fails with INTEGRITY_ERROR after they were written.
 * `end: false` leaves `out` open (as process.stdout must be).
 */
export async function downloadToStream(
  wharf: Wharf,
  assetId: string,
  out: Writable,
  options: Omit<DownloadOptions, 'range'> & { end?: boolean } = {},
): Promise<{ size: number; sha256: string | undefined }> {
  const { end = true, ...rest } = options;
  return copy(await wharf.assets.download(assetId, rest), out, end, options.signal);
}

async function copy(
  download: Download,
  out: Writable,
  end: boolean,
  signal: AbortSignal | undefined,
): Promise<{ size: number; sha256: string | undefined }> {
  let size = 0;
  try {
    await pipeline(
      Readable.fromWeb(download.body as import('node:stream/web').ReadableStream),
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          size += chunk.length;
          yield chunk;
        }
      },
      out,
      { end, ...(signal && { signal }) },
    );
  } catch (err) {
    throwIfAborted(signal);
    throw err;
  }
  return { size, sha256: download.sha256 };
}

/** Where a download to a path goes: see writeTarget. */
type Target =
  | { kind: 'file'; path: string; mode: number | undefined; owner?: { uid: number; gid: number } }
  | { kind: 'direct'; path: string }
  | { kind: 'descriptor'; fd: number };

/**
 * Where a download to `path` goes, found by following its symbolic links one by one:
 * - a name for an inherited descriptor (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N),
 *   the path or any link on the way: that descriptor, written to as it is, so a shell's
 *   `> file` offset or `>> file` append is kept (its link into /proc, followed, names the file
 *   the shell opened, which renaming over would replace);
 * - a regular file, or nothing yet: that file, replaced (a new one keeps the old one's mode,
 *   and, written by root, its owner and group);
 * - anything else (a FIFO, a device): `path`, written to.
 * In a world-writable sticky folder (/tmp), a link is followed only if it is the user's own or
 * the folder owner's, as the kernel's fs.protected_symlinks does: a link someone else planted
 * there must not aim the download at a file of the user's.
 */
async function writeTarget(path: string): Promise<Target> {
  let current = path;
  for (let hops = 0; hops < 40; hops++) {
    const fd = descriptorOf(current);
    if (fd !== undefined) return { kind: 'descriptor', fd };
    const info = await lstat(current).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!info) return { kind: 'file', path: current, mode: undefined };
    if (info.isSymbolicLink()) {
      await checkLinkOwner(path, current, info.uid);
      current = resolve(dirname(current), await readlink(current));
      continue;
    }
    if (info.isDirectory()) {
      throw Object.assign(new Error(`${path} is a folder: name the file to write.`), { code: 'EISDIR' });
    }
    if (info.isFile()) {
      return {
        kind: 'file',
        path: current,
        mode: info.mode & 0o777,
        owner: { uid: info.uid, gid: info.gid },
      };
    }
    return { kind: 'direct', path: current };
  }
  throw Object.assign(new Error(`${path}: too many symbolic links.`), { code: 'ELOOP' });
}

/** The descriptor an absolute path names, if it is one of the names for an inherited one. */
function descriptorOf(path: string): number | undefined {
  if (path === '/dev/stdout') return 1;
  if (path === '/dev/stderr') return 2;
  const match = /^\/(?:dev\/fd|proc\/(?:self|thread-self|(\d+))\/fd)\/(\d+)$/.exec(path);
  if (!match || (match[1] !== undefined && Number(match[1]) !== process.pid)) return undefined;
  return Number(match[2]);
}

/** Refuses a link in a world-writable sticky folder owned by neither this user nor the folder's owner. */
async function checkLinkOwner(path: string, link: string, owner: number): Promise<void> {
  const folder = await stat(dirname(link));
  const shared = (folder.mode & 0o1002) === 0o1002;
  if (!shared || owner === folder.uid || owner === process.getuid?.()) return;
  throw Object.assign(
    new Error(
      `${path}: refusing to follow ${link}, a symbolic link in a shared sticky folder owned by another user (uid ${owner}).`,
    ),
    { code: 'EACCES' },
  );
}
