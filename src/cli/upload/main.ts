import type { Writable } from 'node:stream';
import { type OptionSpec, type Parsed, parse, stringOption, UsageError } from '../args.js';
import { type Connection, parseSize, positiveInt, resolveConnection } from './connection.js';
import { errnoMessage } from './files.js';

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Where `get -o -` writes the bytes (stdout), left open. */
  bytes: Writable;
  env: NodeJS.ProcessEnv;
  /** The terminal to draw progress bars on (stderr when it is one); absent: plain lines. */
  terminal?: NodeJS.WriteStream | undefined;
  /**
   * The directory the caller's relative paths are in; absent: the process's own. Not the same
   * under `npm run wharf` (see callerDirectory in io.ts).
   */
  cwd?: string | undefined;
}

/**
 * The client commands (upload, sync, ls, get, rm, login): they talk to a Wharf server over its API with
 * the SDK and load nothing of the server's own code, so they start quickly. Everything heavy
 * (the SDK, the bars) is imported when a command runs.
 */

const CONNECTION: OptionSpec = {
  help: { type: 'boolean', short: 'h' },
  url: { type: 'string' },
  key: { type: 'string' },
  token: { type: 'string' },
  config: { type: 'string' },
  json: { type: 'boolean' },
};

const TRANSFER: OptionSpec = {
  ...CONNECTION,
  prefix: { type: 'string' },
  'content-type': { type: 'string' },
  concurrency: { type: 'string', short: 'j' },
  'part-size': { type: 'string' },
  'multipart-threshold': { type: 'string' },
  'limit-rate': { type: 'string' },
  'state-dir': { type: 'string' },
  progress: { type: 'string' },
  'no-wait': { type: 'boolean' },
};

interface ClientCommand {
  name: string;
  usage: string;
  summary: string;
  options: OptionSpec;
  /** It writes the config file, so a named one need not exist yet. */
  writesConfig?: true;
  /** Positionals: at least `min`, at most `max`. */
  min: number;
  max: number;
  run(args: Parsed, connection: Connection, io: CliIo): Promise<number>;
}

const CONNECTION_USAGE = '[--url URL] [--key KEY | --token TOKEN] [--config FILE] [--json]';
const TRANSFER_USAGE =
  '[--prefix P] [--content-type TYPE] [-j N] [--part-size SIZE] [--multipart-threshold SIZE] [--limit-rate SIZE] [--progress auto|bars|plain] [--no-wait]';

export const CLIENT_COMMANDS: ClientCommand[] = [
  {
    name: 'upload',
    usage: `wharf upload PATH… ${TRANSFER_USAGE} ${CONNECTION_USAGE}`,
    summary:
      'Upload files, folders (recursively) and globs: concurrent, skipping content the account already holds, resumable (run it again after Ctrl-C or a lost connection).',
    options: TRANSFER,
    min: 1,
    max: Number.POSITIVE_INFINITY,
    async run({ values, positionals }, connection, io) {
      const { expand } = await import('./files.js');
      const files = await expand(positionals, stringOption(values, 'prefix') ?? '');
      const { runTransfer } = await import('./commands.js');
      return runTransfer(files, values, connection, io);
    },
  },
  {
    name: 'sync',
    usage: `wharf sync DIR ${TRANSFER_USAGE} ${CONNECTION_USAGE}`,
    summary: 'Upload what in DIR (and its subfolders) is new or changed, by SHA-256: a rerun sends nothing.',
    options: TRANSFER,
    min: 1,
    max: 1,
    async run({ values, positionals }, connection, io) {
      const { tree } = await import('./files.js');
      const files = await tree(positionals[0]!, stringOption(values, 'prefix') ?? '');
      const { runTransfer } = await import('./commands.js');
      return runTransfer(files, values, connection, io);
    },
  },
  {
    name: 'login',
    usage: `wharf login ${CONNECTION_USAGE}`,
    summary:
      'Check the URL and key (or token) against the server, then keep them in the config file for the other commands (readable by you only).',
    options: CONNECTION,
    writesConfig: true,
    min: 0,
    max: 0,
    async run(args, connection, io) {
      const { login } = await import('./commands.js');
      return login(args, connection, io);
    },
  },
  {
    name: 'ls',
    usage: `wharf ls [PREFIX] [--type TYPE] [--limit N] ${CONNECTION_USAGE}`,
    summary: 'List assets (newest first), optionally those whose names start with PREFIX.',
    options: { ...CONNECTION, type: { type: 'string' }, limit: { type: 'string' } },
    min: 0,
    max: 1,
    async run(args, connection, io) {
      const { list } = await import('./commands.js');
      return list(args, connection, io);
    },
  },
  {
    name: 'get',
    usage: `wharf get ID|NAME [-o PATH|-] ${CONNECTION_USAGE}`,
    summary:
      'Download an asset (by id or exact name) to PATH (default: its name in this folder; - for stdout), verified by SHA-256.',
    options: { ...CONNECTION, output: { type: 'string', short: 'o' } },
    min: 1,
    max: 1,
    async run(args, connection, io) {
      const { get } = await import('./commands.js');
      return get(args, connection, io);
    },
  },
  {
    name: 'rm',
    usage: `wharf rm ID|NAME… ${CONNECTION_USAGE}`,
    summary: 'Delete assets (by id or exact name).',
    options: CONNECTION,
    min: 1,
    max: Number.POSITIVE_INFINITY,
    async run(args, connection, io) {
      const { remove } = await import('./commands.js');
      return remove(args, connection, io);
    },
  },
];

