import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import exifr from 'exifr';
import type { Browser, Page, Response } from 'playwright-core';
import sharp from 'sharp';
import { uploadRaw } from '../helpers/assets.js';
import { launchChromium, type PageServer, servePage } from '../helpers/browser.js';
import { api } from '../helpers/http.js';
import { LogCollector } from '../helpers/observe.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// A real <img srcset> in Debian's Chromium, on a page of another site than Wharf's (the page
// is served from localhost, Wharf from 127.0.0.1) that holds only signed transform URLs: no
// key anywhere. The browser picks the rendering for its viewport and pixel ratio, negotiates
// the format with its own Accept, caches what it got, and shows changed or expired URLs as
// broken images. The photo carries a GPS position; no rendering the browser loads does.

const PHOTO = { width: 1600, height: 1200 };
const GPS_EXIF = {
  IFD0: { Make: 'Wharf', Model: 'Browser test' },
  IFD3: {
    GPSLatitudeRef: 'N',
    GPSLatitude: '48/1 51/1 2400/100',
    GPSLongitudeRef: 'E',
    GPSLongitude: '2/1 21/1 300/100',
  },
};

let w: TestWharf;
let logs: LogCollector;
let browser: Browser;
let site: PageServer;
/** The page's address: its own site (localhost), not Wharf's (127.0.0.1). */
let pageUrl: string;
let html: string;
let signed400: string;
let signed800: string;
let tampered: string;
let expired: string;
/** The photo's asset id. */
let photoId: string;

/**
 * A photo-like JPEG (smooth gradients and a few shapes, so the renderings have real content)
 * with EXIF that includes a GPS position, made here rather than committed.
 */
async function photo(): Promise<Buffer> {
  const { width, height } = PHOTO;
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const i = (y * width + x) * 3;
      pixels[i] = (x * 255) / width;
      pixels[i + 1] = (y * 255) / height;
      pixels[i + 2] = ((x + y) % 200 < 100 ? 180 : 60) + ((x * y) % 37);
    }
  }
  return sharp(pixels, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 85 })
    .withExif(GPS_EXIF)
    .toBuffer();
}

async function sign(id: string, body: Record<string, unknown>): Promise<string> {
  const res = await api(w.url, w.key, 'POST', `/v1/assets/${id}/image-url`, body);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.url as string;
}

before(async () => {
  logs = new LogCollector();
  w = await startWharf({ logStream: logs.stream });
  const bytes = await photo();
  assert.ok((await exifr.gps(bytes))?.latitude, 'the original carries a GPS position');
  const upload = await uploadRaw(w, w.key, 'paris.jpg', bytes, { contentType: 'image/jpeg' });
  assert.equal(upload.status, 201, JSON.stringify(upload.body));
  const id = upload.body.asset.id as string;
  photoId = id;

  // format=auto (the default): each browser gets what its Accept names.
  signed400 = await sign(id, { w: 400, expires_in: 3600 });
  signed800 = await sign(id, { w: 800, expires_in: 3600 });
  const edited = new URL(signed400);
  edited.searchParams.set('w', '480');
  tampered = edited.toString();
  expired = await sign(id, { w: 320, format: 'webp', expires_in: 60 });
  // A URL that worked until it expired.
  assert.equal((await fetch(expired)).status, 200);
  w.clock.advance(61_000);

  html = `<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<style>body { margin: 0 } img { display: block }</style></head>
<body>
<img id="photo" alt="photo" srcset="${signed400} 400w, ${signed800} 800w" sizes="(min-width: 800px) 800px, 100vw">
<img id="tampered" alt="tampered" src="${tampered}">
<img id="expired" alt="expired" src="${expired}">
</body></html>`;
  assert.ok(!html.includes(w.key), 'no key on the page');
  site = await servePage({ '/': { type: 'text/html', body: html } });
  pageUrl = `${site.origin.replace('127.0.0.1', 'localhost')}/`;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await site?.close();
  await w?.close();
});

interface Shown {
  complete: boolean;
  naturalWidth: number;
  currentSrc: string;
}

/** Each image of the page once the browser has settled it (loaded or broken). */
async function images(tab: Page): Promise<Record<string, Shown>> {
  await tab.waitForFunction(() => [...document.images].every((img) => img.complete));
  return tab.evaluate(() =>
    Object.fromEntries(
      [...document.images].map((img) => [
        img.id,
        { complete: img.complete, naturalWidth: img.naturalWidth, currentSrc: img.currentSrc },
      ]),
    ),
  );
}

/** Requests the server answered for renderings of w=<width>, with their statuses. */
function served(width: number): number[] {
  const urls = new Map<string, string>();
  for (const line of logs.lines) {
    const req = line.req as { url?: string } | undefined;
    if (line.msg === 'incoming request' && line.reqId && req?.url?.includes(`/image?w=${width}&`)) {
      urls.set(line.reqId, req.url);
    }
  }
  return logs.lines
    .filter((line) => line.msg === 'request completed' && line.reqId && urls.has(line.reqId))
    .map((line) => (line.res as { statusCode: number }).statusCode);
}

const VIEWS = [
  { name: '400 px wide at 1×', viewport: { width: 400, height: 800 }, scale: 1, chosen: 400, css: 400 },
  { name: '400 px wide at 2×', viewport: { width: 400, height: 800 }, scale: 2, chosen: 800, css: 400 },
  { name: '1000 px wide at 1×', viewport: { width: 1000, height: 800 }, scale: 1, chosen: 800, css: 800 },
];

