import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, request } from 'node:http';
import { connect as connectTcp, createServer, type Server, type Socket } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isProcessDir } from '../../src/blobs/process-temp.js';
import { loadConfig } from '../../src/config.js';
import { connect } from '../../src/db/connect.js';
import { migrate as migrateTo } from '../../src/db/migrate.js';
import { createWharf } from '../../src/server.js';
import {
  type Backing,
  deployment,
  pendingWrites,
  provision,
  storedKeys,
  storesOnS3,
} from '../helpers/deployment.js';
import { answerOf, api } from '../helpers/http.js';
import { alive, listening, type Running, run, sql } from '../helpers/process.js';
import { freePort, startWharf } from '../helpers/wharf.js';

/**
 * The server as a process: what it says and how it exits when its start fails, how it makes
 * the first admin key, and how it stops on SIGTERM and SIGINT. On both deployments (the
 * database and storage come from provision()).
 */

const KEY = /\bwharf_[A-Za-z0-9_-]{43}\b/;
const NO_STACK = /^\s+at /m;
const LISTENING = /"msg":"Wharf is listening/;

interface Installation {
  dataDir: string;
  backing: Backing;
  env: Record<string, string>;
  /** Where its metadata lives (the SQLite file, or the scaled deployment's database). */
  databaseUrl: string;
}

const made: Installation[] = [];
const running: Running[] = [];

after(async () => {
  for (const r of running)
    if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
  await Promise.all(running.map((r) => r.exited));
  for (const i of made) {
    await i.backing.release();
    await rm(i.dataDir, { recursive: true, force: true });
  }
});

async function installation(extra: Record<string, string> = {}): Promise<Installation> {
  const dataDir = await mkdtemp(join(tmpdir(), 'wharf-lifecycle-'));
  const backing = await provision();
  const env = {
    WHARF_HOST: '127.0.0.1',
    WHARF_PORT: String(await freePort()),
    WHARF_DATA_DIR: dataDir,
    WHARF_SWEEP_INTERVAL: '0',
    WHARF_JOB_INTERVAL_MS: '0',
    ...backing.env,
    ...extra,
  };
  const made1 = { dataDir, backing, env, databaseUrl: loadConfig(env).databaseUrl };
  made.push(made1);
  return made1;
}

function start(env: Record<string, string>): Running {
  const r = run(env);
  running.push(r);
  return r;
}

/** `wharf …` (an admin command) from source, with this environment. */
function wharfCommand(env: Record<string, string>, args: string[]): Running {
  return run(env, [process.execPath, '--import', 'tsx', 'src/cli/main.ts', ...args]);
}

/**
 * The schema, made as a start makes it before it listens (so no first key): a command works
 * only on a database that exists.
 */
async function migrate(inst: Installation): Promise<void> {
  await (await createWharf(loadConfig(inst.env), { logger: false })).close();
}

/**
 * How messages about its database name it: WHARF_DATABASE_URL when set (the scaled deployment),
 * else WHARF_DATA_DIR with the SQLite file in it.
 */
function databaseSetting(inst: Installation): string {
  return inst.env.WHARF_DATABASE_URL
    ? 'WHARF_DATABASE_URL'
    : `WHARF_DATA_DIR (${join(inst.dataDir, 'wharf.db')})`;
}

/** The keys the installation holds, read with the CLI as an operator would. */
async function keyIds(inst: Installation): Promise<string[]> {
  const cli = wharfCommand(inst.env, ['keys', 'list', '--json']);
  const exit = await cli.exited;
  assert.equal(exit.code, 0, cli.stderr());
  return JSON.parse(cli.stdout()).map((k: { id: string }) => k.id);
}

