import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DefaultHttpStack, type HttpStack, Upload } from 'tus-js-client';
import { eventually } from '../helpers/assets.js';
import { api, heldLastByte } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * Idempotency keys on the tus creation (docs/api.md, "Send a declaration again"): a creation
 * whose answer was lost, sent again with its key, gets the upload the first made (its Location
 * and current Upload-Offset), so an upload token for one file does not refuse the retry. On both
 * deployments.
 */

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

const b64 = (text: string) => Buffer.from(text).toString('base64');

/** A new upload token for one file. */
async function oneFileToken(): Promise<string> {
  const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', { max_files: 1, expires_in: 600 });
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  return minted.body.secret as string;
}

/** A tus creation (with its first bytes when `body` is given). */
function creation(
  secret: string,
  name: string,
  size: number,
  headers: Record<string, string> = {},
  body?: Buffer,
  path = '/v1/tus/',
): Promise<Response> {
  return fetch(`${w.url}${path}`, {
    method: 'POST',
    headers: {
      'Tus-Resumable': '1.0.0',
      Authorization: `Bearer ${secret}`,
      'Upload-Length': String(size),
      'Upload-Metadata': `filename ${b64(name)}`,
      ...(body && { 'Content-Type': 'application/offset+octet-stream' }),
      ...headers,
    },
    ...(body && { body: new Uint8Array(body) }),
  });
}

function tus(
  url: string,
  method: string,
  secret: string,
  headers: Record<string, string> = {},
  body?: Buffer,
) {
  return fetch(url, {
    method,
    headers: {
      'Tus-Resumable': '1.0.0',
      Authorization: `Bearer ${secret}`,
      ...(body && { 'Content-Type': 'application/offset+octet-stream' }),
      ...headers,
    },
    ...(body && { body: new Uint8Array(body) }),
  });
}

async function uploadsNamed(name: string): Promise<Array<{ id: string; status: string }>> {
  const listed = await api(w.url, w.key, 'GET', '/v1/uploads?limit=1000');
  assert.equal(listed.status, 200);
  return listed.body.data.filter((u: { name: string }) => u.name === name);
}

