import type { Wharf } from './client.js';
import { isWharfError, WharfApiError, WharfError } from './errors.js';
import { paced, sha256Hex } from './hash.js';
import { idempotent, isBusy, throwIfAborted } from './http.js';
import { type ProgressListener, ProgressMeter } from './progress.js';
import {
  canStreamRequestBodies,
  drain,
  exactly,
  tap,
  toSource,
  type UploadInput,
  type UploadSource,
} from './sources.js';
import type { Asset, SignedPart } from './types.js';

export type { UploadInput } from './sources.js';

/** How the bytes travel. */
export type UploadStrategy = 'direct' | 'presigned' | 'multipart' | 'tus';

const MiB = 1024 * 1024;
/** S3's smallest part but the last (PART_TOO_SMALL at completion otherwise, on every storage). */
const MIN_PART_SIZE = 5 * MiB;
/** How long the cancel of an upload given up may take: it must not hold the failure back long. */
const CANCEL_TIMEOUT_MS = 5_000;

export const DEFAULT_THRESHOLDS = {
  /** From this size on, presigned (one PUT straight to storage); below it, directly through Wharf. */
  presigned: 8 * MiB,
  /** From this size on, multipart (parts in parallel, resumable). */
  multipart: 64 * MiB,
};

/** What a resumable upload keeps between runs (see ResumeStore). */
export type ResumeRecord =
  | {
      kind: 'multipart';
      id: string;
      partSize: number;
      size: number;
      sha256: string;
      /** The name it was started under (absent in records saved before names were kept). */
      name?: string;
      /**
       * The source's fingerprint when it was started (absent in records kept under it, as they
       * were before sources had an identity).
       */
      fingerprint?: string;
      savedAt: string;
    }
  | {
      kind: 'tus';
      url: string;
      size: number;
      sha256: string;
      name?: string;
      /** As for multipart. */
      fingerprint?: string;
      savedAt: string;
    };

/**
 * Where resumable uploads keep their state: a map from a key (the server, the credential and
 * the source's identity, a file's path, else its fingerprint) to a record. `MemoryResumeStore`
 * here; `FileResumeStore` (in `sdk/node.js`) keeps it on disk so a new process continues; a browser can keep it in
 * localStorage. A record only finds the upload again: it is continued only when the source,
 * hashed anew, has the SHA-256 the upload declared.
 */
export interface ResumeStore {
  get(key: string): Promise<ResumeRecord | undefined>;
  set(key: string, record: ResumeRecord): Promise<void>;
  delete(key: string): Promise<void>;
}

export class MemoryResumeStore implements ResumeStore {
  private readonly records = new Map<string, ResumeRecord>();
  async get(key: string) {
    return this.records.get(key);
  }
  async set(key: string, record: ResumeRecord) {
    this.records.set(key, record);
  }
  async delete(key: string) {
    this.records.delete(key);
  }
}

export interface UploadOptions {
  /** The asset's name (default: the source's). */
  name?: string;
  /** Its media type (default: the source's, else application/octet-stream). */
  contentType?: string;
  /** Force a flow; `auto` (the default) chooses by size with `thresholds`. */
  strategy?: UploadStrategy | 'auto';
  thresholds?: { presigned?: number; multipart?: number };
  /** Multipart part size (default: the server's suggestion, at least 8 MiB). */
  partSize?: number;
  /** Parts in flight at once (default 4). */
  partConcurrency?: number;
  /** The SHA-256 (hex or base64) if already known: the source is then not hashed first. */
  sha256?: string;
  /**
   * Declare the SHA-256 (default true for re-readable sources): Wharf then verifies it end to
   * end. Presigned and multipart declare it before any byte and are answered `exists` with
   * nothing sent when the account holds the content; direct and tus send the bytes first.
   */
  hashFirst?: boolean;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
  /** Keep multipart and tus state here so an interrupted upload continues where it stopped. */
  resume?: ResumeStore;
}

export interface UploadResult {
  status: 'created' | 'exists';
  asset: Asset;
  strategy: UploadStrategy;
  /** Whether it continued an upload an earlier attempt had started. */
  resumed: boolean;
  /**
   * Bytes of the content sent, counting what a resumed upload found already stored (0 when a
   * presigned or multipart upload found the content held; direct and tus send it all).
   */
  bytesSent: number;
}

