import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import sharp from 'sharp';
import { parseDictionary } from 'structured-headers';
import { Upload, type UploadOptions } from 'tus-js-client';
import { connect } from '../../src/db/connect.js';
import { dbQuery, eventually, uploadForm } from '../helpers/assets.js';
import { deployment, pendingWrites, storedKeys } from '../helpers/deployment.js';
import { api, sha256Hex } from '../helpers/http.js';
import { type Exchange, type RufhRequest, rufh } from '../helpers/rufh-client.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// Resumable Uploads for HTTP (draft-ietf-httpbis-resumable-upload) over real sockets: the
// draft's own examples byte for byte, a cut at every phase of an upload and its resumption
// (on this node and another), upload tokens, the interop versions clients send, resuming
// without client state, and tus-js-client's IETF mode as an independent client.

const MiB = 1024 * 1024;
const HEAD = 4 * MiB;

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

const portOf = (server: TestWharf) => Number(new URL(server.url).port);

/** The headers of a client speaking interop `version` with `key`. */
function speaking(key: string | null, version: string | null = '8', extra: Array<[string, string]> = []) {
  const headers: Array<[string, string]> = [];
  if (key) headers.push(['Authorization', `Bearer ${key}`]);
  if (version) headers.push(['Upload-Draft-Interop-Version', version]);
  return [...headers, ...extra];
}

function send(request: RufhRequest, server = w): Promise<Exchange> {
  return rufh(portOf(server), request);
}

function pathOf(location: string | undefined): string {
  assert.ok(location, 'a Location');
  return new URL(location).pathname;
}

function json(exchange: Exchange) {
  assert.ok(exchange.final, `a final response: ${JSON.stringify(exchange)}`);
  return JSON.parse(exchange.final.body.toString('utf8'));
}

function limits(value: string | undefined): Map<string, unknown> {
  assert.ok(value, 'an Upload-Limit');
  return new Map([...parseDictionary(value)].map(([k, [v]]) => [k, v]));
}

function head(location: string, key = w.key, version = '8', server = w) {
  return send({ method: 'HEAD', target: pathOf(location), headers: speaking(key, version) }, server);
}

function append(
  location: string,
  offset: number,
  body: Buffer,
  complete: boolean,
  options: Partial<RufhRequest> & { key?: string; version?: string; server?: TestWharf } = {},
) {
  return send(
    {
      method: 'PATCH',
      target: pathOf(location),
      headers: speaking(options.key ?? w.key, options.version ?? '8', [
        ['Upload-Complete', complete ? '?1' : '?0'],
        ['Upload-Offset', String(offset)],
        ['Content-Type', 'application/partial-upload'],
      ]),
      body,
      ...options,
    },
    options.server ?? w,
  );
}

/** The bytes of an asset, read back through the API. */
async function content(assetId: string, key = w.key, server = w): Promise<Buffer> {
  const res = await fetch(`${server.url}/v1/assets/${assetId}/content`, { headers: { 'x-api-key': key } });
  assert.equal(res.status, 200, `content of ${assetId}`);
  return Buffer.from(await res.arrayBuffer());
}

/** HEAD: where storage stands (a request holding the upload is cut and answers first). */
async function offsetOf(location: string, key = w.key, server = w): Promise<number> {
  const res = await head(location, key, '8', server);
  assert.equal(res.final?.status, 204, `HEAD ${location}: ${res.final?.head}`);
  return Number(res.final.headers['upload-offset']);
}

/**
 * Resumes an upload from wherever it got, in one append, and checks the asset is the file.
 * As the draft's clients (and tus-js-client) do, a 409 mismatching-upload-offset sends it back
 * to HEAD once more: a cut request the server had not yet taken up (its bytes still unread in
 * the dead connection, waiting for the upload's lock) may store them after a HEAD answered.
 * Its bytes are the file's at their offset, so the resumption goes on from there.
 */
async function resumeToEnd(location: string, bytes: Buffer, key = w.key, server = w) {
  let done: Exchange | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const offset = await offsetOf(location, key, server);
    assert.ok(offset <= bytes.length);
    done = await append(location, offset, bytes.subarray(offset), true, { key, server });
    if (done.final?.status !== 409) break;
    const problem = json(done);
    assert.equal(problem.error?.code, 'OFFSET_MISMATCH', done.final.body.toString());
    assert.ok(
      problem['expected-offset'] > offset,
      `storage only moves forward: ${done.final.body.toString()}`,
    );
  }
  assert.ok(done);
  assert.equal(done.final?.status, 201, `${done.final?.head}\n${done.final?.body}`);
  assert.equal(done.final.headers['upload-complete'], '?1');
  const body = json(done);
  assert.equal(body.asset.sha256, sha256Hex(bytes));
  assert.ok((await content(body.asset.id, key, server)).equals(bytes), 'byte-identical');
  return body.asset as { id: string; sha256: string; name: string; size: number; subject: string | null };
}

/** A request on `agent`'s connections (node:http, so 1xx are skipped): its status, headers, and whether it reused one. */
function onAgent(agent: Agent, method: string, url: string, headers: Record<string, string>, body?: Buffer) {
  const answer = new Promise<{ status: number; headers: IncomingHttpHeaders; reused: boolean }>(
    (resolve, reject) => {
      const req = httpRequest(url, {
        agent,
        method,
        headers: body ? { ...headers, 'content-length': String(body.length) } : headers,
      });
      req.on('response', (res) => {
        res.resume();
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, reused: req.reusedSocket }),
        );
      });
      req.on('error', reject);
      req.end(body);
    },
  );
  return { answer };
}

function uploadIdOf(location: string): string {
  return pathOf(location).split('/').pop()!;
}

function uploadRow(location: string) {
  return dbQuery<{ status: string; kind: string; asset_id: string | null }>(
    w,
    'select status, kind, asset_id from uploads where id = ?',
    uploadIdOf(location),
  )[0];
}

/** What resumable storage still keeps of an upload (tus's files on disk, or its S3 bookkeeping). */
async function leftovers(location: string, server = w): Promise<string[]> {
  const id = uploadIdOf(location);
  if (server.backingEnv.WHARF_STORAGE === 's3') {
    const keys = (await storedKeys(server)).filter((k) => k.endsWith('.info') || k.endsWith('.part'));
    return [...keys, ...(await pendingWrites(server))].filter((k) => k.includes(id));
  }
  const dir = join(server.dataDir, 'tus', 'uploads');
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile() && e.name.startsWith(id)).map((e) => e.name);
}

