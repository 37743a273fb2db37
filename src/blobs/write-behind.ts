import { fdatasync, type WriteStream } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';

/** Bytes written between two early flushes of a file (see writeBehind). */
export const WRITE_BEHIND_BYTES = 64 << 20;

/**
 * A pass-through placed before `file` that starts the disk's writeback as the file grows:
 * after every `everyBytes`, an fdatasync of what has been written so far, in the background
 * (at most one at a time), while the bytes keep coming.
 *
 * Why: the kernel keeps written pages dirty until its own writeback catches up (seconds, or
 * 10 % of memory), so the fsync that makes a finished upload durable had up to a whole file
 * to write while the client waited: about 0.4 s per GiB on this disk, at the end of every
 * large upload. Flushed as it goes, the disk writes during the transfer, and the final fsync
 * finds little left. The final fsync is still what makes the file durable: these flushes
 * are only a head start, and a failed one is ignored.
 *
 * The stream ends only once a flush in flight has finished, so none outlives the file's
 * descriptor on a normal end. (After a destroy, one may meet a descriptor already closed:
 * EBADF, ignored.)
 */
export function writeBehind(file: WriteStream, everyBytes: number = WRITE_BEHIND_BYTES): WriteBehind {
  return new WriteBehind(file, everyBytes);
}

export class WriteBehind extends Transform {
  /** Flushes that finished (for tests and curiosity). */
  flushes = 0;
  private passed = 0;
  private flushedAt = 0;
  private inFlight: Promise<void> | undefined;
  /** The file's descriptor while it is open ('open' hands it over; WriteStream's type has no fd). */
  private fd: number | undefined;

  constructor(
    file: WriteStream,
    private readonly everyBytes: number,
  ) {
    super();
    file.once('open', (fd: number) => {
      this.fd = fd;
    });
    file.once('close', () => {
      this.fd = undefined;
    });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.passed += chunk.length;
    if (this.passed - this.flushedAt >= this.everyBytes) this.flush();
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.inFlight) this.inFlight.then(() => callback());
    else callback();
  }

  private flush(): void {
    const { fd } = this;
    if (this.inFlight || fd === undefined) return;
    this.flushedAt = this.passed;
    this.inFlight = new Promise((resolve) => {
      fdatasync(fd, (err) => {
        if (!err) this.flushes += 1;
        this.inFlight = undefined;
        resolve();
      });
    });
  }
}
