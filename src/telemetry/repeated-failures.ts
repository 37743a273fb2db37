import { type Logger, stacklessError } from './log.js';

/** How often a failure that persists is logged again (with how often it happened meanwhile). */
export const REPEAT_LOG_INTERVAL_MS = 60_000;

/**
 * A failure's identity: its code when it has one (SQLITE_BUSY is one failure whatever the
 * message says, and a message may name a path or an id that differs every time), else its
 * message; never its stack.
 */
function failureKey(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return `code:${code}`;
  return `message:${err instanceof Error ? err.message : String(err)}`;
}

/**
 * The log of work that runs over and over (the job runner polls every second) and may fail
 * every time for as long as a cause lasts (a full disk, a locked or unreachable database):
 * one line with the error and its stack when it starts failing, then at most one a minute
 * while the same failure persists, saying how many times it happened since the last line,
 * and one when the work succeeds again. Logged on every poll, a full disk wrote some 2.5 KB of
 * stack a second that said nothing new, and pushed the lines that did out of sight.
 *
 * A success does not end the window: work that fails every other poll (a busy database) is the
 * same failure persisting, so it too is logged at most once a minute, and `recovered` at most
 * once per failure line. The failure is forgotten only when a success comes a whole interval
 * after the last failure.
 */
export class RepeatedFailureLog {
  private failing:
    | {
        key: string;
        since: number;
        /** When the last failure line was written. */
        loggedAt: number;
        lastFailureAt: number;
        repeats: number;
        total: number;
        /** Whether `recovered` was logged since the last failure line. */
        recoveryLogged: boolean;
      }
    | undefined;

  constructor(
    private readonly logger: () => Logger | undefined,
    /** What fails, as the lines say it: `job runner` gives `job runner failed`. */
    private readonly what: string,
    private readonly now: () => number,
  ) {}

  failed(err: unknown): void {
    const key = failureKey(err);
    const now = this.now();
    const failing = this.failing;
    if (failing?.key !== key) {
      // A first failure, or another one than before: in full.
      this.failing = {
        key,
        since: now,
        loggedAt: now,
        lastFailureAt: now,
        repeats: 0,
        total: 1,
        recoveryLogged: false,
      };
      this.logger()?.error({ err }, `${this.what} failed`);
      return;
    }
    failing.repeats += 1;
    failing.total += 1;
    failing.lastFailureAt = now;
    if (now - failing.loggedAt < REPEAT_LOG_INTERVAL_MS) return;
    this.logger()?.error(
      {
        error: stacklessError(err),
        repeats: failing.repeats,
        failingSince: new Date(failing.since).toISOString(),
      },
      `${this.what} still failing`,
    );
    failing.loggedAt = now;
    failing.repeats = 0;
    failing.recoveryLogged = false;
  }

  succeeded(): void {
    const failing = this.failing;
    if (!failing) return;
    const now = this.now();
    if (!failing.recoveryLogged) {
      failing.recoveryLogged = true;
      this.logger()?.info(
        { failures: failing.total, failedForSeconds: Math.round((now - failing.since) / 1000) },
        `${this.what} recovered`,
      );
    }
    if (now - failing.lastFailureAt >= REPEAT_LOG_INTERVAL_MS) this.failing = undefined;
  }
}
