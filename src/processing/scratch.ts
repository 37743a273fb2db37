import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { WharfError } from '../core/errors.js';

/** Leftovers of a process that died mid-work are removed after this long. */
const STALE_MS = 3600_000;

/**
 * Local working space for tools that need a seekable file (libvips reading an image
 * without buffering it, ffmpeg, poppler): each piece of work gets a directory of its own,
 * removed when the work ends however it ends. Nodes that share a data directory each work
 * in their own subdirectories, so one never removes another's files in use.
 */
export class Scratch {
  constructor(private readonly root: string) {}

  /** Creates the root and removes what crashed processes left there long ago. */
  async init(now = Date.now()): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    for (const entry of await readdir(this.root)) {
      const path = join(this.root, entry);
      const info = await stat(path).catch(() => undefined);
      if (info && now - info.mtimeMs > STALE_MS) await rm(path, { recursive: true, force: true });
    }
  }

  /** Runs `work` in a fresh directory and removes it afterwards, whatever happens. */
  async withDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
    const dir = join(this.root, randomUUID());
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      return await work(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
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
          callback(
            new WharfError('IMAGE_TOO_LARGE', `The input is larger than ${maxBytes} bytes.`, {
              limit_bytes: maxBytes,
            }),
          );
        } else {
          callback(null, chunk);
        }
      },
    });
    await pipeline(source, limit, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
    return bytes;
  }
}
