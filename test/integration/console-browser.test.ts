import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { pseudoRandomBytes } from '../fixtures/uppy/bytes.js';
import { launchChromium } from '../helpers/browser.js';
import { buildConsoleForTest, signIn } from '../helpers/console.js';
import { api } from '../helpers/http.js';
import { Receiver } from '../helpers/receiver.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// The web console in Debian's Chromium, driven like a person: real clicks and keys, files
// dropped onto Uppy's Dashboard (a drop event whose DataTransfer holds the files) or picked in
// the file chooser, real tus uploads (one cut off mid-way and resumed), on one server per
// deployment. WHARF_SCREENSHOTS=1 saves the screenshots to docs/images/console-*.png (the
// documentation's); otherwise they go to a temporary directory.

const MiB = 1024 * 1024;
const SLOW = { timeout: 180_000 };
const SHOTS = process.env.WHARF_SCREENSHOTS
  ? fileURLToPath(new URL('../../docs/images/', import.meta.url))
  : await mkdtemp(join(tmpdir(), 'wharf-console-shots-'));

let w: TestWharf;
let built: Awaited<ReturnType<typeof buildConsoleForTest>>;
let browser: Browser;
let receiver: Receiver;
let png: Buffer;

/** An SVG that would run a script (and call alert) if a page ever rendered it. */
const SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" onload="alert('svg onload')">
<script>alert('svg script'); console.log('svg ran')</script><rect width="40" height="40" fill="red"/></svg>`;

before(async () => {
  built = await buildConsoleForTest();
  receiver = await Receiver.start();
  w = await startWharf({ consoleDir: built.dir, env: { WHARF_WEBHOOK_ALLOW_PRIVATE: 'true' } });
  browser = await launchChromium();
  png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#2a7' } })
    .png()
    .toBuffer();
  await mkdir(SHOTS, { recursive: true });
});
after(async () => {
  await browser?.close();
  await w?.close();
  await receiver?.close();
  await built?.remove();
  if (!process.env.WHARF_SCREENSHOTS) await rm(SHOTS, { recursive: true, force: true });
});

const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `console-${name}.png`) });

/** A fresh browser profile (no cookie), its page watched for dialogs and console messages. */
async function openConsole(
  options: { viewport?: { width: number; height: number }; isMobile?: boolean } = {},
) {
  const context = await browser.newContext({
    viewport: options.viewport ?? { width: 1280, height: 860 },
    isMobile: options.isMobile ?? false,
    permissions: ['clipboard-read', 'clipboard-write'],
  });
  const page = await context.newPage();
  const dialogs: string[] = [];
  const messages: string[] = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });
  page.on('console', (message) => messages.push(`${message.type()}: ${message.text()}`));
  await page.goto(`${w.url}/`);
  return { context, page, dialogs, messages };
}

async function signInWith(page: Page, key: string): Promise<void> {
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Assets', level: 1 }).waitFor();
}

async function assetNamed(name: string): Promise<{ id: string; sha256: string; size: number }> {
  const res = await api(w.url, w.key, 'GET', `/v1/assets?prefix=${encodeURIComponent(name)}`);
  const found = res.body.data.find((a: { name: string }) => a.name === name);
  assert.ok(found, `an asset named ${name}`);
  return found;
}

/** Drops files onto the Dashboard as a drag from the desktop does: dragover, then drop, with the files in the DataTransfer. */
async function dropFiles(page: Page, files: { name: string; type: string; base64: string }[]): Promise<void> {
  const dataTransfer = await page.evaluateHandle((list) => {
    const transfer = new DataTransfer();
    for (const file of list) {
      const bytes = Uint8Array.from(atob(file.base64), (c) => c.charCodeAt(0));
      transfer.items.add(new File([bytes], file.name, { type: file.type }));
    }
    return transfer;
  }, files);
  const target = page.locator('.uppy-Dashboard');
  await target.dispatchEvent('dragenter', { dataTransfer });
  await target.dispatchEvent('dragover', { dataTransfer });
  await target.dispatchEvent('drop', { dataTransfer });
}

test(
  'sign in, drop files onto the Dashboard, upload them over tus; browse, filter, open, share, make public, delete',
  SLOW,
  async () => {
    const { context, page, dialogs, messages } = await openConsole();
    try {
      await page.getByLabel('API key').waitFor();
      await shot(page, 'signin');
      await signInWith(page, w.key);
      const stored = await page.evaluate(
        () => JSON.stringify({ ...localStorage, ...sessionStorage }) + document.cookie,
      );
      assert.ok(!stored.includes(w.key), 'the key is in no page storage, and the cookie is not readable');

      await page.getByRole('link', { name: 'Upload', exact: true }).click();
      await page.getByRole('heading', { name: 'Upload' }).waitFor();
      await dropFiles(page, [
        { name: 'green.png', type: 'image/png', base64: png.toString('base64') },
        { name: 'notes.txt', type: 'text/plain', base64: Buffer.from('dropped notes\n').toString('base64') },
        { name: 'evil.svg', type: 'image/svg+xml', base64: Buffer.from(SVG).toString('base64') },
      ]);
      await page.getByRole('button', { name: /Upload 3 files/ }).click();
      await page.getByText('3 uploaded.').waitFor({ timeout: 60_000 });
      await shot(page, 'upload');
      const green = await assetNamed('green.png');
      assert.equal(green.sha256, createHash('sha256').update(png).digest('hex'));
      const uploadedWith = await api(w.url, w.key, 'GET', `/v1/assets/${green.id}`);
      assert.deepEqual(
        uploadedWith.body.metadata,
        { source: 'wharf-console' },
        'through the console’s upload token',
      );
      await w.wharf.core.jobs.drain();

      // Browse: the grid shows the PNG's thumbnail, the filter narrows to images. Until the
      // thumbnail arrives (held back here), the tile shows the asset's placeholder.
      let release = () => {};
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      await page.route(
        (url) => url.pathname.endsWith(`/assets/${green.id}/image`),
        async (route) => {
          await held;
          await route.continue();
        },
      );
      const { color } = (await api(w.url, w.key, 'GET', `/v1/assets/${green.id}`)).body.analysis.placeholder;
      await page.getByRole('link', { name: 'Assets', exact: true }).click();
      const tile = page.getByRole('link', { name: /green\.png/ });
      await tile.waitFor();
      const thumb = tile.locator('img');
      const waiting = await thumb.evaluate((img: HTMLImageElement) => ({
        complete: img.complete && img.naturalWidth > 0,
        image: getComputedStyle(img).backgroundImage,
        color: getComputedStyle(img).backgroundColor,
      }));
      assert.equal(waiting.complete, false, 'the thumbnail is held back');
      assert.match(waiting.image, /^url\("data:image\/png;base64,/);
      const rgb = [1, 3, 5].map((i) => Number.parseInt(color.slice(i, i + 2), 16));
      assert.equal(waiting.color, `rgb(${rgb.join(', ')})`);
      release();
      await thumb.evaluate((img: HTMLImageElement) =>
        img.complete ? undefined : new Promise((resolve) => img.addEventListener('load', resolve)),
      );
      assert.ok(
        (await thumb.evaluate((img: HTMLImageElement) => img.naturalWidth)) === 64,
        'the thumbnail loaded',
      );
      // Loaded: the placeholder is gone, so a transparent picture does not show it through.
      await page.waitForFunction(
        (img) => getComputedStyle(img as HTMLImageElement).backgroundImage === 'none',
        await thumb.elementHandle(),
      );
      await shot(page, 'assets');
      await page.getByLabel('Type').selectOption('image/*');
      await page.getByRole('button', { name: 'Filter' }).click();
      // Text goes, images stay.
      await page.getByRole('link', { name: /notes\.txt/ }).waitFor({ state: 'detached' });
      await page.getByRole('link', { name: /evil\.svg/ }).waitFor();
      await page.getByLabel('Name starts with').fill('gre');
      await page.getByRole('button', { name: 'Filter' }).click();
      await page.getByRole('link', { name: /evil\.svg/ }).waitFor({ state: 'detached' });
      await page.getByRole('button', { name: 'List' }).click();
      await page.getByRole('cell', { name: 'image/png' }).waitFor();

      // Open: preview, dimensions from processing, checksums.
      await page.getByRole('link', { name: 'green.png' }).click();
      await page.getByRole('heading', { name: 'green.png' }).waitFor();
      await page.getByText('64 × 48').waitFor();
      await page.getByText(green.sha256).waitFor();
      await shot(page, 'asset');

      // A signed link, copied: it downloads the bytes without a session.
      await page.getByRole('button', { name: 'Copy signed link' }).click();
      await page.getByText('The signed link is copied.').waitFor();
      const copied = await page.evaluate(() => navigator.clipboard.readText());
      assert.equal(copied, await page.getByLabel(/Signed link/).inputValue());
      const signed = await fetch(copied);
      assert.equal(signed.status, 200);
      assert.equal(
        createHash('sha256')
          .update(Buffer.from(await signed.arrayBuffer()))
          .digest('hex'),
        green.sha256,
      );

      await page.getByRole('button', { name: 'Make public' }).click();
      await page.getByRole('button', { name: 'Make private' }).waitFor();
      assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${green.id}`)).body.access, 'public');

      // Delete asks first; Escape keeps the asset, the confirmation deletes it.
      await page.getByRole('button', { name: 'Delete', exact: true }).click();
      const confirm = page.getByRole('dialog', { name: 'Delete this asset?' });
      await confirm.waitFor();
      await page.keyboard.press('Escape');
      await confirm.waitFor({ state: 'hidden' });
      assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${green.id}`)).status, 200);
      await page.getByRole('button', { name: 'Delete', exact: true }).click();
      await page.getByRole('button', { name: 'Delete for good' }).click();
      await page.getByRole('heading', { name: 'Assets', level: 1 }).waitFor();
      assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${green.id}`)).status, 404);
      assert.deepEqual(dialogs, []);
      assert.deepEqual(
        messages.filter((m) => /Content Security Policy/i.test(m)),
        [],
        'the page works within its CSP',
      );
    } finally {
      await context.close();
    }
  },
);

