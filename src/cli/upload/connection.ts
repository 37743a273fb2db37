import { readFile, realpath } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { redact } from '../../sdk/http.js';
import { writePrivateFile } from '../../sdk/node.js';
import type { Parsed } from '../args.js';
import { stringOption, UsageError } from '../args.js';

/** Where the server is and what to present: flags first, then the environment, then the config file. */
export interface Connection {
  url: string;
  key: string;
  /** Where resumable uploads keep their state between runs. */
  stateDir: string;
}

export interface ConfigFile {
  url?: string;
  key?: string;
  token?: string;
}

/** $XDG_CONFIG_HOME/wharf/config.json (default ~/.config/wharf/config.json), or WHARF_CONFIG. */
export function configPath(env: NodeJS.ProcessEnv): string {
  if (env.WHARF_CONFIG) return env.WHARF_CONFIG;
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'wharf', 'config.json');
}

/** The config file `--config` names, else configPath's. */
export function configTarget(values: Parsed['values'], env: NodeJS.ProcessEnv): string {
  return stringOption(values, 'config') ?? configPath(env);
}

/**
 * Writes the config file whole, readable by its owner only: it holds a key. Its temp file is
 * made afresh under a random name (writePrivateFile): `--config` may name a folder other users
 * can write to, where one of them could have created a predictable name first.
 */
export async function saveConfig(path: string, config: ConfigFile): Promise<void> {
  // Through a symlink (a dotfile manager's), the file it points to: the temp file's rename
  // replaced the link with a regular file (a hunt).
  const target = await realpath(path).catch(() => path);
  await writePrivateFile(target, `${JSON.stringify(config, null, 2)}\n`);
}

/** $XDG_STATE_HOME/wharf/uploads (default ~/.local/state/wharf/uploads). */
export function stateDir(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'wharf', 'uploads');
}

async function readConfigFile(path: string, explicit: boolean): Promise<ConfigFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (!explicit && (err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new UsageError(`Cannot read the config file ${path}: ${(err as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not an object');
    return parsed as ConfigFile;
  } catch (err) {
    throw new UsageError(`The config file ${path} is not a JSON object: ${(err as Error).message}`);
  }
}

/**
 * `configMayBeMissing`: a config file that was named (--config, WHARF_CONFIG) but does not exist
 * is an empty one, as the default file is; for `login`, which writes it.
 */
export async function resolveConnection(
  values: Parsed['values'],
  env: NodeJS.ProcessEnv,
  { configMayBeMissing = false }: { configMayBeMissing?: boolean } = {},
): Promise<Connection> {
  const named = stringOption(values, 'config') !== undefined || Boolean(env.WHARF_CONFIG);
  const path = configTarget(values, env);
  const file = await readConfigFile(path, named && !configMayBeMissing);
  const givenUrl = stringOption(values, 'url') ?? (env.WHARF_URL || undefined);
  const url = givenUrl ?? file.url;
  // A key or a token, from the first place that gives one: the flags, then the environment,
  // then the config file. Both in one place is a mistake, not a choice: the key silently won,
  // and a run meant to go as the token (what it may upload) went as the key (a hunt).
  const one = (where: string, key: string | undefined, token: string | undefined) => {
    if (key !== undefined && token !== undefined)
      throw new UsageError(`${where}: a key or a token, not both.`);
    return key ?? token;
  };
  const givenKey =
    one('--key and --token', stringOption(values, 'key'), stringOption(values, 'token')) ??
    one('WHARF_KEY and WHARF_TOKEN are both set', env.WHARF_KEY || undefined, env.WHARF_TOKEN || undefined);
  const savedKey =
    givenKey === undefined ? one(`${path} has "key" and "token"`, file.key, file.token) : undefined;
  const key = givenKey ?? savedKey;
  if (!url) {
    throw new UsageError('No server URL: pass --url, set WHARF_URL, or put "url" in the config file.');
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`The server URL "${redact(url)}" is not a URL (e.g. https://files.example.com).`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UsageError(`The server URL must be http(s), got "${redact(url)}".`);
  }
  // fetch refuses such a URL, which failed as NETWORK_ERROR with the password printed twice (a
  // hunt); Wharf authenticates by key, never by a URL's user and password.
  if (parsed.username || parsed.password) {
    throw new UsageError(
      `The server URL "${redact(url)}" holds a user or password: a URL with credentials is not accepted; use --key (or --token).`,
    );
  }
  // The config file's key belongs to the server it was saved with: taken to whatever --url or
  // WHARF_URL named, it went as a Bearer to a host that never issued it (a hunt).
  if (givenKey === undefined && savedKey && givenUrl !== undefined && !sameOrigin(givenUrl, file.url)) {
    throw new UsageError(
      `${file.url ? `The key in ${path} was saved for ${redact(file.url)}` : `The key in ${path} names no server ("url")`}, ` +
        `so it is not sent to ${redact(givenUrl)}: pass a key for that server with --key (or --token), ` +
        'or WHARF_KEY (or WHARF_TOKEN).',
    );
  }
  if (!key) {
    throw new UsageError(
      'No key: pass --key (or --token for an upload token), set WHARF_KEY, or put "key" in the config file.',
    );
  }
  return { url: url.replace(/\/+$/, ''), key, stateDir: stringOption(values, 'state-dir') ?? stateDir(env) };
}

/** Whether `a` and `b` are URLs of one origin (scheme, host and port). */
function sameOrigin(a: string, b: string | undefined): boolean {
  if (b === undefined) return false;
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

/** "5M", "5MiB", "512k", "1048576": bytes (binary units). */
export function parseSize(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!match) throw new UsageError(`${flag} must be a size such as 8M or 1048576, got "${text}".`);
  const power = ' kmgt'.indexOf((match[2] || ' ').toLowerCase());
  const bytes = Math.round(Number(match[1]) * 1024 ** power);
  if (!Number.isSafeInteger(bytes) || bytes < 1)
    throw new UsageError(`${flag} must be positive, got "${text}".`);
  return bytes;
}

/**
 * `flag`: the option as the docs and help name it (`-j` for concurrency: `--concurrency`, its
 * long form, is in neither, and an error naming it sent the user looking for it).
 */
export function positiveInt(
  values: Parsed['values'],
  name: string,
  fallback: number,
  flag = `--${name}`,
): number {
  const text = stringOption(values, name);
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new UsageError(`${flag} must be 1 to 64, got "${text}".`);
  return n;
}

/** S3's rule, which Wharf's multipart keeps: every part but the last at least 5 MiB, at most 5 GiB. */
export function parsePartSize(text: string): number {
  const bytes = parseSize(text, '--part-size');
  if (bytes < 5 * 1024 ** 2 || bytes > 5 * 1024 ** 3) {
    // Refused before anything is sent: the server would refuse the completion (PART_TOO_SMALL)
    // only after every byte had gone up.
    throw new UsageError(`--part-size must be 5M to 5G (S3's part sizes), got "${text}".`);
  }
  return bytes;
}
