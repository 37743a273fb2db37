/**
 * Read buffers that downloads hand back for reuse.
 *
 * Why Wharf keeps its own: every Buffer a download reads is memory outside V8's heap that V8
 * still counts toward its next full collection. A 1 GiB download through `createReadStream`
 * allocates 1,024 fresh 1 MiB Buffers. After a burst of small requests had grown and then
 * shrunk the heap, those allocations set off a full collection every 60–90 ms for the whole
 * download: more than half of the event loop's time, and the download fell to 78–84 % of a
 * bare read-stream server (bench/README.md, "Issue 14, third pass"). A download whose writer
 * hands each buffer back once the socket has taken its bytes allocates nothing after its
 * first few chunks, and so sets off no collection at all.
 *
 * Lending is safe only because handing back is opt-in: a reader lends, and only a consumer
 * that is the sole holder of a chunk (the response writer, once its write has completed)
 * gives it back. A consumer that keeps chunks (hashing, collecting a probe) never gives them
 * back; the pool then allocates, exactly as a read stream does, and V8 collects them as usual.
 */
export class ReadBuffers {
  private readonly free: Buffer[] = [];
  /** Buffers out on loan, by their memory: a chunk may be a view of the start of one. */
  private readonly lent = new WeakMap<ArrayBufferLike, Buffer>();
  private allocations = 0;

  /**
   * @param size bytes per buffer
   * @param keep at most this many idle buffers are kept; more are left to the collector
   */
  constructor(
    readonly size: number,
    private readonly keep: number,
  ) {}

  /** A buffer of `size` bytes with arbitrary content, lent until given back. */
  lend(): Buffer {
    // allocUnsafeSlow: a buffer of its own memory, never a slice of Node's shared 8 KiB pool.
    let buffer = this.free.pop();
    if (!buffer) {
      buffer = Buffer.allocUnsafeSlow(this.size);
      this.allocations++;
    }
    this.lent.set(buffer.buffer, buffer);
    return buffer;
  }

  /** True when `chunk` is (a view of) a buffer this pool lent and has not had back. */
  owns(chunk: Uint8Array): boolean {
    return this.lent.has(chunk.buffer);
  }

  /**
   * Takes back the buffer `chunk` views. The caller promises nothing else holds it any more;
   * a chunk the pool did not lend, or already had back, is ignored.
   */
  giveBack(chunk: Uint8Array): void {
    const buffer = this.lent.get(chunk.buffer);
    if (!buffer) return;
    this.lent.delete(chunk.buffer);
    if (this.free.length < this.keep) this.free.push(buffer);
  }

  /** Buffers allocated so far: what giving back saves shows here (tests). */
  get allocated(): number {
    return this.allocations;
  }

  /** Idle buffers held (for tests). */
  get idle(): number {
    return this.free.length;
  }
}

/**
 * Reads of stored objects in 1 MiB chunks instead of the stream default of 64 KiB: a 1 GiB
 * download measured 55 % of a bare createReadStream server with 64 KiB, 78 % with 256 KiB and
 * 93 % with 1 MiB (bench: npm run bench, download). Sixteen idle buffers (16 MiB) cover about
 * five downloads at once, each with a chunk being read, one queued and one being written.
 */
export const downloadBuffers = new ReadBuffers(1 << 20, 16);
