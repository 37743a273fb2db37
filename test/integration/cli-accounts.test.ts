import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config.js';
import { createWharf, type Wharf } from '../../src/server.js';
import { type Backing, provision } from '../helpers/deployment.js';
import { api } from '../helpers/http.js';
import { freePort } from '../helpers/wharf.js';

/** `wharf accounts update`, run as `npm run wharf -- …` runs it, against a running server's data. */

const REPO = fileURLToPath(new URL('../..', import.meta.url));

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

let dataDir: string;
let backing: Backing | undefined;
let wharf: Wharf | undefined;
let url: string;
let secret: string;

function cli(args: string[]): Promise<Ran> {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('WHARF_')) env[name] = value;
  }
  Object.assign(env, { WHARF_DATA_DIR: dataDir, ...backing?.env });
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      { cwd: REPO, env, encoding: 'utf8' },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      },
    );
  });
}

async function ok(args: string[]): Promise<string> {
  const ran = await cli(args);
  assert.equal(ran.code, 0, `wharf ${args.join(' ')} failed: ${ran.stderr}`);
  return ran.stdout;
}

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'wharf-cli-accounts-'));
  backing = await provision();
  const port = await freePort();
  const config = loadConfig({
    WHARF_HOST: '127.0.0.1',
    WHARF_PORT: String(port),
    WHARF_DATA_DIR: dataDir,
    WHARF_SWEEP_INTERVAL: '0',
    WHARF_JOB_INTERVAL_MS: '0',
    ...backing.env,
  });
  // The server makes the database; the CLI works on it (and refuses a data dir without one).
  wharf = await createWharf(config, { logger: false });
  await ok(['accounts', 'create', 'acme']);
  secret = JSON.parse(await ok(['keys', 'create', '--account', 'acme', '--role', 'admin', '--json'])).secret;
  await wharf.listen();
  url = config.publicUrl;
});

