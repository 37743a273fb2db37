import { S3Client, type S3ClientConfig, S3ServiceException } from '@aws-sdk/client-s3';
import { StandardRetryStrategy } from '@smithy/core/retry';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { isConnectionFailure, serviceUnavailable, storageFull } from '../core/unavailable.js';
import { stacklessError } from '../telemetry/log.js';

export interface S3Options {
  /** Omit for AWS S3 itself; set for any other S3-compatible server. */
  endpoint?: string | undefined;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** `host/bucket/key` URLs instead of `bucket.host/key` (most self-hosted servers need this). */
  forcePathStyle: boolean;
  /**
   * Where the SDK's own log lines go: Wharf's logger (asked each time: a server's is made after
   * its storage), see sdkLogger. Without, the SDK's default (console.warn), as for a CLI command.
   */
  log?: (() => SdkLogTarget | undefined) | undefined;
  /** How long a request waits for its answer: REQUEST_TIMEOUT_MS (tests shorten it). */
  requestTimeoutMs?: number | undefined;
}

/** The pino methods the SDK's lines are written with (Fastify's logger is one). */
export interface SdkLogTarget {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/**
 * What the SDK warns of when a request whose body is a stream fails (it cannot send a stream
 * again, so it does not retry): said of every such failure, with no detail.
 */
const STREAMING_FAILURE = 'An error was encountered in a non-retryable streaming request.';

/**
 * The SDK's logger (its `debug`, `info`, `warn`, `error`) writing through Wharf's: without one
 * it writes plain lines with console.warn (a failed streaming write's, at least) to stderr,
 * beside the JSON lines of the log. Its `info` and `error` are a record of every call (its
 * input, a stream body included) and of every failed one (an expected 404 too): Wharf answers
 * and logs the failures that matter itself, so they are `debug`, a summary without the input.
 * Its warnings are `warn`, except the streaming failure's: the failure itself reaches Wharf,
 * which logs it with the request it failed (at error for the store's fault, a 507 or 503, at
 * info for a client's hang-up), so a second line at warn would only be noise; it is `debug`.
 */
export function sdkLogger(log: () => SdkLogTarget | undefined) {
  const at = (level: 'debug' | 'warn', content: unknown[]) => {
    const target = log();
    if (!target) return;
    const fields: Record<string, unknown> = {};
    const words: string[] = [];
    for (const item of content) {
      if (typeof item === 'string') words.push(item);
      else if (item instanceof Error) fields.error = stacklessError(item);
      else if (typeof item === 'object' && item !== null) Object.assign(fields, callSummary(item));
    }
    target[level]({ sdk: fields }, `AWS SDK: ${words.join(' ') || 'call'}`);
  };
  return {
    debug: (...content: unknown[]) => at('debug', content),
    info: (...content: unknown[]) => at('debug', content),
    warn: (...content: unknown[]) =>
      at(content.length === 1 && content[0] === STREAMING_FAILURE ? 'debug' : 'warn', content),
    error: (...content: unknown[]) => at('debug', content),
  };
}

/** Of the SDK's record of a call: which call, and how it failed; never its input or output. */
function callSummary(record: object): Record<string, unknown> {
  const { commandName, error, metadata } = record as {
    commandName?: unknown;
    error?: unknown;
    metadata?: { httpStatusCode?: unknown; attempts?: unknown } | undefined;
  };
  return {
    ...(typeof commandName === 'string' && { command: commandName }),
    ...(typeof metadata?.httpStatusCode === 'number' && { status: metadata.httpStatusCode }),
    ...(typeof metadata?.attempts === 'number' && { attempts: metadata.attempts }),
    ...(error !== undefined && { error: stacklessError(error) }),
  };
}

/**
 * An S3 client that only sends checksums when an operation requires one. The SDK's default
 * sends stream uploads aws-chunked with CRC trailers, which older servers (Ceph 16) reject,
 * and puts `x-amz-checksum-crc32` of an empty body into presigned PUT URLs, which AWS S3,
 * R2 and MinIO then hold against the real body.
 */
export function createS3Client(options: S3Options, abandon?: AbortSignal): S3Client {
  return reportingStoreRefusals(new S3Client(s3ClientConfig(options, abandon)));
}

/** Time to open a connection to the store; a store that does not accept one is away. */
const CONNECT_TIMEOUT_MS = 5_000;
/**
 * Time from sending a request to its answer's headers (a part's upload included): long enough
 * for an 8 MiB part over a slow link, short enough that a store that stopped answering turns
 * into a refusal rather than a request that never ends.
 */
const REQUEST_TIMEOUT_MS = 120_000;

/**
 * Failures of the store's connection (refused, reset, timed out) and its own "slow down /
 * unavailable" answers (503), once the SDK's retries are spent, as SERVICE_UNAVAILABLE: the
 * HTTP layer answers them 503 with Retry-After instead of 500. A write the store refuses for
 * want of room (a used-up quota, a full cluster: see isStoreFull) as STORAGE_FULL, the 507 a
 * full disk of the embedded deployment gets, rather than a 500. Added on the outermost step,
 * so the SDK still retries what it considers transient first.
 */
export function reportingStoreRefusals<T extends S3Client>(client: T): T {
  client.middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args);
      } catch (err) {
        if (isStoreAway(err)) throw serviceUnavailable('object store', err);
        throw isStoreFull(err) ? storageFull(err) : err;
      }
    },
    { step: 'initialize', name: 'wharfStoreRefusals', priority: 'high' },
  );
  return client;
}