/** The flow `auto` picks for a source of `size` bytes. */
export function chooseStrategy(
  size: number | undefined,
  reopenable: boolean,
  thresholds: { presigned?: number; multipart?: number } = {},
): UploadStrategy {
  if (size === undefined || !reopenable) return 'direct';
  if (size >= (thresholds.multipart ?? DEFAULT_THRESHOLDS.multipart)) return 'multipart';
  if (size >= (thresholds.presigned ?? DEFAULT_THRESHOLDS.presigned)) return 'presigned';
  return 'direct';
}

/** Wharf.upload(): see UploadOptions. */
export async function uploadWith(
  wharf: Wharf,
  input: UploadInput,
  options: UploadOptions,
): Promise<UploadResult> {
  const source = toSource(input, options.name);
  const strategy =
    !options.strategy || options.strategy === 'auto'
      ? chooseStrategy(source.size, source.reopenable, options.thresholds)
      : options.strategy;
  if (strategy !== 'direct' && (!source.reopenable || source.size === undefined)) {
    throw new TypeError(`A ${strategy} upload needs a re-readable source of known size (a file, a Blob).`);
  }
  // Checked before the source is hashed and anything is declared: refused later, they left an
  // upload open on the server, and what fetch refuses itself (a Content-Length that is not a
  // count, a header value with a CR or LF) was taken for a lost connection (see Transport).
  if (source.size !== undefined && !(Number.isSafeInteger(source.size) && source.size >= 0)) {
    throw new RangeError(`The source's size must be a whole number of bytes, not ${source.size}.`);
  }
  checkContentType(contentTypeOf(source, options));
  for (const option of ['partSize', 'partConcurrency'] as const) {
    const value = options[option];
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) {
      throw new RangeError(`${option} must be a whole number of at least 1, not ${value}.`);
    }
  }
  if (
    strategy === 'multipart' &&
    options.partSize !== undefined &&
    options.partSize < MIN_PART_SIZE &&
    source.size! > options.partSize
  ) {
    throw new RangeError(
      `partSize must be at least 5 MiB (${MIN_PART_SIZE}) when the file has more than one part: storage refuses smaller parts.`,
    );
  }
  const run = new UploadRun(wharf, source, strategy, options);
  return run.go();
}

/**
 * The media type an upload declares. An empty one is none (the default): the direct flow sent
 * it as an empty Content-Type, refused 415, while the others' JSON took it for the default.
 */
function contentTypeOf(source: UploadSource, options: UploadOptions): string {
  return options.contentType || source.type || 'application/octet-stream';
}

/**
 * Refuses, as the server does, a content type with a character no header value may hold (a
 * control character: CR, LF, NUL…; anything past ASCII), which the server's grammar refuses
 * too. Sent as a header (the direct flow), fetch refused it itself, which was reported as a
 * network error after the whole restart window; the server checks the rest of the grammar.
 */
function checkContentType(type: string): void {
  if (!/^[\t\x20-\x7e]*$/.test(type)) {
    throw new WharfError(
      'INVALID_CONTENT_TYPE',
      `The content type is not a valid media type (type/subtype): ${JSON.stringify(type)}.`,
    );
  }
}

class UploadRun {
  private readonly meter: ProgressMeter;
  private readonly contentType: string;
  private resumed = false;
  /** The upload this run declared on the server, until it completes (see giveUp). */
  private open: OpenUpload | undefined;

  constructor(
    private readonly wharf: Wharf,
    private readonly source: UploadSource,
    private readonly strategy: UploadStrategy,
    private readonly options: UploadOptions,
  ) {
    this.meter = new ProgressMeter(source.size, options.onProgress);
    this.contentType = contentTypeOf(source, options);
  }

  private get signal() {
    return this.options.signal;
  }

  async go(): Promise<UploadResult> {
    const hashFirst = this.options.hashFirst ?? this.source.reopenable;
    let outcome: { status: 'created' | 'exists'; asset: Asset };
    try {
      // Inside: a hashing aborted or failed settles the run too (its throttled report is dropped).
      const sha256 = hashFirst || this.options.sha256 ? await this.sha256() : undefined;
      await this.dropOtherKinds();
      switch (this.strategy) {
        case 'direct':
          outcome = await this.direct(sha256);
          break;
        case 'presigned':
          outcome = await this.presigned(sha256);
          break;
        case 'multipart':
          outcome = await this.multipart(sha256);
          break;
        case 'tus':
          outcome = await this.tus(sha256);
          break;
      }
    } catch (err) {
      // Settled: a read still in flight (fetch's, of a body it gave up) reports nothing more.
      this.meter.stop();
      await this.giveUp(err);
      throw err;
    }
    this.meter.start('done');
    this.meter.stop();
    return { ...outcome, strategy: this.strategy, resumed: this.resumed, bytesSent: this.meter.sent };
  }

