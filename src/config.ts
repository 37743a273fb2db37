import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { CLIENT_VARIABLES } from './cli/upload/variables.js';
import { editDistance } from './core/edit-distance.js';
import { parseDatabaseUrl } from './db/url.js';

/** Everything Wharf reads from its environment, parsed and checked once at start. */
export interface Config {
  host: string;
  port: number;
  publicUrl: string;
  dataDir: string;
  databaseUrl: string;
  apiKey: string | undefined;
  secret: string | undefined;
  /** The server secret before the current one: what it sealed is sealed again at start. */
  previousSecret: string | undefined;
  maxFileSize: number;
  uploadExpiresSeconds: number;
  maxFilesPerRequest: number;
  sweepIntervalSeconds: number;
  /**
   * How long a direct upload's lease lasts: the node streaming its body renews it a third of this
   * apart, and once a dead node's lease has run out, any node's sweep ends the upload.
   */
  directUploadLeaseSeconds: number;
  /** How often this node looks for due jobs (processing, verification); 0 runs none. */
  jobIntervalMs: number;
  /** How many jobs this node runs at once (a slow webhook endpoint must not hold up processing). */
  jobConcurrency: number;
  /** Objects up to this size whose SHA-256 storage cannot attest are hashed at completion. */
  inlineVerifyMaxBytes: number;
  /** How long a multipart or tus upload may run before it is aborted and its parts freed. */
  resumableExpiresSeconds: number;
  /**
   * The most bytes one Resumable Uploads for HTTP request should carry (`Upload-Limit:
   * max-append-size`): set it to the body cap of a proxy in front of Wharf.
   */
  resumableMaxAppendSize: number;
  /**
   * WHARF_RESUMABLE_INTERIM_RESPONSE: whether a Resumable Uploads for HTTP creation gets its 104
   * ahead of the answer. Off behind a proxy that takes a 1xx other than 100 for the answer (nginx).
   */
  resumableInterimResponse: boolean;
  /** The most pending uploads one key may have at once (generous: benchmarks presign many). */
  maxOpenUploadsPerKey: number;
  /** The most pending uploads one upload token may have at once. */
  maxOpenUploadsPerToken: number;
  /** The most upload bodies one account may stream through this process at once. */
  maxUploadStreamsPerAccount: number;
  maxUploadStreamsPerToken: number;
  /** Origins whose pages may call Wharf from a browser (CORS); `*` allows any. */
  corsOrigins: string[];
  /**
   * WHARF_TRUST_PROXY: the proxies (addresses, CIDR ranges, or proxy-addr's `loopback`,
   * `linklocal`, `uniquelocal`) whose X-Forwarded-For names the client; empty: none is trusted.
   */
  trustProxy: string[];
  logLevel: string;
  /** Outbound webhook deliveries. */
  webhooks: WebhookConfig;
  /** How long events (and finished webhook deliveries) are kept, in days. */
  eventsRetentionDays: number;
  /** How long a stopping server lets requests in flight finish before it cuts them. */
  shutdownTimeoutSeconds: number;
  /**
   * How long a stopping server (SIGTERM, SIGINT) goes on serving everything, /readyz answering
   * 503 `stopping`, before it stops listening: time for a balancer that polls /readyz
   * (Kubernetes) to take the node out of rotation, so clients meet no refused connection.
   */
  shutdownDelaySeconds: number;
  /** Seconds a request or response body may move no byte before its connection is cut (0: never). */
  bodyIdleTimeoutSeconds: number;
  /** Metrics exposure (GET /metrics); see docs/operations.md. */
  metrics: MetricsConfig;
  /** Where bytes live: a local directory (embedded) or an S3-compatible bucket (scaled out). */
  storage: StorageConfig;
  images: ImageConfig;
  media: MediaConfig;
  /** The web console at /console. */
  console: ConsoleConfig;
}

/** Limits of image transforms (see docs/images.md). */
export interface ImageConfig {
  maxPixels: number;
  maxInputBytes: number;
  concurrency: number;
  queue: number;
  timeoutSeconds: number;
  maxVariants: number;
}