// The server's grammar (RFC 9110, src/core/names.ts: the CLI loads none of the server's code):
// type/subtype, both tokens, then parameters. Checked before any file is hashed: else every
// file of the run failed on its own with INVALID_CONTENT_TYPE.
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const MEDIA_TYPE = new RegExp(`^${TOKEN}/${TOKEN}([ \\t]*;[ \\t]*${TOKEN}=(${TOKEN}|"[^"\\\\\\r\\n]*"))*$`);

function isMediaType(value: string): boolean {
  const trimmed = value.trim();
  return trimmed.length <= 255 && MEDIA_TYPE.test(trimmed);
}

/** The exit codes, as docs/cli.md gives them. */
export const CLIENT_EXIT_CODES =
  'Exit codes: 0 done, 1 failed, 2 the command line was wrong, 130 interrupted (Ctrl-C or SIGTERM), 141 the reader of its output went away (| head).';

export function clientUsage(): string {
  return CLIENT_COMMANDS.map((c) => `  ${c.usage}\n      ${c.summary}\n`).join('');
}

export function isClientCommand(name: string | undefined): boolean {
  return CLIENT_COMMANDS.some((c) => c.name === name);
}

/**
 * Runs a client command; exit codes: 0 done, 1 failed (the server refused, a file failed), 2
 * usage, 130 interrupted (and 141, output closed: see io.ts).
 */
export async function runClient(argv: string[], io: CliIo): Promise<number> {
  const command = CLIENT_COMMANDS.find((c) => c.name === argv[0])!;
  try {
    const args = parse(argv.slice(1), command.options, command.max);
    if (args.values.help) {
      io.stdout(`Usage: ${command.usage}\n\n${command.summary}\n`);
      return 0;
    }
    if (args.positionals.length < command.min)
      throw new UsageError(`Missing argument. Usage: ${command.usage}`);
    // Checked here so that a mistake is reported before any work.
    positiveInt(args.values, 'concurrency', 4, '-j');
    for (const flag of ['part-size', 'multipart-threshold', 'limit-rate']) {
      const text = stringOption(args.values, flag);
      if (text !== undefined) parseSize(text, `--${flag}`);
    }
    const contentType = stringOption(args.values, 'content-type');
    if (contentType !== undefined && !isMediaType(contentType))
      throw new UsageError(
        `--content-type must be a media type, type/subtype (image/x-canon-cr3): not "${contentType}".`,
      );
    // Here, not where the display is chosen: with --json none is, and a bad value passed unsaid.
    const progress = stringOption(args.values, 'progress');
    if (progress !== undefined && !['auto', 'bars', 'plain'].includes(progress))
      throw new UsageError('--progress must be auto, bars or plain.');
    const connection = await resolveConnection(args.values, io.env, {
      configMayBeMissing: command.writesConfig === true,
    });
    return await command.run(args, connection, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`wharf ${command.name}: ${err.message}\n`);
      return 2;
    }
    const code = (err as { code?: unknown }).code;
    // A system error's message starts with its code already (ENOENT: no such file…): once is enough.
    io.stderr(
      `wharf ${command.name}: ${typeof code === 'string' ? `${code}: ` : ''}${errnoMessage(err as Error)}\n`,
    );
    return 1;
  }
}
