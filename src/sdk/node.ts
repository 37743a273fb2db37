import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type ClientOptions, type DownloadOptions, Wharf } from './client.js';
import type { HasherFactory } from './hash.js';
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
 * declares application/octet-stream). Its fingerprint (the
 * resolved path, size and modification time) keys resumable state; whether the upload kept
 * there is continued depends on the file's SHA-256, read anew (a rewrite can keep both).
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
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const file = this.file(key);
    const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(temp, JSON.stringify({ key, record }), { mode: 0o600 });
    await rename(temp, file);
  }

  async delete(key: string): Promise<void> {
    await rm(this.file(key), { force: true });
  }
}

/**
 * Downloads an asset to `path`: written to a temporary file beside it, flushed, checked
 * against the asset's SHA-256, then renamed, so `path` is either the whole verified file or
 * untouched.
 */
export async function downloadToFile(
  wharf: Wharf,
  assetId: string,
  path: string,
  options: Omit<DownloadOptions, 'range'> = {},
): Promise<{ size: number; sha256: string | undefined }> {
  const download = await wharf.assets.download(assetId, options);
  const target = resolve(path);
  const temp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.part`);
  let size = 0;
  try {
    const out = createWriteStream(temp, { flags: 'wx', mode: 0o644 });
    await pipeline(
      Readable.fromWeb(download.body as import('node:stream/web').ReadableStream),
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          size += chunk.length;
          yield chunk;
        }
      },
      out as Writable,
    );
    const handle = await open(temp, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  return { size, sha256: download.sha256 };
}