test(
  'an SVG with a script, opened in the console, never runs: no preview, and its content is an attachment',
  SLOW,
  async () => {
    const svg = await assetNamed('evil.svg');
    const { context, page, dialogs, messages } = await openConsole();
    try {
      await signInWith(page, w.key);
      await page.goto(`${w.url}/console#/assets/${svg.id}`);
      await page.getByRole('heading', { name: 'evil.svg' }).waitFor();
      await page.getByText('No preview for image/svg+xml').waitFor();
      const embeds = await page.evaluate(
        (id) =>
          [...document.querySelectorAll('img, iframe, object, embed, video, audio')].filter((el) =>
            (el.getAttribute('src') ?? el.getAttribute('data') ?? '').includes(id),
          ).length,
        svg.id,
      );
      assert.equal(embeds, 0, 'nothing on the page loads the SVG');
      // What the download link answers: an attachment, sandboxed, never sniffed.
      const href = await page.getByRole('link', { name: 'Download' }).getAttribute('href');
      const content = await page.request.get(w.url + href);
      assert.equal(content.status(), 200);
      assert.match(content.headers()['content-disposition'] ?? '', /^attachment/);
      assert.equal(content.headers()['x-content-type-options'], 'nosniff');
      assert.match(content.headers()['content-security-policy'] ?? '', /sandbox/);
      // Even without ?download=true (the thumbnail's URL), an SVG is not served inline.
      const plain = await page.request.get(`${w.url}/console/api/v1/assets/${svg.id}/content`);
      assert.match(plain.headers()['content-disposition'] ?? '', /^attachment/);
      // Clicking the link downloads the file; nothing is rendered on Wharf's origin.
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('link', { name: 'Download' }).click(),
      ]);
      assert.equal(download.suggestedFilename(), 'evil.svg');
      await page.getByRole('heading', { name: 'evil.svg' }).waitFor();
      assert.deepEqual(dialogs, [], 'no alert ran');
      assert.deepEqual(
        messages.filter((m) => m.includes('svg')),
        [],
        'the SVG logged nothing',
      );
    } finally {
      await context.close();
    }
  },
);