  /**
   * After a failure or an abort: the upload this run declared is named on the error
   * (`err.uploadId`) and, unless its resume store still holds it for a later run, cancelled on
   * the server, so that it does not hold the account's quota, a token's files and bytes and an
   * open-upload slot until it expires (no run could ever continue it). Best effort: the cancel
   * has a short timeout of its own (the caller's signal may be what fired), and its failure is
   * not what is thrown.
   */
  private async giveUp(err: unknown): Promise<void> {
    const open = this.open;
    if (!open) return;
    if (err instanceof WharfError && open.id !== undefined) err.uploadId ??= open.id;
    if (await this.kept(open)) return;
    await this.cancel(open);
  }

  /**
   * Gives up the resumable uploads kept for this source under a flow other than this run's (a
   * multipart upload cut off, its file since cut short below the threshold, or run again with a
   * higher one, now goes presigned): no run of this flow would ever look for them, so they held
   * the account's quota until they expired and their state stayed in the store (a hunt). Done
   * before this run declares its own upload, as multipart and tus give up a record of other
   * content, so the quota it held is free for this one. Best effort: a store that cannot be
   * read, or an abort that fails, leaves things as they were, and this upload goes on.
   */
  private async dropOtherKinds(): Promise<void> {
    const store = this.options.resume;
    if (!store) return;
    for (const kind of ['multipart', 'tus'] as const) {
      if (kind === this.strategy) continue;
      const key = this.stateKey(kind);
      if (!key) continue;
      const record = await this.saved(store, key, kind).catch(() => undefined);
      if (!record) continue;
      const gone =
        record.kind === 'multipart'
          ? this.wharf.multipart.abort(record.id, AbortSignal.timeout(CANCEL_TIMEOUT_MS))
          : this.wharf.tus.terminate(record.url, AbortSignal.timeout(CANCEL_TIMEOUT_MS));
      await gone.catch(() => undefined);
      await store.delete(key).catch(() => undefined);
    }
  }

  /** Whether the resume store holds `open` for a later run (a cut it may continue from). */
  private async kept(open: OpenUpload): Promise<boolean> {
    const store = this.options.resume;
    const key = open.kind === 'presigned' ? undefined : this.stateKey(open.kind);
    if (!store || !key) return false;
    // A store that cannot be read may still hold it: it is left to its expiry, not given up.
    const record = await store.get(key).catch(() => open);
    if (record === open) return true;
    if (record?.kind === 'multipart') return open.kind === 'multipart' && record.id === open.id;
    if (record?.kind === 'tus') return open.kind === 'tus' && record.url === open.url;
    return false;
  }

  /** Cancels an upload this run will not finish (best effort, see giveUp). */
  private async cancel(open: OpenUpload): Promise<void> {
    if (this.open === open) this.open = undefined;
    const signal = AbortSignal.timeout(CANCEL_TIMEOUT_MS);
    const cancelled =
      open.kind === 'tus'
        ? this.wharf.tus.terminate(open.url, signal)
        : open.kind === 'multipart'
          ? this.wharf.multipart.abort(open.id, signal)
          : this.wharf.uploads.cancel(open.id, signal);
    await cancelled.catch(() => undefined);
  }

  /**
   * The SHA-256 given, or read from the source now: never one remembered from an earlier run.
   * A file rewritten in place can keep its size and modification time (cp -p, rsync -t, tar x;
   * a browser File its name, size and lastModified), so its fingerprint cannot vouch for its
   * content: declared again, an old digest was answered `exists` with the old asset (nothing of
   * the new content sent), refused as CHECKSUM_MISMATCH on every retry, or completed a resumed
   * upload from old parts. Hashing costs one read of the source; what a resume record saves is
   * the sending, and the record is used only when this digest is the one it declared.
   */
  private async sha256(): Promise<string> {
    if (this.options.sha256) {
      const hex = sha256Hex(this.options.sha256);
      if (!hex) throw new WharfError('INVALID_DIGEST', 'sha256 must be 64 hex digits or base64.');
      return hex;
    }
    this.meter.start('hashing');
    const hasher = this.wharf.sha256();
    // Paced: a page stays responsive (and its Cancel heard) while a large file is hashed.
    const update = paced(hasher, (bytes) => this.meter.add(bytes));
    await drain(
      this.source.open(),
      async (chunk) => {
        await update(chunk, this.signal);
      },
      this.signal,
    );
    throwIfAborted(this.signal);
    return hasher.hex();
  }

