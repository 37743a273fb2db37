import { WharfApiError, WharfError } from './errors.js';
import { nativeS3Error } from './s3-errors.js';

export interface RetryOptions {
  /** Attempts after the first (default 5). 0 turns retrying off. */
  retries?: number;
  /** The first wait, doubled at each retry (default 250 ms). */
  minDelayMs?: number;
  /** The longest wait between two attempts, Retry-After included (default 30 s). */
  maxDelayMs?: number;
  /**
   * How long in all one request keeps retrying refusals that say the server is busy (a 503 or
   * a 429 `TOO_MANY_UPLOAD_STREAMS` that carries Retry-After), waiting Retry-After each time
   * (default 120 s). These do not count against `retries`: a busy server is not a
   * failing one, and under load a few quick retries all came back to a server still full.
   */
  busyMs?: number;
  /**
   * How long one request keeps trying to reach a server that has answered this client before
   * and now cannot be reached (the connection refused or cut, or a 502, 504 or a 503 without
   * Retry-After from a proxy in front of it): past `retries`, until this long after its first
   * such failure, asking again every 1–2 s (default 30 s). A restart (a deploy, a crash and its
   * supervisor) fits in it, and an upload goes on where it was instead of failing. A server that
   * never answered this client (any answer counts, a refusal too) is given only `retries`, so a
   * wrong URL is reported at once; so is a direct upload that is a new client's first request
   * (see docs/sdk.md: make a request first to give it the window).
   */
  restartMs?: number;
}

export interface TransportOptions {
  /** Where Wharf is, e.g. `https://files.example.com` (no trailing slash needed). */
  url: string;
  /** An API key or an upload token; sent as `Authorization: Bearer`. */
  key?: string | undefined;
  /** The fetch to use (default: the global one: Node 18+, browsers, Deno, Bun). */
  fetch?: typeof fetch;
  retry?: RetryOptions;
  /** Extra headers on every request to the API (not on presigned URLs). */
  headers?: Record<string, string>;
}

/** A request body, made anew for each attempt (a stream can be read only once). */
export type BodyFactory = () => BodyInit | ReadableStream<Uint8Array>;

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  json?: unknown;
  body?: BodyFactory;
  headers?: Record<string, string>;
  /** Send the key (default: true for the API's paths, false for absolute URLs such as presigned ones). */
  auth?: boolean;
  signal?: AbortSignal | undefined;
  /**
   * Retry transient failures (default true). `'busy'`: only refusals that say the server is
   * busy (see isBusy), which come before the body is read, so sending it again from the same
   * place is safe; any other failure is the caller's to handle (a tus PATCH: ask the offset).
   */
  retry?: boolean | 'busy';
  /** Follow redirects (default). 'manual' returns a 3xx answer as it is. */
  redirect?: RequestRedirect;
  /** Called before each retry, e.g. to reset a progress count. */
  onRetry?: (attempt: number, error: unknown) => void;
}

const RETRYABLE_STATUS = new Set([408, 500, 502, 503, 504]);

/**
 * What a proxy answers while the server behind it is down (Wharf's own 503s carry Retry-After,
 * see isBusy): the server was not reached, so it counts as neither an answer nor a failure of its.
 */
function isGatewayDown(error: WharfApiError): boolean {
  return (
    error.status === 502 || error.status === 504 || (error.status === 503 && error.retryAfter === undefined)
  );
}

/**
 * A refusal that says "busy, come back later": one that carries Retry-After, and is a 503 (every
 * 503 Wharf sends carries it: SERVICE_UNAVAILABLE, TRANSFORMS_BUSY, the storage endpoint's
 * SlowDown) or a 429 TOO_MANY_UPLOAD_STREAMS (it ends when the client's own other uploads do,
 * docs/configuration.md: WHARF_MAX_UPLOAD_STREAMS_*), or a 409 IDEMPOTENCY_KEY_IN_USE (a retry
 * that overtook the first attempt, still being answered). Not TOO_MANY_OPEN_UPLOADS: open uploads
 * close when they finish or expire (hours away), so waiting for it only hammers the server. A
 * 503 without Retry-After (a proxy's) is an ordinary failure: backoff, counted against `retries`.
 */
const BUSY_CODES = new Set(['TOO_MANY_UPLOAD_STREAMS', 'IDEMPOTENCY_KEY_IN_USE']);

export function isBusy(error: WharfApiError): boolean {
  if (error.retryAfter === undefined) return false;
  return (
    error.status === 503 || ((error.status === 429 || error.status === 409) && BUSY_CODES.has(error.code))
  );
}

/** The fetch-based transport: authentication, JSON, typed errors, retries with backoff. */
export class Transport {
  readonly baseUrl: string;
  readonly key: string | undefined;
  private readonly fetchImpl: typeof fetch;
  private readonly retries: number;
  private readonly minDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly busyMs: number;
  private readonly restartMs: number;
  private readonly headers: Record<string, string>;
  /** The origins that have answered this client: one that stops answering is likely restarting. */
  private readonly answered = new Set<string>();

