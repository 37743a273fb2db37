import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, copyFile, cp, mkdir, mkdtemp, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import sharp from 'sharp';
import { type Backing, provision } from '../helpers/deployment.js';
import { api } from '../helpers/http.js';
import { alive, cleanEnv, listening, REPO, type Running, run } from '../helpers/process.js';
import { freePort } from '../helpers/wharf.js';

/**
 * The README's run command, `npm start`, as a process tree: it builds only what changed, a
 * SIGTERM to npm stops the server, and a production install (`npm ci --omit=dev` plus a built
 * dist/) runs with no dev dependency. Each in a scratch copy of the package, so the
 * repository's own dist/ is left alone.
 */

const LISTENING = /"msg":"Wharf is listening/;
const cleanup: Array<() => Promise<unknown>> = [];
const processes: Running[] = [];

after(async () => {
  for (const p of processes)
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(processes.map((p) => p.exited));
  for (const step of cleanup.reverse()) await step();
});

/** The package as a checkout has it, without dist/; node_modules shared with the repository. */
async function checkoutCopy(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wharf-checkout-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  for (const file of [
    'package.json',
    'package-lock.json',
    '.npmrc',
    'tsconfig.json',
    'tsconfig.build.json',
  ]) {
    await copyFile(join(REPO, file), join(dir, file));
  }
  for (const folder of ['src', 'scripts', 'bin'])
    await cp(join(REPO, folder), join(dir, folder), { recursive: true });
  await symlink(join(REPO, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return dir;
}

async function deployment(): Promise<{ env: Record<string, string>; port: number; key: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'wharf-run-path-'));
  const backing: Backing = await provision();
  cleanup.push(async () => {
    await backing.release();
    await rm(dataDir, { recursive: true, force: true });
  });
  const port = await freePort();
  const key = `wharf-run-path-${Date.now()}-${port}`;
  return {
    port,
    key,
    env: {
      WHARF_HOST: '127.0.0.1',
      WHARF_PORT: String(port),
      WHARF_DATA_DIR: dataDir,
      WHARF_API_KEY: key,
      WHARF_JOB_INTERVAL_MS: '100',
      ...backing.env,
    },
  };
}

/** `npm start` in `dir`, as the README runs it; resolves once the server listens, with its pid. */
async function npmStart(
  dir: string,
  env: Record<string, string>,
): Promise<{ npm: Running; serverPid: number }> {
  const npm = run(env, ['npm', 'start'], dir);
  processes.push(npm);
  const [line] = await npm.waitFor(new RegExp(`.*${LISTENING.source}.*`));
  const serverPid = JSON.parse(line).pid as number;
  return { npm, serverPid };
}

/** SIGTERM to the npm process, as a supervisor sends it: npm, and the server under it, must be gone. */
async function stopNpm(npm: Running, serverPid: number, port: number): Promise<void> {
  npm.child.kill('SIGTERM');
  const exit = await npm.exited;
  assert.equal(exit.code, 0, `npm exited ${JSON.stringify(exit)}\n${npm.stderr()}`);
  assert.match(npm.stdout(), /"msg":"stopped"/);
  assert.equal(alive(serverPid), false, 'no server process is left');
  assert.equal(await listening(port), false, "the server's port is closed");
}

function parentOf(pid: number): number {
  // /proc/<pid>/stat: "pid (comm) state ppid …"; comm may hold spaces, so count from its end.
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
}

async function mtime(path: string): Promise<number> {
  return (await stat(path)).mtimeMs;
}

describe('npm start', () => {
  test('builds on the first start; a restart reuses dist/; an edited source is rebuilt; SIGTERM to npm stops the server', async () => {
    const dir = await checkoutCopy();
    const { env, port, key } = await deployment();
    const buildInfo = join(dir, 'dist', 'tsconfig.build.tsbuildinfo');

    const first = await npmStart(dir, env);
    assert.ok(existsSync(buildInfo), 'the first start built dist/');
    assert.ok(existsSync(join(dir, 'dist', 'console', 'manifest.json')), 'and the web console');
    assert.equal((await fetch(`http://127.0.0.1:${port}/console`)).status, 200);
    // The server is npm's own child: no shell between them to die and leave it orphaned.
    assert.equal(parentOf(first.serverPid), first.npm.child.pid);
    assert.equal((await api(`http://127.0.0.1:${port}`, key, 'GET', '/v1/assets')).status, 200);
    await stopNpm(first.npm, first.serverPid, port);

    const built = await mtime(buildInfo);
    const second = await npmStart(dir, env);
    assert.equal(await mtime(buildInfo), built, 'a restart with nothing changed does not run the compiler');
    await stopNpm(second.npm, second.serverPid, port);

    await appendFile(join(dir, 'src', 'runtime.ts'), '\n// edited after the build\n');
    const third = await npmStart(dir, env);
    assert.ok((await mtime(buildInfo)) > built, 'an edited source is compiled again');
    assert.match(readFileSync(join(dir, 'dist', 'src', 'runtime.js'), 'utf8'), /edited after the build/);
    await stopNpm(third.npm, third.serverPid, port);
  });
});