after(async () => {
  await wharf?.close();
  await backing?.release();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** A raw-body upload to the native API with the account's key. */
function uploadText(body: string) {
  return fetch(`${url}/v1/assets?name=a.txt`, {
    method: 'POST',
    headers: { 'x-api-key': secret, 'content-type': 'text/plain' },
    body,
  });
}

describe('wharf accounts update', () => {
  test('--disable refuses the account’s keys at once (native and FileSpin APIs); --enable restores them', async () => {
    assert.match(await ok(['accounts', 'update', 'acme', '--disable']), /"acme": disabled/);
    const native = await api(url, secret, 'GET', '/v1/assets');
    assert.equal(native.status, 403);
    assert.equal(native.body.error.code, 'ACCOUNT_DISABLED');
    const filespin = await api(url, secret, 'GET', '/api/v1/assets/new/content_storage_url?filename=a.jpg');
    assert.equal(filespin.status, 403);
    assert.equal(filespin.body.error, 'ACCOUNT_DISABLED');
    assert.match(await ok(['accounts', 'list']), /acme\s+acme\s+server default\s+unlimited\s+yes\s/);

    assert.match(await ok(['accounts', 'update', 'acme', '--enable']), /"acme": enabled/);
    assert.equal((await api(url, secret, 'GET', '/v1/assets')).status, 200);
  });

  test('--quota sets the upload limit (403 past it), and "none" removes it', async () => {
    const set = JSON.parse(await ok(['accounts', 'update', 'acme', '--quota', '10', '--json']));
    assert.deepEqual(
      {
        id: set.id,
        storage_quota: set.storage_quota,
        max_file_size: set.max_file_size,
        disabled: set.disabled,
      },
      { id: 'acme', storage_quota: 10, max_file_size: null, disabled: false },
    );
    const fits = await uploadText('ten bytes!');
    assert.equal(fits.status, 201, await fits.clone().text());
    const over = await uploadText('x');
    assert.equal(over.status, 403);
    assert.equal(((await over.json()) as { error: { code: string } }).error.code, 'QUOTA_EXCEEDED');

    await ok(['accounts', 'update', 'acme', '--quota', '5']);
    const filespin = await api(url, secret, 'GET', '/api/v1/assets/new/content_storage_url?filename=a.jpg');
    assert.equal(filespin.status, 403);
    assert.equal(filespin.body.error, 'UPLOAD_LIMIT_EXCEEDED');

    const cleared = JSON.parse(await ok(['accounts', 'update', 'acme', '--quota', 'none', '--json']));
    assert.equal(cleared.storage_quota, null);
    assert.equal((await uploadText('x')).status, 201);
  });

  test('--max-file-size sets the account’s file size limit, and "none" returns to the server default', async () => {
    assert.match(await ok(['accounts', 'update', 'acme', '--max-file-size', '3']), /max file size: 3 bytes/);
    const tooBig = await uploadText('four');
    assert.equal(tooBig.status, 413);
    assert.match(await ok(['accounts', 'update', 'acme', '--max-file-size', 'none']), /server default/);
    assert.equal((await uploadText('four')).status, 201);
  });

  test('--strip-gps makes new images of the account be stored without their location; --keep-gps undoes it', async () => {
    assert.match(await ok(['accounts', 'update', 'acme', '--strip-gps']), /GPS in new images: removed/);
    const settings = await api(url, secret, 'GET', '/v1/account/settings');
    assert.deepEqual(settings.body, { strip_gps: true });
    const json = JSON.parse(await ok(['accounts', 'update', 'acme', '--keep-gps', '--json']));
    assert.equal(json.strip_gps, false);
    assert.deepEqual((await api(url, secret, 'GET', '/v1/account/settings')).body, { strip_gps: false });
    const both = await cli(['accounts', 'update', 'acme', '--strip-gps', '--keep-gps']);
    assert.equal(both.code, 2);
  });

  test('usage errors exit 2 and change nothing; an unknown account exits 1', async () => {
    const cases = [
      ['accounts', 'update'],
      ['accounts', 'update', 'acme'],
      ['accounts', 'update', 'acme', '--disable', '--enable'],
      ['accounts', 'update', 'acme', '--quota', '10MB'],
      ['accounts', 'update', 'acme', '--quota', '-1'],
      ['accounts', 'update', 'acme', '--max-file-size', '1.5', '--disable'],
      // At least 1, as WHARF_MAX_FILE_SIZE: 0 would refuse every file ("none" lifts the limit).
      ['accounts', 'update', 'acme', '--max-file-size', '0', '--disable'],
      ['accounts', 'create', 'zero', '--max-file-size', '0'],
      ['accounts', 'update', 'has/slash', '--disable'],
    ];
    const results = await Promise.all(cases.map((args) => cli(args)));
    results.forEach((ran, i) => {
      const label = `wharf ${cases[i]!.join(' ')}`;
      assert.equal(ran.code, 2, `${label}: exit ${ran.code}, stderr ${ran.stderr}`);
      assert.ok(ran.stderr.trim().length > 0, `${label}: says why on stderr`);
      assert.equal(ran.stdout, '', `${label}: nothing on stdout`);
    });
    const acme = JSON.parse(await ok(['accounts', 'list', '--json'])).find(
      (a: { id: string }) => a.id === 'acme',
    );
    assert.equal(acme.disabled, false, 'a refused command changed nothing');
    assert.equal(acme.max_file_size, null);
    for (const i of [6, 7]) assert.match(results[i]!.stderr, /--max-file-size must be at least 1 byte/);
    assert.equal(
      JSON.parse(await ok(['accounts', 'list', '--json'])).some((a: { id: string }) => a.id === 'zero'),
      false,
      'no account was created',
    );

    const missing = await cli(['accounts', 'update', 'nope', '--disable']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No account "nope"/);
  });

  test('--help lists the command', async () => {
    assert.match(await ok(['--help']), /wharf accounts update <id> \[--disable\|--enable\]/);
  });
});
