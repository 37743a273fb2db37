/**
 * The fast paths of tus and multipart (bytes hashed as they arrive, multipart objects composed
 * without a copy) give what the simple ones gave: the asset holds exactly the bytes sent, and
 * its SHA-256 and MD5 are theirs, also when the upload moves to another node or a restarted
 * server half-way (whose hashing state is gone), and when parts arrive out of order or are
 * sent again. Reads (whole and ranges) of a composed object are the bytes as one file.
 * Downloads reuse their read buffers without ever mixing bytes of two responses.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MULTIPART_LIMITS } from '../../src/core/ports.js';
import { downloadBuffers } from '../../src/core/read-buffers.js';
import { filesUnder, uploadRaw } from '../helpers/assets.js';
import { onS3, storesOnS3 } from '../helpers/deployment.js';
import { api } from '../helpers/http.js';
import { parseScrape, seriesValue } from '../helpers/observe.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

const PART = MULTIPART_LIMITS.minPartSize;
const METRICS_TOKEN = `metrics-${randomBytes(12).toString('hex')}`;
const NODE_ENV = { WHARF_METRICS_TOKEN: METRICS_TOKEN };

let w: TestWharf;
before(async () => {
  w = await startWharf({ env: NODE_ENV });
});
after(async () => {
  await w?.close();
});

const digest = (algorithm: string, bytes: Buffer) => createHash(algorithm).update(bytes).digest('hex');

/** The asset's recorded digests and its bytes as served are those of `bytes`. */
async function assertHolds(server: TestWharf, assetId: string, bytes: Buffer): Promise<void> {
  const meta = await api(server.url, server.key, 'GET', `/v1/assets/${assetId}`);
  assert.equal(meta.status, 200, JSON.stringify(meta.body));
  assert.equal(meta.body.size, bytes.length);
  assert.equal(meta.body.sha256, digest('sha256', bytes), 'SHA-256 of exactly the bytes sent');
  assert.equal(meta.body.md5, digest('md5', bytes), 'MD5 of exactly the bytes sent');
  const res = await fetch(`${server.url}/v1/assets/${assetId}/content`, {
    headers: { 'x-api-key': server.key },
  });
  assert.equal(res.status, 200);
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes), 'served bytes are the bytes sent');
}

/** Bytes `server` has read back out of storage to hash them (wharf_verify_read_bytes_total). */
async function readBack(server: TestWharf): Promise<number> {
  const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  assert.equal(res.status, 200);
  return seriesValue(parseScrape(await res.text()), 'wharf_verify_read_bytes_total');
}

// ---- tus ----

async function tusCreate(server: TestWharf, size: number): Promise<string> {
  const res = await fetch(`${server.url}/v1/tus/`, {
    method: 'POST',
    headers: {
      'Tus-Resumable': '1.0.0',
      'x-api-key': server.key,
      'Upload-Length': String(size),
      'Upload-Metadata': `filename ${Buffer.from('fast.bin').toString('base64')}`,
    },
  });
  assert.equal(res.status, 201, await res.text());
  return new URL(res.headers.get('location')!).pathname;
}

async function tusPatch(server: TestWharf, path: string, offset: number, body: Buffer): Promise<Response> {
  const res = await fetch(`${server.url}${path}`, {
    method: 'PATCH',
    headers: {
      'Tus-Resumable': '1.0.0',
      'x-api-key': server.key,
      'Content-Type': 'application/offset+octet-stream',
      'Upload-Offset': String(offset),
    },
    body: new Uint8Array(body),
  });
  assert.equal(res.status, 204, await res.text());
  assert.equal(res.headers.get('upload-offset'), String(offset + body.length));
  return res;
}

