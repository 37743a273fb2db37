import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import sharp from 'sharp';
import { launchChromium, type PageServer, servePage } from '../helpers/browser.js';
import { allowOriginOnBucket, onS3 } from '../helpers/deployment.js';
import { api, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// Seed 002 from a real browser: Rails' own ActiveStorage DirectUpload client (npm
// @rails/activestorage, unchanged) against /api/v1/upload/direct, in Debian's Chromium.

const ESM = 'node_modules/@rails/activestorage/app/assets/javascripts/activestorage.esm.js';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>direct upload</title></head>
<body>
<script type="module">
  import { DirectUpload } from './activestorage.esm.js';
  window.directUpload = (base64, name, type, key) => new Promise((resolve) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const file = new File([bytes], name, { type });
    const events = [];
    const delegate = {
      directUploadWillCreateBlobWithXHR: () => events.push('create'),
      directUploadWillStoreFileWithXHR: () => events.push('store'),
    };
    new DirectUpload(file, '/api/v1/upload/direct', delegate, { 'x-api-key': key })
      .create((error, blob) => resolve({ error: error ?? null, blob: blob ?? null, events }));
  });
  // From another origin: Wharf's absolute URL, and an upload token as the bearer.
  window.directUploadTo = (wharf, base64, name, type, token) => new Promise((resolve) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const file = new File([bytes], name, { type });
    new DirectUpload(file, wharf + '/api/v1/upload/direct', {}, { Authorization: 'Bearer ' + token })
      .create((error, blob) => resolve({ error: error ? String(error) : null, blob: blob ?? null }));
  });
  window.ready = true;
