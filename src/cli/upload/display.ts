import { sep } from 'node:path';
import type { MultiBar, SingleBar } from 'cli-progress';

/** One file's outcome, as `--json` prints it (snake_case, like the API). */
export interface FileOutcome {
  path: string;
  name: string;
  size: number;
  /**
   * created: uploaded now (and verified); exists: the account already held the content, nothing
   * was sent; verifying: uploaded, but Wharf has not finished checking the bytes against the
   * SHA-256 (--no-wait, or interrupted while waiting): a mismatch will delete the asset.
   */
  status: 'created' | 'exists' | 'verifying' | 'failed' | 'interrupted';
  asset_id?: string;
  /**
   * The asset's name, what `get` and `rm` take: `name` for one created, but for `exists` the
   * name the content was first uploaded under (a deduplicated asset keeps it).
   */
  asset_name?: string;
  sha256?: string;
  strategy?: string;
  resumed?: boolean;
  /**
   * Bytes this run sent (a part sent again after a failure counts again); a run cut off reports
   * what it sent before the cut.
   */
  bytes_sent?: number;
  /** Bytes an earlier run had stored (a resumed upload's parts), not sent again by this one. */
  bytes_resumed?: number;
  error?: { code: string; message: string };
}

/**
 * What an upload run tells its user as it goes; a TTY, a pipe and `--json` each get their own.
 * A file is known by its path: two files of one name (`a/same.bin`, `b/same.bin`) are two
 * files, as they are two assets.
 */
export interface Display {
  begin(files: { path: string; name: string; size: number }[]): void;
  progress(path: string, phase: 'hashing' | 'uploading', bytes: number, size: number): void;
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

// C0 and C1 controls and DEL, and the bidirectional controls (marks, embeddings, overrides,
// isolates): a name is free text, and in a line for a terminal a newline split it in two (one
// line per file no more), an escape sequence rewrote the screen, U+202E showed it reversed.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\p{Bidi_Control}]/gu;

/** `text` for a terminal or a log line: those characters shown escaped (`\u000a`), as `wharf keys list` shows them. */
function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * How a file is shown: its name, and where files of one name are uploaded together (each
 * becomes its own asset), `from`, the end of its path that tells it from the others (`a/same.bin`).
 */
interface Label {
  name: string;
  from?: string;
}

/** Each file's Label, by its path. */
function labels(files: { path: string; name: string }[]): Map<string, Label> {
  const byName = new Map<string, string[]>();
  for (const file of files) byName.set(file.name, [...(byName.get(file.name) ?? []), file.path]);
  const out = new Map<string, Label>();
  for (const [name, paths] of byName) {
    if (paths.length === 1) {
      out.set(paths[0]!, { name });
      continue;
    }
    const segments = paths.map((path) => path.split(sep));
    // The fewest last segments that differ between all of them (at most the whole path: the
    // paths are distinct).
    const longest = Math.max(...segments.map((s) => s.length));
    for (let count = 1; count <= longest; count++) {
      const ends = segments.map((s) => s.slice(-count).join('/'));
      if (new Set(ends).size === ends.length || count === longest) {
        paths.forEach((path, i) => {
          out.set(path, { name, from: ends[i]! });
        });
        break;
      }
    }
  }
  return out;
}

function line(outcome: FileOutcome, label: Label | undefined): string {
  const what =
    outcome.status === 'failed' || outcome.status === 'interrupted'
      ? `${outcome.error?.code ?? ''} ${outcome.error?.message ?? ''}`.trim()
      : `${outcome.asset_id}${outcome.resumed ? ' (resumed)' : ''}${renamed(outcome)}`;
  const shown = label?.from ? `${outcome.name} (${label.from})` : outcome.name;
  return `${outcome.status.padEnd(11)} ${printable(shown)}  ${human(outcome.size)}  ${printable(what)}\n`;
}

/**
 * The asset's own name where it is not the file's (content held under another name): `get` and
 * `rm` find the asset by that name, not by the file's.
 */
function renamed(outcome: FileOutcome): string {
  const name = outcome.asset_name;
  return name === undefined || name === outcome.name ? '' : ` (asset named ${JSON.stringify(name)})`;
}

/** Plain lines (a pipe, a log): one per file as it finishes. */
export function plainDisplay(write: (text: string) => void): Display {
  let shown = new Map<string, Label>();
  return {
    begin: (files) => {
      shown = labels(files);
    },
    progress: () => {},
    finish: (outcome) => write(line(outcome, shown.get(outcome.path))),
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
  let shown = new Map<string, Label>();
  // A bar names the file in flight: by the end of its path where another has its name.
  const labelOf = (path: string) => {
    const label = shown.get(path);
    return printable(label?.from ?? label?.name ?? path);
  };
  return {
    begin(files) {
      shown = labels(files);
      const total = files.reduce((sum, f) => sum + f.size, 0);
      overall = bars.create(total, 0, { label: `${files.length} file(s)`, rate: '' });
    },
    progress(path, phase, bytes, size) {
      let entry = perFile.get(path);
      if (!entry) {
        entry = { bar: bars.create(size, 0, { label: labelOf(path), rate: '' }), samples: [], last: 0 };
        perFile.set(path, entry);
      }
      const now = Date.now();
      if (phase === 'hashing') {
        entry.bar.update(bytes, { label: `${labelOf(path)} (hashing)`, rate: '' });
        return;
      }
      entry.samples.push([now, bytes]);
      while (entry.samples.length > 2 && now - entry.samples[0]![0] > 3000) entry.samples.shift();
      entry.bar.update(bytes, { label: labelOf(path), rate: rate(entry.samples) });
      inFlight.set(path, bytes);
      overallSamples.push([now, current()]);
      while (overallSamples.length > 2 && now - overallSamples[0]![0] > 3000) overallSamples.shift();
      overall?.update(current(), { rate: rate(overallSamples) });
    },
    finish(outcome) {
      inFlight.delete(outcome.path);
      done += outcome.size;
      overall?.update(current());
      // Logged before the bars are drawn again (removing one draws them): cli-progress prints a
      // logged line only when it draws, and stop() does not, so the last file's line was lost.
      bars.log(line(outcome, shown.get(outcome.path)));
      const entry = perFile.get(outcome.path);
      if (entry) {
        entry.bar.stop();
        bars.remove(entry.bar);
        perFile.delete(outcome.path);
      } else {
        bars.update();
      }
    },
    end() {
      bars.stop();
    },
  };
}
