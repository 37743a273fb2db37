import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import sharp from 'sharp';
import { launchChromium } from '../helpers/browser.js';
import { api, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// Seed 002 from a real browser: Rails' own ActiveStorage DirectUpload client (npm
// @rails/activestorage, unchanged) against /api/v1/upload/direct, in Debian's Chromium.

const ESM = 'node_modules/@rails/activestorage/app/assets/javascripts/activestorage.esm.js';

let w: TestWharf;
let browser: Browser;
before(async () => {
  w = await startWharf();
  if (w.backingEnv.WHARF_STORAGE === 's3') await allowBrowserPuts(w);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await w?.close();
});

/**
 * With an S3 store the browser PUTs to the bucket, another origin: the bucket must allow it
 * (CORS), as every ActiveStorage deployment on S3 configures; the PUT's response carries the
 * bucket's Access-Control-Allow-Origin. (The preflight itself never reaches the store: with
 * routes set, Playwright answers preflights. Ceph 16 could not anyway: it checks a presigned
 * URL's signature on the OPTIONS, fixed upstream in ceph/ceph#55458.)
 */
async function allowBrowserPuts(server: TestWharf): Promise<void> {
  const { S3Client, PutBucketCorsCommand } = await import('@aws-sdk/client-s3');
  const env = server.backingEnv;
  const s3 = new S3Client({
    endpoint: env.WHARF_S3_ENDPOINT,
    region: env.WHARF_S3_REGION,
    forcePathStyle: true,
    credentials: {
      accessKeyId: env.WHARF_S3_ACCESS_KEY_ID!,
      secretAccessKey: env.WHARF_S3_SECRET_ACCESS_KEY!,
    },
  });
  try {
    await s3.send(
      new PutBucketCorsCommand({
        Bucket: env.WHARF_S3_BUCKET,
        CORSConfiguration: {
          CORSRules: [
            {
              AllowedOrigins: [server.url],
              AllowedMethods: ['PUT'],
              AllowedHeaders: ['*'],
              MaxAgeSeconds: 60,
            },
          ],
        },
      }),
    );
  } finally {
    s3.destroy();
  }
}

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
  window.ready = true;
</script>
</body></html>`;

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