async function contentOf(assetId: string): Promise<Buffer> {
  const res = await fetch(`${w.url}/v1/assets/${assetId}/content`, { headers: { 'x-api-key': w.key } });
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

async function errorCode(res: Response): Promise<string> {
  const text = await res.text();
  return JSON.parse(text).error.code;
}

test("a one-file token's creation sent again with its key gets the same upload, not 403 TOKEN_FILES_EXHAUSTED", async () => {
  const token = await oneFileToken();
  const key = randomUUID();
  const bytes = randomBytes(3000);
  const first = await creation(token, 'tus-idem.bin', bytes.length, { 'Idempotency-Key': key });
  assert.equal(first.status, 201, await first.text());
  assert.equal(first.headers.get('idempotent-replayed'), null);
  const location = first.headers.get('location');
  assert.ok(location);
  // The answer was lost; tus clients send the creation again.
  const again = await creation(token, 'tus-idem.bin', bytes.length, { 'Idempotency-Key': key });
  assert.equal(again.status, 201, await again.text());
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.equal(again.headers.get('location'), location);
  assert.equal(again.headers.get('tus-resumable'), '1.0.0');
  assert.equal(again.headers.get('upload-offset'), '0');
  assert.ok(again.headers.get('upload-expires'));
  // `/v1/tus` is the same endpoint, and the draft's quoted form the same key.
  const bare = await creation(
    token,
    'tus-idem.bin',
    bytes.length,
    { 'Idempotency-Key': `"${key}"` },
    undefined,
    '/v1/tus',
  );
  assert.equal(bare.status, 201, await bare.text());
  assert.equal(bare.headers.get('location'), location);
  assert.deepEqual(
    (await uploadsNamed('tus-idem.bin')).map((u) => u.status),
    ['pending'],
    'one upload',
  );
  // The token's one file is that upload: a new creation (no key) is refused.
  const fresh = await creation(token, 'tus-idem-2.bin', 10);
  assert.equal(fresh.status, 403);
  assert.equal(await errorCode(fresh), 'TOKEN_FILES_EXHAUSTED');
  // The upload takes its bytes at that URL.
  const patch = await tus(location, 'PATCH', token, { 'Upload-Offset': '0' }, bytes);
  assert.equal(patch.status, 204, await patch.text());
  const assetId = patch.headers.get('wharf-asset-id');
  assert.ok(assetId);
  assert.equal(Buffer.compare(await contentOf(assetId), bytes), 0);
  // Finished since: a replay names the same URL, at its length, with its asset.
  const later = await creation(token, 'tus-idem.bin', bytes.length, { 'Idempotency-Key': key });
  assert.equal(later.status, 201, await later.text());
  assert.equal(later.headers.get('location'), location);
  assert.equal(later.headers.get('upload-offset'), String(bytes.length));
  assert.equal(later.headers.get('wharf-asset-id'), assetId);
  assert.equal(later.headers.get('wharf-upload-result'), 'created');
});

test('creation with upload sent again: the current Upload-Offset, and the retry’s body is not stored', async () => {
  const token = await oneFileToken();
  const key = randomUUID();
  const bytes = randomBytes(2000);
  const first = await creation(
    token,
    'tus-idem-inline.bin',
    bytes.length,
    { 'Idempotency-Key': key },
    bytes.subarray(0, 800),
  );
  assert.equal(first.status, 201, await first.text());
  assert.equal(first.headers.get('upload-offset'), '800');
  const location = first.headers.get('location')!;
  // The retry carries a longer first chunk: it is read and dropped, and the answer says where
  // the upload stands.
  const again = await creation(
    token,
    'tus-idem-inline.bin',
    bytes.length,
    { 'Idempotency-Key': key },
    bytes.subarray(0, 1200),
  );
  assert.equal(again.status, 201, await again.text());
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.equal(again.headers.get('location'), location);
  assert.equal(again.headers.get('upload-offset'), '800');
  const head = await tus(location, 'HEAD', token);
  assert.equal(head.headers.get('upload-offset'), '800', 'nothing of the retry’s body was written');
  const rest = await tus(location, 'PATCH', token, { 'Upload-Offset': '800' }, bytes.subarray(800));
  assert.equal(rest.status, 204, await rest.text());
  const assetId = rest.headers.get('wharf-asset-id')!;
  assert.equal(Buffer.compare(await contentOf(assetId), bytes), 0, 'byte-identical');
  assert.equal((await uploadsNamed('tus-idem-inline.bin')).length, 1);
});

/** A creation with upload whose connection is cut after `sent` bytes: its answer never arrives. */
function cutCreation(secret: string, key: string, name: string, bytes: Buffer, sent: number): Promise<void> {
  const target = new URL(w.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(target.port), target.hostname, () => {
      socket.write(
        `POST /v1/tus/ HTTP/1.1\r\nHost: ${target.host}\r\nAuthorization: Bearer ${secret}\r\n` +
          `Tus-Resumable: 1.0.0\r\nIdempotency-Key: ${key}\r\nUpload-Length: ${bytes.length}\r\n` +
          `Upload-Metadata: filename ${b64(name)}\r\nContent-Type: application/offset+octet-stream\r\n` +
          `Content-Length: ${bytes.length}\r\n\r\n`,
      );
      socket.write(bytes.subarray(0, sent), () => setTimeout(() => socket.destroy(), 200));
    });
    socket.on('close', () => resolve());
    socket.on('error', (err) =>
      (err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(err),
    );
  });
}