describe('tus: hashed as the bytes arrive', () => {
  test('one upload in several PATCHes on one node', async () => {
    const bytes = randomBytes(3 * PART + 12_345);
    const path = await tusCreate(w, bytes.length);
    const cuts = [0, PART, 2 * PART + 7, bytes.length];
    const readBefore = await readBack(w);
    let last: Response | undefined;
    for (let i = 0; i + 1 < cuts.length; i++) {
      last = await tusPatch(w, path, cuts[i]!, bytes.subarray(cuts[i], cuts[i + 1]));
    }
    // Hashed on the way to the file or the bucket: completion reads nothing back.
    assert.equal((await readBack(w)) - readBefore, 0, 'bytes read back at completion');
    await assertHolds(w, last!.headers.get('wharf-asset-id')!, bytes);
  });

  test('a 1-byte PATCH, then the rest (a tail short of an S3 part in between)', async () => {
    const bytes = randomBytes(PART + 2);
    const path = await tusCreate(w, bytes.length);
    const readBefore = await readBack(w);
    await tusPatch(w, path, 0, bytes.subarray(0, 1));
    const last = await tusPatch(w, path, 1, bytes.subarray(1));
    assert.equal((await readBack(w)) - readBefore, 0, 'bytes read back at completion');
    await assertHolds(w, last.headers.get('wharf-asset-id')!, bytes);
  });

  test('on S3, a PATCH buffers its parts in a directory of this process under the data dir', {
    skip: !storesOnS3 && 'local tus writes its upload file itself, with no part files',
  }, async () => {
    // tus.io's S3 store keeps each part in a file until it is uploaded. Under os.tmpdir()
    // and random names, a crash would leave them where no sweep looks (processTempDir).
    const bytes = randomBytes(PART + 3);
    const path = await tusCreate(w, bytes.length);
    const parts = join(w.dataDir, 'tus', 's3-parts');
    const request = httpRequest(`${w.url}${path}`, {
      method: 'PATCH',
      headers: {
        'Tus-Resumable': '1.0.0',
        'x-api-key': w.key,
        'Content-Type': 'application/offset+octet-stream',
        'Upload-Offset': '0',
        'Content-Length': String(bytes.length),
      },
    });
    const answered = new Promise<{ status: number; assetId: string }>((resolve, reject) => {
      request.once('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode!, assetId: String(res.headers['wharf-asset-id']) });
      });
      request.once('error', reject);
    });
    answered.catch(() => {}); // awaited below, unless a check fails first
    request.write(bytes.subarray(0, 1 << 20));
    try {
      let during: string[] = [];
      for (let i = 0; i < 100 && during.length === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        during = await filesUnder(parts);
      }
      assert.equal(during.length, 1, 'the part being received is a file in the process’s directory');
      assert.match(during[0]!, new RegExp(`^${hostname()}-${process.pid}-[0-9a-f]{8}/`));
      request.end(bytes.subarray(1 << 20));
    } finally {
      // A failed check must not leave the PATCH open: the server would wait for it at close.
      if (!request.writableEnded) request.destroy();
    }
    const { status, assetId } = await answered;
    assert.equal(status, 204);
    assert.deepEqual(await filesUnder(parts), [], 'each part file is removed once uploaded');
    await assertHolds(w, assetId, bytes);
  });

  test('PATCHes alternating between two nodes (each catches up on what the other wrote)', async () => {
    const b = await startWharf({ sharing: w, clock: w.clock });
    try {
      const bytes = randomBytes(3 * PART + 999);
      const path = await tusCreate(w, bytes.length);
      await tusPatch(w, path, 0, bytes.subarray(0, PART));
      await tusPatch(b, path, PART, bytes.subarray(PART, 2 * PART));
      const readBefore = await readBack(w);
      const last = await tusPatch(w, path, 2 * PART, bytes.subarray(2 * PART));
      // w's digest stopped at PART. On local disk it catches up from the file; S3 cannot
      // read back an unfinished upload's parts, so w hashes the finished object instead.
      const expected = onS3(w) ? bytes.length : 0;
      assert.equal((await readBack(w)) - readBefore, expected, 'bytes read back at completion');
      await assertHolds(w, last.headers.get('wharf-asset-id')!, bytes);
    } finally {
      await b.close();
    }
  });

  test('a server stopped half-way: the restarted one hashes what it did not see, once', async () => {
    const first = await startWharf({ sharing: w, clock: w.clock });
    const bytes = randomBytes(2 * PART + 1);
    const path = await tusCreate(first, bytes.length);
    await tusPatch(first, path, 0, bytes.subarray(0, PART + 3));
    await first.close();
    const restarted = await startWharf({ sharing: w, clock: w.clock });
    try {
      const last = await tusPatch(restarted, path, PART + 3, bytes.subarray(PART + 3));
      await assertHolds(restarted, last.headers.get('wharf-asset-id')!, bytes);
    } finally {
      await restarted.close();
    }
  });
});

