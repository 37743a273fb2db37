// `npm start`: brings dist/ up to date when the TypeScript compiler is installed (a checkout
// with its dev dependencies), then runs the server in this same process, so the signals npm
// forwards reach the server itself. Plain JavaScript: it runs before anything is compiled, and
// in a production install (npm ci --omit=dev, dist/ shipped) where neither tsc nor tsx exists.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const main = join(root, 'dist', 'src', 'main.js');
// Where incremental tsc keeps what it built (tsconfig.build.json's outDir and name).
const buildInfo = join(root, 'dist', 'tsconfig.build.tsbuildinfo');

function compiler() {
  try {
    const manifest = createRequire(import.meta.url).resolve('typescript/package.json');
    return join(manifest, '..', 'bin', 'tsc');
  } catch {
    return undefined;
  }
}

/** The newest modification time under `path`: files and directories (an added, removed or renamed file changes its directory's). */
function newest(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let latest = stat.mtimeMs;
  for (const entry of readdirSync(path)) latest = Math.max(latest, newest(join(path, entry)));
  return latest;
}

/**
 * Whether dist/ was built after the last change to what it is built from. Checking times costs
 * milliseconds; asking tsc costs a process and seconds on a busy machine, on every restart.
 */
function upToDate() {
  if (!existsSync(main) || !existsSync(buildInfo)) return false;
  const inputs = ['src', 'tsconfig.json', 'tsconfig.build.json'].map((name) => join(root, name));
  return Math.max(...inputs.map(newest)) < statSync(buildInfo).mtimeMs;
}

/** Incremental tsc: it compiles what changed. A signal meanwhile stops the build, and the start. */
function build(tsc) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], {
      cwd: root,
      stdio: 'inherit',
    });
    let stopped;
    const forward = (signal) => {
      stopped = signal;
      child.kill(signal);
    };
    process.once('SIGTERM', forward);
    process.once('SIGINT', forward);
    child.on('exit', (code, signal) => {
      process.off('SIGTERM', forward);
      process.off('SIGINT', forward);
      resolve({ ok: code === 0, stopped, code: code ?? signal });
    });
  });
}

// The web console's front end (scripts/build-console.js), built after the server and with it.
const consoleManifest = join(root, 'dist', 'console', 'manifest.json');

const tsc = compiler();
const consoleMissing = !existsSync(consoleManifest);
if (tsc && !upToDate()) {
  const built = await build(tsc);
  if (built.stopped) {
    process.stderr.write(`wharf: ${built.stopped} during the build: stopped.\n`);
    process.exit(0);
  }
  if (!built.ok) {
    process.stderr.write(`wharf: the TypeScript build failed (tsc: ${built.code}); see above.\n`);
    process.exit(1);
  }
  // tsc leaves its build info alone when nothing it emits changed (a file touched, not edited);
  // the next start must still find dist/ newer than its sources.
  const now = new Date();
  utimesSync(buildInfo, now, now);
  await buildWebConsole();
} else if (tsc && consoleMissing) {
  await buildWebConsole();
}

/** esbuild is a dev dependency, installed wherever tsc is. */
async function buildWebConsole() {
  const { buildConsole } = await import('./build-console.js');
  try {
    await buildConsole();
  } catch (err) {
    process.stderr.write(`wharf: the web console's build failed: ${err.message}\n`);
    process.exit(1);
  }
}
if (!existsSync(main)) {
  process.stderr.write(
    'wharf: dist/ is not built and the TypeScript compiler is not installed (a production install?). ' +
      'Build it where the dev dependencies are installed (npm run build) and ship dist/ with the package; ' +
      'see docs/deployment.md.\n',
  );
  process.exit(1);
}
await import(pathToFileURL(main).href);