test(
  'an upload cut off mid-way (the network goes away) resumes where it stopped when it comes back; one given up on resumes on Retry',
  SLOW,
  async () => {
    const { context, page } = await openConsole();
    try {
      await signInWith(page, w.key);
      await page.getByRole('link', { name: 'Upload', exact: true }).click();
      const seen: { method: string; offset: string | undefined }[] = [];
      let patches = 0;
      const tus = (url: URL) => url.pathname.startsWith('/v1/tus/');
      await page.route(tus, async (route) => {
        const request = route.request();
        seen.push({ method: request.method(), offset: request.headers()['upload-offset'] });
        if (request.method() === 'PATCH' && ++patches === 2) {
          // The second chunk never arrives: the network is gone.
          await context.setOffline(true);
          await route.abort('internetdisconnected');
          return;
        }
        await route.continue();
      });
      const size = 12 * MiB + 7;
      const bytes = Buffer.from(pseudoRandomBytes(size, 4242));
      const [chooser] = await Promise.all([
        page.waitForEvent('filechooser'),
        page.getByRole('button', { name: 'browse files' }).click(),
      ]);
      await chooser.setFiles({ name: 'big.bin', mimeType: 'application/octet-stream', buffer: bytes });
      // Every "N uploaded." the page shows, in order.
      await page.evaluate(() => {
        const shown: string[] = [];
        (window as unknown as { uploaded: string[] }).uploaded = shown;
        new MutationObserver(() => {
          for (const el of document.querySelectorAll('p.notice[role="status"]')) {
            const text = el.textContent ?? '';
            if (/uploaded/.test(text) && shown.at(-1) !== text) shown.push(text);
          }
        }).observe(document.body, { subtree: true, childList: true, characterData: true });
      });
      await page.getByRole('button', { name: /Upload 1 file/ }).click();
      // Cut: Uppy says the browser is offline and holds the upload until it is back online.
      await page.getByText('No Internet connection').first().waitFor({ timeout: 60_000 });
      await context.setOffline(false);
      await page.getByText('1 uploaded.').waitFor({ timeout: 120_000 });
      assert.deepEqual(
        await page.evaluate(() => (window as unknown as { uploaded: string[] }).uploaded),
        ['1 uploaded. See the assets'],
        'no "0 uploaded." on the way (coming back online retried nothing)',
      );
      const asset = await assetNamed('big.bin');
      assert.equal(asset.size, size);
      assert.equal(asset.sha256, createHash('sha256').update(bytes).digest('hex'));
      // The request after the second PATCH (the one cut off).
      const cut = seen.indexOf(seen.filter((r) => r.method === 'PATCH')[1]!);
      const after = seen.slice(cut + 1);
      assert.equal(after[0]?.method, 'HEAD', `it asked where to resume: ${JSON.stringify(seen)}`);
      const resumed = after.find((r) => r.method === 'PATCH');
      assert.equal(resumed?.offset, String(5 * MiB), 'and went on from the first chunk, not from zero');
      assert.equal(
        seen.filter((r) => r.method === 'POST').length,
        1,
        'one upload, resumed, not a second one',
      );
      await page.unroute(tus);

      // Given up on (a chunk refused, as when the retries run out while the server is down) and
      // retried with the Dashboard's Retry: the same upload goes on, with the same upload token.
      await page.getByRole('link', { name: 'Assets', exact: true }).click();
      await page.getByRole('link', { name: 'Upload', exact: true }).click();
      const requests: { method: string; path: string; offset: string | undefined }[] = [];
      page.on('request', (request) => {
        const { pathname } = new URL(request.url());
        if (pathname.startsWith('/v1/tus/') || pathname === '/console/api/upload-token') {
          requests.push({
            method: request.method(),
            path: pathname,
            offset: request.headers()['upload-offset'],
          });
        }
      });
      let refused = 0;
      await page.route(tus, (route) =>
        route.request().method() === 'PATCH' &&
        route.request().headers()['upload-offset'] !== '0' &&
        ++refused === 1
          ? route.fulfill({ status: 400, body: 'refused once' })
          : route.continue(),
      );
      const again = Buffer.from(pseudoRandomBytes(5 * MiB + 11, 77));
      const [picker] = await Promise.all([
        page.waitForEvent('filechooser'),
        page.getByRole('button', { name: 'browse files' }).click(),
      ]);
      await picker.setFiles({ name: 'retried.bin', mimeType: 'application/octet-stream', buffer: again });
      await page.getByRole('button', { name: /Upload 1 file/ }).click();
      const retry = page.locator('.uppy-StatusBar').getByRole('button', { name: 'Retry upload' });
      await retry.waitFor({ timeout: 60_000 });
      const beforeRetry = requests.length;
      await retry.click();
      await page.getByText('1 uploaded.').waitFor({ timeout: 60_000 });
      const retried = await assetNamed('retried.bin');
      assert.equal(retried.sha256, createHash('sha256').update(again).digest('hex'));
      const afterRetry = requests.slice(beforeRetry);
      const log = JSON.stringify(requests);
      assert.equal(
        requests.filter((r) => r.path === '/console/api/upload-token').length,
        1,
        `one upload token for the file, its retry too: ${log}`,
      );
      assert.equal(afterRetry[0]?.method, 'HEAD', `the retry asked where to resume: ${log}`);
      assert.equal(
        afterRetry.find((r) => r.method === 'PATCH')?.offset,
        String(5 * MiB),
        `and went on from the first chunk: ${log}`,
      );
      assert.equal(
        requests.filter((r) => r.method === 'POST' && r.path.startsWith('/v1/tus/')).length,
        1,
        `one upload made: ${log}`,
      );
      const pending = await api(w.url, w.key, 'GET', '/v1/uploads?status=pending&limit=100');
      assert.deepEqual(
        pending.body.data.filter((u: { name: string }) => u.name === 'retried.bin'),
        [],
        'no second upload left pending',
      );
      await page.unroute(tus);

      // No upload token to be had (the server away as the upload starts): the Dashboard's Retry
      // asks for one again and uploads.
      await page.getByRole('link', { name: 'Assets', exact: true }).click();
      await page.getByRole('link', { name: 'Upload', exact: true }).click();
      const tokenUrl = (url: URL) => url.pathname === '/console/api/upload-token';
      let tokenAsks = 0;
      await page.route(tokenUrl, (route) => (++tokenAsks === 1 ? route.abort('failed') : route.continue()));
      const [third] = await Promise.all([
        page.waitForEvent('filechooser'),
        page.getByRole('button', { name: 'browse files' }).click(),
      ]);
      await third.setFiles({
        name: 'no-token-first.txt',
        mimeType: 'text/plain',
        buffer: Buffer.from('later'),
      });
      await page.getByRole('button', { name: /Upload 1 file/ }).click();
      await page.getByText('No upload token to upload with').first().waitFor({ timeout: 30_000 });
      await page.locator('.uppy-StatusBar').getByRole('button', { name: 'Retry upload' }).click();
      await page.getByText('1 uploaded.').waitFor({ timeout: 60_000 });
      assert.equal(tokenAsks, 2, 'the retry asked for a token again');
      assert.equal((await assetNamed('no-token-first.txt')).size, 5);
    } finally {
      await context.close();
    }
  },
);

