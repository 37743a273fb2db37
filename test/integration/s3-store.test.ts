import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createS3Client, type S3Options } from '../../src/blobs/s3-client.js';
import { S3BlobStore } from '../../src/blobs/s3-store.js';
import { isWharfError, WharfError } from '../../src/core/errors.js';
import type { PresignPostRequest, PresignPutRequest } from '../../src/core/ports.js';
import { curl } from '../helpers/curl.js';

const endpoint = process.env.WHARF_TEST_S3_ENDPOINT;
const skip = endpoint ? false : 'needs an S3 server: run via scripts/test.sh';

const MiB = 1024 * 1024;
const PART = 5 * MiB;
const HOUR = 3600_000;

const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function drain(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** `total` bytes in 1 MiB chunks, each a function of the offset, so nothing large is held. */
function generated(total: number, pause?: { after: number; until: Promise<void>; fail: Error }) {
  return Readable.from(
    (async function* () {
      for (let offset = 0; offset < total; offset += MiB) {
        if (pause && offset >= pause.after) {
          await pause.until;
          throw pause.fail;
        }
        yield Buffer.alloc(Math.min(MiB, total - offset), offset / MiB);
      }
    })(),
  );
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let attempt = 0; attempt < 300; attempt++) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe('S3BlobStore against a real S3 server', { skip }, () => {
  const options: S3Options = {
    endpoint,
    region: process.env.WHARF_TEST_S3_REGION ?? 'us-east-1',
    bucket: `wharf-store-${randomBytes(6).toString('hex')}`,
    accessKeyId: process.env.WHARF_TEST_S3_ACCESS_KEY_ID ?? '',
    secretAccessKey: process.env.WHARF_TEST_S3_SECRET_ACCESS_KEY ?? '',
    forcePathStyle: true,
  };
  let store: S3BlobStore;
  // The test's own look at the bucket, independent of the store under test.
  let s3: S3Client;
  let dir: string;

  const keys = async (prefix: string) =>
    (
      (await s3.send(new ListObjectsV2Command({ Bucket: options.bucket, Prefix: prefix }))).Contents ?? []
    ).map((o) => o.Key);
  const openUploads = async (prefix?: string) =>
    (
      (await s3.send(new ListMultipartUploadsCommand({ Bucket: options.bucket, Prefix: prefix }))).Uploads ??
      []
    ).map((u) => u.Key);

  before(async () => {
    store = new S3BlobStore({ ...options, partSize: PART, queueSize: 2, directDownloads: true });
    s3 = createS3Client(options);
    await store.ensureBucket();
    // A second call finds the bucket there.
    await store.ensureBucket();
    dir = await mkdtemp(join(tmpdir(), 'wharf-s3-test-'));
  });

  after(async () => {
    if (!s3) return;
    for (const upload of (await s3.send(new ListMultipartUploadsCommand({ Bucket: options.bucket })))
      .Uploads ?? []) {
      await s3.send(
        new AbortMultipartUploadCommand({
          Bucket: options.bucket,
          Key: upload.Key,
          UploadId: upload.UploadId,
        }),
      );
    }
    for (const key of await keys('')) {
      await s3.send(new DeleteObjectCommand({ Bucket: options.bucket, Key: key }));
    }
    await s3.send(new DeleteBucketCommand({ Bucket: options.bucket }));
    s3.destroy();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('write, head, read, delete', () => {
    test('a small object: head gives its size and MD5; reads and ranges return its bytes', async () => {
      const body = randomBytes(1000);
      const key = 'objects/small file.bin';
      let sealed = 0;
      await store.write(key, Readable.from([body.subarray(0, 300), body.subarray(300)]), () => {
        sealed += 1;
        return { size: body.length };
      });
      assert.equal(sealed, 1);
      const info = await store.head(key);
      assert.equal(info?.size, 1000);
      assert.equal(info?.md5, md5(body));
      assert.deepEqual(await drain(await store.read(key)), body);
      assert.deepEqual(await drain(await store.read(key, { start: 10, end: 19 })), body.subarray(10, 20));
      assert.deepEqual(await drain(await store.read(key, { start: 999, end: 999 })), body.subarray(999));

      await store.delete(key);
      assert.equal(await store.head(key), undefined);
      assert.deepEqual(await keys(key), []);
      await store.delete(key);
    });

    test('head of a missing key is undefined', async () => {
      assert.equal(await store.head('objects/never-written'), undefined);
    });

    test('a body larger than a part goes up in parts; its ETag is no MD5, so head gives none', async () => {
      const total = 2 * PART + 123;
      const key = 'objects/large.bin';
      await store.write(key, generated(total), () => ({ size: total }));
      const info = await store.head(key);
      assert.equal(info?.size, total);
      assert.equal(info?.md5, undefined);
      assert.equal(sha256(await drain(await store.read(key))), sha256(await drain(generated(total))));
      assert.deepEqual(await openUploads(key), []);
      await store.delete(key);
    });

    test('an empty body is an empty object', async () => {
      const key = 'objects/empty';
      await store.write(key, Readable.from([]), () => ({ size: 0 }));
      assert.equal((await store.head(key))?.size, 0);
      assert.deepEqual(await drain(await store.read(key)), Buffer.alloc(0));
      await store.delete(key);
    });
  });

  describe('nothing half-written stays', () => {
    for (const [label, size] of [
      ['a single-part body', 1000],
      ['a multipart body', PART + 1000],
    ] as const) {
      test(`seal refusing ${label} leaves no object`, async () => {
        const key = `refused/${size}`;
        await assert.rejects(
          store.write(key, generated(size), () => {
            throw new WharfError('CHECKSUM_MISMATCH', 'not what was declared');
          }),
          (err: unknown) => isWharfError(err, 'CHECKSUM_MISMATCH'),
        );
        assert.equal(await store.head(key), undefined);
        assert.deepEqual(await keys(key), []);
        assert.deepEqual(await openUploads(key), []);
      });
    }

    test('a stream that fails midway aborts its multipart upload and leaves no object', async () => {
      const key = 'aborted/midway.bin';
      let resume!: () => void;
      const paused = new Promise<void>((resolve) => {
        resume = resolve;
      });
      const failure = new Error('client went away');
      let sealed = false;
      const writing = store.write(
        key,
        generated(4 * PART, { after: PART + MiB, until: paused, fail: failure }),
        () => {
          sealed = true;
          return { size: 0 };
        },
      );
      // The multipart upload really exists before the stream fails.
      await until('the multipart upload to start', async () =>
        (await openUploads(key)).includes(key) ? true : undefined,
      );
      resume();
      await assert.rejects(writing, (err) => err === failure);
      assert.equal(sealed, false);
      assert.deepEqual(await openUploads(key), []);
      assert.equal(await store.head(key), undefined);
      assert.deepEqual(await keys(key), []);
    });

    test('a stream that fails before a part is full leaves nothing', async () => {
      const key = 'aborted/early.bin';
      const failure = new Error('client went away');
      await assert.rejects(
        store.write(key, generated(PART, { after: MiB, until: Promise.resolve(), fail: failure }), () => ({
          size: 0,
        })),
        (err) => err === failure,
      );
      assert.deepEqual(await openUploads(key), []);
      assert.deepEqual(await keys(key), []);
    });

    test('sweepIncomplete aborts multipart uploads started before the cut-off, not later ones', async () => {
      const key = 'debris/left-by-a-crash';
      await s3.send(new CreateMultipartUploadCommand({ Bucket: options.bucket, Key: key }));
      assert.equal(await store.sweepIncomplete(Date.now() - HOUR), 0);
      assert.deepEqual(await openUploads(key), [key]);
      assert.equal(await store.sweepIncomplete(Date.now() + HOUR), 1);
      assert.deepEqual(await openUploads(), []);
    });
  });

  describe('presigned PUT: the object store enforces what the URL binds', () => {
    const body = Buffer.from('The bytes a client was allowed to upload.\n');
    let file: string;
    before(async () => {
      file = join(dir, 'put-body.txt');
      await writeFile(file, body);
    });

    const presign = (key: string, extra: Partial<PresignPutRequest> = {}) =>
      store.presignPut({
        key,
        contentType: 'text/plain',
        size: body.length,
        md5: md5(body),
        sha256: sha256(body),
        expiresInSeconds: 600,
        now: Date.now(),
        ...extra,
      });

    async function put(url: string, headers: Record<string, string>, path = file) {
      const args = Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
      return curl(['-X', 'PUT', ...args, '--data-binary', `@${path}`, url]);
    }

    test('a good PUT with every bound header succeeds and stores the bytes', async () => {
      const key = 'put/good.txt';
      const { method, url, headers } = await presign(key);
      assert.equal(method, 'PUT');
      const res = await put(url, headers);
      assert.equal(res.status, 200, res.body);
      const info = await store.head(key);
      assert.equal(info?.size, body.length);
      assert.equal(info?.md5, md5(body));
      assert.equal(info?.contentType, 'text/plain');
      assert.deepEqual(await drain(await store.read(key)), body);
    });

    test('the URL writes once: a second PUT is refused (412) and the first bytes stay', async () => {
      const key = 'put/once.txt';
      const { url, headers } = await presign(key, { md5: null, sha256: null });
      assert.equal((await put(url, headers)).status, 200);
      const other = join(dir, 'same-size-other-bytes.txt');
      await writeFile(other, Buffer.alloc(body.length, 'x'));
      const again = await put(url, headers, other);
      assert.equal(again.status, 412);
      assert.match(again.body, /<Code>PreconditionFailed<\/Code>/);
      assert.deepEqual(await drain(await store.read(key)), body);
      // Leaving the condition out breaks the signature instead.
      const { 'If-None-Match': _dropped, ...rest } = headers;
      assert.equal((await put(url, rest, other)).status, 403);
      assert.deepEqual(await drain(await store.read(key)), body);
    });

    test('a tampered signature is refused (403)', async () => {
      const key = 'put/tampered.txt';
      const { url, headers } = await presign(key);
      const signed = new URL(url);
      const signature = signed.searchParams.get('X-Amz-Signature') ?? '';
      signed.searchParams.set('X-Amz-Signature', `${signature[0] === '0' ? '1' : '0'}${signature.slice(1)}`);
      const res = await put(signed.toString(), headers);
      assert.equal(res.status, 403);
      assert.match(res.body, /<Code>SignatureDoesNotMatch<\/Code>/);
      assert.equal(await store.head(key), undefined);
    });

    test('an expired URL is refused (403)', async () => {
      const key = 'put/expired.txt';
      const { url, headers } = await presign(key, { now: Date.now() - HOUR, expiresInSeconds: 60 });
      const res = await put(url, headers);
      assert.equal(res.status, 403);
      assert.match(res.body, /<Code>AccessDenied<\/Code>/);
      assert.equal(await store.head(key), undefined);
    });

    test('another Content-Type is refused (403)', async () => {
      const key = 'put/type.txt';
      const { url, headers } = await presign(key);
      const res = await put(url, { ...headers, 'Content-Type': 'text/html' });
      assert.equal(res.status, 403);
      assert.match(res.body, /<Code>SignatureDoesNotMatch<\/Code>/);
      assert.equal(await store.head(key), undefined);
    });

    test('another size is refused (403)', async () => {
      const key = 'put/size.txt';
      const { url, headers } = await presign(key, { size: body.length + 1, md5: null, sha256: null });
      const res = await put(url, headers);
      assert.equal(res.status, 403);
      assert.match(res.body, /<Code>SignatureDoesNotMatch<\/Code>/);
      assert.equal(await store.head(key), undefined);
    });

    test('leaving out the bound SHA-256 header is refused (403)', async () => {
      const key = 'put/no-checksum.txt';
      const { url, headers } = await presign(key);
      const { 'x-amz-checksum-sha256': _dropped, ...rest } = headers;
      const res = await put(url, rest);
      assert.equal(res.status, 403);
      assert.match(res.body, /<Code>SignatureDoesNotMatch<\/Code>/);
      assert.equal(await store.head(key), undefined);
    });

    test('bytes that do not match the bound Content-MD5 are refused (400 BadDigest)', async () => {
      const key = 'put/md5.txt';
      const other = Buffer.from(body);
      other[0] = other[0]! ^ 1;
      // The URL binds the MD5 of other bytes of the same length and type.
      const { url, headers } = await presign(key, { md5: md5(other), sha256: null });
      const res = await put(url, headers);
      assert.equal(res.status, 400);
      assert.match(res.body, /<Code>BadDigest<\/Code>/);
      assert.equal(await store.head(key), undefined);
    });
  });

  describe('presigned POST: the object store enforces the policy', () => {
    const body = Buffer.from('A browser form upload.\n');
    let file: string;
    before(async () => {
      file = join(dir, 'post-body.txt');
      await writeFile(file, body);
    });

    const presign = (key: string, extra: Partial<PresignPostRequest> = {}) =>
      store.presignPost({
        key,
        contentType: 'text/plain',
        minSize: 0,
        maxSize: 1000,
        expiresInSeconds: 600,
        now: Date.now(),
        ...extra,
      });

    /** curl -F, the fields first and the file last, as a browser form sends them. */
    async function post(url: string, fields: Record<string, string>, path = file) {
      const args = Object.entries(fields).flatMap(([name, value]) => ['--form-string', `${name}=${value}`]);
      return curl([...args, '-F', `file=@${path};type=${fields['Content-Type'] ?? 'text/plain'}`, url]);
    }

    test('a good form upload succeeds and stores the bytes', async () => {
      const key = 'post/good.txt';
      const { url, fields } = await presign(key);
      const res = await post(url, fields);
      assert.ok(res.status === 204 || res.status === 200 || res.status === 201, `${res.status} ${res.body}`);
      assert.equal((await store.head(key))?.size, body.length);
      assert.deepEqual(await drain(await store.read(key)), body);
    });

    test('a file above the size range is refused (400 EntityTooLarge)', async () => {
      const key = 'post/large.txt';
      const { url, fields } = await presign(key, { maxSize: body.length - 1 });
      const res = await post(url, fields);
      assert.equal(res.status, 400);
      assert.match(res.body, /<Code>EntityTooLarge<\/Code>/);
      assert.equal(await store.head(key), undefined);
    });

    test('another key than the policy names is refused (403)', async () => {
      const key = 'post/allowed.txt';
      const { url, fields } = await presign(key);
      const res = await post(url, { ...fields, key: 'post/elsewhere.txt' });
      assert.equal(res.status, 403);
      assert.equal(await store.head(key), undefined);
      assert.equal(await store.head('post/elsewhere.txt'), undefined);
    });

    test('an expired policy is refused (403)', async () => {
      const key = 'post/expired.txt';
      const { url, fields } = await presign(key, { now: Date.now() - HOUR, expiresInSeconds: 60 });
      const res = await post(url, fields);
      assert.equal(res.status, 403);
      assert.equal(await store.head(key), undefined);
    });

    test('another Content-Type than the policy names is refused (403)', async () => {
      const key = 'post/type.txt';
      const { url, fields } = await presign(key);
      const res = await post(url, { ...fields, 'Content-Type': 'text/html' });
      assert.equal(res.status, 403);
      assert.equal(await store.head(key), undefined);
    });

    test('a tampered policy signature is refused (403)', async () => {
      const key = 'post/tampered.txt';
      const { url, fields } = await presign(key);
      const signature = fields['X-Amz-Signature'] ?? '';
      const res = await post(url, {
        ...fields,
        'X-Amz-Signature': `${signature[0] === '0' ? '1' : '0'}${signature.slice(1)}`,
      });
      assert.equal(res.status, 403);
      assert.equal(await store.head(key), undefined);
    });
  });

  describe('presigned GET (downloads redirected to storage)', () => {
    test('serves the bytes with the signed type and disposition; a tampered URL is refused', async () => {
      const key = 'get/page.html';
      const body = Buffer.from('<script>alert(1)</script>');
      await store.write(key, Readable.from([body]), () => ({ size: body.length }));
      const url = await store.presignGet!(key, {
        contentType: 'text/html',
        disposition: 'attachment; filename="page.html"',
        expiresInSeconds: 60,
        now: Date.now(),
      });
      const res = await curl([url]);
      assert.equal(res.status, 200);
      assert.equal(res.body, body.toString());
      assert.match(res.headers, /^content-type: text\/html\r?$/im);
      assert.match(res.headers, /^content-disposition: attachment; filename="page.html"\r?$/im);

      const ranged = await curl(['-H', 'Range: bytes=2-7', url]);
      assert.equal(ranged.status, 206);
      assert.equal(ranged.body, body.subarray(2, 8).toString());

      const tampered = new URL(url);
      tampered.searchParams.set('response-content-type', 'text/plain');
      assert.equal((await curl([tampered.toString()])).status, 403);
    });
  });
});
