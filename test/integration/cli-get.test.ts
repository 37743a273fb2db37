import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import {
  chmod,
  chown,
  lchown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * `wharf get` as a process against a stand-in server (node:http) that answers an asset's record
 * and content as a test says, right or wrong: where the bytes go (through a symbolic link, into
 * a FIFO, to stdout), which answers count as the asset, an interrupted download, and names from
 * the server that name no file. No Wharf runs: the CLI only reads these two routes.
 */

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');

interface Asset {
  id: string;
  record: Record<string, unknown>;
  bytes: Buffer;
  /** Answers GET …/content; by default 200 with the bytes. */
  content?: (response: ServerResponse) => void;
}

const assets = new Map<string, Asset>();
let url: string;
let server: ReturnType<typeof createServer>;
let scratch: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'wharf-cli-get-'));
  server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const match = /^\/v1\/assets\/([^/?]+)(\/content)?$/.exec(request.url ?? '');
    const asset = match && assets.get(match[1]!);
    if (!asset) {
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'No such asset.' } }));
    } else if (!match[2]) {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify(asset.record));
    } else if (asset.content) {
      asset.content(response);
    } else {
      response.writeHead(200, { 'content-length': asset.bytes.length });
      response.end(asset.bytes);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** An asset the server answers for: its record (name, size, sha256 of `bytes`) and content. */
function serve(bytes: Buffer, options: { name?: unknown; content?: Asset['content'] } = {}): Asset {
  const id = randomUUID();
  const record: Record<string, unknown> = {
    id,
    name: 'name' in options ? options.name : 'file.bin',
    size: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
  };
  const asset: Asset = { id, record, bytes, ...(options.content && { content: options.content }) };
  assets.set(id, asset);
  return asset;
}

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

function cliEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('WHARF_') && !name.startsWith('XDG_')) env[name] = value;
  }
  return { ...env, WHARF_URL: url, WHARF_KEY: 'wharf_test', XDG_CONFIG_HOME: join(scratch, 'config') };
}