describe('the draft’s examples, on a raw socket', () => {
  test('creation A: the whole file in one request; 104 with Location and Upload-Limit before the final answer', async () => {
    const bytes = randomBytes(200_000);
    const res = await send({
      method: 'POST',
      target: '/v1/resumable/',
      headers: speaking(w.key, '8', [
        ['Content-Disposition', `inline; filename="file name.jpg"; filename*=UTF-8''file%20name.jpg`],
        ['Upload-Length', String(bytes.length)],
        ['Upload-Complete', '?1'],
      ]),
      body: bytes,
    });
    const [interim, ...more] = res.informational;
    assert.equal(interim?.status, 104, JSON.stringify(res.informational));
    assert.deepEqual(more, []);
    assert.match(interim.head, /^HTTP\/1\.1 104 Upload Resumption Supported\r\n/);
    assert.equal(interim.headers['upload-draft-interop-version'], '8');
    assert.match(interim.headers.location!, new RegExp(`^${w.url}/v1/resumable/[0-9a-f-]{36}$`));
    const limit = limits(interim.headers['upload-limit']);
    assert.equal(limit.get('max-size'), 5 * 1024 ** 3);
    assert.equal(limit.get('max-append-size'), 100 * MiB);
    assert.ok(Number(limit.get('max-age')) > 0);

    assert.equal(res.final?.status, 201);
    assert.equal(res.final.headers.location, interim.headers.location, 'the same Location in every message');
    assert.equal(res.final.headers['upload-complete'], '?1');
    const body = json(res);
    assert.equal(body.status, 'created');
    assert.equal(body.asset.name, 'file name.jpg');
    // The example sends no Content-Type: a file without one is application/octet-stream.
    assert.equal(body.asset.content_type, 'application/octet-stream');
    assert.equal(body.asset.sha256, sha256Hex(bytes));
    assert.equal(res.final.headers['wharf-asset-id'], body.asset.id);
    const digest = parseDictionary(res.final.headers['repr-digest']!).get('sha-256')?.[0] as ArrayBuffer;
    assert.equal(
      Buffer.from(digest).toString('hex'),
      sha256Hex(bytes),
      'Repr-Digest is the verified SHA-256',
    );
    assert.ok((await content(body.asset.id)).equals(bytes));
    assert.equal(uploadRow(interim.headers.location!)?.kind, 'rufh');
    assert.deepEqual(await leftovers(interim.headers.location!), [], 'nothing left in resumable storage');
  });

  test('creation B, offset retrieval, append A and B: a file in three requests', async () => {
    const bytes = randomBytes(300_000);
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=parts.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(bytes.length)],
      ]),
      body: bytes.subarray(0, 100_000),
    });
    assert.equal(created.informational[0]?.status, 104);
    assert.equal(created.final?.status, 201, String(created.final?.body));
    const location = created.final.headers.location!;
    assert.equal(location, created.informational[0]!.headers.location);
    assert.equal(created.final.headers['upload-complete'], '?0');
    assert.equal(created.final.headers['upload-offset'], '100000');
    assert.ok(limits(created.final.headers['upload-limit']).has('max-size'));
    // The upload resource, as the document's ResumableUpload says.
    const resource = json(created);
    assert.equal(typeof resource.expires_at, 'string');
    assert.deepEqual(resource, {
      id: uploadIdOf(location),
      url: location,
      name: 'parts.bin',
      size: bytes.length,
      offset: 100_000,
      expires_at: resource.expires_at,
    });

    const state = await head(location);
    assert.equal(state.final?.status, 204);
    assert.equal(state.final.headers['upload-complete'], '?0');
    assert.equal(state.final.headers['upload-offset'], '100000');
    assert.equal(state.final.headers['upload-length'], String(bytes.length));
    assert.equal(state.final.headers['cache-control'], 'no-store');
    assert.ok(Number(limits(state.final.headers['upload-limit']).get('max-age')) > 0);

    const middle = await append(location, 100_000, bytes.subarray(100_000, 250_000), false);
    assert.equal(middle.final?.status, 204, String(middle.final?.body));
    assert.equal(middle.final.headers['upload-complete'], '?0');
    assert.equal(middle.final.headers['upload-offset'], '250000');

    const asset = await resumeToEnd(location, bytes);
    assert.equal(asset.name, 'parts.bin');
    assert.equal(uploadRow(location)?.status, 'completed');
  });

  test('careful creation: an empty request learns the resource, appends carry every byte', async () => {
    const bytes = randomBytes(50_000);
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=careful.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(bytes.length)],
      ]),
      body: Buffer.alloc(0),
    });
    assert.equal(created.final?.status, 201);
    assert.equal(created.final.headers['upload-offset'], '0');
    await resumeToEnd(created.final.headers.location!, bytes);
  });

  test('an empty file in one request', async () => {
    const res = await send({
      method: 'POST',
      target: '/v1/resumable/?name=empty.txt',
      headers: speaking(w.key, '8', [['Upload-Complete', '?1']]),
      body: Buffer.alloc(0),
    });
    assert.equal(res.final?.status, 201, String(res.final?.body));
    assert.equal(json(res).asset.size, 0);
    assert.equal(json(res).asset.sha256, sha256Hex(Buffer.alloc(0)));
  });

  test('a mismatching offset is 409 with the draft’s problem document and the right offset', async () => {
    const bytes = randomBytes(40_000);
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=offset.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(bytes.length)],
      ]),
      body: bytes.subarray(0, 12_500),
    });
    const location = created.final!.headers.location!;
    const res = await append(location, 25_000, bytes.subarray(25_000), true);
    assert.equal(res.final?.status, 409);
    assert.match(res.final.headers['content-type']!, /^application\/problem\+json/);
    assert.equal(res.final.headers['upload-offset'], '12500');
    assert.equal(res.final.headers['upload-complete'], '?0');
    const problem = json(res);
    assert.equal(problem.type, 'https://iana.org/assignments/http-problem-types#mismatching-upload-offset');
    assert.equal(problem['expected-offset'], 12_500);
    assert.equal(problem['provided-offset'], 25_000);
    assert.equal(problem.error.code, 'OFFSET_MISMATCH');
    assert.equal(await offsetOf(location), 12_500, 'nothing was written');
    await resumeToEnd(location, bytes);
  });

  test('inconsistent lengths are 400 with the draft’s problem document, and nothing is created', async () => {
    const before = dbQuery<{ n: number }>(w, 'select count(*) as n from uploads')[0]!.n;
    const res = await send({
      method: 'POST',
      target: '/v1/resumable/?name=liar.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?1'],
        ['Upload-Length', '10'],
      ]),
      body: randomBytes(20),
    });
    assert.equal(res.final?.status, 400);
    assert.equal(
      json(res).type,
      'https://iana.org/assignments/http-problem-types#inconsistent-upload-length',
    );
    assert.equal(json(res).error.code, 'INCONSISTENT_LENGTH');
    assert.deepEqual(res.informational, [], 'no upload resource was announced');
    assert.equal(dbQuery<{ n: number }>(w, 'select count(*) as n from uploads')[0]!.n, before);
  });

  test('cancellation: DELETE frees the bytes; the resource is gone and reserves nothing', async () => {
    const bytes = randomBytes(30_000);
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=cancel.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(bytes.length)],
      ]),
      body: bytes.subarray(0, 10_000),
    });
    const location = created.final!.headers.location!;
    assert.notDeepEqual(await leftovers(location), []);
    const reserved = async () => (await api(w.url, w.key, 'GET', '/v1/account')).body.usage.bytes_reserved;
    const before = await reserved();
    const res = await send({ method: 'DELETE', target: pathOf(location), headers: speaking(w.key) });
    assert.equal(res.final?.status, 204);
    assert.equal(await reserved(), before - bytes.length, 'its reservation given back');
    assert.equal(uploadRow(location)?.status, 'expired');
    assert.deepEqual(await leftovers(location), []);
    const gone = await head(location);
    assert.equal(gone.final?.status, 410);
    const late = await append(location, 10_000, bytes.subarray(10_000), true);
    assert.equal(late.final?.status, 410);
    assert.equal(json(late).error.code, 'UPLOAD_EXPIRED');
    const events = await api(w.url, w.key, 'GET', '/v1/events?type=upload.cancelled&limit=1000');
    assert.ok(
      events.body.data.some(
        (e: { data: { upload: { id: string } } }) => e.data.upload.id === uploadIdOf(location),
      ),
    );
  });

  test('an append past the declared length is refused before a byte is written', async () => {
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=short.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', '100'],
      ]),
      body: randomBytes(50),
    });
    const location = created.final!.headers.location!;
    const res = await append(location, 50, randomBytes(80), false);
    assert.equal(res.final?.status, 400);
    assert.equal(json(res).error.code, 'INCONSISTENT_LENGTH');
    assert.equal(await offsetOf(location), 50);
    const wrongType = await append(location, 50, randomBytes(50), true, {
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?1'],
        ['Upload-Offset', '50'],
        ['Content-Type', 'application/json'],
      ]),
    });
    assert.equal(wrongType.final?.status, 415);
    // "Done" said too early, with no body at all: refused, and the upload goes on.
    const early = await send({
      method: 'PATCH',
      target: pathOf(location),
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?1'],
        ['Upload-Offset', '50'],
      ]),
    });
    assert.equal(early.final?.status, 400);
    assert.equal(json(early).error.code, 'INCONSISTENT_LENGTH');
    assert.equal(await offsetOf(location), 50);
  });

  /** An upload of `length` bytes with `first` sent, then a chunked append of `extra` bytes after it. */
  async function overrun(name: string, length: number, first: Buffer, extra: number) {
    const created = await send({
      method: 'POST',
      target: `/v1/resumable/?name=${name}`,
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(length)],
      ]),
      body: first,
    });
    const location = created.final!.headers.location!;
    assert.equal(await offsetOf(location), first.length);
    const bytes = randomBytes(extra);
    const res = await send({
      method: 'PATCH',
      target: pathOf(location),
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?1'],
        ['Upload-Offset', String(first.length)],
        ['Content-Type', 'application/partial-upload'],
        ['Transfer-Encoding', 'chunked'],
      ]),
      body: Buffer.concat([
        Buffer.from(`${bytes.length.toString(16)}\r\n`),
        bytes,
        Buffer.from('\r\n0\r\n\r\n'),
      ]),
      contentLength: false,
    });
    assert.equal(res.final?.status, 413, String(res.final?.body));
    assert.equal(json(res).error.code, 'FILE_TOO_LARGE');
    assert.equal(uploadRow(location)?.status, 'expired');
    return location;
  }

  test('a chunked body past the declared length fails the upload (its offset would pass the length)', async () => {
    const location = await overrun('overflow.bin', 100, Buffer.alloc(0), 150);
    assert.deepEqual(await leftovers(location), []);
  });

  test('the same after a first part: the overrun is answered, not left holding the upload', {
    timeout: 60_000,
  }, async () => {
    // On S3 the first part is an incomplete part the store puts in front of the next append's
    // bytes; the overrun's error once never reached that append, which then hung with the lock.
    await overrun('overflow-later.bin', 100_000, randomBytes(1000), 120_000);
  });

  test('a chunked body that runs past the length and never ends is answered without waiting for its end', async () => {
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=endless.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', '100'],
      ]),
      body: Buffer.alloc(0),
    });
    const location = created.final!.headers.location!;
    const extra = randomBytes(1000);
    const chunk = Buffer.concat([
      Buffer.from(`${extra.length.toString(16)}\r\n`),
      extra,
      Buffer.from('\r\n'),
    ]);
    // No last chunk: the client would go on for ever.
    const res = await send({
      method: 'PATCH',
      target: pathOf(location),
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Offset', '0'],
        ['Content-Type', 'application/partial-upload'],
        ['Transfer-Encoding', 'chunked'],
      ]),
      body: chunk,
      contentLength: false,
      stopAfter: chunk.length,
      cut: 'hold',
    });
    assert.equal(res.final?.status, 413);
    assert.equal(uploadRow(location)?.status, 'expired');
  });

  test('a file whose declared SHA-256 does not match is refused as complete (resuming would not help)', async () => {
    const bytes = randomBytes(10_000);
    const wrong = createHash('sha256').update('something else').digest('base64');
    const res = await send({
      method: 'POST',
      target: '/v1/resumable/?name=wrong.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?1'],
        ['Repr-Digest', `sha-256=:${wrong}:`],
      ]),
      body: bytes,
    });
    assert.equal(res.final?.status, 400);
    assert.equal(res.final.headers['upload-complete'], '?1');
    assert.equal(json(res).error.code, 'CHECKSUM_MISMATCH');
    const location = res.informational[0]!.headers.location!;
    assert.equal(uploadRow(location)?.status, 'expired');
    assert.deepEqual(await leftovers(location), []);
  });

  test('Content-Digest checks one request’s content before a byte of it is appended', async () => {
    const bytes = randomBytes(120_000);
    const digest = (b: Buffer) => `sha-256=:${createHash('sha256').update(b).digest('base64')}:`;
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=digests.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(bytes.length)],
        ['Content-Digest', digest(bytes.subarray(0, 40_000))],
      ]),
      body: bytes.subarray(0, 40_000),
    });
    assert.equal(created.final?.status, 201, String(created.final?.body));
    const location = created.final.headers.location!;
    const wrong = await append(location, 40_000, bytes.subarray(40_000, 80_000), false, {
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Offset', '40000'],
        ['Content-Type', 'application/partial-upload'],
        ['Content-Digest', digest(bytes.subarray(0, 10))],
      ]),
    });
    assert.equal(wrong.final?.status, 400);
    assert.equal(wrong.final.headers['upload-complete'], '?0');
    assert.equal(json(wrong).error.code, 'CHECKSUM_MISMATCH');
    assert.equal(await offsetOf(location), 40_000, 'nothing appended');
    const right = await append(location, 40_000, bytes.subarray(40_000), true, {
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?1'],
        ['Upload-Offset', '40000'],
        ['Content-Type', 'application/partial-upload'],
        ['Content-Digest', `${digest(bytes.subarray(40_000))}, md5=:AAAAAAAAAAAAAAAAAAAAAA==:`],
      ]),
    });
    assert.equal(right.final?.status, 201, String(right.final?.body));
    assert.equal(json(right).asset.sha256, sha256Hex(bytes));
    const malformed = await send({
      method: 'POST',
      target: '/v1/resumable/?name=bad-digest.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?1'],
        ['Content-Digest', 'sha-256=nonsense'],
      ]),
      body: randomBytes(10),
    });
    assert.equal(json(malformed).error.code, 'INVALID_DIGEST');
    assert.deepEqual(malformed.informational, []);
  });

  test('Content-MD5 and every declaration of the file are checked: no asset from bytes a digest contradicts', async () => {
    const bytes = randomBytes(30_000);
    const md5 = (b: Buffer) => createHash('md5').update(b).digest('base64');
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('base64');
    const other = Buffer.from('something else');
    const assets = async () => (await api(w.url, w.key, 'GET', '/v1/assets?limit=100')).body.data.length;
    const before = await assets();
    const whole = (target: string, extra: Array<[string, string]>) =>
      send({
        method: 'POST',
        target,
        headers: speaking(w.key, '8', [['Upload-Complete', '?1'], ...extra]),
        body: bytes,
      });

    // Content-MD5 on the request that carries the whole file (as on a plain POST /v1/assets).
    const wrongMd5 = await whole('/v1/assets?name=md5.bin', [['Content-MD5', md5(other)]]);
    assert.equal(wrongMd5.final?.status, 400);
    assert.equal(json(wrongMd5).error.code, 'CHECKSUM_MISMATCH');
    // ?md5= and Upload-Metadata's md5 are the file's: checked at completion.
    const wrongQuery = await whole(
      `/v1/assets?name=md5.bin&md5=${createHash('md5').update(other).digest('hex')}`,
      [],
    );
    assert.equal(json(wrongQuery).error.code, 'CHECKSUM_MISMATCH');
    const malformed = await whole('/v1/assets?name=md5.bin&md5=zzz', []);
    assert.equal(json(malformed).error.code, 'INVALID_DIGEST');
    // Declarations that disagree are refused before anything is made.
    const disagree = await whole(`/v1/assets?name=sha.bin&sha256=${sha256Hex(bytes)}`, [
      ['Repr-Digest', `sha-256=:${sha(other)}:`],
    ]);
    assert.equal(disagree.final?.status, 400);
    assert.equal(json(disagree).error.code, 'INVALID_DIGEST');
    assert.deepEqual(disagree.informational, [], 'no upload was made');
    assert.equal(await assets(), before, 'no asset from any of them');
    // Right ones make the asset.
    const right = await whole(`/v1/assets?name=ok.bin&md5=${createHash('md5').update(bytes).digest('hex')}`, [
      ['Content-MD5', md5(bytes)],
      ['Repr-Digest', `sha-256=:${sha(bytes)}:`],
    ]);
    assert.equal(right.final?.status, 201, String(right.final?.body));
    assert.equal(json(right).asset.md5, createHash('md5').update(bytes).digest('hex'));
  });

  test('a body in a Content-Encoding is refused (415), not stored compressed', async () => {
    const res = await send({
      method: 'POST',
      target: '/v1/resumable/?name=gz.txt',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?1'],
        ['Content-Encoding', 'gzip'],
      ]),
      body: randomBytes(100),
    });
    assert.equal(res.final?.status, 415);
    assert.equal(json(res).error.code, 'UNSUPPORTED_MEDIA_TYPE');
  });

  test('Repr-Digest on an append: it must agree with the declared SHA-256, and on an upload that declared none it is checked at completion', async () => {
    const bytes = randomBytes(50_000);
    const sha = (b: Buffer) => `sha-256=:${createHash('sha256').update(b).digest('base64')}:`;
    const start = async (extra: Array<[string, string]>) => {
      const created = await send({
        method: 'POST',
        target: '/v1/resumable/?name=later.bin',
        headers: speaking(w.key, '8', [
          ['Upload-Complete', '?0'],
          ['Upload-Length', String(bytes.length)],
          ...extra,
        ]),
        body: bytes.subarray(0, 20_000),
      });
      assert.equal(created.final?.status, 201, String(created.final?.body));
      return created.final.headers.location!;
    };
    const last = (location: string, digest: string) =>
      append(location, 20_000, bytes.subarray(20_000), true, {
        headers: speaking(w.key, '8', [
          ['Upload-Complete', '?1'],
          ['Upload-Offset', '20000'],
          ['Content-Type', 'application/partial-upload'],
          ['Repr-Digest', digest],
        ]),
      });

    const declared = await start([['Repr-Digest', sha(bytes)]]);
    const contradicts = await last(declared, sha(Buffer.from('other')));
    assert.equal(contradicts.final?.status, 400);
    assert.equal(json(contradicts).error.code, 'INVALID_DIGEST');
    assert.equal(await offsetOf(declared), 20_000, 'nothing appended');
    assert.equal((await last(declared, sha(bytes))).final?.status, 201);

    const undeclared = await start([]);
    const wrong = await last(undeclared, sha(Buffer.from('other')));
    assert.equal(wrong.final?.status, 400);
    assert.equal(wrong.final.headers['upload-complete'], '?1');
    assert.equal(json(wrong).error.code, 'CHECKSUM_MISMATCH');
    assert.equal(uploadRow(undeclared)?.status, 'expired');
    assert.deepEqual(await leftovers(undeclared), []);
  });

  test('OPTIONS discovers the limits (the server’s without a key, the account’s with one)', async () => {
    const anonymous = await send({ method: 'OPTIONS', target: '/v1/resumable/', headers: speaking(null) });
    assert.equal(anonymous.final?.status, 204);
    assert.equal(limits(anonymous.final.headers['upload-limit']).get('max-size'), 5 * 1024 ** 3);
    const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', { max_file_size: 1000 });
    const keyed = await send({
      method: 'OPTIONS',
      target: '/v1/resumable/',
      headers: speaking(minted.body.secret),
    });
    assert.equal(keyed.final?.status, 204);
    assert.equal(limits(keyed.final.headers['upload-limit']).get('max-size'), 1000);
    assert.equal(limits(keyed.final.headers['upload-limit']).get('max-append-size'), 100 * MiB);
  });

  test('WHARF_RESUMABLE_MAX_APPEND_SIZE is the max-append-size announced; a client that keeps to it finishes', async () => {
    // A node behind a proxy with a 1 MiB body cap, sharing the first node's deployment.
    const capped = await startWharf({ sharing: w, env: { WHARF_RESUMABLE_MAX_APPEND_SIZE: String(MiB) } });
    try {
      const bytes = randomBytes(2 * MiB + 500);
      const created = await send(
        {
          method: 'POST',
          target: '/v1/resumable/?name=capped.bin',
          headers: speaking(w.key, '9', [
            ['Upload-Complete', '?0'],
            ['Upload-Length', String(bytes.length)],
          ]),
          body: Buffer.alloc(0),
        },
        capped,
      );
      const announced = limits(created.informational[0]?.headers['upload-limit']).get('max-append-size');
      assert.equal(announced, MiB);
      assert.equal(limits(created.final?.headers['upload-limit']).get('max-append-size'), MiB);
      const location = created.final!.headers.location!;
      let offset = 0;
      let last: Exchange | undefined;
      while (offset < bytes.length) {
        const end = Math.min(offset + MiB, bytes.length);
        last = await append(location, offset, bytes.subarray(offset, end), end === bytes.length, {
          server: capped,
        });
        offset = end;
      }
      assert.equal(last?.final?.status, 201);
      assert.ok((await content(json(last!).asset.id, w.key, capped)).equals(bytes));
    } finally {
      await capped.close();
    }
  });

  test('GET on the resource answers as HEAD does', async () => {
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=get.bin',
      headers: speaking(w.key, '9', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', '20'],
      ]),
      body: randomBytes(7),
    });
    const res = await send({
      method: 'GET',
      target: pathOf(created.final!.headers.location!),
      headers: speaking(w.key, '9'),
    });
    assert.equal(res.final?.status, 204);
    assert.equal(res.final.headers['upload-offset'], '7');
    assert.equal(res.final.headers['upload-complete'], '?0');
  });

  test('a lost final answer: HEAD says complete with the asset, and the completing append is answered again', async () => {
    const bytes = randomBytes(20_000);
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=lost.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(bytes.length)],
      ]),
      body: bytes.subarray(0, 5_000),
    });
    const location = created.final!.headers.location!;
    const first = await append(location, 5_000, bytes.subarray(5_000), true);
    const asset = json(first).asset;
    const state = await head(location);
    assert.equal(state.final?.headers['upload-complete'], '?1');
    assert.equal(state.final.headers['upload-offset'], String(bytes.length));
    assert.equal(state.final.headers['wharf-asset-id'], asset.id);
    const again = await append(location, bytes.length, Buffer.alloc(0), true);
    assert.equal(again.final?.status, 201);
    assert.equal(json(again).asset.id, asset.id);
    const more = await append(location, bytes.length, randomBytes(5), true);
    assert.equal(more.final?.status, 409);
    assert.equal(json(more).error.code, 'UPLOAD_NOT_PENDING');
  });
  test('Want-Repr-Digest: SHA-256 whatever else is preferred, none when the client rules it out', async () => {
    const bytes = randomBytes(3_000);
    const whole = (want: string | null) =>
      send({
        method: 'POST',
        target: '/v1/resumable/?name=want.bin',
        headers: speaking(w.key, '8', [
          ['Upload-Complete', '?1'],
          ...(want === null ? [] : ([['Want-Repr-Digest', want]] as Array<[string, string]>)),
        ]),
        body: bytes,
      });
    const sha256Of = (value: string | undefined) => {
      assert.ok(value, 'a Repr-Digest');
      return Buffer.from(parseDictionary(value).get('sha-256')?.[0] as ArrayBuffer).toString('hex');
    };
    // Preferring an algorithm Wharf does not compute still gets the one it verified.
    const other = await whole('sha-512=10, sha-256=1');
    assert.equal(other.final?.status, 201);
    assert.equal(sha256Of(other.final.headers['repr-digest']), sha256Hex(bytes));
    const malformed = await whole('sha-256=x(');
    assert.equal(malformed.final?.status, 200, 'the same content again: deduplicated');
    assert.equal(sha256Of(malformed.final.headers['repr-digest']), sha256Hex(bytes));
    // 0 is "not acceptable" (RFC 9530 section 4): no Repr-Digest, on the answer nor on HEAD.
    const refused = await whole('sha-256=0, sha-512=3');
    assert.equal(refused.final?.status, 200);
    assert.equal(refused.final.headers['repr-digest'], undefined);
    const location = refused.informational[0]!.headers.location!;
    const without = await send({
      method: 'HEAD',
      target: pathOf(location),
      headers: speaking(w.key, '8', [['Want-Repr-Digest', 'sha-256=0']]),
    });
    assert.equal(without.final?.headers['upload-complete'], '?1');
    assert.equal(without.final.headers['repr-digest'], undefined);
    assert.equal(sha256Of((await head(location)).final?.headers['repr-digest']), sha256Hex(bytes));
  });
});

