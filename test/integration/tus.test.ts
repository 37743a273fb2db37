import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Upload, type UploadOptions } from 'tus-js-client';
import { dbQuery, eventually, uploadRaw } from '../helpers/assets.js';
import { deployment, pendingWrites, storedKeys, withBucket } from '../helpers/deployment.js';
import { api, heldLastByte, sha256Hex } from '../helpers/http.js';
import { LogCollector } from '../helpers/observe.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

const MiB = 1024 * 1024;
/** S3 parts other than the last must be at least 5 MiB, so chunks are at least that. */
const CHUNK = 5 * MiB;

let w: TestWharf;
let scratch: string;
/** The server's log: a request must be answered once (see 'a finished upload answers once'). */
const logs = new LogCollector();
before(async () => {
  w = await startWharf({ logStream: logs.stream });
  scratch = await mkdtemp(join(tmpdir(), 'wharf-tus-'));
});
after(async () => {
  await w?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

function b64(text: string): string {
  return Buffer.from(text).toString('base64');
}

async function sourceFile(size: number): Promise<{ path: string; bytes: Buffer }> {
  const bytes = randomBytes(size);
  const path = join(scratch, `${randomBytes(6).toString('hex')}.bin`);
  await writeFile(path, bytes);
  return { path, bytes };
}

interface Finished {
  url: string;
  assetId: string;
}

/** An upload by tus-js-client from Node; resolves with its URL and the asset Wharf made of it. */
function tusUpload(
  server: TestWharf,
  key: string,
  input: Buffer | Readable,
  options: Partial<UploadOptions> = {},
): { upload: Upload; done: Promise<Finished> } {
  let upload!: Upload;
  const done = new Promise<Finished>((resolve, reject) => {
    upload = new Upload(input, {
      endpoint: `${server.url}/v1/tus/`,
      headers: { Authorization: `Bearer ${key}` },
      retryDelays: [],
      removeFingerprintOnSuccess: true,
      ...options,
      onError: (err) => {
        options.onError?.(err);
        reject(err);
      },
      onSuccess: (payload) => {
        resolve({ url: upload.url!, assetId: payload.lastResponse.getHeader('Wharf-Asset-Id') ?? '' });
      },
    });
    upload.start();
  });
  return { upload, done };
}

async function asset(id: string, key = w.key) {
  const res = await api(w.url, key, 'GET', `/v1/assets/${id}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

/** A raw tus request (what tus-js-client does not send: checksums, hostile input). */
function tus(
  url: string,
  method: string,
  headers: Record<string, string> = {},
  body?: Buffer,
  key: string | null = w.key,
): Promise<Response> {
  return fetch(url, {
    method,
    headers: {
      'Tus-Resumable': '1.0.0',
      ...(key ? { Authorization: `Bearer ${key}` } : {}),
      ...(body ? { 'Content-Type': 'application/offset+octet-stream' } : {}),
      ...headers,
    },
    ...(body && { body: new Uint8Array(body) }),
  });
}

async function create(
  size: number,
  metadata: Record<string, string> = { filename: 'raw.bin' },
  key = w.key,
  server: TestWharf = w,
): Promise<string> {
  const res = await tus(
    `${server.url}/v1/tus/`,
    'POST',
    {
      'Upload-Length': String(size),
      'Upload-Metadata': Object.entries(metadata)
        .map(([k, v]) => `${k} ${b64(v)}`)
        .join(','),
    },
    undefined,
    key,
  );
  assert.equal(res.status, 201, await res.text());
  return res.headers.get('location')!;
}

async function offsetOf(url: string, key = w.key): Promise<number> {
  const res = await tus(url, 'HEAD', {}, undefined, key);
  assert.equal(res.status, 200, `HEAD ${url}: ${res.status} ${res.headers.get('content-type')}`);
  return Number(res.headers.get('upload-offset'));
}

/** A refusal's error, checked to be Wharf's JSON (tus.io's own answers are text). */
async function refusal(
  res: Response,
  label = '',
): Promise<{ code: string; message: string; details?: Record<string, unknown> }> {
  const text = await res.text();
  assert.match(
    res.headers.get('content-type') ?? '',
    /^application\/json/,
    `${label}: ${res.status} ${text}`,
  );
  const { error } = JSON.parse(text);
  assert.equal(typeof error.message, 'string', label);
  return error;
}

function checksum(algorithm: 'sha1' | 'md5' | 'sha256', bytes: Buffer): string {
  return `${algorithm} ${createHash(algorithm).update(bytes).digest('base64')}`;
}

function uploadRow(url: string) {
  const id = new URL(url).pathname.split('/').pop()!.split('.')[0]!;
  return dbQuery<{ status: string; kind: string; asset_id: string | null }>(
    w,
    'select status, kind, asset_id from uploads where id = ?',
    id,
  )[0];
}

/** What the tus endpoint keeps of an upload while it is unfinished, wherever it keeps it. */
async function tusLeftovers(url: string, server: TestWharf = w): Promise<string[]> {
  const name = new URL(url).pathname.split('/').pop()!;
  if (server.backingEnv.WHARF_STORAGE === 's3') {
    const keys = (await storedKeys(server)).filter((k) => k.endsWith('.info') || k.endsWith('.part'));
    return [...keys, ...(await pendingWrites(server))].filter((k) => k.includes(name));
  }
  const dir = join(server.dataDir, 'tus', 'uploads');
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile() && e.name.startsWith(name)).map((e) => e.name);
}

describe('tus discovery', () => {
  test('OPTIONS names the version, the extensions (checksum included) and the algorithms', async () => {
    const res = await fetch(`${w.url}/v1/tus/`, { method: 'OPTIONS' });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('tus-version'), '1.0.0');
    const extensions = res.headers.get('tus-extension')!.split(',');
    for (const ext of ['creation', 'creation-with-upload', 'termination', 'expiration', 'checksum']) {
      assert.ok(extensions.includes(ext), ext);
    }
    assert.ok(!extensions.includes('creation-defer-length'));
    assert.deepEqual(res.headers.get('tus-checksum-algorithm')!.split(',').sort(), ['md5', 'sha1', 'sha256']);
  });

  test('with a key, OPTIONS states the account limit as Tus-Max-Size', async () => {
    const res = await tus(`${w.url}/v1/tus/`, 'OPTIONS');
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('tus-max-size'), String(5 * 1024 ** 3));
  });

  test('/v1/tus without the trailing slash is the same endpoint: discovery and creation', async () => {
    const options = await tus(`${w.url}/v1/tus`, 'OPTIONS');
    assert.equal(options.status, 204);
    assert.equal(options.headers.get('tus-version'), '1.0.0');
    const bytes = randomBytes(300);
    const created = await tus(`${w.url}/v1/tus`, 'POST', {
      'Upload-Length': String(bytes.length),
      'Upload-Metadata': `filename ${b64('no-slash.bin')}`,
    });
    assert.equal(created.status, 201, await created.text());
    const url = created.headers.get('location')!;
    assert.match(new URL(url).pathname, /^\/v1\/tus\/[^/]+$/);
    const done = await tus(url, 'PATCH', { 'Upload-Offset': '0' }, bytes);
    assert.equal(done.status, 204);
    assert.equal((await asset(done.headers.get('wharf-asset-id')!)).sha256, sha256Hex(bytes));
  });
});

describe('uploads with tus-js-client', () => {
  test('a small file becomes an asset with its name, type and SHA-256', async () => {
    const bytes = Buffer.from('hello over tus');
    const { done } = tusUpload(w, w.key, bytes, {
      metadata: { filename: 'hello.txt', filetype: 'text/plain' },
    });
    const finished = await done;
    assert.match(finished.url, new RegExp(`^${w.url}/v1/tus/[0-9a-f-]{36}\\.txt$`));
    assert.ok(finished.assetId);
    const a = await asset(finished.assetId);
    assert.equal(a.name, 'hello.txt');
    assert.equal(a.content_type, 'text/plain');
    assert.equal(a.size, bytes.length);
    assert.equal(a.sha256, sha256Hex(bytes));
    assert.equal(uploadRow(finished.url)?.status, 'completed');
    assert.equal(uploadRow(finished.url)?.kind, 'tus');
    assert.deepEqual(await tusLeftovers(finished.url), [], 'nothing of the upload is left in tus storage');
  });

  test('a file in several chunks arrives whole and deduplicates with a direct upload', async () => {
    const { path, bytes } = await sourceFile(2 * CHUNK + 123_457);
    let chunks = 0;
    const { done } = tusUpload(w, w.key, createReadStream(path), {
      chunkSize: CHUNK,
      uploadSize: bytes.length,
      metadata: { filename: 'big.bin', filetype: 'application/octet-stream' },
      onChunkComplete: () => {
        chunks += 1;
      },
    });
    const finished = await done;
    assert.equal(chunks, 3);
    const a = await asset(finished.assetId);
    assert.equal(a.sha256, sha256Hex(bytes));
    assert.equal(a.size, bytes.length);

    const direct = await uploadRaw(w, w.key, 'again.bin', bytes);
    assert.ok(direct.status === 200 || direct.status === 201, JSON.stringify(direct.body));
    assert.equal(direct.body.asset?.id ?? direct.body.id, finished.assetId, 'the same content is one asset');
  });

  test('the same content over tus twice is one asset', async () => {
    const bytes = randomBytes(4096);
    const first = await tusUpload(w, w.key, bytes, { metadata: { filename: 'one.bin' } }).done;
    const second = await tusUpload(w, w.key, bytes, { metadata: { filename: 'two.bin' } }).done;
    assert.equal(second.assetId, first.assetId);
  });

  test('an empty file', async () => {
    const finished = await tusUpload(w, w.key, Buffer.alloc(0), { metadata: { filename: 'empty.txt' } }).done;
    const a = await asset(finished.assetId);
    assert.equal(a.size, 0);
    assert.equal(a.sha256, sha256Hex(Buffer.alloc(0)));
  });

  test('creation with upload: the POST carries the bytes', async () => {
    const bytes = randomBytes(10_000);
    const finished = await tusUpload(w, w.key, bytes, {
      metadata: { filename: 'inline.bin' },
      uploadDataDuringCreation: true,
    }).done;
    assert.equal((await asset(finished.assetId)).sha256, sha256Hex(bytes));
  });
});

describe('creation of content the account already holds', () => {
  // The last byte arrives with the POST (an empty file, or creation with upload), and the
  // content deduplicates to the account's asset: the answer is still a created upload.
  test('an empty file twice, and a creation-with-upload of stored bytes: 201, Location and the asset', async () => {
    const bytes = randomBytes(3000);
    const first = await tusUpload(w, w.key, bytes, { metadata: { filename: 'held.bin' } }).done;
    for (const [name, body] of [
      ['empty-a.txt', Buffer.alloc(0)],
      ['empty-b.txt', Buffer.alloc(0)],
      ['held-again.bin', bytes],
    ] as const) {
      const res = await tus(
        `${w.url}/v1/tus/`,
        'POST',
        { 'Upload-Length': String(body.length), 'Upload-Metadata': `filename ${b64(name)}` },
        body.length > 0 ? body : undefined,
      );
      assert.equal(res.status, 201, `${name}: ${res.status} ${await res.text()}`);
      assert.match(res.headers.get('location') ?? '', /\/v1\/tus\/[0-9a-f-]{36}/, name);
      // Creation with upload answers the offset it reached (tus 1.0); a bare creation need not.
      if (body.length > 0) assert.equal(res.headers.get('upload-offset'), String(body.length), name);
      const assetId = res.headers.get('wharf-asset-id');
      assert.ok(assetId, `${name}: the asset is named`);
      assert.equal((await asset(assetId)).sha256, sha256Hex(body));
      if (body.length > 0) assert.equal(assetId, first.assetId, "the account's asset");
      assert.equal(await offsetOf(res.headers.get('location')!), body.length, 'HEAD: finished');
    }
  });
});

describe('resumption', () => {
  test('a client aborted mid-upload resumes at the same URL, and the file arrives whole', async () => {
    const { path, bytes } = await sourceFile(3 * CHUNK);
    // The first attempt's source gives one and a half chunks and then stalls, as a client
    // whose disk or network hangs: one chunk is stored when the client gives up.
    const stalled = new PassThrough();
    stalled.write(bytes.subarray(0, CHUNK + CHUNK / 2));
    const first = tusUpload(w, w.key, stalled, {
      chunkSize: CHUNK,
      uploadSize: bytes.length,
      metadata: { filename: 'resumed.bin' },
    });
    first.done.catch(() => {});
    await eventually(
      async () => !!first.upload.url && (await offsetOf(first.upload.url)) === CHUNK,
      'a chunk stored',
    );
    const url = first.upload.url!;
    await first.upload.abort();
    assert.equal(uploadRow(url)?.status, 'pending');

    let resumedAt = -1;
    const second = tusUpload(w, w.key, createReadStream(path), {
      chunkSize: CHUNK,
      uploadSize: bytes.length,
      uploadUrl: url,
      onProgress: (sent) => {
        if (resumedAt < 0) resumedAt = sent;
      },
    });
    const finished = await second.done;
    assert.equal(finished.url, url);
    assert.ok(resumedAt >= CHUNK, 'the upload went on from where it was cut');
    assert.equal((await asset(finished.assetId)).sha256, sha256Hex(bytes));
  });

  test('a server stopped mid-upload: a new one on the same deployment resumes it', async () => {
    const node = await startWharf({ sharing: w });
    const { path, bytes } = await sourceFile(3 * CHUNK);
    const first = tusUpload(node, w.key, createReadStream(path), {
      chunkSize: CHUNK,
      uploadSize: bytes.length,
      metadata: { filename: 'restarted.bin' },
    });
    first.done.catch(() => {});
    await eventually(async () => {
      const url = first.upload.url;
      return !!url && (await tus(url, 'HEAD').then((r) => Number(r.headers.get('upload-offset')))) >= CHUNK;
    }, 'a chunk stored');
    const url = first.upload.url!;
    // The server goes away with the upload's connection still open.
    node.wharf.app.server.closeAllConnections();
    await node.close();
    await first.upload.abort().catch(() => {});

    const restarted = await startWharf({ sharing: w });
    try {
      const resumeUrl = url.replace(node.url, restarted.url);
      const finished = await tusUpload(restarted, w.key, createReadStream(path), {
        chunkSize: CHUNK,
        uploadSize: bytes.length,
        uploadUrl: resumeUrl,
      }).done;
      assert.equal((await asset(finished.assetId)).sha256, sha256Hex(bytes));
    } finally {
      await restarted.close();
    }
  });
});

/**
 * A PATCH whose connection ends after `sent` bytes of the `bytes` it announced: the request
 * goes out over a raw socket, whose writing side is closed once they are all written (as a
 * client that loses its network after sending them), and the server's answer is awaited.
 */
function cutPatch(
  url: string,
  offset: number,
  bytes: Buffer,
  sent: number,
  chunked = false,
): Promise<string> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(target.port), target.hostname, () => {
      socket.write(
        `PATCH ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nAuthorization: Bearer ${w.key}\r\n` +
          `Tus-Resumable: 1.0.0\r\nUpload-Offset: ${offset}\r\nContent-Type: application/offset+octet-stream\r\n` +
          (chunked ? 'Transfer-Encoding: chunked\r\n\r\n' : `Content-Length: ${bytes.length}\r\n\r\n`),
      );
      if (!chunked) socket.write(bytes.subarray(0, sent));
      // Whole chunks, without the last one that would end the body.
      for (let at = 0; chunked && at < sent; at += 65536) {
        const chunk = bytes.subarray(at, Math.min(sent, at + 65536));
        socket.write(`${chunk.length.toString(16)}\r\n`);
        socket.write(chunk);
        socket.write('\r\n');
      }
      socket.end();
    });
    let answer = '';
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
    });
    socket.on('close', () => resolve(answer));
    socket.on('error', (err) =>
      (err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve(answer) : reject(err),
    );
  });
}

describe('a PATCH cut mid-way', () => {
  test('without a Content-Length (chunked) too: what arrived is kept, and the rest completes the file', async () => {
    const bytes = randomBytes(6 * MiB);
    const sent = 3 * MiB + 65536;
    const url = await create(bytes.length, { filename: 'cut-chunked.bin' });
    await cutPatch(url, 0, bytes, sent, true);
    await eventually(async () => (await offsetOf(url)) > 0, 'the cut PATCH settled');
    assert.equal(await offsetOf(url), sent, 'the offset is every byte the server received');
    const rest = await tus(url, 'PATCH', { 'Upload-Offset': String(sent) }, bytes.subarray(sent));
    assert.equal(rest.status, 204, await rest.text());
    assert.equal((await asset(rest.headers.get('wharf-asset-id')!)).sha256, sha256Hex(bytes));
  });

  test('keeps every byte that arrived: HEAD says exactly how many, and the rest completes the file', async () => {
    // 9.5 MiB: past one whole 8 MiB S3 part, with a tail shorter than S3's minimum part.
    const bytes = randomBytes(20 * MiB);
    const sent = 9.5 * MiB;
    const url = await create(bytes.length, { filename: 'cut.bin' });
    await cutPatch(url, 0, bytes, sent);
    await eventually(async () => (await offsetOf(url)) >= 8 * MiB, 'the cut PATCH settled');
    assert.equal(await offsetOf(url), sent, 'the offset is every byte the server received');

    // A second cut, mid-way through the rest: offsets keep adding up exactly.
    const more = 3 * MiB + 12_345;
    await cutPatch(url, sent, bytes.subarray(sent), more);
    await eventually(async () => (await offsetOf(url)) > sent, 'the second cut PATCH settled');
    assert.equal(await offsetOf(url), sent + more);

    const rest = await tus(
      url,
      'PATCH',
      { 'Upload-Offset': String(sent + more) },
      bytes.subarray(sent + more),
    );
    assert.equal(rest.status, 204, await rest.text());
    const assetId = rest.headers.get('wharf-asset-id')!;
    assert.equal((await asset(assetId)).sha256, sha256Hex(bytes));
    const content = await fetch(`${w.url}/v1/assets/${assetId}/content`, { headers: { 'x-api-key': w.key } });
    assert.equal(Buffer.compare(Buffer.from(await content.arrayBuffer()), bytes), 0, 'byte-identical');
    assert.deepEqual(await tusLeftovers(url), []);
  });
});

describe('two PATCHes to one upload at once', () => {
  test('each writes only its own body: the stale one is refused, the file is what was sent', async () => {
    // A client's retry of an old PATCH racing its next one (or two tabs resuming one upload):
    // tus's lock lets one at a time write, and the offset check refuses the stale one. Neither
    // may write the other's body. Raced many times: which request reaches the lock first varies.
    for (let round = 0; round < 12; round++) {
      const first = randomBytes(1000);
      const second = randomBytes(1000);
      const stale = randomBytes(1000);
      const url = await create(2000, { filename: `race-${round}.bin` });
      assert.equal((await tus(url, 'PATCH', { 'Upload-Offset': '0' }, first)).status, 204);
      const [next, retried] = await Promise.all([
        tus(url, 'PATCH', { 'Upload-Offset': '1000' }, second),
        tus(url, 'PATCH', { 'Upload-Offset': '0' }, stale),
      ]);
      assert.equal(next.status, 204, await next.text());
      assert.equal(retried.status, 409, await retried.text());
      const assetId = next.headers.get('wharf-asset-id')!;
      const content = await fetch(`${w.url}/v1/assets/${assetId}/content`, {
        headers: { 'x-api-key': w.key },
      });
      const stored = Buffer.from(await content.arrayBuffer());
      assert.equal(
        Buffer.compare(stored, Buffer.concat([first, second])),
        0,
        `round ${round}: the bytes sent, in order`,
      );
      assert.equal((await asset(assetId)).sha256, sha256Hex(Buffer.concat([first, second])));
    }
  });

  test('the one asked to let go that then gets its whole body answers, and its connection lives on', async () => {
    // The stale PATCH finds the upload locked and asks the holder to let go (tus.io's way: the
    // holder's client may be gone; a silent one is cut once tus.io's drain time has passed).
    // This holder's client is not gone: its body arrives whole, it writes, answers 204 and
    // unlocks. Nothing of it may cut the connection later, when its client has sent the next
    // request on it (seen as `fetch failed` on the scaled deployment, whose writes last long
    // enough to be asked).
    const first = randomBytes(1000);
    const second = randomBytes(1000);
    const url = await create(2000, { filename: 'asked.bin' });
    assert.equal((await tus(url, 'PATCH', { 'Upload-Offset': '0' }, first)).status, 204);
    const lock = `tus:%/${new URL(url).pathname.split('/').pop()}`;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const headers = {
        'Tus-Resumable': '1.0.0',
        Authorization: `Bearer ${w.key}`,
        'Content-Type': 'application/offset+octet-stream',
      };
      const holder = heldLastByte(url, 'PATCH', { ...headers, 'Upload-Offset': '1000' }, second, agent);
      await eventually(
        () => dbQuery(w, 'select name from locks where name like ?', lock).length > 0,
        'the PATCH holds the upload',
      );
      const stale = tus(url, 'PATCH', { 'Upload-Offset': '0' }, randomBytes(1000));
      await eventually(
        () =>
          dbQuery(w, 'select name from locks where name like ? and release_requested = 1', lock).length > 0,
        'the stale PATCH asked for the upload',
      );
      // The holder's lease watcher (every 250 ms) passes the request on. Finishing sooner would
      // only miss the race, not fail.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      holder.finish();
      assert.equal(await holder.status, 204);
      assert.equal((await stale).status, 409);

      // The client's next request on that connection (another upload's PATCH, held open past
      // tus.io's 3 s drain time after the ask) is answered too.
      const other = randomBytes(1000);
      const otherUrl = await create(other.length, { filename: 'after-asked.bin' });
      const next = heldLastByte(otherUrl, 'PATCH', { ...headers, 'Upload-Offset': '0' }, other, agent);
      const answer = next.status.catch((err: NodeJS.ErrnoException) => `cut (${err.code})`);
      await new Promise((resolve) => setTimeout(resolve, 4000));
      next.finish();
      assert.equal(await answer, 204, 'answered on the connection the asked PATCH used');
      assert.equal(await offsetOf(url), 2000);
    } finally {
      agent.destroy();
    }
  });
});

describe('checksum extension', () => {
  test('a body matching its Upload-Checksum is written; a wrong one is refused with 460', async () => {
    const bytes = randomBytes(3000);
    const url = await create(bytes.length);
    const firstPart = bytes.subarray(0, 1000);
    const ok = await tus(
      url,
      'PATCH',
      { 'Upload-Offset': '0', 'Upload-Checksum': checksum('sha1', firstPart) },
      firstPart,
    );
    assert.equal(ok.status, 204);
    assert.equal(ok.headers.get('upload-offset'), '1000');

    const next = bytes.subarray(1000, 2000);
    const wrong = await tus(
      url,
      'PATCH',
      { 'Upload-Offset': '1000', 'Upload-Checksum': checksum('sha256', Buffer.from('not these bytes')) },
      next,
    );
    assert.equal(wrong.status, 460);
    assert.equal((await wrong.json()).error.code, 'CHECKSUM_MISMATCH');
    assert.equal(await offsetOf(url), 1000, 'nothing of the refused body was written');

    const md5 = await tus(
      url,
      'PATCH',
      { 'Upload-Offset': '1000', 'Upload-Checksum': checksum('md5', next) },
      next,
    );
    assert.equal(md5.status, 204);
    const last = bytes.subarray(2000);
    const done = await tus(
      url,
      'PATCH',
      { 'Upload-Offset': '2000', 'Upload-Checksum': checksum('sha256', last) },
      last,
    );
    assert.equal(done.status, 204);
    const assetId = done.headers.get('wharf-asset-id')!;
    assert.equal((await asset(assetId)).sha256, sha256Hex(bytes));
  });

  test('an unsupported or malformed checksum is a 400 and writes nothing', async () => {
    const bytes = randomBytes(100);
    const url = await create(bytes.length);
    const crc = await tus(url, 'PATCH', { 'Upload-Offset': '0', 'Upload-Checksum': 'crc32 AAAAAA==' }, bytes);
    assert.equal(crc.status, 400);
    assert.match(await crc.text(), /sha1, md5, sha256/);
    const bad = await tus(url, 'PATCH', { 'Upload-Offset': '0', 'Upload-Checksum': 'sha1 nope' }, bytes);
    assert.equal(bad.status, 400);
    assert.equal(await offsetOf(url), 0);
  });

  test('creation with a body longer than Upload-Length: 413, and the upload it made ends at once', async () => {
    const name = `overlong-${randomBytes(4).toString('hex')}.bin`;
    const res = await tus(
      `${w.url}/v1/tus/`,
      'POST',
      { 'Upload-Length': '10', 'Upload-Metadata': `filename ${b64(name)}` },
      randomBytes(20),
    );
    const error = await refusal(res);
    assert.equal(res.status, 413, JSON.stringify(error));
    assert.equal(error.code, 'FILE_TOO_LARGE');
    assert.deepEqual(error.details, { limit: 10 });
    assert.equal(res.headers.get('location'), null, 'nothing the client could resume');
    const [row] = dbQuery<{ status: string; storage_key: string }>(
      w,
      'select status, storage_key from uploads where name = ?',
      name,
    );
    assert.equal(row?.status, 'expired', 'ended now, not left pending for the sweep');
    const url = `${w.url}/v1/tus/${row!.storage_key.split('/').slice(1).join('/')}`;
    assert.deepEqual(await tusLeftovers(url), []);
  });

  test('creation with a checksum and an unreadable Upload-Length is refused before its body is read', async () => {
    const chunk = randomBytes(1 << 20);
    const total = 64;
    let sent = 0;
    const answer = await new Promise<{ status: number; sent: number }>((resolve) => {
      const req = httpRequest(`${w.url}/v1/tus/`, {
        method: 'POST',
        headers: {
          'Tus-Resumable': '1.0.0',
          Authorization: `Bearer ${w.key}`,
          'Content-Type': 'application/offset+octet-stream',
          'Content-Length': String(total * chunk.length),
          'Upload-Length': 'abc',
          'Upload-Metadata': `filename ${b64('nan.bin')}`,
          'Upload-Checksum': checksum('sha1', chunk),
        },
      });
      req.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, sent });
      });
      // The server may close the connection while the rest is still being sent.
      req.on('error', () => {});
      const pump = () => {
        while (sent < total) {
          sent += 1;
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    });
    assert.equal(answer.status, 400);
    assert.ok(answer.sent < total, `answered only once all ${answer.sent} MiB were read`);
  });

  test('creation with upload checks the checksum before anything is created', async () => {
    const bytes = randomBytes(500);
    const res = await tus(
      `${w.url}/v1/tus/`,
      'POST',
      {
        'Upload-Length': String(bytes.length),
        'Upload-Metadata': `filename ${b64('created.bin')}`,
        'Upload-Checksum': checksum('sha1', Buffer.from('other')),
      },
      bytes,
    );
    assert.equal(res.status, 460);
    const good = await tus(
      `${w.url}/v1/tus/`,
      'POST',
      {
        'Upload-Length': String(bytes.length),
        'Upload-Metadata': `filename ${b64('created.bin')}`,
        'Upload-Checksum': checksum('sha1', bytes),
      },
      bytes,
    );
    assert.equal(good.status, 201);
    assert.equal(good.headers.get('upload-offset'), String(bytes.length));
    assert.equal((await asset(good.headers.get('wharf-asset-id')!)).sha256, sha256Hex(bytes));
  });
});

describe('a file refused when its last byte arrives', () => {
  test('a wrong declared SHA-256 ends the upload: 410 after, upload.failed, quota back, nothing kept', async () => {
    const { accountId, key } = await w.newAccount();
    const bytes = randomBytes(5000);
    const wrong = sha256Hex(Buffer.from('another file'));
    for (const creationWithUpload of [false, true]) {
      const name = `wrong-${creationWithUpload}.bin`;
      const metadata = `filename ${b64(name)},sha256 ${b64(wrong)}`;
      let url: string;
      let refused: Response;
      if (creationWithUpload) {
        refused = await tus(
          `${w.url}/v1/tus/`,
          'POST',
          { 'Upload-Length': String(bytes.length), 'Upload-Metadata': metadata },
          bytes,
          key,
        );
        // Refused, so no Location: the upload is found by its name.
        const [row] = dbQuery<{ storage_key: string }>(
          w,
          'select storage_key from uploads where name = ?',
          name,
        );
        url = `${w.url}/v1/tus/${row!.storage_key.split('/').slice(1).join('/')}`;
      } else {
        url = await create(bytes.length, { filename: name, sha256: wrong }, key);
        refused = await tus(url, 'PATCH', { 'Upload-Offset': '0' }, bytes, key);
      }
      assert.equal(refused.status, 400, name);
      assert.equal((await refused.json()).error.code, 'CHECKSUM_MISMATCH', name);
      // Its bytes are gone, so resuming could not help: the upload says it has ended.
      assert.equal(uploadRow(url)?.status, 'expired', name);
      const head = await tus(url, 'HEAD', {}, undefined, key);
      assert.equal(head.status, 410, name);
      const patch = await tus(url, 'PATCH', { 'Upload-Offset': '0' }, bytes, key);
      assert.equal(patch.status, 410, name);
      assert.deepEqual(await tusLeftovers(url), [], name);
    }
    const events = (await api(w.url, key, 'GET', '/v1/events?limit=100')).body.data;
    const failed = events.filter((e: { type: string }) => e.type === 'upload.failed');
    assert.equal(failed.length, 2);
    assert.ok(
      failed.every((e: { data: { error: { code: string } } }) => e.data.error.code === 'CHECKSUM_MISMATCH'),
    );
    // Nothing is held against the account's quota or open-upload count.
    const [held] = dbQuery<{ n: number }>(
      w,
      "select count(*) as n from uploads where account_id = ? and status = 'pending'",
      accountId,
    );
    assert.equal(Number(held!.n), 0);
    assert.equal(dbQuery(w, 'select count(*) as n from assets where account_id = ?', accountId)[0]!.n, 0);
  });
});

test('HTTP’s own digests are checked on tus too: Content-MD5 and Content-Digest of the body, Repr-Digest of the file', async () => {
  const bytes = randomBytes(4000);
  const b64sum = (algorithm: string, b: Buffer) => createHash(algorithm).update(b).digest('base64');
  const other = Buffer.from('other bytes');
  const url = await create(bytes.length, { filename: 'http-digests.bin' });
  const wrongs: Record<string, string>[] = [
    { 'Content-MD5': b64sum('md5', other) },
    { 'Content-Digest': `sha-256=:${b64sum('sha256', other)}:` },
  ];
  for (const header of wrongs) {
    const wrong = await tus(url, 'PATCH', { 'Upload-Offset': '0', ...header }, bytes.subarray(0, 1000));
    assert.equal(wrong.status, 460, JSON.stringify(header));
    assert.equal((await tus(url, 'HEAD')).headers.get('upload-offset'), '0', 'nothing written');
  }
  const first = bytes.subarray(0, 1000);
  const right = await tus(url, 'PATCH', { 'Upload-Offset': '0', 'Content-MD5': b64sum('md5', first) }, first);
  assert.equal(right.status, 204);
  // Repr-Digest names the whole file: a wrong one on the last PATCH fails the file at completion.
  const last = await tus(
    url,
    'PATCH',
    { 'Upload-Offset': '1000', 'Repr-Digest': `sha-256=:${b64sum('sha256', other)}:` },
    bytes.subarray(1000),
  );
  assert.equal(last.status, 400);
  assert.equal((await last.json()).error.code, 'CHECKSUM_MISMATCH');
  // Against a declared sha256 it must agree before a byte is written.
  const declared = await create(bytes.length, { filename: 'declared.bin', sha256: sha256Hex(bytes) });
  const contradicts = await tus(
    declared,
    'PATCH',
    { 'Upload-Offset': '0', 'Repr-Digest': `sha-256=:${b64sum('sha256', other)}:` },
    bytes,
  );
  assert.equal(contradicts.status, 400);
  assert.equal((await contradicts.json()).error.code, 'INVALID_DIGEST');
  const agrees = await tus(
    declared,
    'PATCH',
    { 'Upload-Offset': '0', 'Repr-Digest': `sha-256=:${b64sum('sha256', bytes)}:` },
    bytes,
  );
  assert.equal(agrees.status, 204);
});

test('a body in a Content-Encoding is refused (415), not stored compressed', async () => {
  const url = await create(100, { filename: 'gz.txt' });
  const res = await tus(url, 'PATCH', { 'Upload-Offset': '0', 'Content-Encoding': 'gzip' }, randomBytes(100));
  assert.equal(res.status, 415);
  assert.equal((await res.json()).error.code, 'UNSUPPORTED_MEDIA_TYPE');
});

test('an md5 in Upload-Metadata is the file’s, checked at completion as sha256 is', async () => {
  const bytes = randomBytes(3000);
  const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
  const wrong = await create(bytes.length, { filename: 'md5-wrong.bin', md5: md5(Buffer.from('other')) });
  const refused = await tus(wrong, 'PATCH', { 'Upload-Offset': '0' }, bytes);
  assert.equal(refused.status, 400);
  assert.equal((await refused.json()).error.code, 'CHECKSUM_MISMATCH');
  assert.equal(uploadRow(wrong)?.status, 'expired');
  const right = await create(bytes.length, { filename: 'md5-right.bin', md5: md5(bytes) });
  const done = await tus(right, 'PATCH', { 'Upload-Offset': '0' }, bytes);
  assert.equal(done.status, 204);
  assert.equal((await asset(done.headers.get('wharf-asset-id')!)).md5, md5(bytes));
});

/** A PATCH of the whole file from offset 0 that holds its last byte until `finish` (see heldLastByte). */
function heldPatch(url: string, bytes: Buffer) {
  return heldLastByte(
    url,
    'PATCH',
    {
      'Tus-Resumable': '1.0.0',
      Authorization: `Bearer ${w.key}`,
      'Content-Type': 'application/offset+octet-stream',
      'Upload-Offset': '0',
    },
    bytes,
  );
}

describe('a connection that went silent mid-PATCH (a phone changed networks)', () => {
  test('the next request takes the upload over: HEAD answers the offset, and the upload resumes', async () => {
    const bytes = randomBytes(200_000);
    const url = await create(bytes.length, { filename: 'stalled.bin' });
    const stalled = heldPatch(url, bytes);
    stalled.status.catch(() => undefined); // Cut by the server: its client is gone anyway.
    // Let the PATCH take the upload's lock and write what it sent (nothing is asserted on time:
    // a HEAD that came first would simply find offset 0, and the resume below would cut the PATCH).
    await new Promise((resolve) => setTimeout(resolve, 300));
    const head = await tus(url, 'HEAD');
    assert.equal(head.status, 200, 'not a 500 after waiting for a lock that is never let go');
    const offset = Number(head.headers.get('upload-offset'));
    assert.ok(offset <= bytes.length - 1, `kept what arrived: ${offset}`);
    const resumed = await tus(url, 'PATCH', { 'Upload-Offset': String(offset) }, bytes.subarray(offset));
    assert.equal(resumed.status, 204);
    assert.equal((await asset(resumed.headers.get('wharf-asset-id')!)).sha256, sha256Hex(bytes));
    stalled.finish();
  });
});

describe('termination and expiry', () => {
  test('a DELETE sent while the last PATCH streams answers as a DELETE of a finished upload does', async () => {
    const bytes = randomBytes(4000);
    const url = await create(bytes.length, { filename: 'raced-delete.bin' });
    const patch = heldPatch(url, bytes);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const deleting = tus(url, 'DELETE');
    await new Promise((resolve) => setTimeout(resolve, 200));
    patch.finish();
    assert.equal(await patch.status, 204);
    // The DELETE waited for the PATCH, which finished the upload: the answer any later DELETE gets.
    const deleted = await deleting;
    assert.equal(deleted.status, 409, await deleted.clone().text());
    assert.equal((await deleted.json()).error.code, 'UPLOAD_NOT_PENDING');
  });

  test('DELETE frees an unfinished upload and it is gone for good', async () => {
    const bytes = randomBytes(2000);
    const url = await create(bytes.length, { filename: 'gone.bin' });
    assert.equal((await tus(url, 'PATCH', { 'Upload-Offset': '0' }, bytes.subarray(0, 700))).status, 204);
    assert.notDeepEqual(await tusLeftovers(url), []);
    const res = await tus(url, 'DELETE');
    assert.equal(res.status, 204);
    assert.equal(uploadRow(url)?.status, 'expired');
    assert.deepEqual(await tusLeftovers(url), [], 'the partial bytes were freed');
    assert.equal((await tus(url, 'HEAD')).status, 410);
    assert.equal((await tus(url, 'PATCH', { 'Upload-Offset': '700' }, bytes.subarray(700))).status, 410);
  });

  test('a finished upload answers once, from Wharf: HEAD, a retried last PATCH, a stray one', async () => {
    const bytes = randomBytes(64);
    const finished = await tusUpload(w, w.key, bytes, { metadata: { filename: 'answered.bin' } }).done;
    const head = await tus(finished.url, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('upload-offset'), '64');
    assert.equal(head.headers.get('wharf-asset-id'), finished.assetId);
    const retried = await tus(finished.url, 'PATCH', { 'Upload-Offset': '64', 'Content-Length': '0' });
    assert.equal(retried.status, 204);
    const stray = await tus(finished.url, 'PATCH', { 'Upload-Offset': '0' }, bytes);
    assert.equal(stray.status, 409);
    // Answered by Wharf, the request must not go on to tus.io's server, which would send again.
    const twice = logs.lines.filter((l) => JSON.stringify(l).includes('FST_ERR_REP_ALREADY_SENT'));
    assert.deepEqual(twice, []);
  });

  test('a finished upload cannot be terminated', async () => {
    const finished = await tusUpload(w, w.key, randomBytes(64), { metadata: { filename: 'kept.bin' } }).done;
    const res = await tus(finished.url, 'DELETE');
    assert.equal(res.status, 409);
    await asset(finished.assetId);
    const head = await tus(finished.url, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('upload-offset'), '64');
    assert.equal(head.headers.get('wharf-asset-id'), finished.assetId);
  });

  test('an upload states when it expires; past that the sweep frees it', async () => {
    const res = await tus(`${w.url}/v1/tus/`, 'POST', {
      'Upload-Length': '1000',
      'Upload-Metadata': `filename ${b64('late.bin')}`,
    });
    assert.equal(res.status, 201);
    const expires = Date.parse(res.headers.get('upload-expires')!);
    assert.ok(expires > Date.now() + 23 * 3600_000, 'a day by default');
    const url = res.headers.get('location')!;
    assert.equal((await tus(url, 'PATCH', { 'Upload-Offset': '0' }, randomBytes(300))).status, 204);

    w.clock.advance(24 * 3600_000 + 1000);
    try {
      assert.equal((await tus(url, 'HEAD')).status, 410, 'expired by Wharf’s clock');
      w.clock.advance(3600_000);
      await w.wharf.core.uploads.sweep();
    } finally {
      w.clock.set(Date.now());
    }
    assert.equal(uploadRow(url)?.status, 'expired');
    assert.deepEqual(await tusLeftovers(url), []);
  });
});

// tus 1.0: X-HTTP-Method-Override "MUST be interpreted as the request's method", for clients
// behind proxies that pass only GET and POST. Fastify routes by the request line, so each of
// these reaches the POST route and must be answered as the method it names.
describe('X-HTTP-Method-Override (POST standing for another method)', () => {
  const as = (method: string) => ({ 'X-HTTP-Method-Override': method });

  test('tus-js-client with overridePatchMethod uploads a file in several chunks, byte-exact', async () => {
    const { path, bytes } = await sourceFile(2 * CHUNK + 54_321);
    const sent: string[] = [];
    const { done } = tusUpload(w, w.key, createReadStream(path), {
      chunkSize: CHUNK,
      uploadSize: bytes.length,
      overridePatchMethod: true,
      metadata: { filename: 'overridden.bin', filetype: 'application/octet-stream' },
      onBeforeRequest: (req) => {
        sent.push(`${req.getMethod()} ${req.getHeader('X-HTTP-Method-Override') ?? ''}`.trim());
      },
    });
    const finished = await done;
    assert.deepEqual(sent, ['POST', 'POST PATCH', 'POST PATCH', 'POST PATCH'], 'every append was a POST');
    const a = await asset(finished.assetId);
    assert.equal(a.size, bytes.length);
    assert.equal(a.sha256, sha256Hex(bytes));
    assert.equal(uploadRow(finished.url)?.status, 'completed');
    // A finished upload answers an overridden HEAD from Wharf's record, as a HEAD.
    const head = await tus(finished.url, 'POST', as('HEAD'));
    assert.equal(head.status, 200, await head.clone().text());
    assert.equal(head.headers.get('upload-offset'), String(bytes.length));
    assert.equal(head.headers.get('wharf-asset-id'), finished.assetId);
  });

  test('POST standing for HEAD answers the offset; for PATCH, appends; for DELETE, terminates', async () => {
    const bytes = randomBytes(2000);
    const url = await create(bytes.length, { filename: 'overridden-raw.bin' });
    const patched = await tus(url, 'POST', { ...as('PATCH'), 'Upload-Offset': '0' }, bytes.subarray(0, 700));
    assert.equal(patched.status, 204, await patched.text());
    assert.equal(patched.headers.get('upload-offset'), '700');
    for (const method of ['HEAD', 'head']) {
      const head = await tus(url, 'POST', as(method));
      assert.equal(head.status, 200, `${method}: ${await head.clone().text()}`);
      assert.equal(head.headers.get('upload-offset'), '700', method);
      assert.equal(head.headers.get('upload-length'), String(bytes.length), method);
      assert.equal(head.headers.get('tus-resumable'), '1.0.0', method);
    }
    assert.notDeepEqual(await tusLeftovers(url), []);
    const deleted = await tus(url, 'POST', as('DELETE'));
    assert.equal(deleted.status, 204, await deleted.text());
    assert.equal(uploadRow(url)?.status, 'expired');
    assert.deepEqual(await tusLeftovers(url), [], 'the partial bytes were freed');
    assert.equal((await tus(url, 'HEAD')).status, 410);
  });

  test('a value that is not a tus method is 405 METHOD_NOT_ALLOWED, not a missing upload', async () => {
    const url = await create(10, { filename: 'bogus-override.bin' });
    for (const method of ['GET', 'PUT', 'FOO', 'PATCH, DELETE']) {
      for (const target of [url, `${w.url}/v1/tus/`]) {
        const res = await tus(target, 'POST', { ...as(method), 'Upload-Offset': '0' }, randomBytes(10));
        const error = await refusal(res, method);
        assert.equal(res.status, 405, `${method}: ${JSON.stringify(error)}`);
        assert.equal(error.code, 'METHOD_NOT_ALLOWED', method);
        assert.deepEqual(
          res.headers.get('allow')?.split(', ').sort(),
          ['DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'POST'],
          method,
        );
      }
    }
    assert.equal(await offsetOf(url), 0, 'nothing of the refused bodies was written');
    assert.equal(uploadRow(url)?.status, 'pending');
  });

  test('an override needs the key, and another account’s key still finds no upload', async () => {
    const bytes = randomBytes(10);
    const url = await create(bytes.length, { filename: 'overridden-other.bin' });
    const other = await w.newAccount();
    for (const method of ['PATCH', 'HEAD', 'DELETE']) {
      const headers = { ...as(method), 'Upload-Offset': '0' };
      const anonymous = await tus(url, 'POST', headers, bytes, null);
      assert.equal(anonymous.status, 401, method);
      assert.equal((await refusal(anonymous, method)).code, 'UNAUTHORIZED');
      const res = await tus(url, 'POST', headers, bytes, other.key);
      assert.equal(res.status, 404, method);
      assert.equal((await refusal(res, method)).code, 'NOT_FOUND');
    }
    assert.equal(await offsetOf(url), 0);
    assert.equal(uploadRow(url)?.status, 'pending');
  });
});

describe('refusals', () => {
  test('every request needs a key, and an upload is only its own account’s', async () => {
    assert.equal(
      (await tus(`${w.url}/v1/tus/`, 'POST', { 'Upload-Length': '1' }, undefined, null)).status,
      401,
    );
    const url = await create(10);
    assert.equal((await tus(url, 'HEAD', {}, undefined, null)).status, 401);
    const other = await w.newAccount();
    assert.equal((await tus(url, 'HEAD', {}, undefined, other.key)).status, 404);
    assert.equal((await tus(url, 'PATCH', { 'Upload-Offset': '0' }, randomBytes(10), other.key)).status, 404);
    assert.equal((await tus(url, 'DELETE', {}, undefined, other.key)).status, 404);
    assert.equal(await offsetOf(url), 0);
    assert.equal(uploadRow(url)?.status, 'pending');
  });

  test('a hostile or missing file name is refused with a reason', async () => {
    for (const name of ['../../etc/passwd', 'a\u0000b', 'evil\u202Etxt.exe']) {
      const res = await tus(`${w.url}/v1/tus/`, 'POST', {
        'Upload-Length': '10',
        'Upload-Metadata': `filename ${b64(name)}`,
      });
      assert.equal(res.status, 400, name);
      const body = await res.json();
      assert.equal(body.error.code, 'INVALID_NAME');
      assert.ok(body.error.message.length > 0);
    }
    const none = await tus(`${w.url}/v1/tus/`, 'POST', { 'Upload-Length': '10' });
    assert.equal(none.status, 400);
    const badType = await tus(`${w.url}/v1/tus/`, 'POST', {
      'Upload-Length': '10',
      'Upload-Metadata': `filename ${b64('a.txt')},filetype ${b64('not a type')}`,
    });
    assert.equal(badType.status, 400);
    assert.equal((await badType.json()).error.code, 'INVALID_CONTENT_TYPE');
  });

  test('a file over the account limit is refused with 413 before any byte', async () => {
    const res = await tus(`${w.url}/v1/tus/`, 'POST', {
      'Upload-Length': String(5 * 1024 ** 3 + 1),
      'Upload-Metadata': `filename ${b64('huge.bin')}`,
    });
    assert.equal(res.status, 413);
    assert.equal((await res.json()).error.code, 'FILE_TOO_LARGE');
  });

  test('a chunked body past Upload-Length: 413 FILE_TOO_LARGE with the length, and nothing of it written', async () => {
    /** A body without a Content-Length (Transfer-Encoding: chunked), sent 64 KiB at a time. */
    const chunked = (url: string, method: string, headers: Record<string, string>, bytes: Buffer) =>
      fetch(url, {
        method,
        headers: {
          'Tus-Resumable': '1.0.0',
          Authorization: `Bearer ${w.key}`,
          'Content-Type': 'application/offset+octet-stream',
          ...headers,
        },
        body: Readable.toWeb(
          Readable.from(
            Array.from({ length: Math.ceil(bytes.length / 65536) }, (_, i) =>
              bytes.subarray(i * 65536, (i + 1) * 65536),
            ),
          ),
        ) as ReadableStream,
        duplex: 'half',
      } as RequestInit);
    // More than S3's smallest part, so whole parts of the refused body would reach the store
    // before its end showed it too long; and a short tail of an earlier PATCH waits there.
    const size = 6 * MiB + 10;
    const bytes = randomBytes(size);
    const url = await create(size, { filename: 'chunked-over.bin' });
    assert.equal((await tus(url, 'PATCH', { 'Upload-Offset': '0' }, bytes.subarray(0, 100))).status, 204);
    for (const offset of [100, 100]) {
      const over = await chunked(
        url,
        'PATCH',
        { 'Upload-Offset': String(offset) },
        randomBytes(size - offset + 1),
      );
      const error = await refusal(over, `PATCH at ${offset}`);
      assert.equal(over.status, 413, JSON.stringify(error));
      assert.equal(error.code, 'FILE_TOO_LARGE');
      assert.deepEqual(error.details, { limit: size });
      assert.equal(await offsetOf(url), 100, 'nothing of the refused body was written');
    }
    // The same with a checksum (the body is staged to be checked first).
    const staged = await chunked(
      url,
      'PATCH',
      { 'Upload-Offset': '100', 'Upload-Checksum': checksum('sha1', randomBytes(1)) },
      randomBytes(size - 99),
    );
    const stagedError = await refusal(staged, 'staged');
    assert.equal(staged.status, 413, JSON.stringify(stagedError));
    assert.deepEqual(stagedError.details, { limit: size });
    assert.equal(await offsetOf(url), 100);
    // The rest, chunked too, completes the file as it was sent.
    const rest = await chunked(url, 'PATCH', { 'Upload-Offset': '100' }, bytes.subarray(100));
    assert.equal(rest.status, 204, await rest.text());
    assert.equal((await asset(rest.headers.get('wharf-asset-id')!)).sha256, sha256Hex(bytes));

    // Creation with upload: refused the same.
    const name = `chunked-over-${randomBytes(4).toString('hex')}.bin`;
    const created = await chunked(
      `${w.url}/v1/tus/`,
      'POST',
      { 'Upload-Length': '1000', 'Upload-Metadata': `filename ${b64(name)}` },
      randomBytes(2000),
    );
    const error = await refusal(created, 'creation');
    assert.equal(created.status, 413, JSON.stringify(error));
    assert.equal(error.code, 'FILE_TOO_LARGE');
    assert.deepEqual(error.details, { limit: 1000 });
    assert.equal(created.headers.get('location'), null);
    const [row] = dbQuery<{ status: string; storage_key: string }>(
      w,
      'select status, storage_key from uploads where name = ?',
      name,
    );
    // Ended at once, or (its body staged first) refused before it was made: none left pending.
    assert.ok(row === undefined || row.status === 'expired', JSON.stringify(row));
    if (row) {
      const createdUrl = `${w.url}/v1/tus/${row.storage_key.split('/').slice(1).join('/')}`;
      assert.deepEqual(await tusLeftovers(createdUrl), []);
    }
  });

  test('a deferred length is not supported', async () => {
    const res = await tus(`${w.url}/v1/tus/`, 'POST', {
      'Upload-Defer-Length': '1',
      'Upload-Metadata': `filename ${b64('later.bin')}`,
    });
    assert.equal(res.status, 501);
    assert.equal((await refusal(res)).code, 'VALIDATION_FAILED');
  });

  test('the tus protocol’s refusals are Wharf’s JSON with a code, at the statuses tus clients know', async () => {
    const url = await create(10, { filename: 'refusals.bin' });
    assert.equal((await tus(url, 'PATCH', { 'Upload-Offset': '0' }, randomBytes(4))).status, 204);
    const expect = async (label: string, res: Promise<Response>, status: number, code: string) => {
      const answer = await res;
      const error = await refusal(answer, label);
      assert.equal(answer.status, status, `${label}: ${JSON.stringify(error)}`);
      assert.equal(error.code, code, label);
      assert.equal(answer.headers.get('tus-resumable'), '1.0.0', label);
      return error;
    };
    await expect(
      'a wrong offset',
      tus(url, 'PATCH', { 'Upload-Offset': '0' }, randomBytes(2)),
      409,
      'OFFSET_MISMATCH',
    );
    const tooLong = await expect(
      'a body past Upload-Length',
      tus(url, 'PATCH', { 'Upload-Offset': '4' }, randomBytes(7)),
      413,
      'FILE_TOO_LARGE',
    );
    assert.deepEqual(tooLong.details, { limit: 10 });
    await expect('no Upload-Offset', tus(url, 'PATCH', {}, randomBytes(2)), 400, 'VALIDATION_FAILED');
    await expect(
      'a malformed Upload-Offset',
      tus(url, 'PATCH', { 'Upload-Offset': 'four' }, randomBytes(2)),
      400,
      'VALIDATION_FAILED',
    );
    for (const type of ['application/octet-stream', null]) {
      const res = fetch(url, {
        method: 'PATCH',
        headers: {
          'Tus-Resumable': '1.0.0',
          Authorization: `Bearer ${w.key}`,
          'Upload-Offset': '4',
          ...(type && { 'Content-Type': type }),
        },
        body: type ? new Uint8Array(randomBytes(2)) : null,
      });
      await expect(`Content-Type ${type}`, res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    }
    await expect(
      'no Tus-Resumable',
      fetch(url, {
        method: 'PATCH',
        headers: {
          Authorization: `Bearer ${w.key}`,
          'Upload-Offset': '4',
          'Content-Type': 'application/offset+octet-stream',
        },
        body: new Uint8Array(randomBytes(2)),
      }),
      412,
      'PRECONDITION_FAILED',
    );
    // tus 1.0: a version the server does not speak is 412 with the one it does (Tus-Version),
    // on a creation and an append alike; a missing one says it too (h92 saw 400 for 0.2.2).
    for (const [label, request] of [
      [
        'Tus-Resumable 0.2.2 on a PATCH',
        fetch(url, {
          method: 'PATCH',
          headers: {
            'Tus-Resumable': '0.2.2',
            Authorization: `Bearer ${w.key}`,
            'Upload-Offset': '4',
            'Content-Type': 'application/offset+octet-stream',
          },
          body: new Uint8Array(randomBytes(2)),
        }),
      ],
      [
        'Tus-Resumable 0.2.2 on a creation',
        fetch(`${w.url}/v1/tus/`, {
          method: 'POST',
          headers: {
            'Tus-Resumable': '0.2.2',
            Authorization: `Bearer ${w.key}`,
            'Upload-Length': '3',
            'Upload-Metadata': `filename ${b64('v.bin')}`,
          },
        }),
      ],
      [
        'no Tus-Resumable on a HEAD',
        fetch(url, { method: 'HEAD', headers: { Authorization: `Bearer ${w.key}` } }),
      ],
    ] as const) {
      const answer = await request;
      assert.equal(answer.status, 412, label);
      assert.equal(answer.headers.get('tus-version'), '1.0.0', label);
      if (!label.includes('HEAD')) {
        assert.equal(
          ((await answer.json()) as { error: { code: string } }).error.code,
          'PRECONDITION_FAILED',
          label,
        );
      }
    }
    await expect(
      'no Upload-Length',
      tus(`${w.url}/v1/tus/`, 'POST', { 'Upload-Metadata': `filename ${b64('a.bin')}` }),
      400,
      'VALIDATION_FAILED',
    );
    assert.equal(await offsetOf(url), 4, 'nothing of the refused bodies was written');
    assert.equal((await tus(url, 'PATCH', { 'Upload-Offset': '4' }, randomBytes(6))).status, 204);
  });
});

describe('an upload whose last byte arrived but whose completion never ran (a crash)', () => {
  /**
   * Puts every byte where tus keeps them, without tus: what storage holds when the server died
   * after the last byte was written and before completion (on S3: the parts, not yet composed).
   */
  async function writeBehindTus(url: string, bytes: Buffer): Promise<void> {
    const key = `default/${new URL(url).pathname.split('/').pop()}`;
    if (w.backingEnv.WHARF_STORAGE !== 's3') {
      await writeFile(join(w.dataDir, 'tus', 'uploads', key), bytes);
      return;
    }
    const { S3Client, HeadObjectCommand, UploadPartCommand } = await import('@aws-sdk/client-s3');
    const env = w.backingEnv;
    const s3 = new S3Client({
      endpoint: env.WHARF_S3_ENDPOINT,
      region: env.WHARF_S3_REGION,
      forcePathStyle: true,
      credentials: {
        accessKeyId: env.WHARF_S3_ACCESS_KEY_ID!,
        secretAccessKey: env.WHARF_S3_SECRET_ACCESS_KEY!,
      },
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
    try {
      const info = await s3.send(new HeadObjectCommand({ Bucket: env.WHARF_S3_BUCKET, Key: `${key}.info` }));
      await s3.send(
        new UploadPartCommand({
          Bucket: env.WHARF_S3_BUCKET,
          Key: key,
          UploadId: info.Metadata!['upload-id'],
          PartNumber: 1,
          Body: bytes,
        }),
      );
    } finally {
      s3.destroy();
    }
  }

  test('the next HEAD completes it', async () => {
    const bytes = randomBytes(70_000);
    const url = await create(bytes.length, { filename: 'crashed.bin' });
    await writeBehindTus(url, bytes);
    assert.equal(uploadRow(url)?.status, 'pending');
    const head = await tus(url, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('upload-offset'), String(bytes.length));
    assert.equal(uploadRow(url)?.status, 'completed');
    assert.equal((await asset(head.headers.get('wharf-asset-id')!)).sha256, sha256Hex(bytes));
    assert.deepEqual(await tusLeftovers(url), []);
  });

  test('a DELETE meanwhile (another node is completing it) is refused as for a finished upload', async () => {
    const bytes = randomBytes(30_000);
    const url = await create(bytes.length, { filename: 'finishing.bin' });
    await writeBehindTus(url, bytes);
    const refused = await tus(url, 'DELETE');
    assert.equal(refused.status, 409);
    assert.equal((await refused.json()).error.code, 'UPLOAD_NOT_PENDING');
    const head = await tus(url, 'HEAD');
    assert.equal(head.status, 200, 'and it still completes');
    assert.equal(uploadRow(url)?.status, 'completed');
  });

  test('the sweep completes it when no client comes back', async () => {
    const bytes = randomBytes(50_000);
    const url = await create(bytes.length, { filename: 'swept.bin' });
    await writeBehindTus(url, bytes);
    await w.wharf.core.uploads.sweep();
    const row = uploadRow(url)!;
    assert.equal(row.status, 'completed');
    assert.equal((await asset(row.asset_id!)).sha256, sha256Hex(bytes));
    assert.deepEqual(await tusLeftovers(url), []);
  });

  test('a sweep that reads another upload halfway through its termination skips it, and still completes this one', {
    // Embedded, a partial upload is its file, which reads as partial or as gone at every moment
    // of a termination, so no sweep ever tries to complete it. tus.io's S3 store reads one whose
    // multipart upload the termination aborted, and whose `.info` is not deleted yet, as whole.
    skip: deployment !== 'scaled' && 'on local files a termination never shows a sweep a whole upload',
  }, async () => {
    const bytes = randomBytes(50_000);
    const crashed = await create(bytes.length, { filename: 'swept-beside.bin' });
    await writeBehindTus(crashed, bytes);
    const cancelled = await create(300_000, { filename: 'cancelled.bin' });
    assert.equal((await tus(cancelled, 'PATCH', { 'Upload-Offset': '0' }, randomBytes(100_000))).status, 204);

    // The cancel frees storage, then records the upload as cancelled. The sweep runs between its
    // first step (tus.io's store aborts the multipart upload) and its next (the `.info` goes),
    // as a sweep on another node may.
    const resumable = w.wharf.core.resumable;
    const discard = resumable.discard;
    let swept: ReturnType<TestWharf['wharf']['core']['uploads']['sweep']> | undefined;
    resumable.discard = async (upload) => {
      await withBucket(w, async (s3, Bucket) => {
        const { HeadObjectCommand, AbortMultipartUploadCommand } = await import('@aws-sdk/client-s3');
        const info = await s3.send(new HeadObjectCommand({ Bucket, Key: `${upload.storageKey}.info` }));
        const UploadId = info.Metadata!['upload-id'];
        await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: upload.storageKey, UploadId }));
      });
      swept = w.wharf.core.uploads.sweep();
      await swept.catch(() => {});
      return discard.call(resumable, upload);
    };
    const id = new URL(cancelled).pathname.split('/').pop()!.split('.')[0]!;
    try {
      const res = await api(w.url, w.key, 'DELETE', `/v1/uploads/${id}`);
      assert.equal(res.status, 204, JSON.stringify(res.body));
    } finally {
      resumable.discard = discard;
    }

    assert.ok(swept, 'the sweep ran within the cancel');
    assert.ok((await swept).reconciled >= 1, 'the sweep resolved, having completed an upload');
    const row = uploadRow(crashed)!;
    assert.equal(row.status, 'completed', 'the other upload was completed by the same sweep');
    assert.equal((await asset(row.asset_id!)).sha256, sha256Hex(bytes));
    assert.equal(uploadRow(cancelled)?.status, 'expired');
    assert.deepEqual(await tusLeftovers(cancelled), []);
  });

  test('a termination cut short after its multipart upload was aborted: no byte to offer, and a retried DELETE ends it', {
    // A local partial upload is one file: a termination removes it in one step.
    skip: deployment !== 'scaled' && 'on local files a termination has no step to be cut between',
  }, async () => {
    const url = await create(300_000, { filename: 'cut-cancel.bin' });
    assert.equal((await tus(url, 'PATCH', { 'Upload-Offset': '0' }, randomBytes(100_000))).status, 204);
    // The crash: tus.io's store aborted the multipart upload, and the server died before it
    // deleted the `.info`. Before the fix, the upload then read as whole: HEAD 500 (a
    // completion without bytes), DELETE 409 (a finished upload), until the expiry sweep.
    const key = `default/${new URL(url).pathname.split('/').pop()}`;
    await withBucket(w, async (s3, Bucket) => {
      const { HeadObjectCommand, AbortMultipartUploadCommand } = await import('@aws-sdk/client-s3');
      const info = await s3.send(new HeadObjectCommand({ Bucket, Key: `${key}.info` }));
      const UploadId = info.Metadata!['upload-id'];
      await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId }));
    });

    const head = await tus(url, 'HEAD');
    assert.equal(head.status, 404, 'no byte of it is left to resume from');
    const patch = await tus(url, 'PATCH', { 'Upload-Offset': '100000' }, randomBytes(1000));
    assert.equal(patch.status, 404, await patch.clone().text());
    assert.equal((await refusal(patch, 'PATCH')).code, 'NOT_FOUND');
    assert.equal(uploadRow(url)?.status, 'pending');

    const deleted = await tus(url, 'DELETE');
    assert.equal(deleted.status, 204, await deleted.text());
    assert.equal(deleted.headers.get('tus-resumable'), '1.0.0');
    assert.equal(uploadRow(url)?.status, 'expired', 'the retried DELETE recorded the termination');
    assert.deepEqual(await tusLeftovers(url), [], 'and the `.info` went with it');
    assert.equal((await tus(url, 'HEAD')).status, 410);
  });
});

describe('two nodes of one deployment', {
  skip: deployment !== 'scaled' && 'needs a shared database (scaled)',
}, () => {
  test('an upload created on node A takes its bytes on node B', async () => {
    const b = await startWharf({ sharing: w, clock: w.clock });
    try {
      const bytes = randomBytes(CHUNK + 1000);
      const onA = await create(bytes.length, { filename: 'across.bin' });
      const onB = onA.replace(w.url, b.url);
      const first = await tus(onB, 'PATCH', { 'Upload-Offset': '0' }, bytes.subarray(0, CHUNK));
      assert.equal(first.status, 204);
      assert.equal(await offsetOf(onA), CHUNK, 'node A sees what node B stored');
      const last = await tus(onA, 'PATCH', { 'Upload-Offset': String(CHUNK) }, bytes.subarray(CHUNK));
      assert.equal(last.status, 204);
      assert.equal((await asset(last.headers.get('wharf-asset-id')!)).sha256, sha256Hex(bytes));
    } finally {
      await b.close();
    }
  });

  test('a lock held on one node is asked back by a request on the other', async () => {
    const b = await startWharf({ sharing: w, clock: w.clock });
    try {
      const { path, bytes } = await sourceFile(2 * CHUNK);
      // A PATCH on node A that stalls mid-body holds the upload's lock there. (With its
      // Content-Length: one without is staged whole on S3 before tus sees it.)
      const url = await create(bytes.length, { filename: 'locked.bin' });
      const stalled = httpRequest(url, {
        method: 'PATCH',
        headers: {
          'Tus-Resumable': '1.0.0',
          Authorization: `Bearer ${w.key}`,
          'Content-Type': 'application/offset+octet-stream',
          'Content-Length': String(bytes.length),
          'Upload-Offset': '0',
        },
      });
      const ended = new Promise<void>((resolve) => {
        stalled.on('error', () => resolve());
        stalled.on('close', () => resolve());
      });
      stalled.write(bytes.subarray(0, 1000));
      await eventually(
        async () => dbQuery(w, "select name from locks where name like 'tus:%'").length > 0,
        'A holds the lock',
      );
      // Node B's HEAD asks A to let go and gets the upload once A has.
      const offset = await offsetOf(url.replace(w.url, b.url));
      assert.ok(offset <= 1000);
      stalled.destroy();
      await ended;
      const finished = await tusUpload(b, w.key, createReadStream(path), {
        chunkSize: CHUNK,
        uploadSize: bytes.length,
        uploadUrl: url.replace(w.url, b.url),
      }).done;
      assert.equal((await asset(finished.assetId)).sha256, sha256Hex(bytes));
    } finally {
      await b.close();
    }
  });
});
