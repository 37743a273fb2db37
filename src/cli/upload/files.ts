import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { createReadStream, type Dirent } from 'node:fs';
import { glob, readdir, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { WharfError } from '../../sdk/errors.js';
import { UsageError } from '../args.js';

/** A file to upload and the name it gets. */
export interface LocalFile {
  path: string;
  name: string;
  size: number;
  /** Why it cannot be uploaded, known before anything is sent (a folder that cannot be read). */
  error?: { code: string; message: string };
}

const GLOB = /[*?[\]{}]/;

/** A folder that could not be listed: it fails on its own line, as an unreadable file does. */
interface Unreadable {
  path: string;
  error: NodeJS.ErrnoException;
}

/**
 * The files under `dir`, symbolic links followed: to a file (uploaded under the link's name, as
 * a link named on the command line is) and to a folder. Skipping them unsaid (as once) lost
 * files from "every file under" a folder. A folder reached again (a link back up the tree,
 * two links to one folder) is walked once, so a loop ends. A link to nothing is kept: it
 * fails as a file of its own (ENOENT), rather than vanish. Pipes, sockets and devices are not
 * files to upload, and are passed over. A folder that cannot be read (EACCES, or gone since its
 * parent was listed) is kept too, to fail on its own: thrown, it stopped the whole run before
 * any file was sent.
 */
async function walk(dir: string, seen = new Set<string>()): Promise<Array<string | Unreadable>> {
  let entries: Dirent<Buffer>[];
  try {
    const real = await realpath(dir);
    if (seen.has(real)) return [];
    seen.add(real);
    // Names as bytes: one that is not UTF-8 read as text came back with U+FFFD for its bytes,
    // a path to nothing, and its file failed ENOENT though it was there (a hunt).
    entries = await readdir(dir, { withFileTypes: true, encoding: 'buffer' });
  } catch (err) {
    return [{ path: dir, error: err as NodeJS.ErrnoException }];
  }
  const out: Array<string | Unreadable> = [];
  for (const entry of entries) {
    if (!isUtf8(entry.name)) {
      out.push(notUtf8(under(Buffer.from(dir), entry.name)));
      continue;
    }
    const path = join(dir, entry.name.toString());
    const kind = entry.isSymbolicLink() ? await stat(path).catch(() => undefined) : entry;
    if (kind === undefined) out.push(path);
    else if (kind.isDirectory()) out.push(...(await walk(path, seen)));
    else if (kind.isFile()) out.push(path);
  }
  const key = (item: string | Unreadable) => (typeof item === 'string' ? item : item.path);
  return out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/**
 * The files that `args` name: files, folders (every file under them, see walk()) and globs
 * (node:fs glob).
 * Each is named by its base name: Wharf's asset names are flat (no "/"), and an asset is found
 * by its id anyway; `prefix` is put before each name. A path that names nothing is a usage error;
 * one that names a pipe, a socket or a device fails on its own.
 */
export async function expand(args: string[], prefix = ''): Promise<LocalFile[]> {
  const files = new Map<string, LocalFile>();
  const add = async (path: string, named = false) => {
    const absolute = resolve(path);
    // Found by a walk or a glob but unreadable (a link to nothing): a file that fails on its own.
    const info = await stat(absolute).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ELOOP') return undefined;
      throw err;
    });
    if (!info) {
      // A name not UTF-8, from the command line or a glob (both text: its bytes came as U+FFFD).
      const raw = absolute.includes('\uFFFD') ? await rawPath(absolute) : undefined;
      if (raw && !isUtf8(raw)) {
        const failed = notUtf8(raw);
        files.set(failed.path, unreadable(failed, prefix));
      } else {
        files.set(absolute, { path: absolute, name: prefix + basename(absolute), size: 0 });
      }
    } else if (info.isDirectory()) {
      for (const item of await walk(absolute)) {
        if (typeof item === 'string') await add(item);
        else files.set(item.path, unreadable(item, prefix));
      }
    } else if (info.isFile()) {
      files.set(absolute, { path: absolute, name: prefix + basename(absolute), size: info.size });
    } else if (named) {
      // A pipe, socket or device named on the command line: passed over unsaid (as in a folder),
      // "0 uploaded" and exit 0 read as done. Not a usage error: it names something.
      const what = info.isFIFO() ? 'a pipe' : info.isSocket() ? 'a socket' : 'a device';
      files.set(absolute, {
        path: absolute,
        name: prefix + basename(absolute),
        size: 0,
        error: { code: 'NOT_A_FILE', message: `${path} is ${what}, not a file to upload.` },
      });
    }
  };
  for (const arg of args) {
    // A path that exists is that file, whatever it holds: "[draft] report.pdf" is a name, not a
    // character class (a shell that expanded a glob hands over such names).
    const existing = await stat(arg).catch(() => undefined);
    if (existing) {
      await add(arg, true);
      continue;
    }
    if (GLOB.test(arg)) {
      let matched = 0;
      for await (const match of glob(arg)) {
        await add(match);
        matched++;
      }
      if (matched === 0) throw new UsageError(`${arg}: no file matches.`);
      continue;
    }
    // Named on the command line, a name that is not UTF-8 reaches here as text, its bytes
    // U+FFFD: it names a file all the same, which fails on its own (see notUtf8).
    if (arg.includes('\uFFFD') && (await rawPath(resolve(arg)))) {
      await add(arg, true);
      continue;
    }
    throw new UsageError(`${arg}: no such file or folder.`);
  }
  return [...files.values()];
}

