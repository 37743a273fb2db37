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
import { Receiver } from '../helpers/receiver.js';
import { freePort } from '../helpers/wharf.js';

/** `wharf webhooks …`, run as `npm run wharf -- …` runs it, on a running server's data. */

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
let key: string;
let r: Receiver;

function cli(args: string[], extraEnv: Record<string, string> = {}): Promise<Ran> {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('WHARF_')) env[name] = value;
  }
  Object.assign(env, { WHARF_DATA_DIR: dataDir, ...backing?.env, ...extraEnv });
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

async function ok(args: string[], extraEnv: Record<string, string> = {}): Promise<string> {
  const ran = await cli(args, extraEnv);
  assert.equal(ran.code, 0, `wharf ${args.join(' ')} failed: ${ran.stderr}`);
  return ran.stdout;
}

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'wharf-cli-webhooks-'));
  backing = await provision();
  const port = await freePort();
  const config = loadConfig({
    WHARF_HOST: '127.0.0.1',
    WHARF_PORT: String(port),
    WHARF_DATA_DIR: dataDir,
    WHARF_SWEEP_INTERVAL: '0',
    WHARF_JOB_INTERVAL_MS: '0',
    WHARF_WEBHOOK_ALLOW_PRIVATE: 'true',
    ...backing.env,
  });
  // The server makes the database; the CLI works on it (and refuses a data dir without one).
  wharf = await createWharf(config, { logger: false });
  key = JSON.parse(await ok(['keys', 'create', '--role', 'admin', '--json'])).secret;
  await wharf.app.listen({ host: config.host, port: config.port });
  url = config.publicUrl;
  r = await Receiver.start();
});

after(async () => {
  await r?.close();
  await wharf?.close();
  await backing?.release();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('wharf webhooks', () => {
  test('create, list, get, update, deliveries, replay and delete', async () => {
    // The CLI applies the same SSRF rule as the server: without the setting, loopback is refused.
    const refused = await cli(['webhooks', 'create', '--url', r.url]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /WHARF_WEBHOOK_ALLOW_PRIVATE/);

    const allow = { WHARF_WEBHOOK_ALLOW_PRIVATE: 'true' };
    const created = JSON.parse(
      await ok(['webhooks', 'create', '--url', r.url, '--events', 'upload.completed', '--json'], allow),
    );
    const id = created.webhook.id;
    assert.deepEqual(created.webhook.event_types, ['upload.completed']);
    assert.match(created.secret, /^whsec_/);
    r.secrets.push(created.secret);
    assert.match(
      await ok(['webhooks', 'list']),
      new RegExp(`${id}\\s+${r.url}\\s+upload.completed\\s+enabled`),
    );
    assert.equal(JSON.parse(await ok(['webhooks', 'get', id, '--secret', '--json'])).secret, created.secret);

    const upload = await fetch(`${url}/v1/assets?name=cli.txt`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'text/plain' },
      body: 'from the cli test',
    });
    assert.equal(upload.status, 201);
    await wharf!.core.jobs.drain();
    assert.equal(r.accepted.length, 1);
    assert.deepEqual(r.invalid, []);

    const [delivery] = JSON.parse(await ok(['webhooks', 'deliveries', id, '--json']));
    assert.equal(delivery.status, 'succeeded');
    assert.equal(delivery.event_id, r.accepted[0]!.id);
    assert.match(
      await ok(['webhooks', 'deliveries', id, '--status', 'succeeded']),
      /upload\.completed\s+succeeded\s+1/,
    );
    assert.match(await ok(['webhooks', 'replay', id, '--delivery', delivery.id]), /Queued delivery/);
    await wharf!.core.jobs.drain();
    assert.equal(r.accepted.length, 2);
    assert.equal(r.accepted[1]!.id, r.accepted[0]!.id);
    assert.match(
      await ok(['webhooks', 'replay', id, '--since', '2000-01-01T00:00:00Z']),
      /Queued 0 existing deliveries again and 0 for events the endpoint missed/,
    );

    assert.match(await ok(['webhooks', 'update', id, '--disable']), /disabled/);
    assert.equal(JSON.parse(await ok(['webhooks', 'get', id, '--json'])).enabled, false);
    assert.equal(JSON.parse(await ok(['webhooks', 'update', id, '--enable', '--json'])).enabled, true);

    assert.match(await ok(['webhooks', 'delete', id]), /Deleted webhook/);
    const gone = await cli(['webhooks', 'get', id]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /No webhook endpoint/);
  });

  test('mistakes in the command line exit 2; bad values exit 1 with the reason', async () => {
    for (const args of [
      ['webhooks', 'create'],
      ['webhooks', 'get'],
      ['webhooks', 'update', 'x'],
      ['webhooks', 'update', 'x', '--enable', '--disable'],
      ['webhooks', 'replay', 'x'],
      ['webhooks', 'replay', 'x', '--delivery', 'd', '--since', '2020-01-01T00:00:00Z'],
      ['webhooks', 'replay', 'x', '--since', 'last tuesday'],
      ['webhooks', 'deliveries', 'x', '--limit', 'many'],
      ['webhooks', 'list', '--colour', 'red'],
    ]) {
      const ran = await cli(args);
      assert.equal(ran.code, 2, `${args.join(' ')}: ${ran.stderr}`);
    }
    const unknown = await cli([
      'webhooks',
      'create',
      '--url',
      'https://x.example.com',
      '--events',
      'upload.done',
    ]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /Unknown event type: upload\.done/);
  });
});