/** External tools for video, audio and PDF facts and previews; absent ones are detected at start. */
export interface MediaConfig {
  ffmpeg: string;
  ffprobe: string;
  pdftoppm: string;
  pdfinfo: string;
  timeoutSeconds: number;
  maxInputBytes: number;
}

export interface ConsoleConfig {
  /** WHARF_CONSOLE: false serves no console (and no session routes). */
  enabled: boolean;
  /** WHARF_CONSOLE_SESSION_TTL: the absolute lifetime of a console session. */
  sessionTtlSeconds: number;
  /** WHARF_CONSOLE_IDLE_TIMEOUT: a session unused this long ends. */
  idleTimeoutSeconds: number;
}

export interface WebhookConfig {
  /** How long one delivery attempt may take, connection to answer (WHARF_WEBHOOK_TIMEOUT_MS). */
  timeoutMs: number;
  /**
   * WHARF_WEBHOOK_CONCURRENCY: how many attempts one endpoint may have in flight at once,
   * across every node. More sends a busy endpoint more per second; an endpoint that never
   * answers holds that many job workers.
   */
  concurrency: number;
  /**
   * WHARF_WEBHOOK_ALLOW_PRIVATE: endpoints on private, loopback, link-local … addresses are
   * accepted. Off by default: a URL an API caller chose must not reach the server's own network.
   */
  allowPrivate: boolean;
}

/**
 * Metrics tell how much is uploaded and how often: they are served only where the
 * operator says. With a token, /metrics on the main port answers a Bearer of it; with a port,
 * a listener of its own (loopback unless told otherwise) serves it. Neither: not served.
 */
export interface MetricsConfig {
  /** WHARF_METRICS_TOKEN: required from every scraper, wherever /metrics is served. */
  token: string | undefined;
  /** WHARF_METRICS_PORT: a separate listener for /metrics only. */
  port: number | undefined;
  /** WHARF_METRICS_HOST: where that listener binds (127.0.0.1). */
  host: string;
}

export type StorageConfig = { kind: 'local' } | ({ kind: 's3' } & S3Config);

export interface S3Config {
  /** Unset for AWS S3 itself. */
  endpoint: string | undefined;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle: boolean;
  /** `redirect`: downloads 302 to a presigned URL of the bucket; `stream`: through Wharf. */
  downloads: 'stream' | 'redirect';
  /**
   * WHARF_S3_UPLOAD_ACCESS_KEY_ID and WHARF_S3_UPLOAD_SECRET_ACCESS_KEY: write-only credentials
   * that sign the URLs clients upload with (see S3BlobStore's `signing`); unset: the main ones.
   */
  upload: { accessKeyId: string; secretAccessKey: string } | undefined;
}

/**
 * What is wrong with the environment: every problem found, one line each naming its variable,
 * so a deployment is fixed in one round rather than one variable per restart.
 */
export class ConfigError extends Error {
  readonly problems: string[];
  /**
   * Warnings of the same load (unknown WHARF_* variables): a typo may be what caused a problem
   * (a misspelt bucket setting, then "WHARF_S3_BUCKET must be set"), so they are shown with it.
   */
  readonly warnings: string[];

  constructor(problems: string | string[], warnings: string[] = []) {
    const list = typeof problems === 'string' ? [problems] : problems;
    super(list.join('\n'));
    this.name = 'ConfigError';
    this.problems = list;
    this.warnings = warnings;
  }
}

export interface LoadedConfig {
  config: Config;
  /** Not fatal, one line each: unknown WHARF_* variables (likely typos), settings that are ignored. */
  warnings: string[];
}

const GiB = 1024 ** 3;
/**
 * Stored renderings per asset (WHARF_IMAGE_MAX_VARIANTS) by default: far more than sizes and
 * formats in ordinary use need; requests without a key may make half (core/images.ts).
 */
export const DEFAULT_MAX_VARIANTS = 100;
/** WHARF_SECRET's least length: 32 random characters (`openssl rand -base64 32` makes 44). */
export const MIN_SECRET_LENGTH = 32;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** The configuration, or a ConfigError listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  return readConfig(env).config;
}

