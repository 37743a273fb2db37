/**
 * What every admin command (src/cli/commands.ts and its neighbours) is, and what they share:
 * `--help`, the `--account` option and its rule, and the failure that exits with code 1.
 */
import type { OpenedCore } from '../bootstrap.js';
import type { Config } from '../config.js';
import type { SchemaAhead } from '../db/schema-ahead.js';
import { databaseSetting } from '../db/setting.js';
import { type OptionSpec, type Parsed, stringOption, UsageError } from './args.js';
import type { CliIo } from './commands.js';

export interface Command {
  /** e.g. "keys create" */
  name: string;
  usage: string;
  summary: string;
  options: OptionSpec;
  positionals: number;
  run(args: Parsed, ctx: Context): Promise<void>;
}

export interface Context {
  io: CliIo;
  /** The configuration the environment gives (read once; its warnings printed). */
  config(): Config;
  /**
   * Refuses (exit 1) what no admin command can work on: a Node.js it does not run on, or no
   * database at all (the embedded default's SQLite file not there). `open` checks it first.
   */
  checkDatabase(): void;
  /**
   * Opens the database and storage named by the environment; closed by `run`. A database
   * whose schema is behind this version's is refused, never migrated (see `wharf migrate`).
   */
  open(): Promise<OpenedCore>;
}

// Same rule the core applies to the account segment of storage keys (src/core/storage-keys.ts):
// an account whose id broke it could not complete presigned uploads.
const ACCOUNT_ID = /^[A-Za-z0-9_-]{1,64}$/;
export const HELP: OptionSpec = { help: { type: 'boolean', short: 'h' } };

/** The command was understood but could not be done: exit code 1. */
export class Failure extends Error {}

/**
 * Why a command refuses a database whose schema is behind its own (SchemaBehind in
 * db/migrate.ts), and what to do. It does not migrate it: that is an upgrade, and every node of
 * the older version still running on the database would stop (server.ts).
 */
export function schemaBehind(
  { pending, fresh }: { pending: readonly string[]; fresh: boolean },
  env: NodeJS.ProcessEnv,
  config: Config,
): string {
  const { name, label } = databaseSetting(env, config);
  if (fresh) {
    return (
      `${label}: this database has no Wharf schema: no server has run on it yet, and a command ` +
      `does not create one (is ${name} right?). Start the server on it, or run "wharf migrate".`
    );
  }
  return (
    `${label}: this database lacks this version's migrations (${pending.join(', ')}), and a ` +
    'command does not run them: that is an upgrade, and every node of the older version still running on it ' +
    'would stop. Stop those nodes, then start this version\'s server or run "wharf migrate" ' +
    '(docs/deployment.md, "Starting": upgrading); or use the CLI of the version that runs.'
  );
}

/**
 * Why a command refuses a database a newer Wharf migrated (SchemaAhead in db/migrate.ts): the
 * server's words, naming the setting as schemaBehind does.
 */
export function schemaAhead(err: SchemaAhead, env: NodeJS.ProcessEnv, config: Config): string {
  return err.refusal(databaseSetting(env, config).label);
}

export function accountOption(values: Parsed['values']): string | undefined {
  const id = stringOption(values, 'account');
  if (id !== undefined) checkAccountId(id);
  return id;
}

export function checkAccountId(id: string): void {
  if (!ACCOUNT_ID.test(id)) {
    throw new UsageError(
      `Account ids are 1 to 64 letters, digits, "-" or "_"; "${id}" is not one (use --name for a display name).`,
    );
  }
}

export async function requireAccount(store: OpenedCore['store'], id: string): Promise<void> {
  if (!(await store.getAccount(id))) throw new Failure(`No account "${id}".`);
}

/** What a command over "one account, or every one" works on: `--account`'s (which must exist), or all. */
export async function chosenAccounts(
  store: OpenedCore['store'],
  accountId: string | undefined,
): Promise<string[]> {
  if (accountId === undefined) return (await store.listAccounts()).map((a) => a.id);
  await requireAccount(store, accountId);
  return [accountId];
}
