import type { OpenedCore } from '../bootstrap.js';
import { type Config, ConfigError, readConfig } from '../config.js';
import { SCOPES } from '../core/authorization.js';
import { isWharfError } from '../core/errors.js';
import { DEFAULT_ACCOUNT_ID, type KeyAccess } from '../core/keys.js';
import type { ApiKey, Role, Scope } from '../core/model.js';
import type { AccountChanges } from '../core/ports.js';
import { describeCause } from '../core/unavailable.js';
import type { WebhookChanges } from '../core/webhooks.js';
import { missingDatabase } from '../db/missing.js';
import { databaseSetting } from '../db/setting.js';
import { parseDatabaseUrl } from '../db/url.js';
import { runtimeProblem } from '../runtime.js';
import { type Parsed, parse, stringOption, UsageError } from './args.js';
import { ASSET_COMMANDS } from './assets.js';
import { DATA_COMMANDS } from './backup.js';
import {
  accountOption,
  type Command,
  checkAccountId,
  Failure,
  HELP,
  requireAccount,
  schemaAhead,
  schemaBehind,
} from './command.js';
import {
  accountJson,
  accountTable,
  deliveryJson,
  deliveryTable,
  keyJson,
  keyTable,
  webhookJson,
  webhookTable,
} from './format.js';
import { MIGRATE_COMMANDS } from './migrate.js';
import { PLACEHOLDER_COMMANDS } from './placeholders.js';
import { clientUsage } from './upload/main.js';

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: NodeJS.ProcessEnv;
  /** The directory the caller's relative paths are in (see callerDirectory); absent: the process's. */
  cwd?: string | undefined;
}

/** What `run` asks of its caller: an exit code, or nothing because the server now runs. */
export type CliResult = { exitCode: number } | { serving: true };