  constructor(options: TransportOptions) {
    if (!/^https?:\/\//i.test(options.url)) {
      throw new WharfError(
        'UNEXPECTED_RESPONSE',
        `The server URL must start with http:// or https://: ${options.url}`,
      );
    }
    this.baseUrl = options.url.replace(/\/+$/, '');
    this.key = options.key;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.retries = options.retry?.retries ?? 5;
    this.minDelayMs = options.retry?.minDelayMs ?? 250;
    this.maxDelayMs = options.retry?.maxDelayMs ?? 30_000;
    this.busyMs = options.retry?.busyMs ?? 120_000;
    this.restartMs = options.retry?.restartMs ?? 30_000;
    this.headers = options.headers ?? {};
  }

  url(path: string, query?: RequestOptions['query']): string {
    const absolute = /^https?:\/\//i.test(path);
    const url = new URL(absolute ? path : `${this.baseUrl}${path}`);
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    return url.toString();
  }

  /** One request, retried while it fails transiently; a refusal is thrown as WharfApiError. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const absolute = /^https?:\/\//i.test(path);
    const url = this.url(path, options.query);
    const headers: Record<string, string> = { ...(absolute ? {} : this.headers), ...options.headers };
    if ((options.auth ?? !absolute) && this.key !== undefined) headers.authorization = `Bearer ${this.key}`;
    if (options.json !== undefined) headers['content-type'] = 'application/json';
    checkHeaders(method, url, headers);
    const retries = options.retry === false || options.retry === 'busy' ? 0 : this.retries;
    // `retries: 0` in the options turns every retry off, busy ones included.
    const waitBusy = options.retry !== false && this.retries > 0;
    // Retries of failures (attempt) and time waited on busy refusals (busyWaited) are counted apart.
    let failures = 0;
    let busyWaited = 0;
    const origin = new URL(url).origin;
    // When this request first failed to reach a server that answered before (see restartMs); on
    // the monotonic clock, which a change of the system's time does not move.
    let downSince: number | undefined;
    const waitForRestart = async (attempt: number, failure: unknown): Promise<boolean> => {
      if (retries === 0 || !this.answered.has(origin)) return false;
      downSince ??= performance.now();
      if (performance.now() - downSince >= this.restartMs) return false;
      options.onRetry?.(attempt + 1, failure);
      await sleep(Math.min(this.maxDelayMs, 1000 + Math.random() * 1000), options.signal);
      return true;
    };
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(options.signal);
      let response: Response;
      try {
        const body =
          options.json !== undefined
            ? JSON.stringify(options.json)
            : options.body
              ? options.body()
              : undefined;
        response = await this.fetchImpl(url, {
          method,
          headers,
          body: body as BodyInit | undefined,
          redirect: options.redirect ?? 'follow',
          ...(options.signal && { signal: options.signal }),
          // A stream body needs half duplex (Node's fetch); harmless for any other body.
          ...(isStream(body) && { duplex: 'half' }),
        } as RequestInit);
      } catch (err) {
        throwIfAborted(options.signal);
        // The body failed, not the network (its source changed, see UploadRun.body()): that
        // is what happened, and sending it again would fail the same way.
        const cause = (err as { cause?: unknown })?.cause;
        if (err instanceof WharfError) throw err;
        if (cause instanceof WharfError) throw cause;
        if (isInvalidRequest(err)) {
          const { message, code } = cause as { message: string; code: string };
          throw new TypeError(`${method} ${redact(url)}: ${redact(message)} (${code})`, { cause: err });
        }
        const failure = new WharfError(
          'NETWORK_ERROR',
          `${method} ${redact(url)}: ${redact(describe(err))}`,
          {
            cause: err,
          },
        );
        if (failures >= retries) {
          if (await waitForRestart(attempt, failure)) continue;
          throw failure;
        }
        downSince ??= performance.now();
        options.onRetry?.(attempt + 1, failure);
        await this.wait(failures++, undefined, options.signal);
        continue;
      }
      if (response.ok || (response.status >= 300 && response.status < 400)) {
        this.answered.add(origin);
        return response;
      }
      const error = await apiError(response);
      const down = isGatewayDown(error);
      if (!down) this.answered.add(origin);
      if (waitBusy && isBusy(error)) {
        const ms = this.busyDelay(error.retryAfter);
        if (busyWaited + ms <= this.busyMs) {
          options.onRetry?.(attempt + 1, error);
          busyWaited += ms;
          await sleep(ms, options.signal);
          continue;
        }
      }
      if (!RETRYABLE_STATUS.has(response.status)) throw error;
      if (failures >= retries) {
        if (down && (await waitForRestart(attempt, error))) continue;
        throw error;
      }
      if (down) downSince ??= performance.now();
      options.onRetry?.(attempt + 1, error);
      await this.wait(failures++, error.retryAfter, options.signal);
    }
  }

  /**
   * The wait after a busy refusal: its Retry-After (always there, see isBusy), at least
   * minDelayMs and at most maxDelayMs, then up to half as long again at random, so that clients
   * refused together do not all come back together (to be refused together again).
   */
  private busyDelay(retryAfterSeconds: number | undefined): number {
    const asked = retryAfterSeconds !== undefined ? retryAfterSeconds * 1000 : this.minDelayMs;
    const base = Math.max(this.minDelayMs, Math.min(this.maxDelayMs, asked));
    return base + Math.random() * (base / 2);
  }

