import { basename, resolve } from 'node:path';
import {
  connect,
  downloadToFile,
  downloadToStream,
  FileResumeStore,
  type Wharf,
  WharfApiError,
} from '../../sdk/node.js';
import type { Asset } from '../../sdk/types.js';
import { type Parsed, stringOption, UsageError } from '../args.js';
import type { Connection } from './connection.js';
import { configTarget, parsePartSize, parseSize, positiveInt, saveConfig } from './connection.js';
import { barDisplay, type Display, type FileOutcome, human, plainDisplay, silentDisplay } from './display.js';
import { type LocalFile, RateLimit } from './files.js';
import type { CliIo } from './main.js';
import { transfer } from './transfer.js';

// Three retries of a failure (a lost connection, a 5xx); refusals that say "busy" are retried
// for the SDK's default budget (two minutes of Retry-After), as docs/configuration.md invites.
function client(connection: Connection): Wharf {
  return connect({ url: connection.url, key: connection.key, retry: { retries: 3 } });
}

function json(io: CliIo, value: unknown): void {
  io.stdout(`${JSON.stringify(value, null, 2)}\n`);
}

async function display(values: Parsed['values'], io: CliIo): Promise<Display> {
  if (values.json) return silentDisplay();
  // Its value was checked with the other options (runClient).
  const mode = stringOption(values, 'progress') ?? 'auto';
  if (mode !== 'plain' && io.terminal) return barDisplay(io.terminal);
  return plainDisplay(io.stdout);
}

/**
 * upload and sync: the files, with bars or lines or one JSON document; Ctrl-C or SIGTERM stops
 * and keeps what resumes (exit code 130, as get).
 */
export async function runTransfer(
  files: LocalFile[],
  values: Parsed['values'],
  connection: Connection,
  io: CliIo,
): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    // The first one stops cleanly (state kept to resume, an upload that cannot resume cancelled
    // on the server); a second one does not wait. SIGTERM (kill, a service manager, a CI timeout)
    // too: Node's default ended the process at once, leaving presigned uploads pending on the
    // server, holding quota and open-upload slots until they expired.
    if (++interrupts > 1) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const rate = stringOption(values, 'limit-rate');
    const partSize = stringOption(values, 'part-size');
    const threshold = stringOption(values, 'multipart-threshold');
    const outcomes = await transfer(client(connection), files, await display(values, io), {
      concurrency: positiveInt(values, 'concurrency', 4, '-j'),
      partSize: partSize === undefined ? undefined : parsePartSize(partSize),
      contentType: stringOption(values, 'content-type'),
      multipartFrom: threshold === undefined ? undefined : parseSize(threshold, '--multipart-threshold'),
      limit: rate === undefined ? undefined : new RateLimit(parseSize(rate, '--limit-rate')),
      resume: new FileResumeStore(connection.stateDir),
      wait: values['no-wait'] !== true,
      signal: controller.signal,
    });
    const count = (status: FileOutcome['status']) => outcomes.filter((o) => o.status === status).length;
    const summary = {
      created: count('created'),
      exists: count('exists'),
      verifying: count('verifying'),
      failed: count('failed'),
      interrupted: count('interrupted'),
      bytes_sent: outcomes.reduce((sum, o) => sum + (o.bytes_sent ?? 0), 0),
      bytes_resumed: outcomes.reduce((sum, o) => sum + (o.bytes_resumed ?? 0), 0),
    };
    if (values.json) {
      json(io, { files: outcomes, ...summary });
    } else {
      io.stdout(
        `${summary.created} uploaded, ${summary.exists} already there, ` +
          `${summary.verifying ? `${summary.verifying} verifying (not checked yet), ` : ''}${summary.failed} failed` +
          `${summary.interrupted ? `, ${summary.interrupted} interrupted (run again to resume)` : ''}; ` +
          `${human(summary.bytes_sent)} sent` +
          `${summary.bytes_resumed ? ` (${human(summary.bytes_resumed)} resumed, sent by an earlier run)` : ''}\n`,
      );
    }
    if (controller.signal.aborted) return 130;
    return summary.failed > 0 ? 1 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** An id, or an exact name (the newest asset of that name). */
async function find(wharf: Wharf, ref: string): Promise<Asset> {
  if (UUID.test(ref)) {
    try {
      const asset = await wharf.assets.get(ref);
      // A record without its id (`{}`) would be fetched as the asset "undefined".
      if (typeof asset?.id !== 'string') {
        throw Object.assign(new Error(`The server's record of ${ref} has no id.`), {
          code: 'UNEXPECTED_RESPONSE',
        });
      }
      return asset;
    } catch (err) {
      // No asset has that id: it may be a name that looks like one (a file named by a UUID),
      // which was never looked for (a hunt).
      if (!(err instanceof WharfApiError && err.code === 'NOT_FOUND')) throw err;
    }
  }
  // As the server stores names, in NFC: a name typed or read from a file as NFD (macOS writes
  // "café" so) is the asset's name all the same, and was not found (a hunt).
  const name = ref.normalize('NFC');
  for await (const asset of wharf.assets.iterate({ prefix: name, limit: 100 })) {
    if (asset.name === name) return asset;
  }
  throw Object.assign(new Error(`No asset has the id or name "${ref}".`), { code: 'NOT_FOUND' });
}