describe('a start that cannot succeed', () => {
  test('bad configuration: every problem at once, one line each naming its variable, no stack, no password', async () => {
    const inst = await installation();
    const r = start({
      ...inst.env,
      WHARF_PORT: 'eighty',
      WHARF_LOG_LEVEL: 'verbose',
      WHARF_DATABASE_URL: 'postgress://wharf:hunter2secret@db.example.internal:5432/wharf',
      WHARF_MAX_FILE_SIZE: '-1',
    });
    const exit = await r.exited;
    assert.equal(exit.code, 1);
    const lines = r.stderr().trim().split('\n');
    assert.equal(lines.length, 4, r.stderr());
    for (const [i, name] of [
      'WHARF_PORT',
      'WHARF_DATABASE_URL',
      'WHARF_MAX_FILE_SIZE',
      'WHARF_LOG_LEVEL',
    ].entries()) {
      assert.ok(lines[i]!.startsWith(`wharf: ${name} `), `line ${i + 1} names ${name}: ${lines[i]}`);
    }
    assert.match(r.stderr(), /"postgress:" \(did you mean "postgres:"\?\)/);
    assert.doesNotMatch(r.stderr(), /hunter2/);
    assert.doesNotMatch(r.stderr(), NO_STACK);
    assert.equal(r.stdout(), '');
  });

  test('a database a newer Wharf migrated: one line naming the database and what to do, exit 1, for the server and a command alike; nothing changed', async () => {
    const inst = await installation();
    await migrate(inst);
    assert.deepEqual(await keyIds(inst), []);
    await sql(
      inst.databaseUrl,
      `insert into wharf_migrations (name, timestamp) values ('999_from_a_later_wharf', '2099-01-01T00:00:00.000Z')`,
    );
    // The server and a command name what the operator set, as for a schema behind its own: on
    // the embedded default only WHARF_DATA_DIR, with the database file in it, and never the
    // WHARF_DATABASE_URL they did not set.
    const setting = databaseSetting(inst);
    for (const r of [
      start(inst.env),
      wharfCommand(inst.env, ['keys', 'list']),
      wharfCommand(inst.env, ['migrate']),
    ]) {
      assert.equal((await r.exited).code, 1, r.stderr());
      assert.ok(r.stderr().startsWith(`wharf: ${setting}: `), r.stderr());
      if (!inst.env.WHARF_DATABASE_URL) assert.doesNotMatch(r.stderr(), /WHARF_DATABASE_URL/);
      assert.match(
        r.stderr(),
        /^wharf: [^\n]+: this database was migrated by a newer Wharf \(999_from_a_later_wharf\).*restore the backup taken before the upgrade\.\n$/,
      );
      assert.doesNotMatch(r.stderr(), NO_STACK);
    }
    await sql(inst.databaseUrl, `delete from wharf_migrations where name = '999_from_a_later_wharf'`);
    assert.deepEqual(await keyIds(inst), [], 'nothing was made meanwhile');
  });

  test('a database an older Wharf migrated: a command refuses it, exit 1, naming the missing migrations and what to do, and migrates nothing; `wharf migrate` does, then the command works', async () => {
    const inst = await installation();
    // The schema as the Wharf before 013 and 014 left it (the hunt's upgrade): made by the
    // same migrations, stopped short.
    const { db } = connect(inst.databaseUrl);
    try {
      await migrateTo(db, '012_account_numbers');
    } finally {
      await db.destroy();
    }
    const done = async () =>
      (await sql(inst.databaseUrl, 'select name from wharf_migrations order by name')).map((r) => r.name);
    const before = await done();
    assert.equal(before.at(-1), '012_account_numbers');

    const list = wharfCommand(inst.env, ['accounts', 'list']);
    assert.equal((await list.exited).code, 1, list.stderr());
    // Named by what the operator set: WHARF_DATABASE_URL, or on the embedded default only
    // WHARF_DATA_DIR, with the database file in it.
    const setting = databaseSetting(inst);
    assert.ok(list.stderr().startsWith(`wharf: ${setting}: `), list.stderr());
    assert.match(
      list.stderr(),
      /^wharf: [^\n]+: this database lacks this version's migrations \(013_upload_endings, 014_lane_owners[^)]*\), and a command does not run them: .*Stop those nodes, then start this version's server or run "wharf migrate" .*\n$/,
    );
    assert.equal(list.stderr().split('\n').length, 2, 'one line');
    assert.doesNotMatch(list.stderr(), NO_STACK);
    assert.equal(list.stdout(), '');
    assert.deepEqual(await done(), before, 'the command migrated nothing');

    const migrated = wharfCommand(inst.env, ['migrate', '--json']);
    assert.equal((await migrated.exited).code, 0, migrated.stderr());
    const after = await done();
    assert.deepEqual(after.slice(0, before.length), before);
    const applied = after.slice(before.length);
    assert.deepEqual(applied.slice(0, 2), ['013_upload_endings', '014_lane_owners']);
    assert.deepEqual(JSON.parse(migrated.stdout()), { applied, schema: after.at(-1) });
    const again = wharfCommand(inst.env, ['migrate']);
    assert.equal((await again.exited).code, 0, again.stderr());
    assert.equal(
      again.stdout(),
      `Nothing to migrate: the database is at ${after.at(-1)}, the latest migration of this version.\n`,
    );
    assert.deepEqual(await done(), after);

    const listed = wharfCommand(inst.env, ['accounts', 'list', '--json']);
    assert.equal((await listed.exited).code, 0, listed.stderr());
    assert.ok(Array.isArray(JSON.parse(listed.stdout())));
  });

  test('a database no Wharf has run on (an empty PostgreSQL database, an empty SQLite file): a command refuses it, exit 1, and creates no table', async () => {
    const inst = await installation();
    // A PostgreSQL database is made empty by provision(); a SQLite one that is not there at all
    // is refused before it is opened (cli.test.ts): here, one that is there but empty.
    const postgres = /^postgres/.test(inst.databaseUrl);
    if (!postgres) await writeFile(join(inst.dataDir, 'wharf.db'), '', { mode: 0o600 });
    const tables = async () =>
      sql(
        inst.databaseUrl,
        postgres
          ? 'select tablename from pg_tables where schemaname = current_schema()'
          : "select name from sqlite_master where type = 'table'",
      );
    const r = wharfCommand(inst.env, ['keys', 'list']);
    assert.equal((await r.exited).code, 1, r.stderr());
    const [setting, name] = postgres
      ? ['WHARF_DATABASE_URL', 'WHARF_DATABASE_URL']
      : [`WHARF_DATA_DIR (${join(inst.dataDir, 'wharf.db')})`, 'WHARF_DATA_DIR'];
    assert.equal(
      r.stderr(),
      `wharf: ${setting}: this database has no Wharf schema: no server has run on it yet, and a command does not create one (is ${name} right?). Start the server on it, or run "wharf migrate".\n`,
    );
    assert.deepEqual(await tables(), []);
  });

  test('a server running when a newer Wharf migrates its database stops at its next sweep, exit 1, naming the setting that chose the database; restarted, it is refused', {
    timeout: 60_000,
  }, async () => {
    const inst = await installation({ WHARF_SWEEP_INTERVAL: '1' });
    const r = start(inst.env);
    await r.waitFor(LISTENING);
    await sql(
      inst.databaseUrl,
      `insert into wharf_migrations (name, timestamp) values ('999_from_a_later_wharf', '2099-01-01T00:00:00.000Z')`,
    );
    assert.equal((await r.exited).code, 1, r.stderr());
    // WHARF_DATABASE_URL, or on the embedded default WHARF_DATA_DIR (with the file), as at start.
    const setting = databaseSetting(inst);
    assert.ok(
      r
        .stderr()
        .includes(
          `wharf: ${setting}: a newer Wharf migrated this database (999_from_a_later_wharf) while this one ran: stopping`,
        ),
      r.stderr(),
    );
    assert.match(r.stdout(), /the database was migrated by a newer Wharf while this one runs/);
    const again = start(inst.env);
    assert.equal((await again.exited).code, 1);
    assert.ok(
      again
        .stderr()
        .startsWith(
          `wharf: ${setting}: this database was migrated by a newer Wharf (999_from_a_later_wharf)`,
        ),
      again.stderr(),
    );
    if (!inst.env.WHARF_DATABASE_URL) {
      assert.doesNotMatch(r.stderr() + again.stderr(), /WHARF_DATABASE_URL/);
    }
  });

  test('bad log level: one line, exit 1', async () => {
    const inst = await installation();
    const r = start({ ...inst.env, WHARF_LOG_LEVEL: 'verbose' });
    assert.equal((await r.exited).code, 1);
    assert.equal(
      r.stderr(),
      'wharf: WHARF_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"\n',
    );
  });

  test('port in use: one line naming WHARF_PORT, exit 1, and no key is made; the next start prints one that works', async () => {
    const inst = await installation();
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(Number(inst.env.WHARF_PORT), '127.0.0.1', resolve));
    try {
      const r = start(inst.env);
      assert.equal((await r.exited).code, 1);
      assert.equal(
        r.stderr(),
        `wharf: WHARF_PORT ${inst.env.WHARF_PORT}: 127.0.0.1:${inst.env.WHARF_PORT} is already in use (another Wharf, or another server?).\n`,
      );
      assert.doesNotMatch(r.stdout(), KEY, 'no key is printed');
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
    assert.deepEqual(await keyIds(inst), [], 'the failed start made no key');

    const again = start(inst.env);
    await again.waitFor(LISTENING);
    const key = KEY.exec(again.stdout())?.[0];
    assert.ok(key, again.stdout());
    const keys = await api(`http://127.0.0.1:${inst.env.WHARF_PORT}`, key, 'GET', '/v1/keys');
    assert.equal(keys.status, 200);
    assert.equal(keys.body.data.length, 1);
    again.child.kill('SIGTERM');
    assert.equal((await again.exited).code, 0);
  });

  test('a data directory that cannot be written: one line naming WHARF_DATA_DIR, exit 1', async () => {
    // Under a file: refused to root as well (the tests run as root, whom permissions do not stop).
    const inst = await installation();
    const file = join(inst.dataDir, 'a-file');
    await writeFile(file, '');
    const r = start({ ...inst.env, WHARF_DATA_DIR: join(file, 'data') });
    assert.equal((await r.exited).code, 1);
    assert.equal(
      r.stderr(),
      `wharf: WHARF_DATA_DIR ${join(file, 'data')} is not a writable directory (ENOTDIR: a part of the path is a file).\n`,
    );
  });

  test('a data directory to be made on a read-only file system: the line says so, not ENOENT', {
    skip: process.getuid?.() !== 0 && 'mounting a tmpfs needs root',
  }, async () => {
    const inst = await installation();
    const disk = join(inst.dataDir, 'read-only');
    await mkdir(disk);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', disk]);
    try {
      // Missing, with its parent missing too: Node's recursive mkdir says ENOENT of the path.
      const dataDir = join(disk, 'sub', 'data');
      const r = start({ ...inst.env, WHARF_DATA_DIR: dataDir });
      assert.equal((await r.exited).code, 1);
      assert.equal(
        r.stderr(),
        `wharf: WHARF_DATA_DIR ${dataDir} is not a writable directory (EROFS: read-only file system).\n`,
      );
    } finally {
      execFileSync('umount', [disk]);
    }
  });

  test('a SQLite database file that cannot be opened: one line naming the file and the setting, exit 1', async () => {
    // A directory where the file should be: refused to root as well, as a file of another
    // owner or mode 0400 is to any other user.
    const inst = await installation();
    await mkdir(join(inst.dataDir, 'wharf.db'));
    const r = start({ ...inst.env, WHARF_DATABASE_URL: '', WHARF_STORAGE: 'local' });
    assert.equal((await r.exited).code, 1);
    const last = r.stderr().trimEnd().split('\n').at(-1);
    assert.equal(
      last,
      `wharf: WHARF_DATA_DIR: the database ${join(inst.dataDir, 'wharf.db')} cannot be opened and written: ` +
        `unable to open database file (SQLITE_CANTOPEN). Check that it is a file this user (uid ${process.getuid?.()}) ` +
        'may read and write, and so are the -wal and -shm files beside it and their directory.',
    );
  });

  test('a database that cannot be reached: one line with what lies under it, for the server and the CLI, exit 1', async () => {
    const inst = await installation();
    const port = await freePort(); // nothing listens there
    const env = { ...inst.env, WHARF_DATABASE_URL: `postgres://wharf:hunter2pw@127.0.0.1:${port}/wharf` };
    const expected = `The database is unavailable at the moment; try again shortly. (connect ECONNREFUSED 127.0.0.1:${port})`;
    const server = start(env);
    assert.equal((await server.exited).code, 1);
    assert.equal(server.stderr(), `wharf: start failed: ${expected}\n`);
    const cli = wharfCommand(env, ['keys', 'list']);
    assert.equal((await cli.exited).code, 1);
    assert.equal(cli.stderr(), `wharf: ${expected}\n`);
    // SQLite pointed at a directory: its own one line, no stack.
    const sqlite = wharfCommand({ ...inst.env, WHARF_DATABASE_URL: inst.dataDir }, ['keys', 'list']);
    assert.equal((await sqlite.exited).code, 1);
    assert.doesNotMatch(sqlite.stderr(), NO_STACK);
    assert.equal(sqlite.stderr().split('\n').length, 2, sqlite.stderr());
  });

  test('S3 credentials the store refuses: one line naming the variable to check, for the server and the CLI, exit 1', {
    skip: !storesOnS3 && 'S3 storage only: on local storage there are no credentials to refuse',
  }, async () => {
    // They once passed as "may not create buckets" (a HEAD's 403 says no more): the node
    // listened, not ready, and answered 500 to every upload.
    const inst = await installation();
    const server = start({ ...inst.env, WHARF_S3_SECRET_ACCESS_KEY: 'not-the-secret-0123456789abcdef' });
    // Waits for either, so that a server that starts fails the test rather than hangs it.
    const outcome = await server.waitFor(LISTENING).then(
      () => 'listening',
      async () => (await server.exited).code,
    );
    assert.equal(outcome, 1, server.stderr());
    assert.equal(
      server.stderr(),
      'wharf: WHARF_S3_SECRET_ACCESS_KEY: the S3 store refuses what it signs (SignatureDoesNotMatch); check that it is the secret of WHARF_S3_ACCESS_KEY_ID.\n',
    );
    assert.doesNotMatch(server.stdout(), KEY, 'no key is printed');
    // A key id the store does not know, on a bucket that does not exist either.
    const cli = wharfCommand(
      {
        ...inst.env,
        WHARF_S3_ACCESS_KEY_ID: 'WHARFNOSUCHKEYID',
        WHARF_S3_BUCKET: `${inst.env.WHARF_S3_BUCKET}-none`,
      },
      ['keys', 'list'],
    );
    assert.equal((await cli.exited).code, 1);
    assert.equal(
      cli.stderr(),
      'wharf: WHARF_S3_ACCESS_KEY_ID: the S3 store knows no such access key (InvalidAccessKeyId); check it, and that WHARF_S3_ENDPOINT is the store it belongs to.\n',
    );
    // The right credentials start.
    const right = start(inst.env);
    await right.waitFor(LISTENING);
    right.child.kill('SIGTERM');
    assert.equal((await right.exited).code, 0);
  });

  test('upload credentials the store refuses: one line naming them, exit 1', {
    skip: !storesOnS3 && 'S3 storage only: on local storage there are no upload credentials',
  }, async () => {
    // The start signs its probe upload with them (see S3BlobStore.checkUnsignedCopy): a wrong
    // secret would otherwise show only as every client's upload refused by the store.
    const inst = await installation();
    const server = start({
      ...inst.env,
      WHARF_S3_UPLOAD_ACCESS_KEY_ID:
        inst.env.WHARF_S3_UPLOAD_ACCESS_KEY_ID ?? inst.env.WHARF_S3_ACCESS_KEY_ID!,
      WHARF_S3_UPLOAD_SECRET_ACCESS_KEY: 'not-the-upload-secret-0123456789',
    });
    const outcome = await server.waitFor(LISTENING).then(
      () => 'listening',
      async () => (await server.exited).code,
    );
    assert.equal(outcome, 1, server.stderr());
    assert.match(
      server.stderr(),
      /^wharf: WHARF_S3_UPLOAD_SECRET_ACCESS_KEY: the S3 store refuses what it signs \(SignatureDoesNotMatch\); check that it is the secret of WHARF_S3_UPLOAD_ACCESS_KEY_ID\.\n$/,
    );
  });

  test('a start refused for its settings still warns of unknown variables, before the problems', async () => {
    const inst = await installation();
    const r = start({ ...inst.env, WHARF_CONSOLE: 'no', WHARF_PROT: '9999' });
    assert.equal((await r.exited).code, 1);
    const lines = r.stderr().trimEnd().split('\n');
    assert.equal(
      lines[0],
      'wharf: warning: WHARF_PROT is not a Wharf setting and is ignored (did you mean WHARF_PORT?).',
    );
    assert.match(lines[1] ?? '', /^wharf: WHARF_CONSOLE /);
    assert.equal(lines.length, 2, r.stderr());
  });

  test('unknown WHARF_* variables are warned about, one line each, and the server starts', async () => {
    const inst = await installation({ WHARF_API_KEY: `wharf-lifecycle-${randomBytes(8).toString('hex')}` });
    const r = start({ ...inst.env, WHARF_PROT: '9999', WHARF_FEATURE_FLAGS: 'x' });
    await r.waitFor(LISTENING);
    assert.equal(
      r.stderr(),
      'wharf: warning: WHARF_FEATURE_FLAGS is not a Wharf setting and is ignored.\n' +
        'wharf: warning: WHARF_PROT is not a Wharf setting and is ignored (did you mean WHARF_PORT?).\n',
    );
    r.child.kill('SIGTERM');
    assert.equal((await r.exited).code, 0);
  });
});

