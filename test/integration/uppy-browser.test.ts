import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { pseudoRandomBytes } from '../fixtures/uppy/bytes.js';
import type { TusOptions, TusOutcome, UploadOptions, UploadOutcome } from '../fixtures/uppy/page.js';
import { launchChromium, type PageServer, serveBundledPage } from '../helpers/browser.js';
import { allowOriginOnBucket, onS3 } from '../helpers/deployment.js';
import { api } from '../helpers/http.js';
import { Receiver } from '../helpers/receiver.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// Uppy 6 (@uppy/core and @uppy/aws-s3, unchanged from npm) in Debian's Chromium, on a page of
// another origin than Wharf's, signing every S3 request through POST /v1/s3/sign. The bytes
// go where the signed URLs point: Wharf's own /s3 endpoint on the embedded deployment, the
// bucket when Wharf stores on S3. And tus-js-client (unchanged from npm) on the same page. The
// page is given only an upload token, as an app's back end would mint it; never an API key.
// Every CORS preflight is the browser's own. The app's back end hears of every upload through a
// signed webhook, verified with the `standardwebhooks` library.

const MiB = 1024 * 1024;
/** A client that stalls (as Uppy did at 100% without ETag exposed) fails the test, not the run. */
const STALLED = { timeout: 120_000 };
const PAGE_SOURCE = fileURLToPath(new URL('../fixtures/uppy/page.ts', import.meta.url));

let page: PageServer;
let w: TestWharf;
let browser: Browser;
/** The only credential the page has. */
let token: string;
const SUBJECT = 'page-user-7';
/** The app's back end: its webhook endpoint. */
let receiver: Receiver;

before(async () => {
  page = await serveBundledPage(PAGE_SOURCE);
  w = await startWharf({ env: { WHARF_CORS_ORIGINS: page.origin, WHARF_WEBHOOK_ALLOW_PRIVATE: 'true' } });
  ({ receiver } = await Receiver.subscribed(w.url, w.key, ['upload.completed']));
  // On S3 the browser sends the signed requests to the bucket, which must allow the page's
  // origin itself and expose ETag, as the @uppy/aws-s3 documentation has every bucket do.
  if (onS3(w)) await allowOriginOnBucket(w, page.origin, ['GET', 'PUT', 'POST', 'DELETE']);
  const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {
    subject: SUBJECT,
    expires_in: 7200,
    content_types: ['application/octet-stream', 'video/*', 'image/*'],
    max_files: 10,
  });
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  token = minted.body.secret;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await w?.close();
  await receiver?.close();
  await page?.close();
});

async function onPage<T>(work: (tab: import('playwright-core').Page) => Promise<T>): Promise<T> {
  const context = await browser.newContext();
  try {
    const tab = await context.newPage();
    await tab.goto(`${page.origin}/`);
    await tab.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
    return await work(tab);
  } finally {
    await context.close();
  }
}

function uploadFromPage(options: Omit<UploadOptions, 'wharf' | 'token'>): Promise<UploadOutcome> {
  return onPage((tab) =>
    tab.evaluate(
      (opts) =>
        (window as unknown as { uppyUpload: (o: UploadOptions) => Promise<UploadOutcome> }).uppyUpload(opts),
      { ...options, wharf: w.url, token },
    ),
  );
}

function tusFromPage(options: Omit<TusOptions, 'wharf' | 'token'>): Promise<TusOutcome> {
  return onPage((tab) =>
    tab.evaluate(
      (opts) => (window as unknown as { tusUpload: (o: TusOptions) => Promise<TusOutcome> }).tusUpload(opts),
      { ...options, wharf: w.url, token },
    ),
  );
}

interface UploadState {
  id: string;
  status: string;
  asset_id: string | null;
}

/**
 * The upload a storage key belongs to (keys are `<account>/<upload id><.ext>`). Wharf's own
 * endpoint completes it when the last request arrives; with S3, the page tells Wharf nothing,
 * so Wharf's reconcile job looks at the bucket: the test moves the clock to when it is due.
 */
