import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { S3BlobStore } from '../../src/blobs/s3-store.js';

// Nothing is sent: presigning is local computation, so the endpoint is never contacted.
const store = new S3BlobStore({
  endpoint: 'http://127.0.0.1:9',
  region: 'us-east-1',
  bucket: 'wharf-unit',
  accessKeyId: 'AKIDUNITTEST',
  secretAccessKey: 'unit-test-secret',
  forcePathStyle: true,
  directDownloads: true,
});
after(() => store.close());

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
const MD5 = '5eb63bbbe01eeed093cb22bb8f5acdc3';
const SHA256 = 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9';

function presignPut(digests: { md5?: string; sha256?: string } = {}) {
  return store.presignPut({
    key: 'default/0193/hello world.txt',
    contentType: 'text/plain',
    size: 11,
    md5: digests.md5 ?? null,
    sha256: digests.sha256 ?? null,
    expiresInSeconds: 900,
    now: NOW,
  });
}

function checksumParams(url: string): string[] {
  return [...new URL(url).searchParams.keys()].filter((name) => /^x-amz-(sdk-)?checksum-/i.test(name));
}

function signedHeaders(url: string): string[] {
  return (new URL(url).searchParams.get('X-Amz-SignedHeaders') ?? '').split(';');
}

describe('S3BlobStore.presignPut', () => {
  for (const [label, digests] of [
    ['no digests', {}],
    ['an MD5', { md5: MD5 }],
    ['a SHA-256', { sha256: SHA256 }],
    ['both digests', { md5: MD5, sha256: SHA256 }],
  ] as const) {
    test(`with ${label}, the URL carries no x-amz-(sdk-)checksum-* parameter`, async () => {
      // The SDK's default puts the CRC32 of an empty body there, which AWS S3, R2 and
      // MinIO then hold against the real body.
      const { url } = await presignPut(digests);
      assert.deepEqual(checksumParams(url), []);
    });
  }

  test('type, size and write-once are signed headers; the client is told all but the length', async () => {
    const { method, url, headers } = await presignPut();
    assert.equal(method, 'PUT');
    assert.deepEqual(signedHeaders(url), ['content-length', 'content-type', 'host', 'if-none-match']);
    assert.deepEqual(headers, { 'Content-Type': 'text/plain', 'If-None-Match': '*' });
  });

  test('declared digests are signed headers the client must send', async () => {
    const { url, headers } = await presignPut({ md5: MD5, sha256: SHA256 });
    assert.deepEqual(signedHeaders(url), [
      'content-length',
      'content-md5',
      'content-type',
      'host',
      'if-none-match',
      'x-amz-checksum-sha256',
    ]);
    assert.deepEqual(headers, {
      'Content-Type': 'text/plain',
      'If-None-Match': '*',
      'Content-MD5': Buffer.from(MD5, 'hex').toString('base64'),
      'x-amz-checksum-sha256': Buffer.from(SHA256, 'hex').toString('base64'),
    });
  });

  test('the URL is the bucket’s own, path style, dated by the request’s clock', async () => {
    const url = new URL((await presignPut()).url);
    assert.equal(url.origin, 'http://127.0.0.1:9');
    assert.equal(url.pathname, '/wharf-unit/default/0193/hello%20world.txt');
    assert.equal(url.searchParams.get('X-Amz-Date'), '20260101T120000Z');
    assert.equal(url.searchParams.get('X-Amz-Expires'), '900');
  });
});

describe('S3BlobStore.presignPost', () => {
  test('the policy binds key, size range and type, and expires relative to the request’s clock', async () => {
    const { url, fields } = await store.presignPost({
      key: 'default/0193/form.png',
      contentType: 'image/png',
      minSize: 0,
      maxSize: 1000,
      expiresInSeconds: 600,
      now: NOW,
    });
    assert.equal(url, 'http://127.0.0.1:9/wharf-unit');
    assert.equal(fields.key, 'default/0193/form.png');
    assert.equal(fields['Content-Type'], 'image/png');
    assert.equal(fields['X-Amz-Date'], '20260101T120000Z');
    const policy = JSON.parse(Buffer.from(fields.Policy ?? '', 'base64').toString('utf8'));
    assert.equal(policy.expiration, '2026-01-01T12:10:00Z');
    assert.deepEqual(
      policy.conditions.filter((c: unknown) => Array.isArray(c)),
      [
        ['content-length-range', 0, 1000],
        ['eq', '$Content-Type', 'image/png'],
      ],
    );
    assert.ok(
      policy.conditions.some((c: unknown) => JSON.stringify(c) === '{"key":"default/0193/form.png"}'),
    );
  });

  test('without a bound type the form has no Content-Type field and the policy names none', async () => {
    const { fields } = await store.presignPost({
      key: 'default/0193/form.png',
      minSize: 0,
      maxSize: 1000,
      expiresInSeconds: 600,
      now: NOW,
    });
    assert.ok(!Object.keys(fields).some((name) => name.toLowerCase() === 'content-type'));
    const policy = JSON.parse(Buffer.from(fields.Policy ?? '', 'base64').toString('utf8'));
    assert.ok(!JSON.stringify(policy.conditions).toLowerCase().includes('content-type'));
  });
});