/** The configuration and its warnings, or a ConfigError listing every problem. */
export function readConfig(raw: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const env = tracked(raw);
  const notes = notesOf(env);
  let config: Config | undefined;
  try {
    config = buildConfig(env);
  } catch (err) {
    // A check that throws instead of reporting still gets its say, next to the others.
    if (!(err instanceof ConfigError)) throw err;
    notes.problems.push(...err.problems);
  }
  const known = knownVariables();
  const warnings = unknownVariables(raw, known);
  if (notes.problems.length > 0 || !config) throw new ConfigError(notes.problems, warnings);
  if (raw.WHARF_METRICS_HOST && !raw.WHARF_METRICS_PORT) {
    // No listener of its own is made: it would not be bound where the operator meant it.
    warnings.push(
      'WHARF_METRICS_HOST is set but WHARF_METRICS_PORT is not, so it is ignored (no separate metrics listener is opened).',
    );
  }
  if (config.storage.kind === 'local') {
    // A forgotten WHARF_STORAGE=s3 would otherwise keep every byte on this node's disk, unnoticed.
    for (const name of Object.keys(raw).sort()) {
      if (name.startsWith('WHARF_S3_') && raw[name] && known.includes(name)) {
        warnings.push(
          `${name} is set but WHARF_STORAGE is not s3, so it is ignored (bytes stay in WHARF_DATA_DIR).`,
        );
      }
    }
  }
  return { config, warnings };
}

/**
 * Every WHARF_* variable Wharf reads, taken from the code that reads them (a load of an empty
 * environment through the recording reader), so no hand-kept list can fall behind.
 */
export function knownVariables(): string[] {
  const env = tracked({});
  buildConfig(env);
  return [...notesOf(env).read].filter((name) => name.startsWith('WHARF_')).sort();
}

/**
 * Reads the environment. Every read goes through `env`, which records the name (that is how
 * knownVariables() learns them), and the helpers below report a bad value instead of throwing,
 * so one start lists every problem. Rule for new settings: read them unconditionally (check
 * conditions after reading), or knownVariables() misses them and a set one is called unknown;
 * test/unit/config.test.ts checks that every name in this file is known.
 */