async function completedUpload(key: string): Promise<UploadState> {
  const id = /^[^/]+\/([^/.]+)(\.[a-z0-9]+)?$/.exec(key)?.[1];
  assert.ok(id, `a key of Wharf's: ${key}`);
  const read = async () => {
    const res = await api<UploadState>(w.url, w.key, 'GET', `/v1/uploads/${id}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body;
  };
  let state = await read();
  if (onS3(w)) {
    for (let attempt = 0; state.status === 'pending' && attempt < 10; attempt += 1) {
      w.clock.advance(60_000);
      await w.wharf.core.jobs.drain();
      state = await read();
    }
  }
  assert.equal(state.status, 'completed', JSON.stringify(state));
  return state;
}

async function assertAsset(
  state: Pick<UploadState, 'asset_id'>,
  name: string,
  bytes: Uint8Array,
): Promise<void> {
  assert.ok(state.asset_id);
  const asset = await api(w.url, w.key, 'GET', `/v1/assets/${state.asset_id}`);
  assert.equal(asset.body.subject, SUBJECT, "the token's user is recorded on the asset");
  assert.equal(asset.status, 200, JSON.stringify(asset.body));
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  assert.equal(asset.body.sha256, sha256, 'the asset is the file the page made, byte for byte');
  assert.equal(asset.body.size, bytes.length);
  assert.equal(asset.body.name, name, "the file's name, without Uppy's key prefix");
  const content = await fetch(`${w.url}/v1/assets/${state.asset_id}/content`, {
    headers: { 'x-api-key': w.key },
  });
  assert.equal(content.status, 200);
  const downloaded = createHash('sha256');
  for await (const chunk of content.body!) downloaded.update(chunk);
  assert.equal(downloaded.digest('hex'), sha256, 'and it downloads as such');

  // The back end was told, by a delivery it can verify, which of its users uploaded what.
  await w.wharf.core.jobs.drain();
  const told = receiver.accepted.filter(
    (d) => d.payload?.type === 'upload.completed' && d.payload.data.asset?.id === state.asset_id,
  );
  assert.equal(told.length, 1, 'one verified upload.completed webhook for this upload');
  assert.equal(told[0]!.payload!.data.asset.subject, SUBJECT);
  assert.equal(told[0]!.payload!.data.asset.sha256, sha256);
  assert.deepEqual(receiver.invalid, []);
}

test('Uppy 6 uploads a file with one presigned PUT; the asset has its SHA-256', STALLED, async () => {
  const options = {
    multipart: false,
    name: 'notes.bin',
    type: 'application/octet-stream',
    size: 3 * MiB + 17,
    seed: 7,
  };
  const outcome = await uploadFromPage(options);
  assert.deepEqual(outcome.errors, []);
  assert.equal(outcome.successes.length, 1);
  assert.deepEqual(
    outcome.signed.map((r) => r.method),
    ['PUT'],
    'one PutObject, no multipart steps',
  );
  const state = await completedUpload(outcome.successes[0]!.key);
  await assertAsset(state, options.name, pseudoRandomBytes(options.size, options.seed));
});

test(
  'Uppy 6 uploads a 12 MiB file in three 5 MiB-sized parts; the asset has its SHA-256',
  STALLED,
  async () => {
    const options = {
      multipart: true,
      name: 'video.mp4',
      type: 'video/mp4',
      size: 12 * MiB + 123,
      seed: 2024,
      chunkSize: 5 * MiB,
    };
    const outcome = await uploadFromPage(options);
    assert.deepEqual(outcome.errors, []);
    assert.equal(outcome.successes.length, 1);
    assert.equal(outcome.partsUploaded, 3);
    const steps = outcome.signed.map((r) => `${r.method}${r.partNumber ? ` part ${r.partNumber}` : ''}`);
    assert.equal(steps[0], 'POST', 'CreateMultipartUpload first');
    assert.equal(steps.at(-1), 'POST', 'CompleteMultipartUpload last');
    assert.deepEqual(steps.slice(1, -1).sort(), ['PUT part 1', 'PUT part 2', 'PUT part 3']);
    const uploadIds = new Set(outcome.signed.slice(1).map((r) => r.uploadId));
    assert.equal(uploadIds.size, 1, 'every later step names the one multipart upload');
    const key = outcome.successes[0]!.key;
    assert.ok(
      outcome.signed.slice(1).every((r) => r.key === key),
      "the parts go to Wharf's key, which the sign endpoint chose",
    );
    const state = await completedUpload(key);
    await assertAsset(state, options.name, pseudoRandomBytes(options.size, options.seed));
  },
);

test(
  'tus-js-client uploads a file in two PATCHes with only the token; the asset has its SHA-256',
  STALLED,
  async () => {
    const options = {
      name: 'scan.png',
      type: 'image/png',
      size: 6 * MiB + 321,
      seed: 99,
      chunkSize: 5 * MiB,
    };
    const outcome = await tusFromPage(options);
    assert.equal(outcome.error, null);
    assert.equal(outcome.patches, 2);
    assert.ok(outcome.assetId, 'Wharf-Asset-Id is readable by the page (exposed)');
    await assertAsset(
      { asset_id: outcome.assetId },
      options.name,
      pseudoRandomBytes(options.size, options.seed),
    );
  },
);

test('the token does not let the page read anything but its own uploads', STALLED, async () => {
  const other = await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'server-side.bin', size: 1 });
  const answers = await onPage((tab) =>
    tab.evaluate(
      async ({ wharf, secret, id }) => {
        // No named functions here: the test's compiler would wrap them in a helper the page lacks.
        const answers: unknown[] = [];
        for (const path of ['/v1/assets', `/v1/uploads/${id}`, '/v1/keys']) {
          const res = await fetch(`${wharf}${path}`, { headers: { authorization: `Bearer ${secret}` } });
          answers.push([
            res.status,
            ((await res.json()) as { error?: { code: string } }).error?.code ?? null,
          ]);
        }
        return answers;
      },
      { wharf: w.url, secret: token, id: other.body.id as string },
    ),
  );
  assert.deepEqual(answers, [
    [403, 'SCOPE_DENIED'],
    [404, 'NOT_FOUND'],
    [403, 'FORBIDDEN'],
  ]);
});