function isStoreAway(err: unknown): boolean {
  if (isConnectionFailure(err)) return true;
  // The handler's connection and request timeouts.
  if ((err as { name?: unknown } | null)?.name === 'TimeoutError') return true;
  return err instanceof S3ServiceException && err.$metadata.httpStatusCode === 503;
}

/**
 * S3 error codes of a write refused for want of room. S3 itself has no quota; these are the
 * stores that do: Ceph RGW's bucket or user quota (`QuotaExceeded`, HTTP 403), MinIO's bucket
 * quota (`XMinioAdminBucketQuotaExceeded`, 400) and its full drives (`XMinioStorageFull`, 507).
 * Told by code (and 507, Insufficient Storage, whatever the code), never by message; a 403 of
 * another code (AccessDenied) stays what it is.
 */
const STORE_FULL_CODES = new Set(['QuotaExceeded', 'XMinioAdminBucketQuotaExceeded', 'XMinioStorageFull']);

function isStoreFull(err: unknown): boolean {
  if (!(err instanceof S3ServiceException)) return false;
  return STORE_FULL_CODES.has(err.name) || err.$metadata.httpStatusCode === 507;
}

/**
 * The settings of createS3Client, for libraries that build their own client (@tus/s3-store).
 * Once `abandon` aborts, every request still waiting on the store ends at once (an AbortError,
 * which the SDK does not retry) and every later one is refused: a stopping server does not wait
 * out REQUEST_TIMEOUT_MS times the SDK's attempts on a store that stopped answering.
 */
export function s3ClientConfig(options: S3Options, abandon?: AbortSignal): S3ClientConfig {
  const handler = {
    connectionTimeout: CONNECT_TIMEOUT_MS,
    requestTimeout: options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
    throwOnRequestTimeout: true,
  };
  return {
    endpoint: options.endpoint,
    region: options.region,
    forcePathStyle: options.forcePathStyle,
    credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // No `Expect: 100-continue`: Ceph RGW answers it with `100 Continue` before it checks the
    // bucket's quota, then sends `403 QuotaExceeded` and closes. The SDK, told to go on, was by
    // then writing the body into the closed connection, and Node's socket, failing that write
    // (EPIPE), dropped the refusal unread: about one write in four over a quota came back as
    // "store away" (503) instead of "full" (507), and the SDK's retries met the same race.
    // Sent whole at once, the body is answered 403 every time (300 of 300 against Ceph 16).
    // The header would save sending a body the store refuses; Wharf's bodies are parts of at
    // most 8 MiB by default, so an early refusal costs little either way.
    expectContinueHeader: false,
    requestHandler: abandon ? new AbandonableHandler(handler, abandon) : handler,
    retryStrategy: new NoRetryAfterTimeout(),
    ...(options.log && { logger: sdkLogger(options.log) }),
  };
}

/**
 * The SDK's standard retries (three attempts, backoff, its retry budget), except after a request
 * that timed out (REQUEST_TIMEOUT_MS without an answer): a store that stopped answering for two
 * minutes is not asked twice more, so a request needing it is refused 503 after 120 s, as
 * docs/reliability.md says, rather than after six minutes (a hunt met 360 s on a hung Ceph,
 * longer than any proxy or client waits). Connections refused or reset, a store's own 503 and a
 * connection not made within CONNECT_TIMEOUT_MS are still retried.
 */
export class NoRetryAfterTimeout {
  private readonly standard = new StandardRetryStrategy(STORE_ATTEMPTS);

  acquireInitialRetryToken(scope: string): ReturnType<StandardRetryStrategy['acquireInitialRetryToken']> {
    return this.standard.acquireInitialRetryToken(scope);
  }

  refreshRetryTokenForRetry(
    ...[token, info]: Parameters<StandardRetryStrategy['refreshRetryTokenForRetry']>
  ): ReturnType<StandardRetryStrategy['refreshRetryTokenForRetry']> {
    // The handler's request timeout, by its name and code (its connection timeout has no code).
    const { name, code } = (info.error ?? {}) as { name?: unknown; code?: unknown };
    if (name === 'TimeoutError' && code === 'ETIMEDOUT') return Promise.reject(info.error);
    return this.standard.refreshRetryTokenForRetry(token, info);
  }

  recordSuccess(token: Parameters<StandardRetryStrategy['recordSuccess']>[0]): void {
    this.standard.recordSuccess(token);
  }
}

/** Attempts per request, the SDK's own default. */
const STORE_ATTEMPTS = 3;

/** The SDK's handler, each request of which also ends when `abandon` aborts. */
class AbandonableHandler extends NodeHttpHandler {
  constructor(
    options: ConstructorParameters<typeof NodeHttpHandler>[0],
    private readonly abandon: AbortSignal,
  ) {
    super(options);
  }

  override handle(...[request, options = {}]: Parameters<NodeHttpHandler['handle']>) {
    const own = options.abortSignal as AbortSignal | undefined;
    const abortSignal = own ? AbortSignal.any([own, this.abandon]) : this.abandon;
    return super.handle(request, { ...options, abortSignal });
  }
}
