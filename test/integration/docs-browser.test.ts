import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../helpers/browser.js';
import { api } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * /docs in a real browser: the reference's "Try it out" uploads a file through its form,
 * authorised with an API key, under the page's own content security policy.
 */

let w: TestWharf;
let browser: Browser;
let dir: string;
before(async () => {
  w = await startWharf();
  browser = await launchChromium();
  dir = await mkdtemp(join(tmpdir(), 'wharf-docs-browser-'));
});
after(async () => {
  await browser?.close();
  await w?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('"Try it out" uploads a file from the form, with the key, and the CSP blocks nothing', async () => {
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(message.text());
  });
  page.on('pageerror', (err) => problems.push(err.message));
  const response = await page.goto(`${w.url}/docs`);
  assert.match(response?.headers()['content-security-policy'] ?? '', /default-src 'self'/);

  await page.click('button.authorize');
  await page.fill('.auth-container input', w.key);
  await page.click('.auth-btn-wrapper button.authorize');
  await page.click('.btn-done');

  const operation = '#operations-assets-uploadAsset';
  await page.click(`${operation} .opblock-summary`);
  await page.click(`${operation} .try-out__btn`);
  assert.deepEqual(
    await page.$$eval(`${operation} select.content-type option`, (options) =>
      options.map((o) => (o as HTMLOptionElement).value).slice(0, 2),
    ),
    ['multipart/form-data', 'application/octet-stream'],
  );
  const file = join(dir, 'from-the-docs.txt');
  await writeFile(file, 'uploaded through /docs\n');
  await page.setInputFiles(`${operation} input[type=file]`, file);
  await page.click(`${operation} .execute`);
  const status = await page.waitForSelector(
    `${operation} .live-responses-table tbody .response .response-col_status`,
  );
  assert.equal((await status.textContent())?.trim(), '201');
  const body = JSON.parse(
    (await page.textContent(`${operation} .live-responses-table .microlight`)) ?? '{}',
  ) as { status: string; asset: { id: string; name: string } };
  assert.equal(body.status, 'created');
  assert.equal(body.asset.name, 'from-the-docs.txt');

  const stored = await api(w.url, w.key, 'GET', `/v1/assets/${body.asset.id}`);
  assert.equal(stored.status, 200);
  assert.equal(stored.body.size, 'uploaded through /docs\n'.length);
  assert.deepEqual(problems, []);
});
