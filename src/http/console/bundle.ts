import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, extname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The manifest scripts/build-console.js writes beside the bundle. */
interface Manifest {
  entry: { js: string; css: string };
  files: string[];
}

/** One built file of the console, held in memory (the whole bundle is a few hundred KiB). */
export interface BundleFile {
  body: Buffer;
  type: string;
}

/** The console's front end as built: its page and its content-hashed files. */
export interface ConsoleBundle {
  /** The page: it loads the entry script and style sheet, and holds nothing else (no inline code). */
  html: string;
  files: ReadonlyMap<string, BundleFile>;
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.map': 'application/json; charset=utf-8',
};

/** Where `npm run build` puts the console: dist/console/ of the package, from src/ or dist/src/ alike. */
export function defaultConsoleDir(): string {
  const here = fileURLToPath(import.meta.url);
  let root = here.slice(0, here.lastIndexOf(`${sep}src${sep}`));
  if (basename(root) === 'dist') root = dirname(root);
  return join(root, 'dist', 'console');
}

/** The built console in `dir`, or undefined when it was not built there. */
export function loadConsoleBundle(dir: string): ConsoleBundle | undefined {
  const manifestPath = join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) return undefined;
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
  const files = new Map<string, BundleFile>();
  for (const name of manifest.files) {
    files.set(name, {
      body: readFileSync(join(dir, name)),
      type: TYPES[extname(name)] ?? 'application/octet-stream',
    });
  }
  const html = [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<title>Wharf console</title>',
    `<link rel="stylesheet" href="/console/assets/${manifest.entry.css}">`,
    `<script type="module" src="/console/assets/${manifest.entry.js}"></script>`,
    '</head>',
    '<body><div id="app"></div></body>',
    '</html>',
    '',
  ].join('\n');
  return { html, files };
}