for (const view of VIEWS) {
  test(`Chromium ${view.name} loads the ${view.chosen} px rendering from a signed srcset`, async () => {
    // A context of its own: its own HTTP cache, nothing carried over from another view.
    const context = await browser.newContext({ viewport: view.viewport, deviceScaleFactor: view.scale });
    try {
      const tab = await context.newPage();
      const requested: string[] = [];
      const fromWharf: Response[] = [];
      tab.on('request', (request) => {
        if (request.url().startsWith(w.url)) requested.push(request.url());
      });
      tab.on('response', (response) => {
        if (response.url().startsWith(w.url)) fromWharf.push(response);
      });
      const refusedBefore = [served(480).length, served(320).length];
      await tab.goto(pageUrl);
      const shown = await images(tab);

      const chosen = view.chosen === 400 ? signed400 : signed800;
      const other = view.chosen === 400 ? signed800 : signed400;
      assert.equal(shown.photo?.currentSrc, chosen, 'the candidate for this viewport and pixel ratio');
      // naturalWidth is in CSS pixels: the rendering's width over its density in the srcset.
      assert.equal(shown.photo?.naturalWidth, view.css);
      assert.ok(
        fromWharf.every((r) => r.url() !== other),
        'the other candidate was never fetched',
      );

      const response = fromWharf.find((r) => r.url() === chosen);
      assert.ok(response, `Chromium fetched ${chosen}`);
      assert.equal(response.status(), 200);
      const sent = await response.request().allHeaders();
      assert.equal(sent['x-api-key'], undefined, 'no key sent');
      assert.equal(sent.authorization, undefined);
      // format=auto gives this browser what its own Accept names first: AVIF, else WebP.
      const accept = sent.accept ?? '';
      const expected = accept.includes('image/avif')
        ? 'image/avif'
        : accept.includes('image/webp')
          ? 'image/webp'
          : undefined;
      assert.ok(expected, `Chromium's Accept names AVIF or WebP: ${accept}`);
      const headers = await response.allHeaders();
      assert.equal(headers['content-type'], expected);
      assert.equal(headers.vary, 'Accept');
      assert.match(headers['cache-control'] ?? '', /^public, max-age=\d+, immutable$/);
      assert.equal(headers['cross-origin-resource-policy'], 'cross-origin');
      const body = await response.body();
      const meta = await sharp(body).metadata();
      assert.equal(meta.width, view.chosen, 'the bytes are the chosen rendering');
      assert.equal(meta.height, (view.chosen * PHOTO.height) / PHOTO.width);
      assert.equal(meta.format, expected === 'image/avif' ? 'heif' : 'webp');
      assert.equal(meta.exif, undefined, 'no EXIF, so no GPS position, in what the browser got');
      assert.equal(meta.xmp, undefined);

      // A changed parameter and an expired URL: broken images, not anything else.
      for (const id of ['tampered', 'expired']) {
        assert.equal(shown[id]?.complete, true, id);
        assert.equal(shown[id]?.naturalWidth, 0, `${id} shows as a broken image`);
      }
      // Chromium asked for both, and Wharf refused both (the browser then blocks the JSON
      // error body of a cross-site image request itself: ORB).
      assert.ok(requested.includes(tampered) && requested.includes(expired));
      assert.deepEqual(served(480).slice(refusedBefore[0]), [403], 'the tampered URL');
      assert.deepEqual(served(320).slice(refusedBefore[1]), [403], 'the expired URL');

      if (view.chosen === 400 && view.scale === 1) {
        // Reloading finds the rendering in the browser's cache, or revalidates it (304):
        // Wharf never sends its bytes twice.
        const before = served(400);
        assert.deepEqual(before, [200]);
        await tab.reload();
        const again = await images(tab);
        assert.equal(again.photo?.currentSrc, chosen);
        assert.equal(again.photo?.naturalWidth, view.css);
        const after = served(400).slice(before.length);
        assert.ok(
          after.every((status) => status === 304),
          `the reload was served from the cache or a 304, got ${after.join(', ')}`,
        );
      }
    } finally {
      await context.close();
    }
  });
}

test('the original itself embeds on another site’s page too, by a signed download URL or made public', async () => {
  const signed = await api(w.url, w.key, 'POST', `/v1/assets/${photoId}/signed-url`, { expires_in: 3600 });
  assert.equal(signed.status, 200, JSON.stringify(signed.body));
  const made = await api(w.url, w.key, 'PATCH', `/v1/assets/${photoId}`, { access: 'public' });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const page = `<!doctype html><html><body>
<img id="signed" alt="signed" src="${signed.body.url}">
<img id="public" alt="public" src="${w.url}/v1/assets/${photoId}/content">
</body></html>`;
  assert.ok(!page.includes(w.key), 'no key on the page');
  const other = await servePage({ '/': { type: 'text/html', body: page } });
  const context = await browser.newContext();
  try {
    const tab = await context.newPage();
    await tab.goto(`${other.origin.replace('127.0.0.1', 'localhost')}/`);
    const shown = await images(tab);
    // Chromium enforces Cross-Origin-Resource-Policy on an <img>: `same-site` would leave both
    // broken (ERR_BLOCKED_BY_RESPONSE.NotSameSite), as the page is on another site than Wharf.
    assert.equal(shown.signed?.naturalWidth, PHOTO.width, 'the signed URL shows');
    assert.equal(shown.public?.naturalWidth, PHOTO.width, 'the public asset shows');
  } finally {
    await context.close();
    await other.close();
    await api(w.url, w.key, 'PATCH', `/v1/assets/${photoId}`, { access: 'private' });
  }
});
