import type { MultiBar, SingleBar } from 'cli-progress';

/** One file's outcome, as `--json` prints it (snake_case, like the API). */
export interface FileOutcome {
  path: string;
  name: string;
  size: number;
  /** created: uploaded now; exists: the account already held the content, nothing was sent. */
  status: 'created' | 'exists' | 'failed' | 'interrupted';
  asset_id?: string;
  sha256?: string;
  strategy?: string;
  resumed?: boolean;
  bytes_sent?: number;
  error?: { code: string; message: string };
}

/** What an upload run tells its user as it goes; a TTY, a pipe and `--json` each get their own. */
export interface Display {
  begin(files: { name: string; size: number }[]): void;
  progress(name: string, phase: 'hashing' | 'uploading', bytes: number, size: number): void;
  finish(outcome: FileOutcome): void;
  end(): void;
}

export function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function line(outcome: FileOutcome): string {
  const what =
    outcome.status === 'failed' || outcome.status === 'interrupted'
      ? `${outcome.error?.code ?? ''} ${outcome.error?.message ?? ''}`.trim()
      : `${outcome.asset_id}${outcome.resumed ? ' (resumed)' : ''}`;
  return `${outcome.status.padEnd(11)} ${outcome.name}  ${human(outcome.size)}  ${what}\n`;
}

/** Plain lines (a pipe, a log): one per file as it finishes. */
export function plainDisplay(write: (text: string) => void): Display {
  return {
    begin: () => {},
    progress: () => {},
    finish: (outcome) => write(line(outcome)),
    end: () => {},
  };
}

/** Nothing as it goes: `--json` prints one document at the end. */
export function silentDisplay(): Display {
  return { begin: () => {}, progress: () => {}, finish: () => {}, end: () => {} };
}

/**
 * Bars on a terminal (cli-progress, on stderr): the whole run, and each file in flight with its
 * rate and ETA; a finished file leaves its plain line above the bars.
 */
export async function barDisplay(stream: NodeJS.WriteStream): Promise<Display> {
  const { MultiBar, Presets } = await import('cli-progress');
  const format = (
    options: unknown,
    params: { value: number; total: number; eta: number },
    payload: Payload,
  ) => {
    const width = 24;
    const filled = params.total > 0 ? Math.round((params.value / params.total) * width) : width;
    const bar = '█'.repeat(Math.min(width, filled)) + '░'.repeat(Math.max(0, width - filled));
    const eta = Number.isFinite(params.eta) && params.value < params.total ? `ETA ${params.eta}s` : '';
    void options;
    return `${payload.label.slice(0, 32).padEnd(32)} ${bar} ${human(params.value).padStart(10)} / ${human(params.total).padEnd(10)} ${payload.rate.padStart(12)} ${eta}`;
  };
  interface Payload {
    label: string;
    rate: string;
  }
  const bars: MultiBar = new MultiBar(
    { stream, format, hideCursor: true, clearOnComplete: true, etaBuffer: 20, fps: 8 },
    Presets.shades_grey,
  );
  const perFile = new Map<string, { bar: SingleBar; samples: Array<[number, number]>; last: number }>();
  let overall: SingleBar | undefined;
  let done = 0;
  const inFlight = new Map<string, number>();
  const rate = (samples: Array<[number, number]>) => {
    const [t0, b0] = samples[0]!;
    const [t1, b1] = samples.at(-1)!;
    return t1 > t0 ? `${human(((b1 - b0) * 1000) / (t1 - t0))}/s` : '';
  };
  const overallSamples: Array<[number, number]> = [];
  const current = () => done + [...inFlight.values()].reduce((a, b) => a + b, 0);
  return {
    begin(files) {
      const total = files.reduce((sum, f) => sum + f.size, 0);
      overall = bars.create(total, 0, { label: `${files.length} file(s)`, rate: '' });
    },
    progress(name, phase, bytes, size) {
      let entry = perFile.get(name);
      if (!entry) {
        entry = { bar: bars.create(size, 0, { label: name, rate: '' }), samples: [], last: 0 };
        perFile.set(name, entry);
      }
      const now = Date.now();
      if (phase === 'hashing') {
        entry.bar.update(bytes, { label: `${name} (hashing)`, rate: '' });
        return;
      }
      entry.samples.push([now, bytes]);
      while (entry.samples.length > 2 && now - entry.samples[0]![0] > 3000) entry.samples.shift();
      entry.bar.update(bytes, { label: name, rate: rate(entry.samples) });
      inFlight.set(name, bytes);
      overallSamples.push([now, current()]);
      while (overallSamples.length > 2 && now - overallSamples[0]![0] > 3000) overallSamples.shift();
      overall?.update(current(), { rate: rate(overallSamples) });
    },
    finish(outcome) {
      const entry = perFile.get(outcome.name);
      if (entry) {
        entry.bar.stop();
        bars.remove(entry.bar);
        perFile.delete(outcome.name);
      }
      inFlight.delete(outcome.name);
      done += outcome.size;
      overall?.update(current());
      bars.log(line(outcome));
    },
    end() {
      bars.stop();
    },
  };
}
