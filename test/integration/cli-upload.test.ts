import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import {
  appendFile,
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { connect, type Wharf } from '../../src/sdk/node.js';
import { storesOnS3 } from '../helpers/deployment.js';
import { api, sha256Hex } from '../helpers/http.js';
import { freePort, startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * The upload CLI (wharf upload, sync, ls, get, rm) run as a process against a real server, on
 * both deployments: folders and globs, sync reruns, skipping held content, resuming after SIGINT
 * and SIGKILL, tokens, --json, plain lines, and clear errors with their exit codes.
 */

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
// tsx by URL: the CLI runs in scratch folders (globs are relative to them), where a bare
// `--import tsx` would not resolve.
const TSX = import.meta.resolve('tsx');
const MiB = 1024 * 1024;

let w: TestWharf;
let wharf: Wharf;
let scratch: string;
/** Every test's own XDG dirs (config and resume state) live here. */
let home: string;

before(async () => {
  w = await startWharf();
  wharf = connect({ url: w.url, key: w.key });
  scratch = await mkdtemp(join(tmpdir(), 'wharf-cli-upload-'));
  home = join(scratch, 'home');
});
after(async () => {
  await w?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment without any WHARF_* or XDG_* of the developer's shell. */
function env(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('WHARF_') && !name.startsWith('XDG_')) out[name] = value;
  }
  return {
    ...out,
    XDG_CONFIG_HOME: join(home, 'config'),
    XDG_STATE_HOME: join(home, 'state'),
    WHARF_URL: w.url,
    WHARF_KEY: w.key,
    ...extra,
  };
}

interface StartOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /**
   * Run it without root's power to read and search any folder (CAP_DAC_OVERRIDE and
   * CAP_DAC_READ_SEARCH, dropped by util-linux's setpriv), so a folder's permissions hold for
   * it as they do for any user. Only when the test runs as root (CI): others have no such power.
   */
  bounded?: boolean;
  /** A descriptor for its stdout (one open on /dev/full), instead of a pipe read into `stdout`. */
  stdout?: number;
}

function start(args: string[], options: StartOptions = {}) {
  const command = [process.execPath, '--import', TSX, MAIN, ...args];
  if (options.bounded && process.getuid?.() === 0) {
    command.unshift('setpriv', '--bounding-set', '-dac_override,-dac_read_search');
  }
  return spawn(command[0]!, command.slice(1), {
    cwd: options.cwd ?? scratch,
    env: env(options.env ?? {}),
    stdio: ['ignore', options.stdout ?? 'pipe', 'pipe'],
  });
}

function finished(child: ChildProcess): Promise<Ran> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  return new Promise((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

function cli(args: string[], options: StartOptions = {}) {
  return finished(start(args, options));
}

/**
 * A run on a terminal, as a user at one sees it: util-linux's script(1) gives it a
 * pseudo-terminal (stderr a TTY, so the CLI draws its bars), and hands back what the terminal
 * received, escape sequences and all (stdout and stderr are both the terminal there).
 */
function onTerminal(args: string[]) {
  const quote = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`;
  const command = [process.execPath, '--import', TSX, MAIN, ...args].map(quote).join(' ');
  // A terminal 200 columns wide: a new one is 0 wide, and the bars would wrap.
  return finished(
    spawn('script', ['-qfec', `stty cols 200 rows 50; exec ${command}`, '/dev/null'], {
      cwd: scratch,
      env: env({}),
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

async function cliJson<T = unknown>(args: string[], options: { cwd?: string } = {}): Promise<T> {
  const ran = await cli([...args, '--json'], options);
  assert.equal(ran.code, 0, `wharf ${args.join(' ')}: ${ran.stderr}`);
  return JSON.parse(ran.stdout) as T;
}

interface Outcome {
  path: string;
  name: string;
  size: number;
  status: string;
  asset_id?: string;
  asset_name?: string;
  sha256?: string;
  bytes_sent?: number;
  bytes_resumed?: number;
  resumed?: boolean;
  strategy?: string;
  error?: { code: string; message: string };
}
interface TransferJson {
  files: Outcome[];
  created: number;
  exists: number;
  failed: number;
  bytes_sent: number;
  bytes_resumed: number;
}

async function folder(name: string, files: Record<string, Buffer>): Promise<string> {
  const dir = join(scratch, name);
  for (const [path, bytes] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), bytes);
  }
  return dir;
}

async function bytesOf(id: string): Promise<Buffer> {
  const download = await wharf.assets.download(id);
  return Buffer.from(await new Response(download.body).arrayBuffer());
}

/** Waits for `check` to hold, asking again every 50 ms (a condition, not a duration). */
async function until<T>(check: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 2400; i++) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

/**
 * Waits until a CLI run has saved its resume state in `stateDir` and stored its first part;
 * returns that state (the multipart upload's id).
 */
async function firstPartStored(stateDir: string): Promise<{ id: string }> {
  const record = await until(async () => {
    const names = await readdir(stateDir).catch(() => []);
    const name = names.find((n) => n.endsWith('.json'));
    if (!name) return undefined;
    return JSON.parse(await readFile(join(stateDir, name), 'utf8')).record as { id: string };
  }, 'the resume state');
  await until(async () => {
    const parts = await wharf.multipart.listParts(record.id);
    return parts.length > 0 ? parts : undefined;
  }, 'a stored part');
  return record;
}

describe('wharf upload and sync', () => {
  test('a folder (with its subfolders) and a glob, concurrently; --json describes each file', async () => {
    const a = randomBytes(1000);
    const c = randomBytes(300_000);
    const dir = await folder('upload-set', { 'album/a.bin': a, 'album/deep/c.bin': c });
    await writeFile(join(dir, 'x.txt'), `x ${randomBytes(8).toString('hex')}`);
    await writeFile(join(dir, 'y.txt'), `y ${randomBytes(8).toString('hex')}`);
    await writeFile(join(dir, 'z.md'), 'not matched');
    const out = await cliJson<TransferJson>(['upload', 'album', '*.txt', '-j', '3'], { cwd: dir });
    assert.deepEqual(out.files.map((f) => f.name).sort(), ['a.bin', 'c.bin', 'x.txt', 'y.txt']);
    assert.equal(out.created, 4);
    assert.equal(out.failed, 0);
    const c1 = out.files.find((f) => f.name === 'c.bin')!;
    assert.equal(c1.sha256, sha256Hex(c));
    assert.ok((await bytesOf(c1.asset_id!)).equals(c));
    assert.equal(out.bytes_sent, 1000 + 300_000 + 2 * 18);
  });

  test('sync: a rerun sends nothing; a changed file is uploaded again; held content is skipped', async () => {
    const held = randomBytes(5000);
    // The account already holds this content, under another name.
    const before = await wharf.upload(held, { name: 'elsewhere.bin' });
    const dir = await folder('synced', {
      'one.bin': randomBytes(2000),
      'sub/two.bin': randomBytes(70_000),
      'held.bin': held,
    });
    const first = await cliJson<TransferJson>(['sync', dir]);
    assert.equal(first.created, 2);
    assert.equal(first.exists, 1);
    const skipped = first.files.find((f) => f.name === 'held.bin')!;
    assert.equal(skipped.status, 'exists');
    assert.equal(skipped.asset_id, before.asset.id);
    assert.equal(skipped.bytes_sent, 0);

    const again = await cliJson<TransferJson>(['sync', dir]);
    assert.equal(again.created, 0);
    assert.equal(again.exists, 3);
    assert.equal(again.bytes_sent, 0, 'a rerun uploads nothing');

    await appendFile(join(dir, 'sub', 'two.bin'), 'changed');
    const changed = await cliJson<TransferJson>(['sync', dir]);
    assert.deepEqual(changed.files.map((f) => [f.name, f.status]).sort(), [
      ['held.bin', 'exists'],
      ['one.bin', 'exists'],
      ['two.bin', 'created'],
    ]);
    assert.equal(changed.bytes_sent, 70_000 + 'changed'.length);
  });

  test('a folder’s symbolic links are followed, to files and to folders (each once); a link to nothing fails on its own', async () => {
    const outside = await folder('linked-outside', {
      'target.bin': randomBytes(700),
      'shelf/b.bin': randomBytes(800),
    });
    const dir = await folder('linked', { 'a.bin': randomBytes(600) });
    await symlink(join(outside, 'target.bin'), join(dir, 'link.bin'));
    await symlink(join(outside, 'shelf'), join(dir, 'shelf-link'));
    // A link back up the tree: walked once, not for ever.
    await symlink(dir, join(dir, 'loop'));
    const first = await cliJson<TransferJson>(['upload', dir]);
    assert.deepEqual(first.files.map((f) => [f.name, f.status]).sort(), [
      ['a.bin', 'created'],
      ['b.bin', 'created'],
      ['link.bin', 'created'],
    ]);
    const linked = first.files.find((f) => f.name === 'link.bin')!;
    assert.ok((await bytesOf(linked.asset_id!)).equals(await readFile(join(outside, 'target.bin'))));

    await symlink(join(outside, 'nothing-there.bin'), join(dir, 'dangling.bin'));
    const again = await cli(['sync', dir, '--json']);
    assert.equal(again.code, 1, again.stderr);
    const out = JSON.parse(again.stdout) as TransferJson;
    assert.deepEqual(out.files.map((f) => [f.name, f.status, f.error?.code]).sort(), [
      ['a.bin', 'exists', undefined],
      ['b.bin', 'exists', undefined],
      ['dangling.bin', 'failed', 'ENOENT'],
      ['link.bin', 'exists', undefined],
    ]);
  });

  test('a folder that cannot be read fails on its own line; the other files are uploaded', async () => {
    const dir = await folder('unreadable', {
      'ok.txt': randomBytes(300),
      'sub/x.txt': randomBytes(400),
      'locked/y.txt': randomBytes(500),
    });
    await chmod(join(dir, 'locked'), 0o000);
    const ran = await cli(['upload', dir, '--progress', 'plain'], { bounded: true });
    await chmod(join(dir, 'locked'), 0o755);
    assert.equal(ran.code, 1, ran.stderr);
    assert.match(ran.stdout, /^created\s+ok\.txt\s/m);
    assert.match(ran.stdout, /^created\s+x\.txt\s/m);
    // The code once, then the system's message without it.
    assert.match(ran.stdout, /^failed\s+locked\s+0 B\s+EACCES permission denied, scandir .*locked/m);
    assert.match(ran.stdout, /^2 uploaded, 0 already there, 1 failed;/m);
  });

  test('without a terminal: one plain line per file and a summary', async () => {
    const dir = await folder('plain', { 'p.bin': randomBytes(100) });
    const ran = await cli(['upload', join(dir, 'p.bin')]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.match(ran.stdout, /^created\s+p\.bin\s+100 B\s+[0-9a-f-]{36}$/m);
    assert.match(ran.stdout, /^1 uploaded, 0 already there, 0 failed; 100 B sent$/m);
    assert.ok(!(ran.stdout + ran.stderr).includes('\u001b['), 'no terminal escapes');
  });

  test('content already held under another name: the line and --json name that asset, which get and rm take', async () => {
    const bytes = randomBytes(64);
    // A first name that looks like an option (the finding's): `get` and `rm` take it after `--`.
    const dir = await folder('held-elsewhere', { '--': bytes, '-leading.txt': bytes });
    const first = await cliJson<TransferJson>(['upload', join(dir, '--')]);
    const id = first.files[0]!.asset_id!;
    // Created, the asset has the file's name.
    assert.deepEqual([first.files[0]!.status, first.files[0]!.asset_name], ['created', '--']);
    const ran = await cli(['upload', join(dir, '-leading.txt')]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.match(
      ran.stdout,
      new RegExp(`^exists {6}-leading\\.txt {2}64 B {2}${id} \\(asset named "--"\\)$`, 'm'),
    );
    const out = await cliJson<TransferJson>(['upload', join(dir, '-leading.txt')]);
    const file = out.files[0]!;
    assert.deepEqual(
      [file.name, file.status, file.asset_id, file.asset_name],
      ['-leading.txt', 'exists', id, '--'],
    );
    // The name it gives is one `get` finds (the file's own is no asset's).
    const target = join(dir, 'fetched.bin');
    const got = await cli(['get', '-o', target, '--', file.asset_name!]);
    assert.equal(got.code, 0, got.stderr);
    assert.ok((await readFile(target)).equals(bytes));
    const removed = await cli(['rm', '--json', '--', file.asset_name!]);
    assert.deepEqual(JSON.parse(removed.stdout).deleted, [id], removed.stderr);
  });

  test('files of one name in different folders: a line each, told apart by their paths; --json has an entry each', async () => {
    const dir = await folder('same-name', {
      'a/same.bin': randomBytes(1000),
      'b/same.bin': randomBytes(2000),
    });
    const ran = await cli(['upload', dir, '--progress', 'plain']);
    assert.equal(ran.code, 0, ran.stderr);
    const ids = [
      ...ran.stdout.matchAll(/^created {5}same\.bin \(([ab])\/same\.bin\) {2}\S+ \S+ {2}([0-9a-f-]{36})$/gm),
    ];
    assert.deepEqual(ids.map((m) => m[1]).sort(), ['a', 'b'], ran.stdout);
    const out = await cliJson<TransferJson>(['upload', dir]);
    assert.deepEqual(
      out.files.map((f) => [f.path, f.name, f.status, f.asset_id]),
      ids
        .sort((x, y) => (x[1]! < y[1]! ? -1 : 1))
        .map((m) => [join(dir, m[1]!, 'same.bin'), 'same.bin', 'exists', m[2]]),
    );
  });

  test('on a terminal: files of one name each have their bar and their line, and the whole run counts both', async () => {
    const dir = await folder('same-name-tty', {
      'a/same.bin': randomBytes(MiB),
      'b/same.bin': randomBytes(MiB),
    });
    // Slow enough to draw the bars while both are in flight (8 times a second).
    const ran = await onTerminal(['upload', dir, '--limit-rate', '1M', '-j', '2']);
    assert.equal(ran.code, 0, ran.stdout + ran.stderr);
    const screen = ran.stdout;
    assert.match(screen, /created {5}same\.bin \(a\/same\.bin\) {2}1\.0 MiB {2}[0-9a-f-]{36}/);
    assert.match(screen, /created {5}same\.bin \(b\/same\.bin\) {2}1\.0 MiB {2}[0-9a-f-]{36}/);
    assert.match(screen, /2 uploaded, 0 already there, 0 failed; 2\.0 MiB sent/);
    // Before either is done, the run's bar counts the bytes of both: 2 MiB in all, not 1 MiB.
    const unit = { B: 1, KiB: 1024, MiB: MiB } as const;
    const counted = [
      ...screen.slice(0, screen.indexOf('created')).matchAll(/2 file\(s\) +[█░]+ +([\d.]+) (B|KiB|MiB) \//g),
    ].map((m) => Number(m[1]) * unit[m[2] as keyof typeof unit]);
    assert.ok(
      Math.max(...counted) >= 1.5 * MiB,
      `the run's bar showed at most ${Math.max(...counted)} bytes`,
    );
  });

  test('a name with a control or bidirectional character is shown escaped, on its one line; the server’s message without its request’s field path', async () => {
    const dir = await folder('odd-names', {
      'new\nline.txt': randomBytes(10),
      '\u202Etxt.exe': randomBytes(20),
    });
    const ran = await cli(['upload', dir, '--progress', 'plain']);
    assert.equal(ran.code, 1, ran.stderr);
    // A line per file as it ends: the two uploads run at once, so in either order.
    const lines = ran.stdout.split('\n');
    assert.deepEqual([...lines.slice(0, 2)].sort(), [
      'failed      \\u202etxt.exe  20 B  INVALID_NAME The file name contains invisible or bidirectional-override characters.',
      'failed      new\\u000aline.txt  10 B  INVALID_NAME The file name contains control characters (NUL, CR, LF, …).',
    ]);
    assert.deepEqual(lines.slice(2), ['0 uploaded, 0 already there, 2 failed; 0 B sent', '']);
    // JSON escapes what it must itself: the names as they are.
    const json = await cli(['upload', dir, '--json']);
    const out = JSON.parse(json.stdout) as TransferJson;
    assert.deepEqual(
      out.files.map((f) => [f.name, f.error?.message]),
      [
        ['new\nline.txt', 'The file name contains control characters (NUL, CR, LF, …).'],
        ['\u202Etxt.exe', 'The file name contains invisible or bidirectional-override characters.'],
      ],
    );
  });

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGKILL'] as const) {
    test(`a large upload cut off by ${signal} resumes on the next run: the asset is byte-identical`, async () => {
      const bytes = randomBytes(16 * MiB);
      const dir = await folder(`resume-${signal}`, { 'big.bin': bytes });
      const args = ['upload', join(dir, 'big.bin'), '--multipart-threshold', '6M', '--part-size', '5M'];
      const stateDir = join(home, 'state', 'wharf', 'uploads');
      await rm(stateDir, { recursive: true, force: true });
      // A bandwidth cap keeps it in flight long enough to be cut after its first part.
      const child = start([...args, '--limit-rate', '2M', '-j', '1']);
      const running = finished(child);
      const { id } = await firstPartStored(stateDir);
      child.kill(signal);
      const cut = await running;
      if (signal !== 'SIGKILL') {
        // SIGTERM as Ctrl-C (and as get): it was Node's default, an end without a word.
        assert.equal(cut.code, 130, `${cut.signal} ${cut.stderr}`);
        assert.match(cut.stdout, /^interrupted\s+big\.bin\b.*run the same command again to resume/m);
      } else {
        assert.equal(cut.signal, 'SIGKILL');
      }
      assert.equal((await wharf.assets.list({ prefix: 'big.bin' })).data.length, 0, 'no asset yet');
      const stored = (await wharf.multipart.listParts(id)).reduce((sum, p) => sum + p.Size, 0);
      if (signal !== 'SIGKILL') {
        // What it sent before the cut, at least the parts stored (it said 0 B, a hunt); shown
        // to a tenth of a MiB.
        const sent = /; ([\d.]+) MiB sent$/m.exec(cut.stdout);
        assert.ok(sent && Number(sent[1]) * MiB >= stored - 0.05 * MiB, `${stored} stored: ${cut.stdout}`);
      }

      const resumed = await cliJson<TransferJson>(args);
      const file = resumed.files[0]!;
      assert.equal(file.status, 'created');
      assert.equal(file.strategy, 'multipart');
      assert.equal(file.resumed, true);
      // This run sent the rest only; what the first stored is counted apart (it counted as sent).
      assert.deepEqual(
        [file.bytes_resumed, file.bytes_sent, resumed.bytes_resumed, resumed.bytes_sent],
        [stored, 16 * MiB - stored, stored, 16 * MiB - stored],
      );
      assert.ok((await bytesOf(file.asset_id!)).equals(bytes), 'byte-identical');
      assert.deepEqual(await readdir(stateDir), [], 'the state is gone once done');
      await wharf.assets.delete(file.asset_id!);
    });
  }
});