test('a folder picked in the Dashboard uploads every file in it, subfolders included', SLOW, async () => {
  const folder = await mkdtemp(join(tmpdir(), 'wharf-console-folder-'));
  try {
    await mkdir(join(folder, 'album', 'day-2'), { recursive: true });
    await writeFile(join(folder, 'album', 'cover.txt'), 'the cover');
    await writeFile(join(folder, 'album', 'day-2', 'diary.txt'), 'the second day');
    const { context, page } = await openConsole();
    try {
      await signInWith(page, w.key);
      await page.getByRole('link', { name: 'Upload', exact: true }).click();
      const [chooser] = await Promise.all([
        page.waitForEvent('filechooser'),
        page.getByRole('button', { name: 'browse folders' }).click(),
      ]);
      await chooser.setFiles(join(folder, 'album'));
      await page.getByRole('button', { name: /Upload 2 files/ }).click();
      await page.getByText('2 uploaded.').waitFor({ timeout: 60_000 });
      const cover = await assetNamed('cover.txt');
      const diary = await assetNamed('diary.txt');
      assert.equal(cover.sha256, createHash('sha256').update('the cover').digest('hex'));
      assert.equal(diary.sha256, createHash('sha256').update('the second day').digest('hex'));
    } finally {
      await context.close();
    }
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

test('keys (the secret shown once), upload tokens with their usage, revoking both', SLOW, async () => {
  const { context, page } = await openConsole();
  try {
    await signInWith(page, w.key);
    await page.getByRole('link', { name: 'Keys' }).click();
    await page.getByRole('button', { name: 'New key' }).click();
    const dialog = page.getByRole('dialog', { name: 'New API key' });
    await dialog.getByLabel('Name', { exact: true }).fill('reporting job');
    await dialog.getByLabel('upload').uncheck();
    await dialog.getByLabel('write').uncheck();
    // A refusal shows in the dialog (the page behind the modal is hidden), and goes on success.
    await dialog.getByLabel(/Name prefix/).fill('a/b');
    await dialog.getByRole('button', { name: 'Create key' }).click();
    await dialog.getByRole('alert').getByText('VALIDATION_FAILED').waitFor();
    await dialog.getByLabel(/Name prefix/).fill('');
    await dialog.getByRole('button', { name: 'Create key' }).click();
    const secret = await page.getByLabel(/Secret of/).inputValue();
    assert.match(secret, /^wharf_/);
    const read = await api(w.url, secret, 'GET', '/v1/assets');
    assert.equal(read.status, 200, 'the new key reads');
    assert.equal(
      (await api(w.url, secret, 'DELETE', `/v1/assets/${(await assetNamed('notes.txt')).id}`)).status,
      403,
    );
    await page.getByRole('button', { name: 'Done' }).click();
    assert.equal(await page.getByRole('alert').count(), 0, 'no refusal left after the success');
    const row = page.getByRole('row', { name: /reporting job/ });
    await row.getByText('read').waitFor();
    await shot(page, 'keys');
    await row.getByRole('button', { name: /Revoke/ }).click();
    await page
      .getByRole('dialog', { name: 'Revoke this key?' })
      .getByRole('button', { name: 'Revoke' })
      .click();
    await row.getByText(/^revoked/).waitFor();
    assert.equal((await api(w.url, secret, 'GET', '/v1/assets')).status, 401);

    await page.getByRole('link', { name: 'Upload tokens' }).click();
    const used = page.getByRole('row', { name: /3 files/ });
    await used.waitFor();
    const active = page.getByRole('row', { name: /active/ }).first();
    const prefix = (await active.locator('code').textContent())!.replace('…', '');
    // Revoking asks first, as for a key: Cancel keeps the token.
    await active.getByRole('button', { name: /Revoke/ }).click();
    const confirmRevoke = page.getByRole('dialog', { name: 'Revoke this upload token?' });
    await confirmRevoke.getByRole('button', { name: 'Cancel' }).click();
    await confirmRevoke.waitFor({ state: 'hidden' });
    const kept = await api(w.url, w.key, 'GET', '/v1/upload-tokens');
    assert.equal(kept.body.data.find((t: { prefix: string }) => t.prefix === prefix).status, 'active');
    await active.getByRole('button', { name: /Revoke/ }).click();
    await confirmRevoke.getByRole('button', { name: 'Revoke' }).click();
    await page.getByRole('row', { name: new RegExp(`${prefix}.*revoked`) }).waitFor();
    const tokens = await api(w.url, w.key, 'GET', '/v1/upload-tokens');
    assert.equal(tokens.body.data.find((t: { prefix: string }) => t.prefix === prefix).status, 'revoked');
  } finally {
    await context.close();
  }
});

test('more keys than a page: "More keys" shows the rest, each once, and then goes away', SLOW, async () => {
  // The console asks for 50 keys a page; 55 more than the account already has make two pages.
  const names = Array.from({ length: 55 }, (_, i) => `paged key ${String(i).padStart(2, '0')}`);
  for (const name of names) {
    assert.equal((await api(w.url, w.key, 'POST', '/v1/keys', { name, scopes: ['read'] })).status, 201);
  }
  const { context, page } = await openConsole();
  try {
    await signInWith(page, w.key);
    await page.getByRole('link', { name: 'Keys' }).click();
    const paged = page.getByRole('row', { name: /paged key/ });
    const more = page.getByRole('button', { name: 'More keys' });
    await more.waitFor();
    const first = await paged.count();
    assert.ok(first > 0 && first < names.length, `the first page shows some of them (${first})`);
    await more.click();
    await more.waitFor({ state: 'detached' });
    const shown = await paged.evaluateAll((rows) =>
      rows.map((r) => r.querySelector('td')?.textContent ?? ''),
    );
    assert.deepEqual(shown.map((s) => s.trim()).sort(), names, 'every key once, none twice');
  } finally {
    await context.close();
  }
});

test(
  'a webhook endpoint made in the console, its delivery log, and a replay that sends the same webhook-id again',
  SLOW,
  async () => {
    const { context, page } = await openConsole();
    try {
      await signInWith(page, w.key);
      await page.getByRole('link', { name: 'Webhooks' }).click();
      await page.getByRole('button', { name: 'New endpoint' }).click();
      const dialog = page.getByRole('dialog', { name: 'New webhook endpoint' });
      // Refusals show in the dialog, each replacing the last, and are gone once it closes.
      await dialog.getByLabel('URL').fill('javascript:alert(1)//');
      await dialog.getByRole('button', { name: 'Create endpoint' }).click();
      await dialog.getByRole('alert').getByText('URL_NOT_ALLOWED').waitFor();
      await page.keyboard.press('Escape');
      await dialog.waitFor({ state: 'hidden' });
      assert.equal(await page.getByRole('alert').count(), 0, 'the refusal went with its dialog');
      await page.getByRole('button', { name: 'New endpoint' }).click();
      assert.equal(await dialog.getByRole('alert').count(), 0, 'the dialog opens afresh');
      await dialog.getByLabel('URL').fill(receiver.url);
      await dialog.getByLabel(/Event types/).fill('not.a.type');
      await dialog.getByRole('button', { name: 'Create endpoint' }).click();
      await dialog
        .getByRole('alert')
        .getByText(/not\.a\.type/)
        .waitFor();
      await dialog.getByLabel(/Event types/).fill('upload.completed');
      await dialog.getByRole('button', { name: 'Create endpoint' }).click();
      receiver.secrets.push(await page.getByLabel(/signing secret/).inputValue());
      await page.getByRole('button', { name: 'Done' }).click();
      assert.equal(await page.getByRole('alert').count(), 0, 'no refusal left after the success');

      const res = await fetch(`${w.url}/v1/assets?name=hooked.txt`, {
        method: 'POST',
        headers: { 'x-api-key': w.key, 'content-type': 'text/plain' },
        body: 'delivered',
      });
      assert.equal(res.status, 201);
      await w.wharf.core.jobs.drain();
      assert.equal(receiver.idsOf('upload.completed').length, 1);

      await page.getByRole('link', { name: receiver.url }).click();
      const row = page.getByRole('row', { name: /upload\.completed/ });
      await row.getByRole('cell', { name: 'succeeded' }).waitFor();
      await shot(page, 'webhooks');
      await row.getByRole('button', { name: /Replay/ }).click();
      await page.getByText('queued again').waitFor();
      await w.wharf.core.jobs.drain();
      const ids = receiver.idsOf('upload.completed');
      assert.equal(ids.length, 2);
      assert.equal(ids[0], ids[1], 'the replay carries the same webhook-id');
      await page.getByRole('button', { name: 'Refresh' }).click();
      await page.getByRole('cell', { name: '2', exact: true }).waitFor();

      await page.getByRole('link', { name: '← All endpoints' }).click();
      await page.getByRole('button', { name: /Disable/ }).click();
      await page.getByRole('button', { name: /Enable/ }).waitFor();
      const hooks = await api(w.url, w.key, 'GET', '/v1/webhooks');
      assert.equal(hooks.body.data[0].enabled, false);
    } finally {
      await context.close();
    }
  },
);

test('the account page: usage, pending and failed uploads', SLOW, async () => {
  const pending = await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'waiting.bin', size: 10 });
  assert.equal(pending.status, 201);
  const wrong = await fetch(`${w.url}/v1/assets?name=broken.txt&sha256=${'0'.repeat(64)}`, {
    method: 'POST',
    headers: { 'x-api-key': w.key, 'content-type': 'text/plain' },
    body: 'not what was declared',
  });
  assert.equal(wrong.status, 400);
  const { context, page } = await openConsole();
  try {
    await signInWith(page, w.key);
    await page.getByRole('link', { name: 'Account' }).click();
    await page.getByRole('cell', { name: 'waiting.bin', exact: true }).waitFor();
    await page.getByRole('cell', { name: 'broken.txt' }).waitFor();
    await page.getByText('CHECKSUM_MISMATCH').waitFor();
    const usage = await api(w.url, w.key, 'GET', '/v1/account');
    await page.getByText(`in ${usage.body.usage.assets} assets`).waitFor();

    // A pending upload (one a reload abandoned, say) is cancelled from here, after a confirmation:
    // it ends, and what it held against the quota is given back.
    const row = page.getByRole('row', { name: /waiting\.bin/ });
    await row.getByRole('button', { name: /Cancel/ }).click();
    await page
      .getByRole('dialog', { name: 'Cancel this upload?' })
      .getByRole('button', { name: 'Cancel upload' })
      .click();
    await page.waitForTimeout(3000);
    await row.waitFor({ state: 'detached' });
    const ended = await api(w.url, w.key, 'GET', `/v1/uploads/${pending.body.id}`);
    assert.equal(ended.body.status, 'expired');
    assert.equal(ended.body.ended?.reason, 'cancelled');

    // A confined key reads some sections and is refused others: each says its own.
    const confined = await api(w.url, w.key, 'POST', '/v1/keys', {
      name: 'boxed',
      scopes: ['read', 'upload'],
      name_prefix: 'box-',
    });
    assert.equal(confined.status, 201);
    await page.getByRole('button', { name: 'Sign out' }).click();
    // Signed in again, the page is where it was: Account.
    await page.getByLabel('API key').fill(confined.body.secret);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('boxed').waitFor();
    // Every section answered (they load independently).
    await page.getByText('a confined key cannot list them').waitFor();
    await page.getByText('None.').waitFor();
    const sections = await page.evaluate(() =>
      [...document.querySelectorAll('main h1, main h2:not(dialog h2)')].map((h) => {
        const text: string[] = [];
        for (let el = h.nextElementSibling; el && el.tagName !== 'H2'; el = el.nextElementSibling) {
          if (el.tagName === 'P') text.push(el.textContent ?? '');
        }
        return `${h.textContent}: ${text.join(' | ')}`;
      }),
    );
    assert.deepEqual(sections, [
      'Account: A confined key does not see the whole account. (SCOPE_DENIED)',
      'Pending uploads: None.',
      'Failed uploads: Events describe the whole account: a confined key cannot list them. (SCOPE_DENIED)',
    ]);
  } finally {
    await context.close();
  }
});

test(
  'on a phone-sized screen everything fits the width; keyboard alone signs in, opens an asset, works a dialog and signs out',
  SLOW,
  async () => {
    const phone = await openConsole({ viewport: { width: 375, height: 812 }, isMobile: true });
    try {
      await signInWith(phone.page, w.key);
      await phone.page.getByRole('link', { name: /notes\.txt/ }).waitFor();
      const overflow = await phone.page.evaluate(
        () => document.documentElement.scrollWidth - window.innerWidth,
      );
      assert.ok(overflow <= 0, `no sideways scrolling (${overflow}px too wide)`);
      await shot(phone.page, 'phone');
      await phone.page.getByRole('link', { name: /notes\.txt/ }).click();
      await phone.page.getByRole('heading', { name: 'notes.txt' }).waitFor();
      const wide = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(wide <= 0, `an asset's page fits too (${wide}px too wide)`);
      // A long name without a space breaks in its heading rather than widening the page.
      const longName = `${'n'.repeat(247)}.txt`;
      const long = await api(w.url, w.key, 'POST', `/v1/assets?name=${longName}`, 'a long name');
      assert.equal(long.status, 201);
      await phone.page.goto(`${w.url}/console#/assets/${long.body.asset.id}`);
      await phone.page.getByRole('heading', { name: longName }).waitFor();
      const longWide = await phone.page.evaluate(
        () => document.documentElement.scrollWidth - window.innerWidth,
      );
      assert.ok(longWide <= 0, `a long name's page fits too (${longWide}px too wide)`);
      // So do the pages of tables with buttons in them (whose names are partly hidden text), the
      // tables wider than the screen (they scroll by themselves), and a long endpoint URL: a key
      // and an upload token to revoke, an endpoint, a delivery to replay.
      const unbroken = 'l'.repeat(120);
      assert.equal(
        (await api(w.url, w.key, 'POST', '/v1/keys', { name: unbroken, scopes: ['read'] })).status,
        201,
      );
      assert.equal((await api(w.url, w.key, 'POST', '/v1/upload-tokens', { subject: unbroken })).status, 201);
      const hook = await api(w.url, w.key, 'POST', '/v1/webhooks', {
        url: `${receiver.url}/${unbroken}`,
        event_types: ['upload.completed'],
      });
      assert.equal(hook.status, 201);
      receiver.secrets.push(hook.body.secret);
      assert.equal((await api(w.url, w.key, 'POST', '/v1/assets?name=phone.txt', 'delivered')).status, 201);
      await w.wharf.core.jobs.drain();
      const tooWide: string[] = [];
      for (const [path, heading] of [
        ['keys', 'API keys'],
        ['tokens', 'Upload tokens'],
        ['webhooks', 'Webhooks'],
        [`webhooks/${hook.body.webhook.id}`, 'Delivery log'],
      ]) {
        await phone.page.goto(`${w.url}/console#/${path}`);
        await phone.page.getByRole('heading', { name: heading, level: 1 }).waitFor();
        await phone.page
          .getByRole('button', { name: /^(Revoke|Replay|Disable)/ })
          .first()
          .waitFor();
        // Measured against the screen's width: on a phone the browser may widen its layout
        // viewport (innerWidth) to what the page needs.
        const scrollWidth = await phone.page.evaluate(() => document.documentElement.scrollWidth);
        if (scrollWidth > 375) tooWide.push(`#/${path} is ${scrollWidth}px wide`);
      }
      assert.deepEqual(tooWide, [], 'these pages fit too');
      assert.equal((await api(w.url, w.key, 'DELETE', `/v1/webhooks/${hook.body.webhook.id}`)).status, 204);
    } finally {
      await phone.context.close();
    }

    const { context, page } = await openConsole();
    try {
      const keys = page.keyboard;
      await page.getByLabel('API key').waitFor();
      assert.equal(
        await page.evaluate(() => document.activeElement?.getAttribute('name')),
        'key',
        'the key field has focus',
      );
      await keys.type(w.key);
      await keys.press('Enter');
      await page.getByRole('heading', { name: 'Assets', level: 1 }).waitFor();
      /** Tabs (or Shift+Tabs) until the focused element matches, failing after `limit` presses. */
      const tabTo = async (
        matches: (el: { tag: string; text: string }) => boolean,
        key = 'Tab',
        limit = 60,
      ) => {
        for (let i = 0; i < limit; i++) {
          await keys.press(key);
          const el = await page.evaluate(() => ({
            tag: document.activeElement?.tagName ?? '',
            text: (document.activeElement as HTMLElement | null)?.innerText?.trim() ?? '',
          }));
          if (matches(el)) return;
        }
        assert.fail('never reached by Tab');
      };
      await tabTo((el) => el.tag === 'A' && el.text.includes('notes.txt'));
      const outline = await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle);
      assert.notEqual(outline, 'none', 'the focused element shows it');
      await keys.press('Enter');
      await page.getByRole('heading', { name: 'notes.txt' }).waitFor();
      assert.equal(
        await page.evaluate(() => document.activeElement?.tagName),
        'H1',
        'a new page focuses its heading',
      );
      await tabTo((el) => el.tag === 'BUTTON' && el.text === 'Delete');
      await keys.press('Enter');
      const confirm = page.getByRole('dialog', { name: 'Delete this asset?' });
      await confirm.waitFor();
      assert.equal(
        await page.evaluate(() => document.activeElement?.closest('dialog') !== null),
        true,
        'focus moved into the dialog',
      );
      for (let i = 0; i < 4; i++) {
        await keys.press('Tab');
        const inside = await page.evaluate(
          () =>
            document.activeElement === document.body || document.activeElement?.closest('dialog') !== null,
        );
        assert.ok(inside, 'Tab stays in the dialog (the page behind is inert)');
      }
      await keys.press('Escape');
      await confirm.waitFor({ state: 'hidden' });
      assert.equal(
        await page.evaluate(() => (document.activeElement as HTMLElement).innerText),
        'Delete',
        'focus is back',
      );
      // Back up to the header, before the page's content.
      await tabTo((el) => el.tag === 'BUTTON' && el.text === 'Sign out', 'Shift+Tab');
      await keys.press('Enter');
      await page.getByLabel('API key').waitFor();
      await page.reload();
      await page.getByLabel('API key').waitFor();
      assert.equal(
        (await api(w.url, w.key, 'GET', `/v1/assets/${(await assetNamed('notes.txt')).id}`)).status,
        200,
      );
    } finally {
      await context.close();
    }
  },
);

