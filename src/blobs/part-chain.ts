import { Worker } from 'node:worker_threads';
import type { Digests } from '../core/model.js';

/** A part file as it was hashed (or is now): which file, by inode, and how many bytes. */
export interface PartIdentity {
  partNumber: number;
  /** Bytes after the part file's header. */
  size: number;
  ino: number;
  mtimeMs: number;
}

/** A part named for composition, where it lies now. */
export interface NamedPart extends PartIdentity {
  path: string;
}

// The worker's whole program: plain JavaScript, so it runs the same compiled or under tsx.
// One chain is the SHA-256 and MD5 of parts hashed in order; `update` hashes one part file
// from `skip` to its end and says which file it was (fstat of the descriptor it read).
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const chains = new Map();
const buffer = Buffer.allocUnsafe(1 << 20);
parentPort.on('message', (m) => {
  try {
    if (m.op === 'update') {
      let chain = chains.get(m.chain);
      if (!chain) chains.set(m.chain, (chain = { sha256: createHash('sha256'), md5: createHash('md5') }));
      const fd = fs.openSync(m.path, 'r');
      try {
        const st = fs.fstatSync(fd);
        let position = m.skip;
        for (;;) {
          const n = fs.readSync(fd, buffer, 0, buffer.length, position);
          if (n === 0) break;
          const bytes = buffer.subarray(0, n);
          chain.sha256.update(bytes);
          chain.md5.update(bytes);
          position += n;
        }
        parentPort.postMessage({ req: m.req, size: position - m.skip, ino: st.ino, mtimeMs: st.mtimeMs });
      } finally {
        fs.closeSync(fd);
      }
    } else if (m.op === 'digest') {
      const chain = chains.get(m.chain) ?? { sha256: createHash('sha256'), md5: createHash('md5') };
      parentPort.postMessage({ req: m.req, sha256: chain.sha256.copy().digest('hex'), md5: chain.md5.copy().digest('hex') });
    } else if (m.op === 'drop') {
      chains.delete(m.chain);
      parentPort.postMessage({ req: m.req });
    }
  } catch (err) {
    parentPort.postMessage({ req: m.req, error: err.code || String(err) });
  }
});
`;

interface Reply {
  req: number;
  error?: string;
  size?: number;
  ino?: number;
  mtimeMs?: number;
  sha256?: string;
  md5?: string;
}

/**
 * SHA-256 and MD5 of multipart uploads' parts, in part order, hashed as the parts arrive and
 * on a worker thread (the event loop receives parts meanwhile, and the other core hashes).
 * SHA-256 cannot be combined from the parts' own digests, so the whole is hashed in order:
 * each stored part that continues the chain (1, 2, 3, …) is read once, from the page cache,
 * soon after it was written. At completion the named parts are checked against what was
 * hashed, file by file (inode, size, time: a part replaced since is another file), and only
 * what the chain does not cover is hashed then. State lives in this process: after a restart,
 * or for parts another node wrote, completion hashes them itself.
 */
export class PartChains {
  private worker: Worker | undefined;
  private nextReq = 1;
  private nextChain = 1;
  private readonly pending = new Map<number, (reply: Reply) => void>();
  private readonly chains = new Map<string, Chain>();

  /**
   * A part of upload `id` (whose parts lie in `dir`, named by number after a `skip`-byte
   * header) was stored: hashes it and any later ones already there, if they continue the chain.
   */
  advance(id: string, dir: string, skip: number): void {
    let chain = this.chains.get(id);
    if (!chain) {
      chain = new Chain(this.nextChain++);
      this.chains.set(id, chain);
    }
    const running = chain;
    running.queue(async () => {
      while (!running.broken) {
        const partNumber = running.hashed.length + 1;
        const reply = await this.call({
          op: 'update',
          chain: running.id,
          path: `${dir}/${partNumber}`,
          skip,
        });
        if (reply.error === 'ENOENT') return;
        if (reply.error !== undefined) {
          running.broken = true;
          return;
        }
        running.hashed.push({ partNumber, size: reply.size!, ino: reply.ino!, mtimeMs: reply.mtimeMs! });
      }
    });
  }

  /**
   * The digests of the named parts in order: the chain's where it hashed exactly these files,
   * the rest hashed now. `parts` must lie in their current place (the claimed directory).
   */
  async digests(id: string, parts: NamedPart[], skip: number): Promise<Digests> {
    let chain = this.chains.get(id);
    this.chains.delete(id);
    if (chain) await chain.idle();
    const covered =
      chain !== undefined &&
      !chain.broken &&
      chain.hashed.length <= parts.length &&
      chain.hashed.every((h, i) => sameFile(h, parts[i]!));
    if (!covered) {
      if (chain) await this.drop(chain);
      chain = new Chain(this.nextChain++);
    }
    const used = chain!;
    try {
      for (const part of parts.slice(used.hashed.length)) {
        const reply = await this.call({ op: 'update', chain: used.id, path: part.path, skip });
        if (reply.error !== undefined) throw new Error(`hashing part ${part.partNumber}: ${reply.error}`);
        // Replaced while this ran: what was hashed is not the file being composed.
        if (!sameFile({ ...part, size: reply.size!, ino: reply.ino!, mtimeMs: reply.mtimeMs! }, part)) {
          throw new Error(`part ${part.partNumber} changed while it was hashed`);
        }
        used.hashed.push(part);
      }
      const reply = await this.call({ op: 'digest', chain: used.id });
      return { size: parts.reduce((sum, p) => sum + p.size, 0), sha256: reply.sha256!, md5: reply.md5! };
    } finally {
      await this.drop(used);
    }
  }

  /** The upload ended without composition (aborted, expired): its chain goes. */
  forget(id: string): void {
    const chain = this.chains.get(id);
    this.chains.delete(id);
    if (chain) void chain.idle().then(() => this.drop(chain));
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private async drop(chain: Chain): Promise<void> {
    await this.call({ op: 'drop', chain: chain.id });
  }

  private call(message: Record<string, unknown>): Promise<Reply> {
    const worker = this.start();
    const req = this.nextReq++;
    return new Promise((resolve) => {
      this.pending.set(req, resolve);
      // Working, it keeps the process alive; idle, it must not (see start()).
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ ...message, req });
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on('message', (reply: Reply) => {
      const resolve = this.pending.get(reply.req);
      this.pending.delete(reply.req);
      if (this.pending.size === 0) worker.unref();
      resolve?.(reply);
    });
    const fail = (why: string) => {
      if (this.worker === worker) this.worker = undefined;
      // Every chain the worker held is gone with it; callers see the failure and fall back.
      for (const chain of this.chains.values()) chain.broken = true;
      for (const [req, resolve] of this.pending) resolve({ req, error: why });
      this.pending.clear();
    };
    worker.on('error', (err) => fail(String(err)));
    worker.on('exit', () => fail('hashing worker exited'));
    this.worker = worker;
    return worker;
  }
}

class Chain {
  readonly hashed: PartIdentity[] = [];
  broken = false;
  private tail: Promise<void> = Promise.resolve();

  constructor(readonly id: number) {}

  queue(work: () => Promise<void>): void {
    this.tail = this.tail.then(work, work).catch(() => {
      this.broken = true;
    });
  }

  idle(): Promise<void> {
    return this.tail;
  }
}

function sameFile(a: PartIdentity, b: PartIdentity): boolean {
  return a.partNumber === b.partNumber && a.size === b.size && a.ino === b.ino && a.mtimeMs === b.mtimeMs;
}
