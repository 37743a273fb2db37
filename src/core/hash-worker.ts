import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { WharfError } from './errors.js';
import type { Digests } from './model.js';

// The worker's whole program: plain JavaScript, so it runs the same compiled or under tsx.
// It keeps one SHA-256 and one MD5 state per id. `update` hashes a block the main thread
// transferred and hands it back (the acknowledgement frees the sender's budget and the block
// is used again); `file` hashes a stretch of a file (a resume's catch-up); `digest` reads the
// states through copies, so they go on.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const states = new Map();
let readBuffer;
function state(id, md5Only) {
  let s = states.get(id);
  if (!s) states.set(id, (s = { sha256: md5Only ? null : createHash('sha256'), md5: createHash('md5') }));
  return s;
}
function hash(s, bytes) {
  if (s.sha256) s.sha256.update(bytes);
  s.md5.update(bytes);
}
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    hash(state(m.id, m.md5Only), Buffer.from(m.buf, 0, m.len));
    parentPort.postMessage({ op: 'ack', len: m.len, buf: m.buf }, [m.buf]);
  } else if (m.op === 'digest') {
    const s = state(m.id, m.md5Only);
    parentPort.postMessage({ op: 'reply', req: m.req, sha256: s.sha256 ? s.sha256.copy().digest('hex') : undefined, md5: s.md5.copy().digest('hex') });
  } else if (m.op === 'file') {
    try {
      const s = state(m.id, m.md5Only);
      readBuffer ??= Buffer.allocUnsafe(1 << 20);
      const fd = fs.openSync(m.path, 'r');
      try {
        let done = 0;
        while (done < m.length) {
          const n = fs.readSync(fd, readBuffer, 0, Math.min(readBuffer.length, m.length - done), m.start + done);
          if (n === 0) throw new Error(m.path + ' ended ' + done + ' bytes into the ' + m.length + ' to hash');
          hash(s, readBuffer.subarray(0, n));
          done += n;
        }
      } finally {
        fs.closeSync(fd);
      }
      parentPort.postMessage({ op: 'reply', req: m.req });
    } catch (err) {
      parentPort.postMessage({ op: 'reply', req: m.req, error: String(err && err.message || err), code: err && err.code });
    }
  } else if (m.op === 'drop') {
    states.delete(m.id);
  }
});
`;

type Message =
  | { op: 'ack'; len: number; buf: ArrayBuffer }
  | { op: 'reply'; req: number; sha256?: string; md5?: string; error?: string; code?: string };

export interface HashPoolOptions {
  /** Worker threads; each digest lives on one of them (the one with the fewest). */
  threads?: number;
  /** Bytes copied into one message to a worker (fewer, larger messages cost less). */
  blockBytes?: number;
  /**
   * Bytes one digest may have accepted but not yet seen hashed; past it, update() holds the
   * caller until the worker catches up, so a slow worker slows the socket instead of
   * growing a queue.
   */
  maxInFlightBytes?: number;
  /**
   * Bytes all digests together may have sent to the workers and not yet seen hashed. Past
   * it, a digest with a full block waits its turn (first come, first served) for another
   * block to be hashed, so what waits at the workers stays bounded however many uploads run
   * at once. (Each upload also fills one block of its own before sending it; a block sent
   * early, by flush(), is let through over the bound, at most one per upload.)
   */
  maxPoolBytes?: number;
}

const DEFAULTS = { threads: 1, blockBytes: 1 << 20, maxInFlightBytes: 2 << 20, maxPoolBytes: 32 << 20 };
// Blocks kept for reuse across digests: enough for a few streams in flight, no more.
const SPARE_BLOCKS = 16;

/**
 * SHA-256 and MD5 of byte streams, computed on worker threads so the event loop only copies
 * bytes (about 30 GiB/s here) instead of hashing them (about 0.5 GiB/s for both: half a core
 * at 250 MiB/s). Node's hashes are used as they are (OpenSSL, with SHA-NI): no hand-written
 * hashing, only the plumbing, since no library moves node:crypto states onto a worker.
 *
 * A worker that dies (or is terminated) fails every digest it held, with an error, never a
 * wrong answer; the next digest opened starts a new worker.
 */
export class HashPool {
  private readonly options: Required<HashPoolOptions>;
  private readonly threads: Array<HashThread | undefined>;
  private readonly spare: Buffer[] = [];
  private nextId = 1;
  /** Workers started so far (a new one replaces each that died). */
  started = 0;

  constructor(options: HashPoolOptions = {}) {
    this.options = { ...DEFAULTS, ...options };
    if (this.options.maxInFlightBytes < this.options.blockBytes) {
      throw new Error('maxInFlightBytes must hold at least one block');
    }
    if (this.options.maxPoolBytes < this.options.blockBytes) {
      throw new Error('maxPoolBytes must hold at least one block');
    }
    this.threads = new Array(Math.max(1, this.options.threads)).fill(undefined);
  }

  /**
   * A new digest of nothing yet: SHA-256 and MD5, or MD5 alone (a multipart part's ETag, whose
   * object the part chain hashes whole).
   */
  open(options: { md5Only?: boolean } = {}): OffThreadDigest {
    let best = 0;
    for (let i = 0; i < this.threads.length; i += 1) {
      const t = this.threads[i];
      if (!t || t.dead) {
        best = i;
        break;
      }
      if (t.digests.size < this.threads[best]!.digests.size) best = i;
    }
    let thread = this.threads[best];
    if (!thread || thread.dead) {
      thread = new HashThread(this);
      this.threads[best] = thread;
      this.started += 1;
    }
    const digest = new OffThreadDigest(thread, this.nextId++, this.options, options.md5Only === true);
    thread.digests.set(digest.id, digest);
    return digest;
  }

  /** Stops the workers; the digests they held fail. Later digests start new ones. */
  async close(): Promise<void> {
    const running = this.threads.filter((t): t is HashThread => t !== undefined);
    this.threads.fill(undefined);
    await Promise.all(running.map((t) => t.terminate()));
  }

  /** Bytes of blocks sent to the workers and not yet hashed, and the most there ever were. */
  reserved = 0;
  peakReserved = 0;
  /** Digests waiting for room in the pool's budget, in the order they asked. */
  private readonly queue: OffThreadDigest[] = [];

  /**
   * @internal Room for one block, for `digest`: true when taken now; false when `digest` is
   * queued instead and will be granted it (see OffThreadDigest.granted) once a block is freed.
   */
  reserve(digest: OffThreadDigest): boolean {
    if (this.queue.length === 0 && this.reserved + this.options.blockBytes <= this.options.maxPoolBytes) {
      this.take();
      return true;
    }
    this.queue.push(digest);
    return false;
  }

  /** @internal Room for a block sent early (see maxPoolBytes), taken even over the bound. */
  overdraw(): void {
    this.take();
  }

  /** @internal A block's room is free again: the first digest waiting gets it. */
  release(): void {
    this.reserved -= this.options.blockBytes;
    while (this.queue.length > 0 && this.reserved + this.options.blockBytes <= this.options.maxPoolBytes) {
      const next = this.queue.shift()!;
      this.take();
      // One that was dropped or failed meanwhile hands it straight back.
      if (!next.granted()) this.reserved -= this.options.blockBytes;
    }
  }

  /** @internal `digest` no longer waits (dropped, or its worker died). */
  leave(digest: OffThreadDigest): void {
    const at = this.queue.indexOf(digest);
    if (at >= 0) this.queue.splice(at, 1);
  }

  private take(): void {
    this.reserved += this.options.blockBytes;
    if (this.reserved > this.peakReserved) this.peakReserved = this.reserved;
  }

  /** @internal */
  takeBlock(): Buffer {
    // Its own ArrayBuffer (never a slice of Node's pool), so it can be transferred.
    return this.spare.pop() ?? Buffer.allocUnsafeSlow(this.options.blockBytes);
  }

  /** @internal */
  giveBack(block: Buffer): void {
    if (this.spare.length < SPARE_BLOCKS && block.length === this.options.blockBytes) this.spare.push(block);
  }
}

class HashThread {
  readonly digests = new Map<number, OffThreadDigest>();
  dead: Error | undefined;
  private readonly worker: Worker;
  private readonly requests = new Map<
    number,
    { digest: OffThreadDigest; resolve: (m: Message & { op: 'reply' }) => void; reject: (e: Error) => void }
  >();
  private readonly acks: OffThreadDigest[] = [];
  private ackHead = 0;
  private outstanding = 0;
  private nextReq = 1;

  constructor(private readonly pool: HashPool) {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on('message', (m: Message) => this.receive(m));
    worker.on('error', (err) => this.fail(workerFailure(err)));
    worker.on('exit', (code) => this.fail(new Error(`hashing worker exited (code ${code})`)));
    // Idle, it must not keep the process alive; working, it does (see send()). Unref'd after
    // the 'message' listener, not before: adding the first one refs the worker's port again,
    // and a worker whose digests never sent it a block (a body cut before its first MiB) kept
    // a finished process alive until something was hashed on it.
    worker.unref();
    this.worker = worker;
  }

  /** Posts a block of `digest`'s bytes; its acknowledgement comes back in order. */
  update(digest: OffThreadDigest, block: Buffer, len: number): void {
    this.acks.push(digest);
    this.send({ op: 'update', id: digest.id, md5Only: digest.md5Only, buf: block.buffer, len }, [
      block.buffer as ArrayBuffer,
    ]);
  }

  request(digest: OffThreadDigest, message: Record<string, unknown>): Promise<Message & { op: 'reply' }> {
    if (this.dead) return Promise.reject(this.dead);
    const req = this.nextReq++;
    return new Promise((resolve, reject) => {
      this.requests.set(req, { digest, resolve, reject });
      this.send({ ...message, id: digest.id, md5Only: digest.md5Only, req });
    });
  }

  drop(digest: OffThreadDigest): void {
    this.digests.delete(digest.id);
    if (!this.dead) this.worker.postMessage({ op: 'drop', id: digest.id });
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }

  takeBlock(): Buffer {
    return this.pool.takeBlock();
  }

  giveBack(block: Buffer): void {
    this.pool.giveBack(block);
  }

  reserve(digest: OffThreadDigest): boolean {
    return this.pool.reserve(digest);
  }

  overdraw(): void {
    this.pool.overdraw();
  }

  release(): void {
    this.pool.release();
  }

  leave(digest: OffThreadDigest): void {
    this.pool.leave(digest);
  }

  private send(message: Record<string, unknown>, transfer?: ArrayBuffer[]): void {
    if (this.outstanding++ === 0) this.worker.ref();
    this.worker.postMessage(message, transfer);
  }

  private receive(m: Message): void {
    if (--this.outstanding === 0) this.worker.unref();
    if (m.op === 'ack') {
      const digest = this.acks[this.ackHead++]!;
      if (this.ackHead > 1024 && this.ackHead * 2 > this.acks.length) {
        this.acks.splice(0, this.ackHead);
        this.ackHead = 0;
      }
      this.pool.giveBack(Buffer.from(m.buf));
      this.pool.release();
      digest.acknowledged(m.len);
      return;
    }
    const pending = this.requests.get(m.req);
    this.requests.delete(m.req);
    pending?.resolve(m);
  }

  private fail(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    this.worker.unref();
    for (const { reject } of this.requests.values()) reject(err);
    this.requests.clear();
    for (const digest of this.digests.values()) digest.failed(err);
    this.digests.clear();
    // The blocks it was sent will never come back: their room in the pool is free (for the
    // digests of other workers; this one's have just failed and left the queue).
    for (let i = this.ackHead; i < this.acks.length; i += 1) this.pool.release();
    this.acks.length = 0;
    this.ackHead = 0;
  }
}

/**
 * Why a worker failed, for the digests it held. One that could not start
 * (ERR_WORKER_INIT_FAILED: no file descriptor, thread or memory left for it, as under a burst
 * of uploads) is load, not a fault: its uploads are refused as SERVICE_UNAVAILABLE (503, the
 * client retries) and the next digest starts another worker. Any other failure is a bug (500).
 */
function workerFailure(err: unknown): Error {
  if ((err as { code?: unknown } | null)?.code !== 'ERR_WORKER_INIT_FAILED') {
    return new Error(`hashing worker failed: ${(err as Error).message}`);
  }
  const refusal = new WharfError(
    'SERVICE_UNAVAILABLE',
    'The server cannot start a thread at the moment; try again shortly.',
  );
  (refusal as Error).cause = err;
  return refusal;
}

/**
 * One SHA-256 + MD5 state on a worker. Not for concurrent use: one caller feeds it at a time
 * and waits for update() when it returns a promise.
 */
export class OffThreadDigest {
  /** Bytes accepted so far (hashed, or on their way to the worker). */
  offset = 0;
  /** Bytes accepted but not yet acknowledged by the worker, and the most there ever were. */
  inFlight = 0;
  peakInFlight = 0;
  /** How many times update() held its caller for the worker to catch up. */
  holds = 0;
  private posted = 0;
  private block: Buffer | undefined;
  private staged = 0;
  private waiter: { resolve: () => void; reject: (e: Error) => void } | undefined;
  /** Waiting in the pool's queue for room for a block; resolved with the room granted. */
  private poolWaiter: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private dropped = false;

  /** @internal */
  constructor(
    private readonly thread: HashThread,
    readonly id: number,
    private readonly options: Required<HashPoolOptions>,
    /** Only MD5 is computed (see HashPool.open). */
    readonly md5Only = false,
  ) {}

  /** False once its worker died or it was dropped: its state is gone. */
  get usable(): boolean {
    return this.failure === undefined && !this.dropped;
  }

  /**
   * Adds `chunk` (copied: the caller may reuse or pass it on at once). Returns a promise when
   * the bytes in flight are at their bound; the caller waits for it before the next update.
   * Throws (or rejects) once the worker is gone.
   */
  update(chunk: Buffer): Promise<void> | undefined {
    this.check();
    return this.accept(chunk, 0);
  }

  /** Sends what is staged now (a request that ends leaves nothing behind in this process). */
  flush(): void {
    if (!this.block) return;
    if (this.staged > 0 && this.usable) {
      this.thread.overdraw();
      this.post();
    } else {
      this.thread.giveBack(this.block);
      this.block = undefined;
      this.inFlight -= this.staged;
      this.staged = 0;
    }
  }

  /** The digests of what it has accepted so far; it can go on being updated. */
  async digests(): Promise<Digests> {
    if (this.md5Only) throw new Error('this digest computes MD5 only');
    const { size, sha256, md5 } = await this.read();
    return { size, sha256: sha256!, md5 };
  }

  /** The size and MD5 of what it has accepted so far. */
  async md5(): Promise<{ size: number; md5: string }> {
    const { size, md5 } = await this.read();
    return { size, md5 };
  }

  private async read(): Promise<{ size: number; sha256: string | undefined; md5: string }> {
    this.check();
    this.flush();
    const size = this.offset;
    const reply = await this.thread.request(this, { op: 'digest' });
    return { size, sha256: reply.sha256, md5: reply.md5! };
  }

  /**
   * Hashes bytes [`this.offset`, `end`) of `path` (on the worker), where `fileStart` is the
   * file offset of this digest's byte 0. Throws when the file ends first: the digest is then
   * unusable.
   */
  async catchUp(path: string, end: number, fileStart = 0): Promise<void> {
    this.check();
    if (end < this.offset) throw new Error(`cannot hash backwards from ${this.offset} to ${end}`);
    if (end === this.offset) return;
    this.flush();
    const start = this.offset;
    const reply = await this.thread.request(this, {
      op: 'file',
      path,
      start: fileStart + start,
      length: end - start,
    });
    if (reply.error !== undefined) {
      // With the file system's code (ENOENT: a concurrent completion moved the file away),
      // which callers tell apart from a file that ended short.
      const err: NodeJS.ErrnoException = new Error(reply.error);
      if (reply.code !== undefined) err.code = reply.code;
      this.drop();
      this.failure = err;
      throw err;
    }
    this.offset = end;
  }

  /** Frees its state on the worker; it cannot be used after. */
  drop(): void {
    if (this.dropped) return;
    this.dropped = true;
    if (this.block) {
      this.thread.giveBack(this.block);
      this.block = undefined;
      this.inFlight -= this.staged;
      this.staged = 0;
    }
    this.thread.drop(this);
    this.waiter?.reject(new Error('digest dropped'));
    this.waiter = undefined;
    this.leavePool(new Error('digest dropped'));
  }

  /** @internal The pool granted the room this digest waited for; false if it no longer waits. */
  granted(): boolean {
    const waiter = this.poolWaiter;
    this.poolWaiter = undefined;
    if (!waiter) return false;
    waiter.resolve();
    return true;
  }

  /** @internal The worker hashed `len` bytes of this digest. */
  acknowledged(len: number): void {
    this.posted -= len;
    this.inFlight -= len;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.resolve();
  }

  /** @internal Its worker is gone, and its state with it. */
  failed(err: Error): void {
    this.failure ??= err;
    // A block it was filling goes back to the pool's spares now, not at drop().
    if (this.block) {
      this.thread.giveBack(this.block);
      this.block = undefined;
      this.inFlight -= this.staged;
      this.staged = 0;
    }
    this.waiter?.reject(err);
    this.waiter = undefined;
    this.leavePool(err);
  }

  private leavePool(err: Error): void {
    if (!this.poolWaiter) return;
    this.thread.leave(this);
    this.poolWaiter.reject(err);
    this.poolWaiter = undefined;
  }

  private check(): void {
    if (this.failure) throw this.failure;
    if (this.dropped) throw new Error('digest used after it was dropped');
  }

  private accept(chunk: Buffer, from: number): Promise<void> | undefined {
    let at = from;
    while (at < chunk.length) {
      if (!this.block) {
        // A block is filled only when it could be posted whole within the bound.
        if (this.posted + this.options.blockBytes > this.options.maxInFlightBytes) {
          this.holds += 1;
          return new Promise<void>((resolve, reject) => {
            this.waiter = { resolve, reject };
          }).then(() => {
            this.check();
            return this.accept(chunk, at);
          });
        }
        this.block = this.thread.takeBlock();
        this.staged = 0;
      }
      const n = chunk.copy(this.block, this.staged, at);
      this.staged += n;
      this.inFlight += n;
      this.offset += n;
      at += n;
      if (this.inFlight > this.peakInFlight) this.peakInFlight = this.inFlight;
      if (this.staged === this.block.length) {
        // Room in the pool's budget, now or (queued) once another block is hashed: the full
        // block is held meanwhile, and so is the caller.
        if (!this.thread.reserve(this)) {
          this.holds += 1;
          return new Promise<void>((resolve, reject) => {
            this.poolWaiter = { resolve, reject };
          }).then(() => {
            if (!this.usable) {
              // Dropped or failed between the grant and now: the room goes back.
              this.thread.release();
              this.check();
            }
            this.post();
            return this.accept(chunk, at);
          });
        }
        this.post();
      }
    }
    return undefined;
  }

  private post(): void {
    const block = this.block!;
    const len = this.staged;
    this.block = undefined;
    this.staged = 0;
    this.posted += len;
    this.thread.update(this, block, len);
  }
}

/**
 * A pass-through that feeds `digest` the bytes on their way, holding each chunk only while
 * the worker is behind by more than the digest's bound.
 */
export function hashingPassThrough(digest: OffThreadDigest): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      feed(digest, chunk, callback);
    },
  });
}

/** Adds `chunk` to `digest`, then passes it on through `callback` (or fails it). */
export function feed(digest: OffThreadDigest, chunk: Buffer, callback: TransformCallback): void {
  let held: Promise<void> | undefined;
  try {
    held = digest.update(chunk);
  } catch (err) {
    callback(err as Error);
    return;
  }
  if (held) held.then(() => callback(null, chunk), callback);
  else callback(null, chunk);
}

let shared: HashPool | undefined;

function defaultThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

/**
 * The process's hashing workers: one per core but one (the event loop keeps that one busy),
 * at most 4. Each upload is hashed on one worker, so more only help concurrent uploads; on 2
 * cores, 1 and 2 workers gave the same time for two concurrent 1 GiB uploads (the cores are
 * all busy either way).
 */
export function hashPool(): HashPool {
  shared ??= new HashPool({ threads: defaultThreads() });
  return shared;
}