  /**
   * Whether a saved upload is one this run may continue: of this size, declared with this
   * digest, under the name this one would get. Without a digest (hashFirst false) nothing vouches
   * for the content but the fingerprint, which must then be the one it was started with (a
   * source without an identity finds its record by the fingerprint: it is).
   */
  private continues(record: ResumeRecord, sha256: string | undefined): boolean {
    return (
      record.size === this.source.size &&
      record.sha256 === (sha256 ?? '') &&
      (record.name === undefined || record.name === this.source.name) &&
      (sha256 !== undefined ||
        this.source.identity === undefined ||
        record.fingerprint === this.source.fingerprint)
    );
  }

  /**
   * Resumable state is keyed by the server, the credential (hashed: a state file must not hold
   * the key) and the source's identity (a file's path), else its fingerprint; a source without
   * a fingerprint is not resumed. Keyed by the path, a file that changed after an interruption
   * finds the upload begun before, which is then given up (see multipart and tus) rather than
   * left to hold the account's quota until it expires.
   */
  private stateKey(kind: string): string | undefined {
    if (!this.source.fingerprint) return undefined;
    const found =
      this.source.identity === undefined ? this.source.fingerprint : `identity:${this.source.identity}`;
    return `${kind}|${this.wharf.url}|${this.credential()}|${found}`;
  }

  /** The credential, hashed (a state file must not hold the key). */
  private credential(): string {
    const hasher = this.wharf.sha256();
    hasher.update(new TextEncoder().encode(`${this.wharf.http.key ?? ''}`));
    return hasher.hex().slice(0, 16);
  }

  /**
   * The record kept for this source under `key`. One kept by an earlier version of the SDK under
   * the fingerprint (a source with an identity was keyed so before) is moved under `key`, so an
   * upload interrupted before an update continues after it.
   */
  private async saved(store: ResumeStore, key: string, kind: string): Promise<ResumeRecord | undefined> {
    const record = await store.get(key);
    if (record || this.source.identity === undefined) return record;
    const legacy = `${kind}|${this.wharf.url}|${this.credential()}|${this.source.fingerprint}`;
    const old = await store.get(legacy);
    if (!old) return undefined;
    // Found under the fingerprint: the file is the one it was kept for.
    const moved = { ...old, fingerprint: this.source.fingerprint! };
    await store.set(key, moved);
    await store.delete(legacy);
    return moved;
  }

  /** A body for one attempt of [start, end), counted into the progress (and un-counted on retry). */
  private body(start: number, end: number | undefined, onChunk?: (chunk: Uint8Array) => void) {
    let sent = 0;
    // Chunks an abandoned attempt still reads (a read in flight when it failed) count for nothing.
    let attempt = 0;
    return {
      make: () => {
        const mine = ++attempt;
        if (!onChunk && !canStreamRequestBodies && this.source.slice) {
          // A browser (see canStreamRequestBodies): the range goes as a Blob, which fetch reads
          // itself, so its bytes count when its request starts.
          const blob = this.source.slice(start, end);
          sent = blob.size;
          this.meter.add(blob.size);
          return blob;
        }
        sent = 0;
        const length = (end ?? this.source.size ?? Number.NaN) - start;
        const bytes = exactly(
          this.source.open(start, end),
          Number.isNaN(length) ? undefined : length,
          { name: this.source.name, start },
          this.signal,
        );
        return tap(bytes, (chunk) => {
          if (mine !== attempt) return;
          sent += chunk.byteLength;
          onChunk?.(chunk);
          this.meter.add(chunk.byteLength);
        });
      },
      retry: () => {
        attempt++;
        this.meter.subtract(sent);
        sent = 0;
      },
    };
  }