describe('a large upload cut off, its file then changed', () => {
  test('the next run gives up the upload begun before (its reservation freed, its state gone) and starts afresh', async () => {
    const bytes = randomBytes(16 * MiB);
    const dir = await folder('resume-changed', { 'changed.bin': bytes });
    const path = join(dir, 'changed.bin');
    const args = ['upload', path, '--multipart-threshold', '6M', '--part-size', '5M'];
    const stateDir = join(home, 'state', 'wharf', 'uploads');
    await rm(stateDir, { recursive: true, force: true });
    const reserved = async () => (await wharf.account.get()).usage.bytes_reserved;
    const before = await reserved();
    const child = start([...args, '--limit-rate', '2M', '-j', '1']);
    const running = finished(child);
    const old = await firstPartStored(stateDir);
    child.kill('SIGINT');
    const cut = await running;
    assert.equal(cut.code, 130, cut.stderr);
    assert.equal(await reserved(), before + 16 * MiB, 'kept to be resumed, it holds its size');
    // One byte changed, in place (as `dd conv=notrunc` does): the size stays, the time moves on.
    const now = Buffer.from(bytes);
    now[11] = now[11]! ^ 0xff;
    await writeFile(path, now);

    const again = await cliJson<TransferJson>(args);
    const file = again.files[0]!;
    assert.deepEqual([file.status, file.strategy, file.resumed], ['created', 'multipart', false]);
    assert.ok((await bytesOf(file.asset_id!)).equals(now), 'the asset is what the file now holds');
    await assertGivenUp(old.id, before, stateDir);
    await wharf.assets.delete(file.asset_id!);
  });
});