/**
 * Checks the URL and key (or token) against the server, then keeps them in the config file that
 * the other commands read, so that they need neither flags nor variables. A credential the
 * server refuses, or a server that cannot be reached, is not kept.
 */
export async function login({ values }: Parsed, connection: Connection, io: CliIo): Promise<number> {
  let account: string | null = null;
  try {
    account = (await client(connection).account.get()).id;
  } catch (err) {
    // A key confined to a prefix or a namespace, or an upload token, may not read the account;
    // the server knew the credential, which is what is checked.
    if (!(err instanceof WharfApiError && err.code === 'SCOPE_DENIED')) throw err;
  }
  const path = configTarget(values, io.env);
  await saveConfig(path, { url: connection.url, key: connection.key });
  if (values.json) json(io, { url: connection.url, account, config: path });
  else io.stdout(`${connection.url}${account ? ` (account ${account})` : ''}: saved in ${path}\n`);
  return 0;
}

export async function list(
  { values, positionals }: Parsed,
  connection: Connection,
  io: CliIo,
): Promise<number> {
  const limitText = stringOption(values, 'limit');
  const limit = limitText === undefined ? Number.POSITIVE_INFINITY : Number(limitText);
  if (!Number.isInteger(limit) && limit !== Number.POSITIVE_INFINITY)
    throw new UsageError('--limit must be a whole number.');
  if (limit < 1) throw new UsageError('--limit must be at least 1.');
  const assets: Asset[] = [];
  const query = {
    ...(positionals[0] && { prefix: positionals[0] }),
    ...(stringOption(values, 'type') && { content_type: stringOption(values, 'type') }),
  };
  for await (const asset of client(connection).assets.iterate(query)) {
    assets.push(asset);
    if (assets.length >= limit) break;
  }
  if (values.json) {
    json(io, assets);
    return 0;
  }
  for (const a of assets) io.stdout(`${a.id}  ${human(a.size).padStart(10)}  ${a.created_at}  ${a.name}\n`);
  return 0;
}

/**
 * An asset to PATH (-o), to stdout (-o -: the report then goes to stderr, so stdout is the
 * bytes only), or to its name in this folder. Ctrl-C or SIGTERM stops it and removes the
 * partial file (exit code 130); a second one does not wait.
 */
export async function get(
  { values, positionals }: Parsed,
  connection: Connection,
  io: CliIo,
): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    if (++interrupts > 1) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const wharf = client(connection);
    const asset = await find(wharf, positionals[0]!);
    const output = stringOption(values, 'output');
    // Checked against the record in hand: a download redirected to storage declares no digest.
    const options = { sha256: asset.sha256, signal: controller.signal };
    let path: string;
    let saved: { size: number; descriptor?: number };
    if (output === '-') {
      path = '-';
      saved = await downloadToStream(wharf, asset.id, io.bytes, { ...options, end: false });
    } else {
      path = resolve(output ?? localName(asset));
      saved = await downloadToFile(wharf, asset.id, path, options);
    }
    // Bytes on stdout (-o -, -o /dev/stdout): the report goes to stderr, so stdout is the bytes only.
    const report = output === '-' || saved.descriptor === 1 ? io.stderr : io.stdout;
    if (values.json)
      report(
        `${JSON.stringify({ id: asset.id, name: asset.name, path, size: saved.size, sha256: asset.sha256 }, null, 2)}\n`,
      );
    else report(`${path}  ${human(saved.size)}  sha256 ${asset.sha256}\n`);
    return 0;
  } catch (err) {
    if (!controller.signal.aborted) throw err;
    io.stderr('wharf get: interrupted\n');
    return 130;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * The file an asset is saved as by default: its name's last segment. The name comes from the
 * server: one that names no file here (empty, `.`, `..`, which made the target this folder or
 * its parent) is refused, never written outside the folder.
 */
function localName(asset: Asset): string {
  const name: unknown = asset.name;
  if (typeof name !== 'string') {
    throw Object.assign(new Error('The asset record has no name: give -o PATH.'), {
      code: 'UNEXPECTED_RESPONSE',
    });
  }
  const base = basename(name);
  if (base === '' || base === '.' || base === '..' || base.includes('\0')) {
    throw Object.assign(
      new Error(`The asset's name ${JSON.stringify(name)} names no file in this folder: give -o PATH.`),
      { code: 'UNSAFE_NAME' },
    );
  }
  return base;
}

export async function remove(
  { values, positionals }: Parsed,
  connection: Connection,
  io: CliIo,
): Promise<number> {
  const wharf = client(connection);
  const deleted: string[] = [];
  const failed: Array<{ ref: string; error: { code: string; message: string } }> = [];
  // Every argument is tried: stopping at the first that failed left the rest undeleted, and
  // --json printed nothing of those that were.
  for (const ref of positionals) {
    try {
      const asset = await find(wharf, ref);
      await wharf.assets.delete(asset.id);
      deleted.push(asset.id);
      if (!values.json) io.stdout(`deleted ${asset.id}  ${asset.name}\n`);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const error = { code: typeof code === 'string' ? code : 'ERROR', message: (err as Error).message };
      failed.push({ ref, error });
      if (!values.json) io.stderr(`wharf rm: ${ref}: ${error.code}: ${error.message}\n`);
    }
  }
  if (values.json) json(io, { deleted, failed });
  return failed.length > 0 ? 1 : 0;
}
