import { dirname, join, resolve } from 'node:path';

/** Everything Wharf reads from its environment, parsed and checked once at start. */
export interface Config {
  host: string;
  port: number;
  publicUrl: string;
  dataDir: string;
  databaseUrl: string;
  apiKey: string | undefined;
  secret: string | undefined;
  maxFileSize: number;
  uploadExpiresSeconds: number;
  maxFilesPerRequest: number;
  sweepIntervalSeconds: number;
  /** How often this node looks for due jobs (processing, verification); 0 runs none. */
  jobIntervalMs: number;
  /** Objects up to this size whose SHA-256 storage cannot attest are hashed at completion. */
  inlineVerifyMaxBytes: number;
  /** How long a multipart or tus upload may run before it is aborted and its parts freed. */
  resumableExpiresSeconds: number;
  /** Origins whose pages may call Wharf from a browser (CORS); `*` allows any. */
  corsOrigins: string[];
  logLevel: string;
  /** Where bytes live: a local directory (embedded) or an S3-compatible bucket (scaled out). */
  storage: StorageConfig;
  images: ImageConfig;
  media: MediaConfig;
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
}

export class ConfigError extends Error {}

const GiB = 1024 ** 3;

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const host = env.WHARF_HOST ?? '127.0.0.1';
  const port = integer(env, 'WHARF_PORT', 8080, 0, 65535);
  const dataDir = resolve(env.WHARF_DATA_DIR ?? './data');
  const publicHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host;
  const publicUrl = (env.WHARF_PUBLIC_URL ?? `http://${publicHost}:${port}`).replace(/\/+$/, '');
  try {
    const url = new URL(publicUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('protocol');
  } catch {
    throw new ConfigError(`WHARF_PUBLIC_URL must be an http(s) URL, got ${JSON.stringify(publicUrl)}`);
  }
  const apiKey = env.WHARF_API_KEY || undefined;
  if (apiKey !== undefined && apiKey.length < 16) {
    throw new ConfigError('WHARF_API_KEY must be at least 16 characters.');
  }
  return {
    host,
    port,
    publicUrl,
    dataDir,
    databaseUrl: env.WHARF_DATABASE_URL ?? `sqlite://${resolve(dataDir, 'wharf.db')}`,
    apiKey,
    secret: env.WHARF_SECRET || undefined,
    maxFileSize: integer(env, 'WHARF_MAX_FILE_SIZE', 5 * GiB, 0, Number.MAX_SAFE_INTEGER),
    uploadExpiresSeconds: integer(env, 'WHARF_UPLOAD_EXPIRES', 900, 1, 7 * 24 * 3600),
    maxFilesPerRequest: integer(env, 'WHARF_MAX_FILES_PER_REQUEST', 1000, 1, 10_000),
    sweepIntervalSeconds: integer(env, 'WHARF_SWEEP_INTERVAL', 60, 0, 24 * 3600),
    jobIntervalMs: integer(env, 'WHARF_JOB_INTERVAL_MS', 1000, 0, 3600_000),
    inlineVerifyMaxBytes: integer(
      env,
      'WHARF_INLINE_VERIFY_MAX',
      16 * 1024 * 1024,
      0,
      Number.MAX_SAFE_INTEGER,
    ),
    resumableExpiresSeconds: integer(env, 'WHARF_RESUMABLE_EXPIRES', 24 * 3600, 60, 30 * 24 * 3600),
    corsOrigins: (env.WHARF_CORS_ORIGINS ?? '')
      .split(',')
      .map((origin) => origin.trim())
      .filter((origin) => origin !== ''),
    logLevel: env.WHARF_LOG_LEVEL ?? 'info',
    storage: storageConfig(env),
    images: {
      maxPixels: integer(env, 'WHARF_IMAGE_MAX_PIXELS', 60_000_000, 1, 1_000_000_000),
      maxInputBytes: integer(env, 'WHARF_IMAGE_MAX_INPUT', 64 * 1024 * 1024, 1, Number.MAX_SAFE_INTEGER),
      concurrency: integer(env, 'WHARF_IMAGE_CONCURRENCY', 2, 1, 256),
      queue: integer(env, 'WHARF_IMAGE_QUEUE', 32, 0, 100_000),
      timeoutSeconds: integer(env, 'WHARF_IMAGE_TIMEOUT', 30, 1, 3600),
      maxVariants: integer(env, 'WHARF_IMAGE_MAX_VARIANTS', 100, 1, 100_000),
    },
    media: mediaConfig(env),
  };
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

function storageConfig(env: NodeJS.ProcessEnv): StorageConfig {
  const kind = env.WHARF_STORAGE || 'local';
  if (kind === 'local') return { kind };
  if (kind !== 's3') throw new ConfigError(`WHARF_STORAGE must be local or s3, got ${JSON.stringify(kind)}`);
  const missing = ['WHARF_S3_BUCKET', 'WHARF_S3_ACCESS_KEY_ID', 'WHARF_S3_SECRET_ACCESS_KEY'].filter(
    (name) => !env[name],
  );
  if (missing.length > 0) {
    throw new ConfigError(`WHARF_STORAGE=s3 needs ${missing.join(', ')}.`);
  }
  const endpoint = env.WHARF_S3_ENDPOINT || undefined;
  if (endpoint !== undefined && !/^https?:\/\/[^/]/.test(endpoint)) {
    throw new ConfigError(`WHARF_S3_ENDPOINT must be an http(s) URL, got ${JSON.stringify(endpoint)}`);
  }
  return {
    kind,
    endpoint,
    region: env.WHARF_S3_REGION || 'us-east-1',
    bucket: env.WHARF_S3_BUCKET!,
    accessKeyId: env.WHARF_S3_ACCESS_KEY_ID!,
    secretAccessKey: env.WHARF_S3_SECRET_ACCESS_KEY!,
    // Servers other than AWS rarely resolve bucket.host names.
    forcePathStyle:
      choice(env, 'WHARF_S3_FORCE_PATH_STYLE', ['true', 'false'], endpoint ? 'true' : 'false') === 'true',
    downloads: choice(env, 'WHARF_S3_DOWNLOADS', ['stream', 'redirect'], 'stream'),
  };
}

function choice<T extends string>(env: NodeJS.ProcessEnv, name: string, allowed: T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(allowed as string[]).includes(raw)) {
    throw new ConfigError(`${name} must be ${allowed.join(' or ')}, got ${JSON.stringify(raw)}`);
  }
  return raw as T;
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name} must be a whole number, got ${JSON.stringify(raw)}`);
  const value = Number(raw);
  if (value < min || value > max)
    throw new ConfigError(`${name} must be between ${min} and ${max}, got ${raw}`);
  return value;
}