describe('hashed on a worker thread: the bytes and digests of one pass', () => {
  // The event loop copies bytes to the worker in 1 MiB blocks and holds a stream past 2 MiB
  // in flight: these sizes and cuts cross blocks, the bound, and both at odd offsets.
  const MiB = 1 << 20;

  test('a direct upload larger than the bytes in flight, its declared digests checked', async () => {
    const bytes = randomBytes(9 * MiB + 3);
    const declared = { sha256: digest('sha256', bytes), md5: digest('md5', bytes) };
    const res = await uploadRaw(w, w.key, 'direct.bin', bytes, { query: declared });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    await assertHolds(w, res.body.asset.id, bytes);
    // A digest declared for other bytes is refused: what the worker computed is compared.
    const other = Buffer.from(bytes);
    other[other.length - 1]! ^= 1;
    const refused = await uploadRaw(w, w.key, 'direct.bin', other, { query: declared });
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'CHECKSUM_MISMATCH');
  });

  test('tus PATCHes of 1 byte to 6 MiB on two nodes and across a restart', async () => {
    const b = await startWharf({ sharing: w, clock: w.clock });
    const bytes = randomBytes(13 * MiB + 5);
    const cuts = [0, 1, MiB + 1, 6 * MiB + 7, 6 * MiB + 8, 9 * MiB - 1, 12 * MiB, bytes.length];
    // w, b, w (its state is behind: it catches up on b's bytes), b, a restarted node, …
    const path = await tusCreate(w, bytes.length);
    await tusPatch(w, path, cuts[0]!, bytes.subarray(cuts[0], cuts[1]));
    await tusPatch(w, path, cuts[1]!, bytes.subarray(cuts[1], cuts[2]));
    await tusPatch(b, path, cuts[2]!, bytes.subarray(cuts[2], cuts[3]));
    await tusPatch(w, path, cuts[3]!, bytes.subarray(cuts[3], cuts[4]));
    await tusPatch(b, path, cuts[4]!, bytes.subarray(cuts[4], cuts[5]));
    await b.close();
    const restarted = await startWharf({ sharing: w, clock: w.clock });
    try {
      await tusPatch(restarted, path, cuts[5]!, bytes.subarray(cuts[5], cuts[6]));
      const last = await tusPatch(w, path, cuts[6]!, bytes.subarray(cuts[6]));
      await assertHolds(w, last.headers.get('wharf-asset-id')!, bytes);
    } finally {
      await restarted.close();
    }
  });
});

// ---- multipart ----

async function startMultipart(server: TestWharf, size: number): Promise<string> {
  const res = await api(server.url, server.key, 'POST', '/v1/multipart', {
    name: 'parts.bin',
    content_type: 'application/octet-stream',
    size,
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.id;
}

async function putPart(server: TestWharf, id: string, partNumber: number, bytes: Buffer): Promise<string> {
  const signed = await api(server.url, server.key, 'POST', `/v1/multipart/${id}/parts`, {
    partNumbers: [partNumber],
  });
  assert.equal(signed.status, 200, JSON.stringify(signed.body));
  const part = signed.body.parts[0];
  const res = await fetch(part.url, { method: 'PUT', headers: part.headers, body: new Uint8Array(bytes) });
  assert.equal(res.status, 200, await res.text());
  return res.headers.get('etag')!;
}

async function completeMultipart(server: TestWharf, id: string, etags: string[]): Promise<string> {
  const res = await api(server.url, server.key, 'POST', `/v1/multipart/${id}/complete`, {
    parts: etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })),
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.asset.id;
}

function split(bytes: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const size of sizes) {
    out.push(bytes.subarray(at, at + size));
    at += size;
  }
  return out;
}