function buildConfig(env: NodeJS.ProcessEnv): Config {
  const host = env.WHARF_HOST || '127.0.0.1';
  const port = integer(env, 'WHARF_PORT', 8080, 0, 65535);
  const dataDir = resolve(env.WHARF_DATA_DIR || './data');
  const publicHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host;
  // An IPv6 address is bracketed in a URL (http://[::1]:8080).
  const derivedUrl = `http://${publicHost.includes(':') ? `[${publicHost}]` : publicHost}:${port}`;
  const publicUrl = canonicalUrl(env.WHARF_PUBLIC_URL || derivedUrl);
  if (port === 0 && !env.WHARF_PUBLIC_URL) {
    // Any free port is chosen only at listen; every URL handed out (and signed) names it before.
    report(
      env,
      'WHARF_PORT 0 (any free port) needs WHARF_PUBLIC_URL: the URLs Wharf hands out name the port.',
    );
  }
  if (!env.WHARF_PUBLIC_URL && !(isHttpUrl(publicUrl) && isOrigin(publicUrl))) {
    // The URL is made from WHARF_HOST, which the operator set; WHARF_PUBLIC_URL they did not.
    report(env, `WHARF_HOST must be a host name or an IP address, got ${JSON.stringify(host)}`);
  } else if (!isHttpUrl(publicUrl)) {
    report(env, `WHARF_PUBLIC_URL must be an http(s) URL, got ${JSON.stringify(redactUrl(publicUrl))}`);
  } else if (hasUserInfo(publicUrl)) {
    // Every presigned, signed and content URL is built on it: a password there goes to every client.
    report(
      env,
      `WHARF_PUBLIC_URL must not hold a user or password (every URL Wharf hands out starts with it), got ${JSON.stringify(redactUrl(publicUrl))}`,
    );
  } else if (!isOrigin(publicUrl)) {
    // Wharf appends its paths to it: after a query or fragment they are no path at all, and
    // under a path prefix neither its routes (the console's included) nor the presigned URLs'
    // signatures would match what arrives. So it is served at the root of its origin.
    report(
      env,
      `WHARF_PUBLIC_URL must be scheme://host[:port] only, with no path, query or fragment: Wharf is served at the root of its origin, got ${JSON.stringify(publicUrl)}`,
    );
  }
  const apiKey = env.WHARF_API_KEY || undefined;
  if (apiKey !== undefined && apiKey.length < 16) {
    report(env, 'WHARF_API_KEY must be at least 16 characters.');
  }
  // Every signing key (download, transform and presigned URLs, signed ids, the console's CSRF
  // tokens) and the webhook seal derive from it by one HMAC: a short one falls to an offline
  // guess from any signed URL a browser was given. The previous one only opens what it sealed,
  // and a short one must stay usable to move away from it.
  const secret = env.WHARF_SECRET || undefined;
  if (secret !== undefined && secret.length < MIN_SECRET_LENGTH) {
    report(env, `WHARF_SECRET must be at least ${MIN_SECRET_LENGTH} characters.`);
  }
  const databaseUrl = env.WHARF_DATABASE_URL || `sqlite://${resolve(dataDir, 'wharf.db')}`;
  const database = parseDatabaseUrl(databaseUrl);
  if ('problem' in database) report(env, `WHARF_DATABASE_URL ${database.problem}`);
  return {
    host,
    port,
    publicUrl,
    dataDir,
    databaseUrl,
    apiKey,
    secret,
    previousSecret: env.WHARF_SECRET_PREVIOUS || undefined,
    // 0 would refuse every file but an empty one, where 0 means "off" for other settings.
    maxFileSize: integer(env, 'WHARF_MAX_FILE_SIZE', 5 * GiB, 1, Number.MAX_SAFE_INTEGER),
    uploadExpiresSeconds: integer(env, 'WHARF_UPLOAD_EXPIRES', 900, 1, 7 * 24 * 3600),
    maxFilesPerRequest: integer(env, 'WHARF_MAX_FILES_PER_REQUEST', 1000, 1, 10_000),
    sweepIntervalSeconds: integer(env, 'WHARF_SWEEP_INTERVAL', 60, 0, 24 * 3600),
    directUploadLeaseSeconds: integer(env, 'WHARF_DIRECT_UPLOAD_LEASE', 300, 3, 24 * 3600),
    jobIntervalMs: integer(env, 'WHARF_JOB_INTERVAL_MS', 1000, 0, 3600_000),
    jobConcurrency: integer(env, 'WHARF_JOB_CONCURRENCY', 4, 1, 64),
    inlineVerifyMaxBytes: integer(
      env,
      'WHARF_INLINE_VERIFY_MAX',
      16 * 1024 * 1024,
      0,
      Number.MAX_SAFE_INTEGER,
    ),
    resumableExpiresSeconds: integer(env, 'WHARF_RESUMABLE_EXPIRES', 24 * 3600, 60, 30 * 24 * 3600),
    resumableMaxAppendSize: integer(
      env,
      'WHARF_RESUMABLE_MAX_APPEND_SIZE',
      100 * 1024 * 1024,
      1024 * 1024,
      Number.MAX_SAFE_INTEGER,
    ),
    resumableInterimResponse:
      choice(env, 'WHARF_RESUMABLE_INTERIM_RESPONSE', ['true', 'false'], 'true') === 'true',
    maxOpenUploadsPerKey: integer(env, 'WHARF_MAX_OPEN_UPLOADS_PER_KEY', 10_000_000, 1, 1_000_000_000),
    maxOpenUploadsPerToken: integer(env, 'WHARF_MAX_OPEN_UPLOADS_PER_TOKEN', 100, 1, 1_000_000),
    maxUploadStreamsPerAccount: integer(
      env,
      'WHARF_MAX_UPLOAD_STREAMS_PER_ACCOUNT',
      defaultUploadStreams(),
      1,
      1_000_000,
    ),
    // A browser sends a few bodies at once (6 connections a host over HTTP/1.1; upload libraries
    // run 1-10 parts or files in parallel), so 32 never refuses one, yet keeps one token (one
    // user) to a small share of its account's streams.
    maxUploadStreamsPerToken: integer(env, 'WHARF_MAX_UPLOAD_STREAMS_PER_TOKEN', 32, 1, 1_000_000),
    corsOrigins: corsOrigins(env),
    trustProxy: trustProxy(env),
    logLevel: choice(env, 'WHARF_LOG_LEVEL', LOG_LEVELS, 'info'),
    shutdownTimeoutSeconds: integer(env, 'WHARF_SHUTDOWN_TIMEOUT', 30, 0, 3600),
    // 0: a stop under systemd or compose, where no balancer polls /readyz, is not held up.
    shutdownDelaySeconds: integer(env, 'WHARF_SHUTDOWN_DELAY', 0, 0, 600),
    bodyIdleTimeoutSeconds: integer(env, 'WHARF_BODY_IDLE_TIMEOUT', 60, 0, 86400),
    webhooks: {
      // At most a minute: a job's lease (90 s, renewed while it runs) must outlast any attempt,
      // or another node could take the delivery over should a renewal fail.
      timeoutMs: integer(env, 'WHARF_WEBHOOK_TIMEOUT_MS', 10_000, 100, 60_000),
      concurrency: integer(env, 'WHARF_WEBHOOK_CONCURRENCY', 2, 1, 64),
      allowPrivate: choice(env, 'WHARF_WEBHOOK_ALLOW_PRIVATE', ['true', 'false'], 'false') === 'true',
    },
    eventsRetentionDays: integer(env, 'WHARF_EVENTS_RETENTION_DAYS', 30, 1, 3650),
    metrics: metricsConfig(env, port),
    storage: storageConfig(env),
    images: {
      maxPixels: integer(env, 'WHARF_IMAGE_MAX_PIXELS', 60_000_000, 1, 1_000_000_000),
      maxInputBytes: integer(env, 'WHARF_IMAGE_MAX_INPUT', 64 * 1024 * 1024, 1, Number.MAX_SAFE_INTEGER),
      concurrency: integer(env, 'WHARF_IMAGE_CONCURRENCY', 2, 1, 256),
      queue: integer(env, 'WHARF_IMAGE_QUEUE', 32, 0, 100_000),
      timeoutSeconds: integer(env, 'WHARF_IMAGE_TIMEOUT', 30, 1, 3600),
      maxVariants: integer(env, 'WHARF_IMAGE_MAX_VARIANTS', DEFAULT_MAX_VARIANTS, 1, 100_000),
    },
    media: mediaConfig(env),
    console: {
      enabled: choice(env, 'WHARF_CONSOLE', ['true', 'false'], 'true') === 'true',
      sessionTtlSeconds: integer(env, 'WHARF_CONSOLE_SESSION_TTL', 12 * 3600, 60, 30 * 24 * 3600),
      idleTimeoutSeconds: integer(env, 'WHARF_CONSOLE_IDLE_TIMEOUT', 3600, 60, 30 * 24 * 3600),
    },
  };
}

