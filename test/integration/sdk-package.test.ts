import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { Browser } from 'playwright-core';
import sharp from 'sharp';
import { launchChromium, type PageServer, serveBundledPage } from '../helpers/browser.js';
import { allowOriginOnBucket, onS3 } from '../helpers/deployment.js';
import { api, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * The SDK as an app gets it: `npm pack ./sdk` (the command docs/sdk.md gives) makes a tarball,
 * which is unpacked into a project of its own, outside this checkout, and used from there by
 * its package name only — at run time against a real server, and by the TypeScript compiler.
 * Nothing here imports src/sdk directly (test/integration/sdk.test.ts does that, for behaviour).
 */

const root = resolve(import.meta.dirname, '../..');
let w: TestWharf;
let dir: string;
let app: string;
/** Where the package is unpacked, as npm installs it. */
let installed: string;
let packed: { filename: string; files: { path: string }[] };
/** A page of another origin than Wharf's, whose script is the app's bundle of @wharf/sdk. */
let page: PageServer;
let browser: Browser | undefined;

/** The page's script: what an app's front end does with the portable entry and an upload token. */
const PAGE_SCRIPT = `import { Wharf } from '@wharf/sdk';
window.sdkUpload = async ({ url, token, size, strategy }) => {
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) crypto.getRandomValues(bytes.subarray(at, at + 65536));
  const local = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]
    .map((b) => b.toString(16).padStart(2, '0'))
    .join('');
  const wharf = new Wharf({ url, key: token });
  let sent = 0;
  const result = await wharf.upload(new File([bytes], strategy + '.bin'), {
    strategy,
    partSize: 5 * 1024 * 1024,
    onProgress: (p) => { if (p.phase === 'uploading') sent = p.bytes; },
  });
  return { local, sent, status: result.status, strategy: result.strategy, id: result.asset.id, sha256: result.asset.sha256 };
};
window.ready = true;
`;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wharf-sdk-package-'));
  // The documented command, run where a user runs it: prepack compiles the SDK into sdk/dist.
  const out = execFileSync('npm', ['pack', './sdk', '--json', '--pack-destination', dir], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  packed = JSON.parse(out.slice(out.indexOf('[')))[0];
  // As `npm install <tarball>` lays it out; its dependencies come from this checkout's
  // node_modules, so the test needs no registry.
  app = join(dir, 'app');
  installed = join(app, 'node_modules', '@wharf', 'sdk');
  await mkdir(installed, { recursive: true });
  execFileSync('tar', ['-xzf', join(dir, packed.filename), '-C', installed, '--strip-components=1']);
  await mkdir(join(app, 'node_modules', '@noble'), { recursive: true });
  for (const dependency of ['@noble/hashes', 'cli-progress', 'mime-types', 'thumbhash']) {
    await symlink(join(root, 'node_modules', dependency), join(app, 'node_modules', dependency));
  }
  await writeFile(
    join(app, 'package.json'),
    JSON.stringify({ name: 'an-app', private: true, type: 'module' }),
  );
  // The app bundles the installed package with esbuild, for browsers, as a front end's build does.
  await writeFile(join(app, 'page.mjs'), PAGE_SCRIPT);
  page = await serveBundledPage(join(app, 'page.mjs'));
  w = await startWharf({ env: { WHARF_CORS_ORIGINS: page.origin } });
});

after(async () => {
  await browser?.close();
  await page?.close();
  await w?.close();
  await rm(join(root, 'sdk', 'dist'), { recursive: true, force: true });
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs a script of the app. Not synchronously: the server it talks to runs in this process. */
async function run(script: string, args: string[] = [], env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [script, ...args], {
    cwd: app,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, ...env },
  });
  return stdout;
}