/**
 * The upload begun before was cancelled on the server, the bytes it reserved are free again
 * (`before`: the account's reservation before it began) and no resume state is left.
 */
async function assertGivenUp(uploadId: string, before: number, stateDir: string): Promise<void> {
  const ended = await wharf.uploads.get(uploadId);
  assert.equal(ended.status, 'expired', 'the old upload ended');
  assert.equal(ended.ended?.reason, 'cancelled');
  assert.equal((await wharf.account.get()).usage.bytes_reserved, before, 'its reservation was given back');
  assert.deepEqual(await readdir(stateDir), [], 'no state is left');
}

describe('a large upload cut off, its file then going presigned', () => {
  // Cut short below the threshold, or run again with a higher one: only the multipart flow read
  // the resume state, so the upload begun before stayed pending (its size reserved) and its state
  // file stayed (a hunt).
  for (const { how, shrink, threshold } of [
    { how: 'the file cut short below the threshold', shrink: true, threshold: '6M' },
    { how: 'the same file with a higher --multipart-threshold', shrink: false, threshold: '64M' },
  ]) {
    test(`${how}: the upload begun before is given up and its state removed`, async () => {
      const bytes = randomBytes(16 * MiB);
      const dir = await folder('resume-presigned', { 'now-small.bin': bytes });
      const path = join(dir, 'now-small.bin');
      const stateDir = join(home, 'state', 'wharf', 'uploads');
      await rm(stateDir, { recursive: true, force: true });
      const before = (await wharf.account.get()).usage.bytes_reserved;
      const child = start([
        'upload',
        path,
        '--multipart-threshold',
        '6M',
        '--part-size',
        '5M',
        '--limit-rate',
        '2M',
        '-j',
        '1',
      ]);
      const running = finished(child);
      const old = await firstPartStored(stateDir);
      child.kill('SIGINT');
      const cut = await running;
      assert.equal(cut.code, 130, cut.stderr);
      if (shrink) await truncate(path, 2 * MiB);

      const again = await cliJson<TransferJson>(['upload', path, '--multipart-threshold', threshold]);
      const file = again.files[0]!;
      assert.deepEqual([file.status, file.strategy], ['created', 'presigned']);
      await assertGivenUp(old.id, before, stateDir);
      await wharf.assets.delete(file.asset_id!);
    });
  }
});

