import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Clock } from './clock.js';
import type { IdSource } from './ids.js';
import type { BlobStore, Store } from './ports.js';
import { isStorageFull } from './unavailable.js';

export interface CheckResult {
  /**
   * `full`: storage only, its probe write found no room (ENOSPC, EDQUOT; on S3 a used-up
   * quota, STORAGE_FULL by then: see s3-client.ts). The node still
   * serves what needs none (downloads, listings), so it stays ready; uploads get 507.
   */
  status: 'ok' | 'failed' | 'full';
  /** Why it failed: it did not answer in time, or it answered with an error. */
  reason?: 'timeout' | 'error';
  /** The failure itself, for the log; never sent to clients (paths, hosts, bucket names). */
  error?: unknown;
}

export interface Readiness {
  ready: boolean;
  /** The node is stopping (see HealthService.stopping): not ready, whatever the checks say. */
  stopping: boolean;
  checks: { database: CheckResult; storage: CheckResult };
}

export interface HealthSettings {
  /** How long each check may take before it counts as failed. */
  timeoutMs: number;
  /** How long an answer is reused, so probes at any rate cost storage at most one write per period. */
  cacheMs: number;
}

/**
 * Storage keys start with an account id, which never begins with a dot: nothing an upload
 * writes can meet the probe's key.
 */
const PROBE_PREFIX = '.wharf/readyz';

class Timeout extends Error {}

/**
 * Readiness: whether this node can do its work, i.e. whether the database answers a query and
 * storage takes, returns and deletes an object. Liveness (the process runs) needs none of it.
 */
export class HealthService {
  private readonly probeKey: string;
  private last: { at: number; result: Readiness } | undefined;
  private running: Promise<Readiness> | undefined;
  private isStopping = false;

  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly clock: Clock,
    ids: IdSource,
    private readonly settings: HealthSettings = { timeoutMs: 3000, cacheMs: 1000 },
  ) {
    // One key per node: nodes probing the same bucket at once never touch each other's object.
    this.probeKey = `${PROBE_PREFIX}/${ids.token(8)}`;
  }

  /** Checks both, at once; concurrent callers share one run, and a recent answer is reused. */
  async readiness(): Promise<Readiness> {
    const now = this.clock.now();
    if (!(this.last && now - this.last.at < this.settings.cacheMs)) {
      this.running ??= this.check().finally(() => {
        this.running = undefined;
      });
      this.last = { at: now, result: await this.running };
    }
    // Not cached: the first answer after the stop began says so.
    const { result } = this.last;
    return !this.isStopping ? result : { ...result, ready: false, stopping: true };
  }

  /**
   * The node is about to stop (WHARF_SHUTDOWN_DELAY): from now on it reads as not ready, so a
   * balancer that polls /readyz sends it no more requests before it stops listening.
   */
  stopping(): void {
    this.isStopping = true;
  }

  /** Migrations of a newer Wharf in the database (see Wharf.superseded); none while it is this one's. */
  newerMigrations(): Promise<string[]> {
    return this.store.newerMigrations();
  }

  private async check(): Promise<Readiness> {
    const [database, storage] = await Promise.all([this.timed(() => this.store.ping()), this.probeStorage()]);
    // A full disk keeps the node ready: it still serves reads (docs/reliability.md, "A full disk").
    const ready = database.status === 'ok' && storage.status !== 'failed';
    return { ready, stopping: false, checks: { database, storage } };
  }

  /** Writes a small object the way uploads are written, reads it back, and deletes it. */
  private async writeProbe(): Promise<void> {
    const bytes = Buffer.from(`wharf readiness probe ${this.clock.now()}\n`);
    const facts = {
      size: bytes.length,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      md5: createHash('md5').update(bytes).digest('hex'),
      contentType: 'text/plain',
    };
    await this.blobs.write(this.probeKey, Readable.from([bytes]), () => facts);
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of await this.blobs.read(this.probeKey)) chunks.push(chunk as Buffer);
      if (!Buffer.concat(chunks).equals(bytes)) throw new Error('Storage returned other bytes than written.');
    } finally {
      await this.blobs.delete(this.probeKey);
    }
  }

  /** The storage check: `full` when the probe found no room, rather than `failed`. */
  private async probeStorage(): Promise<CheckResult> {
    const result = await this.timed(() => this.writeProbe());
    return result.reason === 'error' && isStorageFull(result.error)
      ? { status: 'full', error: result.error }
      : result;
  }

  private async timed(check: () => Promise<void>): Promise<CheckResult> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Timeout()), this.settings.timeoutMs);
    });
    try {
      // A check that hangs keeps running in the background; the answer does not wait for it.
      await Promise.race([check(), timeout]);
      return { status: 'ok' };
    } catch (error) {
      return error instanceof Timeout
        ? { status: 'failed', reason: 'timeout' }
        : { status: 'failed', reason: 'error', error };
    } finally {
      clearTimeout(timer);
    }
  }
}
