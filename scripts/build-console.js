// Builds the web console's front end (src/console/) into dist/console/ with esbuild: one
// script and one style sheet, content-hashed, and manifest.json naming them, which the server
// reads (src/http/console/bundle.ts). Run by `npm run build` and by `npm start` after tsc;
// plain JavaScript, like start.js. esbuild, Preact and Uppy are dev dependencies: the console
// is built where those are installed and shipped in dist/, as the compiled server is.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const ENTRY = 'src/console/main.tsx';

/** Builds the console into `outdir` (emptied first); returns the manifest. */
export async function buildConsole({ outdir = join(root, 'dist', 'console'), minify = true } = {}) {
  const { build } = await import('esbuild');
  await rm(outdir, { recursive: true, force: true });
  await mkdir(outdir, { recursive: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints: [ENTRY],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    // Browsers of the last few years; <dialog>, :focus-visible and ES2022 are in all of them.
    target: ['chrome110', 'firefox115', 'safari16'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    minify,
    entryNames: '[name]-[hash]',
    assetNames: '[name]-[hash]',
    loader: { '.svg': 'file', '.png': 'file', '.woff2': 'file' },
    define: { 'process.env.NODE_ENV': '"production"' },
    legalComments: 'eof',
    outdir,
    metafile: true,
    logLevel: 'warning',
  });
  const outputs = Object.entries(result.metafile.outputs);
  const entry = outputs.find(([, output]) => output.entryPoint === ENTRY);
  if (!entry?.[1].cssBundle) throw new Error('the console build made no script or no style sheet');
  const manifest = {
    entry: { js: basename(entry[0]), css: basename(entry[1].cssBundle) },
    files: outputs.map(([path]) => basename(path)).sort(),
  };
  await writeFile(join(outdir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await buildConsole();
}
