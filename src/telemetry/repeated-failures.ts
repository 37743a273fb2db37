import { type Logger, stacklessError } from './log.js';

/** How often a failure that persists is logged again (with how often it happened meanwhile). */
export const REPEAT_LOG_INTERVAL_MS = 60_000;

/** A failure's identity: the same code and message is the same failure, whatever its stack. */
function failureKey(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  return `${typeof code === 'string' ? code : ''}\n${message}`;
}

/**
 * The log of work that runs over and over (the job runner polls every second) and may fail
 * every time for as long as a cause lasts (a full disk, a locked or unreachable database):
 * one line with the error and its stack when it starts failing, then at most one a minute
 * while the same failure persists, saying how many times it happened since the last line,
 * and one when the work succeeds again. Logged on every poll, a full disk wrote some 2.5 KB of
 * stack a second that said nothing new, and pushed the lines that did out of sight.
 */
export class RepeatedFailureLog {
  private failing:
    | { key: string; since: number; loggedAt: number; repeats: number; total: number }
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
      this.failing = { key, since: now, loggedAt: now, repeats: 0, total: 1 };
      this.logger()?.error({ err }, `${this.what} failed`);
      return;
    }
    failing.repeats += 1;
    failing.total += 1;
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
  }

  succeeded(): void {
    const failing = this.failing;
    if (!failing) return;
    this.failing = undefined;
    this.logger()?.info(
      { failures: failing.total, failedForSeconds: Math.round((this.now() - failing.since) / 1000) },
      `${this.what} recovered`,
    );
  }
}