test('a session that expires, or is signed out elsewhere, sends the page back to sign-in', SLOW, async () => {
  const { context, page } = await openConsole();
  try {
    const listed = () => page.getByRole('link', { name: /evil\.svg/ }).waitFor();
    await signInWith(page, w.key);
    await listed();
    // Another tab of the same browser signs out: this one's next request finds the session over.
    const other = await context.newPage();
    await other.goto(`${w.url}/console`);
    // The sign-out request gets no answer (the server is down, the network gone): the page says
    // so and stays signed in, since the session still lives on the server.
    const signOutRoute = (url: URL) => url.pathname === '/console/api/session';
    await other.route(signOutRoute, (route) =>
      route.request().method() === 'DELETE' ? route.abort('connectionrefused') : route.continue(),
    );
    await other.getByRole('button', { name: 'Sign out' }).click();
    await other.getByRole('alert').getByText('Signing out failed').waitFor();
    assert.equal(await other.getByLabel('API key').count(), 0, 'not shown as signed out');
    await other.reload();
    await other.getByRole('heading', { name: 'Assets', level: 1 }).waitFor();
    await other.unroute(signOutRoute);
    await other.getByRole('button', { name: 'Sign out' }).click();
    await other.getByText('Signed out.').waitFor();
    await other.getByLabel('API key').waitFor();
    await page.getByRole('link', { name: 'Keys' }).click();
    await page.getByText('Your session ended').waitFor();

    // The idle timeout passes (the page has finished loading first, so the expiry meets the next click).
    await page.goto(`${w.url}/console#/assets`);
    await signInWith(page, w.key);
    await listed();
    w.clock.advance(3600_000 + 1000);
    await page.getByRole('link', { name: 'Webhooks' }).click();
    await page.getByText('Your session ended').waitFor();
    await page.getByLabel('API key').waitFor();
  } finally {
    await context.close();
  }
});

