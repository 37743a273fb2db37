import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * `wharf get` as a process against a stand-in server (node:http) that answers an asset's record
 * and content as a test says, right or wrong: which answers count as the asset. No Wharf runs:
 * the CLI only reads these two routes.
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

function start(args: string[], cwd = scratch): ChildProcess {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('WHARF_') && !name.startsWith('XDG_')) env[name] = value;
  }
  return spawn(process.execPath, ['--import', TSX, MAIN, ...args], {
    cwd,
    env: { ...env, WHARF_URL: url, WHARF_KEY: 'wharf_test', XDG_CONFIG_HOME: join(scratch, 'config') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