describe('multipart: hashed in part order as parts arrive, composed without a copy', () => {
  test('parts sent out of order, and concurrently', async () => {
    const bytes = randomBytes(4 * PART + 4321);
    const parts = split(bytes, [PART, PART + 17, PART, PART, 4321 - 17]);
    const id = await startMultipart(w, bytes.length);
    const etags: string[] = [];
    etags[2] = await putPart(w, id, 3, parts[2]!);
    etags[4] = await putPart(w, id, 5, parts[4]!);
    const [e1, e2] = await Promise.all([putPart(w, id, 1, parts[0]!), putPart(w, id, 2, parts[1]!)]);
    etags[0] = e1;
    etags[1] = e2;
    etags[3] = await putPart(w, id, 4, parts[3]!);
    await assertHolds(w, await completeMultipart(w, id, etags), bytes);
  });

  test('a part sent again with other bytes after it was hashed: the last one counts', async () => {
    const bytes = randomBytes(2 * PART + 100);
    const [a, b, c] = split(bytes, [PART, PART, 100]);
    const id = await startMultipart(w, bytes.length);
    await putPart(w, id, 1, randomBytes(PART));
    await putPart(w, id, 2, b!);
    const etagA = await putPart(w, id, 1, a!);
    const etagB = await putPart(w, id, 2, b!);
    const etagC = await putPart(w, id, 3, c!);
    await assertHolds(w, await completeMultipart(w, id, [etagA, etagB, etagC]), bytes);
  });

  test('parts from two nodes, completed on a third (restarted) one', async () => {
    const bytes = randomBytes(3 * PART + 5);
    const [a, b, c] = split(bytes, [PART, PART, PART + 5]);
    const other = await startWharf({ sharing: w, clock: w.clock });
    const id = await startMultipart(w, bytes.length);
    const etagA = await putPart(w, id, 1, a!);
    const etagB = await putPart(other, id, 2, b!);
    const etagC = await putPart(w, id, 3, c!);
    await other.close();
    const third = await startWharf({ sharing: w, clock: w.clock });
    try {
      await assertHolds(third, await completeMultipart(third, id, [etagA, etagB, etagC]), bytes);
    } finally {
      await third.close();
    }
  });

  test('ranges of a composed object, across part boundaries, are the file’s bytes', async () => {
    const bytes = randomBytes(3 * PART + 10);
    const parts = split(bytes, [PART, PART, PART + 10]);
    const id = await startMultipart(w, bytes.length);
    const etags = [];
    for (const [i, part] of parts.entries()) etags.push(await putPart(w, id, i + 1, part));
    const assetId = await completeMultipart(w, id, etags);
    for (const [start, end] of [
      [0, 0],
      [PART - 3, PART + 2],
      [PART, 2 * PART - 1],
      [PART - 1, 2 * PART + 5],
      [3 * PART, 3 * PART + 9],
      [bytes.length - 1, bytes.length - 1],
    ] as const) {
      const res = await fetch(`${w.url}/v1/assets/${assetId}/content`, {
        headers: { 'x-api-key': w.key, range: `bytes=${start}-${end}` },
      });
      assert.equal(res.status, 206);
      assert.ok(
        Buffer.from(await res.arrayBuffer()).equals(bytes.subarray(start, end + 1)),
        `bytes ${start}-${end}`,
      );
    }
  });

  test('deleting a composed asset frees it; the same bytes uploaded again are new', async () => {
    const bytes = randomBytes(PART + 1);
    const [a, b] = split(bytes, [PART, 1]);
    const id = await startMultipart(w, bytes.length);
    const assetId = await completeMultipart(w, id, [
      await putPart(w, id, 1, a!),
      await putPart(w, id, 2, b!),
    ]);
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${assetId}`)).status, 204);
    const again = await fetch(`${w.url}/v1/assets?name=again.bin`, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(bytes),
    });
    assert.equal(again.status, 201);
    await assertHolds(w, (await again.json()).asset.id, bytes);
  });
});

// ---- downloads ----

describe('downloads: read buffers handed back and reused', () => {
  const MiB = 1 << 20;

  async function upload(bytes: Buffer): Promise<string> {
    const res = await uploadRaw(w, w.key, 'download.bin', bytes, { contentType: 'application/octet-stream' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return (res.body as { asset: { id: string } }).asset.id;
  }

  async function download(assetId: string, range?: string, signal?: AbortSignal): Promise<Response> {
    return fetch(`${w.url}/v1/assets/${assetId}/content`, {
      headers: { 'x-api-key': w.key, ...(range && { range }) },
      ...(signal && { signal }),
    });
  }

  test('sequential downloads reuse a few buffers, and each is the file’s bytes', async () => {
    const bytes = randomBytes(5 * MiB + 17);
    const assetId = await upload(bytes);
    const before = downloadBuffers.allocated;
    for (let round = 0; round < 10; round++) {
      const res = await download(assetId);
      assert.equal(res.status, 200);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes), `download ${round}`);
    }
    // 10 downloads read 60 chunks. Without the buffers handed back, each was a new one.
    if (!onS3(w))
      assert.ok(downloadBuffers.allocated - before <= 12, `${downloadBuffers.allocated - before} allocated`);
  });

  test('a slow reader’s chunks waiting in its socket are not lent to another download', async () => {
    // Larger than loopback's socket buffers: with the reader paused, chunks wait in Wharf's
    // response until it reads again, while another download reads at full speed.
    const slow = randomBytes(24 * MiB + 3);
    const fast = randomBytes(4 * MiB + 1);
    const [slowId, fastId] = await Promise.all([upload(slow), upload(fast)]);
    const res = await download(slowId);
    const reader = res.body!.getReader();
    const chunks: Buffer[] = [];
    const first = await reader.read();
    chunks.push(Buffer.from(first.value!));
    await new Promise((resolve) => setTimeout(resolve, 200)); // the socket fills up
    for (let round = 0; round < 3; round++) {
      const other = await download(fastId);
      assert.ok(Buffer.from(await other.arrayBuffer()).equals(fast), `the other download, round ${round}`);
    }
    for (let next = await reader.read(); !next.done; next = await reader.read())
      chunks.push(Buffer.from(next.value));
    assert.ok(Buffer.concat(chunks).equals(slow), 'the slow download is its own bytes');
  });

  test('downloads, ranges and abandoned downloads at once never see each other’s bytes', async () => {
    const a = randomBytes(5 * MiB + 17);
    const b = randomBytes(3 * MiB + 5);
    const [idA, idB] = await Promise.all([upload(a), upload(b)]);
    for (let round = 0; round < 6; round++) {
      const abandoned = new AbortController();
      const [whole, ranged, other] = await Promise.all([
        download(idA).then(async (res) => Buffer.from(await res.arrayBuffer())),
        download(idA, `bytes=${MiB - 3}-${4 * MiB + 2}`).then(async (res) => {
          assert.equal(res.status, 206);
          return Buffer.from(await res.arrayBuffer());
        }),
        download(idB).then(async (res) => Buffer.from(await res.arrayBuffer())),
        // Read one chunk, then hang up: its buffers in flight must not be reused while the
        // socket may still hold them, nor lost to the other downloads.
        download(idB, undefined, abandoned.signal).then(async (res) => {
          const reader = res.body!.getReader();
          await reader.read();
          abandoned.abort();
          await reader.read().catch(() => undefined);
        }),
      ]);
      assert.ok(whole.equals(a), `whole A, round ${round}`);
      assert.ok(ranged.equals(a.subarray(MiB - 3, 4 * MiB + 3)), `range of A, round ${round}`);
      assert.ok(other.equals(b), `whole B, round ${round}`);
    }
  });
});