  private async direct(sha256: string | undefined) {
    this.meter.start('uploading', 'direct');
    // A one-shot stream is hashed as it goes, and checked against what Wharf computed.
    const hasher = sha256 === undefined ? this.wharf.sha256() : undefined;
    const body = this.body(0, undefined, hasher ? (chunk) => hasher.update(chunk) : undefined);
    if (!this.source.reopenable) {
      // One attempt only: a consumed stream cannot be sent again.
      const result = await this.wharf.http.json<{ status: 'created' | 'exists'; asset: Asset }>(
        'POST',
        '/v1/assets',
        {
          query: { name: this.source.name },
          headers: {
            'content-type': this.contentType,
            ...(this.source.size !== undefined && { 'content-length': String(this.source.size) }),
          },
          body: body.make,
          retry: false,
          signal: this.signal,
        },
      );
      if (hasher) verifyAsset(result.asset, hasher.hex());
      return result;
    }
    const result = await this.wharf.http.json<{ status: 'created' | 'exists'; asset: Asset }>(
      'POST',
      '/v1/assets',
      {
        query: { name: this.source.name, sha256 },
        headers: {
          'content-type': this.contentType,
          ...(this.source.size !== undefined && { 'content-length': String(this.source.size) }),
          // The same on each retry: a retry after a lost answer gets the first answer (and an
          // upload token's max_files is not spent again).
          ...idempotent(),
        },
        body: body.make,
        onRetry: body.retry,
        signal: this.signal,
      },
    );
    return result;
  }

  private async presigned(sha256: string | undefined) {
    const size = this.source.size!;
    const declaration = { name: this.source.name, content_type: this.contentType, size, sha256 };
    for (let attempt = 0; ; attempt++) {
      const item = await this.wharf.uploads.create(declaration, this.signal);
      if (item.status === 'exists') return { status: 'exists' as const, asset: item.asset };
      const open: OpenUpload = { kind: 'presigned', id: item.id };
      this.open = open;
      this.meter.start('uploading', 'presigned');
      const body = this.body(0, size);
      try {
        await this.wharf.uploads.put(item, body.make, { size, signal: this.signal, onRetry: body.retry });
      } catch (err) {
        // The URL expired while the PUT waited (a slow link): declare again, once.
        if (
          attempt === 0 &&
          isWharfError(err) &&
          (err.code === 'AccessDenied' || err.code === 'URL_EXPIRED')
        ) {
          // The first is cancelled first: it held a token's file and bytes, which the new one needs.
          await this.cancel(open);
          continue;
        }
        throw err;
      }
      this.meter.start('completing', 'presigned');
      const result = await this.wharf.uploads.complete(item.id, this.signal);
      this.open = undefined;
      return result;
    }
  }

