import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { processTempDir } from '../blobs/process-temp.js';
import { WharfError } from '../core/errors.js';

/**
 * Local working space for tools that need a seekable file (libvips reading an image
 * without buffering it, ffmpeg, poppler): each piece of work gets a directory of its own,
 * removed when the work ends however it ends. Nodes that share a data directory each work
 * in their own subdirectories, so one never removes another's files in use.
 */
export class Scratch {
  /** This process's own directory under the root, once init() made it. */
  private own: string | undefined;

  constructor(private readonly root: string) {}

  /**
   * Makes this process's own directory under the root, first removing those of processes of
   * this host that are gone, whatever their age (see processTempDir): what a crash left holds
   * hard links that would keep deleted assets' bytes on disk.
   */
  async init(): Promise<void> {
    this.own = await processTempDir(this.root);
  }

  /**
   * Removes this process's own directory, once no work runs any more (the core is closing): a
   * clean stop leaves nothing behind, not even an empty directory. It holds only the
   * directories of withDir, this instance's own; those of other processes are left alone.
   */
  async close(): Promise<void> {
    if (this.own !== undefined) await rm(this.own, { recursive: true, force: true });
  }

  /** Runs `work` in a fresh directory and removes it afterwards, whatever happens. */
  async withDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
    const dir = join(this.own ?? this.root, randomUUID());
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      return await work(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Puts the bytes of `source` at `path`. A local file is hard-linked, not copied: store files
   * are replaced by rename and never rewritten in place, so the link keeps the bytes it was
   * made with even if the object is replaced or deleted meanwhile, and removing the work
   * directory removes only the link. On another filesystem (EXDEV), where links are refused
   * (EPERM), or when the file is gone, the bytes are streamed from storage instead.
   */
  static async place(
    source: { file?: string | undefined; open(): Promise<Readable> },
    path: string,
    maxBytes = Number.POSITIVE_INFINITY,
  ): Promise<number> {
    if (source.file !== undefined) {
      const linked = await link(source.file, path).then(
        () => true,
        () => false,
      );
      if (linked) {
        const { size } = await stat(path);
        if (size > maxBytes) throw tooLarge(maxBytes);
        return size;
      }
    }
    return Scratch.save(await source.open(), path, maxBytes);
  }

  /**
   * Streams `source` to `path` (never whole in memory); refuses beyond `maxBytes` as the bytes
   * arrive, so an oversized input fills no disk.
   */
  static async save(source: Readable, path: string, maxBytes = Number.POSITIVE_INFINITY): Promise<number> {
    let bytes = 0;
    const limit = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        if (bytes > maxBytes) {
          callback(tooLarge(maxBytes));
        } else {
          callback(null, chunk);
        }
      },
    });
    await pipeline(source, limit, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
    return bytes;
  }
}

function tooLarge(maxBytes: number): WharfError {
  return new WharfError('IMAGE_TOO_LARGE', `The input is larger than ${maxBytes} bytes.`, {
    limit_bytes: maxBytes,
  });
}
