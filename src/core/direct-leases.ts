import type { Clock } from './clock.js';
import type { UploadStore } from './ports.js';

/**
 * How many renewals fit in one lease: a live upload's lease is renewed a third of it apart, so
 * two renewals in a row may fail (the database briefly away, a loaded event loop) before another
 * node's sweep could take the upload for abandoned.
 */
const RENEWALS_PER_LEASE = 3;

/**
 * Leases of the direct uploads (POST /v1/assets with the bytes as the body) this process is
 * streaming. A direct upload ends with its request, so only the process that runs the request
 * can tell it is still alive; one killed mid-body (SIGKILL, a lost machine) left its row pending
 * until its expiry, a day away, holding its token's files, bytes and open-upload slot all that
 * time. So a direct upload's expiry is a lease instead: short (WHARF_DIRECT_UPLOAD_LEASE), and
 * moved forward, while the request streams, by the process that runs it. A dead process renews
 * nothing, and the sweep of any node, this one after a restart or another sharing the database,
 * ends the upload once the lease has run out (see UploadSweep.sweep), as it ends any expired
 * upload. No owner is recorded on the row: a lease needs none, and survives a process that never
 * comes back.
 *
 * One UPDATE renews every live lease of the process at once, per interval, not one per upload.
 * The clocks of the nodes sharing a database must agree to well within a third of a lease.
 */
export class DirectUploadLeases {
  private readonly live = new Set<string>();
  private readonly renewing = new Set<Promise<unknown>>();

  constructor(
    private readonly store: Pick<UploadStore, 'renewUploads'>,
    private readonly clock: Clock,
    /** How long a lease lasts from its last renewal. */
    readonly leaseMs: number,
  ) {}

  /** How often this process renews its leases (see RENEWALS_PER_LEASE). */
  get renewEveryMs(): number {
    return Math.max(1, Math.floor(this.leaseMs / RENEWALS_PER_LEASE));
  }

  /** When a lease taken or renewed at `now` runs out. */
  until(now = this.clock.now()): number {
    return now + this.leaseMs;
  }

  /** This process streams the body of `uploadId` now: its lease is renewed until `release`. */
  hold(uploadId: string): void {
    this.live.add(uploadId);
  }

  /** The request of `uploadId` is over (its ending is recorded, or remembered to be). */
  release(uploadId: string): void {
    this.live.delete(uploadId);
  }

  /** Whether a renewal still waits on the database. */
  get busy(): boolean {
    return this.renewing.size > 0;
  }

  /**
   * Moves the lease of every direct upload this process streams to a full lease from now, in one
   * statement; how many rows took it. A failure (the database away) is the caller's to report:
   * nothing is lost, the next renewal tries again, and a lease outlasts two failed ones. A
   * renewal that waited on the database past a later one changes nothing (leases never move back).
   */
  renew(): Promise<number> {
    if (this.live.size === 0) return Promise.resolve(0);
    const renewal = this.store.renewUploads([...this.live], this.until());
    const settled: Promise<void> = renewal.then(
      () => void this.renewing.delete(settled),
      () => void this.renewing.delete(settled),
    );
    this.renewing.add(settled);
    return renewal;
  }

  /** Once no renewal waits on the database any more (a stop waits for that before closing it). */
  async settled(): Promise<void> {
    await Promise.all(this.renewing);
  }
}
