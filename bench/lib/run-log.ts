import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';

/** A benchmark's log: each line carries the seconds since the run started. */
export function runLog(): { log: (message: string) => void; seconds: () => number } {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const log = (message: string) => {
    process.stdout.write(`[${seconds().toFixed(0).padStart(4)}s] ${message}\n`);
  };
  return { log, seconds };
}

/** A positive whole number from the environment, or `fallback` when the variable is unset or empty. */
export function positiveSetting(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive whole number`);
  return value;
}

/** The 1, 5 and 15 minute load averages, for the log: figures from a busy machine say so. */
export function loadAverage(): string {
  return `${loadavg()
    .map((l) => l.toFixed(2))
    .join(', ')} (1, 5, 15 min)`;
}
