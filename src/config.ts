import { resolve } from 'node:path';

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
  logLevel: string;
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
    logLevel: env.WHARF_LOG_LEVEL ?? 'info',
  };
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