  /** A JSON answer (or undefined for 204). */
  async json<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.request(method, path, options);
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new WharfError(
        'UNEXPECTED_RESPONSE',
        `${method} ${path}: expected JSON, got ${response.headers.get('content-type') ?? 'no type'}`,
      );
    }
  }

  /**
   * Exponential backoff with full jitter; a Retry-After is honoured (up to maxDelayMs). Also
   * the wait between the tus flow's own retries (upload.ts), which asks the offset after each.
   */
  wait(attempt: number, retryAfterSeconds: number | undefined, signal?: AbortSignal): Promise<void> {
    const backoff = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** attempt);
    const ms =
      retryAfterSeconds !== undefined
        ? Math.min(this.maxDelayMs, retryAfterSeconds * 1000)
        : Math.random() * backoff;
    return sleep(ms, signal);
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted(signal));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw aborted(signal);
}

function aborted(signal: AbortSignal): WharfError {
  return new WharfError('ABORTED', 'The operation was aborted.', { cause: signal.reason });
}

/** The refusal in a failed answer: Wharf's JSON error, S3's XML error, or just the status. */
export async function apiError(response: Response): Promise<WharfApiError> {
  const text = await response.text().catch(() => '');
  const retryAfter = retryAfterSeconds(response.headers.get('retry-after'));
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; details?: unknown } };
    const error = body.error;
    if (error && typeof error.code === 'string') {
      return new WharfApiError(
        response.status,
        error.code,
        typeof error.message === 'string' ? error.message : error.code,
        typeof error.details === 'object' && error.details !== null
          ? (error.details as Record<string, unknown>)
          : {},
        retryAfter,
      );
    }
  } catch {
    // Not JSON: the storage endpoint's XML, or a proxy's page.
  }
  const xmlCode = /<Code>([^<]{1,100})<\/Code>/.exec(text)?.[1];
  const xmlMessage = /<Message>([^<]{0,500})<\/Message>/.exec(text)?.[1];
  const message = xmlMessage ?? (text.slice(0, 200) || `HTTP ${response.status}`);
  if (xmlCode) {
    // Storage's S3 code, read as the API's (details.s3_code keeps it).
    const native = nativeS3Error(xmlCode, message, text);
    return new WharfApiError(response.status, native.code, message, native.details, retryAfter);
  }
  return new WharfApiError(response.status, `HTTP_${response.status}`, message, {}, retryAfter);
}

function retryAfterSeconds(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}

/**
 * Refuses headers fetch would refuse (a CR, LF or NUL in a value, a character past Latin-1), as
 * the TypeError they are, before the first attempt. Left to fetch, the rejection looked like a
 * lost connection (a browser's fetch rejects both with a TypeError and no cause), so it was
 * retried through the restart window and reported as NETWORK_ERROR.
 */
function checkHeaders(method: string, url: string, headers: Record<string, string>): void {
  if (typeof Headers !== 'function') return;
  try {
    new Headers(headers);
  } catch (err) {
    throw new TypeError(`${method} ${redact(url)}: ${redact((err as Error)?.message ?? String(err))}`, {
      cause: err,
    });
  }
}

/**
 * A request Node's fetch (undici) found invalid before writing a byte of it: a Content-Length
 * that is not a count of bytes, say. Sent again, it would fail the same way; it is not a failure
 * of the network, which Node reports as a TypeError whose cause is the socket's error
 * (ECONNREFUSED, UND_ERR_SOCKET…) and which goes on being retried.
 */
function isInvalidRequest(err: unknown): boolean {
  return (err as { cause?: { code?: unknown } })?.cause?.code === 'UND_ERR_INVALID_ARG';
}

function isStream(body: unknown): boolean {
  return typeof ReadableStream !== 'undefined' && body instanceof ReadableStream;
}

function describe(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (err as Error)?.message ?? String(err);
}

/**
 * A URL for messages, or a message that holds URLs: presigned ones are credentials until they
 * expire, and a URL's user and password (`http://user:pw@host`) are credentials, shown as `…`.
 */
export function redact(url: string): string {
  return url
    .replace(/([?&](?:X-Amz-Signature|X-Amz-Credential|signature)=)[^&\s]*/gi, '$1…')
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^/?#\s]*@/gi, '$1…@');
}

/**
 * A new Idempotency-Key: 128 random bits in hex. getRandomValues, not randomUUID, which browsers
 * give only to secure contexts (a page served over plain HTTP has none).
 */
export function idempotent(): Record<string, string> {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  let key = '';
  for (const byte of bytes) key += byte.toString(16).padStart(2, '0');
  return { 'idempotency-key': key };
}
