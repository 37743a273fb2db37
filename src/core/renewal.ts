/** A renewal running on a timer until stopped. */
export interface Renewal {
  stop(): void;
}

/**
 * Calls `renew` every `everyMs` until stopped (or until `done` says so), one call at a time: a
 * tick while the last renewal still waits (a database that stopped answering) adds none, since
 * they would pile up on it. A failed renewal is reported to `failed` and left for the next tick;
 * a lease renewed a third of its length apart outlasts two failures. The timer keeps no process
 * alive.
 */
export function renewEvery(
  everyMs: number,
  renew: () => Promise<unknown>,
  done?: () => boolean,
  failed?: (err: unknown) => void,
): Renewal {
  let renewing = false;
  const timer = setInterval(() => {
    if (done?.()) {
      clearInterval(timer);
      return;
    }
    if (renewing) return;
    renewing = true;
    renew()
      .catch((err: unknown) => failed?.(err))
      .finally(() => {
        renewing = false;
      });
  }, everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