describe('interop versions', () => {
  const create = (version: string | null, extra: Array<[string, string]> = [['Upload-Complete', '?0']]) =>
    send({
      method: 'POST',
      target: '/v1/resumable/?name=v.bin',
      headers: speaking(w.key, version, [...extra, ['Upload-Length', '10']]),
      body: randomBytes(4),
    });

  test('4 to 9 get a 104 naming their version; up to 6 the lifetime is spelled `expires`', async () => {
    for (const version of ['4', '5', '6', '7', '8', '9']) {
      const res = await create(version);
      assert.equal(res.informational[0]?.status, 104, version);
      assert.equal(res.informational[0]!.headers['upload-draft-interop-version'], version);
      assert.equal(res.final?.headers['upload-draft-interop-version'], version);
      const limit = limits(res.final?.headers['upload-limit']);
      const old = Number(version) <= 6;
      assert.equal(limit.has('expires'), old, `${version}: expires`);
      assert.equal(limit.has('max-age'), !old, `${version}: max-age`);
      // Before interop 6 an append's body is not labelled application/partial-upload.
      const rest = await send({
        method: 'PATCH',
        target: pathOf(res.final.headers.location),
        headers: speaking(w.key, version, [
          ['Upload-Complete', '?1'],
          ['Upload-Offset', '4'],
          ...(Number(version) < 6
            ? ([['Content-Type', 'application/offset+octet-stream']] as Array<[string, string]>)
            : ([['Content-Type', 'application/partial-upload']] as Array<[string, string]>)),
        ]),
        body: randomBytes(6),
      });
      assert.equal(rest.final?.status, 201, `${version}: ${rest.final?.body}`);
      assert.equal(rest.final.headers['upload-complete'], '?1');
    }
  });

  test('3 (iOS 17) speaks Upload-Incomplete, in requests and answers', async () => {
    const bytes = randomBytes(10);
    const res = await create('3', [['Upload-Incomplete', '?1']]);
    assert.equal(res.informational[0]?.headers['upload-draft-interop-version'], '3');
    assert.equal(res.final?.status, 201);
    assert.equal(res.final.headers['upload-incomplete'], '?1');
    assert.equal(res.final.headers['upload-complete'], undefined);
    const location = res.final.headers.location!;
    const state = await head(location, w.key, '3');
    assert.equal(state.final?.headers['upload-incomplete'], '?1');
    const middle = await send({
      method: 'PATCH',
      target: pathOf(location),
      headers: speaking(w.key, '3', [
        ['Upload-Incomplete', '?1'],
        ['Upload-Offset', '4'],
      ]),
      body: bytes.subarray(4, 7),
    });
    assert.equal(middle.final?.status, 201, 'interop 3 acknowledged a part with 201');
    assert.equal(middle.final.headers['upload-incomplete'], '?1');
    // Interop 3 marks only parts that do not end the file: an append without the field ends it.
    const last = await send({
      method: 'PATCH',
      target: pathOf(location),
      headers: speaking(w.key, '3', [['Upload-Offset', '7']]),
      body: bytes.subarray(7),
    });
    assert.equal(last.final?.status, 201, String(last.final?.body));
    assert.equal(last.final.headers['upload-incomplete'], '?0');
    assert.equal(last.final.headers['upload-draft-interop-version'], '3', 'every answer names the version');
  });

  test('no version, or one Wharf does not speak: no 104 (the draft forbids it), the upload still works', async () => {
    for (const version of [null, '2', '99']) {
      const res = await create(version);
      assert.deepEqual(res.informational, [], String(version));
      assert.equal(res.final?.status, 201);
      assert.ok(res.final.headers.location);
      assert.equal(res.final.headers['upload-draft-interop-version'], undefined);
    }
  });

  test('an HTTP/1.0 client gets no 104 (it could not tell it from the answer)', async () => {
    const res = await send({
      method: 'POST',
      target: '/v1/resumable/?name=old.bin',
      headers: speaking(w.key, '8', [['Upload-Complete', '?1']]),
      body: randomBytes(100),
      httpVersion: '1.0',
    });
    assert.deepEqual(res.informational, []);
    assert.equal(res.final?.status, 201);
  });

  test('the 104 comes before Wharf reads a byte of the body', async () => {
    const bytes = randomBytes(70_000);
    // The client holds its body back until it has the 104: had Wharf waited for the body,
    // this would time out.
    const res = await send({
      method: 'POST',
      target: '/v1/resumable/?name=waits.bin',
      headers: speaking(w.key, '8', [['Upload-Complete', '?1']]),
      body: bytes,
      bodyAfter104: true,
    });
    assert.equal(res.informational[0]?.status, 104);
    assert.equal(res.final?.status, 201);
    assert.equal(json(res).asset.sha256, sha256Hex(bytes));
  });

  test('POST /v1/assets becomes resumable with Upload-Complete, and answers as it always does', async () => {
    const bytes = randomBytes(90_000);
    const res = await send({
      method: 'POST',
      target: '/v1/assets?name=photo.png&content_type=image/png',
      headers: speaking(w.key, '8', [['Upload-Complete', '?1']]),
      body: bytes,
    });
    assert.equal(res.informational[0]?.status, 104);
    const location = res.informational[0]!.headers.location!;
    assert.match(location, /\/v1\/resumable\//);
    assert.equal(res.final?.status, 201);
    assert.equal(json(res).status, 'created');
    assert.equal(json(res).asset.content_type, 'image/png');
    const again = await send({
      method: 'POST',
      target: '/v1/assets?name=again.png',
      headers: speaking(w.key, '8', [['Upload-Complete', '?1']]),
      body: bytes,
    });
    assert.equal(again.final?.status, 200, 'deduplicated, as a plain upload would be');
    assert.equal(json(again).status, 'exists');
    // The rest to come later: 201 and the upload resource (not an asset), whole, as on
    // /v1/resumable/ (the route's serialiser drops none of it).
    const started = await send({
      method: 'POST',
      target: '/v1/assets?name=later.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', '30'],
      ]),
      body: randomBytes(10),
    });
    assert.equal(started.final?.status, 201, String(started.final?.body));
    assert.match(started.final.headers['content-type'] ?? '', /^application\/json/);
    const resource = json(started);
    assert.deepEqual(Object.keys(resource).sort(), ['expires_at', 'id', 'name', 'offset', 'size', 'url']);
    assert.deepEqual(
      [resource.url, resource.name, resource.size, resource.offset],
      [started.final.headers.location, 'later.bin', 30, 10],
    );
    // Without the header it is the plain upload it always was.
    const plain = await send({
      method: 'POST',
      target: '/v1/assets?name=plain.bin',
      headers: speaking(w.key),
      body: randomBytes(10),
    });
    assert.deepEqual(plain.informational, []);
    assert.equal(plain.final?.status, 201);
  });
});

