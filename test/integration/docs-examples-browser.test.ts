import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { launchChromium } from '../helpers/browser.js';
import { allowOriginOnBucket, onS3 } from '../helpers/deployment.js';
import { type DocExample, docExamples, wharfSdkFromSource } from '../helpers/doc-examples.js';
import { api, type JsonResponse, sha256Hex } from '../helpers/http.js';
import { REPO } from '../helpers/process.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * The `<!-- example: browser NAME -->` blocks of docs/*.md, each bundled by esbuild as written
 * (its imports from the checkout's node_modules, `@wharf/sdk` from the SDK's source) and run in
 * turn in ONE page of another origin than Wharf's, in Chromium. The free variables a fragment
 * uses come from the preamble below (injected only where the block does not declare them): `WHARF`,
 * an upload token `token` the page's back end minted, a small `file` of its own, `uploadToken()`
 * (the docs' own, from docs/integration.md, calling the page's back end), and what the page
 * around a fragment holds (`form`, `delegate`, `img`, `asset`, `signedRenderingUrl`, `uppy`).
 * NAME's epilogue, appended to the block, waits for what the example does (the `asset <id>` it
 * logs, Uppy's upload, the blob it appends to the form) and the test checks that Wharf holds
 * that file, byte for byte. On the scaled deployment the presigned requests go to the bucket.
 */

const examples = docExamples().filter((e) => e.kind === 'browser');
const SUBJECT = 'docs-reader';

let w: TestWharf;
let browser: Browser;
let page: Page;
let origin: string;
let scratch: string;
const files = new Map<string, string>();
let closePage: () => Promise<void>;
/** The examples' errors in the page. */
const problems: string[] = [];

/** What each example's block is followed by: it sets `outcome` once the example is done. */
const EPILOGUES: Record<string, string> = {
  'upload-token': 'export const outcome = { secret: await uploadToken() };',
  'tus-js-client': `export const outcome = await exampleUntil(() =>
    exampleLog.find((e) => e.args[0] === 'asset') && { assetId: exampleLog.find((e) => e.args[0] === 'asset').args[1] });`,
  'uppy-sign-request': `uppy.addFile({ name: file.name, type: file.type, data: file });
const result = await uppy.upload();
export const outcome = {
  keys: result.successful.map((f) => f.response.body.key),
  errors: result.failed.map((f) => String(f.error)),
};`,
  'uppy-6-page': `uppy.addFile({ name: file.name, type: file.type, data: file });
const result = await uppy.upload();
export const outcome = {
  keys: result.successful.map((f) => f.response.body.key),
  errors: result.failed.map((f) => String(f.error)),
  uploadIds: [...uploadIds.values()],
};`,
  'direct-upload': `export const outcome = await exampleUntil(() => form.get('avatar') && { signedId: form.get('avatar') });`,
  // Uppy 5 is not installed (Uppy 6 is); its multipart steps are driven as Uppy 5 calls them.
  'uppy-5-callbacks': `const steps = uppy.options;
const { uploadId, key } = await steps.createMultipartUpload(file);
const { url, headers } = await steps.signPart(file, { uploadId, key, partNumber: 1, body: file });
const put = await fetch(url, { method: 'PUT', headers, body: file });
if (!put.ok) throw new Error('PUT part: ' + put.status);
const listed = await steps.listParts(file, { uploadId, key });
const done = await steps.completeMultipartUpload(file, {
  uploadId, key, parts: [{ PartNumber: 1, ETag: put.headers.get('ETag') }],
});
const other = await steps.createMultipartUpload(file);
await steps.abortMultipartUpload(file, { uploadId: other.uploadId, key: other.key });
export const outcome = { uploadId, listed, assetId: done.asset.id, aborted: other.uploadId };`,
  placeholder: `document.body.append(img);
await img.decode();
export const outcome = { background: img.style.background, width: img.naturalWidth };`,
};