test('a creation with upload cut on the way is answered, sent again, with what arrived: the file completes from there', async () => {
  const token = await oneFileToken();
  const key = randomUUID();
  const bytes = randomBytes(100_000);
  await cutCreation(token, key, 'tus-idem-cut.bin', bytes, 40_000);
  let again: Response;
  // Told to come back while the first still settles (409 with Retry-After), then answered.
  for (let i = 0; ; i += 1) {
    again = await creation(token, 'tus-idem-cut.bin', bytes.length, { 'Idempotency-Key': key }, bytes);
    if (again.status !== 409 || i === 50) break;
    assert.equal(await errorCode(again), 'IDEMPOTENCY_KEY_IN_USE');
    assert.equal(again.headers.get('retry-after'), '1');
    await sleep(100);
  }
  assert.equal(again.status, 201, await again.text());
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  const location = again.headers.get('location')!;
  const offset = Number(again.headers.get('upload-offset'));
  assert.equal(offset, 40_000, 'every byte that arrived');
  const head = await tus(location, 'HEAD', token);
  assert.equal(head.headers.get('upload-offset'), String(offset));
  const rest = await tus(
    location,
    'PATCH',
    token,
    { 'Upload-Offset': String(offset) },
    bytes.subarray(offset),
  );
  assert.equal(rest.status, 204, await rest.text());
  assert.equal(Buffer.compare(await contentOf(rest.headers.get('wharf-asset-id')!), bytes), 0);
});

test('a retry while the first creation is still being answered is 409 IDEMPOTENCY_KEY_IN_USE with Retry-After: 1, then replayed', async () => {
  const token = await oneFileToken();
  const key = randomUUID();
  const bytes = randomBytes(5000);
  const name = 'tus-idem-busy.bin';
  const first = heldLastByte(
    `${w.url}/v1/tus/`,
    'POST',
    {
      'tus-resumable': '1.0.0',
      authorization: `Bearer ${token}`,
      'idempotency-key': key,
      'upload-length': String(bytes.length),
      'upload-metadata': `filename ${b64(name)}`,
      'content-type': 'application/offset+octet-stream',
    },
    bytes,
  );
  // The first holds the key while its body arrives (its last byte held back): its upload is
  // made once it has claimed the key.
  await eventually(async () => (await uploadsNamed(name)).length === 1, 'the first creation runs');
  const busy = await creation(token, name, bytes.length, { 'Idempotency-Key': key });
  assert.equal(busy.status, 409);
  assert.equal(await errorCode(busy), 'IDEMPOTENCY_KEY_IN_USE');
  assert.equal(busy.headers.get('retry-after'), '1');
  assert.equal(busy.headers.get('tus-resumable'), '1.0.0');
  first.finish();
  assert.equal(await first.status, 201);
  const again = await creation(token, name, bytes.length, { 'Idempotency-Key': key });
  assert.equal(again.status, 201, await again.text());
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.equal(again.headers.get('upload-offset'), String(bytes.length));
  assert.equal(Buffer.compare(await contentOf(again.headers.get('wharf-asset-id')!), bytes), 0);
});

test('the same key with another Upload-Length or Upload-Metadata is 422 IDEMPOTENCY_KEY_REUSED, and makes nothing', async () => {
  const key = randomUUID();
  const first = await creation(w.key, 'tus-idem-reused.bin', 100, { 'Idempotency-Key': key });
  assert.equal(first.status, 201, await first.text());
  for (const [name, size] of [
    ['tus-idem-reused.bin', 101],
    ['tus-idem-other.bin', 100],
  ] as const) {
    const other = await creation(w.key, name, size, { 'Idempotency-Key': key });
    assert.equal(other.status, 422, `${name} ${size}`);
    assert.equal(await errorCode(other), 'IDEMPOTENCY_KEY_REUSED');
    assert.equal(other.headers.get('tus-resumable'), '1.0.0');
  }
  // A key used at another route is another request too.
  const declared = await api(
    w.url,
    w.key,
    'POST',
    '/v1/uploads',
    { name: 'tus-idem-reused.bin', size: 100 },
    {
      'idempotency-key': key,
    },
  );
  assert.equal(declared.status, 422, JSON.stringify(declared.body));
  assert.equal((await uploadsNamed('tus-idem-reused.bin')).length, 1);
  assert.equal((await uploadsNamed('tus-idem-other.bin')).length, 0);
});