describe('a server that is busy', () => {
  // Its own server: one upload body at a time for the account, so files sent four at once are
  // refused (SlowDown, 503 with Retry-After) while another is in flight.
  let busy: TestWharf;
  before(async () => {
    busy = await startWharf({ env: { WHARF_MAX_UPLOAD_STREAMS_PER_ACCOUNT: '1' } });
  });
  after(async () => {
    await busy?.close();
  });

  test('refusals that say "busy" are retried after Retry-After until every file is in', async () => {
    // Six at once, each PUT held two seconds by the bandwidth cap: while one is sent, the others
    // are refused and told to come back in 5 s, and each round lets one in. Three quick retries
    // (as once) left the last two failed with SlowDown.
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 6; i++) files[`busy-${i}.bin`] = randomBytes(MiB);
    const dir = await folder('busy', files);
    const ran = await cli(['upload', dir, '-j', '6', '--limit-rate', '512K', '--json'], {
      env: { WHARF_URL: busy.url, WHARF_KEY: busy.key },
    });
    const out = JSON.parse(ran.stdout) as TransferJson;
    assert.deepEqual(
      out.files.filter((f) => f.status !== 'created').map((f) => [f.name, f.error?.code]),
      [],
    );
    assert.equal(ran.code, 0, ran.stderr);
    assert.equal(out.created, 6);
  });
});