/**
 * WHARF_CORS_ORIGINS, each entry as browsers send an Origin: `scheme://host[:port]`, the host
 * in lower case, no default port, no trailing slash (an entry is compared with the header as
 * it comes). So `https://App.Example.com/` is taken as `https://app.example.com`; an entry that
 * no Origin could ever equal (a path, a query, no scheme) is refused rather than left to fail
 * silently in the browser. `*` allows any; `null` is what sandboxed pages send.
 */
/**
 * WHARF_MAX_UPLOAD_STREAMS_PER_ACCOUNT's default: 1,000, or an eighth of the process's open-file
 * limit if that is less. A body streaming in costs about two descriptors (its socket, and its
 * temp file or storage write), so one account can hold at most a quarter of them and the rest
 * stay for everyone else (a hunt's account that held 9,950 took all 20,000). The soft limit,
 * which Node raises to the hard one as it starts, is read from /proc/self/limits on Linux;
 * elsewhere, or unreadable, 1,000.
 */
function defaultUploadStreams(): number {
  const ceiling = 1_000;
  try {
    const line = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    const soft = line ? Number(line[1]) : Number.NaN;
    return Number.isSafeInteger(soft) ? Math.max(1, Math.min(ceiling, Math.floor(soft / 8))) : ceiling;
  } catch {
    return ceiling;
  }
}