describe('cut at every phase, resumed, byte-identical', () => {
  // A second node of the same deployment: most phases resume there, as a phone whose next
  // request reaches another node behind the load balancer would.
  let other: TestWharf;
  before(async () => {
    other = await startWharf({ sharing: w });
  });
  after(async () => {
    await other?.close();
  });
  const creation = (name: string, bytes: Buffer, extra: Array<[string, string]> = []): RufhRequest => ({
    method: 'POST',
    target: `/v1/resumable/?name=${name}`,
    headers: speaking(w.key, '8', [
      ['Upload-Complete', '?1'],
      ['Upload-Length', String(bytes.length)],
      ...extra,
    ]),
    body: bytes,
  });

  test('during creation, before the 104: the client finds its upload by the file and resumes on another node', async () => {
    const bytes = randomBytes(3 * MiB);
    const sha = sha256Hex(bytes);
    // The client never reads an answer: it cuts after 1 MiB, and forgets everything.
    await send({
      ...creation('before104.bin', bytes, [
        ['Repr-Digest', `sha-256=:${Buffer.from(sha, 'hex').toString('base64')}:`],
      ]),
      stopAfter: MiB,
    });
    let found: { resume_url: string; offset: number; kind: string }[] = [];
    await eventually(async () => {
      const res = await api(
        other.url,
        w.key,
        'GET',
        `/v1/uploads?status=pending&size=${bytes.length}&sha256=${sha}`,
      );
      assert.equal(res.status, 200, JSON.stringify(res.body));
      found = res.body.data;
      return found.length === 1;
    }, 'the cut upload is listed');
    assert.equal(found[0]!.kind, 'rufh');
    await resumeToEnd(found[0]!.resume_url, bytes, w.key, other);
  });

  test('after the 104, before a byte of the body (resumed on another node)', async () => {
    const bytes = randomBytes(MiB);
    const res = await send({ ...creation('after104.bin', bytes), bodyAfter104: true, cutOn104: true });
    const location = res.informational[0]!.headers.location!;
    assert.equal(await offsetOf(location, w.key, other), 0);
    await resumeToEnd(location, bytes, w.key, other);
  });

  test('after the 104, mid-body', async () => {
    const bytes = randomBytes(6 * MiB + 12_345);
    const res = await send({ ...creation('midbody.bin', bytes), bodyAfter104: true, stopAfter: 3 * MiB + 7 });
    const location = res.informational[0]!.headers.location!;
    const offset = await offsetOf(location);
    assert.ok(offset <= 3 * MiB + 7, `at most what was sent (${offset})`);
    await resumeToEnd(location, bytes);
  });

  test('mid-append, twice, then on another node', async () => {
    const bytes = randomBytes(7 * MiB);
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=midappend.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(bytes.length)],
      ]),
      body: Buffer.alloc(0),
    });
    const location = created.final!.headers.location!;
    await append(location, 0, bytes, true, { stopAfter: 2 * MiB + 1 });
    const first = await offsetOf(location);
    await append(location, first, bytes.subarray(first), true, { stopAfter: 2 * MiB });
    const second = await offsetOf(location);
    assert.ok(second >= first);
    await resumeToEnd(location, bytes, w.key, other);
  });

  test('after the last byte, before the final answer: the upload completes all the same (seen from another node)', async () => {
    const bytes = randomBytes(2 * MiB);
    const res = await send({
      ...creation('lastbyte.bin', bytes),
      bodyAfter104: true,
      stopAfter: bytes.length,
      cut: 'half-close',
    });
    const location = res.informational[0]!.headers.location!;
    await eventually(() => uploadRow(location)?.status === 'completed', 'completed without its client');
    const state = await head(location, w.key, '8', other);
    assert.equal(state.final?.headers['upload-complete'], '?1');
    const assetId = state.final.headers['wharf-asset-id']!;
    assert.ok((await content(assetId, w.key, other)).equals(bytes));
    // The client that lost the answer sends its last (empty) append again and gets the asset.
    const again = await append(location, bytes.length, Buffer.alloc(0), true, { server: other });
    assert.equal(again.final?.status, 201);
    assert.equal(json(again).asset.id, assetId);
  });

  test('a request the server still thinks is running is cut by the next one, which resumes where it got', async () => {
    const bytes = randomBytes(4 * MiB);
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=stale.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(bytes.length)],
      ]),
      body: Buffer.alloc(0),
    });
    const location = created.final!.headers.location!;
    // A client whose network went quiet mid-append: its connection stays open, sending nothing.
    const stalled = append(location, 0, bytes, true, {
      stopAfter: MiB,
      cut: 'half-close',
      timeoutMs: 120_000,
    });
    await eventually(async () => (await leftovers(location)).length > 0, 'the stalled append started');
    const offset = await offsetOf(location); // Asks the stalled request to let go, then answers.
    assert.ok(offset <= MiB);
    await resumeToEnd(location, bytes);
    await stalled;
  });

  test('a request whose body arrived whole answers when another asks for the upload, and its connection lives on', {
    skip:
      deployment !== 'scaled' &&
      'SQLite runs one write at a time: a write the test held for the completion would hold the other request’s ask and the holder’s lease renewals too, so the holder cannot be kept working while it is asked',
  }, async () => {
    // The ask is for a request whose client went silent mid-body. This one's body arrived
    // whole; it is completing the upload, held at a row lock of the test's own transaction,
    // when a HEAD on the other node asks it to let go. It must answer, on a connection that
    // stays usable for the client's next request.
    const first = randomBytes(1000);
    const second = randomBytes(1000);
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=busy.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', '2000'],
      ]),
      body: first,
    });
    assert.equal(created.final?.status, 201, `${created.final?.head}`);
    const location = created.final.headers.location!;
    const id = uploadIdOf(location);
    const lockName = `tus:%${id}%`;
    const lease = () =>
      dbQuery<{ expires_at: unknown; release_requested: unknown }>(
        w,
        'select expires_at, release_requested from locks where name like ?',
        lockName,
      )[0];
    const waitingOnLocks = () =>
      dbQuery<{ query: string }>(
        w,
        "select query from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
      ).map((r) => r.query);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const headers = {
      Authorization: `Bearer ${w.key}`,
      'Upload-Draft-Interop-Version': '8',
      'Content-Type': 'application/partial-upload',
    };
    let holder: Promise<{ status: number | string; headers: IncomingHttpHeaders }> | undefined;
    let asker: Promise<Exchange> | undefined;
    const conn = connect(w.databaseUrl);
    try {
      await conn.db.transaction().execute(async (trx) => {
        // The upload's row, which the completion locks to record the asset once every byte is
        // stored and checked.
        await sql`select id from uploads where id = ${id} for update`.execute(trx);
        holder = onAgent(
          agent,
          'PATCH',
          location,
          { ...headers, 'Upload-Complete': '?1', 'Upload-Offset': '1000' },
          second,
        ).answer.catch((err: NodeJS.ErrnoException) => ({ status: `cut (${err.code})`, headers: {} }));
        await eventually(
          () => waitingOnLocks().some((q) => q.startsWith('select * from "uploads"')),
          'the holder, every byte stored, waits for the row to record the asset',
        );
        asker = head(location, w.key, '8', other);
        await eventually(() => Number(lease()?.release_requested) === 1, 'the HEAD asked for the upload');
        // The holder's lease watcher renews the lease, then passes the ask on, in one poll;
        // the next poll starts once that one is done. Two renewals after the ask: passed on.
        for (let renewal = 0; renewal < 2; renewal++) {
          const at = String(lease()?.expires_at);
          await eventually(() => String(lease()?.expires_at) !== at, 'the holder renewed its lease');
        }
      });
    } finally {
      await conn.db.destroy();
    }
    try {
      const answered = await holder!;
      assert.equal(answered.status, 201, 'the holder answered');
      const assetId = answered.headers['wharf-asset-id'];
      assert.ok(assetId, 'the upload became an asset');
      const state = await asker!;
      assert.equal(state.final?.status, 204, `${state.final?.head}`);
      assert.equal(state.final.headers['upload-complete'], '?1');
      assert.ok((await content(String(assetId))).equals(Buffer.concat([first, second])));
      // The client's next request on that connection is answered on it.
      const next = await onAgent(agent, 'HEAD', location, headers).answer;
      assert.equal(next.status, 204);
      assert.ok(next.reused, 'sent on the holder’s connection');
    } finally {
      agent.destroy();
    }
  });

  test('an abandoned upload expires: its bytes are freed and its reservation given back', async () => {
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=abandoned.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(2 * MiB)],
      ]),
      body: randomBytes(MiB),
    });
    const location = created.final!.headers.location!;
    w.clock.advance(25 * 3600_000 + 3600_000 + 1000);
    await w.wharf.core.uploads.sweep();
    assert.equal(uploadRow(location)?.status, 'expired');
    assert.deepEqual(await leftovers(location), []);
    assert.equal((await head(location)).final?.status, 410);
  });
});