</script>
</body></html>`;

let w: TestWharf;
let browser: Browser;
/** An app's page on another origin than Wharf's (see the cross-origin test). */
let app: PageServer;
before(async () => {
  app = await servePage({
    '/': { type: 'text/html', body: PAGE },
    '/activestorage.esm.js': { type: 'text/javascript', body: await readFile(ESM, 'utf8') },
  });
  w = await startWharf({ env: { WHARF_CORS_ORIGINS: app.origin } });
  // With an S3 store the browser PUTs to the bucket, another origin, which must allow it
  // (as every ActiveStorage deployment on S3 configures).
  if (onS3(w)) {
    await allowOriginOnBucket(w, w.url, ['PUT']);
  }
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await w?.close();
  await app?.close();
});

test('Rails’ DirectUpload client uploads a file unchanged; the asset has the right SHA-256', async () => {
  const esm = await readFile(ESM, 'utf8');
  // A page fulfilled by the test has no address, so Chromium counts it as public and asks
  // permission before it reaches a loopback address of another origin (the object store on
  // the scaled deployment); a real page and bucket are both public and never ask.
  const context = await browser.newContext({ permissions: ['local-network-access'] });
  try {
    const page = await context.newPage();
    // The page and the client script are served on Wharf's own origin (the test provides
    // them; Wharf has no such route), so its requests to Wharf are same-origin.
    await page.route(`${w.url}/__test__/**`, (route) => {
      const path = new URL(route.request().url()).pathname;
      if (path.endsWith('/page.html')) {
        return route.fulfill({ status: 200, contentType: 'text/html', body: PAGE });
      }
      if (path.endsWith('/activestorage.esm.js')) {
        return route.fulfill({ status: 200, contentType: 'text/javascript', body: esm });
      }
      return route.fulfill({ status: 404, body: '' });
    });
    await page.goto(`${w.url}/__test__/page.html`);
    await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);

    const image = await sharp({
      create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 30, b: 90 } },
    })
      .jpeg()
      .toBuffer();
    const result = await page.evaluate(
      ([b64, key]) =>
        (
          window as unknown as {
            directUpload: (b: string, n: string, t: string, k: string) => Promise<unknown>;
          }
        ).directUpload(b64, 'photo.jpg', 'image/jpeg', key),
      [image.toString('base64'), w.key] as const,
    );
    const { error, blob, events } = result as {
      error: string | null;
      blob: Record<string, unknown> | null;
      events: string[];
    };
    assert.equal(error, null);
    assert.deepEqual(events, ['create', 'store'], 'the client created the blob, then stored the file');
    assert.ok(blob);
    assert.equal(blob.filename, 'photo.jpg');
    assert.equal(blob.content_type, 'image/jpeg');
    assert.equal(blob.byte_size, image.length);
    assert.equal(blob.checksum, createHash('md5').update(image).digest('base64'), 'spark-md5’s checksum');
    assert.equal(typeof blob.signed_id, 'string');
    assert.ok(Number.isInteger(blob.id));

    // The client is done; on S3 nothing told Wharf, so the record lookup (or the sweep) completes it.
    const record = await api(w.url, w.key, 'GET', `/api/v1/upload/blobs/${blob.signed_id}`);
    assert.equal(record.status, 200);
    assert.equal(record.body.id, blob.id);
    const list = await api(w.url, w.key, 'GET', '/v1/assets?limit=1000');
    const asset = (list.body.data as { number: number; sha256: string; name: string; size: number }[]).find(
      (a) => a.number === blob.id,
    );
    assert.ok(asset, 'the asset is visible through the native API');
    assert.equal(asset.sha256, sha256Hex(image));
    assert.equal(asset.name, 'photo.jpg');
    assert.equal(asset.size, image.length);
  } finally {
    await context.close();
  }
});

test('from another origin, with only an upload token: the preflight allows X-Requested-With', async () => {
  // The bucket must let the app's page PUT too (on the embedded deployment Wharf answers it).
  if (onS3(w)) await allowOriginOnBucket(w, app.origin, ['PUT']);
  const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {
    subject: 'rails-user-1',
    content_types: ['image/*'],
    max_files: 1,
  });
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${app.origin}/`);
    await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
    const image = await sharp({
      create: { width: 40, height: 30, channels: 3, background: { r: 10, g: 120, b: 200 } },
    })
      .png()
      .toBuffer();
    const result = (await page.evaluate(
      ([wharf, b64, secret]) =>
        (
          window as unknown as {
            directUploadTo: (w: string, b: string, n: string, t: string, s: string) => Promise<unknown>;
          }
        ).directUploadTo(wharf, b64, 'avatar.png', 'image/png', secret),
      [w.url, image.toString('base64'), minted.body.secret] as const,
    )) as { error: string | null; blob: Record<string, unknown> | null };
    // Rails' client sends X-Requested-With (and JSON) with the blob it creates: a preflight that
    // Wharf must answer, or the client fails before it starts.
    assert.equal(result.error, null);
    assert.ok(result.blob);
    assert.equal(result.blob.filename, 'avatar.png');

    const record = await api(w.url, w.key, 'GET', `/api/v1/upload/blobs/${result.blob.signed_id}`);
    assert.equal(record.status, 200, JSON.stringify(record.body));
    const list = await api(w.url, w.key, 'GET', '/v1/assets?limit=1000');
    const asset = (list.body.data as { number: number; sha256: string; subject: string | null }[]).find(
      (a) => a.number === result.blob!.id,
    );
    assert.ok(asset, 'the asset is visible through the native API');
    assert.equal(asset.sha256, sha256Hex(image));
    assert.equal(asset.subject, 'rails-user-1');

    // The token's one file is used: a second blob is refused in the route's own error shape.
    const again = (await page.evaluate(
      ([wharf, b64, secret]) =>
        (
          window as unknown as {
            directUploadTo: (w: string, b: string, n: string, t: string, s: string) => Promise<unknown>;
          }
        ).directUploadTo(wharf, b64, 'second.png', 'image/png', secret),
      [w.url, Buffer.from('not really a png').toString('base64'), minted.body.secret] as const,
    )) as { error: string | null };
    assert.match(String(again.error), /Status: 403/);
  } finally {
    await context.close();
  }
});