function start(args: string[], cwd = scratch): ChildProcess {
  return spawn(process.execPath, ['--import', TSX, MAIN, ...args], {
    cwd,
    env: cliEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** `script` run by bash, `$WHARF_CLI` standing for the CLI (its arguments after it). */
function shell(script: string, cwd: string): Promise<Ran> {
  const cli = [process.execPath, '--import', TSX, MAIN].map((a) => `'${a}'`).join(' ');
  return finished(
    spawn('bash', ['-c', script.replaceAll('$WHARF_CLI', cli)], {
      cwd,
      env: cliEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

function finished(child: ChildProcess): Promise<Ran> {
  const stdout: Buffer[] = [];
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  return new Promise((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout: Buffer.concat(stdout), stderr }));
  });
}

function cli(args: string[], cwd = scratch): Promise<Ran> {
  return finished(start(args, cwd));
}

async function folder(name: string): Promise<string> {
  const dir = join(scratch, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

async function parts(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.part'));
}

describe('where wharf get writes', () => {
  test('through a symbolic link: the file it points to is replaced, the link kept (also a link to no file yet)', async () => {
    const bytes = randomBytes(5000);
    const { id } = serve(bytes);
    const dir = await folder('links');
    const real = join(dir, 'real');
    await mkdir(real);
    await writeFile(join(real, 'data.bin'), 'old contents');
    await symlink(join(real, 'data.bin'), join(dir, 'link.bin'));
    const ran = await cli(['get', id, '-o', join(dir, 'link.bin')]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.ok((await lstat(join(dir, 'link.bin'))).isSymbolicLink(), 'the link is still a link');
    assert.equal(await readlink(join(dir, 'link.bin')), join(real, 'data.bin'));
    assert.ok((await readFile(join(real, 'data.bin'))).equals(bytes), 'an existing file is replaced');

    await symlink('real/later.bin', join(dir, 'dangling.bin'));
    const later = await cli(['get', id, '-o', join(dir, 'dangling.bin')]);
    assert.equal(later.code, 0, later.stderr);
    assert.ok((await lstat(join(dir, 'dangling.bin'))).isSymbolicLink());
    assert.ok((await readFile(join(real, 'later.bin'))).equals(bytes));
    assert.deepEqual([...(await parts(dir)), ...(await parts(real))], []);
  });

  test('into a FIFO: written to, not replaced; wrong bytes still fail INTEGRITY_ERROR', async () => {
    const bytes = randomBytes(200_000);
    const dir = await folder('fifo');
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    for (const wrong of [false, true]) {
      const { id } = serve(
        bytes,
        wrong
          ? {
              content: (response) => {
                response.writeHead(200);
                response.end(Buffer.from('not the asset'));
              },
            }
          : {},
      );
      // A reader of its own, killed if the FIFO was replaced and no writer ever comes.
      const reader = spawn('cat', [fifo], { stdio: ['ignore', 'pipe', 'ignore'] });
      const received: Buffer[] = [];
      reader.stdout!.on('data', (chunk: Buffer) => received.push(chunk));
      const read = new Promise((resolve) => reader.on('close', resolve));
      try {
        const ran = await cli(['get', id, '-o', fifo]);
        assert.ok((await lstat(fifo)).isFIFO(), 'the FIFO is still one');
        if (wrong) {
          assert.equal(ran.code, 1, ran.stderr);
          assert.match(ran.stderr, /INTEGRITY_ERROR/);
        } else {
          assert.equal(ran.code, 0, ran.stderr);
          await read;
          assert.ok(Buffer.concat(received).equals(bytes), 'the reader got the asset');
        }
        assert.deepEqual(await parts(dir), []);
      } finally {
        reader.kill();
      }
    }
  });

  test('-o - writes the bytes to stdout, and the report to stderr', async () => {
    const bytes = randomBytes(300_000);
    const { id } = serve(bytes);
    const dir = await folder('stdout');
    const ran = await cli(['get', id, '-o', '-'], dir);
    assert.equal(ran.code, 0, ran.stderr);
    assert.ok(ran.stdout.equals(bytes), 'stdout is the bytes only');
    assert.match(ran.stderr, /^-\s+293\.0 KiB\s+sha256 [0-9a-f]{64}$/m);
    assert.deepEqual(await readdir(dir), [], 'no file named "-"');

    const json = await cli(['get', id, '-o', '-', '--json'], dir);
    assert.equal(json.code, 0, json.stderr);
    assert.ok(json.stdout.equals(bytes));
    assert.equal(JSON.parse(json.stderr).size, bytes.length);
  });
});

describe('-o /dev/stdout and shared folders', () => {
  test("-o /dev/stdout (or a link to it) into a shell's > file and >> file: written into it, not over it", async () => {
    const bytes = randomBytes(100_000);
    const { id } = serve(bytes);
    const dir = await folder('dev-stdout');
    await symlink('/dev/stdout', join(dir, 'out-link'));
    for (const target of ['/dev/stdout', 'out-link', '/dev/fd/1']) {
      const combined = await shell(
        `{ echo header; $WHARF_CLI get ${id} -o ${target}; echo trailer; } > combined.bin`,
        dir,
      );
      assert.equal(combined.code, 0, combined.stderr);
      const expected = Buffer.concat([Buffer.from('header\n'), bytes, Buffer.from('trailer\n')]);
      assert.ok(
        (await readFile(join(dir, 'combined.bin'))).equals(expected),
        `${target}: header, bytes, trailer`,
      );
      assert.match(combined.stderr, /sha256 [0-9a-f]{64}/, 'the report on stderr');

      await writeFile(join(dir, 'append.log'), 'earlier\n');
      const appended = await shell(`$WHARF_CLI get ${id} -o ${target} >> append.log`, dir);
      assert.equal(appended.code, 0, appended.stderr);
      const kept = Buffer.concat([Buffer.from('earlier\n'), bytes]);
      assert.ok((await readFile(join(dir, 'append.log'))).equals(kept), `${target}: appended`);
    }
    assert.deepEqual((await readdir(dir)).sort(), ['append.log', 'combined.bin', 'out-link']);
  });

  test('a link planted by another user in a sticky world-writable folder is not followed', {
    skip: process.getuid?.() !== 0 && 'needs root (to give a link to another user)',
  }, async () => {
    const { id } = serve(randomBytes(3000));
    const dir = await folder('sticky');
    const shared = join(dir, 'shared');
    await mkdir(shared);
    await chmod(shared, 0o1777);
    const victim = join(dir, 'secret');
    await writeFile(victim, 'secret', { mode: 0o600 });
    await symlink(victim, join(shared, 'pic.png'));
    await lchown(join(shared, 'pic.png'), 65534, 65534);
    const ran = await cli(['get', id, '-o', join(shared, 'pic.png')]);
    assert.equal(ran.code, 1, ran.stderr);
    assert.match(ran.stderr, /refusing to follow .*pic\.png.*shared sticky folder/);
    assert.equal(await readFile(victim, 'utf8'), 'secret', 'the target is untouched');
    assert.equal((await stat(victim)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(shared), ['pic.png']);
    assert.deepEqual((await readdir(dir)).sort(), ['secret', 'shared']);
  });

  test('a replaced file keeps its mode', async () => {
    const bytes = randomBytes(3000);
    const { id } = serve(bytes);
    const dir = await folder('mode');
    await writeFile(join(dir, 'private.bin'), 'old', { mode: 0o600 });
    const ran = await cli(['get', id, '-o', join(dir, 'private.bin')]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.ok((await readFile(join(dir, 'private.bin'))).equals(bytes));
    assert.equal(((await stat(join(dir, 'private.bin'))).mode & 0o777).toString(8), '600');
  });

  test("run as root, a replaced file of another user's keeps its owner and group", {
    skip: process.getuid?.() !== 0 && 'needs root (to give a file to another user)',
  }, async () => {
    const bytes = randomBytes(3000);
    const { id } = serve(bytes);
    const dir = await folder('owner');
    const target = join(dir, 'theirs.bin');
    await writeFile(target, 'old', { mode: 0o640 });
    await chown(target, 65534, 65534);
    const ran = await cli(['get', id, '-o', target]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.ok((await readFile(target)).equals(bytes));
    const info = await stat(target);
    assert.deepEqual([info.uid, info.gid, (info.mode & 0o777).toString(8)], [65534, 65534, '640']);
    // A new file is the runner's, as any file root creates.
    const fresh = join(dir, 'new.bin');
    assert.equal((await cli(['get', id, '-o', fresh])).code, 0);
    assert.equal((await stat(fresh)).uid, 0);
  });
});

describe('which answers are the asset', () => {
  for (const status of [206, 203]) {
    test(`content answered ${status} (a proxy's range, a transformed body): refused, nothing written`, async () => {
      const { id } = serve(randomBytes(4000), {
        content: (response) => {
          response.writeHead(status, { 'content-range': 'bytes 0-9/4000' });
          response.end(Buffer.from('other byte'));
        },
      });
      const dir = await folder(`status-${status}`);
      const ran = await cli(['get', id, '-o', join(dir, 'out.bin')]);
      assert.equal(ran.code, 1, `exit code: ${ran.stdout}`);
      assert.match(ran.stderr, new RegExp(`UNEXPECTED_RESPONSE: The download answered ${status}, not 200`));
      assert.deepEqual(await readdir(dir), [], 'no file, no temporary file');
    });
  }
});

describe('an interrupted get', () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    test(`${signal} mid-download: exit code 130, the partial file removed`, async () => {
      // Half of the bytes, then nothing: the download is in flight until the signal.
      const bytes = randomBytes(1_000_000);
      const { id } = serve(bytes, {
        content: (response) => {
          response.writeHead(200, { 'content-length': bytes.length });
          response.write(bytes.subarray(0, 500_000));
        },
      });
      const dir = await folder(`interrupted-${signal}`);
      const child = start(['get', id, '-o', join(dir, 'big.bin')]);
      const running = finished(child);
      for (let i = 0; (await parts(dir)).length === 0; i++) {
        assert.ok(i < 2400, 'a .part file appears');
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill(signal);
      const ran = await running;
      assert.equal(ran.code, 130, `${ran.signal} ${ran.stderr}`);
      assert.match(ran.stderr, /interrupted/);
      assert.deepEqual(await readdir(dir), [], 'no .part file, no target');
    });
  }
});

describe('names from the server', () => {
  for (const name of ['..', '.', '', 'sub/..']) {
    test(`an asset named ${JSON.stringify(name)} is not saved without -o (UNSAFE_NAME), nothing written`, async () => {
      const { id } = serve(randomBytes(100), { name });
      const parent = await folder(`name-${Buffer.from(name).toString('hex') || 'empty'}`);
      const cwd = join(parent, 'here');
      await mkdir(cwd);
      const ran = await cli(['get', id], cwd);
      assert.equal(ran.code, 1, ran.stderr);
      assert.match(ran.stderr, /UNSAFE_NAME: .*give -o PATH/);
      assert.deepEqual(await readdir(parent), ['here']);
      assert.deepEqual(await readdir(cwd), []);
    });
  }

  test('a record with no name: a clear error, not a crash', async () => {
    const asset = serve(randomBytes(100));
    delete asset.record.name;
    const dir = await folder('no-name');
    const ran = await cli(['get', asset.id], dir);
    assert.equal(ran.code, 1, ran.stderr);
    assert.match(ran.stderr, /UNEXPECTED_RESPONSE: The asset record has no name: give -o PATH/);
    assert.doesNotMatch(ran.stderr, /ERR_INVALID_ARG_TYPE/);
  });

  test('an empty record ({}): a clear error', async () => {
    const asset = serve(randomBytes(100));
    for (const key of Object.keys(asset.record)) delete asset.record[key];
    const dir = await folder('empty-record');
    const ran = await cli(['get', asset.id], dir);
    assert.equal(ran.code, 1, ran.stderr);
    assert.match(ran.stderr, /UNEXPECTED_RESPONSE/);
    assert.deepEqual(await readdir(dir), []);
  });
});

describe('long names, and targets that cannot be written', () => {
  // 255 bytes, the most a name may have: in ASCII, and in characters of 2, 3 and 4 bytes, where
  // a cut by bytes may fall inside one.
  const LONG = {
    ascii: `${'M'.repeat(251)}.txt`,
    '2-byte': `M${'é'.repeat(127)}`,
    '3-byte': `MMM${'€'.repeat(84)}`,
    '4-byte': `${'😀'.repeat(63)}abc`,
  };

  test('names of up to 255 bytes are saved: the temporary file’s name is cut to fit', async () => {
    const dir = await folder('long-names');
    for (const [kind, name] of Object.entries(LONG)) {
      assert.equal(Buffer.byteLength(name), 255, kind);
      const bytes = randomBytes(1000);
      const { id } = serve(bytes, { name });
      const ran = await cli(['get', id], dir);
      assert.equal(ran.code, 0, `${kind}: ${ran.stderr}`);
      assert.ok((await readFile(join(dir, name))).equals(bytes), kind);
    }
    assert.deepEqual(await parts(dir), []);
  });

  test('the temporary file of a long name: beside the target, recognisable, within 255 bytes, no character cut', async () => {
    const bytes = randomBytes(100_000);
    const name = LONG['2-byte'];
    const { id } = serve(bytes, {
      name,
      // Half of the bytes, then nothing: the temporary file stays until the signal.
      content: (response) => {
        response.writeHead(200, { 'content-length': bytes.length });
        response.write(bytes.subarray(0, 50_000));
      },
    });
    const dir = await folder('long-name-part');
    const child = start(['get', id], dir);
    const running = finished(child);
    let temp = await parts(dir);
    for (let i = 0; temp.length === 0; i++) {
      assert.ok(i < 2400, 'a .part file appears');
      if (child.exitCode !== null) assert.fail(`it ended first: ${(await running).stderr}`);
      await new Promise((r) => setTimeout(r, 50));
      temp = await parts(dir);
    }
    child.kill('SIGTERM');
    assert.equal((await running).code, 130);
    assert.equal(temp.length, 1);
    const part = temp[0]!;
    assert.match(part, /^\.Mé+\.[0-9a-f]{12}\.part$/, 'valid UTF-8: no U+FFFD');
    assert.ok(Buffer.byteLength(part) <= 255, `${Buffer.byteLength(part)} bytes`);
  });

  test('a folder that is not there: the error names the target once with its code, not the temporary file', async () => {
    const { id } = serve(randomBytes(100));
    const dir = await folder('no-folder');
    const ran = await cli(['get', id, '-o', 'nodir/x.txt'], dir);
    assert.equal(ran.code, 1, ran.stderr);
    assert.equal(
      ran.stderr,
      `wharf get: ENOENT: no such file or directory, open '${join(dir, 'nodir', 'x.txt')}'\n`,
    );
    assert.deepEqual(await readdir(dir), []);
  });

  test('stdout that cannot be written (> /dev/full): one line that says why, exit code 1', async () => {
    const { id } = serve(randomBytes(300_000));
    const dir = await folder('dev-full');
    const ran = await shell(`$WHARF_CLI get ${id} -o - > /dev/full`, dir);
    assert.equal(ran.code, 1, ran.stderr);
    assert.equal(
      ran.stderr,
      'wharf get: cannot write to standard output: ENOSPC (no space left on device)\n',
    );
  });
});
