import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Browser, chromium } from 'playwright-core';

/**
 * Debian's Chromium, headless, through playwright-core (npm never downloads a browser here;
 * scripts/test.sh installs the package when it is missing).
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

export interface PageFile {
  type: string;
  body: string;
}

/** A static site on a loopback port of its own: another origin than the Wharf under test. */
export interface PageServer {
  /** Its origin, `http://127.0.0.1:<port>`, what a browser sends as Origin. */
  origin: string;
  close(): Promise<void>;
}

/**
 * Serves `files` (path → content) over real HTTP. Unlike Playwright's request routing, which
 * answers CORS preflights itself, a page served from here makes the browser send its own
 * preflights to whatever the page calls.
 */
export async function servePage(files: Record<string, PageFile>): Promise<PageServer> {
  const server = createServer((request, response) => {
    const file = files[new URL(request.url ?? '/', 'http://page').pathname];
    if (request.method !== 'GET' || !file) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    response.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-store' }).end(file.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A page (another origin than Wharf's) whose one script is `entry` bundled for browsers by esbuild,
 * as an app's front end is built: in memory, so nothing is written next to the sources. Its
 * imports resolve from its own folder, as they would in the app.
 */
export async function serveBundledPage(entry: string): Promise<PageServer> {
  const { build } = await import('esbuild');
  const bundle = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'chrome120',
    write: false,
    logLevel: 'silent',
  });
  return servePage({
    '/': {
      type: 'text/html',
      body: '<!doctype html>\n<html><head><meta charset="utf-8"></head>\n<body><script type="module" src="/page.js"></script></body></html>',
    },
    '/page.js': { type: 'text/javascript', body: bundle.outputFiles[0]!.text },
  });
}
