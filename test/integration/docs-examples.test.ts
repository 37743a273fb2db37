import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { CORSConfiguration } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import { onS3, withBucket } from '../helpers/deployment.js';
import {
  type DocExample,
  docExamples,
  parseDocJson,
  shapeDifferences,
  unmarkedBlocks,
  wharfSdkFromSource,
} from '../helpers/doc-examples.js';
import { api, md5Hex, sha256Hex } from '../helpers/http.js';
import { REPO } from '../helpers/process.js';
import { Receiver } from '../helpers/receiver.js';
import { freePort, startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * The js, ts and json examples of docs/*.md, taken from the markdown itself (see
 * test/helpers/doc-examples.ts for the marker each carries, and docs/development.md).
 *
 * - `<!-- example: node NAME -->`: bundled by esbuild as an ES module, as written, and run by
 *   Node against this file's Wharf. The free variables a fragment uses (`WHARF`, `KEY`, `id`)
 *   are supplied by the preamble below, injected only where the example does not declare them;
 *   environment variables it reads (`WEBHOOK_SECRET`, `PORT`, `WHARF_URL`, `WHARF_KEY`) are set.
 *   NAME's harness then checks what the example did: a webhook receiver must accept Wharf's real
 *   signed delivery and refuse a forged one; the SDK example must upload the file.
 * - `<!-- example: json NAME -->`: parsed, and the real response or event NAME names must have
 *   the same fields, recursively (all of them unless the example shows `…`); values differ.
 *   `json from FILE` examples are compared by readme.test.ts with what the walkthrough wrote.
 * Browser examples run in docs-examples-browser.test.ts, nginx ones in reverse-proxy.test.ts.
 */

const examples = docExamples();
let w: TestWharf;
let scratch: string;
/** The app's receiver of every upload.completed event (the json `upload.completed` example). */
let receiver: Receiver;
let receiverHook: string;

before(async () => {
  w = await startWharf({ env: { WHARF_WEBHOOK_ALLOW_PRIVATE: 'true' } });
  // Inside the checkout (.tmp/ is git-ignored), so an example's imports resolve from its node_modules.
  await mkdir(join(REPO, '.tmp'), { recursive: true });
  scratch = await mkdtemp(join(REPO, '.tmp', 'docs-examples-'));
  ({ receiver, hookId: receiverHook } = await Receiver.subscribed(w.url, w.key, ['upload.completed']));
});

after(async () => {
  await w?.close();
  await receiver?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const where = (example: DocExample) => `${example.file}:${example.line}`;

describe('the marker convention', () => {
  test('every js, ts, json and nginx block of docs/ carries an example marker', () => {
    assert.deepEqual(unmarkedBlocks(), [], 'blocks without <!-- example: … --> directly above');
  });

  test('every marked example has a harness in the tests', () => {
    for (const example of examples) {
      // Browser examples' harnesses are checked by docs-examples-browser.test.ts.
      const known =
        example.kind === 'browser' ||
        (example.kind === 'node'
          ? example.name in NODE
          : example.name.startsWith('from ') || example.name in RESPONSES);
      assert.ok(known, `${where(example)}: no harness for <!-- example: ${example.kind} ${example.name} -->`);
    }
    assert.ok(examples.length >= 26, `only ${examples.length} examples found`);
  });

  test('every json example parses', () => {
    for (const example of examples.filter((e) => e.kind === 'json')) {
      assert.doesNotThrow(() => parseDocJson(example.code), `${where(example)} is not JSON`);
    }
  });
});

// ─── Node examples ──────────────────────────────────────────────────────────────────────────

/**
 * Bundles an example as an ES module into the scratch folder: imports of npm packages stay
 * imports (resolved from the checkout's node_modules), `@wharf/sdk` is the SDK's source, and the
 * free variables come from the preamble.
 */
async function bundleForNode(example: DocExample, epilogue = ''): Promise<string> {
  const { build } = await import('esbuild');
  const dir = await mkdtemp(join(scratch, 'node-'));
  const preamble = join(dir, 'preamble.mjs');
  await writeFile(
    preamble,
    [
      '// What a reader has at hand: the server, a key, an asset.',
      'export const WHARF = process.env.WHARF;',
      'export const KEY = process.env.KEY;',
      'export const id = process.env.ASSET_ID;',
      '',
    ].join('\n'),
  );
  const out = join(dir, 'example.mjs');
  await build({
    stdin: {
      contents: `${example.code}\n${epilogue}`,
      resolveDir: dir,
      sourcefile: where(example),
      loader: example.lang,
    },
    inject: [preamble],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    packages: 'external',
    outfile: out,
    logLevel: 'silent',
    plugins: [wharfSdkFromSource],
  });
  return out;
}

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function runNode(module: string, env: Record<string, string>, cwd = scratch): Run {
  const child = spawn(process.execPath, [module], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  return { child, output: () => output, exited };
}

async function listening(port: number, run: Run): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.end();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) return;
    if (run.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`the example does not listen on ${port}:\n${run.output()}`);
}

async function uploadBytes(name: string, bytes: Buffer, type = 'application/octet-stream') {
  const res = await fetch(`${w.url}/v1/assets?name=${encodeURIComponent(name)}`, {
    method: 'POST',
    headers: { 'x-api-key': w.key, 'content-type': type },
    body: new Uint8Array(bytes),
  });
  const body = await res.json();
  assert.equal(res.status, 201, JSON.stringify(body));
  return body.asset as { id: string; sha256: string; analysis?: Record<string, unknown> };
}

async function deliveryTo(hookId: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 100; i++) {
    await w.wharf.core.jobs.drain();
    const listed = await api(w.url, w.key, 'GET', `/v1/webhooks/${hookId}/deliveries`);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    const done = listed.body.data.find((d: { status: string }) => d.status !== 'pending');
    if (done) return done;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`no delivery to webhook ${hookId} finished`);
}

const NODE: Record<string, (example: DocExample) => Promise<void>> = {
  /** A receiver gets Wharf's real signed delivery and answers 2xx; a forged one gets 400. */
  async 'webhook-receiver'(example) {
    const port = await freePort();
    const hook = await api(w.url, w.key, 'POST', '/v1/webhooks', {
      url: `http://127.0.0.1:${port}/`,
      event_types: ['upload.completed'],
    });
    assert.equal(hook.status, 201, JSON.stringify(hook.body));
    const run = runNode(await bundleForNode(example), {
      PORT: String(port),
      WEBHOOK_SECRET: hook.body.secret,
    });
    try {
      await listening(port, run);
      const asset = await uploadBytes(`hooked-${port}.bin`, randomBytes(1000));
      const delivery = await deliveryTo(hook.body.webhook.id);
      assert.equal(delivery.status, 'succeeded', `${JSON.stringify(delivery)}\n${run.output()}`);
      assert.ok(Number(delivery.response_status) >= 200 && Number(delivery.response_status) < 300);
      if (example.code.includes("console.log('stored'")) {
        assert.match(run.output(), new RegExp(`stored ${asset.id} ${asset.sha256}`));
      }
      // A request not signed with the secret is refused.
      const forged = await fetch(`http://127.0.0.1:${port}/`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'webhook-id': 'msg_forged',
          'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
          'webhook-signature': `v1,${randomBytes(32).toString('base64')}`,
        },
        body: JSON.stringify({ type: 'upload.completed', data: {} }),
      });
      assert.equal(forged.status, 400);
    } finally {
      run.child.kill();
      await run.exited;
      await api(w.url, w.key, 'DELETE', `/v1/webhooks/${hook.body.webhook.id}`);
    }
  },

  /** The SDK uploads video.mp4 from the working directory, then lists it. */
  async 'sdk-upload'(example) {
    const cwd = await mkdtemp(join(scratch, 'sdk-'));
    const bytes = randomBytes(200_000);
    await writeFile(join(cwd, 'video.mp4'), bytes);
    const run = runNode(await bundleForNode(example), { WHARF_URL: w.url, WHARF_KEY: w.key }, cwd);
    const timer = setTimeout(() => run.child.kill(), 60_000);
    const code = await run.exited;
    clearTimeout(timer);
    assert.equal(code, 0, run.output());
    const [, status, assetId, strategy, resumed] =
      /^(created|exists) (\S+) (\S+) (true|false)$/m.exec(run.output()) ?? [];
    assert.equal(status, 'created', run.output());
    assert.equal(strategy, 'direct');
    assert.equal(resumed, 'false');
    assert.match(run.output(), /^done /m, 'onProgress reported the phases');
    assert.match(run.output(), /^video\.mp4$/m, 'the listing by prefix names it');
    const stored = await api(w.url, w.key, 'GET', `/v1/assets/${assetId}`);
    assert.equal(stored.status, 200);
    assert.equal(stored.body.sha256, sha256Hex(bytes));
  },

  /** The URL it gets works without a key, until the end of a UTC day at least an hour ahead. */
  async 'image-url'(example) {
    const photo = await uploadBytes('fetched.png', await png(), 'image/png');
    const run = runNode(await bundleForNode(example, 'console.log(JSON.stringify({ url, expires_at }));'), {
      WHARF: w.url,
      KEY: w.key,
      ASSET_ID: photo.id,
    });
    const code = await run.exited;
    assert.equal(code, 0, run.output());
    const { url, expires_at } = JSON.parse(run.output().trim().split('\n').at(-1)!);
    const until = Date.parse(expires_at);
    assert.equal(until % 86_400_000, 0, 'the end of a UTC day');
    assert.ok(until - Date.now() >= 3_600_000 && until - Date.now() <= 2 * 86_400_000, expires_at);
    assert.equal(new URL(url).searchParams.get('w'), '800');
    const res = await fetch(url);
    assert.equal(res.status, 200, await res.clone().text());
    assert.match(res.headers.get('content-type') ?? '', /^image\//);
  },
};

