import { createReadStream } from 'node:fs';
import { Agent, type IncomingHttpHeaders, type OutgoingHttpHeaders, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { MiB } from './config.js';

// Keep-alive, as any real client would; enough sockets for every concurrency used here.
export const agent = new Agent({ keepAlive: true, maxSockets: 256 });

/** A body streamed from a pre-generated file: a prefix, then `length - prefix` bytes of the file. */
export interface FileBody {
  prefix: Buffer;
  file: string;
  fileSize: number;
  /** Where in the file to start; the file is read cyclically when the body is longer. */
  offset: number;
  /** Total body length, prefix included. */
  length: number;
}

export interface Sent {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** From just before the request is issued to the last byte of the response. */
  seconds: number;
}

export interface SendOptions {
  headers?: OutgoingHttpHeaders;
  body?: Buffer | FileBody | undefined;
  timeoutMs?: number;
}

/** One HTTP request; the response body is collected (responses here are small JSON). */
export function send(method: string, url: string, options: SendOptions = {}): Promise<Sent> {
  const { body } = options;
  const headers: OutgoingHttpHeaders = { ...options.headers };
  if (body !== undefined) headers['content-length'] = String(body.length);
  else if (method !== 'GET' && method !== 'HEAD') headers['content-length'] = '0';

  return new Promise((resolve, reject) => {
    const start = performance.now();
    let responded = false;
    const req = request(url, { method, headers, agent });
    req.setTimeout(options.timeoutMs ?? 60_000, () => req.destroy(new Error(`${method} ${url}: timed out`)));
    req.once('error', (err) => {
      if (!responded) reject(err);
    });
    req.once('response', (res) => {
      responded = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('error', reject);
      res.once('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
          seconds: (performance.now() - start) / 1000,
        }),
      );
    });
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else {
      // A server that answers early (an error) closes the socket mid-body: its answer wins.
      pipeline(Readable.from(fileChunks(body), { objectMode: false }), req).catch((err: unknown) => {
        if (!responded) req.destroy(err as Error);
      });
    }
  });
}

async function* fileChunks(body: FileBody): AsyncGenerator<Buffer> {
  yield body.prefix;
  let remaining = body.length - body.prefix.length;
  let offset = body.offset % body.fileSize;
  while (remaining > 0) {
    const n = Math.min(remaining, body.fileSize - offset);
    // 1 MiB reads: few, large chunks keep the client's CPU cost far below the server's.
    yield* createReadStream(body.file, { start: offset, end: offset + n - 1, highWaterMark: MiB });
    remaining -= n;
    offset = 0;
  }
}

export interface Downloaded {
  status: number;
  bytes: number;
  seconds: number;
}

/** GET whose body is counted and dropped, never kept. */
export function download(url: string, headers: OutgoingHttpHeaders = {}): Promise<Downloaded> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const req = request(url, { method: 'GET', headers, agent });
    req.setTimeout(300_000, () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.once('error', reject);
    req.once('response', (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      res.once('error', reject);
      res.once('end', () =>
        resolve({ status: res.statusCode ?? 0, bytes, seconds: (performance.now() - start) / 1000 }),
      );
    });
    req.end();
  });
}

/** Parses a JSON response, failing with the body when the status is not the expected one. */
export function expectJson<T>(sent: Sent, what: string, ...statuses: number[]): T {
  const text = sent.body.toString('utf8');
  if (!statuses.includes(sent.status)) {
    throw new Error(
      `${what}: expected HTTP ${statuses.join(' or ')}, got ${sent.status}: ${text.slice(0, 500)}`,
    );
  }
  return JSON.parse(text) as T;
}

export interface PoolRun {
  seconds: number;
  latenciesMs: number[];
}

/**
 * Runs `task` once per item with at most `concurrency` in flight; the wall time covers all
 * of them. The first failure stops new work and is thrown once in-flight tasks settle.
 */
export async function runPool<T>(
  items: readonly T[],
  concurrency: number,
  task: (item: T) => Promise<void>,
): Promise<PoolRun> {
  const latenciesMs: number[] = [];
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      const item = items[next++]!;
      const t0 = performance.now();
      try {
        await task(item);
      } catch (err) {
        failure ??= err;
        return;
      }
      latenciesMs.push(performance.now() - t0);
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  const seconds = (performance.now() - start) / 1000;
  if (failure !== undefined) throw failure;
  return { seconds, latenciesMs };
}