describe('across nodes', () => {
  test('created on one node and cut, a request on another node cuts the stale writer and resumes', async () => {
    const other = await startWharf({ sharing: w });
    try {
      const bytes = randomBytes(5 * MiB);
      const created = await send({
        method: 'POST',
        target: '/v1/resumable/?name=nodes.bin',
        headers: speaking(w.key, '8', [
          ['Upload-Complete', '?0'],
          ['Upload-Length', String(bytes.length)],
        ]),
        body: Buffer.alloc(0),
      });
      const location = created.final!.headers.location!;
      // Node A still thinks this append is running: its client went quiet without closing.
      const stalled = append(location, 0, bytes, true, {
        stopAfter: 2 * MiB,
        cut: 'half-close',
        timeoutMs: 120_000,
      });
      await eventually(async () => (await leftovers(location)).length > 0, 'the stalled append started');
      const offset = await offsetOf(location, w.key, other);
      assert.ok(offset <= 2 * MiB, `${offset}`);
      await resumeToEnd(location, bytes, w.key, other);
      await stalled;
      assert.equal((await head(location)).final?.headers['upload-complete'], '?1', 'node A sees it complete');
    } finally {
      await other.close();
    }
  });
});

describe('hostile input', () => {
  let location: string;
  before(async () => {
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=target.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', '100'],
      ]),
      body: randomBytes(10),
    });
    location = created.final!.headers.location!;
  });

  test('malformed protocol fields are refused with a stable code, never a 5xx, and change nothing', async () => {
    const cases: Array<[string, Array<[string, string]>, number, string]> = [
      ['no Upload-Offset', [['Upload-Complete', '?0']], 400, 'VALIDATION_FAILED'],
      [
        'Upload-Offset: abc',
        [
          ['Upload-Complete', '?0'],
          ['Upload-Offset', 'abc'],
        ],
        400,
        'VALIDATION_FAILED',
      ],
      [
        'Upload-Offset: -1',
        [
          ['Upload-Complete', '?0'],
          ['Upload-Offset', '-1'],
        ],
        400,
        'VALIDATION_FAILED',
      ],
      [
        'Upload-Offset: 1.5',
        [
          ['Upload-Complete', '?0'],
          ['Upload-Offset', '1.5'],
        ],
        400,
        'VALIDATION_FAILED',
      ],
      ['no Upload-Complete', [['Upload-Offset', '10']], 400, 'VALIDATION_FAILED'],
      [
        'Upload-Complete: yes',
        [
          ['Upload-Complete', 'yes'],
          ['Upload-Offset', '10'],
        ],
        400,
        'VALIDATION_FAILED',
      ],
      [
        'Upload-Length changed',
        [
          ['Upload-Complete', '?0'],
          ['Upload-Offset', '10'],
          ['Upload-Length', '99'],
        ],
        400,
        'INCONSISTENT_LENGTH',
      ],
    ];
    for (const [label, fields, status, code] of cases) {
      const res = await send({
        method: 'PATCH',
        target: pathOf(location),
        headers: speaking(w.key, '8', [...fields, ['Content-Type', 'application/partial-upload']]),
        body: randomBytes(5),
      });
      assert.equal(res.final?.status, status, `${label}: ${res.final?.head}`);
      assert.equal(json(res).error.code, code, label);
    }
    assert.equal(await offsetOf(location), 10);
  });

  test('creation refusals: no name, no length, too large (with the limits), bad metadata, no key', async () => {
    const post = (
      target: string,
      fields: Array<[string, string]>,
      key: string | null = w.key,
      body?: Buffer,
    ) => send({ method: 'POST', target, headers: speaking(key, '8', fields), body });
    const noName = await post('/v1/resumable/', [['Upload-Complete', '?1']], w.key, randomBytes(3));
    assert.equal(json(noName).error.code, 'VALIDATION_FAILED');
    const noLength = await post('/v1/resumable/?name=x.bin', [['Upload-Complete', '?0']]);
    assert.equal(noLength.final?.status, 411);
    assert.equal(json(noLength).error.code, 'LENGTH_REQUIRED');
    const huge = await post('/v1/resumable/?name=x.bin', [
      ['Upload-Complete', '?0'],
      ['Upload-Length', String(6 * 1024 ** 3)],
    ]);
    assert.equal(huge.final?.status, 413);
    assert.equal(json(huge).error.code, 'FILE_TOO_LARGE');
    assert.equal(limits(huge.final.headers['upload-limit']).get('max-size'), 5 * 1024 ** 3);
    // A length a structured-field Integer cannot hold (16 digits and more) or none at all is no
    // missing length (h92 saw 411 "Say the file's length" to one that said it).
    for (const [length, status, code] of [
      ['1000000000000000', 413, 'FILE_TOO_LARGE'],
      ['99999999999999999999', 413, 'FILE_TOO_LARGE'],
      ['-5', 400, 'VALIDATION_FAILED'],
      ['12.5', 400, 'VALIDATION_FAILED'],
      ['abc', 400, 'VALIDATION_FAILED'],
    ] as const) {
      const unreadable = await post('/v1/resumable/?name=x.bin', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', length],
      ]);
      assert.equal(unreadable.final?.status, status, `Upload-Length: ${length}`);
      assert.equal(json(unreadable).error.code, code, `Upload-Length: ${length}`);
    }
    const metadata = await post('/v1/resumable/', [
      ['Upload-Complete', '?0'],
      ['Upload-Length', '5'],
      ['Upload-Metadata', 'filename !!!'],
    ]);
    assert.equal(json(metadata).error.code, 'VALIDATION_FAILED');
    const disposition = await post('/v1/resumable/', [
      ['Upload-Complete', '?0'],
      ['Upload-Length', '5'],
      ['Content-Disposition', 'inline; filename="a'],
    ]);
    assert.equal(json(disposition).error.code, 'VALIDATION_FAILED');
    const traversal = await post('/v1/resumable/?name=../../etc/passwd', [
      ['Upload-Complete', '?0'],
      ['Upload-Length', '5'],
    ]);
    assert.equal(json(traversal).error.code, 'INVALID_NAME');
    const twice = await post(
      '/v1/resumable/?name=a.bin&name=b.bin',
      [['Upload-Complete', '?1']],
      w.key,
      randomBytes(3),
    );
    assert.equal(json(twice).error.code, 'VALIDATION_FAILED');
    const unknown = await post(
      '/v1/resumable/?name=a.bin&size=3',
      [['Upload-Complete', '?1']],
      w.key,
      randomBytes(3),
    );
    assert.equal(json(unknown).error.code, 'VALIDATION_FAILED');
    const anonymous = await post(
      '/v1/resumable/?name=x.bin',
      [['Upload-Complete', '?1']],
      null,
      randomBytes(3),
    );
    assert.equal(anonymous.final?.status, 401);
    for (const refused of [
      noName,
      noLength,
      huge,
      metadata,
      disposition,
      traversal,
      twice,
      unknown,
      anonymous,
    ]) {
      assert.deepEqual(refused.informational, [], 'no upload resource announced');
    }
  });

  test('resources that are not uploads of the caller’s are 404 (another account’s, a tus upload, nonsense)', async () => {
    const stranger = await w.newAccount();
    assert.equal((await head(location, stranger.key)).final?.status, 404);
    assert.equal(
      (await send({ method: 'DELETE', target: pathOf(location), headers: speaking(stranger.key) })).final
        ?.status,
      404,
    );
    assert.equal(await offsetOf(location), 10, 'untouched');
    for (const target of [
      '/v1/resumable/nope',
      '/v1/resumable/00000000-0000-0000-0000-000000000000',
      `/v1/resumable/${'a'.repeat(400)}`,
    ]) {
      const res = await send({ method: 'HEAD', target, headers: speaking(w.key) });
      assert.ok(
        res.final && res.final.status >= 400 && res.final.status < 500,
        `${target}: ${res.final?.status}`,
      );
    }
    const tus = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${w.key}`,
        'Tus-Resumable': '1.0.0',
        'Upload-Length': '5',
        'Upload-Metadata': `filename ${Buffer.from('t.bin').toString('base64')}`,
      },
    });
    const tusId = new URL(tus.headers.get('location')!).pathname.split('/').pop()!.split('.')[0]!;
    assert.equal(
      (await send({ method: 'HEAD', target: `/v1/resumable/${tusId}`, headers: speaking(w.key) })).final
        ?.status,
      404,
    );
  });

  test('Expect: 100-continue gets its 100 and then the 104', async () => {
    const bytes = randomBytes(10_000);
    const res = await send({
      method: 'POST',
      target: '/v1/resumable/?name=expect.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?1'],
        ['Expect', '100-continue'],
      ]),
      body: bytes,
      bodyAfter104: true,
    });
    assert.deepEqual(
      res.informational.map((m) => m.status),
      [100, 104],
    );
    assert.equal(res.final?.status, 201);
  });
});

describe('upload tokens', () => {
  async function mint(body: Record<string, unknown> = {}) {
    const res = await api(w.url, w.key, 'POST', '/v1/upload-tokens', body);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return { id: res.body.token.id as string, secret: res.body.secret as string };
  }
  const usage = async (id: string) => (await api(w.url, w.key, 'GET', `/v1/upload-tokens/${id}`)).body.usage;

  test('a token alone uploads resumably; the file is reserved while pending and counted once complete', async () => {
    const token = await mint({
      subject: 'phone-7',
      metadata: { album: 'trip' },
      max_bytes: 5 * MiB,
      max_files: 2,
    });
    const bytes = randomBytes(MiB + 99);
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=token.bin',
      headers: speaking(token.secret, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(bytes.length)],
      ]),
      body: bytes.subarray(0, 1000),
    });
    assert.equal(created.final?.status, 201, String(created.final?.body));
    const location = created.final.headers.location!;
    const held = await usage(token.id);
    assert.equal(held.files_reserved, 1);
    assert.equal(held.bytes_reserved, bytes.length);
    assert.equal(held.open_uploads, 1);
    const asset = await resumeToEnd(location, bytes, token.secret);
    assert.equal(asset.subject, 'phone-7');
    const used = await usage(token.id);
    assert.deepEqual(
      [used.files_used, used.bytes_used, used.files_reserved, used.bytes_reserved, used.open_uploads],
      [1, bytes.length, 0, 0, 0],
    );
  });

  test('a token cancels its own upload from another node, and gets its reservation back', async () => {
    const token = await mint({ max_bytes: 5 * MiB });
    const bytes = randomBytes(2 * MiB);
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=token-cancel.bin',
      headers: speaking(token.secret, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(bytes.length)],
      ]),
      body: bytes.subarray(0, MiB),
    });
    const location = created.final!.headers.location!;
    assert.equal((await usage(token.id)).bytes_reserved, bytes.length);
    const other = await startWharf({ sharing: w });
    try {
      const stranger = await mint({});
      const refused = await send(
        { method: 'DELETE', target: pathOf(location), headers: speaking(stranger.secret) },
        other,
      );
      assert.equal(refused.final?.status, 404, 'another token’s upload is not a resource');
      assert.equal(uploadRow(location)?.status, 'pending');
      const res = await send(
        { method: 'DELETE', target: pathOf(location), headers: speaking(token.secret) },
        other,
      );
      assert.equal(res.final?.status, 204);
    } finally {
      await other.close();
    }
    assert.equal(uploadRow(location)?.status, 'expired');
    assert.deepEqual(await leftovers(location), []);
    const after = await usage(token.id);
    assert.deepEqual([after.bytes_reserved, after.open_uploads], [0, 0]);
  });

  test('a token’s limits refuse a resumable upload up front, before any 104', async () => {
    const token = await mint({ max_bytes: 1000, content_types: ['image/*'] });
    const big = await send({
      method: 'POST',
      target: '/v1/resumable/?name=big.png&content_type=image/png',
      headers: speaking(token.secret, '8', [['Upload-Complete', '?1']]),
      body: randomBytes(2000),
    });
    assert.equal(big.final?.status, 403);
    assert.equal(json(big).error.code, 'TOKEN_BYTES_EXHAUSTED');
    assert.deepEqual(big.informational, []);
    const type = await send({
      method: 'POST',
      target: '/v1/assets?name=doc.pdf',
      headers: speaking(token.secret, '8', [['Upload-Complete', '?1']]),
      body: randomBytes(10),
    });
    assert.equal(json(type).error.code, 'CONTENT_TYPE_DENIED');
  });

  test('a token sees only its own uploads: not another token’s resource, not in the lookup', async () => {
    const mine = await mint();
    const theirs = await mint();
    const bytes = randomBytes(5000);
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=private.bin',
      headers: speaking(mine.secret, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(bytes.length)],
      ]),
      body: bytes.subarray(0, 100),
    });
    const location = created.final!.headers.location!;
    assert.equal((await head(location, theirs.secret)).final?.status, 404);
    assert.equal(
      (await append(location, 100, bytes.subarray(100), true, { key: theirs.secret })).final?.status,
      404,
    );
    const query = `/v1/uploads?status=pending&size=${bytes.length}&sha256=${sha256Hex(bytes)}`;
    assert.deepEqual((await api(w.url, theirs.secret, 'GET', query)).body.data, []);
    // Only 100 of its bytes arrived and nothing was declared: no head digest is known yet.
    const byHead = await api(
      w.url,
      mine.secret,
      'GET',
      `/v1/uploads?status=pending&size=${bytes.length}&head_sha256=${sha256Hex(bytes)}`,
    );
    assert.deepEqual(byHead.body.data, [], 'no head digest is known yet');
    await resumeToEnd(location, bytes, mine.secret);
  });

  test('a key without the upload scope cannot start one', async () => {
    const reader = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'reader', scopes: ['read'] });
    const res = await send({
      method: 'POST',
      target: '/v1/resumable/?name=r.bin',
      headers: speaking(reader.body.secret, '8', [['Upload-Complete', '?1']]),
      body: randomBytes(10),
    });
    assert.equal(res.final?.status, 403);
    assert.equal(json(res).error.code, 'SCOPE_DENIED');
  });
});

describe('resume without client state', () => {
  test('by size and head digest that Wharf computed from the first 4 MiB', async () => {
    const bytes = randomBytes(HEAD + 2 * MiB);
    const headDigest = sha256Hex(bytes.subarray(0, HEAD));
    await send({
      method: 'POST',
      target: '/v1/resumable/?name=found.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(bytes.length)],
      ]),
      body: bytes.subarray(0, HEAD + MiB),
    });
    const query = `/v1/uploads?status=pending&size=${bytes.length}&head_sha256=${headDigest}&head_bytes=${HEAD}`;
    const res = await api(w.url, w.key, 'GET', query);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.data.length, 1);
    const [found] = res.body.data;
    assert.equal(found.offset, HEAD + MiB);
    assert.equal(found.name, 'found.bin');
    assert.equal(found.kind, 'rufh');
    assert.equal(found.status, 'pending');
    // One route: the account's listing shows the same upload, where to resume it, no offset.
    const listed = (await api(w.url, w.key, 'GET', '/v1/uploads?status=pending&limit=1000')).body.data.find(
      (u: { id: string }) => u.id === found.id,
    );
    assert.equal(listed.resume_url, found.resume_url);
    assert.equal(listed.offset, undefined);
    await resumeToEnd(found.resume_url, bytes);
    const after = await api(w.url, w.key, 'GET', query);
    assert.deepEqual(after.body.data, [], 'a completed upload is no longer listed');
    const done = (await api(w.url, w.key, 'GET', '/v1/uploads?status=completed&limit=1000')).body.data.find(
      (u: { id: string }) => u.id === found.id,
    );
    assert.equal(done.resume_url, null, 'nothing to resume once complete');
    assert.equal(done.kind, 'rufh');
    const wrongBytes = await api(
      w.url,
      w.key,
      'GET',
      `/v1/uploads?status=pending&size=${bytes.length}&head_sha256=${headDigest}&head_bytes=100`,
    );
    assert.equal(wrongBytes.status, 400);
    assert.equal(wrongBytes.body.error.details.head_bytes, HEAD);
  });

  test('a declared head digest that the first bytes contradict fails the upload', async () => {
    const bytes = randomBytes(2 * MiB);
    const res = await send({
      method: 'POST',
      target: `/v1/resumable/?name=liar.bin&head_sha256=${sha256Hex(randomBytes(8))}`,
      headers: speaking(w.key, '8', [['Upload-Complete', '?1']]),
      body: bytes,
    });
    assert.equal(res.final?.status, 400);
    assert.equal(json(res).error.code, 'CHECKSUM_MISMATCH');
    assert.equal(uploadRow(res.informational[0]!.headers.location!)?.status, 'expired');
  });

  test('a tus upload too, by the SHA-256 it declared; another account never sees it', async () => {
    const bytes = randomBytes(3 * MiB);
    const sha = sha256Hex(bytes);
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    const created = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${w.key}`,
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(bytes.length),
        'Upload-Metadata': `filename ${b64('t.bin')},sha256 ${b64(sha)}`,
        'Content-Type': 'application/offset+octet-stream',
      },
      body: new Uint8Array(bytes.subarray(0, MiB)),
    });
    assert.equal(created.status, 201);
    const stranger = await w.newAccount();
    const query = `/v1/uploads?status=pending&size=${bytes.length}&sha256=${sha}`;
    assert.deepEqual((await api(w.url, stranger.key, 'GET', query)).body.data, []);
    const [found] = (await api(w.url, w.key, 'GET', query)).body.data;
    assert.equal(found.kind, 'tus');
    assert.equal(found.resume_url, created.headers.get('location'));
    assert.equal(found.offset, MiB);
    const rest = await fetch(found.resume_url, {
      method: 'PATCH',
      headers: {
        Authorization: `Bearer ${w.key}`,
        'Tus-Resumable': '1.0.0',
        'Upload-Offset': String(found.offset),
        'Content-Type': 'application/offset+octet-stream',
      },
      body: new Uint8Array(bytes.subarray(found.offset)),
    });
    assert.equal(rest.status, 204);
    assert.ok((await content(rest.headers.get('wharf-asset-id')!)).equals(bytes));
  });

  test('the lookup needs a digest and a size, among pending uploads, on one page', async () => {
    assert.equal((await api(w.url, w.key, 'GET', '/v1/uploads?status=pending&size=10')).status, 400);
    assert.equal((await api(w.url, w.key, 'GET', '/v1/uploads?status=pending&sha256=00')).status, 400);
    const sha = sha256Hex(randomBytes(8));
    for (const query of [
      `status=completed&size=8&sha256=${sha}`,
      `status=expired&size=8&sha256=${sha}`,
      `size=8&sha256=${sha}&cursor=abc`,
      `head_bytes=8`,
    ]) {
      const res = await api(w.url, w.key, 'GET', `/v1/uploads?${query}`);
      assert.equal(res.status, 400, query);
      assert.equal(res.body.error.code, 'VALIDATION_FAILED', query);
    }
    // status=pending is implied by a lookup.
    assert.deepEqual((await api(w.url, w.key, 'GET', `/v1/uploads?size=8&sha256=${sha}`)).body, {
      data: [],
      next_cursor: null,
    });
    assert.equal(
      (await api(w.url, w.key, 'GET', `/v1/uploads?status=pending&size=1&sha256=nothex`)).body.error.code,
      'INVALID_DIGEST',
    );
  });
});

