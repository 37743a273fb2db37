import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { SIGN_IN_FAILURES_ALLOWED } from '../../src/core/sessions.js';
import { storesOnS3 } from '../helpers/deployment.js';
import { api, md5Hex, sha256Hex } from '../helpers/http.js';
import { LogCollector } from '../helpers/observe.js';
import { rufh } from '../helpers/rufh-client.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// Wharf behind a reverse proxy that ends TLS (nginx in front, as docs/deployment.md shows):
// clients reach https://wharf.test:22443, the proxy passes their Host through and speaks plain
// HTTP to Wharf's loopback port. The test plays the proxy: it connects to that port itself,
// with the Host the client used.

const PUBLIC_URL = 'https://wharf.test:22443';
const PUBLIC_HOST = new URL(PUBLIC_URL).host;

let w: TestWharf;
/** Where the proxy connects: Wharf's own plain-HTTP address, not its public URL. */
let origin: string;
before(async () => {
  w = await startWharf({ env: { WHARF_PUBLIC_URL: PUBLIC_URL } });
  origin = `http://127.0.0.1:${(w.wharf.app.server.address() as AddressInfo).port}`;
});
after(async () => {
  await w?.close();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A request for `url` (under the public URL) as the proxy forwards it: plain HTTP, Host kept. */
function forwarded(
  url: string,
  method: string,
  headers: Record<string, string> = {},
  body?: Uint8Array,
): Promise<Answer> {
  const target = new URL(url);
  assert.equal(target.origin, PUBLIC_URL, 'a URL of the public site');
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${origin}${target.pathname}${target.search}`,
      {
        method,
        headers: {
          ...headers,
          host: PUBLIC_HOST,
          ...(body && { 'content-length': String(body.byteLength) }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('the storage endpoint’s Location behind a proxy', () => {
  const skip = storesOnS3 && "Wharf's own /s3 endpoint; this server stores on S3, which names its own URLs";

  /** One S3 request signed by POST /v1/s3/sign (as Uppy asks for it), sent through the proxy. */
  async function s3(request: Record<string, unknown>, body?: Uint8Array) {
    const signed = await api(origin, w.key, 'POST', '/v1/s3/sign', request);
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const res = await forwarded(signed.body.url, signed.body.method, signed.body.headers, body);
    return { signed: signed.body, res };
  }

  test('CompleteMultipartUpload’s <Location> is under WHARF_PUBLIC_URL, not the request’s scheme', {
    skip,
  }, async () => {
    const created = await s3({ method: 'POST', key: 'video.bin', contentType: 'application/octet-stream' });
    assert.equal(created.res.status, 200, created.res.body);
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created.res.body)?.[1];
    assert.ok(uploadId, created.res.body);
    const { key } = created.signed;
    const bytes = randomBytes(1000);
    const part = await s3({ method: 'PUT', key, uploadId, partNumber: 1 }, bytes);
    assert.equal(part.res.status, 200, part.res.body);
    assert.equal(part.res.headers.etag, `"${md5Hex(bytes)}"`);
    const completion = Buffer.from(
      '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>' +
        `<ETag>"${md5Hex(bytes)}"</ETag></Part></CompleteMultipartUpload>`,
    );
    const done = await s3({ method: 'POST', key, uploadId }, completion);
    assert.equal(done.res.status, 200, done.res.body);
    const location = /<Location>([^<]+)<\/Location>/.exec(done.res.body)?.[1];
    assert.equal(location, `${PUBLIC_URL}/s3/wharf/${key}`);
  });

  test('a POST form’s Location is under WHARF_PUBLIC_URL, not the request’s scheme', { skip }, async () => {
    const principal = await w.wharf.core.keys.authenticate(w.key);
    const { upload, post } = await w.wharf.core.uploads.createPost(principal, { name: 'photo.jpg' });
    assert.equal(post.url, `${PUBLIC_URL}/s3/wharf/`);
    const form = new FormData();
    for (const [name, value] of Object.entries(post.fields)) form.append(name, value);
    form.append('file', new Blob([new Uint8Array(randomBytes(500))], { type: 'image/jpeg' }), 'photo.jpg');
    const encoded = new Request(post.url, { method: 'POST', body: form });
    const body = new Uint8Array(await encoded.arrayBuffer());
    const res = await forwarded(
      post.url,
      'POST',
      { 'content-type': encoded.headers.get('content-type')! },
      body,
    );
    assert.equal(res.status, 204, res.body);
    assert.equal(res.headers.location, `${PUBLIC_URL}/s3/wharf/${upload.storageKey}`);
  });
});

describe('the client’s address behind a proxy (WHARF_TRUST_PROXY)', () => {
  const signIn = (server: TestWharf, key: string, client: string) =>
    api(server.url, undefined, 'POST', '/console/api/session', { key }, { 'x-forwarded-for': client });

  test('from a trusted proxy, the sign-in limit counts X-Forwarded-For’s client: one locked out, another signs in', async () => {
    const log = new PassThrough();
    const lines: string[] = [];
    log.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n')));
    const trusting = await startWharf({ env: { WHARF_TRUST_PROXY: '127.0.0.1' }, logStream: log });
    try {
      for (let i = 0; i < SIGN_IN_FAILURES_ALLOWED; i++) {
        assert.equal((await signIn(trusting, `wharf_wrong_${i}`, '203.0.113.7')).status, 401);
      }
      const limited = await signIn(trusting, trusting.key, '203.0.113.7');
      assert.equal(limited.status, 429);
      assert.equal(limited.body.error.code, 'RATE_LIMITED');
      // Behind one proxy every client shares its address: the others must not be locked out.
      assert.equal((await signIn(trusting, trusting.key, '203.0.113.8')).status, 201);
      // The request log names the client too, not the proxy.
      const addresses = lines
        .filter((line) => line.includes('"incoming request"'))
        .map((line) => JSON.parse(line).req?.remoteAddress);
      assert.ok(addresses.includes('203.0.113.8'), JSON.stringify(addresses));
      assert.ok(!addresses.includes('127.0.0.1'), JSON.stringify(addresses));
    } finally {
      await trusting.close();
    }
  });

  describe('the request log from a trusted proxy', () => {
    const logs = new LogCollector();
    let trusting: TestWharf;
    let port: number;
    before(async () => {
      trusting = await startWharf({
        env: { WHARF_PUBLIC_URL: PUBLIC_URL, WHARF_TRUST_PROXY: '127.0.0.1' },
        logStream: logs.stream,
      });
      port = (trusting.wharf.app.server.address() as AddressInfo).port;
    });
    after(async () => {
      await trusting?.close();
    });

    /** A GET of `path` as the proxy forwards it: the client's Host kept, X-Forwarded-For set. */
    const get = (path: string, headers: Record<string, string> = {}) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port,
            path,
            headers: { ...headers, host: PUBLIC_HOST, 'x-forwarded-for': '203.0.113.9' },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end();
      });
    const incoming = (url: string) =>
      logs.waitFor(
        (l) => l.msg === 'incoming request' && (l.req as { url?: string } | undefined)?.url === url,
        `of ${url}`,
      );

    test('host is the Host the request arrived with, not X-Forwarded-Host; remoteAddress is X-Forwarded-For’s client', async () => {
      // nginx passes on an X-Forwarded-Host the client sent unless told to set it.
      assert.equal(await get('/healthz', { 'x-forwarded-host': 'evil.example' }), 200);
      const line = await incoming('/healthz');
      assert.deepEqual(line.req, {
        method: 'GET',
        url: '/healthz',
        host: PUBLIC_HOST,
        remoteAddress: '203.0.113.9',
      });
    });

    test('a request refused before routing (a malformed percent-encoding, an over-long id) names the client too', async () => {
      assert.equal(await get('/v1/assets/%zz'), 400);
      const long = `/v1/assets/${'a'.repeat(2000)}`;
      assert.equal(await get(long), 414);
      for (const url of ['/v1/assets/%zz', long]) {
        const line = await incoming(url);
        assert.equal((line.req as { remoteAddress?: string }).remoteAddress, '203.0.113.9', url);
      }
    });

    /** What the server sent on a raw connection `write` writes to, once the server closed it. */
    function rawExchange(write: (socket: Socket) => void): Promise<string> {
      return new Promise<string>((resolve, reject) => {
        const socket = connect({ port, host: '127.0.0.1' });
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('error', reject);
        socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
        write(socket);
      });
    }

    test('a request whose body the HTTP parser could not read names the client; one whose headers it could not, the proxy', async () => {
      // A chunked body that breaks after its request reached its route: its headers were read.
      const broken = await rawExchange((socket) => {
        socket.write(
          `POST /console/api/session HTTP/1.1\r\nHost: ${PUBLIC_HOST}\r\nX-Forwarded-For: 203.0.113.9\r\n` +
            'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
        );
        setTimeout(() => socket.write('zz\r\n'), 100);
      });
      const brokenId = /\r\nx-request-id: ([^\r]*)\r\n/i.exec(broken)?.[1];
      assert.ok(brokenId, broken);
      const line = await logs.waitFor(
        (l) => l.msg === 'refused a request the HTTP parser could not read' && l.reqId === brokenId,
        'of the broken body',
      );
      assert.equal(line.remoteAddress, '203.0.113.9');

      // A header line without a colon: the parser read no header, X-Forwarded-For included.
      const refused = await rawExchange((socket) => {
        socket.write(
          `GET /healthz HTTP/1.1\r\nHost: ${PUBLIC_HOST}\r\nX-Forwarded-For: 203.0.113.9\r\nbad header\r\n\r\n`,
        );
      });
      const refusedId = /\r\nx-request-id: ([^\r]*)\r\n/i.exec(refused)?.[1];
      assert.ok(refusedId, refused);
      const refusal = await logs.waitFor(
        (l) => l.msg === 'refused a request the HTTP parser could not read' && l.reqId === refusedId,
        'of the refusal',
      );
      assert.equal(refusal.remoteAddress, '127.0.0.1');
    });
  });

  test('without it, X-Forwarded-For is ignored: a client cannot name another address to escape the limit', async () => {
    const direct = await startWharf();
    try {
      for (let i = 0; i < SIGN_IN_FAILURES_ALLOWED; i++) {
        assert.equal((await signIn(direct, `wharf_wrong_${i}`, '203.0.113.7')).status, 401);
      }
      const limited = await signIn(direct, direct.key, '203.0.113.8');
      assert.equal(limited.status, 429);
      assert.equal(limited.body.error.code, 'RATE_LIMITED');
    } finally {
      await direct.close();
    }
  });
});

describe('Resumable Uploads for HTTP behind nginx (WHARF_RESUMABLE_INTERIM_RESPONSE)', () => {
  // nginx relays no 1xx but 100: it takes a 104 for the answer. So behind it the 104 is turned off.
  const portOf = (server: TestWharf) => (server.wharf.app.server.address() as AddressInfo).port;
  const create = (server: TestWharf, target: string, complete: '?0' | '?1', body: Buffer) =>
    rufh(portOf(server), {
      method: 'POST',
      target,
      headers: [
        ['Authorization', `Bearer ${server.key}`],
        ['Upload-Draft-Interop-Version', '8'],
        ['Upload-Complete', complete],
        ['Upload-Length', String(body.length * (complete === '?0' ? 2 : 1))],
      ],
      body,
    });

  test('off: no 1xx before the final answer, which names the upload; the upload works', async () => {
    const quiet = await startWharf({
      env: { WHARF_PUBLIC_URL: PUBLIC_URL, WHARF_RESUMABLE_INTERIM_RESPONSE: 'false' },
    });
    try {
      const bytes = randomBytes(50_000);
      const whole = await create(quiet, '/v1/assets?name=photo.jpg', '?1', bytes);
      assert.deepEqual(whole.informational, []);
      assert.equal(whole.final?.status, 201, String(whole.final?.body));
      assert.match(whole.final.headers.location!, new RegExp(`^${PUBLIC_URL}/v1/resumable/`));
      assert.equal(JSON.parse(whole.final.body.toString('utf8')).asset.sha256, sha256Hex(bytes));

      const first = await create(quiet, '/v1/resumable/?name=later.bin', '?0', bytes);
      assert.deepEqual(first.informational, []);
      assert.equal(first.final?.status, 201, String(first.final?.body));
      assert.equal(first.final.headers['upload-offset'], String(bytes.length));
      assert.match(first.final.headers.location!, new RegExp(`^${PUBLIC_URL}/v1/resumable/`));
    } finally {
      await quiet.close();
    }
  });

  test('by default a creation still gets its 104 first, naming the same upload as the answer', async () => {
    const res = await create(w, '/v1/assets?name=photo.jpg', '?1', randomBytes(50_000));
    assert.equal(res.informational.length, 1, JSON.stringify(res.informational));
    assert.equal(res.informational[0]?.status, 104);
    assert.equal(res.final?.status, 201, String(res.final?.body));
    assert.equal(res.final.headers.location, res.informational[0].headers.location);
  });
});