test('a refused creation keeps nothing under its key: the corrected retry runs', async () => {
  const key = randomUUID();
  const refused = await creation(w.key, '', 100, { 'Idempotency-Key': key });
  assert.equal(refused.status, 400, await refused.text());
  const corrected = await creation(w.key, 'tus-idem-corrected.bin', 100, { 'Idempotency-Key': key });
  assert.equal(corrected.status, 201, await corrected.text());
  assert.equal(corrected.headers.get('idempotent-replayed'), null);
  const malformed = await creation(w.key, 'tus-idem-corrected.bin', 100, { 'Idempotency-Key': 'a b' });
  assert.equal(malformed.status, 400);
  assert.equal(await errorCode(malformed), 'VALIDATION_FAILED');
});

test('a replay of an upload terminated since answers as its HEAD does: 410 UPLOAD_EXPIRED', async () => {
  const key = randomUUID();
  const first = await creation(w.key, 'tus-idem-gone.bin', 100, { 'Idempotency-Key': key });
  assert.equal(first.status, 201, await first.text());
  const location = first.headers.get('location')!;
  assert.equal((await tus(location, 'DELETE', w.key)).status, 204);
  const head = await tus(location, 'HEAD', w.key);
  assert.equal(head.status, 410);
  const again = await creation(
    w.key,
    'tus-idem-gone.bin',
    100,
    { 'Idempotency-Key': key },
    Buffer.alloc(100),
  );
  assert.equal(again.status, 410);
  assert.equal(await errorCode(again), 'UPLOAD_EXPIRED');
});

test('without a key a creation is made each time, as before: a one-file token refuses the second', async () => {
  const token = await oneFileToken();
  const first = await creation(token, 'tus-idem-none.bin', 100);
  assert.equal(first.status, 201, await first.text());
  const second = await creation(token, 'tus-idem-none.bin', 100);
  assert.equal(second.status, 403);
  assert.equal(await errorCode(second), 'TOKEN_FILES_EXHAUSTED');
  const a = await creation(w.key, 'tus-idem-none-2.bin', 100);
  const b = await creation(w.key, 'tus-idem-none-2.bin', 100);
  assert.equal(a.status, 201);
  assert.equal(b.status, 201);
  assert.notEqual(a.headers.get('location'), b.headers.get('location'));
  assert.equal(b.headers.get('idempotent-replayed'), null);
});

/** tus-js-client's own HTTP, but the answer to the first creation is lost (the server made it). */
function losingFirstCreation(): HttpStack & { creations: string[] } {
  const stack = new DefaultHttpStack({});
  const creations: string[] = [];
  return {
    creations,
    getName: () => 'losing',
    createRequest(method, url) {
      const request = stack.createRequest(method, url);
      if (method !== 'POST') return request;
      const send = request.send.bind(request);
      request.send = async (body) => {
        creations.push(request.getHeader('Idempotency-Key') ?? '');
        const response = await send(body);
        if (creations.length === 1) throw new Error('socket hang up');
        return response;
      };
      return request;
    },
  };
}

test('tus-js-client with a key: a one-file token’s creation (with its first chunk) whose answer is lost is retried, and the file arrives whole', async () => {
  const token = await oneFileToken();
  const bytes = randomBytes(3000);
  const httpStack = losingFirstCreation();
  const assetId = await new Promise<string>((resolve, reject) => {
    const upload = new Upload(bytes, {
      endpoint: `${w.url}/v1/tus/`,
      headers: { Authorization: `Bearer ${token}`, 'Idempotency-Key': randomUUID() },
      metadata: { filename: 'tus-idem-client.bin' },
      uploadDataDuringCreation: true,
      chunkSize: 1000,
      retryDelays: [0, 100],
      httpStack,
      onError: reject,
      onSuccess: ({ lastResponse }) => resolve(lastResponse.getHeader('Wharf-Asset-Id') ?? ''),
    });
    upload.start();
  });
  assert.equal(httpStack.creations.length, 2, 'the creation was sent again');
  assert.equal(new Set(httpStack.creations).size, 1, 'with its key');
  assert.equal(Buffer.compare(await contentOf(assetId), bytes), 0, 'byte-identical');
  assert.deepEqual(
    (await uploadsNamed('tus-idem-client.bin')).map((u) => u.status),
    ['completed'],
  );
});