describe('the first admin key', () => {
  test('is printed before it is stored: when storing it fails, the start fails saying so, and the next start prints one that works', async () => {
    const inst = await installation();
    // The schema, made as a start makes it; then a trigger that refuses every new key.
    await migrate(inst);
    assert.deepEqual(await keyIds(inst), []);
    const postgres = /^postgres/.test(inst.databaseUrl);
    await sql(
      inst.databaseUrl,
      postgres
        ? `create function refuse_key() returns trigger language plpgsql as $$ begin raise exception 'refused by the test'; end $$;
           create trigger refuse_key before insert on api_keys for each row execute function refuse_key();`
        : `create trigger refuse_key before insert on api_keys begin select raise(abort, 'refused by the test'); end`,
    );

    const failing = start(inst.env);
    const exit = await failing.exited;
    assert.equal(exit.code, 1, failing.stderr());
    const shown = KEY.exec(failing.stdout())?.[0];
    assert.ok(shown, 'the key was printed before the insert failed');
    assert.match(failing.stderr(), /refused by the test/);
    assert.match(failing.stderr(), /The key printed above was not stored and does not work/);
    assert.deepEqual(await keyIds(inst), [], 'no key exists that was not printed');

    await sql(inst.databaseUrl, 'drop trigger refuse_key' + (postgres ? ' on api_keys' : ''));
    const next = start(inst.env);
    await next.waitFor(LISTENING);
    const key = KEY.exec(next.stdout())?.[0];
    assert.ok(key && key !== shown);
    const base = `http://127.0.0.1:${inst.env.WHARF_PORT}`;
    assert.equal((await api(base, key, 'GET', '/v1/keys')).status, 200);
    assert.equal((await api(base, shown, 'GET', '/v1/keys')).status, 401);
    next.child.kill('SIGTERM');
    assert.equal((await next.exited).code, 0);
  });
});