describe('the SDK package (npm pack ./sdk)', () => {
  test('holds the compiled entries and their types, no sources', () => {
    const paths = packed.files.map((f) => f.path).sort();
    for (const file of [
      'dist/sdk/index.js',
      'dist/sdk/index.d.ts',
      'dist/sdk/node.js',
      'dist/sdk/node.d.ts',
      'dist/cli/client.js',
      'package.json',
    ]) {
      assert.ok(paths.includes(file), `${file} is in the tarball: ${paths.join(', ')}`);
    }
    assert.deepEqual(
      paths.filter((p) => !p.startsWith('dist/') && p !== 'package.json' && p !== 'README.md'),
      [],
    );
    assert.ok(!paths.some((p) => p.endsWith('.ts') && !p.endsWith('.d.ts')));
  });

  test('its portable entry loads no Node module, so browsers and bundlers can take it', async () => {
    const portable = packed.files
      .map((f) => f.path)
      .filter((p) => p.startsWith('dist/sdk/') && p.endsWith('.js') && p !== 'dist/sdk/node.js');
    assert.ok(portable.includes('dist/sdk/index.js'));
    for (const file of portable) {
      const text = await readFile(join(installed, file), 'utf8');
      assert.doesNotMatch(text, /from ['"]node:|require\(/, file);
    }
    // The check can see one: the Node entry has them.
    assert.match(await readFile(join(installed, 'dist/sdk/node.js'), 'utf8'), /from ['"]node:/);
  });

  test('asks for the same versions of its dependencies as Wharf itself', async () => {
    const sdk = JSON.parse(await readFile(join(root, 'sdk', 'package.json'), 'utf8'));
    const wharf = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
    assert.deepEqual(Object.keys(sdk.dependencies), [
      '@noble/hashes',
      'cli-progress',
      'mime-types',
      'thumbhash',
    ]);
    for (const name of Object.keys(sdk.dependencies)) {
      assert.equal(sdk.dependencies[name], wharf.dependencies[name], name);
    }
  });

  test('an app imports it by name and uploads a file with it', async () => {
    const bytes = randomBytes(300_000);
    await writeFile(join(app, 'photo.bin'), bytes);
    await writeFile(
      join(app, 'upload.mjs'),
      `import { connect, fileSource, WharfApiError } from '@wharf/sdk/node';
import { Wharf } from '@wharf/sdk';
const wharf = connect({ url: process.env.WHARF_URL, key: process.env.WHARF_KEY });
if (!(wharf instanceof Wharf)) throw new Error('connect() did not return the portable client');
const result = await wharf.upload(await fileSource('photo.bin'));
let refused;
try {
  await wharf.assets.get('no-such-asset');
} catch (err) {
  refused = err instanceof WharfApiError ? err.code : String(err);
}
console.log(JSON.stringify({ status: result.status, id: result.asset.id, sha256: result.asset.sha256, refused }));
`,
    );
    const out = JSON.parse(await run('upload.mjs', [], { WHARF_URL: w.url, WHARF_KEY: w.key }));
    assert.equal(out.status, 'created');
    assert.equal(out.sha256, sha256Hex(bytes));
    assert.equal(out.refused, 'NOT_FOUND');
    const asset = await api(w.url, w.key, 'GET', `/v1/assets/${out.id}`);
    assert.equal(asset.status, 200);
    assert.equal(asset.body.sha256, sha256Hex(bytes));
  });

  test('an image uploaded with it gets a placeholder, which it turns into a data URL', async () => {
    // 60 × 30, the left half green: what the data URL decodes to must show both.
    const png = await sharp({ create: { width: 60, height: 30, channels: 3, background: '#f0f0f0' } })
      .composite([
        {
          input: await sharp({ create: { width: 30, height: 30, channels: 3, background: '#00b000' } })
            .png()
            .toBuffer(),
          left: 0,
          top: 0,
        },
        { input: randomBytes(12), raw: { width: 2, height: 2, channels: 3 }, left: 58, top: 28 },
      ])
      .png()
      .toBuffer();
    await writeFile(join(app, 'flag.png'), png);
    await writeFile(
      join(app, 'placeholder.mjs'),
      `import { connect, fileSource } from '@wharf/sdk/node';
import { placeholderDataUrl } from '@wharf/sdk';
const wharf = connect({ url: process.env.WHARF_URL, key: process.env.WHARF_KEY });
if (process.argv[2] === 'upload') {
  const { asset } = await wharf.upload(await fileSource('flag.png'));
  console.log(asset.id);
} else {
  const asset = await wharf.assets.get(process.argv[2]);
  console.log(JSON.stringify({ color: asset.analysis.placeholder.color, url: placeholderDataUrl(asset.analysis.placeholder) }));
}
`,
    );
    const env = { WHARF_URL: w.url, WHARF_KEY: w.key };
    const id = (await run('placeholder.mjs', ['upload'], env)).trim();
    await w.wharf.core.jobs.drain();
    const out = JSON.parse(await run('placeholder.mjs', [id], env));
    assert.match(out.color, /^#[0-9a-f]{6}$/);
    const [, base64] = /^data:image\/png;base64,(.+)$/.exec(out.url) ?? [];
    assert.ok(base64, out.url.slice(0, 80));
    const { data, info } = await sharp(Buffer.from(base64, 'base64'))
      .raw()
      .toBuffer({ resolveWithObject: true });
    assert.ok(info.width <= 32 && info.width > info.height, `${info.width}×${info.height}: small, landscape`);
    const at = (x: number) =>
      [...data.subarray((Math.floor(info.height / 2) * info.width + x) * info.channels)].slice(0, 3);
    const [r, g, b] = at(1);
    assert.ok(g! > r! + 60 && g! > b! + 60, `left is green: ${at(1)}`);
    assert.ok(Math.min(...at(info.width - 2)) > 170, `right is light grey: ${at(info.width - 2)}`);
  });

  test('only its two entries are exported: a file that is in it cannot be imported by path', async () => {
    await writeFile(
      join(app, 'deep.mjs'),
      `try { await import('@wharf/sdk/dist/sdk/client.js'); console.log('imported'); }
catch (err) { console.log(err.code); }
`,
    );
    assert.equal((await run('deep.mjs')).trim(), 'ERR_PACKAGE_PATH_NOT_EXPORTED');
  });

  test('its wharf command uploads, and refuses the admin commands, which run with the server', async () => {
    const pkg = JSON.parse(await readFile(join(installed, 'package.json'), 'utf8'));
    const bin = join(installed, pkg.bin.wharf);
    const bytes = randomBytes(120_000);
    await writeFile(join(app, 'scan.bin'), bytes);
    const env = { WHARF_URL: w.url, WHARF_KEY: w.key };
    const out = JSON.parse(await run(bin, ['upload', 'scan.bin', '--json'], env));
    assert.equal(out.created, 1);
    assert.equal(out.files[0].sha256, sha256Hex(bytes));
    const asset = await api(w.url, w.key, 'GET', `/v1/assets/${out.files[0].asset_id}`);
    assert.equal(asset.body.sha256, sha256Hex(bytes));
    assert.match(await run(bin, ['--help']), /wharf upload PATH/);
    await assert.rejects(run(bin, ['keys', 'list'], env), (err: { code?: number; stderr?: string }) => {
      assert.equal(err.code, 2);
      assert.match(String(err.stderr), /"keys" is not a client command.*admin commands/s);
      return true;
    });
  });

  test('a page bundles its portable entry and uploads from Chromium with an upload token, by each flow', async () => {
    // Presigned and multipart PUTs go where the URLs point: Wharf's /s3 endpoint, or the bucket.
    if (onS3(w)) await allowOriginOnBucket(w, page.origin, ['PUT']);
    const token = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {
      subject: 'page-user',
      max_files: 4,
      expires_in: 600,
    });
    assert.equal(token.status, 201);
    browser = await launchChromium();
    const context = await browser.newContext();
    try {
      const tab = await context.newPage();
      await tab.goto(`${page.origin}/`);
      await tab.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
      const cases = [
        { strategy: 'direct', size: 300_000 },
        { strategy: 'presigned', size: 200_000 },
        // Three parts of 5 MiB, 5 MiB and 1 MiB, each a slice of the File.
        { strategy: 'multipart', size: 11 * 1024 * 1024 },
        { strategy: 'tus', size: 150_000 },
      ];
      for (const { strategy, size } of cases) {
        const out = await tab.evaluate(
          (options) =>
            (
              window as unknown as {
                sdkUpload(o: typeof options): Promise<{
                  local: string;
                  sent: number;
                  status: string;
                  strategy: string;
                  id: string;
                  sha256: string;
                }>;
              }
            ).sdkUpload(options),
          { url: w.url, token: token.body.secret as string, size, strategy },
        );
        assert.equal(out.status, 'created', strategy);
        assert.equal(out.strategy, strategy);
        assert.equal(out.sha256, out.local, strategy);
        assert.equal(out.sent, size, `${strategy}: progress counted every byte once`);
        const asset = await api(w.url, w.key, 'GET', `/v1/assets/${out.id}`);
        assert.equal(asset.body.sha256, out.local, strategy);
        assert.equal(asset.body.size, size, strategy);
        assert.equal(asset.body.name, `${strategy}.bin`);
        assert.equal(asset.body.subject, 'page-user');
      }
    } finally {
      await context.close();
    }
  });

  test('its types reach a TypeScript app through the exports map', async () => {
    await writeFile(
      join(app, 'check.ts'),
      `import { type Asset, connect, fileSource, type UploadResult } from '@wharf/sdk/node';
import { WharfApiError } from '@wharf/sdk';

const wharf = connect({ url: 'http://127.0.0.1:8080', key: 'k' });
export async function upload(path: string): Promise<Asset> {
  const result: UploadResult = await wharf.upload(await fileSource(path));
  return result.asset;
}
export const code = (err: unknown): string | undefined => (err instanceof WharfApiError ? err.code : undefined);
// @ts-expect-error an asset's size is a number
export const size: Asset['size'] = 'large';
`,
    );
    await writeFile(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          strict: true,
          noEmit: true,
          types: ['node'],
          typeRoots: [join(root, 'node_modules', '@types')],
        },
        files: ['check.ts'],
      }),
    );
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    // Throws with tsc's diagnostics on stdout when the types do not resolve or do not fit.
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: app, encoding: 'utf8' });
    // And the check can fail: a wrong use of the types is an error.
    await writeFile(
      join(app, 'check.ts'),
      `${await readFile(join(app, 'check.ts'), 'utf8')}\nexport const n: number = connect;\n`,
    );
    assert.throws(
      () => execFileSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: app, stdio: 'pipe' }),
      (err: { stdout?: Buffer }) => /TS2322/.test(String(err.stdout)),
    );
  });
});
