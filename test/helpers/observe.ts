import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';

/** One line of Wharf's JSON log. */
export interface LogLine {
  level: number;
  msg: string;
  reqId?: string;
  [field: string]: unknown;
}

export const INFO = 30;
export const WARN = 40;
export const ERROR = 50;

/**
 * Collects a server's log lines (pass `stream` as startWharf's logStream) and waits for lines
 * by what they say, not by time: the wait's limit only turns a missing line into a failure.
 */
export class LogCollector {
  readonly stream = new PassThrough();
  readonly lines: LogLine[] = [];
  private readonly events = new EventEmitter();
  private partial = '';

  constructor() {
    this.stream.on('data', (chunk: Buffer) => {
      const text = this.partial + chunk.toString('utf8');
      const parts = text.split('\n');
      this.partial = parts.pop() ?? '';
      for (const part of parts) {
        if (!part) continue;
        this.lines.push(JSON.parse(part) as LogLine);
        this.events.emit('line');
      }
    });
  }

  find(match: (line: LogLine) => boolean): LogLine | undefined {
    return this.lines.find(match);
  }

  async waitFor(match: (line: LogLine) => boolean, what: string, limitMs = 30_000): Promise<LogLine> {
    const found = this.find(match);
    if (found) return found;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.events.off('line', check);
        reject(
          new Error(`no log line ${what}; got:\n${this.lines.map((l) => JSON.stringify(l)).join('\n')}`),
        );
      }, limitMs);
      const check = () => {
        const line = this.find(match);
        if (!line) return;
        clearTimeout(timer);
        this.events.off('line', check);
        resolve(line);
      };
      this.events.on('line', check);
    });
  }
}

/** A scrape, parsed: the value of each series keyed `name{label="value",…}` (labels sorted). */
export type Scrape = Map<string, number>;

function seriesKey(name: string, labels: Record<string, string>): string {
  const inner = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(',');
  return `${name}{${inner}}`;
}

/** Parses Prometheus's text exposition format (the subset prom-client writes). */
export function parseScrape(text: string): Scrape {
  const series: Scrape = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key!] = JSON.parse(`"${value}"`) as string;
    }
    series.set(seriesKey(match[1]!, labels), Number(match[3]));
  }
  return series;
}

/** A series' value in a scrape; 0 when it is absent (a counter not yet incremented). */
export function seriesValue(scrape: Scrape, name: string, labels: Record<string, string> = {}): number {
  return scrape.get(seriesKey(name, labels)) ?? 0;
}

/** Every label value of every series whose name starts with `prefix`. */
export function labelValues(scrape: Scrape, prefix: string): string[] {
  const values: string[] = [];
  for (const key of scrape.keys()) {
    if (!key.startsWith(prefix)) continue;
    for (const [, value] of key.matchAll(/\w+="((?:[^"\\]|\\.)*)"/g)) values.push(value!);
  }
  return values;
}