  private async multipart(sha256: string | undefined) {
    const size = this.source.size!;
    const store = this.options.resume;
    const key = this.stateKey('multipart');
    let record = key && store ? await this.saved(store, key, 'multipart') : undefined;
    let stored: Map<number, { size: number; etag: string }> | undefined;
    if (record?.kind === 'multipart' && this.continues(record, sha256)) {
      try {
        const parts = await this.wharf.multipart.listParts(record.id, this.signal);
        stored = new Map(parts.map((p) => [p.PartNumber, { size: p.Size, etag: p.ETag }]));
        this.resumed = true;
      } catch (err) {
        // Gone (expired, aborted, completed elsewhere): start afresh.
        if (!(err instanceof WharfApiError) || err.status >= 500) throw err;
        record = undefined;
      }
    } else {
      // Begun for other content (the file changed since) or under another name (a changed
      // --prefix: it would complete under that one): no run would ever continue it. It is given
      // up (its reservation freed) and its state removed, and the file starts afresh.
      if (record?.kind === 'multipart' && key && store) {
        await this.wharf.multipart.abort(record.id).catch(() => undefined);
        await store.delete(key);
      }
      record = undefined;
    }
    if (!record) {
      const started = await this.wharf.multipart.create(
        { name: this.source.name, content_type: this.contentType, size, sha256 },
        this.signal,
      );
      if (started.status === 'exists') return { status: 'exists' as const, asset: started.asset };
      this.open = { kind: 'multipart', id: started.id };
      record = {
        kind: 'multipart',
        id: started.id,
        partSize: this.options.partSize ?? started.part_size,
        size,
        sha256: sha256 ?? '',
        name: this.source.name,
        fingerprint: this.source.fingerprint,
        savedAt: new Date().toISOString(),
      };
      stored = new Map();
      if (key && store) await store.set(key, record);
    }
    const { id, partSize } = record as Extract<ResumeRecord, { kind: 'multipart' }>;
    this.open = { kind: 'multipart', id };
    const count = Math.max(1, Math.ceil(size / partSize));
    const expected = (n: number) => Math.min(partSize, size - (n - 1) * partSize);
    const etags = new Map<number, string>();
    let already = 0;
    for (const [n, part] of stored ?? []) {
      if (n <= count && part.size === expected(n)) {
        etags.set(n, part.etag);
        already += part.size;
      }
    }
    this.meter.start('uploading', 'multipart', already);
    const missing: number[] = [];
    for (let n = 1; n <= count; n++) if (!etags.has(n)) missing.push(n);
    try {
      await this.sendParts(id, missing, partSize, size, etags);
    } catch (err) {
      // Its file is gone or changed: what was sent is of no use to a rerun, which would only
      // find the state and the server's parts and start afresh (or, deleted, never come). With
      // the state gone, the upload is cancelled (giveUp).
      if (isWharfError(err, 'SOURCE_CHANGED') && key && store) await store.delete(key);
      throw err;
    }
    this.meter.start('completing', 'multipart');
    const parts = [...etags].sort(([a], [b]) => a - b).map(([PartNumber, ETag]) => ({ PartNumber, ETag }));
    try {
      const result = await this.wharf.multipart.complete(id, parts, this.signal);
      this.open = undefined;
      if (key && store) await store.delete(key);
      return result;
    } catch (err) {
      // Refused for good (the bytes do not match, a part is missing): the state is no use again.
      if (key && store && err instanceof WharfApiError && err.status < 500) await store.delete(key);
      throw err;
    }
  }