/** What the page gives a fragment; `exampleContext` is set by the test before each one. */
function preamble(uploadTokenBlock: string): string {
  return `const ctx = globalThis.exampleContext;
export const WHARF = ctx.wharf;
export const token = ctx.token;
export const file = new File([ctx.text], ctx.name, { type: ctx.type });
export const delegate = {};
export const form = new FormData();
export const img = document.createElement('img');
export const asset = ctx.asset;
export const signedRenderingUrl = ctx.signedRenderingUrl;
export { default as AwsS3 } from '@uppy/aws-s3';
export const uppy = { use(plugin, options) { this.plugin = plugin; this.options = options; return this; } };
// docs/integration.md's own:
export ${uploadTokenBlock}
`;
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><script>
window.exampleLog = [];
for (const method of ['log', 'error']) {
  const original = console[method].bind(console);
  console[method] = (...args) => { exampleLog.push({ method, args: args.map(String) }); original(...args); };
}
// tus-js-client throws from its callbacks when given no onError: the example failed.
addEventListener('error', (e) => exampleLog.push({ method: 'error', args: [String(e.message)] }));
addEventListener('unhandledrejection', (e) => exampleLog.push({ method: 'error', args: [String(e.reason)] }));
window.exampleUntil = (check, ms = 60000) => new Promise((resolve, reject) => {
  const start = Date.now();
  const tick = () => {
    const failed = exampleLog.find((e) => e.method === 'error');
    if (failed) return reject(new Error(failed.args.join(' ')));
    const value = check();
    if (value) return resolve(value);
    if (Date.now() - start > ms) return reject(new Error('timed out: ' + JSON.stringify(exampleLog)));
    setTimeout(tick, 50);
  };
  tick();
});
</script></head><body></body></html>`;

async function bundle(example: DocExample, inject: string): Promise<string> {
  const { build } = await import('esbuild');
  const result = await build({
    stdin: {
      contents: `${example.code}\n${EPILOGUES[example.name]}\n`,
      resolveDir: scratch,
      sourcefile: `${example.file}:${example.line}`,
      loader: example.lang,
    },
    inject: [inject],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'chrome120',
    write: false,
    logLevel: 'silent',
    plugins: [wharfSdkFromSource],
  });
  return result.outputFiles[0]!.text;
}

/** The app: its pages, and its back end's route that mints an upload token for the user. */
async function serveApp(): Promise<void> {
  const server = createServer(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://page').pathname;
    if (req.method === 'POST' && path === '/upload-token') {
      const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {
        subject: SUBJECT,
        expires_in: 600,
      });
      res.writeHead(minted.status, { 'content-type': 'application/json' }).end(JSON.stringify(minted.body));
      return;
    }
    const body = files.get(path);
    if (req.method !== 'GET' || body === undefined) return void res.writeHead(404).end();
    const type = path.endsWith('.js') ? 'text/javascript' : 'text/html';
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  closePage = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
}

before(async () => {
  await mkdir(join(REPO, '.tmp'), { recursive: true });
  scratch = await mkdtemp(join(REPO, '.tmp', 'docs-browser-'));
  const tokenBlock = examples.find((e) => e.name === 'upload-token');
  assert.ok(tokenBlock, 'docs/integration.md has its uploadToken() example');
  const inject = join(scratch, 'preamble.js');
  await writeFile(inject, preamble(tokenBlock.code));
  files.set('/', PAGE);
  for (const [i, example] of examples.entries()) {
    assert.ok(
      example.name in EPILOGUES,
      `${example.file}:${example.line}: no harness for browser ${example.name}`,
    );
    files.set(`/example-${i}.js`, await bundle(example, inject));
  }
  await serveApp();
  w = await startWharf({ env: { WHARF_CORS_ORIGINS: origin } });
  if (onS3(w)) await allowOriginOnBucket(w, origin, ['GET', 'PUT', 'POST', 'DELETE']);
  browser = await launchChromium();
  page = await browser.newPage();
  page.on('pageerror', (err) => problems.push(err.message));
  await page.goto(`${origin}/`);
});

after(async () => {
  await browser?.close();
  await w?.close();
  await closePage?.();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function mintToken(): Promise<string> {
  const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', { subject: SUBJECT, expires_in: 600 });
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  return minted.body.secret;
}

/** Wharf's asset of an upload its storage key names, once complete (on S3, the reconcile job completes it). */
async function assetOfKey(key: string): Promise<string> {
  const id = /^[^/]+\/([^/.]+)(\.[a-z0-9]+)?$/.exec(key)?.[1];
  assert.ok(id, `a key of Wharf's: ${key}`);
  for (let attempt = 0; attempt < 10; attempt++) {
    const res: JsonResponse<{ status: string; asset_id: string }> = await api(
      w.url,
      w.key,
      'GET',
      `/v1/uploads/${id}`,
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    if (res.body.status === 'completed') return res.body.asset_id;
    w.clock.advance(60_000);
    await w.wharf.core.jobs.drain();
  }
  assert.fail(`upload ${id} never completed`);
}

async function assertHeld(assetId: string, text: string, name: string): Promise<void> {
  const asset = await api(w.url, w.key, 'GET', `/v1/assets/${assetId}`);
  assert.equal(asset.status, 200, JSON.stringify(asset.body));
  assert.equal(asset.body.sha256, sha256Hex(text), 'Wharf holds the file the page sent');
  assert.equal(asset.body.name, name);
  assert.equal(asset.body.subject, SUBJECT, "the upload token's user");
}

/** What each example's outcome must show, in Wharf. */
// biome-ignore lint/suspicious/noExplicitAny: each example reports an outcome of its own shape
const CHECKS: Record<string, (outcome: any, text: string, name: string) => Promise<void>> = {
  async 'upload-token'(outcome) {
    assert.match(outcome.secret, /^wharf_ut_/);
  },
  async 'tus-js-client'(outcome, text, name) {
    await assertHeld(outcome.assetId, text, name);
  },
  async 'uppy-sign-request'(outcome, text, name) {
    assert.deepEqual(outcome.errors, []);
    assert.equal(outcome.keys.length, 1);
    await assertHeld(await assetOfKey(outcome.keys[0]), text, name);
  },
  async 'uppy-6-page'(outcome, text, name) {
    assert.deepEqual(outcome.errors, []);
    assert.equal(outcome.keys.length, 1);
    const assetId = await assetOfKey(outcome.keys[0]);
    await assertHeld(assetId, text, name);
    assert.deepEqual(
      outcome.uploadIds,
      [/^[^/]+\/([^/.]+)/.exec(outcome.keys[0])?.[1]],
      'the upload id it signed for',
    );
    // The page's own look at Wharf (GET /v1/uploads/{id}) finds the asset too.
    const kept = await page.evaluate(() => {
      const g = globalThis as unknown as {
        exampleUntil: (check: () => unknown) => Promise<{ args: string[] }>;
        exampleLog: { args: string[] }[];
      };
      return g.exampleUntil(() => g.exampleLog.find((e) => e.args[0] === 'kept'));
    });
    assert.deepEqual(kept.args, ['kept', name, assetId]);
  },
  async 'direct-upload'(outcome, text, name) {
    const blob = await api(w.url, w.key, 'GET', `/api/v1/upload/blobs/${outcome.signedId}`);
    assert.equal(blob.status, 200, JSON.stringify(blob.body));
    assert.equal(blob.body.filename, name);
    assert.equal(blob.body.byte_size, Buffer.byteLength(text));
    const listed = await api(w.url, w.key, 'GET', '/v1/assets?limit=1000');
    const asset = listed.body.data.find((a: { number: number }) => a.number === blob.body.id);
    assert.ok(asset, 'the blob is an asset');
    await assertHeld(asset.id, text, name);
  },
  async 'uppy-5-callbacks'(outcome, text, name) {
    assert.deepEqual(
      outcome.listed.map((p: { PartNumber: number; Size: number }) => [p.PartNumber, p.Size]),
      [[1, Buffer.byteLength(text)]],
      'listParts answers as Uppy expects: [{PartNumber, Size, ETag}]',
    );
    await assertHeld(outcome.assetId, text, name);
    const aborted = await api(w.url, w.key, 'GET', `/v1/uploads/${outcome.aborted}`);
    assert.notEqual(aborted.body.status, 'pending', JSON.stringify(aborted.body));
  },
  async placeholder(outcome) {
    assert.match(outcome.background, /url\("data:image\/png;base64,/);
    assert.match(outcome.background, /rgb\(/, "the placeholder's colour");
    assert.equal(outcome.width, 64, 'the signed rendering loaded');
  },
};

test('every browser example of docs/ runs in one page and its upload is held by Wharf', {
  timeout: 240_000,
}, async () => {
  // An image, processed, for the placeholder example, and its signed rendering.
  const png = await sharp(randomBytes(96 * 64 * 3), { raw: { width: 96, height: 64, channels: 3 } })
    .png()
    .toBuffer();
  const uploaded = await fetch(`${w.url}/v1/assets?name=page-photo.png`, {
    method: 'POST',
    headers: { 'x-api-key': w.key, 'content-type': 'image/png' },
    body: new Uint8Array(png),
  });
  const photo = (await uploaded.json()).asset;
  await w.wharf.core.jobs.drain();
  const asset = (await api(w.url, w.key, 'GET', `/v1/assets/${photo.id}`)).body;
  assert.ok(asset.analysis?.placeholder, JSON.stringify(asset));
  const rendering = await api(w.url, w.key, 'POST', `/v1/assets/${photo.id}/image-url`, {
    w: 64,
    format: 'png',
  });
  assert.equal(rendering.status, 200, JSON.stringify(rendering.body));

  for (const [i, example] of examples.entries()) {
    const where = `${example.file}:${example.line} (${example.name})`;
    const name = `example-${i}.txt`;
    const text = `${where}: ${randomBytes(16).toString('hex')}\n`;
    const context = {
      wharf: w.url,
      token: await mintToken(),
      name,
      type: 'text/plain',
      text,
      asset,
      signedRenderingUrl: rendering.body.url,
    };
    const outcome = await page
      .evaluate(
        async ({ context, url }) => {
          const g = globalThis as unknown as { exampleContext: unknown; exampleLog: unknown[] };
          g.exampleContext = context;
          g.exampleLog.length = 0;
          return (await import(url)).outcome;
        },
        { context, url: `${origin}/example-${i}.js` },
      )
      .catch((err: Error) => assert.fail(`${where} failed in the page: ${err.message}`));
    await CHECKS[example.name]!(outcome, text, name).catch((err: Error) => {
      err.message = `${where}: ${err.message}`;
      throw err;
    });
  }
  assert.deepEqual(problems, []);
});