describe('a file that changes while it is sent', () => {
  test('one that grows meanwhile (a log): what it held when looked at is hashed, sent and reported', async () => {
    const path = join(await folder('growing', { 'growing.log': randomBytes(4 * MiB) }), 'growing.log');
    // Appended to all along, from before the run lists it until it has ended: read to its end
    // to hash it and stat'ed again to send it, it failed CHECKSUM_MISMATCH, or was reported at
    // the size it had when listed.
    let writing = true;
    const appending = (async () => {
      while (writing) {
        await appendFile(path, randomBytes(16 * 1024));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const ran = await cli(['upload', path, '--json']);
    writing = false;
    await appending;
    assert.equal(ran.code, 0, ran.stdout);
    const file = (JSON.parse(ran.stdout) as TransferJson).files[0]!;
    assert.equal(file.status, 'created');
    const asset = await wharf.assets.get(file.asset_id!);
    assert.equal(file.size, asset.size, 'the size reported is the one stored');
    assert.equal(file.sha256, asset.sha256);
    const now = await readFile(path);
    assert.ok(now.length > asset.size, 'it grew after it was looked at');
    assert.ok((await bytesOf(asset.id)).equals(now.subarray(0, asset.size)), 'its first bytes, as they were');
  });

  test('cut short mid-upload: failed with SOURCE_CHANGED (not a network error), and no state is left', async () => {
    const dir = await folder('vanishing', { 'gone.bin': randomBytes(16 * MiB) });
    const stateDir = join(home, 'state', 'wharf', 'uploads');
    await rm(stateDir, { recursive: true, force: true });
    const args = ['upload', join(dir, 'gone.bin'), '--multipart-threshold', '6M', '--part-size', '5M'];
    // A bandwidth cap keeps it in flight long enough to delete the file after its first part.
    const child = start([...args, '--limit-rate', '4M', '-j', '1', '--json']);
    const running = finished(child);
    await firstPartStored(stateDir);
    // Emptied in place (a log rotated, a file rewritten): the parts still being read come up
    // short. (A deletion shows only to parts opened after it, and here all four are open from
    // the start; sdk.test.ts deletes one.)
    await truncate(join(dir, 'gone.bin'), 0);
    const ran = await running;
    assert.equal(ran.code, 1, ran.stderr);
    const file = (JSON.parse(ran.stdout) as TransferJson).files[0]!;
    assert.equal(file.status, 'failed');
    assert.equal(file.error?.code, 'SOURCE_CHANGED');
    assert.deepEqual(await readdir(stateDir), [], 'the state is gone');
  });
});

describe('a file Wharf verifies after completion (storage that cannot attest a SHA-256)', () => {
  // Every object on Ceph is verified by a job when WHARF_INLINE_VERIFY_MAX is 0: the path a file
  // over 16 MiB takes, shown with small ones. The test runs the jobs (drain) when it chooses.
  let v: TestWharf;
  const skip =
    !storesOnS3 && 'the embedded store records the SHA-256 as it writes: nothing is verified later';
  before(async () => {
    if (storesOnS3) v = await startWharf({ env: { WHARF_INLINE_VERIFY_MAX: '0' } });
  });
  after(async () => {
    await v?.close();
  });
  const asV = () => ({ env: { WHARF_URL: v.url, WHARF_KEY: v.key } });

  /** The asset named `name` once recorded (verifying, since no job has run). */
  const recorded = (name: string) =>
    until(async () => {
      const page = await api(v.url, v.key, 'GET', `/v1/assets?prefix=${name}`);
      return page.body.data?.[0] as { id: string; status: string } | undefined;
    }, `${name} recorded`);

  /** Runs the server's jobs until `run` ends (the verify job among them). */
  async function drainUntil(run: Promise<Ran>): Promise<Ran> {
    let over = false;
    const ran = run.finally(() => {
      over = true;
    });
    while (!over) {
      await v.wharf.core.jobs.drain();
      await new Promise((r) => setTimeout(r, 100));
    }
    return ran;
  }

  test('created only once verified: the run waits for the job; --no-wait reports it verifying', {
    skip,
  }, async () => {
    const dir = await folder('verify-ok', { 'verify-ok.bin': randomBytes(64 * 1024) });
    const child = start(['upload', join(dir, 'verify-ok.bin'), '--json'], asV());
    const running = finished(child);
    const asset = await recorded('verify-ok');
    assert.equal(asset.status, 'verifying');
    // Recorded but not checked: the run has not reported it yet (it used to exit 0 here, `created`).
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(child.exitCode, null, 'still waiting for the verification');
    const ran = await drainUntil(running);
    assert.equal(ran.code, 0, ran.stderr);
    const out = JSON.parse(ran.stdout) as TransferJson & { verifying: number };
    assert.equal(out.files[0]!.status, 'created');
    assert.equal(out.files[0]!.asset_id, asset.id);
    assert.equal(out.created, 1);
    assert.equal(out.verifying, 0);
    assert.equal((await api(v.url, v.key, 'GET', `/v1/assets/${asset.id}`)).body.status, 'ready');

    // Told not to wait: it says what it knows, and exits at once.
    await writeFile(join(dir, 'verify-later.bin'), randomBytes(64 * 1024));
    const later = await cli(['upload', join(dir, 'verify-later.bin'), '--no-wait'], asV());
    assert.equal(later.code, 0, later.stderr);
    assert.match(later.stdout, /^verifying {3}verify-later\.bin {2}64\.0 KiB {2}[0-9a-f-]{36}\n/m);
    assert.match(later.stdout, /0 uploaded, 0 already there, 1 verifying \(not checked yet\), 0 failed/);
    await v.wharf.core.jobs.drain();
  });

  test('a file changed while it was sent: the job rejects it, and the file fails CHECKSUM_MISMATCH, exit 1', {
    skip,
  }, async () => {
    const path = join(
      await folder('verify-bad', { 'verify-bad.bin': randomBytes(2 * MiB) }),
      'verify-bad.bin',
    );
    const { body: latest } = await api(v.url, v.key, 'GET', '/v1/events?type=upload.created');
    // 512 KiB a second: the last half MiB is read two seconds or more after the upload starts.
    const child = start(['upload', path, '--limit-rate', '512K', '--json'], asV());
    const running = finished(child);
    // Declared (so hashed): its end is rewritten in place, same size, before it is read.
    await until(async () => {
      const page = await api(v.url, v.key, 'GET', `/v1/events?type=upload.created&after=${latest.cursor}`);
      return page.body.data?.length ? true : undefined;
    }, 'the upload declared');
    const handle = await open(path, 'r+');
    await handle.write(randomBytes(512 * 1024), 0, 512 * 1024, 2 * MiB - 512 * 1024);
    await handle.close();
    const ran = await drainUntil(running);
    assert.equal(ran.code, 1, ran.stdout);
    const out = JSON.parse(ran.stdout) as TransferJson;
    assert.equal(out.files[0]!.status, 'failed');
    assert.equal(out.files[0]!.error?.code, 'CHECKSUM_MISMATCH', ran.stdout);
    assert.equal(out.created, 0);
    assert.deepEqual((await api(v.url, v.key, 'GET', '/v1/assets?prefix=verify-bad')).body.data, []);
  });
});

describe('wharf ls, get, rm', () => {
  test('list (--json and lines), download by id and by name (verified), delete', async () => {
    const bytes = randomBytes(40_000);
    const dir = await folder('lsgetrm', { 'report-2026.bin': bytes });
    const uploaded = await cliJson<TransferJson>(['upload', join(dir, 'report-2026.bin')]);
    const id = uploaded.files[0]!.asset_id!;

    const listed = await cliJson<Array<{ id: string; name: string }>>(['ls', 'report-']);
    assert.deepEqual(
      listed.map((a) => [a.id, a.name]),
      [[id, 'report-2026.bin']],
    );
    const lines = await cli(['ls', 'report-']);
    assert.match(lines.stdout, new RegExp(`^${id}\\s+39\\.1 KiB\\s+\\S+\\s+report-2026\\.bin$`, 'm'));

    const byId = join(scratch, 'by-id.bin');
    const got = await cliJson<{ path: string; size: number; sha256: string }>(['get', id, '-o', byId]);
    assert.equal(got.size, 40_000);
    assert.ok((await readFile(byId)).equals(bytes));
    const named = await cli(['get', 'report-2026.bin'], { cwd: scratch });
    assert.equal(named.code, 0, named.stderr);
    assert.ok((await readFile(join(scratch, 'report-2026.bin'))).equals(bytes));

    assert.deepEqual(await cliJson(['rm', id]), { deleted: [id], failed: [] });
    assert.deepEqual(await cliJson(['ls', 'report-']), []);
    const gone = await cli(['rm', id]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /NOT_FOUND/);
  });
});

describe('wharf get and rm by a name the server keeps in another form, or shaped as an id', () => {
  test('an NFD name finds its asset (stored NFC); a name that looks like a UUID is found by name when no asset has that id', async () => {
    const tag = randomBytes(4).toString('hex');
    const nfd = `cafe\u0301-${tag}.txt`;
    const accented = randomBytes(300);
    const stored = await wharf.upload(accented, { name: nfd });
    assert.equal(stored.asset.name, nfd.normalize('NFC'), 'the server keeps it as NFC');
    const target = join(scratch, `nfd-${tag}.bin`);
    assert.equal((await cli(['get', nfd, '-o', target])).code, 0);
    assert.ok((await readFile(target)).equals(accented));

    const uuidName = '0f8fad5b-d9cb-469f-a165-70867728950e';
    const shaped = await wharf.upload(randomBytes(200), { name: uuidName });
    const removed = await cliJson<{ deleted: string[] }>(['rm', nfd, uuidName]);
    assert.deepEqual(removed.deleted, [stored.asset.id, shaped.asset.id]);
    // Neither an id nor a name: still NOT_FOUND.
    const none = await cli(['get', uuidName, '-o', '-']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /NOT_FOUND/);
  });
});

describe('wharf rm of several', () => {
  test('every argument is tried: one that fails does not stop the others; --json says which failed', async () => {
    const a = await wharf.upload(randomBytes(100), { name: 'rm-a.bin' });
    const b = await wharf.upload(randomBytes(100), { name: 'rm-b.bin' });
    const ran = await cli(['rm', a.asset.id, 'rm-no-such.bin', b.asset.id, '--json']);
    assert.equal(ran.code, 1, ran.stderr);
    const out = JSON.parse(ran.stdout) as {
      deleted: string[];
      failed: Array<{ ref: string; error: { code: string } }>;
    };
    assert.deepEqual(out.deleted, [a.asset.id, b.asset.id]);
    assert.deepEqual(
      out.failed.map((f) => [f.ref, f.error.code]),
      [['rm-no-such.bin', 'NOT_FOUND']],
    );
    assert.deepEqual(await cliJson(['ls', 'rm-']), []);
  });
});

/**
 * Wharf with WHARF_S3_DOWNLOADS=redirect as the CLI sees it: the API passed through to the test
 * server, and each download redirected to "storage" that answers `object()` as S3 does (an MD5
 * ETag, no SHA-256), whatever the deployment.
 */
async function redirectingServer(object: () => Buffer): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer(async (request, response) => {
    const url = request.url ?? '/';
    if (url === '/bucket/object') {
      const bytes = object();
      response.writeHead(200, {
        'content-length': bytes.length,
        etag: `"${createHash('md5').update(bytes).digest('hex')}"`,
      });
      response.end(bytes);
    } else if (/^\/v1\/assets\/[^/]+\/content$/.test(url)) {
      response.writeHead(302, { location: '/bucket/object' });
      response.end();
    } else {
      const answer = await fetch(`${w.url}${url}`, {
        method: request.method,
        headers: { authorization: request.headers.authorization ?? '' },
      });
      response.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? '' });
      response.end(Buffer.from(await answer.arrayBuffer()));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('wharf get from storage it is redirected to', () => {
  test('the bytes are checked against the asset’s SHA-256: wrong ones fail INTEGRITY_ERROR, the target untouched', async () => {
    const bytes = randomBytes(3000);
    const { asset } = await wharf.upload(bytes, { name: 'redirected.bin' });
    let served = bytes;
    const stand = await redirectingServer(() => served);
    try {
      const target = join(scratch, 'redirected.bin');
      const good = await cli(['get', asset.id, '-o', target, '--url', stand.url]);
      assert.equal(good.code, 0, good.stderr);
      assert.ok((await readFile(target)).equals(bytes));

      served = Buffer.from('BAD bytes!!');
      const bad = await cli(['get', asset.id, '-o', target, '--url', stand.url]);
      assert.equal(bad.code, 1, bad.stdout);
      assert.match(bad.stderr, /INTEGRITY_ERROR/);
      assert.equal(bad.stdout, '', 'nothing claims the file was saved');
      assert.ok((await readFile(target)).equals(bytes), 'the target is left as it was');
      assert.deepEqual(
        (await readdir(scratch)).filter((n) => n.endsWith('.part')),
        [],
        'no temporary file is left',
      );
    } finally {
      await stand.close();
    }
  });
});

describe('credentials and errors', () => {
  test('an upload token (WHARF_TOKEN, --token) uploads and may not list; a config file (--config, WHARF_CONFIG) supplies URL and key', async () => {
    const minted = await wharf.uploadTokens.create({ subject: 'cli-user', max_files: 5, expires_in: 600 });
    const dir = await folder('token', { 't.bin': randomBytes(500) });
    const ran = await cli(['upload', join(dir, 't.bin'), '--json'], {
      env: { WHARF_KEY: undefined, WHARF_TOKEN: minted.secret },
    });
    assert.equal(ran.code, 0, ran.stderr);
    const out = JSON.parse(ran.stdout) as TransferJson;
    assert.equal((await wharf.assets.get(out.files[0]!.asset_id!)).subject, 'cli-user');

    const config = join(scratch, 'config.json');
    await writeFile(config, JSON.stringify({ url: w.url, key: w.key }));
    const viaFile = await cli(['ls', '--json', '--config', config], {
      env: { WHARF_URL: undefined, WHARF_KEY: undefined },
    });
    assert.equal(viaFile.code, 0, viaFile.stderr);
    assert.ok(Array.isArray(JSON.parse(viaFile.stdout)));
    const viaEnv = await cli(['ls', '--json'], {
      env: { WHARF_URL: undefined, WHARF_KEY: undefined, WHARF_CONFIG: config },
    });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    // A flag wins over the environment and the file: this token may not list.
    const flagged = await cli(['ls', '--token', minted.secret]);
    assert.equal(flagged.code, 1);
    assert.match(flagged.stderr, /SCOPE_DENIED/);
  });

  test('the config file’s key goes only to the server it was saved with: another --url or WHARF_URL is refused, nothing sent', async () => {
    const seen: Array<string | undefined> = [];
    const other = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"data":[],"next_cursor":null}');
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const otherUrl = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    try {
      const config = join(scratch, 'origin', 'config.json');
      await mkdir(join(config, '..'), { recursive: true });
      await writeFile(config, JSON.stringify({ url: w.url, key: w.key }));
      const saved = { WHARF_URL: undefined, WHARF_KEY: undefined, WHARF_CONFIG: config };
      for (const ran of [
        await cli(['ls', '--url', otherUrl], { env: saved }),
        await cli(['ls'], { env: { ...saved, WHARF_URL: otherUrl } }),
      ]) {
        assert.equal(ran.code, 2, ran.stderr);
        assert.ok(ran.stderr.includes(`saved for ${w.url}`), ran.stderr);
        assert.ok(ran.stderr.includes(otherUrl), ran.stderr);
        assert.match(ran.stderr, /--key .*WHARF_KEY/);
      }
      assert.deepEqual(seen, [], 'nothing reached the other server');
      // The same origin (a trailing slash) takes the saved key; a key given for the other server goes to it.
      const same = await cli(['ls', '--json', '--url', `${w.url}/`], { env: saved });
      assert.equal(same.code, 0, same.stderr);
      const given = await cli(['ls', '--json', '--url', otherUrl, '--key', 'wharf_for_the_other'], {
        env: saved,
      });
      assert.equal(given.code, 0, given.stderr);
      assert.deepEqual(seen, ['Bearer wharf_for_the_other']);
    } finally {
      other.close();
    }
  });

  test('each file is declared with its extension’s type (an image/* token takes a PNG); --content-type overrides', async () => {
    const png = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#08f' } })
      .png()
      .toBuffer();
    const dir = await folder('typed', {
      'photo.PNG': png,
      'notes.txt': Buffer.from(`notes ${randomBytes(8).toString('hex')}`),
      'raw.cr3': randomBytes(300),
    });
    const minted = await wharf.uploadTokens.create({
      subject: 'typed',
      content_types: ['image/*'],
      max_files: 5,
      expires_in: 600,
    });
    const asToken = { env: { WHARF_KEY: undefined, WHARF_TOKEN: minted.secret } };
    const photo = await cli(['upload', join(dir, 'photo.PNG'), '--json'], asToken);
    assert.equal(photo.code, 0, photo.stdout + photo.stderr);
    const photoId = (JSON.parse(photo.stdout) as TransferJson).files[0]!.asset_id!;
    assert.equal((await wharf.assets.get(photoId)).content_type, 'image/png');
    const listed = await cliJson<Array<{ id: string }>>(['ls', '--type', 'image/png']);
    assert.deepEqual(
      listed.map((a) => a.id),
      [photoId],
    );

    // An extension without a known type goes as application/octet-stream, which this token
    // refuses, unless --content-type names the type.
    const unknown = await cli(['upload', join(dir, 'raw.cr3'), '--json'], asToken);
    assert.equal(unknown.code, 1);
    assert.equal((JSON.parse(unknown.stdout) as TransferJson).files[0]!.error?.code, 'CONTENT_TYPE_DENIED');
    const named = await cli(
      ['upload', join(dir, 'raw.cr3'), '--content-type', 'image/x-canon-cr3', '--json'],
      asToken,
    );
    assert.equal(named.code, 0, named.stdout + named.stderr);
    const rawId = (JSON.parse(named.stdout) as TransferJson).files[0]!.asset_id!;
    assert.equal((await wharf.assets.get(rawId)).content_type, 'image/x-canon-cr3');

    const notes = await cliJson<TransferJson>(['upload', join(dir, 'notes.txt')]);
    assert.equal((await wharf.assets.get(notes.files[0]!.asset_id!)).content_type, 'text/plain');
  });

  test('login checks the credential with the server, then keeps URL and key in the config file for its owner only', async () => {
    const config = join(scratch, 'login', 'config.json');
    const refused = await cli(['login', '--config', config], {
      env: { WHARF_KEY: 'wharf_not-a-key-at-all' },
    });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /UNAUTHORIZED/);
    await assert.rejects(readFile(config), { code: 'ENOENT' });

    const ran = await cli(['login', '--json', '--config', config]);
    assert.equal(ran.code, 0, ran.stderr);
    const account = await wharf.account.get();
    assert.deepEqual(JSON.parse(ran.stdout), { url: w.url, account: account.id, config });
    assert.deepEqual(JSON.parse(await readFile(config, 'utf8')), { url: w.url, key: w.key });
    assert.equal((await stat(config)).mode & 0o777, 0o600);
    const listed = await cli(['ls', '--json', '--config', config], {
      env: { WHARF_URL: undefined, WHARF_KEY: undefined },
    });
    assert.equal(listed.code, 0, listed.stderr);

    // An upload token may not read the account, yet the server knows it: kept, over the key.
    const minted = await wharf.uploadTokens.create({ subject: 'login', max_files: 1, expires_in: 600 });
    const token = await cli(['login', '--config', config], {
      env: { WHARF_KEY: undefined, WHARF_TOKEN: minted.secret },
    });
    assert.equal(token.code, 0, token.stderr);
    assert.match(token.stdout, /saved in /);
    assert.equal(JSON.parse(await readFile(config, 'utf8')).key, minted.secret);
    // A server that is not there: nothing changes.
    const unreachable = await cli([
      'login',
      '--config',
      config,
      '--url',
      `http://127.0.0.1:${await freePort()}`,
    ]);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /NETWORK_ERROR/);
    assert.equal(JSON.parse(await readFile(config, 'utf8')).key, minted.secret);
  });

  test('login through a config file that is a symlink writes the file it points to, and keeps the link', async () => {
    const dotfiles = join(scratch, 'dotfiles');
    await mkdir(dotfiles, { recursive: true });
    const real = join(dotfiles, 'wharf.json');
    await writeFile(real, '{}\n', { mode: 0o600 });
    const link = join(scratch, 'linked-config.json');
    await symlink(real, link);
    const ran = await cli(['login', '--config', link]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.ok((await lstat(link)).isSymbolicLink(), 'the link is still a link');
    assert.deepEqual(JSON.parse(await readFile(real, 'utf8')), { url: w.url, key: w.key });
    assert.equal((await stat(real)).mode & 0o777, 0o600);
  });

  test('a missing key, a bad URL, a path that is not there: a clear message and exit code 2', async () => {
    const noKey = await cli(['ls'], { env: { WHARF_KEY: undefined } });
    assert.equal(noKey.code, 2);
    assert.match(noKey.stderr, /No key: pass --key/);
    // A key and a token from one place: which to present is not for the CLI to guess (the key
    // silently won). From different places, the first place wins: flags, environment, file.
    const both = await cli(['ls', '--key', w.key, '--token', 'wharf_ut_x']);
    assert.equal(both.code, 2, both.stderr);
    assert.equal(both.stderr, 'wharf ls: --key and --token: a key or a token, not both.\n');
    const bothEnv = await cli(['ls'], { env: { WHARF_TOKEN: 'wharf_ut_x' } });
    assert.equal(bothEnv.code, 2, bothEnv.stderr);
    assert.match(bothEnv.stderr, /WHARF_KEY and WHARF_TOKEN are both set: a key or a token, not both/);
    const flagOverEnv = await cli(['ls', '--key', w.key, '--json'], {
      env: { WHARF_KEY: 'wharf_wrong', WHARF_TOKEN: 'x' },
    });
    assert.equal(flagOverEnv.code, 0, flagOverEnv.stderr);
    const badUrl = await cli(['ls', '--url', 'not a url']);
    assert.equal(badUrl.code, 2);
    assert.match(badUrl.stderr, /is not a URL/);
    // A URL's user and password: refused before anything is sent (it used to fail as
    // NETWORK_ERROR, exit 1, the password printed twice), and the password never shown.
    for (const env of [{}, { WHARF_URL: w.url.replace('://', '://user:s3cret-pw@') }]) {
      const args = Object.keys(env).length
        ? ['ls']
        : ['ls', '--url', w.url.replace('://', '://user:s3cret-pw@')];
      const withCredentials = await cli(args, { env });
      assert.equal(withCredentials.code, 2, withCredentials.stderr);
      assert.match(withCredentials.stderr, /a URL with credentials is not accepted; use --key/);
      assert.doesNotMatch(withCredentials.stdout + withCredentials.stderr, /s3cret-pw/);
    }
    const missing = await cli(['upload', join(scratch, 'nothing-here')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nothing-here: no such file or folder/);
    const noMatch = await cli(['upload', '*.nothing']);
    assert.equal(noMatch.code, 2);
    assert.match(noMatch.stderr, /no file matches/);
    const badFlag = await cli(['upload', '--part-size', 'big', scratch]);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /--part-size must be a size/);
    // Named as the docs and help name it: --concurrency is in neither.
    for (const j of ['0', '65']) {
      const badJobs = await cli(['upload', '-j', j, scratch]);
      assert.equal(badJobs.code, 2);
      assert.equal(badJobs.stderr, `wharf upload: -j must be 1 to 64, got "${j}".\n`);
    }
    const badProgress = await cli(['upload', '--progress', 'foo', '--json', scratch]);
    assert.equal(badProgress.code, 2);
    assert.match(badProgress.stderr, /--progress must be auto, bars or plain/);
  });

  test('a bad --content-type is a usage error before any file is read; sync of a file says it is not a folder', async () => {
    const dir = await folder('bad-type', { 'f.bin': randomBytes(100) });
    const badType = await cli(['upload', dir, '--content-type', 'bogus']);
    assert.equal(badType.code, 2, badType.stderr);
    assert.match(badType.stderr, /--content-type must be a media type/);
    assert.equal(badType.stdout, '', 'no file tried');
    const notFolder = await cli(['sync', join(dir, 'f.bin')]);
    assert.equal(notFolder.code, 2);
    assert.match(notFolder.stderr, /f\.bin: not a folder/);
  });

  test('a pipe or a device named on the command line fails on its own line; the other files are uploaded', async () => {
    const dir = await folder('not-files', { 'real.bin': randomBytes(123) });
    execFileSync('mkfifo', [join(dir, 'pipe')]);
    const ran = await cli(['upload', join(dir, 'pipe'), '/dev/null', join(dir, 'real.bin'), '--json']);
    assert.equal(ran.code, 1, ran.stderr);
    const out = JSON.parse(ran.stdout) as TransferJson;
    assert.deepEqual(out.files.map((f) => [f.name, f.status, f.error?.code]).sort(), [
      ['null', 'failed', 'NOT_A_FILE'],
      ['pipe', 'failed', 'NOT_A_FILE'],
      ['real.bin', 'created', undefined],
    ]);
    // In a folder, a pipe is passed over, as documented.
    const walked = await cliJson<TransferJson>(['upload', dir]);
    assert.deepEqual(
      walked.files.map((f) => [f.name, f.status]),
      [['real.bin', 'exists']],
    );
  });

  test('a name that is not UTF-8 fails on its own line as INVALID_NAME, shown with \\xNN, in a folder, a glob or named; the others are uploaded', async () => {
    const dir = await folder('not-utf8', { 'fine.txt': randomBytes(50) });
    // f\xff.txt: Linux allows any bytes in a name. Read as text, it was a path to nothing (ENOENT).
    writeFileSync(
      Buffer.concat([Buffer.from(`${dir}/`), Buffer.from([0x66, 0xff, 0x2e, 0x74, 0x78, 0x74])]),
      'x',
    );
    const expected = (out: TransferJson) => {
      const bad = out.files.find((f) => f.status === 'failed')!;
      assert.deepEqual(
        [bad.name, bad.path, bad.error?.code],
        ['f\\xff.txt', join(dir, 'f\\xff.txt'), 'INVALID_NAME'],
      );
      assert.match(bad.error!.message, /f\\xff\.txt: the name is not valid UTF-8/);
      return out.files.map((f) => [f.name, f.status]).sort();
    };
    const walked = await cli(['upload', dir, '--json']);
    assert.equal(walked.code, 1, walked.stderr);
    assert.deepEqual(expected(JSON.parse(walked.stdout)), [
      ['f\\xff.txt', 'failed'],
      ['fine.txt', 'created'],
    ]);
    const globbed = await cli(['upload', join(dir, 'f*.txt'), '--json']);
    assert.equal(globbed.code, 1, globbed.stderr);
    assert.deepEqual(expected(JSON.parse(globbed.stdout)), [
      ['f\\xff.txt', 'failed'],
      ['fine.txt', 'exists'],
    ]);
    // Named by a shell, which hands over the name's bytes as they are.
    const quote = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`;
    const named = await finished(
      spawn(
        'sh',
        [
          '-c',
          `exec ${[process.execPath, '--import', TSX, MAIN, 'upload'].map(quote).join(' ')} ${quote(dir)}/f?.txt`,
        ],
        {
          cwd: scratch,
          env: env({}),
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      ),
    );
    assert.equal(named.code, 1, named.stderr);
    assert.match(
      named.stdout,
      /^failed +f\\xff\.txt {2}0 B {2}INVALID_NAME .*f\\xff\.txt: the name is not valid UTF-8/m,
    );
    assert.match(named.stdout, /^0 uploaded, 0 already there, 1 failed; 0 B sent$/m);
  });

  test('a reader that stops early (wharf ls | head): the command ends quietly, as one killed by SIGPIPE', async () => {
    await wharf.upload(randomBytes(100), { name: 'piped-ls.bin' });
    const child = start(['ls']);
    // The reader goes away before the first line is written: every write meets a closed pipe.
    child.stdout!.destroy();
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.equal(code, 141, stderr);
    assert.equal(stderr, '', 'no stack trace');
  });

  test('stdout that cannot be written (> /dev/full): one line that says why, exit code 1, no stack trace', async () => {
    await wharf.upload(randomBytes(100), { name: 'full-ls.bin' });
    const dir = await folder('dev-full', { 'full.txt': randomBytes(100) });
    const full = openSync('/dev/full', 'w');
    try {
      for (const args of [['ls'], ['upload', join(dir, 'full.txt')]]) {
        const ran = await cli(args, { stdout: full });
        assert.equal(ran.code, 1, `${args[0]}: ${ran.stderr}`);
        assert.equal(
          ran.stderr,
          `wharf ${args[0]}: cannot write to standard output: ENOSPC (no space left on device)\n`,
        );
      }
    } finally {
      closeSync(full);
    }
  });

  test('many files with a wrong key, a disabled account, an expired token or to a server that is not there: the first fails, the rest are not tried', async () => {
    const dir = await folder(
      'halted',
      Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`f${i}.txt`, randomBytes(64)])),
    );
    // A disabled account and an expired upload token refuse every file as they refuse the first.
    const disabled = await w.newAccount();
    await w.wharf.core.keys.updateAccount(disabled.accountId, { disabled: true });
    const expiring = await wharf.uploadTokens.create({ subject: 'expiring', max_files: 10, expires_in: 1 });
    w.clock.advance(2_000);
    const runs = [
      { code: 'UNAUTHORIZED', args: ['--key', 'wharf_not_a_real_key_at_all_000000000000000000000'] },
      { code: 'NETWORK_ERROR', args: ['--url', `http://127.0.0.1:${await freePort()}`] },
      { code: 'ACCOUNT_DISABLED', args: ['--key', disabled.key] },
      { code: 'TOKEN_EXPIRED', args: ['--token', expiring.secret] },
    ];
    for (const { code, args } of runs) {
      const ran = await cli(['upload', dir, '--json', '-j', '1', ...args]);
      assert.equal(ran.code, 1, ran.stderr);
      const files = (JSON.parse(ran.stdout) as TransferJson).files;
      assert.equal(files.length, 5);
      assert.ok(
        files.every((f) => f.status === 'failed' && f.error?.code === code),
        ran.stdout,
      );
      // Each file tried met the same refusal: one was enough to know (600 files took minutes).
      const notTried = files.filter((f) => f.error?.message.startsWith('Not tried'));
      assert.equal(notTried.length, 4, ran.stdout);
    }
  });

  test('a wrong key or a server that is not there: exit code 1 with the error code', async () => {
    const wrong = await cli(['ls', '--key', 'wharf_not_a_real_key_at_all_000000000000000000000']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /UNAUTHORIZED/);
    const port = await freePort();
    const down = await cli(['ls', '--url', `http://127.0.0.1:${port}`]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /NETWORK_ERROR/);
  });
});
