import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { S3BlobStore } from '../../src/blobs/s3-store.js';
import { ERROR_STATUS, type ErrorCode, isWharfError } from '../../src/core/errors.js';
import { type BlobStore, MULTIPART_LIMITS, type StoredPart } from '../../src/core/ports.js';
import { S3_ERRORS } from '../../src/http/storage/s3-errors.js';
import { filesUnder, tmpFiles } from '../helpers/assets.js';
import { storesOnS3 } from '../helpers/deployment.js';
import { localBlobStore } from '../helpers/fs-store.js';
import { api, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

const PART = MULTIPART_LIMITS.minPartSize;
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
/** S3's ETag of a multipart object: the MD5 of the parts' binary MD5s, then `-N`. */
const compositeETag = (parts: Buffer[]) =>
  `"${createHash('md5')
    .update(Buffer.concat(parts.map((p) => Buffer.from(md5(p), 'hex'))))
    .digest('hex')}-${parts.length}"`;

async function refused(code: string, work: Promise<unknown>): Promise<void> {
  await assert.rejects(work, (err: unknown) => {
    assert.ok(isWharfError(err), String(err));
    assert.equal(err.code, code, err.message);
    return true;
  });
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe(`BlobStore multipart on ${storesOnS3 ? 'S3 (Ceph)' : 'a local directory'}`, () => {
  let store: BlobStore;
  let cleanup: () => Promise<void>;

  before(async () => {
    if (storesOnS3) {
      const s3 = new S3BlobStore({
        endpoint: process.env.WHARF_TEST_S3_ENDPOINT,
        region: process.env.WHARF_TEST_S3_REGION ?? 'us-east-1',
        bucket: `wharf-mp-${randomBytes(6).toString('hex')}`,
        accessKeyId: process.env.WHARF_TEST_S3_ACCESS_KEY_ID ?? '',
        secretAccessKey: process.env.WHARF_TEST_S3_SECRET_ACCESS_KEY ?? '',
        forcePathStyle: true,
      });
      await s3.ensureBucket();
      store = s3;
      cleanup = async () => {
        await s3.sweepIncomplete(Number.POSITIVE_INFINITY);
        await s3.close();
      };
    } else {
      const root = await mkdtemp(join(tmpdir(), 'wharf-storage-mp-'));
      store = await localBlobStore(root);
      cleanup = () => rm(root, { recursive: true, force: true });
    }
  });
  after(() => cleanup?.());

  /** A part as a client sends it: to the bucket through a URL from presignOperation on S3. */
  async function sendPart(
    key: string,
    multipartId: string,
    partNumber: number,
    bytes: Buffer,
  ): Promise<StoredPart> {
    if (store.writePart) {
      return store.writePart({
        key,
        multipartId,
        partNumber,
        body: Readable.from([bytes]),
        size: bytes.length,
      });
    }
    const signed = await store.presignOperation({
      operation: 'UploadPart',
      key,
      multipartId,
      partNumber,
      expiresInSeconds: 300,
      now: Date.now(),
    });
    const res = await fetch(signed.url, {
      method: signed.method,
      headers: signed.headers,
      body: new Uint8Array(bytes),
    });
    assert.equal(res.status, 200, await res.text());
    return { partNumber, size: bytes.length, etag: res.headers.get('etag') ?? '' };
  }

  test('parts compose into the object: S3’s composite ETag, the bytes, size and type', async () => {
    const key = `acct/${randomBytes(8).toString('hex')}.bin`;
    const id = await store.createMultipart(key, 'video/mp4');
    const parts = [randomBytes(PART), randomBytes(PART + 17), randomBytes(4321)];
    const sent = [];
    for (const [i, part] of [...parts.entries()].reverse())
      sent.unshift(await sendPart(key, id, i + 1, part));
    assert.deepEqual(
      sent.map((p) => p.etag),
      parts.map((p) => `"${md5(p)}"`),
    );
    const listed = await store.listParts(key, id);
    assert.deepEqual(
      listed.map((p) => [p.partNumber, p.size, p.etag]),
      parts.map((p, i) => [i + 1, p.length, `"${md5(p)}"`]),
    );
    assert.ok(listed.every((p) => typeof p.lastModified === 'number'));

    const info = await store.completeMultipart(
      key,
      id,
      sent.map((p) => ({ partNumber: p.partNumber, etag: p.etag })),
    );
    const whole = Buffer.concat(parts);
    assert.equal(info.etag, compositeETag(parts));
    assert.equal(info.size, whole.length);
    assert.equal(info.contentType, 'video/mp4');
    assert.equal(sha256Hex(await bytesOf(await store.read(key))), sha256Hex(whole));
    assert.equal((await store.head(key))?.size, whole.length);
    // The multipart upload is over.
    await refused('MULTIPART_NOT_FOUND', store.listParts(key, id));
    await refused(
      'MULTIPART_NOT_FOUND',
      store.completeMultipart(key, id, [{ partNumber: 1, etag: sent[0]!.etag }]),
    );
    await store.abortMultipart(key, id);
    await store.delete(key);
  });

  test('completion is refused as S3 refuses it, and the upload stays open', async () => {
    const key = `acct/${randomBytes(8).toString('hex')}.bin`;
    const ordered = await store.createMultipart(key, 'application/octet-stream');
    const big = await sendPart(key, ordered, 3, randomBytes(PART));
    const bigger = await sendPart(key, ordered, 4, randomBytes(PART));
    await refused(
      'INVALID_PART_ORDER',
      store.completeMultipart(key, ordered, [
        { partNumber: 4, etag: bigger.etag },
        { partNumber: 3, etag: big.etag },
      ]),
    );
    await store.abortMultipart(key, ordered);
    // A fresh upload: Ceph refuses small parts as InvalidPart while unnamed parts lie beside them.
    const id = await store.createMultipart(key, 'application/octet-stream');
    const small = await sendPart(key, id, 1, randomBytes(1024));
    const last = await sendPart(key, id, 2, randomBytes(10));
    await refused(
      'PART_TOO_SMALL',
      store.completeMultipart(key, id, [
        { partNumber: 1, etag: small.etag },
        { partNumber: 2, etag: last.etag },
      ]),
    );
    await refused(
      'INVALID_PART',
      store.completeMultipart(key, id, [{ partNumber: 1, etag: `"${'0'.repeat(32)}"` }]),
    );
    await refused('INVALID_PART', store.completeMultipart(key, id, [{ partNumber: 5, etag: last.etag }]));
    assert.equal(await store.head(key), undefined);
    assert.deepEqual(
      (await store.listParts(key, id)).map((p) => p.partNumber),
      [1, 2],
    );
    await store.abortMultipart(key, id);
    await refused('MULTIPART_NOT_FOUND', store.listParts(key, id));
    // Aborting what is gone is a no-op.
    await store.abortMultipart(key, id);
  });

  test('an unknown multipart id is MULTIPART_NOT_FOUND', async () => {
    const key = `acct/${randomBytes(8).toString('hex')}.bin`;
    await refused('MULTIPART_NOT_FOUND', store.listParts(key, 'bm90LWFuLXVwbG9hZC1pZC1hdC1hbGw'));
    await refused(
      'MULTIPART_NOT_FOUND',
      store.completeMultipart(key, 'bm90LWFuLXVwbG9hZC1pZC1hdC1hbGw', [{ partNumber: 1, etag: '"x"' }]),
    );
  });

  // The local store's URLs need a server to answer them: the endpoint tests below cover those.
  test('S3: a PutObject URL from presignOperation takes a body of any size, of the signed type only', {
    skip: !storesOnS3,
  }, async () => {
    const key = `acct/${randomBytes(8).toString('hex')}.txt`;
    const signed = await store.presignOperation({
      operation: 'PutObject',
      key,
      contentType: 'text/plain',
      expiresInSeconds: 300,
      now: Date.now(),
    });
    const wrongType = await fetch(signed.url, {
      method: 'PUT',
      headers: { ...signed.headers, 'Content-Type': 'text/html' },
      body: 'x',
    });
    assert.equal(wrongType.status, 403, await wrongType.text());
    const body = randomBytes(3000);
    const res = await fetch(signed.url, {
      method: 'PUT',
      headers: signed.headers,
      body: new Uint8Array(body),
    });
    assert.equal(res.status, 200, await res.text());
    assert.equal((await store.head(key))?.size, body.length);
    // Write-once: If-None-Match is signed, so the URL cannot replace what it wrote.
    const again = await fetch(signed.url, { method: 'PUT', headers: signed.headers, body: 'other' });
    assert.equal(again.status, 412, await again.text());
    await store.delete(key);
  });
});

/**
 * The S3 multipart protocol as a client (Uppy 6) speaks it, with URLs from POST /v1/s3/sign:
 * Wharf's own endpoint on embedded, the bucket on S3. Both must answer alike.
 */
describe('S3 multipart requests over HTTP with URLs Wharf signed', () => {
  let w: TestWharf;
  before(async () => {
    w = await startWharf();
  });
  after(() => w?.close());

  const sign = async (body: Record<string, unknown>, key = w.key) => {
    const res = await api<{
      url: string;
      method: string;
      key: string;
      headers: Record<string, string>;
      upload_id: string;
    }>(w.url, key, 'POST', '/v1/s3/sign', body);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body;
  };
  const send = (
    signed: { url: string; method: string; headers: Record<string, string> },
    body?: string | Buffer,
    headers: Record<string, string> = {},
  ) =>
    fetch(signed.url, {
      method: signed.method,
      headers: { ...signed.headers, ...headers },
      body: typeof body === 'string' ? body : body && new Uint8Array(body),
    });
  const tag = (xml: string, name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];
  const errorCode = async (res: Response) => tag(await res.text(), 'Code');
  const completeXml = (parts: Array<[number, string]>) =>
    '<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
    parts
      .map(
        ([n, e]) => `<Part><ETag>${e.replaceAll('"', '&quot;')}</ETag><PartNumber>${n}</PartNumber></Part>`,
      )
      .join('') +
    '</CompleteMultipartUpload>';

  async function create(contentType: string | null = 'application/zip', key = w.key, headers = {}) {
    const signed = await sign(
      { method: 'POST', key: 'archive.zip', contentType: contentType ?? undefined },
      key,
    );
    const res = await send(signed, undefined, headers);
    const xml = await res.text();
    assert.equal(res.status, 200, xml);
    assert.match(xml, /<InitiateMultipartUploadResult[^>]*>/);
    const uploadId = tag(xml, 'UploadId');
    assert.ok(uploadId, xml);
    assert.equal(tag(xml, 'Key'), signed.key);
    return { key: signed.key, uploadId, wharfUpload: signed.upload_id, bucket: tag(xml, 'Bucket') };
  }

  async function putPart(
    key: string,
    uploadId: string,
    partNumber: number,
    bytes: Buffer,
    headers = {},
    apiKey = w.key,
  ) {
    return send(await sign({ method: 'PUT', key, uploadId, partNumber }, apiKey), bytes, headers);
  }

  test('create, parts (ETag headers), ListParts XML, Complete XML: the asset is the file', async () => {
    const { key, uploadId, wharfUpload } = await create();
    const parts = [randomBytes(PART), randomBytes(123_456)];
    const etags: string[] = [];
    for (const [i, part] of parts.entries()) {
      const res = await putPart(key, uploadId, i + 1, part);
      assert.equal(res.status, 200, await res.text());
      etags.push(res.headers.get('etag') ?? '');
    }
    assert.deepEqual(
      etags,
      parts.map((p) => `"${md5(p)}"`),
    );

    const listed = await send(await sign({ method: 'GET', key, uploadId }));
    const listXml = await listed.text();
    assert.equal(listed.status, 200, listXml);
    assert.match(listXml, /<ListPartsResult[^>]*>/);
    assert.equal(tag(listXml, 'UploadId'), uploadId);
    assert.equal(tag(listXml, 'IsTruncated'), 'false');
    const listedParts = [...listXml.matchAll(/<Part>(.*?)<\/Part>/gs)].map((m) => m[1]!);
    assert.deepEqual(
      listedParts.map((p) => [
        tag(p, 'PartNumber'),
        tag(p, 'Size'),
        tag(p, 'ETag')?.replace(/&quot;|&#34;/g, '"'),
      ]),
      parts.map((p, i) => [String(i + 1), String(p.length), `"${md5(p)}"`]),
    );
    assert.ok(
      listedParts.every((p) => !Number.isNaN(Date.parse(tag(p, 'LastModified') ?? ''))),
      listXml,
    );

    const completed = await send(
      await sign({ method: 'POST', key, uploadId }),
      completeXml(etags.map((e, i) => [i + 1, e])),
      { 'Content-Type': 'application/xml' },
    );
    const doneXml = await completed.text();
    assert.equal(completed.status, 200, doneXml);
    assert.match(doneXml, /<CompleteMultipartUploadResult[^>]*>/);
    assert.equal(tag(doneXml, 'Key'), key);
    // Ceph (16) leaves the ETag of its own Complete answer empty; Wharf's endpoint gives S3's.
    if (!storesOnS3) assert.equal(tag(doneXml, 'ETag')?.replace(/&quot;|&#34;/g, '"'), compositeETag(parts));
    assert.ok(tag(doneXml, 'Location')?.includes(key.split('/').at(-1)!), doneXml);
    assert.ok(tag(doneXml, 'Bucket'));

    // On S3 the bucket tells Wharf nothing: the reconcile job finds the object.
    if (storesOnS3) await w.wharf.core.uploads.reconcile();
    const state = await api(w.url, w.key, 'GET', `/v1/uploads/${wharfUpload}`);
    assert.equal(state.body.status, 'completed', JSON.stringify(state.body));
    const asset = await api(w.url, w.key, 'GET', `/v1/assets/${state.body.asset_id}`);
    assert.equal(asset.body.sha256, sha256Hex(Buffer.concat(parts)));
  });

  test('S3’s refusals: parts out of order, a wrong ETag, a malformed list, a wrong Content-MD5', async () => {
    const { key, uploadId } = await create();
    const first = await putPart(key, uploadId, 1, randomBytes(PART));
    // Both full-size: which refusal comes first for a small part differs between servers.
    const second = await putPart(key, uploadId, 2, randomBytes(PART));
    const [e1, e2] = [first.headers.get('etag')!, second.headers.get('etag')!];
    const complete = await sign({ method: 'POST', key, uploadId });

    // Ceph (16) composes an out-of-order list rather than refusing it; Wharf's endpoint
    // refuses as S3 does (and Wharf's own completion checks the order before storage sees it).
    if (!storesOnS3) {
      const outOfOrder = await send(
        complete,
        completeXml([
          [2, e2],
          [1, e1],
        ]),
      );
      assert.equal(outOfOrder.status, 400);
      assert.equal(await errorCode(outOfOrder), 'InvalidPartOrder');
    }
    const wrongTag = await send(
      complete,
      completeXml([
        [1, e1],
        [2, `"${'0'.repeat(32)}"`],
      ]),
    );
    assert.equal(wrongTag.status, 400);
    assert.equal(await errorCode(wrongTag), 'InvalidPart');
    const malformed = await send(complete, '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>');
    assert.equal(malformed.status, 400);
    assert.equal(await errorCode(malformed), 'MalformedXML');

    const body = randomBytes(1000);
    const badDigest = await putPart(key, uploadId, 3, body, {
      'Content-MD5': createHash('md5').update('x').digest('base64'),
    });
    assert.equal(badDigest.status, 400);
    assert.equal(await errorCode(badDigest), 'BadDigest');

    // Still open after every refusal: the right list completes it.
    const done = await send(
      complete,
      completeXml([
        [1, e1],
        [2, e2],
      ]),
    );
    assert.equal(done.status, 200, await done.text());
  });

  test('embedded: a part is checked against its x-amz-checksum-*; a refused one keeps the part it would replace', {
    skip: storesOnS3 && "Wharf's own storage endpoint; this server stores on S3 and has none",
  }, async () => {
    const { key, uploadId, wharfUpload } = await create();
    const first = randomBytes(PART);
    const second = randomBytes(70_000);
    const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('base64');
    const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('base64');
    const crc = (b: Buffer) =>
      Buffer.from(Uint32Array.of(crc32(b)).buffer)
        .reverse()
        .toString('base64');
    const good = await putPart(key, uploadId, 1, first, {
      'x-amz-checksum-sha256': sha256(first),
      'x-amz-checksum-crc32': crc(first),
    });
    assert.equal(good.status, 200, await good.clone().text());
    const etag = good.headers.get('etag')!;

    // Each with a checksum of other bytes, replacing part 1: refused, part 1 stays as it was.
    const other = randomBytes(PART);
    for (const [name, value] of [
      ['x-amz-checksum-sha256', sha256(first)],
      ['x-amz-checksum-crc32', crc(first)],
      ['x-amz-checksum-sha1', sha1(first)],
    ] as const) {
      const refused = await putPart(key, uploadId, 1, other, { [name]: value });
      assert.equal(refused.status, 400, name);
      assert.equal(await errorCode(refused), 'BadDigest', name);
    }
    const unknown = await putPart(key, uploadId, 1, other, { 'x-amz-checksum-xxhash3': 'AAAAAAAAAAA=' });
    assert.equal(unknown.status, 400);
    assert.equal(await errorCode(unknown), 'InvalidRequest');

    const last = await putPart(key, uploadId, 2, second, { 'x-amz-checksum-sha1': sha1(second) });
    assert.equal(last.status, 200, await last.clone().text());
    const done = await send(
      await sign({ method: 'POST', key, uploadId }),
      completeXml([
        [1, etag],
        [2, last.headers.get('etag')!],
      ]),
    );
    assert.equal(done.status, 200, await done.text());
    const state = await api(w.url, w.key, 'GET', `/v1/uploads/${wharfUpload}`);
    assert.equal(state.body.status, 'completed', JSON.stringify(state.body));
    const asset = await api(w.url, w.key, 'GET', `/v1/assets/${state.body.asset_id}`);
    assert.equal(asset.body.sha256, sha256Hex(Buffer.concat([first, second])));
  });

  test('a URL for one part does not store another part, nor into another upload', async () => {
    const { key, uploadId } = await create();
    const signed = await sign({ method: 'PUT', key, uploadId, partNumber: 1 });
    const url = new URL(signed.url);
    url.searchParams.set('partNumber', '2');
    const otherPart = await fetch(url, { method: 'PUT', body: 'x' });
    assert.equal(otherPart.status, 403);
    assert.equal(await errorCode(otherPart), 'SignatureDoesNotMatch');
    const abort = await sign({ method: 'DELETE', key, uploadId });
    const res = await send(abort);
    assert.equal(res.status, 204, await res.text());
  });

  // These probe Wharf's own endpoint; a bucket has its own limits.
  test('embedded: a Complete sent twice at once, or retried after it succeeded, answers as the first did', {
    skip: storesOnS3 && 'Wharf’s own storage endpoint; on S3 the bucket answers Complete itself',
  }, async () => {
    const { key, uploadId, wharfUpload } = await create();
    const parts = [randomBytes(PART), randomBytes(1000)];
    const etags: string[] = [];
    for (const [i, part] of parts.entries()) {
      const res = await putPart(key, uploadId, i + 1, part);
      assert.equal(res.status, 200);
      etags.push(res.headers.get('etag') ?? '');
    }
    const body = completeXml(etags.map((e, i) => [i + 1, e]));
    const signed = await sign({ method: 'POST', key, uploadId });
    const completeOnce = async () => {
      const res = await send(signed, body, { 'Content-Type': 'application/xml' });
      return { status: res.status, xml: await res.text() };
    };
    const answers = [...(await Promise.all([completeOnce(), completeOnce()])), await completeOnce()];
    for (const { status, xml } of answers) {
      assert.equal(status, 200, xml);
      assert.equal(tag(xml, 'ETag')?.replace(/&quot;|&#34;/g, '"'), compositeETag(parts));
    }
    const state = await api(w.url, w.key, 'GET', `/v1/uploads/${wharfUpload}`);
    assert.equal(state.body.status, 'completed');
    const asset = await api(w.url, w.key, 'GET', `/v1/assets/${state.body.asset_id}`);
    assert.equal(asset.body.sha256, sha256Hex(Buffer.concat(parts)));
  });

  test('embedded: Complete bodies over the cap, parts without a length, unsigned requests', {
    skip: storesOnS3,
  }, async () => {
    const { key, uploadId } = await create();
    const complete = await sign({ method: 'POST', key, uploadId });
    const huge = `<CompleteMultipartUpload>${' '.repeat(3 * 1024 * 1024)}</CompleteMultipartUpload>`;
    const tooBig = await send(complete, huge);
    assert.equal(tooBig.status, 400);
    assert.equal(await errorCode(tooBig), 'MalformedXML');

    const part = await sign({ method: 'PUT', key, uploadId, partNumber: 1 });
    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        part.url,
        { method: 'PUT', headers: { 'Transfer-Encoding': 'chunked' } },
        (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.end('abc');
    });
    assert.equal(chunked.status, 411, chunked.body);
    assert.equal(tag(chunked.body, 'Code'), 'MissingContentLength');

    const unsigned = await fetch(`${w.url}/s3/wharf/${key}?uploadId=${uploadId}`);
    assert.equal(unsigned.status, 400);
    assert.equal(await errorCode(unsigned), 'AuthorizationQueryParametersError');
    const noQuery = await fetch(`${w.url}/s3/wharf/${key}`, { method: 'DELETE' });
    assert.equal(noQuery.status, 403);
    assert.equal(await errorCode(noQuery), 'AccessDenied');
  });

  // On S3 the bucket takes the bytes and Wharf refuses them later, when it finds the object.
  test('embedded: the token’s and the account’s refusals are S3 4xx errors, never a retryable 500', {
    skip: storesOnS3,
  }, async () => {
    const mint = async (body: Record<string, unknown>, key = w.key) => {
      const res = await api(w.url, key, 'POST', '/v1/upload-tokens', body);
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.secret as string;
    };
    const expectRefused = async (res: Response, status: number, code: string, label: string) => {
      const xml = await res.text();
      assert.equal(res.status, status, `${label}: ${xml}`);
      assert.equal(tag(xml, 'Code'), code, `${label}: ${xml}`);
    };

    // Uppy's PutObject is signed without a size: the token's budget is found spent on arrival.
    const budget = await mint({ max_bytes: 100 });
    const put = await sign(
      { method: 'PUT', key: 'big.bin', contentType: 'application/octet-stream' },
      budget,
    );
    await expectRefused(await send(put, randomBytes(500)), 403, 'QuotaExceeded', 'PutObject over max_bytes');

    // A multipart upload's parts are held as they arrive: the part that passes the budget is refused.
    const multipart = await create('application/octet-stream', budget);
    await expectRefused(
      await putPart(multipart.key, multipart.uploadId, 1, randomBytes(500), {}, budget),
      403,
      'QuotaExceeded',
      'UploadPart over max_bytes',
    );

    // Uppy signs CreateMultipartUpload without a type; the type sent with it is the file's.
    const images = await mint({ content_types: ['image/*'] });
    const html = await create(null, images, { 'Content-Type': 'text/html' });
    const page = await putPart(html.key, html.uploadId, 1, Buffer.from('<html></html>'), {}, images);
    assert.equal(page.status, 200, await page.text());
    const completeHtml = await sign({ method: 'POST', key: html.key, uploadId: html.uploadId }, images);
    await expectRefused(
      await send(completeHtml, completeXml([[1, page.headers.get('etag')!]])),
      403,
      'AccessDenied',
      'Complete of a type the token refuses',
    );
    const failed = await api(w.url, w.key, 'GET', `/v1/uploads/${html.wharfUpload}`);
    assert.equal(failed.body.asset_id, null, JSON.stringify(failed.body));

    const account = await w.newAccount();
    await w.wharf.core.keys.updateAccount(account.accountId, { storageQuota: 50 });
    const overQuota = await sign(
      { method: 'PUT', key: 'q.bin', contentType: 'application/octet-stream' },
      account.key,
    );
    await expectRefused(
      await send(overQuota, randomBytes(500)),
      403,
      'QuotaExceeded',
      'PutObject over the quota',
    );
  });

  // On S3 the parts go to the bucket, and Wharf learns of them only when the upload completes.
  describe('embedded: the parts of a file of unknown size are held as they arrive', {
    skip: storesOnS3,
  }, () => {
    const accountUsage = async (key: string) => {
      const res = await api(w.url, key, 'GET', '/v1/account');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const { bytes_used, bytes_reserved } = res.body.usage;
      return { used: bytes_used as number, reserved: bytes_reserved as number };
    };
    const mint = async (key: string, body: Record<string, unknown>) => {
      const res = await api(w.url, key, 'POST', '/v1/upload-tokens', body);
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return { id: res.body.token.id as string, secret: res.body.secret as string };
    };
    const tokenUsage = async (key: string, id: string) => {
      const res = await api(w.url, key, 'GET', `/v1/upload-tokens/${id}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const { bytes_used, bytes_reserved, files_reserved } = res.body.usage;
      return {
        used: bytes_used as number,
        reserved: bytes_reserved as number,
        files: files_reserved as number,
      };
    };
    const expectQuotaExceeded = async (res: Response, label: string) => {
      const xml = await res.text();
      assert.equal(res.status, 403, `${label}: ${xml}`);
      assert.equal(tag(xml, 'Code'), 'QuotaExceeded', `${label}: ${xml}`);
    };
    const partFiles = (uploadId: string) => filesUnder(join(w.dataDir, 'blobs', 'multipart', uploadId));

    test("against the account's quota: the part that passes it is refused and leaves no file; an abort gives the hold back", async () => {
      const account = await w.newAccount();
      await w.wharf.core.keys.updateAccount(account.accountId, { storageQuota: 1000 });
      const { key, uploadId, wharfUpload } = await create('application/octet-stream', account.key);
      const put = (n: number, bytes: number) =>
        putPart(key, uploadId, n, randomBytes(bytes), {}, account.key);

      for (const [n, bytes, held] of [
        [1, 400, 400],
        [2, 400, 800],
        // A part sent again replaces the one before: counted once, at its new size.
        [1, 500, 900],
      ] as const) {
        const res = await put(n, bytes);
        assert.equal(res.status, 200, await res.text());
        assert.deepEqual(await accountUsage(account.key), { used: 0, reserved: held }, `after part ${n}`);
      }
      await expectQuotaExceeded(await put(3, 200), 'a part past the quota');
      assert.deepEqual(await partFiles(uploadId), ['1', '2', 'manifest.json'], 'part 3 stored nothing');
      assert.deepEqual(await tmpFiles(w), []);
      assert.deepEqual(await accountUsage(account.key), { used: 0, reserved: 900 });
      // What is left still fits.
      const fits = await put(3, 100);
      assert.equal(fits.status, 200, await fits.text());
      assert.deepEqual(await accountUsage(account.key), { used: 0, reserved: 1000 });

      const aborted = await send(await sign({ method: 'DELETE', key, uploadId }, account.key));
      assert.equal(aborted.status, 204, await aborted.text());
      assert.deepEqual(await accountUsage(account.key), { used: 0, reserved: 0 });
      const state = await api(w.url, account.key, 'GET', `/v1/uploads/${wharfUpload}`);
      assert.equal(state.body.status, 'expired', JSON.stringify(state.body));
    });

    test("against a token's max_bytes: the part that passes it is refused; a cancel gives the hold back", async () => {
      const account = await w.newAccount();
      // Room for two parts (/v1/s3/sign signs no part number a file within it cannot have).
      const token = await mint(account.key, { max_files: 5, max_bytes: PART + 1000 });
      const { key, uploadId, wharfUpload } = await create('application/octet-stream', token.secret);
      const first = await putPart(key, uploadId, 1, randomBytes(PART), {}, token.secret);
      assert.equal(first.status, 200, await first.text());
      assert.deepEqual(await tokenUsage(account.key, token.id), { used: 0, reserved: PART, files: 1 });
      assert.deepEqual(await accountUsage(account.key), { used: 0, reserved: PART });

      await expectQuotaExceeded(
        await putPart(key, uploadId, 2, randomBytes(1001), {}, token.secret),
        'a part past max_bytes',
      );
      assert.deepEqual(await partFiles(uploadId), ['1', 'manifest.json'], 'part 2 stored nothing');
      assert.deepEqual(await tokenUsage(account.key, token.id), { used: 0, reserved: PART, files: 1 });

      const cancelled = await api(w.url, token.secret, 'DELETE', `/v1/uploads/${wharfUpload}`);
      assert.equal(cancelled.status, 204, JSON.stringify(cancelled.body));
      assert.deepEqual(await tokenUsage(account.key, token.id), { used: 0, reserved: 0, files: 0 });
      assert.deepEqual(await accountUsage(account.key), { used: 0, reserved: 0 });
    });

    test('an upload that fits completes: the file is used, nothing stays held', async () => {
      const account = await w.newAccount();
      const size = PART + 500;
      await w.wharf.core.keys.updateAccount(account.accountId, { storageQuota: size + 100 });
      const token = await mint(account.key, { max_files: 5, max_bytes: size + 100 });
      const { key, uploadId, wharfUpload } = await create('application/octet-stream', token.secret);
      const parts = [randomBytes(PART), randomBytes(500)];
      const etags: string[] = [];
      for (const [i, part] of parts.entries()) {
        const res = await putPart(key, uploadId, i + 1, part, {}, token.secret);
        assert.equal(res.status, 200, await res.text());
        etags.push(res.headers.get('etag') ?? '');
      }
      assert.deepEqual(await accountUsage(account.key), { used: 0, reserved: size });
      assert.deepEqual(await tokenUsage(account.key, token.id), { used: 0, reserved: size, files: 1 });

      const completed = await send(
        await sign({ method: 'POST', key, uploadId }, token.secret),
        completeXml(etags.map((e, i) => [i + 1, e])),
      );
      assert.equal(completed.status, 200, await completed.text());
      const state = await api(w.url, account.key, 'GET', `/v1/uploads/${wharfUpload}`);
      assert.equal(state.body.status, 'completed', JSON.stringify(state.body));
      assert.deepEqual(await accountUsage(account.key), { used: size, reserved: 0 });
      assert.deepEqual(await tokenUsage(account.key, token.id), { used: size, reserved: 0, files: 0 });
    });
  });
});

/**
 * A part larger than the file limit (WHARF_MAX_FILE_SIZE) can never complete into an asset: the
 * embedded endpoint refuses it from its Content-Length, before a byte is stored, as S3 refuses a
 * part over 5 GiB. On S3 the parts go straight to the bucket (a URL cannot bound a part's size),
 * and a file too large is refused at completion.
 */
describe('embedded: a part larger than WHARF_MAX_FILE_SIZE is EntityTooLarge, and nothing is stored', {
  skip: storesOnS3 && 'parts go straight to the bucket',
}, () => {
  let w: TestWharf;
  before(async () => {
    w = await startWharf({ env: { WHARF_MAX_FILE_SIZE: '1000' } });
  });
  after(() => w?.close());
  const partFiles = (uploadId: string) => filesUnder(join(w.dataDir, 'blobs', 'multipart', uploadId));
  const expectTooLarge = async (res: Response, limit: number) => {
    const xml = await res.text();
    assert.equal(res.status, 400, xml);
    assert.match(xml, /<Code>EntityTooLarge<\/Code>/);
    assert.match(
      xml,
      new RegExp(`<ProposedSize>1001</ProposedSize><MaxSizeAllowed>${limit}</MaxSizeAllowed>`),
    );
  };

  test('S3 UploadPart of a file of unknown size (/v1/s3/sign)', async () => {
    const sign = async (body: Record<string, unknown>) => {
      const res = await api(w.url, w.key, 'POST', '/v1/s3/sign', body);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body as { url: string; method: string; key: string; headers: Record<string, string> };
    };
    const send = (signed: { url: string; method: string; headers: Record<string, string> }, body?: Buffer) =>
      fetch(signed.url, {
        method: signed.method,
        headers: signed.headers,
        body: body && new Uint8Array(body),
      });
    const created = await sign({ method: 'POST', key: 'big.bin', contentType: 'application/octet-stream' });
    const xml = await (await send(created)).text();
    const uploadId = /<UploadId>([^<]*)<\/UploadId>/.exec(xml)?.[1];
    assert.ok(uploadId, xml);
    const part = await sign({ method: 'PUT', key: created.key, uploadId, partNumber: 1 });
    await expectTooLarge(await send(part, randomBytes(1001)), 1000);
    assert.deepEqual(await partFiles(uploadId), ['manifest.json'], 'no part stored');
    assert.deepEqual(await tmpFiles(w), []);
    // One that fits is taken.
    const fits = await send(part, randomBytes(1000));
    assert.equal(fits.status, 200, await fits.text());
  });

  test('a part of the native API (/v1/multipart), over its declared size', async () => {
    const started = await api(w.url, w.key, 'POST', '/v1/multipart', { name: 'n.bin', size: 1000 });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const id = started.body.id as string;
    const signed = await api(w.url, w.key, 'POST', `/v1/multipart/${id}/parts`, { partNumbers: [1] });
    const [part] = signed.body.parts as Array<{ url: string; headers: Record<string, string> }>;
    const res = await fetch(part!.url, { method: 'PUT', headers: part!.headers, body: new Uint8Array(1001) });
    await expectTooLarge(res, 1000);
    const listed = await api(w.url, w.key, 'GET', `/v1/multipart/${id}/parts`);
    assert.deepEqual(listed.body, [], 'no part stored');
    assert.deepEqual(await tmpFiles(w), []);
  });
});

describe('the storage endpoint’s S3 errors', () => {
  test('every refusal of the core reads as an S3 error that is not a 500; only failures of Wharf’s are', () => {
    for (const [code, status] of Object.entries(ERROR_STATUS)) {
      const s3 = S3_ERRORS[code as ErrorCode];
      assert.ok(s3, `${code} has no S3 error`);
      const answer = `${code} (${status}) answers ${s3.status} ${s3.code}`;
      // A refusal may become S3's "slow down" (503) where the core says "too many" (429).
      if (status < 500) assert.ok(s3.status < 500 || (status === 429 && s3.code === 'SlowDown'), answer);
      else assert.ok(s3.status >= 500, answer);
      assert.equal(s3.code === 'InternalError' || s3.status === 500, status === 500, answer);
    }
  });

  test('the reference names every S3 error code the endpoint answers', async () => {
    const reference = await readFile(new URL('../../docs/reference.md', import.meta.url), 'utf8');
    const paragraph = reference.slice(reference.indexOf('The storage endpoint (`/s3/…`'));
    for (const code of new Set([...Object.values(S3_ERRORS).map((e) => e.code), 'MalformedXML'])) {
      assert.ok(paragraph.includes(`\`${code}\``), `${code} is not in docs/reference.md`);
    }
  });
});