test(
  'a session cookie planted by a sibling host signs the page out with the reason, never into the planter’s session',
  SLOW,
  async () => {
    const { context, page, dialogs } = await openConsole();
    try {
      await signInWith(page, w.key);
      // What a page of another host of the same site can do over plain http: set the name on the
      // parent domain with a longer path, so the browser sends it before the console's own.
      const planter = await signIn(w.url, (await w.newAccount('planter')).key);
      const host = new URL(w.url).hostname;
      const planted = { name: 'wharf_console', domain: host, path: '/console/api' };
      await context.addCookies([{ ...planted, value: planter.cookie.split('=')[1]!, sameSite: 'Strict' }]);
      const reason = page.getByText('another site of the same domain may have set one');
      await page.getByRole('link', { name: 'Keys' }).click();
      await reason.waitFor();
      await page.getByLabel('API key').waitFor();
      // Loaded afresh, the page says the same; signing in is refused while both are there.
      await page.reload();
      await reason.waitFor();
      await page.getByLabel('API key').fill(w.key);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').getByText('AMBIGUOUS_SESSION').waitFor();
      assert.equal(await page.getByText('planter').count(), 0, 'nothing of the planter’s account shows');
      // Once the planted cookie is cleared, the console's own session works again.
      await context.clearCookies(planted);
      await page.goto(`${w.url}/console#/assets`);
      await page.reload();
      await page.getByRole('heading', { name: 'Assets', level: 1 }).waitFor();
      assert.equal(await page.getByText('planter').count(), 0);
      assert.deepEqual(dialogs, []);
    } finally {
      await context.close();
    }
  },
);