/**
 * A file or folder whose name is not UTF-8 (Linux allows any bytes but `/` and NUL): refused,
 * as INVALID_NAME, before anything is sent. An asset's name is text, and one made of it lossily
 * (U+FFFD for the bytes) would name no file here, nor tell two such files apart; read as text,
 * the file failed ENOENT though it was there (a hunt). Named by its path with each byte that is
 * not UTF-8 shown as `\xNN`; a folder so named is refused whole.
 */
function notUtf8(raw: Buffer): Unreadable {
  const path = escapeBytes(raw);
  const error: NodeJS.ErrnoException = new Error(
    `${path}: the name is not valid UTF-8 (the bytes that are not shown as \\xNN), and an asset's name is text: rename it to upload it.`,
  );
  error.code = 'INVALID_NAME';
  return { path, error };
}

/** `raw` as text: UTF-8 as it is, each byte that is not shown as `\xNN`. */
export function escapeBytes(raw: Buffer): string {
  const strict = new TextDecoder('utf-8', { fatal: true });
  let out = '';
  for (let i = 0; i < raw.length; ) {
    let length = 1;
    let char: string | undefined;
    // The shortest prefix that decodes: one character (a UTF-8 sequence is 1 to 4 bytes).
    for (; length <= 4 && i + length <= raw.length; length++) {
      try {
        char = strict.decode(raw.subarray(i, i + length));
        break;
      } catch {}
    }
    if (char === undefined) {
      out += `\\x${raw[i]!.toString(16).padStart(2, '0')}`;
      i++;
    } else {
      out += char;
      i += length;
    }
  }
  return out;
}

/**
 * The bytes of the path that `path` is the lossy text of (U+FFFD for bytes that are not UTF-8):
 * each name with U+FFFD found among its folder's names read as bytes. Undefined when none is
 * (nothing there); the first where several read so.
 */
async function rawPath(path: string): Promise<Buffer | undefined> {
  const parent = dirname(path);
  const name = basename(path);
  if (parent === path) return Buffer.from(path);
  const rawParent = parent.includes('\uFFFD') ? await rawPath(parent) : Buffer.from(parent);
  if (!rawParent) return undefined;
  if (!name.includes('\uFFFD')) return under(rawParent, Buffer.from(name));
  const names = await readdir(rawParent, { encoding: 'buffer' }).catch(() => []);
  const found = names.find((raw) => !isUtf8(raw) && raw.toString() === name);
  return found && under(rawParent, found);
}