describe('the uploads listing once a resumable upload has expired', () => {
  test('tus and RUFH uploads read as expired, with no resume_url, before the sweep records it; presigned ones an hour later', async () => {
    const rufhUpload = await send({
      method: 'POST',
      target: '/v1/resumable/?name=lapsed.bin',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(2 * MiB)],
      ]),
      body: randomBytes(MiB),
    });
    const rufhId = uploadIdOf(rufhUpload.final!.headers.location!);
    const tusUpload = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${w.key}`,
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(2 * MiB),
        'Upload-Metadata': `filename ${Buffer.from('lapsed-tus.bin').toString('base64')}`,
      },
    });
    assert.equal(tusUpload.status, 201);
    const tusUrl = tusUpload.headers.get('location')!;
    const listed = async (status: string) =>
      (await api(w.url, w.key, 'GET', `/v1/uploads?status=${status}&limit=1000`)).body.data as {
        id: string;
        kind: string;
        status: string;
        expires_at: string;
        resume_url: string | null;
      }[];
    const tusId = (await listed('pending')).find((u) => u.resume_url === tusUrl)!.id;
    // The single read shows each as the listing does, resume_url included: resuming one upload
    // needs no listing (docs/reference.md: "as the listing shows it").
    const resumable = (await listed('pending')).filter((u) => [rufhId, tusId].includes(u.id));
    assert.equal(resumable.length, 2);
    for (const item of resumable) {
      assert.ok(item.resume_url, `${item.kind}: a resume_url`);
      assert.deepEqual((await api(w.url, w.key, 'GET', `/v1/uploads/${item.id}`)).body, item);
    }
    // A multipart upload that expires with them: the parts sent in time could still be completed.
    const intent = await api(w.url, w.key, 'POST', '/v1/multipart', { name: 'lapsed.zip', size: 4 });
    assert.equal(intent.status, 201, JSON.stringify(intent.body));
    // A presigned upload whose 15 minutes, and the hour after them, will have passed by then.
    const presigned = await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'lapsed.txt', size: 4 });
    assert.equal(presigned.status, 201, JSON.stringify(presigned.body));
    const ids = [rufhId, tusId];
    const before = w.clock.now();
    const latest = Math.max(
      ...(await listed('pending')).filter((u) => ids.includes(u.id)).map((u) => Date.parse(u.expires_at)),
      Date.parse(intent.body.expires_at),
    );
    w.clock.set(latest + 1000);
    try {
      assert.equal((await head(rufhUpload.final!.headers.location!)).final?.status, 410);
      const pending = (await listed('pending')).map((u) => u.id);
      for (const id of ids) assert.ok(!pending.includes(id), `${id} is not pending any more`);
      assert.ok(pending.includes(intent.body.id), 'a multipart upload may still be completed for an hour');
      const expired = (await listed('expired')).filter((u) => ids.includes(u.id));
      assert.deepEqual(expired.map((u) => [u.kind, u.status, u.resume_url]).sort(), [
        ['rufh', 'expired', null],
        ['tus', 'expired', null],
      ]);
      for (const id of ids) {
        const one = await api(w.url, w.key, 'GET', `/v1/uploads/${id}`);
        assert.equal(one.body.status, 'expired');
        assert.equal(one.body.resume_url, null);
      }
      // Read as it stands, never written on read: the sweep still records the end (and frees the bytes).
      assert.equal(uploadRow(rufhUpload.final!.headers.location!)?.status, 'pending');

      // Past the grace hour a presigned upload may no longer be confirmed (410): it reads as
      // expired too. A multipart upload completes by itself whenever its parts are found to add
      // up (they could only arrive in time): pending until the sweep decides.
      assert.ok(!pending.includes(presigned.body.id), 'the presigned upload is past its hour');
      w.clock.set(Date.parse(intent.body.expires_at) + 3600_000 + 1000);
      const stillPending = (await listed('pending')).map((u) => u.id);
      const ended = (await listed('expired')).map((u) => u.id);
      assert.ok(!stillPending.includes(presigned.body.id), 'the presigned upload is not pending any more');
      assert.ok(ended.includes(presigned.body.id), 'the presigned upload is listed as expired');
      assert.equal(
        (await api(w.url, w.key, 'GET', `/v1/uploads/${presigned.body.id}`)).body.status,
        'expired',
      );
      const row = dbQuery<{ status: string }>(
        w,
        'select status from uploads where id = ?',
        presigned.body.id,
      );
      assert.equal(row[0]?.status, 'pending', 'the sweep records it');
      assert.ok(stillPending.includes(intent.body.id), 'the multipart upload is pending until the sweep');
      assert.ok(!ended.includes(intent.body.id));
    } finally {
      w.clock.set(before);
    }
  });
});

describe('tus-js-client’s IETF mode as an independent client', () => {
  function ietfUpload(bytes: Buffer, protocol: 'ietf-draft-03' | 'ietf-draft-05', chunkSize?: number) {
    return new Promise<{ url: string; assetId: string }>((resolve, reject) => {
      // tus-js-client 4.3's JavaScript reads `protocol` (its IETF modes); its typings do not list it.
      const ietf = { protocol } as Partial<UploadOptions>;
      const upload: Upload = new Upload(bytes, {
        ...ietf,
        endpoint: `${w.url}/v1/resumable/`,
        headers: { Authorization: `Bearer ${w.key}` },
        metadata: { filename: `${protocol}.bin`, filetype: 'application/x-test' },
        retryDelays: [],
        ...(chunkSize && { chunkSize }),
        onError: reject,
        onSuccess: ({ lastResponse }) =>
          resolve({ url: upload.url!, assetId: lastResponse.getHeader('Wharf-Asset-Id') ?? '' }),
      });
      upload.start();
    });
  }

  test('interop 6 (ietf-draft-05), in chunks; interop 5 (ietf-draft-03) in one append', async () => {
    const bytes = randomBytes(3 * MiB + 17);
    const chunked = await ietfUpload(bytes, 'ietf-draft-05', MiB);
    assert.match(chunked.url, /\/v1\/resumable\//);
    assert.ok((await content(chunked.assetId)).equals(bytes));
    assert.equal(uploadRow(chunked.url)?.kind, 'rufh');
    const other = randomBytes(100_000);
    const whole = await ietfUpload(other, 'ietf-draft-03');
    assert.ok((await content(whole.assetId)).equals(other));
    const a = await api(w.url, w.key, 'GET', `/v1/assets/${whole.assetId}`);
    assert.equal(a.body.content_type, 'application/x-test');
  });

  test('interop 6: stopped after its first chunk, resumed by a new client at the URL on another node', async () => {
    const bytes = randomBytes(3 * MiB + 5);
    const ietf = { protocol: 'ietf-draft-05' } as Partial<UploadOptions>;
    const options = {
      ...ietf,
      headers: { Authorization: `Bearer ${w.key}` },
      metadata: { filename: 'stopped.bin' },
      retryDelays: [],
      chunkSize: MiB,
    };
    // The first client stops (as an app that is killed) once the server confirmed one chunk.
    const stoppedAt = await new Promise<string>((resolve, reject) => {
      const first: Upload = new Upload(bytes, {
        ...options,
        endpoint: `${w.url}/v1/resumable/`,
        onError: reject,
        onSuccess: () => reject(new Error('it was meant to stop before the end')),
        onChunkComplete: () => {
          first.abort().then(() => resolve(first.url!), reject);
        },
      });
      first.start();
    });
    const other = await startWharf({ sharing: w });
    try {
      assert.equal(await offsetOf(stoppedAt, w.key, other), MiB);
      const resumed = await new Promise<string>((resolve, reject) => {
        const second: Upload = new Upload(bytes, {
          ...options,
          uploadUrl: `${other.url}${pathOf(stoppedAt)}`,
          onError: reject,
          onSuccess: ({ lastResponse }) => resolve(lastResponse.getHeader('Wharf-Asset-Id') ?? ''),
        });
        second.start();
      });
      assert.ok((await content(resumed, w.key, other)).equals(bytes));
    } finally {
      await other.close();
    }
  });
});

describe('events and webhooks', () => {
  test('a RUFH upload is created and completed like any other, with its own kind', async () => {
    const res = await send({
      method: 'POST',
      target: '/v1/resumable/?name=events.bin',
      headers: speaking(w.key, '8', [['Upload-Complete', '?1']]),
      body: randomBytes(1234),
    });
    const id = uploadIdOf(res.informational[0]!.headers.location!);
    const events = await api(w.url, w.key, 'GET', '/v1/events?type=upload.*&limit=1000');
    const mine = events.body.data.filter(
      (e: { data: { upload?: { id: string } } }) => e.data.upload?.id === id,
    );
    assert.deepEqual(
      mine.map((e: { type: string; data: { upload: { kind: string } } }) => [e.type, e.data.upload.kind]),
      [
        ['upload.created', 'rufh'],
        ['upload.completed', 'rufh'],
      ],
    );
  });

  test('the same asset as any other flow: processed, and the same content by multipart is that asset', async () => {
    const png = await sharp({ create: { width: 37, height: 21, channels: 3, background: '#0a7' } })
      .png()
      .toBuffer();
    const created = await send({
      method: 'POST',
      target: '/v1/resumable/?name=tile.png',
      headers: speaking(w.key, '8', [
        ['Upload-Complete', '?0'],
        ['Upload-Length', String(png.length)],
        ['Content-Type', 'image/png'],
      ]),
      body: png.subarray(0, 40),
    });
    const location = created.final!.headers.location!;
    const asset = await resumeToEnd(location, png);
    await w.wharf.core.jobs.drain();
    const read = (await api(w.url, w.key, 'GET', `/v1/assets/${asset.id}`)).body;
    assert.equal(read.processing, 'done');
    assert.equal(read.analysis.width, 37);
    assert.equal(read.analysis.height, 21);
    const form = await uploadForm(w, w.key, 'tile-again.png', png, 'image/png');
    assert.equal(form.status, 200, JSON.stringify(form.body));
    assert.equal(form.body.status, 'exists');
    assert.equal(form.body.asset.id, asset.id);
  });
});