describe('a production install', () => {
  test('npm ci --omit=dev with a built dist/: npm start and the CLI run without any dev dependency, images are processed', async () => {
    const checkout = await checkoutCopy();
    // `npm run build` where the dev dependencies are: the server (tsc) and the web console (esbuild).
    const build = run({}, ['npm', 'run', 'build'], checkout);
    assert.equal((await build.exited).code, 0, build.stdout() + build.stderr());

    // What gets shipped: the package files and dist/, no sources, no node_modules.
    const prod = await mkdtemp(join(tmpdir(), 'wharf-production-'));
    cleanup.push(() => rm(prod, { recursive: true, force: true }));
    for (const file of ['package.json', 'package-lock.json', '.npmrc'])
      await copyFile(join(REPO, file), join(prod, file));
    for (const folder of ['scripts', 'bin'])
      await cp(join(REPO, folder), join(prod, folder), { recursive: true });
    await cp(join(checkout, 'dist'), join(prod, 'dist'), { recursive: true });
    // npm's real production install, from its cache when it can. Install scripts are skipped:
    // the one native addon compiled from source (better-sqlite3) takes a minute to build, so
    // the repository's build of it, for the same Node, is copied in instead.
    const installed = await new Promise<{ code: number; output: string }>((resolve) => {
      execFile(
        'npm',
        ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'],
        { cwd: prod, env: cleanEnv(), encoding: 'utf8' },
        (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, output: stdout + stderr }),
      );
    });
    assert.equal(installed.code, 0, installed.output);
    const addon = join('node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node');
    await mkdir(dirname(join(prod, addon)), { recursive: true });
    await copyFile(join(REPO, addon), join(prod, addon));

    for (const dev of ['typescript', 'tsx', '@biomejs/biome', 'playwright-core', 'esbuild', '@types/node']) {
      assert.equal(existsSync(join(prod, 'node_modules', dev)), false, `${dev} is not installed`);
    }
    for (let up = dirname(prod); up !== dirname(up); up = dirname(up)) {
      assert.equal(existsSync(join(up, 'node_modules')), false, `no node_modules above the install (${up})`);
    }

    const { env, port, key } = await deployment();
    const { npm, serverPid } = await npmStart(prod, env);
    assert.doesNotMatch(npm.stderr(), /tsc|TypeScript/, 'nothing was built');
    const base = `http://127.0.0.1:${port}`;
    const png = await sharp({ create: { width: 3, height: 2, channels: 3, background: '#0a0' } })
      .png()
      .toBuffer();
    const uploaded = await fetch(`${base}/v1/assets?name=dot.png`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'image/png' },
      body: new Uint8Array(png),
    });
    assert.equal(uploaded.status, 201, await uploaded.clone().text());
    const { asset } = (await uploaded.json()) as { asset: { id: string } };
    // The job runner (every 100 ms here) analyses it with sharp, from the production install.
    let analysed: { processing: string; analysis: { width?: number; height?: number } } | undefined;
    for (let i = 0; i < 600; i++) {
      analysed = (await api(base, key, 'GET', `/v1/assets/${asset.id}`)).body;
      if (analysed?.processing !== 'pending') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(analysed?.processing, 'done', JSON.stringify(analysed));
    assert.deepEqual([analysed?.analysis.width, analysed?.analysis.height], [3, 2]);

    // The web console, built with the rest, is served by the production install.
    const consolePage = await fetch(`${base}/console`);
    assert.equal(consolePage.status, 200);
    const script = /src="(\/console\/assets\/[^"]+\.js)"/.exec(await consolePage.text())?.[1];
    assert.ok(script, 'the page names its script');
    assert.equal((await fetch(base + script)).status, 200);

    const cli = run(env, [process.execPath, join(prod, 'bin', 'wharf.js'), 'keys', 'list', '--json'], prod);
    assert.equal((await cli.exited).code, 0, cli.stderr());
    assert.equal(JSON.parse(cli.stdout()).length, 1);
    // `npm run wharf`, as the docs give the commands: the compiled CLI here, where there is no tsx.
    const viaNpm = run(env, ['npm', 'run', '-s', 'wharf', '--', 'keys', 'list', '--json'], prod);
    assert.equal((await viaNpm.exited).code, 0, viaNpm.stderr());
    assert.equal(JSON.parse(viaNpm.stdout()).length, 1);
    if (!env.WHARF_DATABASE_URL) {
      // Without the server's environment a command refuses, rather than make a database in ./data.
      const { WHARF_DATA_DIR: _, ...elsewhere } = env;
      const lost = run(
        elsewhere,
        ['npm', 'run', '-s', 'wharf', '--', 'keys', 'create', '--role', 'admin'],
        prod,
      );
      assert.equal((await lost.exited).code, 1, lost.stdout());
      assert.match(lost.stderr(), /^wharf: There is no database at .*\/data\/wharf\.db: .*WHARF_DATA_DIR/);
      assert.equal(existsSync(join(prod, 'data')), false, 'no ./data made');
    }

    await stopNpm(npm, serverPid, port);
  });
});