const COMMANDS: Command[] = [
  {
    name: 'keys create',
    usage:
      'wharf keys create [--name NAME] [--role admin|member | --scope admin|read,upload,write] ' +
      '[--name-prefix PREFIX] [--namespace NS] [--account ID] [--json]',
    summary:
      'Create an API key and print its secret (shown only this once). --scope lists what it may do ' +
      '(default: read,upload,write, what --role member means); --name-prefix and --namespace confine it.',
    options: {
      ...HELP,
      name: { type: 'string' },
      role: { type: 'string' },
      scope: { type: 'string' },
      'name-prefix': { type: 'string' },
      namespace: { type: 'string' },
      account: { type: 'string' },
      json: { type: 'boolean' },
    },
    positionals: 0,
    async run({ values }, ctx) {
      const name = stringOption(values, 'name') ?? 'created with the CLI';
      if (name.length < 1 || name.length > 200) throw new UsageError('--name must be 1 to 200 characters.');
      const access = accessOptions(values);
      const accountId = accountOption(values) ?? DEFAULT_ACCOUNT_ID;
      const { core } = await ctx.open();
      const created = await core.keys.create(accountId, name, access);
      if (values.json) {
        ctx.io.stdout(`${JSON.stringify({ key: keyJson(created.key), secret: created.secret }, null, 2)}\n`);
        return;
      }
      const what = typeof access === 'string' ? access : created.key.scopes.join(',');
      ctx.io.stdout(
        `Created ${what} key ${created.key.id} for account "${accountId}".\n` +
          'Its secret is shown only now (Wharf keeps only a hash of it):\n\n' +
          `  ${created.secret}\n\n`,
      );
    },
  },
  {
    name: 'keys list',
    usage: 'wharf keys list [--account ID] [--json]',
    summary: 'List API keys (never their secrets), revoked ones included.',
    options: { ...HELP, account: { type: 'string' }, json: { type: 'boolean' } },
    positionals: 0,
    async run({ values }, ctx) {
      const accountId = accountOption(values);
      const { core, store } = await ctx.open();
      if (accountId !== undefined) await requireAccount(store, accountId);
      // Every key, read a page at a time (the store answers pages, as the API does).
      const keys: ApiKey[] = [];
      for (let cursor: string | undefined; ; ) {
        const page = await core.keys.list({ accountId, limit: 1000, cursor });
        keys.push(...page.keys);
        if (page.nextCursor === null) break;
        cursor = page.nextCursor;
      }
      if (values.json) {
        ctx.io.stdout(`${JSON.stringify(keys.map(keyJson), null, 2)}\n`);
      } else {
        ctx.io.stdout(keys.length === 0 ? 'No keys.\n' : `${keyTable(keys)}\n`);
      }
    },
  },
  {
    name: 'keys revoke',
    usage: 'wharf keys revoke <key-id> [--account ID]',
    summary: 'Revoke a key: requests with it are refused (401) from now on.',
    options: { ...HELP, account: { type: 'string' } },
    positionals: 1,
    async run({ values, positionals }, ctx) {
      const keyId = positionals[0];
      if (!keyId) throw new UsageError('Which key? Give its id (see "wharf keys list").');
      const accountId = accountOption(values);
      const { core } = await ctx.open();
      await core.keys.revoke(keyId, accountId);
      ctx.io.stdout(`Revoked key ${keyId}.\n`);
    },
  },
  {
    name: 'webhooks create',
    usage:
      'wharf webhooks create --url URL [--events TYPE,…] [--description TEXT] [--disabled] [--account ID] [--json]',
    summary:
      'Add a webhook endpoint and print its signing secret. --events takes types (upload.completed), ' +
      'families (asset.*) or *; none means every type.',
    options: {
      ...HELP,
      url: { type: 'string' },
      events: { type: 'string' },
      description: { type: 'string' },
      disabled: { type: 'boolean' },
      account: { type: 'string' },
      json: { type: 'boolean' },
    },
    positionals: 0,
    async run({ values }, ctx) {
      const url = stringOption(values, 'url');
      if (!url)
        throw new UsageError('Give the endpoint with --url, e.g. --url https://app.example.com/hooks.');
      const accountId = accountOption(values) ?? DEFAULT_ACCOUNT_ID;
      const { core, store } = await ctx.open();
      await requireAccount(store, accountId);
      const created = await core.webhooks.create(accountId, {
        url,
        eventTypes: eventsOption(values),
        description: stringOption(values, 'description'),
        enabled: !values.disabled,
      });
      if (values.json) {
        const out = { webhook: webhookJson(created.webhook), secret: created.secret };
        ctx.io.stdout(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      ctx.io.stdout(
        `Created webhook ${created.webhook.id} for account "${accountId}" (${created.webhook.url}).\n` +
          'Verify deliveries with its signing secret (see also "wharf webhooks get --secret"):\n\n' +
          `  ${created.secret}\n\n`,
      );
    },
  },
  {
    name: 'webhooks list',
    usage: 'wharf webhooks list [--account ID] [--json]',
    summary: 'List webhook endpoints (never their secrets).',
    options: { ...HELP, account: { type: 'string' }, json: { type: 'boolean' } },
    positionals: 0,
    async run({ values }, ctx) {
      const accountId = accountOption(values) ?? DEFAULT_ACCOUNT_ID;
      const { core, store } = await ctx.open();
      await requireAccount(store, accountId);
      const hooks = await core.webhooks.list(accountId);
      if (values.json) {
        ctx.io.stdout(`${JSON.stringify(hooks.map(webhookJson), null, 2)}\n`);
      } else {
        ctx.io.stdout(hooks.length === 0 ? 'No webhooks.\n' : `${webhookTable(hooks)}\n`);
      }
    },
  },
  {
    name: 'webhooks get',
    usage: 'wharf webhooks get <webhook-id> [--secret] [--account ID] [--json]',
    summary: 'Show one endpoint; --secret prints its signing secret too.',
    options: { ...HELP, secret: { type: 'boolean' }, account: { type: 'string' }, json: { type: 'boolean' } },
    positionals: 1,
    async run({ values, positionals }, ctx) {
      const id = webhookId(positionals);
      const accountId = accountOption(values) ?? DEFAULT_ACCOUNT_ID;
      const { core } = await ctx.open();
      const hook = await core.webhooks.get(accountId, id);
      const secret = values.secret ? await core.webhooks.secret(accountId, id) : undefined;
      if (values.json) {
        const out = secret === undefined ? webhookJson(hook) : { ...webhookJson(hook), secret };
        ctx.io.stdout(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      ctx.io.stdout(
        `${webhookTable([hook])}\n${secret === undefined ? '' : `\nSigning secret: ${secret}\n`}`,
      );
    },
  },
  {
    name: 'webhooks update',
    usage:
      'wharf webhooks update <webhook-id> [--url URL] [--events TYPE,…] [--description TEXT] [--enable|--disable] ' +
      '[--account ID] [--json]',
    summary:
      'Change an endpoint. --enable also clears why Wharf disabled it; --disable cancels its pending deliveries.',
    options: {
      ...HELP,
      url: { type: 'string' },
      events: { type: 'string' },
      description: { type: 'string' },
      enable: { type: 'boolean' },
      disable: { type: 'boolean' },
      account: { type: 'string' },
      json: { type: 'boolean' },
    },
    positionals: 1,
    async run({ values, positionals }, ctx) {
      const id = webhookId(positionals);
      if (values.enable && values.disable) throw new UsageError('Give --enable or --disable, not both.');
      const changes: WebhookChanges = {};
      const url = stringOption(values, 'url');
      if (url !== undefined) changes.url = url;
      const events = eventsOption(values);
      if (events !== undefined) changes.eventTypes = events;
      const description = stringOption(values, 'description');
      if (description !== undefined) changes.description = description;
      if (values.enable) changes.enabled = true;
      if (values.disable) changes.enabled = false;
      if (Object.keys(changes).length === 0) {
        throw new UsageError(
          'Nothing to change: give --url, --events, --description, --enable or --disable.',
        );
      }
      const accountId = accountOption(values) ?? DEFAULT_ACCOUNT_ID;
      const { core } = await ctx.open();
      const hook = await core.webhooks.update(accountId, id, changes);
      ctx.io.stdout(
        values.json ? `${JSON.stringify(webhookJson(hook), null, 2)}\n` : `${webhookTable([hook])}\n`,
      );
    },
  },
  {
    name: 'webhooks delete',
    usage: 'wharf webhooks delete <webhook-id> [--account ID]',
    summary: 'Delete an endpoint; its pending deliveries are cancelled.',
    options: { ...HELP, account: { type: 'string' } },
    positionals: 1,
    async run({ values, positionals }, ctx) {
      const id = webhookId(positionals);
      const accountId = accountOption(values) ?? DEFAULT_ACCOUNT_ID;
      const { core } = await ctx.open();
      await core.webhooks.delete(accountId, id);
      ctx.io.stdout(`Deleted webhook ${id}.\n`);
    },
  },
  {
    name: 'webhooks deliveries',
    usage:
      'wharf webhooks deliveries <webhook-id> [--status pending|succeeded|failed|cancelled] [--limit N] ' +
      '[--account ID] [--json]',
    summary: 'The delivery log of an endpoint, newest first.',
    options: {
      ...HELP,
      status: { type: 'string' },
      limit: { type: 'string' },
      account: { type: 'string' },
      json: { type: 'boolean' },
    },
    positionals: 1,
    async run({ values, positionals }, ctx) {
      const id = webhookId(positionals);
      const rawLimit = stringOption(values, 'limit') ?? '50';
      if (!/^\d+$/.test(rawLimit)) throw new UsageError(`--limit must be a whole number, got "${rawLimit}".`);
      const accountId = accountOption(values) ?? DEFAULT_ACCOUNT_ID;
      const { core } = await ctx.open();
      const page = await core.webhooks.deliveries(accountId, id, {
        limit: Number(rawLimit),
        status: stringOption(values, 'status'),
      });
      if (values.json) {
        ctx.io.stdout(`${JSON.stringify(page.deliveries.map(deliveryJson), null, 2)}\n`);
      } else {
        ctx.io.stdout(
          page.deliveries.length === 0 ? 'No deliveries.\n' : `${deliveryTable(page.deliveries)}\n`,
        );
      }
    },
  },
  {
    name: 'webhooks replay',
    usage:
      'wharf webhooks replay <webhook-id> (--delivery DELIVERY-ID | --since TIME [--include-succeeded]) [--account ID]',
    summary:
      'Send one delivery again (same webhook-id), or every event since TIME (ISO 8601): failed and cancelled ' +
      'deliveries again, and the events the endpoint missed; the running server sends them.',
    options: {
      ...HELP,
      delivery: { type: 'string' },
      since: { type: 'string' },
      'include-succeeded': { type: 'boolean' },
      account: { type: 'string' },
    },
    positionals: 1,
    async run({ values, positionals }, ctx) {
      const id = webhookId(positionals);
      const deliveryId = stringOption(values, 'delivery');
      const since = stringOption(values, 'since');
      if ((deliveryId === undefined) === (since === undefined)) {
        throw new UsageError('Give either --delivery or --since.');
      }
      const accountId = accountOption(values) ?? DEFAULT_ACCOUNT_ID;
      if (deliveryId !== undefined) {
        const { core } = await ctx.open();
        await core.webhooks.replay(accountId, id, deliveryId);
        ctx.io.stdout(`Queued delivery ${deliveryId} again.\n`);
        return;
      }
      const at = Date.parse(since!);
      if (Number.isNaN(at))
        throw new UsageError(`--since must be a date and time (ISO 8601), got "${since}".`);
      const { core } = await ctx.open();
      const result = await core.webhooks.replaySince(accountId, id, at, Boolean(values['include-succeeded']));
      ctx.io.stdout(
        `Queued ${result.requeued} existing deliveries again and ${result.created} for events the endpoint missed.\n`,
      );
    },
  },
  {
    name: 'accounts create',
    usage: 'wharf accounts create <id> [--name NAME] [--max-file-size BYTES] [--json]',
    summary: 'Create an account (a tenant: its own keys and assets).',
    options: {
      ...HELP,
      name: { type: 'string' },
      'max-file-size': { type: 'string' },
      json: { type: 'boolean' },
    },
    positionals: 1,
    async run({ values, positionals }, ctx) {
      const id = positionals[0];
      if (!id) throw new UsageError('Give the new account an id, e.g. "wharf accounts create acme".');
      checkAccountId(id);
      const name = stringOption(values, 'name') ?? id;
      if (name.length < 1 || name.length > 200) throw new UsageError('--name must be 1 to 200 characters.');
      const rawLimit = stringOption(values, 'max-file-size');
      let maxFileSize: number | null = null;
      if (rawLimit !== undefined) {
        maxFileSize = Number(rawLimit);
        if (!/^\d+$/.test(rawLimit) || !Number.isSafeInteger(maxFileSize)) {
          throw new UsageError(`--max-file-size must be a whole number of bytes, got "${rawLimit}".`);
        }
        checkFileSizeLimit(maxFileSize);
      }
      const { core, store } = await ctx.open();
      if (await store.getAccount(id)) throw new Failure(`Account "${id}" already exists.`);
      const account = await store.ensureAccount({
        id,
        name,
        maxFileSize,
        storageQuota: null,
        disabled: false,
        stripGps: false,
        createdAt: core.clock.now(),
      });
      if (values.json) {
        ctx.io.stdout(`${JSON.stringify(accountJson(account), null, 2)}\n`);
        return;
      }
      ctx.io.stdout(
        `Created account "${account.id}" (max file size: ${
          account.maxFileSize === null ? 'server default' : `${account.maxFileSize} bytes`
        }).\nGive it a first key with: wharf keys create --account ${account.id} --role admin\n`,
      );
    },
  },
  {
    name: 'accounts update',
    usage:
      'wharf accounts update <id> [--disable|--enable] [--quota BYTES|none] [--max-file-size BYTES|none] ' +
      '[--strip-gps|--keep-gps] [--json]',
    summary:
      'Disable or re-enable an account (a disabled account’s keys are refused at once), or set its storage ' +
      'quota (its plan’s upload limit) or file size limit; "none" removes a limit. --strip-gps stores new ' +
      'images without their location (--keep-gps undoes it).',
    options: {
      ...HELP,
      disable: { type: 'boolean' },
      enable: { type: 'boolean' },
      'strip-gps': { type: 'boolean' },
      'keep-gps': { type: 'boolean' },
      quota: { type: 'string' },
      'max-file-size': { type: 'string' },
      json: { type: 'boolean' },
    },
    positionals: 1,
    async run({ values, positionals }, ctx) {
      const id = positionals[0];
      if (!id) throw new UsageError('Which account? Give its id (see "wharf accounts list").');
      checkAccountId(id);
      if (values.disable && values.enable) throw new UsageError('Give --disable or --enable, not both.');
      if (values['strip-gps'] && values['keep-gps']) {
        throw new UsageError('Give --strip-gps or --keep-gps, not both.');
      }
      const changes: AccountChanges = {};
      if (values.disable) changes.disabled = true;
      if (values.enable) changes.disabled = false;
      if (values['strip-gps']) changes.stripGps = true;
      if (values['keep-gps']) changes.stripGps = false;
      const quota = limitOption(values, 'quota');
      if (quota !== undefined) changes.storageQuota = quota;
      const maxFileSize = limitOption(values, 'max-file-size');
      if (maxFileSize !== undefined && maxFileSize !== null) checkFileSizeLimit(maxFileSize);
      if (maxFileSize !== undefined) changes.maxFileSize = maxFileSize;
      if (Object.keys(changes).length === 0) {
        throw new UsageError(
          'Nothing to change: give --disable, --enable, --quota, --max-file-size, --strip-gps or --keep-gps.',
        );
      }
      const { core } = await ctx.open();
      const account = await core.keys.updateAccount(id, changes);
      if (values.json) {
        ctx.io.stdout(`${JSON.stringify(accountJson(account), null, 2)}\n`);
        return;
      }
      const bytes = (limit: number | null, none: string) => (limit === null ? none : `${limit} bytes`);
      ctx.io.stdout(
        `Updated account "${account.id}": ${account.disabled ? 'disabled' : 'enabled'}, storage quota: ${bytes(
          account.storageQuota,
          'unlimited',
        )}, max file size: ${bytes(account.maxFileSize, 'server default')}, GPS in new images: ${
          account.stripGps ? 'removed' : 'kept'
        }.\n`,
      );
    },
  },
  {
    name: 'accounts list',
    usage: 'wharf accounts list [--json]',
    summary: 'List accounts.',
    options: { ...HELP, json: { type: 'boolean' } },
    positionals: 0,
    async run({ values }, ctx) {
      const { store } = await ctx.open();
      const accounts = await store.listAccounts();
      if (values.json) {
        ctx.io.stdout(`${JSON.stringify(accounts.map(accountJson), null, 2)}\n`);
      } else {
        ctx.io.stdout(`${accountTable(accounts)}\n`);
      }
    },
  },
  ...PLACEHOLDER_COMMANDS,
  ...ASSET_COMMANDS,
  ...DATA_COMMANDS,
  ...MIGRATE_COMMANDS,
];

const SERVE_USAGE = 'wharf serve';

export function usage(): string {
  const entry = (u: string, s: string) => `  ${u}\n      ${s}`;
  return [
    'wharf: the command line of the Wharf upload and asset service.',
    '',
    'Usage:',
    entry(SERVE_USAGE, 'Start the server (the same as `npm start`).'),
    ...COMMANDS.map((c) => entry(c.usage, c.summary)),
    '',
    'Client commands (a server over its API; URL and key from flags, WHARF_URL/WHARF_KEY or ~/.config/wharf/config.json):',
    clientUsage().trimEnd(),
    '',
    entry('wharf --help', 'Show this help. Each command also takes --help.'),
    '',
    'It reads the same environment as the server (WHARF_DATA_DIR, WHARF_DATABASE_URL, …),',
    'so it works on the same data, also while the server runs. Only `wharf migrate` (and',
    "the server's start) migrates the database: the other commands refuse one that lacks a migration.",
    // As docs/cli.md: 130 and 141 were missing, though the client commands exit so (Ctrl-C on an
    // upload or a download; any command whose reader went away, `wharf keys list | head`).
    'Exit codes: 0 done, 1 failed, 2 the command line was wrong, 130 interrupted (Ctrl-C or SIGTERM:',
    'upload, sync, get), 141 the reader of its output went away (`wharf ls | head`).',
    '',
  ].join('\n');
}

/** Runs one command line. Never throws: every failure becomes a message and an exit code. */
export async function run(argv: string[], io: CliIo): Promise<CliResult> {
  let opened: OpenedCore | undefined;
  try {
    const [first, second] = argv;
    if (first === undefined) throw new UsageError('No command given.');
    if (first === '--help' || first === '-h' || first === 'help') {
      io.stdout(usage());
      return { exitCode: 0 };
    }
    if (first === 'serve') {
      const { values } = parse(argv.slice(1), HELP, 0);
      if (values.help) {
        io.stdout(`Usage: ${SERVE_USAGE}\n\nStarts the server, configured by the environment.\n`);
        return { exitCode: 0 };
      }
      // Same module as `npm start`: it listens, and prints a generated admin key on first start.
      await import('../main.js');
      return { serving: true };
    }
    // A command of one word (`migrate`), or one of a group (`keys create`).
    let command = COMMANDS.find((c) => c.name === first);
    const words = command ? 1 : 2;
    if (!command) {
      const groups = new Set(COMMANDS.filter((c) => c.name.includes(' ')).map((c) => c.name.split(' ')[0]));
      if (!groups.has(first)) throw new UsageError(`Unknown command "${first}".`);
      if (second === undefined || second === '--help' || second === '-h') {
        const of = COMMANDS.filter((c) => c.name.startsWith(`${first} `));
        const text = `Usage:\n${of.map((c) => `  ${c.usage}\n      ${c.summary}`).join('\n')}\n`;
        if (second === undefined) {
          io.stderr(text);
          return { exitCode: 2 };
        }
        io.stdout(text);
        return { exitCode: 0 };
      }
      command = COMMANDS.find((c) => c.name === `${first} ${second}`);
      if (!command) throw new UsageError(`Unknown command "${first} ${second}".`);
    }
    const args = parse(argv.slice(words), command.options, command.positionals);
    if (args.values.help) {
      io.stdout(`Usage: ${command.usage}\n\n${command.summary}\n`);
      return { exitCode: 0 };
    }
    let config: Config | undefined;
    const configured = (): Config => {
      if (!config) {
        const loaded = readConfig(io.env);
        for (const warning of loaded.warnings) io.stderr(`wharf: warning: ${warning}\n`);
        config = loaded.config;
      }
      return config;
    };
    const checkDatabase = () => {
      const problem = runtimeProblem(process.versions.node, 'command');
      if (problem) throw new Failure(problem);
      // Only the server creates the database: a command finding none is on the wrong data.
      const target = parseDatabaseUrl(configured().databaseUrl);
      const missing =
        'dialect' in target &&
        missingDatabase(
          target,
          'no server has run on this data yet, and a command does not create one',
          databaseSetting(io.env, configured()).name,
        );
      if (missing) throw new Failure(missing);
    };
    await command.run(args, {
      io,
      config: configured,
      checkDatabase,
      async open() {
        checkDatabase();
        // Imported here: the server's modules take a while to load, and help needs none of them.
        try {
          opened ??= await (await import('../bootstrap.js')).openCore(configured(), undefined, undefined, {
            purpose: 'command',
          });
        } catch (err) {
          const { SchemaAhead, SchemaBehind } = await import('../db/migrate.js');
          if (err instanceof SchemaBehind) throw new Failure(schemaBehind(err, io.env, configured()));
          if (err instanceof SchemaAhead) throw new Failure(schemaAhead(err, io.env, configured()));
          throw err;
        }
        return opened;
      },
    });
    return { exitCode: 0 };
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`wharf: ${err.message}\nRun "wharf --help" for usage.\n`);
      return { exitCode: 2 };
    }
    if (err instanceof ConfigError) {
      for (const warning of err.warnings) io.stderr(`wharf: warning: ${warning}\n`);
      for (const problem of err.problems) io.stderr(`wharf: ${problem}\n`);
      return { exitCode: 1 };
    }
    if (err instanceof Failure || isWharfError(err)) {
      const cause = describeCause((err as Error).cause);
      io.stderr(`wharf: ${err.message}${cause ? ` (${cause})` : ''}\n`);
      return { exitCode: 1 };
    }
    // The database's and the system's own errors (a code, a message) explain themselves.
    const coded = err as { code?: unknown; message?: unknown } | null;
    if (typeof coded?.code === 'string' && typeof coded.message === 'string') {
      io.stderr(`wharf: ${coded.message}\n`);
      return { exitCode: 1 };
    }
    io.stderr(`wharf: ${(err as Error)?.stack ?? String(err)}\n`);
    return { exitCode: 1 };
  } finally {
    await opened?.close();
  }
}

/** --role (admin or member), or --scope with an optional --name-prefix and --namespace. */
function accessOptions(values: Parsed['values']): Role | KeyAccess {
  const role = stringOption(values, 'role');
  const scope = stringOption(values, 'scope');
  const namePrefix = stringOption(values, 'name-prefix');
  const namespace = stringOption(values, 'namespace');
  if (role !== undefined && scope !== undefined) throw new UsageError('Give --role or --scope, not both.');
  if (role !== undefined && role !== 'admin' && role !== 'member') {
    throw new UsageError(`--role must be "admin" or "member", got "${role}".`);
  }
  if (scope === undefined && namePrefix === undefined && namespace === undefined) {
    return (role ?? 'member') as Role;
  }
  let scopes: Scope[] = role === 'admin' ? ['admin'] : ['read', 'upload', 'write'];
  if (scope !== undefined) {
    scopes = scope.split(',').map((s) => s.trim()) as Scope[];
    const unknown = scopes.filter((s) => !SCOPES.includes(s));
    if (scopes.length === 0 || unknown.length > 0) {
      throw new UsageError(`--scope lists scopes among ${SCOPES.join(', ')}, got "${scope}".`);
    }
  }
  return { scopes, namePrefix, namespace };
}

/** A limit in bytes, or "none" to remove it (null); undefined when the option was not given. */
function limitOption(values: Parsed['values'], name: string): number | null | undefined {
  const raw = stringOption(values, name);
  if (raw === undefined) return undefined;
  if (raw === 'none') return null;
  const bytes = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(bytes)) {
    throw new UsageError(`--${name} must be a whole number of bytes or "none", got "${raw}".`);
  }
  return bytes;
}

/**
 * An account's --max-file-size is at least 1 byte, as WHARF_MAX_FILE_SIZE is: 0 would not lift
 * the limit but refuse every file, a surprise nobody asks for by writing 0.
 */
function checkFileSizeLimit(bytes: number): void {
  if (bytes < 1) {
    throw new UsageError(
      '--max-file-size must be at least 1 byte, as WHARF_MAX_FILE_SIZE (0 would refuse every file).',
    );
  }
}

/** --events as a list of patterns (the core checks each one); undefined when not given. */
function eventsOption(values: Parsed['values']): string[] | undefined {
  const raw = stringOption(values, 'events');
  if (raw === undefined) return undefined;
  return raw
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
}

function webhookId(positionals: string[]): string {
  const id = positionals[0];
  if (!id) throw new UsageError('Which webhook? Give its id (see "wharf webhooks list").');
  return id;
}