/** A raw-body upload whose body the test sends in two steps, to be in flight when a signal comes. */
function upload(port: number, key: string, body: Buffer, firstBytes: number) {
  const req = request(`http://127.0.0.1:${port}/v1/assets?name=in-flight.bin`, {
    method: 'POST',
    headers: {
      'x-api-key': key,
      'content-type': 'application/octet-stream',
      'content-length': String(body.length),
    },
  });
  const answer = answerOf(req);
  req.write(body.subarray(0, firstBytes));
  return {
    answer,
    rest() {
      req.end(body.subarray(firstBytes));
    },
  };
}

/**
 * The temp directories (work/, blobs/tmp/, …: see processTempDir) the process `pid` of this host
 * has in `dataDir`, relative to it.
 */
async function processDirs(dataDir: string, pid: number): Promise<string[]> {
  const mine = `${hostname()}-${pid}-`;
  const entries = await readdir(dataDir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && e.name.startsWith(mine) && isProcessDir(e.name))
    .map((e) => relative(dataDir, join(e.parentPath, e.name)))
    .sort();
}

/** Until storage holds the upload's partial write: then it is surely in flight. */
async function writeUnderway(inst: Installation): Promise<void> {
  const server = { dataDir: inst.dataDir, backingEnv: inst.backing.env };
  for (let i = 0; i < 600 && (await pendingWrites(server)).length === 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal((await pendingWrites(server)).length, 1, 'a write is in progress');
}

describe('stopping', () => {
  const MiB = 1024 * 1024;

  test('SIGINT with an upload in flight: no new connection is taken, the upload finishes and is acknowledged, exit 0', async () => {
    const key = `wharf-lifecycle-${randomBytes(8).toString('hex')}`;
    const inst = await installation({ WHARF_API_KEY: key, WHARF_SHUTDOWN_TIMEOUT: '600' });
    const r = start(inst.env);
    await r.waitFor(LISTENING);
    const port = Number(inst.env.WHARF_PORT);
    // More than one 8 MiB part first, so that S3 storage has a multipart upload open.
    const body = randomBytes(24 * MiB);
    const up = upload(port, key, body, 16 * MiB);
    await writeUnderway(inst);

    r.child.kill('SIGINT');
    await r.waitFor(/"msg":"SIGINT: stopping/);
    // The listening socket closes as the stop begins (not at a known instant): wait for it.
    for (let i = 0; i < 600 && (await listening(port)); i++) await new Promise((res) => setTimeout(res, 50));
    assert.equal(await listening(port), false, 'a stopping server takes no new connection');
    up.rest();
    const answer = await up.answer;
    assert.equal(answer.status, 201, answer.body);
    const asset = JSON.parse(answer.body).asset;
    assert.equal(asset.sha256, createHash('sha256').update(body).digest('hex'));
    assert.deepEqual(await r.exited, { code: 0, signal: null });
    assert.match(r.stdout(), /"msg":"stopped"/);

    // What was acknowledged is there after the stop.
    const wharf = await createWharf(loadConfig(inst.env));
    try {
      await wharf.app.listen({ host: '127.0.0.1', port });
      const content = await fetch(`http://127.0.0.1:${port}/v1/assets/${asset.id}/content`, {
        headers: { 'x-api-key': key },
      });
      assert.equal(content.status, 200);
      const stored = Buffer.from(await content.arrayBuffer());
      assert.equal(createHash('sha256').update(stored).digest('hex'), asset.sha256);
    } finally {
      await wharf.close();
    }
  });

  test('SIGTERM with an upload that cannot finish within WHARF_SHUTDOWN_TIMEOUT: it is cut, the client gets an error, nothing of it is left, exit 0', async () => {
    const key = `wharf-lifecycle-${randomBytes(8).toString('hex')}`;
    const inst = await installation({ WHARF_API_KEY: key, WHARF_SHUTDOWN_TIMEOUT: '1' });
    const r = start(inst.env);
    await r.waitFor(LISTENING);
    const up = upload(Number(inst.env.WHARF_PORT), key, randomBytes(24 * MiB), 16 * MiB);
    await writeUnderway(inst);

    // The rest of the body never comes.
    r.child.kill('SIGTERM');
    const outcome = await up.answer.then(
      (answer) => `answered ${answer.status}`,
      (err: NodeJS.ErrnoException) => `failed ${err.code ?? err.message}`,
    );
    assert.match(
      outcome,
      /^failed |^answered [45]\d\d$/,
      `the client sees an error, not a success: ${outcome}`,
    );
    assert.deepEqual(await r.exited, { code: 0, signal: null });
    assert.match(r.stdout(), /"msg":"stopped; 1 request\(s\) still running at the deadline were cut off"/);

    const server = { dataDir: inst.dataDir, backingEnv: inst.backing.env };
    assert.deepEqual(
      await pendingWrites(server),
      [],
      'no partial write is left (temp file, open multipart upload)',
    );
    assert.deepEqual(await storedKeys(server), [], 'no bytes are stored');
    const assets = await sql(inst.databaseUrl, 'select id from assets');
    assert.deepEqual(assets, [], 'no asset');
    const uploads = await sql(inst.databaseUrl, 'select status from uploads');
    assert.deepEqual(
      uploads.map((u) => u.status),
      ['expired'],
      'the handler finished its clean-up before the database closed',
    );
  });

  test('SIGTERM with an upload in flight: the metrics port answers through the drain, and closes once the stop is done', async () => {
    const key = `wharf-lifecycle-${randomBytes(8).toString('hex')}`;
    const metricsPort = await freePort();
    const inst = await installation({
      WHARF_API_KEY: key,
      WHARF_SHUTDOWN_TIMEOUT: '600',
      WHARF_METRICS_PORT: String(metricsPort),
    });
    const r = start(inst.env);
    await r.waitFor(LISTENING);
    const port = Number(inst.env.WHARF_PORT);
    const body = randomBytes(24 * MiB);
    const up = upload(port, key, body, 16 * MiB);
    await writeUnderway(inst);

    r.child.kill('SIGTERM');
    for (let i = 0; i < 600 && (await listening(port)); i++) await sleep(50);
    assert.equal(await listening(port), false, 'the main port closed as the drain began');
    // The drain is what an operator watching a stop wants to see: it used to close first.
    const scrape = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(scrape.status, 200);
    assert.match(await scrape.text(), /^wharf_\w+/m);
    up.rest();
    const answer = await up.answer;
    assert.equal(answer.status, 201, answer.body);
    assert.deepEqual(await r.exited, { code: 0, signal: null });
    assert.equal(await listening(metricsPort), false, 'the metrics port is closed at exit');
  });

  test('WHARF_SHUTDOWN_DELAY: after SIGTERM /readyz answers 503 stopping while everything else is served, then the port closes', async () => {
    const key = `wharf-lifecycle-${randomBytes(8).toString('hex')}`;
    const inst = await installation({ WHARF_API_KEY: key, WHARF_SHUTDOWN_DELAY: '4' });
    const r = start(inst.env);
    await r.waitFor(LISTENING);
    const url = `http://127.0.0.1:${inst.env.WHARF_PORT}`;
    assert.equal((await api(url, undefined, 'GET', '/readyz')).status, 200);

    const signalled = performance.now();
    r.child.kill('SIGTERM');
    await r.waitFor(/"msg":"SIGTERM: stopping; \/readyz answers 503 for 4 s \(WHARF_SHUTDOWN_DELAY\)/);
    const ready = await api(url, undefined, 'GET', '/readyz');
    assert.equal(ready.status, 503, JSON.stringify(ready.body));
    assert.equal(ready.body.status, 'stopping');
    assert.deepEqual(ready.body.checks, { database: { status: 'ok' }, storage: { status: 'ok' } });
    assert.equal(ready.body.error.code, 'NOT_READY');
    assert.match(ready.body.error.message, /stopping/);
    // Everything else as before: the process is alive, and the API answers.
    assert.equal((await api(url, undefined, 'GET', '/healthz')).status, 200);
    const listed = await api(url, key, 'GET', '/v1/assets');
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    assert.ok(performance.now() - signalled < 4000, 'the requests above came within the delay');

    const port = Number(inst.env.WHARF_PORT);
    for (let i = 0; i < 600 && (await listening(port)); i++) await sleep(50);
    assert.equal(await listening(port), false, 'the port closes once the delay is over');
    assert.ok(performance.now() - signalled >= 3900, 'not before');
    assert.deepEqual(await r.exited, { code: 0, signal: null });
    assert.match(r.stdout(), /"msg":"stopped"/);
  });

  test('SIGTERM leaves no directory of the process in the data directory; one a SIGKILL left is removed by the next start', async () => {
    const inst = await installation();
    const first = start(inst.env);
    await first.waitFor(LISTENING);
    const killedPid = first.child.pid!;
    assert.notDeepEqual(await processDirs(inst.dataDir, killedPid), [], 'a running server has its own');
    first.child.kill('SIGKILL');
    assert.equal((await first.exited).signal, 'SIGKILL');
    const left = await processDirs(inst.dataDir, killedPid);
    assert.notDeepEqual(left, [], 'a SIGKILL leaves them');

    const second = start(inst.env);
    await second.waitFor(LISTENING);
    const pid = second.child.pid!;
    assert.deepEqual(await processDirs(inst.dataDir, killedPid), [], `the start removed ${left.join(', ')}`);
    second.child.kill('SIGTERM');
    assert.deepEqual(await second.exited, { code: 0, signal: null });
    assert.deepEqual(await processDirs(inst.dataDir, pid), [], 'a clean stop removes its own');
  });

  test('SIGTERM leaves no wharf.db-wal or wharf.db-shm: a backup copied over the stopped data directory is what the next start reads', {
    skip:
      deployment === 'scaled' &&
      'the embedded default only: its database is a SQLite file in the data directory',
  }, async () => {
    const key = `wharf-lifecycle-${randomBytes(8).toString('hex')}`;
    const inst = await installation({ WHARF_API_KEY: key });
    const r = start(inst.env);
    await r.waitFor(LISTENING);
    const url = `http://127.0.0.1:${inst.env.WHARF_PORT}`;
    const uploadOne = async (name: string) => {
      const res = await fetch(`${url}/v1/assets?name=${name}`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/octet-stream' },
        body: new Uint8Array(randomBytes(2000)),
      });
      assert.equal(res.status, 201, await res.text());
    };
    await uploadOne('before-backup.bin');
    const backupDir = await mkdtemp(join(tmpdir(), 'wharf-lifecycle-backup-'));
    after(() => rm(backupDir, { recursive: true, force: true }));
    const backup = wharfCommand(inst.env, ['data', 'backup', backupDir]);
    assert.equal((await backup.exited).code, 0, backup.stderr());
    // Writes after the backup, and reads (the server's read-only connection is in use too).
    for (let i = 0; i < 20; i++) await uploadOne(`after-backup-${i}.bin`);
    assert.equal((await api(url, key, 'GET', '/v1/assets?limit=100')).status, 200);

    r.child.kill('SIGTERM');
    assert.deepEqual(await r.exited, { code: 0, signal: null });
    assert.match(r.stdout(), /"msg":"stopped"/);
    const left = (await readdir(inst.dataDir)).filter((name) => name.startsWith('wharf.db'));
    assert.deepEqual(left, ['wharf.db'], 'the stop checkpointed the WAL into wharf.db and removed it');

    // Restored as an operator might, over the stopped directory: the backup's database alone.
    await copyFile(join(backupDir, 'wharf.db'), join(inst.dataDir, 'wharf.db'));
    const [check] = await sql(inst.databaseUrl, 'pragma integrity_check');
    assert.deepEqual(check, { integrity_check: 'ok' });
    const names = await sql(inst.databaseUrl, 'select name from assets');
    assert.deepEqual(
      names.map((a) => a.name),
      ['before-backup.bin'],
    );
  });

  test('SIGTERM while the sweep waits on a store that stopped answering: one sweep at a time, exit 0 at once, nothing runs on after', {
    // A guard against the hang this test is about (each S3 call would wait 120 s, three times).
    timeout: 90_000,
  }, async () => {
    // An "S3 store" that answers the start's checks (the bucket; the probe objects of its check
    // for unsigned headers, refused), then never answers again.
    const waiting: IncomingMessage[] = [];
    let reached: () => void = () => {};
    const contacted = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const store = createHttpServer((req, res) => {
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      if (req.url?.includes('/wharf-probe/') || req.url?.includes('?delete')) {
        res.writeHead(403).end('<Error><Code>AccessDenied</Code></Error>');
        return;
      }
      waiting.push(req);
      reached();
    });
    await new Promise<void>((resolve) => store.listen(0, '127.0.0.1', resolve));
    const address = store.address();
    const storePort = typeof address === 'object' && address ? address.port : 0;
    try {
      const inst = await installation({ WHARF_SHUTDOWN_TIMEOUT: '600', WHARF_SWEEP_INTERVAL: '1' });
      const r = start({
        ...inst.env,
        WHARF_STORAGE: 's3',
        WHARF_S3_ENDPOINT: `http://127.0.0.1:${storePort}`,
        WHARF_S3_BUCKET: 'stops-answering',
        WHARF_S3_ACCESS_KEY_ID: 'test',
        WHARF_S3_SECRET_ACCESS_KEY: 'test-secret',
      });
      await r.waitFor(LISTENING);
      // The sweep of the start is waiting on the store; the timer's ticks that come meanwhile
      // (one a second) start none of their own.
      await contacted;
      await sleep(3000);
      assert.equal(
        waiting.length,
        1,
        `one sweep waits on the store: ${waiting.map((q) => q.url).join(', ')}`,
      );
      r.child.kill('SIGTERM');
      assert.deepEqual(await r.exited, { code: 0, signal: null }, r.stderr());
      assert.match(r.stdout(), /"msg":"stopped"/);
      assert.match(r.stdout(), /"msg":"sweep cut short by the stop"/);
      // Nothing failed, the database (closed by then) above all; no later step was taken.
      const errors = r
        .stdout()
        .split('\n')
        .filter((line) => /"level":(50|60)/.test(line));
      assert.deepEqual(errors, []);
      assert.doesNotMatch(r.stdout(), /event retention|session sweep/);
      assert.equal(waiting.length, 1, 'no store call was tried again');
    } finally {
      store.closeAllConnections();
      await new Promise((resolve) => store.close(resolve));
    }
  });

  test('SIGTERM early in start-up: the step under way ends, then no port is taken and no first key made', async () => {
    // A misspelt variable's warning is written once the signal handlers are in place, before
    // the server's modules load and the database is migrated: the signal comes right then.
    const inst = await installation({ WHARF_SWEEP_INTERVALL: '5' });
    const r = start(inst.env);
    await r.waitFor(/WHARF_SWEEP_INTERVALL/, 'stderr');
    r.child.kill('SIGTERM');
    assert.deepEqual(await r.exited, { code: 0, signal: null }, r.stderr());
    assert.match(r.stderr(), /^wharf: SIGTERM during start-up: stopping\.$/m);
    assert.doesNotMatch(r.stdout(), LISTENING);
    assert.doesNotMatch(r.stdout(), /No API key existed/);
    assert.deepEqual(await keyIds(inst), [], 'no first key was stored');
  });

  test('SIGTERM during start-up (waiting for storage that does not answer): exits 0 without ever listening', async () => {
    // An "S3 store" that accepts connections and never answers: the start waits at the bucket check.
    const sockets: Socket[] = [];
    let reached: () => void = () => {};
    const contacted = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const silent: Server = createServer((socket) => {
      sockets.push(socket);
      reached();
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const address = silent.address();
    const storePort = typeof address === 'object' && address ? address.port : 0;
    try {
      const inst = await installation({ WHARF_SHUTDOWN_TIMEOUT: '1' });
      const r = start({
        ...inst.env,
        WHARF_STORAGE: 's3',
        WHARF_S3_ENDPOINT: `http://127.0.0.1:${storePort}`,
        WHARF_S3_BUCKET: 'never-answers',
        WHARF_S3_ACCESS_KEY_ID: 'test',
        WHARF_S3_SECRET_ACCESS_KEY: 'test-secret',
      });
      await contacted;
      r.child.kill('SIGTERM');
      const exit = await r.exited;
      assert.deepEqual(exit, { code: 0, signal: null }, r.stderr());
      assert.match(r.stderr(), /^wharf: SIGTERM during start-up: stopping\.$/m);
      assert.doesNotMatch(r.stderr(), NO_STACK);
      assert.doesNotMatch(r.stdout(), LISTENING);
      assert.equal(alive(r.child.pid!), false);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('a request sent on a connection accepted just before the stop is answered 503, never reset; one that sends nothing is closed after a second', async () => {
    const w = await startWharf();
    try {
      const server = w.wharf.app.server;
      const port = Number(new URL(w.url).port);
      // A balancer's new connection (nginx without upstream keepalive), its request still on
      // the way, and one that never sends anything.
      const fresh = await acceptedConnection(server, port);
      const silent = await acceptedConnection(server, port);

      const stopped = w.wharf.close();
      const began = performance.now();
      // The port closes as the stop begins, idle connections closed with it: the request
      // is written right after, as it would reach a node that had just been signalled.
      while (server.listening) await new Promise((resolve) => setImmediate(resolve));
      fresh.socket.write(`GET /v1/assets HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nx-api-key: ${w.key}\r\n\r\n`);
      const answer = await fresh.closed;
      assert.match(answer.received, /^HTTP\/1\.1 503 /, `an answer, not a reset: ${JSON.stringify(answer)}`);
      assert.match(answer.received, /\r\nconnection: close\r\n/i);
      // Wharf's refusal, which a client can match and knows to send again (Fastify's own had
      // its own body and no Retry-After).
      assert.match(answer.received, /\r\nretry-after: 1\r\n/i);
      const body = answer.received.slice(answer.received.indexOf('\r\n\r\n') + 4);
      assert.equal(JSON.parse(body).error.code, 'SERVICE_UNAVAILABLE');

      const quiet = await silent.closed;
      assert.equal(quiet.received, '');
      await stopped;
      const took = performance.now() - began;
      assert.ok(took < 5_000, `the stop waits for a connection that sends nothing only briefly (${took} ms)`);
    } finally {
      await w.close();
    }
  });

  test('a keep-alive connection idle after its request is closed as the stop begins, with no wait added', async () => {
    const w = await startWharf();
    try {
      const server = w.wharf.app.server;
      const port = Number(new URL(w.url).port);
      const used = await acceptedConnection(server, port);
      used.socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
      await used.answered;

      const began = performance.now();
      await w.wharf.close();
      const took = performance.now() - began;
      const closed = await used.closed;
      assert.match(closed.received, /^HTTP\/1\.1 200 /);
      assert.ok(took < 500, `closed at once, not after a grace (${took} ms)`);
    } finally {
      await w.close();
    }
  });
});

/**
 * A raw TCP connection the server has accepted (its `connection` event fired), nothing sent:
 * `answered` resolves at the first complete response head, `closed` once the connection ends,
 * with what arrived and the error, if any.
 */
async function acceptedConnection(server: Server, port: number) {
  const accepted = new Promise((resolve) => server.once('connection', resolve));
  const socket = connectTcp({ port, host: '127.0.0.1' });
  let received = '';
  let error: string | undefined;
  let answer: () => void = () => {};
  const answered = new Promise<void>((resolve) => {
    answer = resolve;
  });
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    received += chunk;
    if (received.includes('\r\n\r\n')) answer();
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    error = err.code ?? err.message;
  });
  const closed = new Promise<{ received: string; error: string | undefined }>((resolve) =>
    socket.once('close', () => resolve({ received, error })),
  );
  await accepted;
  return { socket, answered, closed };
}

describe('file permissions', {
  skip:
    deployment === 'scaled' &&
    'the embedded default only: its data directory holds the database and the bytes',
}, () => {
  /** What `mode` gives other users (the last octal digit), and the permission bits in octal. */
  const others = (mode: number) => mode & 0o007;
  const octal = (mode: number) => (mode & 0o777).toString(8).padStart(4, '0');

  /** Every file and directory under `root` (itself included) with its mode. */
  async function modesUnder(root: string): Promise<Map<string, number>> {
    const modes = new Map([['.', (await stat(root)).mode]]);
    for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
      const path = join(entry.parentPath, entry.name);
      modes.set(relative(root, path), (await stat(path)).mode);
    }
    return modes;
  }

  /**
   * Run as CI runs it: a umask of 022, with which the mode a file is created with by default
   * (0666, SQLite's 0644) leaves it readable by every user. Children inherit it.
   */
  async function withUmask022<T>(work: () => Promise<T>): Promise<T> {
    const previous = process.umask(0o022);
    try {
      return await work();
    } finally {
      process.umask(previous);
    }
  }

  test('a fresh data directory, its database, an object, an unfinished tus upload and a backup give other users no access; the database files are 0600', () =>
    withUmask022(async () => {
      const key = `wharf-lifecycle-${randomBytes(8).toString('hex')}`;
      const inst = await installation({ WHARF_API_KEY: key });
      // Made by Wharf, not by the test.
      const dataDir = join(inst.dataDir, 'fresh');
      const env = { ...inst.env, WHARF_DATA_DIR: dataDir };
      const r = start(env);
      await r.waitFor(LISTENING);
      const base = `http://127.0.0.1:${inst.env.WHARF_PORT}`;
      const uploaded = await fetch(`${base}/v1/assets?name=private.bin`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/octet-stream' },
        body: new Uint8Array(randomBytes(5000)),
      });
      assert.equal(uploaded.status, 201, await uploaded.text());
      // A tus upload with 100 of its 1000 bytes: its file and facts stay under tus/uploads.
      const tus = await fetch(`${base}/v1/tus/`, {
        method: 'POST',
        headers: {
          'Tus-Resumable': '1.0.0',
          Authorization: `Bearer ${key}`,
          'Upload-Length': '1000',
          'Upload-Metadata': `filename ${Buffer.from('partial.bin').toString('base64')}`,
          'Content-Type': 'application/offset+octet-stream',
        },
        body: new Uint8Array(randomBytes(100)),
      });
      assert.equal(tus.status, 201, await tus.text());
      assert.equal(tus.headers.get('upload-offset'), '100');

      const modes = await modesUnder(dataDir);
      const names = [...modes.keys()];
      for (const db of ['wharf.db', 'wharf.db-wal', 'wharf.db-shm']) {
        assert.equal(octal(modes.get(db) ?? 0), '0600', `${db} (of ${names.join(', ')})`);
      }
      assert.ok(
        names.some((n) => n.startsWith(join('blobs', 'objects')) && modes.get(n)! & 0o100000),
        `an object: ${names.join(', ')}`,
      );
      const tusFiles = names.filter((n) => n.startsWith(join('tus', 'uploads')) && modes.get(n)! & 0o100000);
      assert.equal(tusFiles.length, 2, `the tus upload's bytes and .json: ${names.join(', ')}`);
      const open = [...modes]
        .filter(([, mode]) => others(mode) !== 0)
        .map(([n, mode]) => `${n} ${octal(mode)}`);
      assert.deepEqual(open, [], 'nothing in the data directory is open to other users');
      assert.doesNotMatch(r.stdout(), /chmod/, 'a fresh install is not warned about');

      // `wharf data backup`, as an operator runs it beside the server.
      const target = join(inst.dataDir, 'backup');
      const backup = wharfCommand(env, ['data', 'backup', target]);
      assert.equal((await backup.exited).code, 0, backup.stderr());
      const backupModes = await modesUnder(target);
      assert.equal(octal(backupModes.get('wharf.db') ?? 0), '0600', [...backupModes.keys()].join(', '));
      assert.ok([...backupModes.keys()].some((n) => n.startsWith(join('blobs', 'objects', ''))));
      const backupOpen = [...backupModes]
        .filter(([, mode]) => others(mode) !== 0)
        .map(([n, mode]) => `${n} ${octal(mode)}`);
      assert.deepEqual(backupOpen, [], 'nothing in the backup is open to other users');

      r.child.kill('SIGTERM');
      assert.equal((await r.exited).code, 0);
    }));

  test('a database other users can read (made before): a warning at start naming it and the chmod to run; its mode is left alone', () =>
    withUmask022(async () => {
      const key = `wharf-lifecycle-${randomBytes(8).toString('hex')}`;
      const inst = await installation({ WHARF_API_KEY: key });
      const db = join(inst.dataDir, 'wharf.db');
      // The database as an older Wharf left it: made by a first start, 0644.
      const first = start(inst.env);
      await first.waitFor(LISTENING);
      first.child.kill('SIGTERM');
      assert.equal((await first.exited).code, 0, first.stderr());
      await chmod(db, 0o644);
      const r = start(inst.env);
      await r.waitFor(LISTENING);
      const warning = r
        .stdout()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { level: number; msg: string })
        .find((line) => line.msg.includes('chmod'));
      assert.ok(warning, r.stdout());
      assert.equal(warning.level, 40);
      assert.match(warning.msg, new RegExp(`${db} mode 0644`));
      assert.match(warning.msg, new RegExp(`run chmod 600 ${db}( |$)`));
      assert.equal(octal((await stat(db)).mode), '0644', 'the operator changes it, not Wharf');
      r.child.kill('SIGTERM');
      assert.equal((await r.exited).code, 0);
    }));
});