describe('node examples run as written', () => {
  for (const example of examples.filter((e) => e.kind === 'node')) {
    test(`${where(example)} (${example.name})`, { timeout: 90_000 }, () => NODE[example.name]!(example));
  }
});

// ─── json examples ──────────────────────────────────────────────────────────────────────────

function png(): Promise<Buffer> {
  const [width, height] = [96, 64];
  return sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

// biome-ignore lint/suspicious/noExplicitAny: an asset as JSON, walked by the examples' harnesses
async function processed(id: string): Promise<Record<string, any>> {
  for (let i = 0; i < 100; i++) {
    await w.wharf.core.jobs.drain();
    const res = await api(w.url, w.key, 'GET', `/v1/assets/${id}`);
    if (res.body.processing !== 'pending') return res.body;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`asset ${id} is still processing`);
}

/** /readyz as it answers a node in the state given (the conditions are made for real in lifecycle and disk-full tests). */
async function readyzWhen(state: object): Promise<unknown> {
  const health = w.wharf.core.health;
  const readiness = health.readiness;
  health.readiness = async () => state as Awaited<ReturnType<typeof readiness>>;
  try {
    return await (await fetch(`${w.url}/readyz`)).json();
  } finally {
    health.readiness = readiness;
  }
}

const OK = { status: 'ok' } as const;

/** The real response or event each json example shows. */
const RESPONSES: Record<string, () => Promise<unknown>> = {
  /**
   * docs/scaling.md's bucket CORS rule, put on the bucket as written (scaled): a browser's
   * preflights of every request an upload sends to the bucket must pass, and the rule read back
   * is the real thing. Without S3 there is no bucket to ask: the rule is what the docs show.
   */
  async 'bucket-cors'() {
    const documented = parseDocJson(examples.find((e) => e.name === 'bucket-cors')!.code) as {
      CORSRules: { AllowedOrigins: string[] }[];
    };
    if (!onS3(w)) return documented;
    const { PutBucketCorsCommand, GetBucketCorsCommand } = await import('@aws-sdk/client-s3');
    return withBucket(w, async (s3, bucket) => {
      await s3.send(
        new PutBucketCorsCommand({ Bucket: bucket, CORSConfiguration: documented as CORSConfiguration }),
      );
      const origin = documented.CORSRules[0]!.AllowedOrigins[0]!;
      const object = `${w.backingEnv.WHARF_S3_ENDPOINT}/${bucket}/default/preflight.bin`;
      const preflights: [string, string][] = [
        // A presigned PUT (and a part): its type, write-once condition and checksum.
        ['PUT', 'content-type,if-none-match,x-amz-checksum-sha256'],
        ['POST', 'content-type'], // a form; create and complete a multipart upload
        ['DELETE', ''], // abort a multipart upload (Uppy's cancel)
        ['GET', ''], // list its parts
      ];
      for (const [method, headers] of preflights) {
        const res = await fetch(object, {
          method: 'OPTIONS',
          headers: {
            origin,
            'access-control-request-method': method,
            ...(headers ? { 'access-control-request-headers': headers } : {}),
          },
        });
        await res.arrayBuffer();
        assert.equal(res.status, 200, `the preflight of a ${method} (${headers || 'no headers'})`);
        assert.equal(res.headers.get('access-control-allow-origin'), origin, method);
      }
      const stored = await s3.send(new GetBucketCorsCommand({ Bucket: bucket }));
      return { CORSRules: stored.CORSRules };
    });
  },
  async 'image-url'() {
    const photo = await uploadBytes('signed.png', await png(), 'image/png');
    const res = await api(w.url, w.key, 'POST', `/v1/assets/${photo.id}/image-url`, {
      w: 160,
      h: 112,
      fit: 'cover',
      format: 'webp',
      q: 70,
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body;
  },
  /** The fragment's enclosing object: the analysis. */
  async placeholder() {
    const photo = await uploadBytes('placeholder.png', await png(), 'image/png');
    return (await processed(photo.id)).analysis;
  },
  /** The fragment's enclosing object: an asset whose location was stripped. */
  async 'gps-stripped'() {
    const on = await api(w.url, w.key, 'PATCH', '/v1/account/settings', { strip_gps: true });
    assert.equal(on.status, 200, JSON.stringify(on.body));
    try {
      const [width, height] = [96, 64];
      const jpeg = await sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } })
        .jpeg()
        .withExif({ IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '52/1 31/1 1234/100' } })
        .toBuffer();
      const asset = await processed((await uploadBytes('located.jpg', jpeg, 'image/jpeg')).id);
      assert.equal(asset.analysis.had_gps, true);
      return asset;
    } finally {
      await api(w.url, w.key, 'PATCH', '/v1/account/settings', { strip_gps: false });
    }
  },
  'readyz-failed': () =>
    readyzWhen({
      ready: false,
      stopping: false,
      checks: { database: OK, storage: { status: 'failed', reason: 'error', error: new Error('EACCES') } },
    }),
  'readyz-full': () =>
    readyzWhen({ ready: true, stopping: false, checks: { database: OK, storage: { status: 'full' } } }),
  'readyz-stopping': () =>
    readyzWhen({ ready: false, stopping: true, checks: { database: OK, storage: OK } }),
  /** The error the example shows, for real: a body whose MD5 is not the declared one. */
  async error() {
    const res = await fetch(`${w.url}/v1/assets?name=damaged.bin`, {
      method: 'POST',
      headers: {
        'x-api-key': w.key,
        'content-type': 'application/octet-stream',
        'content-md5': Buffer.from(md5Hex('something else'), 'hex').toString('base64'),
      },
      body: 'the bytes sent',
    });
    const body = await res.json();
    assert.equal(body.error?.code, 'CHECKSUM_MISMATCH', JSON.stringify(body));
    return body;
  },
  /** The body of a real delivery, as the app's receiver verified it (a tus upload, as shown). */
  async 'upload.completed'() {
    const bytes = randomBytes(500);
    const created = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        'x-api-key': w.key,
        'tus-resumable': '1.0.0',
        'upload-length': String(bytes.length),
        'upload-metadata': `filename ${Buffer.from('photo.jpg').toString('base64')}`,
      },
    });
    assert.equal(created.status, 201, await created.text());
    const patched = await fetch(new URL(created.headers.get('location')!, w.url), {
      method: 'PATCH',
      headers: {
        'x-api-key': w.key,
        'tus-resumable': '1.0.0',
        'upload-offset': '0',
        'content-type': 'application/offset+octet-stream',
      },
      body: new Uint8Array(bytes),
    });
    assert.equal(patched.status, 204, await patched.text());
    const assetId = patched.headers.get('wharf-asset-id');
    for (let i = 0; i < 100; i++) {
      await w.wharf.core.jobs.drain();
      const got = receiver.accepted.find((d) => d.payload?.data.asset?.id === assetId);
      if (got) return JSON.parse(got.body);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail('no upload.completed delivery');
  },
  async deliveries() {
    await uploadBytes('delivered.bin', randomBytes(300));
    await deliveryTo(receiverHook);
    const res = await api(w.url, w.key, 'GET', `/v1/webhooks/${receiverHook}/deliveries`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body;
  },
};

describe('json examples have the fields of the real thing', () => {
  for (const example of examples.filter((e) => e.kind === 'json' && !e.name.startsWith('from '))) {
    test(`${where(example)} (${example.name})`, async () => {
      const real = await RESPONSES[example.name]!();
      assert.deepEqual(
        shapeDifferences(parseDocJson(example.code), real),
        [],
        `${where(example)} against ${JSON.stringify(real)}`,
      );
    });
  }
});
