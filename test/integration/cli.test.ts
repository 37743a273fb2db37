import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config.js';
import { createWharf, type Wharf } from '../../src/server.js';
import { type Backing, provision } from '../helpers/deployment.js';
import { api } from '../helpers/http.js';
import { freePort } from '../helpers/wharf.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment without any WHARF_* of the developer's shell: only what a test sets. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('WHARF_')) env[name] = value;
  }
  return { ...env, ...extra };
}

function spawnNode(args: string[], env: NodeJS.ProcessEnv): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: REPO, env, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

let dataDir: string;
// The database (and storage) of the scaled deployment; nothing on embedded.
let backing: Backing | undefined;
let wharf: Wharf | undefined;
let url: string;

/** The CLI from source, exactly as `npm run wharf -- …` runs it, on the test's data dir. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return spawnNode(
    ['--import', 'tsx', 'src/cli/main.ts', ...args],
    cleanEnv({ WHARF_DATA_DIR: dataDir, ...backing?.env, ...env }),
  );
}

async function ok(args: string[]): Promise<string> {
  const ran = await cli(args);
  assert.equal(ran.code, 0, `wharf ${args.join(' ')} failed: ${ran.stderr}`);
  return ran.stdout;
}

const SECRET = /\bwharf_[A-Za-z0-9_-]{43}\b/;
const UUID = /\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/;

// A key made before the server listened (so before it made a first key), from the human-readable output.
let first: { id: string; secret: string };

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'wharf-cli-'));
  backing = await provision();
  // The server on the same data dir, configured the way `npm start` is: from the environment.
  const port = await freePort();
  const config = loadConfig({
    WHARF_HOST: '127.0.0.1',
    WHARF_PORT: String(port),
    WHARF_DATA_DIR: dataDir,
    WHARF_SWEEP_INTERVAL: '0',
    ...backing.env,
  });
  // It makes the database; the CLI works only on one that exists.
  wharf = await createWharf(config, { logger: false });
  const out = await ok(['keys', 'create', '--name', 'first', '--role', 'admin']);
  first = { id: UUID.exec(out)?.[0] ?? '', secret: SECRET.exec(out)?.[0] ?? '' };
  assert.ok(first.id && first.secret, `no id or secret in:\n${out}`);
  // As `npm start` starts it: listen(), which makes a first key only when none exists.
  await wharf.listen();
  url = config.publicUrl;
});

after(async () => {
  await wharf?.close();
  await backing?.release();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('wharf keys', () => {
  test('a key created before the server listens authenticates, and no other key is generated', async () => {
    assert.equal(wharf!.generatedKey, undefined, 'a key existed, so the server must not generate one');
    const res = await api(url, first.secret, 'GET', '/v1/keys');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(
      res.body.data.map((k: { id: string }) => k.id),
      [first.id],
    );
    assert.equal(res.body.data[0].role, 'admin');
    assert.equal(res.body.data[0].name, 'first');
  });

  test('create, list and revoke while the server runs', async () => {
    const created = JSON.parse(await ok(['keys', 'create', '--json', '--name', 'ci']));
    assert.match(created.secret, SECRET);
    assert.equal(created.key.role, 'member', 'member is the default role, as in the API');
    assert.equal(created.key.account_id, 'default');
    assert.equal((await api(url, created.secret, 'GET', '/v1/assets')).status, 200);
    const forbidden = await api(url, created.secret, 'GET', '/v1/keys');
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.body.error.code, 'FORBIDDEN');

    const table = await ok(['keys', 'list']);
    assert.ok(table.includes(first.id) && table.includes(created.key.id), table);
    for (const secret of [first.secret, created.secret]) {
      assert.ok(!table.includes(secret), 'a listing never shows a secret');
    }
    const listed = JSON.parse(await ok(['keys', 'list', '--json']));
    assert.deepEqual(
      listed.map((k: { id: string }) => k.id),
      [first.id, created.key.id],
    );
    assert.ok(!JSON.stringify(listed).includes(created.secret));
    assert.ok(listed.every((k: Record<string, unknown>) => !('secret' in k) && k.revoked_at === null));

    assert.match(await ok(['keys', 'revoke', created.key.id]), /Revoked/);
    const refused = await api(url, created.secret, 'GET', '/v1/assets');
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error.code, 'UNAUTHORIZED');
    assert.equal((await api(url, first.secret, 'GET', '/v1/assets')).status, 200, 'other keys still work');

    const after = JSON.parse(await ok(['keys', 'list', '--json']));
    assert.notEqual(after.find((k: { id: string }) => k.id === created.key.id).revoked_at, null);
    assert.match(await ok(['keys', 'list']), /revoked \d{4}-/);

    const again = await cli(['keys', 'revoke', created.key.id]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /No active key/);
  });

  test('revoke --account only touches keys of that account', async () => {
    await ok(['accounts', 'create', 'other']);
    const ran = await cli(['keys', 'revoke', first.id, '--account', 'other']);
    assert.equal(ran.code, 1, ran.stderr);
    assert.equal((await api(url, first.secret, 'GET', '/v1/keys')).status, 200);
  });

  test('--scope, --name-prefix and --namespace make a scoped, confined key', async () => {
    const created = JSON.parse(
      await ok([
        'keys',
        'create',
        '--json',
        '--name',
        'inbox',
        '--scope',
        'read,upload',
        '--name-prefix',
        'inbox-',
        '--namespace',
        'inbox',
      ]),
    );
    assert.deepEqual(
      [created.key.scopes, created.key.name_prefix, created.key.namespace, created.key.role],
      [['read', 'upload'], 'inbox-', 'inbox', 'member'],
    );
    const outside = await fetch(`${url}/v1/assets?name=other.txt`, {
      method: 'POST',
      headers: { 'x-api-key': created.secret, 'content-type': 'text/plain' },
      body: 'x',
    });
    assert.equal(outside.status, 403);
    assert.equal(((await outside.json()) as { error: { code: string } }).error.code, 'NAME_PREFIX_DENIED');
    assert.match(await ok(['keys', 'list']), /read,upload \(names inbox-\*, namespace inbox\)/);
    const confinedAdmin = await cli(['keys', 'create', '--scope', 'admin', '--name-prefix', 'x']);
    assert.equal(confinedAdmin.code, 1);
    assert.match(confinedAdmin.stderr, /admin key cannot be confined/);
  });
});

describe('wharf accounts', () => {
  test('an account created by the CLI has its limit and its own keys and assets', async () => {
    const out = await ok(['accounts', 'create', 'acme', '--name', 'Acme Inc', '--max-file-size', '10']);
    assert.match(out, /acme/);
    const accounts = JSON.parse(await ok(['accounts', 'list', '--json']));
    const acme = accounts.find((a: { id: string }) => a.id === 'acme');
    assert.deepEqual(
      { name: acme.name, max_file_size: acme.max_file_size, disabled: acme.disabled },
      { name: 'Acme Inc', max_file_size: 10, disabled: false },
    );
    assert.match(await ok(['accounts', 'list']), /acme\s+Acme Inc\s+10\s/);

    const key = JSON.parse(await ok(['keys', 'create', '--account', 'acme', '--role', 'admin', '--json']));
    assert.equal(key.key.account_id, 'acme');
    const upload = (bytes: string) =>
      fetch(`${url}/v1/assets?name=a.txt`, {
        method: 'POST',
        headers: { 'x-api-key': key.secret, 'content-type': 'text/plain' },
        body: bytes,
      });
    const tooBig = await upload('eleven byte');
    assert.equal(tooBig.status, 413);
    assert.equal(((await tooBig.json()) as { error: { code: string } }).error.code, 'FILE_TOO_LARGE');
    const fits = await upload('ten bytes!');
    assert.equal(fits.status, 201, await fits.clone().text());

    const own = await api(url, key.secret, 'GET', '/v1/keys');
    assert.deepEqual(
      own.body.data.map((k: { id: string }) => k.id),
      [key.key.id],
      'an account sees only its own keys',
    );
    const listed = JSON.parse(await ok(['keys', 'list', '--account', 'acme', '--json']));
    assert.deepEqual(
      listed.map((k: { id: string }) => k.id),
      [key.key.id],
    );

    const duplicate = await cli(['accounts', 'create', 'acme']);
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /already exists/);
  });
});

describe('errors and help', () => {
  test('usage errors exit 2 with a message on stderr and nothing on stdout', async () => {
    const cases = [
      [],
      ['frobnicate'],
      ['keys'],
      ['keys', 'rotate'],
      ['keys', 'create', '--role', 'owner'],
      ['keys', 'create', '--scope', 'read,owner'],
      ['keys', 'create', '--role', 'admin', '--scope', 'read'],
      ['keys', 'create', '--bogus'],
      ['keys', 'create', '--name'],
      ['keys', 'create', '--name', ''],
      ['keys', 'create', 'extra'],
      ['keys', 'revoke'],
      ['keys', 'list', '--account', '../etc'],
      ['accounts', 'create'],
      ['accounts', 'create', 'has/slash'],
      ['accounts', 'create', 'x', '--max-file-size', '10MB'],
      ['accounts', 'create', 'x', '--max-file-size', '-1'],
      ['serve', '--port', '1'],
    ];
    const results = await Promise.all(cases.map((args) => cli(args)));
    results.forEach((ran, i) => {
      const label = `wharf ${cases[i]!.join(' ')}`;
      assert.equal(ran.code, 2, `${label}: exit ${ran.code}, stderr ${ran.stderr}`);
      assert.ok(ran.stderr.trim().length > 0, `${label}: says why on stderr`);
      assert.ok(!ran.stderr.includes('    at '), `${label}: a message, not a stack trace`);
      assert.equal(ran.stdout, '', `${label}: nothing on stdout`);
    });
    const names = JSON.parse(await ok(['accounts', 'list', '--json'])).map((a: { id: string }) => a.id);
    assert.ok(!names.includes('x'), 'a refused command changed nothing');
  });

  test('failures exit 1 with a message', async () => {
    const [noAccount, badConfig] = await Promise.all([
      cli(['keys', 'create', '--account', 'nope']),
      cli(['keys', 'list'], { WHARF_PORT: 'eighty' }),
    ]);
    assert.equal(noAccount.code, 1);
    assert.match(noAccount.stderr, /No account "nope"/);
    assert.equal(badConfig.code, 1);
    assert.match(badConfig.stderr, /WHARF_PORT must be a whole number/);
    assert.ok(!badConfig.stderr.includes('    at '));
    // Every problem at once, a line each; the database URL's password never shown.
    const twoBad = await cli(['keys', 'list'], {
      WHARF_PORT: 'eighty',
      WHARF_DATABASE_URL: 'postgress://wharf:hunter2@db/wharf',
    });
    assert.equal(twoBad.code, 1);
    assert.deepEqual(
      twoBad.stderr
        .trim()
        .split('\n')
        .map((line) => line.split(' ').slice(0, 2).join(' ')),
      ['wharf: WHARF_PORT', 'wharf: WHARF_DATABASE_URL'],
    );
    assert.ok(!twoBad.stderr.includes('hunter2'));
  });

  test('a command on a data dir without a database refuses, and creates nothing', async (t) => {
    // PostgreSQL's server holds its database: nothing to find missing on this machine.
    if (backing?.env.WHARF_DATABASE_URL) return t.skip('embedded deployment only');
    const scratch = await mkdtemp(join(tmpdir(), 'wharf-cli-nodb-'));
    try {
      // No such directory (a mistyped WHARF_DATA_DIR), and one that exists but no server ran on.
      const absent = join(scratch, 'wharf-dta');
      const empty = join(scratch, 'empty');
      await mkdir(empty);
      const commands = [
        ['keys', 'create', '--role', 'admin'],
        ['keys', 'list'],
        ['accounts', 'list', '--json'],
        ['accounts', 'update', 'default', '--quota', '1000'],
        ['webhooks', 'list'],
        ['assets', 'verify'],
        ['placeholders', 'backfill'],
        ['migrate'],
      ];
      for (const dir of [absent, empty]) {
        const results = await Promise.all(commands.map((args) => cli(args, { WHARF_DATA_DIR: dir })));
        results.forEach((ran, i) => {
          const label = `WHARF_DATA_DIR=${dir} wharf ${commands[i]!.join(' ')}`;
          assert.equal(ran.code, 1, `${label}: exit ${ran.code}, stdout ${ran.stdout}, stderr ${ran.stderr}`);
          assert.equal(
            ran.stderr,
            `wharf: There is no database at ${join(dir, 'wharf.db')}: no server has run on this data yet, ` +
              'and a command does not create one (is WHARF_DATA_DIR right?).\n',
            label,
          );
          assert.equal(ran.stdout, '', `${label}: nothing on stdout`);
        });
      }
      // `data backup` refuses the same way (the same check).
      const backedUp = await cli(['data', 'backup', join(scratch, 'backup')], { WHARF_DATA_DIR: absent });
      assert.equal(backedUp.code, 1);
      assert.match(
        backedUp.stderr,
        /^wharf: There is no database at .*: nothing to back up \(is WHARF_DATA_DIR right\?\)\.\n$/,
      );
      // The database named by WHARF_DATABASE_URL: that setting is the one to check, not
      // WHARF_DATA_DIR (which the hint named whatever chose the path).
      const named = join(scratch, 'nowhere.db');
      const byUrl = { WHARF_DATA_DIR: empty, WHARF_DATABASE_URL: `sqlite://${named}` };
      const listed = await cli(['keys', 'list'], byUrl);
      assert.equal(listed.code, 1, listed.stderr);
      assert.equal(
        listed.stderr,
        `wharf: There is no database at ${named}: no server has run on this data yet, ` +
          'and a command does not create one (is WHARF_DATABASE_URL right?).\n',
      );
      const backedUpByUrl = await cli(['data', 'backup', join(scratch, 'backup')], byUrl);
      assert.equal(backedUpByUrl.code, 1);
      assert.equal(
        backedUpByUrl.stderr,
        `wharf: There is no database at ${named}: nothing to back up (is WHARF_DATABASE_URL right?).\n`,
      );
      assert.deepEqual(
        await readdir(scratch, { recursive: true }),
        ['empty'],
        'no directory, no database made',
      );
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });

  test('data backup of an empty wharf.db (no Wharf schema) refuses in one line, exit 1, and copies nothing', async (t) => {
    if (backing?.env.WHARF_DATABASE_URL) return t.skip('embedded deployment only');
    const scratch = await mkdtemp(join(tmpdir(), 'wharf-cli-emptydb-'));
    try {
      const data = join(scratch, 'data');
      await mkdir(data);
      await writeFile(join(data, 'wharf.db'), '', { mode: 0o600 });
      const ran = await cli(['data', 'backup', join(scratch, 'backup')], { WHARF_DATA_DIR: data });
      assert.equal(ran.code, 1, ran.stderr);
      // As every command refuses it (lifecycle.test.ts), not with SQLite's "no such table".
      assert.equal(
        ran.stderr,
        `wharf: WHARF_DATA_DIR (${join(data, 'wharf.db')}): this database has no Wharf schema: no server has ` +
          'run on it yet, and a command does not create one (is WHARF_DATA_DIR right?). Start the server on ' +
          'it, or run "wharf migrate".\n',
      );
      assert.equal(ran.stdout, '');
      assert.deepEqual((await readdir(scratch)).sort(), ['data'], 'no backup directory made');
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });

  test('an empty wharf.db a command refuses is left as it was: same bytes, size and mtime, no files beside it', async (t) => {
    if (backing?.env.WHARF_DATABASE_URL) return t.skip('embedded deployment only');
    const scratch = await mkdtemp(join(tmpdir(), 'wharf-cli-untouched-'));
    try {
      const data = join(scratch, 'data');
      await mkdir(data);
      const file = join(data, 'wharf.db');
      await writeFile(file, '', { mode: 0o600 });
      // In the past, so that any write would show.
      const then = new Date('2024-01-02T03:04:05Z');
      await utimes(file, then, then);
      // The schema check every command makes (openCore), and data backup's own.
      for (const args of [
        ['keys', 'list'],
        ['data', 'backup', join(scratch, 'backup')],
      ]) {
        const ran = await cli(args, { WHARF_DATA_DIR: data });
        assert.equal(ran.code, 1, ran.stderr);
        assert.match(ran.stderr, /this database has no Wharf schema/);
        const after = await stat(file);
        assert.equal(after.size, 0, `wharf ${args.join(' ')} wrote into the file`);
        assert.equal(after.mtime.getTime(), then.getTime(), `wharf ${args.join(' ')} touched the file`);
        assert.deepEqual(await readdir(data), ['wharf.db'], `wharf ${args.join(' ')} left files beside it`);
      }
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });

  test('--help lists every command and exits 0', async () => {
    const top = await cli(['--help']);
    assert.equal(top.code, 0);
    for (const command of [
      'serve',
      'keys create',
      'keys list',
      'keys revoke',
      'accounts create',
      'accounts list',
      'migrate',
    ]) {
      assert.ok(top.stdout.includes(`wharf ${command}`), `--help mentions ${command}`);
    }
    // Every exit code docs/cli.md gives, 130 and 141 too.
    assert.match(
      top.stdout,
      /Exit codes: 0 done, 1 failed, 2 the command line was wrong, 130 interrupted .*\n.*141 the reader/,
    );
    const sub = await cli(['keys', 'create', '--help']);
    assert.equal(sub.code, 0);
    assert.match(sub.stdout, /--role admin\|member/);
  });

  test('output that cannot be written (--help > /dev/full): one line that says why, exit code 1', async () => {
    // Every write to /dev/full fails with ENOSPC; a stream 'error' rethrown was a stack trace.
    const script = `'${process.execPath}' --import tsx src/cli/main.ts --help > /dev/full`;
    const ran = await new Promise<Ran>((resolve) => {
      execFile(
        'bash',
        ['-c', script],
        { cwd: REPO, env: cleanEnv({}), encoding: 'utf8' },
        (err, stdout, stderr) => {
          resolve({ code: typeof err?.code === 'number' ? err.code : err ? -1 : 0, stdout, stderr });
        },
      );
    });
    assert.equal(ran.code, 1, ran.stderr);
    assert.equal(ran.stderr, 'wharf: cannot write to standard output: ENOSPC (no space left on device)\n');
  });
});

describe('bin/wharf.js', () => {
  test('runs the compiled CLI, and says so when it is not built', async () => {
    // Build into a scratch copy of the package so the repository's dist/ is left alone.
    const pkg = await mkdtemp(join(tmpdir(), 'wharf-bin-'));
    try {
      await mkdir(join(pkg, 'bin'));
      await copyFile(join(REPO, 'bin', 'wharf.js'), join(pkg, 'bin', 'wharf.js'));
      await copyFile(join(REPO, 'package.json'), join(pkg, 'package.json'));
      await symlink(join(REPO, 'node_modules'), join(pkg, 'node_modules'), 'dir');
      const env = cleanEnv({ WHARF_DATA_DIR: dataDir, ...backing?.env });

      const unbuilt = await spawnNode([join(pkg, 'bin', 'wharf.js'), 'keys', 'list'], env);
      assert.equal(unbuilt.code, 1);
      assert.match(unbuilt.stderr, /npm run build/);

      const tsc = await spawnNode(
        [
          join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'),
          '-p',
          join(REPO, 'tsconfig.build.json'),
          '--outDir',
          join(pkg, 'dist'),
        ],
        env,
      );
      assert.equal(tsc.code, 0, tsc.stdout + tsc.stderr);
      const listed = await spawnNode([join(pkg, 'bin', 'wharf.js'), 'keys', 'list', '--json'], env);
      assert.equal(listed.code, 0, listed.stderr);
      assert.ok(JSON.parse(listed.stdout).some((k: { id: string }) => k.id === first.id));
      const usage = await spawnNode([join(pkg, 'bin', 'wharf.js'), 'keys', 'nope'], env);
      assert.equal(usage.code, 2);
    } finally {
      await rm(pkg, { recursive: true, force: true });
    }
  });
});