function corsOrigins(env: NodeJS.ProcessEnv): string[] {
  const entries = (env.WHARF_CORS_ORIGINS ?? '')
    .split(',')
    .map((origin) => origin.trim())
    .filter((origin) => origin !== '');
  return entries.map((entry) => {
    if (entry === '*' || entry === 'null') return entry;
    let url: URL | undefined;
    try {
      url = new URL(entry);
    } catch {
      // Reported below.
    }
    const origin = url && (url.protocol === 'http:' || url.protocol === 'https:') ? url.origin : undefined;
    const onlyOrigin =
      url !== undefined &&
      url.username === '' &&
      url.password === '' &&
      url.pathname === '/' &&
      url.search === '' &&
      url.hash === '' &&
      // `https://a.example.com?` and `…#` parse to an empty search or hash: still not an origin.
      !/[?#]/.test(entry);
    if (origin === undefined || !onlyOrigin) {
      report(
        env,
        `WHARF_CORS_ORIGINS entry ${JSON.stringify(redactUrl(entry))} is not an origin: browsers send ` +
          `scheme://host[:port] only (e.g. ${JSON.stringify(origin ?? 'https://app.example.com')}), so it could never match`,
      );
      return entry;
    }
    return origin;
  });
}

/** The names proxy-addr (Fastify's `trustProxy`) gives to ranges of addresses. */
const PROXY_RANGE_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

/**
 * WHARF_TRUST_PROXY: comma-separated addresses and CIDR ranges of the proxies in front of
 * Wharf. A request from one of them is taken to be from the address its X-Forwarded-For names
 * (Fastify's `trustProxy`, so that `request.ip` is the client's): the address the console's
 * sign-in limit counts failures against and the request log shows. Only listed addresses: `true`
 * (any sender) would let every client name its own address and walk past the limit, and a hop
 * count does not say which peer is the proxy (Fastify trusts none for one). Entries are checked
 * here as proxy-addr would read them, so a typo is refused at start rather than at the first
 * request, or by Fastify with a bare TypeError.
 */
function trustProxy(env: NodeJS.ProcessEnv): string[] {
  const entries = (env.WHARF_TRUST_PROXY ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  for (const entry of entries) {
    if (!isProxyAddress(entry)) {
      report(
        env,
        `WHARF_TRUST_PROXY entry ${JSON.stringify(entry)} is not an address: list the proxies' IP addresses ` +
          `or CIDR ranges (127.0.0.1, 10.0.0.0/8, ::1), or ${PROXY_RANGE_NAMES.join(', ')}, separated by commas`,
      );
    }
  }
  return entries;
}

function isProxyAddress(entry: string): boolean {
  if (PROXY_RANGE_NAMES.includes(entry)) return true;
  const [address = '', prefix, ...rest] = entry.split('/');
  // No zone (fe80::1%eth0): proxy-addr's parser does not take one.
  const version = address.includes('%') ? 0 : isIP(address);
  if (version === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  // proxy-addr refuses /0 (trusting every sender, which WHARF_TRUST_PROXY does not offer).
  return /^\d{1,3}$/.test(prefix) && Number(prefix) >= 1 && Number(prefix) <= (version === 4 ? 32 : 128);
}

function mediaConfig(env: NodeJS.ProcessEnv): MediaConfig {
  // A tool's companion is looked for beside it when only the first is configured, so
  // WHARF_FFMPEG=/opt/ffmpeg/bin/ffmpeg finds /opt/ffmpeg/bin/ffprobe.
  const beside = (path: string | undefined, name: string) => (path ? join(dirname(path), name) : name);
  const ffmpeg = env.WHARF_FFMPEG || 'ffmpeg';
  const pdftoppm = env.WHARF_PDFTOPPM || 'pdftoppm';
  return {
    ffmpeg,
    ffprobe: env.WHARF_FFPROBE || beside(env.WHARF_FFMPEG, 'ffprobe'),
    pdftoppm,
    pdfinfo: env.WHARF_PDFINFO || beside(env.WHARF_PDFTOPPM, 'pdfinfo'),
    timeoutSeconds: integer(env, 'WHARF_MEDIA_TIMEOUT', 60, 1, 3600),
    maxInputBytes: integer(env, 'WHARF_MEDIA_MAX_INPUT', 2 * GiB, 1, Number.MAX_SAFE_INTEGER),
  };
}

function metricsConfig(env: NodeJS.ProcessEnv, port: number): MetricsConfig {
  const token = env.WHARF_METRICS_TOKEN || undefined;
  if (token !== undefined && token.length < 16) {
    report(env, 'WHARF_METRICS_TOKEN must be at least 16 characters.');
  }
  const metricsPort = env.WHARF_METRICS_PORT ? integer(env, 'WHARF_METRICS_PORT', 0, 1, 65535) : undefined;
  const host = env.WHARF_METRICS_HOST || '127.0.0.1';
  // Checked as WHARF_HOST is, when it is used; set without WHARF_METRICS_PORT it is a warning
  // (readConfig). An address that is not this machine's is found only at listen.
  if (metricsPort !== undefined && !isHostName(host)) {
    report(env, `WHARF_METRICS_HOST must be a host name or an IP address, got ${JSON.stringify(host)}`);
  }
  if (metricsPort === port) {
    report(
      env,
      `WHARF_METRICS_PORT must differ from WHARF_PORT (${port}); to serve /metrics on the main port, set WHARF_METRICS_TOKEN.`,
    );
  }
  return { token, port: metricsPort, host };
}

const S3_REQUIRED = ['WHARF_S3_BUCKET', 'WHARF_S3_ACCESS_KEY_ID', 'WHARF_S3_SECRET_ACCESS_KEY'] as const;

function storageConfig(env: NodeJS.ProcessEnv): StorageConfig {
  const kind = choice(env, 'WHARF_STORAGE', ['local', 's3'], 'local');
  // Every S3 setting is read whatever the kind (see buildConfig), and checked only for s3.
  const endpoint = env.WHARF_S3_ENDPOINT || undefined;
  const uploadKeyId = env.WHARF_S3_UPLOAD_ACCESS_KEY_ID || '';
  const uploadSecret = env.WHARF_S3_UPLOAD_SECRET_ACCESS_KEY || '';
  const s3 = {
    endpoint,
    region: env.WHARF_S3_REGION || 'us-east-1',
    bucket: env.WHARF_S3_BUCKET || '',
    accessKeyId: env.WHARF_S3_ACCESS_KEY_ID || '',
    secretAccessKey: env.WHARF_S3_SECRET_ACCESS_KEY || '',
    // Servers other than AWS rarely resolve bucket.host names.
    forcePathStyle:
      choice(env, 'WHARF_S3_FORCE_PATH_STYLE', ['true', 'false'], endpoint ? 'true' : 'false') === 'true',
    downloads: choice(env, 'WHARF_S3_DOWNLOADS', ['stream', 'redirect'], 'stream'),
    upload:
      uploadKeyId && uploadSecret ? { accessKeyId: uploadKeyId, secretAccessKey: uploadSecret } : undefined,
  };
  if (kind === 'local') return { kind };
  // One without the other would sign with half of each pair: every upload would be refused.
  if (!uploadKeyId !== !uploadSecret) {
    report(
      env,
      'WHARF_S3_UPLOAD_ACCESS_KEY_ID and WHARF_S3_UPLOAD_SECRET_ACCESS_KEY are set together, or neither.',
    );
  }
  for (const name of S3_REQUIRED) {
    if (!env[name]) report(env, `${name} must be set when WHARF_STORAGE=s3.`);
  }
  if (endpoint !== undefined && !isHttpUrl(endpoint)) {
    report(env, `WHARF_S3_ENDPOINT must be an http(s) URL, got ${JSON.stringify(redactUrl(endpoint))}`);
  } else if (endpoint !== undefined && !isOrigin(endpoint)) {
    // The S3 client puts the bucket (or, virtual-hosted, nothing) right after the host and keeps
    // no path of the endpoint's in what it signs: the start failed on "NoSuchBucket: UnknownError".
    report(
      env,
      `WHARF_S3_ENDPOINT must be scheme://host[:port] only, with no path, query or fragment (the bucket is WHARF_S3_BUCKET), got ${JSON.stringify(redactUrl(endpoint))}`,
    );
  }
  return { kind, ...s3 };
}

/**
 * The URL as a URL parser reads it (scheme and host lower-case, surrounding spaces gone), without
 * a trailing slash: every URL Wharf hands out starts with it, and the console's cookie is
 * `Secure` when it starts with `https:`. Left as given when it does not parse (then refused).
 */
function canonicalUrl(value: string): string {
  try {
    return new URL(value).href.replace(/\/+$/, '');
  } catch {
    return value.replace(/\/+$/, '');
  }
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.host !== '';
  } catch {
    return false;
  }
}

/** A URL as it may be shown: never with its password. */
/** The URL with its user information (up to the authority's last @, as URL parsers read it) hidden. */
function redactUrl(value: string): string {
  return value.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/?#]*@/, '$1***@');
}

/** Whether `host` makes an http URL's host alone, as WHARF_HOST is checked (an IPv6 address bracketed). */
function isHostName(host: string): boolean {
  const url = `http://${host.includes(':') ? `[${host}]` : host}:1`;
  return isHttpUrl(url) && isOrigin(url);
}

/** No path but `/`, and no `?` or `#` (even empty: they would still cut every URL built on it). */
function isOrigin(value: string): boolean {
  const url = new URL(value);
  return url.pathname === '/' && !url.href.includes('?') && !url.href.includes('#');
}

function hasUserInfo(value: string): boolean {
  const url = new URL(value);
  return url.username !== '' || url.password !== '';
}

function choice<T extends string>(env: NodeJS.ProcessEnv, name: string, allowed: T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(allowed as string[]).includes(raw)) {
    const options = allowed.length > 2 ? `one of ${allowed.join(', ')}` : allowed.join(' or ');
    report(env, `${name} must be ${options}, got ${JSON.stringify(raw)}`);
    return fallback;
  }
  return raw as T;
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) {
    report(env, `${name} must be a whole number, got ${JSON.stringify(raw)}`);
    return fallback;
  }
  const value = Number(raw);
  if (value < min || value > max) {
    report(env, `${name} must be between ${min} and ${max}, got ${raw}`);
    return fallback;
  }
  return value;
}