describe('S3BlobStore.presignGet', () => {
  test('the response type and disposition are signed query parameters', async () => {
    const url = new URL(
      await store.presignGet!('default/0193/a.html', {
        contentType: 'text/html',
        disposition: 'attachment; filename="a.html"',
        expiresInSeconds: 60,
        now: NOW,
      }),
    );
    assert.equal(url.searchParams.get('response-content-type'), 'text/html');
    assert.equal(url.searchParams.get('response-content-disposition'), 'attachment; filename="a.html"');
    assert.equal(url.searchParams.get('X-Amz-Expires'), '60');
    assert.deepEqual(checksumParams(url.toString()), []);
  });

  test('is absent unless downloads are redirected', () => {
    const streaming = new S3BlobStore({
      region: 'us-east-1',
      bucket: 'b',
      accessKeyId: 'a',
      secretAccessKey: 's',
      forcePathStyle: false,
    });
    assert.equal(streaming.presignGet, undefined);
    streaming.close();
  });
});

describe('S3BlobStore.presignOperation', () => {
  const UPLOAD_ID = 'upload-id-from-the-bucket';
  const operations = [
    'PutObject',
    'CreateMultipartUpload',
    'UploadPart',
    'ListParts',
    'CompleteMultipartUpload',
    'AbortMultipartUpload',
  ] as const;
  const sign = (operation: (typeof operations)[number]) =>
    store.presignOperation({
      operation,
      key: 'default/0193/big file.bin',
      contentType:
        operation === 'PutObject' || operation === 'CreateMultipartUpload' ? 'video/mp4' : undefined,
      multipartId: operation === 'PutObject' || operation === 'CreateMultipartUpload' ? undefined : UPLOAD_ID,
      partNumber: operation === 'UploadPart' ? 42 : undefined,
      expiresInSeconds: 900,
      now: NOW,
    });

  for (const operation of operations) {
    test(`${operation}: no x-amz-(sdk-)checksum-* parameter, no checksum header to send`, async () => {
      const { url, headers } = await sign(operation);
      assert.deepEqual(checksumParams(url), []);
      assert.doesNotMatch(url.toLowerCase(), /crc32|checksum/);
      assert.deepEqual(
        Object.keys(headers).filter((h) => /checksum|crc/i.test(h)),
        [],
      );
    });
  }

  test('each operation is S3’s own request: method, path and query', async () => {
    const expected: Record<(typeof operations)[number], [string, Record<string, string>]> = {
      PutObject: ['PUT', {}],
      CreateMultipartUpload: ['POST', { uploads: '' }],
      UploadPart: ['PUT', { partNumber: '42', uploadId: UPLOAD_ID }],
      ListParts: ['GET', { uploadId: UPLOAD_ID }],
      CompleteMultipartUpload: ['POST', { uploadId: UPLOAD_ID }],
      AbortMultipartUpload: ['DELETE', { uploadId: UPLOAD_ID }],
    };
    for (const operation of operations) {
      const { method, url } = await sign(operation);
      const parsed = new URL(url);
      assert.equal(method, expected[operation][0], operation);
      assert.equal(parsed.pathname, '/wharf-unit/default/0193/big%20file.bin');
      for (const [name, value] of Object.entries(expected[operation][1])) {
        assert.equal(parsed.searchParams.get(name), value, `${operation} ${name}`);
      }
      assert.equal(parsed.searchParams.get('X-Amz-Date'), '20260101T120000Z');
    }
  });

  test('PutObject signs type and write-once but not the length; the client is told both headers', async () => {
    const { url, headers } = await sign('PutObject');
    assert.deepEqual(signedHeaders(url), ['content-type', 'host', 'if-none-match']);
    assert.deepEqual(headers, { 'Content-Type': 'video/mp4', 'If-None-Match': '*' });
  });

  test('CreateMultipartUpload signs the type; part and completion requests sign only Host', async () => {
    const create = await sign('CreateMultipartUpload');
    assert.deepEqual(signedHeaders(create.url), ['content-type', 'host']);
    assert.deepEqual(create.headers, { 'Content-Type': 'video/mp4' });
    for (const operation of [
      'UploadPart',
      'ListParts',
      'CompleteMultipartUpload',
      'AbortMultipartUpload',
    ] as const) {
      const { url, headers } = await sign(operation);
      assert.deepEqual(signedHeaders(url), ['host'], operation);
      assert.deepEqual(headers, {}, operation);
    }
  });
});
