import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { type AddressInfo, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { SIGN_IN_FAILURES_ALLOWED } from '../../src/core/sessions.js';
import { eventually } from '../helpers/assets.js';
import { storesOnS3 } from '../helpers/deployment.js';
import { nginxExamples } from '../helpers/doc-examples.js';
import { sha256Hex } from '../helpers/http.js';
import { REPO } from '../helpers/process.js';
import { freePort, startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * The nginx configuration of docs/deployment.md ("Behind a reverse proxy"), taken from the
 * markdown as it stands (its `<!-- example: nginx reverse-proxy -->` block), run by a real
 * nginx in front of a Wharf: only the `<…>` placeholders the page tells the reader to replace
 * are filled in (ports, a self-signed certificate). Every upload flow goes through it over TLS.
 *
 * nginx comes from Debian's package, which scripts/test.sh installs when it is missing (as it
 * does Chromium for the browser tests): without it this file fails, it does not skip.
 */

const MiB = 1024 * 1024;
const run = promisify(execFile);
const NGINX = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';

const examples = nginxExamples();

/**
 * The settings the page's nginx section gives Wharf (its `- \`WHARF_…=value\`` list), but for
 * WHARF_PUBLIC_URL, whose value is a placeholder (the test sets it to nginx's address).
 */
function wharfSide(): Record<string, string> {
  const page = readFileSync(join(REPO, 'docs', 'deployment.md'), 'utf8');
  const section = page.slice(page.indexOf('### nginx'), page.indexOf('### Other proxies'));
  return Object.fromEntries(
    [...section.matchAll(/^- `(WHARF_[A-Z_]+)=([^`<]+)`:/gm)].map((m) => [m[1]!, m[2]!]),
  );
}

let dir: string;
let w: TestWharf;
let nginx: ChildProcess | undefined;
let nginxOutput = '';
let port: number;
let ca: Buffer;
/** Trusts the test's certificate; a connection per request, as nginx answers on its own. */
let agent: Agent;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wharf-nginx-'));
  // A certificate for localhost, which the clients below trust and nothing else does.
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=DNS:localhost',
    '-keyout',
    join(dir, 'key.pem'),
    '-out',
    join(dir, 'cert.pem'),
  ]);
  ca = await readFile(join(dir, 'cert.pem'));
  agent = new Agent({ ca });
  // Wharf's public URL is nginx's address, with its port (not 443): the case where $host
  // would lose the port and presigned PUTs their signature.
  port = await freePort();
  const settings = wharfSide();
  assert.deepEqual(Object.keys(settings).sort(), ['WHARF_RESUMABLE_INTERIM_RESPONSE', 'WHARF_TRUST_PROXY']);
  w = await startWharf({ env: { ...settings, WHARF_PUBLIC_URL: `https://localhost:${port}` } });
  // w.url is the public URL, nginx's; Wharf itself listens on a port of its own.
  const example = examples.find((e) => e.name === 'reverse-proxy');
  assert.ok(example, 'docs/deployment.md has an <!-- example: nginx reverse-proxy --> block');
  const server = example.code
    .replaceAll('<public port>', String(port))
    .replaceAll('<public host>', 'localhost')
    .replaceAll('<wharf port>', String((w.wharf.app.server.address() as AddressInfo).port))
    .replaceAll('<certificate.pem>', join(dir, 'cert.pem'))
    .replaceAll('<key.pem>', join(dir, 'key.pem'));
  assert.doesNotMatch(server, /<[a-z. ]+>/, 'every placeholder of the block is filled in');
  for (const temp of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(dir, temp));
  // What Debian's /etc/nginx/nginx.conf is around a site's server block, with every path in
  // this file's directory. Workers run as root when the test does: the default `nobody`
  // could not enter the (0700) temp directories.
  const conf = [
    ...(process.getuid?.() === 0 ? ['user root;'] : []),
    'daemon off;',
    'worker_processes 1;',
    `pid ${join(dir, 'nginx.pid')};`,
    // `warn` logs "a client request body is buffered to a temporary file", which must not happen.
    `error_log ${join(dir, 'error.log')} warn;`,
    'events { worker_connections 64; }',
    'http {',
    '  access_log off;',
    ...['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(
      (temp) => `  ${temp === 'body' ? 'client_body' : temp}_temp_path ${join(dir, temp)};`,
    ),
    server,
    '}',
    '',
  ].join('\n');
  await writeFile(join(dir, 'nginx.conf'), conf);
  nginx = spawn(NGINX, ['-e', join(dir, 'error.log'), '-p', dir, '-c', join(dir, 'nginx.conf')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<string>((resolve) => {
    nginx!.on('error', (err) =>
      resolve(`${err.message}: nginx is needed (scripts/test.sh installs Debian's package)`),
    );
    nginx!.on('exit', (code) => resolve(`nginx exited (${code}): ${nginxOutput}`));
  });
  nginx.stdout!.on('data', (chunk) => (nginxOutput += chunk));
  nginx.stderr!.on('data', (chunk) => (nginxOutput += chunk));
  const listening = (async () => {
    for (let i = 0; i < 200 && nginx!.exitCode === null; i++) {
      if (await canConnect(port)) return '';
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    return 'nginx did not listen within 5 s';
  })();
  const failure = await Promise.race([exited, listening]);
  assert.equal(failure, '', failure);
});

after(async () => {
  if (nginx && nginx.exitCode === null) {
    const gone = new Promise((resolve) => nginx!.once('exit', resolve));
    nginx.kill('SIGTERM');
    await gone;
  }
  await w?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A request over TLS to `url` (nginx, or wherever it points), trusting the test's certificate. */
function send(
  url: string,
  method: string,
  headers: Record<string, string> = {},
  body?: Buffer,
  /** The client's own address (any of 127.0.0.0/8 is this machine's). */
  localAddress?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method, headers, agent, localAddress }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const proxied = (path: string) => `https://localhost:${port}${path}`;
const json = (answer: Answer) => JSON.parse(answer.body.toString('utf8'));
const said = (answer: Answer) => `${answer.status}: ${answer.body.toString('utf8').slice(0, 300)}`;

async function uploadDirect(name: string, bytes: Buffer): Promise<Answer> {
  return send(
    proxied(`/v1/assets?name=${name}`),
    'POST',
    { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
    bytes,
  );
}

async function nginxLog(): Promise<string> {
  return readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
}

describe('Wharf behind nginx, configured as docs/deployment.md says', () => {
  test('the page has the one nginx example this file runs', () => {
    assert.deepEqual(
      examples.map((e) => `${e.file} ${e.name}`),
      ['docs/deployment.md reverse-proxy'],
    );
  });

  test('a 32 MiB upload streams through to Wharf, and back, with nothing spooled to nginx disk', async () => {
    const bytes = randomBytes(32 * MiB);
    const res = await uploadDirect('big.bin', bytes);
    assert.equal(res.status, 201, said(res));
    const { asset } = json(res);
    assert.equal(asset.sha256, sha256Hex(bytes));
    assert.equal(asset.size, bytes.length);
    assert.equal(asset.content_url, proxied(`/v1/assets/${asset.id}/content`), 'URLs name the public origin');
    const back = await send(asset.content_url, 'GET', { 'x-api-key': w.key });
    assert.equal(back.status, 200, said(back));
    assert.equal(sha256Hex(back.body), sha256Hex(bytes), 'downloaded whole');
    // nginx logs each body (request or response) it writes to a temp file, at `warn`.
    assert.doesNotMatch(await nginxLog(), /buffered to a temporary file/);
  });

  test('a 2 MiB upload passes: nginx default 1 MiB cap is lifted', async () => {
    const bytes = randomBytes(2 * MiB);
    const res = await uploadDirect('two.bin', bytes);
    assert.equal(res.status, 201, said(res));
    assert.equal(json(res).asset.sha256, sha256Hex(bytes));
  });

  test('a presigned PUT through nginx: its signature holds with the port in Host', async () => {
    const bytes = randomBytes(3 * MiB);
    const declared = await send(
      proxied('/v1/uploads'),
      'POST',
      { 'x-api-key': w.key, 'content-type': 'application/json' },
      Buffer.from(
        JSON.stringify({
          name: 'presigned.bin',
          content_type: 'application/octet-stream',
          size: bytes.length,
          sha256: sha256Hex(bytes),
        }),
      ),
    );
    assert.equal(declared.status, 201, said(declared));
    const intent = json(declared);
    let put: Answer;
    if (storesOnS3) {
      // On S3 storage presigned URLs point at the store itself (Ceph here), not at nginx, so
      // the PUT does not go through the proxy; the declaration and completion still do.
      assert.equal(new URL(intent.url).origin, new URL(w.backingEnv.WHARF_S3_ENDPOINT!).origin);
      const res = await fetch(intent.url, {
        method: 'PUT',
        headers: intent.headers,
        body: new Uint8Array(bytes),
      });
      put = { status: res.status, headers: {}, body: Buffer.from(await res.arrayBuffer()) };
    } else {
      assert.ok(intent.url.startsWith(proxied('/')), `${intent.url} is nginx's`);
      put = await send(intent.url, 'PUT', intent.headers, bytes);
    }
    assert.equal(put.status, 200, said(put));
    const done = await send(proxied(`/v1/uploads/${intent.id}/complete`), 'POST', { 'x-api-key': w.key });
    assert.equal(done.status, 200, said(done));
    assert.equal(json(done).asset.sha256, sha256Hex(bytes));
  });

  test('a chunked tus PATCH cut half-way keeps what reached Wharf, and the rest completes the file', async () => {
    const bytes = randomBytes(8 * MiB);
    const tus = { authorization: `Bearer ${w.key}`, 'tus-resumable': '1.0.0' };
    const created = await send(proxied('/v1/tus/'), 'POST', {
      ...tus,
      'upload-length': String(bytes.length),
      'upload-metadata': `filename ${Buffer.from('cut.bin').toString('base64')}`,
    });
    assert.equal(created.status, 201, said(created));
    const url = created.headers.location!;
    assert.ok(url.startsWith(proxied('/v1/tus/')), url);

    // Half the file, chunked (no Content-Length, as a client streaming from a pipe sends it),
    // then the connection ends: a proxy that buffers the body would pass nothing on.
    await cutPatch(url, bytes.subarray(0, bytes.length / 2));
    const offset = async () => {
      const res = await send(url, 'HEAD', tus);
      assert.equal(res.status, 200, said(res));
      return Number(res.headers['upload-offset']);
    };
    await eventually(async () => (await offset()) > 0, 'the bytes of the cut PATCH reached Wharf', {
      every: 50,
      tries: 100,
    });
    const kept = await offset();
    assert.ok(kept <= bytes.length / 2, `offset ${kept}`);

    const rest = await send(
      url,
      'PATCH',
      { ...tus, 'upload-offset': String(kept), 'content-type': 'application/offset+octet-stream' },
      bytes.subarray(kept),
    );
    assert.equal(rest.status, 204, said(rest));
    const id = rest.headers['wharf-asset-id'] as string;
    const stored = await send(proxied(`/v1/assets/${id}`), 'GET', { 'x-api-key': w.key });
    assert.equal(json(stored).sha256, sha256Hex(bytes));
  });

  test('each client has its own sign-in limit: nginx forwards its address and Wharf trusts nginx', async () => {
    const signIn = (key: string, client: string) =>
      send(
        proxied('/console/api/session'),
        'POST',
        { 'content-type': 'application/json' },
        Buffer.from(JSON.stringify({ key })),
        client,
      );
    for (let i = 0; i < SIGN_IN_FAILURES_ALLOWED; i++) {
      const res = await signIn(`wharf_wrong_${i}`, '127.0.0.2');
      assert.equal(res.status, 401, said(res));
    }
    const limited = await signIn(w.key, '127.0.0.2');
    assert.equal(limited.status, 429, said(limited));
    // Without X-Forwarded-For (or without WHARF_TRUST_PROXY), every client is nginx's
    // 127.0.0.1, and this one would be locked out too.
    const other = await signIn(w.key, '127.0.0.3');
    assert.equal(other.status, 201, said(other));
  });

  test('a Resumable Uploads for HTTP upload gets its 201 through nginx', async () => {
    const bytes = randomBytes(64 * 1024);
    const res = await send(
      proxied('/v1/assets?name=rufh.bin'),
      'POST',
      {
        authorization: `Bearer ${w.key}`,
        'content-type': 'application/octet-stream',
        'upload-draft-interop-version': '8',
        'upload-complete': '?1',
      },
      bytes,
    );
    assert.equal(res.status, 201, said(res));
    assert.equal(json(res).asset.sha256, sha256Hex(bytes));
  });

  test("a 48 MiB upload with a wrong key gets Wharf's 401 through nginx, not a 502", async () => {
    // Wharf answers before reading the body and closes the connection (it will not read 48 MiB
    // to drop them), while nginx is still passing the body on: closed outright, nginx's writes
    // failed (EPIPE) and it answered 502 in most tries; the close lingers now.
    const bytes = Buffer.alloc(48 * MiB);
    for (let attempt = 0; attempt < 3; attempt++) {
      const res = await send(
        proxied('/v1/assets?name=refused.bin'),
        'POST',
        { 'x-api-key': 'wharf_not_a_key', 'content-type': 'application/octet-stream' },
        bytes,
      );
      assert.equal(res.status, 401, said(res));
      assert.equal(json(res).error.code, 'UNAUTHORIZED');
    }
  });
});

/**
 * A tus PATCH over TLS whose chunked body is `part` and then nothing: the request never ends,
 * and the client closes its connection once nginx has read all it sent.
 */
function cutPatch(url: string, part: Buffer): Promise<void> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      {
        host: 'localhost',
        port: Number(target.port),
        ca,
        servername: 'localhost',
        ALPNProtocols: ['http/1.1'],
      },
      () => {
        socket.write(
          `PATCH ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nAuthorization: Bearer ${w.key}\r\n` +
            'Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n' +
            'Transfer-Encoding: chunked\r\n\r\n',
        );
        for (let at = 0; at < part.length; at += 64 * 1024) {
          const chunk = part.subarray(at, at + 64 * 1024);
          socket.write(`${chunk.length.toString(16)}\r\n`);
          socket.write(chunk);
          socket.write('\r\n');
        }
        // Half-closes: the bytes already written still arrive, then nginx sees the end.
        socket.end();
      },
    );
    socket.on('data', () => {});
    socket.on('close', () => resolve());
    socket.on('error', (err) =>
      (err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(err),
    );
  });
}