interface Notes {
  read: Set<string>;
  problems: string[];
}

const NOTES = new WeakMap<object, Notes>();

/**
 * The environment behind a Proxy that records each name read. A Proxy rather than a reader
 * API so that every way of reading (`env.X`, `env[name]`, the helpers) is recorded alike, and
 * settings other branches add in the usual style are known without further wiring.
 */
function tracked(raw: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const notes: Notes = { read: new Set(), problems: [] };
  const env = new Proxy(raw, {
    get(target, name) {
      if (typeof name === 'string') notes.read.add(name);
      return typeof name === 'string' ? target[name] : undefined;
    },
  });
  NOTES.set(env, notes);
  return env;
}

function notesOf(env: NodeJS.ProcessEnv): Notes {
  const notes = NOTES.get(env);
  if (!notes) throw new Error('not an environment made by tracked()');
  return notes;
}

/** A bad value: collected, so that every one is reported at once. */
function report(env: NodeJS.ProcessEnv, problem: string): void {
  const notes = NOTES.get(env);
  if (!notes) throw new ConfigError(problem);
  notes.problems.push(problem);
}

/** WHARF_* variables Wharf does not read: most likely typos of ones it does (the CLI client's are not). */
function unknownVariables(raw: NodeJS.ProcessEnv, known: string[]): string[] {
  return Object.keys(raw)
    .filter((name) => name.startsWith('WHARF_') && !known.includes(name) && !CLIENT_VARIABLES.includes(name))
    .sort()
    .map((name) => {
      const near = closest(name, known);
      return `${name} is not a Wharf setting and is ignored${near ? ` (did you mean ${near}?)` : ''}.`;
    });
}

function closest(name: string, known: string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const candidate of known) {
    const distance = editDistance(name, candidate);
    if (!best || distance < best.distance) best = { name: candidate, distance };
  }
  // A slip of a few letters, not any other variable that happens to share the prefix.
  return best && best.distance <= Math.max(2, Math.floor(name.length / 6)) ? best.name : undefined;
}
