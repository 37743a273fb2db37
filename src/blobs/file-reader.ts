import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { ReadBuffers } from '../core/read-buffers.js';

/**
 * Bytes `start`–`end` (inclusive; to the end of the file when `end` is undefined) of an open
 * file, read into buffers lent by `buffers` (see ReadBuffers), one chunk ahead of the
 * consumer. Closes the handle when it ends or is destroyed, as `createReadStream` does; it is
 * written by hand only because `createReadStream` allocates a new Buffer for every chunk.
 */
export function readFileRange(handle: FileHandle, buffers: ReadBuffers, start = 0, end?: number): Readable {
  return new FileRangeReader(handle, buffers, start, end ?? Number.POSITIVE_INFINITY);
}

class FileRangeReader extends Readable {
  private position: number;

  constructor(
    private readonly handle: FileHandle,
    private readonly buffers: ReadBuffers,
    start: number,
    private readonly end: number,
  ) {
    // One chunk queued: the consumer writes one while the next is read.
    super({ highWaterMark: buffers.size });
    this.position = start;
  }

  override _read(): void {
    const want = Math.min(this.buffers.size, this.end - this.position + 1);
    if (want <= 0) {
      this.push(null);
      return;
    }
    const buffer = this.buffers.lend();
    this.handle.read(buffer, 0, want, this.position).then(
      ({ bytesRead }) => {
        if (bytesRead === 0) {
          this.buffers.giveBack(buffer);
          this.push(null);
          return;
        }
        this.position += bytesRead;
        this.push(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
      },
      (err: unknown) => {
        this.buffers.giveBack(buffer);
        this.destroy(err as Error);
      },
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // FileHandle.close waits for a read still in flight before it closes the descriptor.
    this.handle.close().then(
      () => callback(error),
      (closeError: unknown) => callback(error ?? (closeError as Error)),
    );
  }
}