  /** PUTs the parts, `partConcurrency` at a time; URLs are signed in batches as they are needed. */
  private async sendParts(
    id: string,
    numbers: number[],
    partSize: number,
    size: number,
    etags: Map<number, string>,
  ): Promise<void> {
    const queue = [...numbers];
    const signed = new Map<number, SignedPart>();
    const sign = async (n: number, fresh = false): Promise<SignedPart> => {
      const known = signed.get(n);
      if (known && !fresh && Date.parse(known.expires_at) - Date.now() > 60_000) return known;
      const batch = [n, ...queue.slice(0, 49)];
      for (const part of await this.wharf.multipart.signParts(id, batch, this.signal)) {
        signed.set(part.partNumber, part);
      }
      return signed.get(n)!;
    };
    const worker = async () => {
      for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
        const start = (n - 1) * partSize;
        const end = Math.min(size, start + partSize);
        for (let attempt = 0; ; attempt++) {
          const part = await sign(n, attempt > 0);
          const body = this.body(start, end);
          try {
            const etag = await this.wharf.uploads.put(part, body.make, {
              size: end - start,
              signal: this.signal,
              onRetry: body.retry,
            });
            if (!etag) throw new WharfError('UNEXPECTED_RESPONSE', `Part ${n}: storage answered no ETag.`);
            etags.set(n, etag);
            break;
          } catch (err) {
            body.retry();
            // An expired URL: sign again, once.
            if (attempt === 0 && err instanceof WharfApiError && err.status === 403) continue;
            throw err;
          }
        }
      }
    };
    const workers = Array.from(
      { length: Math.min(this.options.partConcurrency ?? 4, numbers.length) },
      worker,
    );
    // Every worker stops at the first failure of any (the queue is emptied), and that is thrown.
    const results = await Promise.allSettled(
      workers.map((w) =>
        w.catch((err) => {
          queue.length = 0;
          throw err;
        }),
      ),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private async tus(sha256: string | undefined) {
    const size = this.source.size!;
    const store = this.options.resume;
    const key = this.stateKey('tus');
    const record = key && store ? await this.saved(store, key, 'tus') : undefined;
    let url: string | undefined;
    let offset = 0;
    // Saved without a digest (hashFirst false), a record holds '' (see below): it matches a run
    // that declares none either, found again by the fingerprint alone (see continues).
    if (record?.kind === 'tus' && this.continues(record, sha256)) {
      try {
        const state = await this.wharf.tus.state(record.url, this.signal);
        url = record.url;
        offset = state.offset;
        this.resumed = true;
        if (state.assetId) return this.finishTus({ assetId: state.assetId, exists: state.exists }, key);
      } catch (err) {
        if (!(err instanceof WharfApiError) || err.status >= 500) throw err;
      }
    } else if (record?.kind === 'tus' && key && store) {
      // Begun for other content (the file changed) or under another name: given up, so its
      // bytes do not wait out their expiry on the server, and its state removed.
      await this.wharf.tus.terminate(record.url).catch(() => undefined);
      await store.delete(key);
    }
    if (!url) {
      url = await this.wharf.tus.create({
        name: this.source.name,
        size,
        contentType: this.contentType,
        sha256,
        signal: this.signal,
      });
      if (key && store) {
        await store.set(key, {
          kind: 'tus',
          url,
          size,
          sha256: sha256 ?? '',
          name: this.source.name,
          fingerprint: this.source.fingerprint,
          savedAt: new Date().toISOString(),
        });
      }
    }
    this.open = { kind: 'tus', url, id: tusUploadId(url) };
    this.meter.start('uploading', 'tus', offset);
    // One PATCH for the rest of the file; after a cut, ask where it stopped and go on from there.
    for (let failures = 0; ; ) {
      throwIfAborted(this.signal);
      const body = this.body(offset, size);
      try {
        // A busy refusal is waited out within append (Retry-After, up to busyMs), like any flow's.
        const appended = await this.wharf.tus.append(
          url,
          offset,
          body.make,
          size - offset,
          this.signal,
          body.retry,
        );
        if (appended.assetId)
          return this.finishTus({ assetId: appended.assetId, exists: appended.exists }, key);
        offset = appended.offset;
        if (offset >= size) {
          const state = await this.wharf.tus.state(url, this.signal);
          if (state.assetId) return this.finishTus({ assetId: state.assetId, exists: state.exists }, key);
        }
      } catch (err) {
        body.retry();
        if (isWharfError(err, 'SOURCE_CHANGED')) {
          // As for multipart: the upload cannot be finished from this file any more (and,
          // its state gone, giveUp terminates it).
          if (key && store) await store.delete(key);
          throw err;
        }
        if (isWharfError(err, 'ABORTED') || ++failures > 5) throw err;
        if (err instanceof WharfApiError && err.status < 500 && err.status !== 409) {
          // Refused for good (the bytes do not match, the upload is gone): the state is no use again.
          if (key && store) await store.delete(key);
          throw err;
        }
        // Still busy after busyMs of waiting: more rounds would only wait that long again.
        if (err instanceof WharfApiError && isBusy(err)) throw err;
        // A cut or a 5xx: back off as the transport does before asking where the upload stands.
        await this.wharf.http.wait(
          failures - 1,
          err instanceof WharfApiError ? err.retryAfter : undefined,
          this.signal,
        );
        const state = await this.wharf.tus.state(url, this.signal);
        if (state.assetId) return this.finishTus({ assetId: state.assetId, exists: state.exists }, key);
        offset = state.offset;
        this.meter.set(offset);
      }
    }
  }

  private async finishTus(finished: { assetId: string; exists: boolean }, key: string | undefined) {
    this.open = undefined;
    if (key && this.options.resume) await this.options.resume.delete(key);
    this.meter.start('completing', 'tus');
    return {
      status: finished.exists ? ('exists' as const) : ('created' as const),
      asset: await this.wharf.assets.get(finished.assetId, this.signal),
    };
  }
}

/** An upload a run declared: what cancels it, and its id for the error (see giveUp). */
type OpenUpload =
  | { kind: 'presigned' | 'multipart'; id: string }
  | { kind: 'tus'; url: string; id: string | undefined };

/** A Wharf tus URL ends in the upload's id (and the name's extension): `/v1/tus/{id}.mp4`. */
function tusUploadId(url: string): string | undefined {
  return /\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:\.[a-z0-9]{1,10})?$/.exec(
    new URL(url).pathname,
  )?.[1];
}

function verifyAsset(asset: Asset, sha256: string): void {
  if (asset.sha256 !== sha256) {
    throw new WharfError(
      'INTEGRITY_ERROR',
      `Wharf stored bytes hashing to ${asset.sha256}, but ${sha256} were read here (asset ${asset.id}).`,
    );
  }
}