/** The path of `name` in the folder `dir`, as bytes. */
function under(dir: Buffer, name: Buffer): Buffer {
  return Buffer.concat([dir, dir.at(-1) === sep.charCodeAt(0) ? Buffer.alloc(0) : Buffer.from(sep), name]);
}

function unreadable({ path, error }: Unreadable, prefix: string): LocalFile {
  return {
    path,
    name: prefix + basename(path),
    size: 0,
    error: { code: error.code ?? 'ERROR', message: errnoMessage(error) },
  };
}

/** A system error's message without its code in front ("EACCES: permission denied, …"): the code is printed beside it. */
export function errnoMessage(err: Error & { code?: unknown }): string {
  const code = typeof err.code === 'string' ? err.code : undefined;
  return code && err.message.startsWith(`${code}: `) ? err.message.slice(code.length + 2) : err.message;
}

/** The files under `dir` (what `sync` uploads when new or changed). */
export async function tree(dir: string, prefix = ''): Promise<LocalFile[]> {
  const info = await stat(dir).catch(() => undefined);
  if (!info) throw new UsageError(`${dir}: no such folder.`);
  if (!info.isDirectory()) throw new UsageError(`${dir}: not a folder (upload takes files).`);
  return expand([dir], prefix);
}

/**
 * Hex SHA-256 of the first `size` bytes of a file, streamed (node:crypto), reporting bytes as
 * they are read. Exactly those: the size is the one the upload declares and sends (one stat, see
 * transfer.ts), so a file that grows meanwhile (a log) is hashed as it is sent; read to its end,
 * the hash took in bytes the upload did not, and Wharf refused it CHECKSUM_MISMATCH (a hunt). A
 * file cut shorter than that fails with SOURCE_CHANGED, as one cut short while it is sent does.
 */
export async function hashFile(
  path: string,
  size: number,
  onBytes: (n: number) => void,
  signal: AbortSignal,
): Promise<string> {
  const hash = createHash('sha256');
  let read = 0;
  if (size > 0) {
    const stream = createReadStream(path, { start: 0, end: size - 1, highWaterMark: 1024 * 1024, signal });
    for await (const chunk of stream) {
      hash.update(chunk as Buffer);
      read += (chunk as Buffer).length;
      onBytes((chunk as Buffer).length);
    }
  }
  if (read < size) {
    throw new WharfError(
      'SOURCE_CHANGED',
      `${path}: it ended after ${read} of ${size} bytes while it was being hashed: deleted or changed during the upload.`,
    );
  }
  return hash.digest('hex');
}

/**
 * A shared budget of bytes per second (--limit-rate) for every stream of a run. Hand-written:
 * a token bucket over Web streams is a dozen lines, and the throttling packages wrap Node streams.
 */
export class RateLimit {
  private next = Date.now();
  constructor(private readonly bytesPerSecond: number) {}

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const now = Date.now();
    const at = Math.max(now, this.next);
    this.next = at + (bytes * 1000) / this.bytesPerSecond;
    if (at > now) {
      await new Promise<void>((done) => {
        const timer = setTimeout(done, at - now);
        signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          done();
        });
      });
    }
  }

  /** `stream`, delivered no faster than the budget allows (chunks cut to 64 KiB so it flows evenly). */
  throttle(stream: ReadableStream<Uint8Array>, signal?: AbortSignal): ReadableStream<Uint8Array> {
    const reader = stream.getReader();
    let pending: Uint8Array | undefined;
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          if (!pending?.byteLength) {
            const { done, value } = await reader.read();
            if (done) return controller.close();
            pending = value;
          }
          const chunk = pending.subarray(0, 64 * 1024);
          pending = pending.subarray(chunk.byteLength);
          await this.take(chunk.byteLength, signal);
          controller.enqueue(chunk);
        },
        cancel: (reason) => reader.cancel(reason),
      },
      { highWaterMark: 0 },
    );
  }
}