test(
  'what the page cannot do it says: a key that cannot upload, an upload token refused, an asset deleted in another tab',
  SLOW,
  async () => {
    const readOnly = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'looks only', scopes: ['read'] });
    assert.equal(readOnly.status, 201);
    const { context, page, dialogs } = await openConsole();
    try {
      // A key without the upload scope is told why before it picks files, and offered no Dashboard.
      await signInWith(page, readOnly.body.secret);
      assert.equal(await page.getByRole('link', { name: 'Upload files' }).count(), 0);
      await page.getByRole('link', { name: 'Upload', exact: true }).click();
      await page.getByText('cannot upload: uploading needs a key with the upload scope').waitFor();
      assert.equal(await page.locator('.uppy-Dashboard').count(), 0);
      // Nor is it offered the creation the server would refuse (403 FORBIDDEN).
      await page.getByRole('link', { name: 'Keys', exact: true }).click();
      await page.getByRole('heading', { name: 'API keys' }).waitFor();
      assert.equal(await page.getByRole('button', { name: 'New key' }).count(), 0);
      await page.getByRole('link', { name: 'Webhooks', exact: true }).click();
      await page.getByRole('heading', { name: 'Webhooks' }).waitFor();
      assert.equal(await page.getByRole('button', { name: 'New endpoint' }).count(), 0);
      await page.getByRole('link', { name: 'Upload', exact: true }).click();
      await page.getByText('cannot upload: uploading needs a key with the upload scope').waitFor();
      await page.getByRole('button', { name: 'Sign out' }).click();

      // The server refuses the upload token: the page says why (Uppy alone shows "Upload failed").
      // Signed in again, the page is where it was: Upload.
      await page.getByLabel('API key').fill(w.key);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('.uppy-Dashboard').waitFor();
      const tokenRoute = (url: URL) => url.pathname === '/console/api/upload-token';
      await page.route(tokenRoute, (route) =>
        route.fulfill({
          status: 503,
          contentType: 'application/json',
          body: JSON.stringify({ error: { code: 'SERVICE_UNAVAILABLE', message: 'Wharf is stopping.' } }),
        }),
      );
      await dropFiles(page, [
        { name: 'refused.txt', type: 'text/plain', base64: Buffer.from('refused').toString('base64') },
      ]);
      await page.getByRole('button', { name: /Upload 1 file/ }).click();
      await page.getByRole('alert').getByText('Wharf is stopping. (SERVICE_UNAVAILABLE)').waitFor();
      await page.unroute(tokenRoute);

      // The server refuses the upload itself (a file over the account's limit): the page shows
      // the server's message and code, not tus-js-client's dump of the request and response.
      const small = await w.newAccount('small files');
      await w.wharf.core.keys.updateAccount(small.accountId, { maxFileSize: 20 });
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByLabel('API key').fill(small.key);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('.uppy-Dashboard').waitFor();
      await dropFiles(page, [
        { name: 'too-big.txt', type: 'text/plain', base64: Buffer.alloc(30, 'x').toString('base64') },
      ]);
      await page.getByRole('button', { name: /Upload 1 file/ }).click();
      const tooBig = page.locator('p.notice.error');
      await tooBig.getByText('(FILE_TOO_LARGE)').waitFor({ timeout: 30_000 });
      assert.doesNotMatch((await tooBig.textContent()) ?? '', /tus:|response text/);
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByLabel('API key').fill(w.key);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('.uppy-Dashboard').waitFor();

      // Deleted elsewhere after the page loaded: deleting it again goes back to the list, and
      // another action says it is gone and offers nothing more.
      const open = async (name: string) => {
        const made = await api(w.url, w.key, 'POST', `/v1/assets?name=${name}`, name);
        assert.equal(made.status, 201);
        await page.goto(`${w.url}/console#/assets/${made.body.asset.id}`);
        await page.getByRole('heading', { name }).waitFor();
        assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${made.body.asset.id}`)).status, 204);
      };
      await open('gone-before-delete.json');
      await page.getByRole('button', { name: 'Delete', exact: true }).click();
      await page.getByRole('button', { name: 'Delete for good' }).click();
      await page.getByRole('heading', { name: 'Assets', level: 1 }).waitFor({ timeout: 10_000 });
      await open('gone-before-sharing.json');
      await page.getByRole('button', { name: 'Make public' }).click();
      await page.getByText('This asset no longer exists').waitFor({ timeout: 10_000 });
      assert.equal(await page.getByRole('button', { name: 'Delete', exact: true }).count(), 0);
      assert.equal(await page.getByRole('button', { name: 'Copy signed link' }).count(), 0);

      // A link whose id is no valid percent-encoding (cut short, mistyped): no such page, and
      // the console around it still works.
      for (const route of ['#/assets/%', '#/webhooks/%E0%A4%A']) {
        await page.goto(`${w.url}/console${route}`);
        await page.getByRole('heading', { name: 'No such page', level: 1 }).waitFor({ timeout: 10_000 });
      }
      await page.getByRole('link', { name: 'Webhooks' }).click();
      await page.getByRole('heading', { name: 'Webhooks', level: 1 }).waitFor();
      assert.deepEqual(dialogs, []);
    } finally {
      await context.close();
    }
  },
);
