/**
 * The embedded endpoint's own SigV4 signer (QuerySigner, used by LocalEndpoint) against the
 * AWS SDK's S3RequestPresigner, the reference: for many randomised requests (keys with any
 * unicode, every combination of bound headers, expiries, dates, operations, hosts) both must
 * give the very same URL, and the endpoint's verifier (the SDK's SignatureV4) accepts it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl, S3RequestPresigner } from '@aws-sdk/s3-request-presigner';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { buildQueryString } from '@smithy/querystring-builder';
import fc from 'fast-check';
import { encodeS3Key, LocalEndpoint, type LocalEndpointOptions } from '../../src/blobs/local-endpoint.js';
import { createS3Client } from '../../src/blobs/s3-client.js';
import { S3BlobStore, type S3BlobStoreOptions } from '../../src/blobs/s3-store.js';
import { hexToBase64 } from '../../src/core/digests.js';
import type { PresignOperationRequest, PresignPutRequest, S3Operation } from '../../src/core/ports.js';

const RUNS = Number(process.env.WHARF_SIGV4_RUNS ?? 2000);

/** What LocalEndpoint did before it had its own signer: the SDK's presigner, as configured there. */
class SdkReference {
  private readonly base: URL;
  private readonly basePath: string;
  private readonly presigner: S3RequestPresigner;

  constructor(options: LocalEndpointOptions) {
    this.base = new URL(options.publicUrl);
    this.basePath = `${this.base.pathname.replace(/\/$/, '')}/s3/${options.bucket}/`;
    this.presigner = new S3RequestPresigner({
      credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
      region: options.region,
      service: 's3',
      sha256: Hash.bind(null, 'sha256'),
    });
  }

  async url(
    method: string,
    key: string,
    query: Record<string, string>,
    headers: Record<string, string>,
    signable: string[],
    unhoistable: string[],
    now: number,
    expiresIn: number,
  ): Promise<string> {
    const signed = await this.presigner.presign(
      new HttpRequest({
        method,
        protocol: this.base.protocol,
        hostname: this.base.hostname,
        port: this.base.port ? Number(this.base.port) : undefined,
        path: this.basePath + encodeS3Key(key),
        query,
        headers: { ...headers, host: this.base.host },
      }),
      {
        signingDate: new Date(now),
        expiresIn,
        signableHeaders: new Set(signable),
        unhoistableHeaders: new Set(unhoistable),
      },
    );
    return `${this.base.protocol}//${this.base.host}${signed.path}?${buildQueryString(signed.query ?? {})}`;
  }

  put(request: PresignPutRequest): Promise<string> {
    const headers: Record<string, string> = {
      'content-type': request.contentType,
      'content-length': String(request.size),
    };
    if (request.md5) headers['content-md5'] = hexToBase64(request.md5);
    if (request.sha256) headers['x-amz-checksum-sha256'] = hexToBase64(request.sha256);
    return this.url(
      'PUT',
      request.key,
      {},
      headers,
      ['content-type', 'content-length', 'content-md5', 'x-amz-checksum-sha256'],
      ['x-amz-checksum-sha256'],
      request.now,
      request.expiresInSeconds,
    );
  }

  operation(request: PresignOperationRequest, method: string, query: Record<string, string>) {
    const headers: Record<string, string> = {};
    if (request.contentType !== undefined) headers['content-type'] = request.contentType;
    return this.url(
      method,
      request.key,
      query,
      headers,
      Object.keys(headers),
      [],
      request.now,
      request.expiresInSeconds,
    );
  }
}

const hex = (length: number) =>
  fc
    .array(fc.constantFrom(...'0123456789abcdef'), { minLength: length, maxLength: length })
    .map((a) => a.join(''));
// Keys as the core makes them (account / uuid . ext) and anything else a key could hold.
const segment = fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }).filter((s) => !s.includes('/'));
const key = fc.oneof(
  fc
    .tuple(fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/), fc.uuid(), fc.stringMatching(/^(\.[a-z0-9]{1,10})?$/))
    .map(([account, id, ext]) => `${account}/${id}${ext}`),
  fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => parts.join('/')),
);
const contentType = fc.oneof(
  fc.constantFrom('application/octet-stream', 'image/png', 'text/plain; charset=utf-8', 'video/mp4'),
  fc.stringMatching(/^[a-z]{1,12}\/[a-z0-9.+-]{1,20}( ; [a-z]+=[A-Za-z0-9 ]{1,10})?$/),
);
const options = fc.record({
  publicUrl: fc.constantFrom(
    'http://127.0.0.1:8080',
    'https://files.example.com',
    'https://files.example.com/prefix/',
    'http://[::1]:3000/wharf',
  ),
  bucket: fc.constantFrom('wharf', 'b-1'),
  region: fc.constantFrom('us-east-1', 'eu-central-1'),
  accessKeyId: fc.stringMatching(/^[A-Za-z0-9-]{1,24}$/),
  secretAccessKey: fc.string({ minLength: 1, maxLength: 60 }),
});
// Any second from 2000 to 2100, with milliseconds (the signature counts whole seconds).
const now = fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2100, 0, 1) });
const expires = fc.oneof(fc.constantFrom(1, 900, 604_800), fc.integer({ min: 1, max: 604_800 }));

describe('QuerySigner (via LocalEndpoint) signs as the AWS SDK does', () => {
  test('presignPut: every combination of Content-MD5 and x-amz-checksum-sha256, any key', async () => {
    await fc.assert(
      fc.asyncProperty(
        options,
        key,
        contentType,
        fc.nat({ max: 2 ** 40 }),
        fc.option(hex(32), { nil: null }),
        fc.option(hex(64), { nil: null }),
        now,
        expires,
        async (opts, k, type, size, md5, sha256, at, expiresInSeconds) => {
          const request = { key: k, contentType: type, size, md5, sha256, expiresInSeconds, now: at };
          const ours = await new LocalEndpoint(opts).presignPut(request);
          assert.equal(ours.url, await new SdkReference(opts).put(request));
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('presignOperation: every S3 operation, part numbers and upload ids', async () => {
    const operation = fc.constantFrom<S3Operation>(
      'PutObject',
      'CreateMultipartUpload',
      'UploadPart',
      'ListParts',
      'CompleteMultipartUpload',
      'AbortMultipartUpload',
    );
    await fc.assert(
      fc.asyncProperty(
        options,
        key,
        operation,
        fc.option(contentType, { nil: undefined }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.stringMatching(/^[A-Za-z0-9_.~=+/-]{1,80}$/),
        now,
        expires,
        async (opts, k, op, type, partNumber, multipartId, at, expiresInSeconds) => {
          const contentTypeFor = op === 'PutObject' ? (type ?? 'application/octet-stream') : type;
          const request: PresignOperationRequest = {
            operation: op,
            key: k,
            contentType: op === 'PutObject' || op === 'CreateMultipartUpload' ? contentTypeFor : undefined,
            multipartId,
            partNumber,
            expiresInSeconds,
            now: at,
          };
          const ours = await new LocalEndpoint(opts).presignOperation(request);
          const query: Record<string, string> =
            op === 'PutObject'
              ? {}
              : op === 'CreateMultipartUpload'
                ? { uploads: '' }
                : op === 'UploadPart'
                  ? { partNumber: String(partNumber), uploadId: multipartId }
                  : { uploadId: multipartId };
          assert.equal(ours.url, await new SdkReference(opts).operation(request, ours.method, query));
        },
      ),
      { numRuns: RUNS },
    );
  });

  test("the endpoint's verifier (the SDK's SignatureV4) accepts what it signs", async () => {
    await fc.assert(
      fc.asyncProperty(
        options,
        key,
        contentType,
        fc.nat({ max: 2 ** 40 }),
        fc.option(hex(32), { nil: null }),
        fc.option(hex(64), { nil: null }),
        now,
        async (opts, k, type, size, md5, sha256, at) => {
          const endpoint = new LocalEndpoint(opts);
          const signed = await endpoint.presignPut({
            key: k,
            contentType: type,
            size,
            md5,
            sha256,
            expiresInSeconds: 900,
            now: at,
          });
          const url = new URL(signed.url);
          const headers: Record<string, string> = { host: url.host, 'content-length': String(size) };
          for (const [name, value] of Object.entries(signed.headers)) headers[name.toLowerCase()] = value;
          const verified = await endpoint.verify(
            { method: 'PUT', rawUrl: url.pathname + url.search, headers },
            at + 1000,
          );
          assert.equal(verified.key, k);
        },
      ),
      { numRuns: Math.ceil(RUNS / 4) },
    );
  });
});

/** What S3BlobStore.presignPut did before it signed with QuerySigner: getSignedUrl, as configured there. */
async function sdkS3Put(
  config: S3BlobStoreOptions,
  request: PresignPutRequest & { contentTypeOnly: boolean },
): Promise<string> {
  const client = createS3Client(config);
  try {
    const command = new PutObjectCommand({
      Bucket: config.bucket,
      Key: request.key,
      ContentType: request.contentType,
      ContentLength: request.size,
      ContentMD5: request.md5 ? hexToBase64(request.md5) : undefined,
      ChecksumSHA256: request.sha256 ? hexToBase64(request.sha256) : undefined,
      IfNoneMatch: request.contentTypeOnly ? undefined : '*',
    });
    return await getSignedUrl(client, command, {
      expiresIn: request.expiresInSeconds,
      signingDate: new Date(request.now),
      signableHeaders: new Set(['content-type', 'content-length', 'content-md5', 'if-none-match']),
      unhoistableHeaders: new Set(['x-amz-checksum-sha256', 'content-md5']),
    });
  } finally {
    client.destroy();
  }
}

// Stores as Wharf is configured for them: a self-hosted server path-style, AWS S3 itself
// (no endpoint: virtual-hosted, the SDK's own endpoint rules), a virtual-hosted custom host.
const s3Options = fc.record({
  target: fc.constantFrom(
    { endpoint: 'http://127.0.0.1:9000', forcePathStyle: true },
    { endpoint: 'https://s3.example.com:8443', forcePathStyle: false },
    { endpoint: undefined, forcePathStyle: false },
    { endpoint: undefined, forcePathStyle: true },
  ),
  bucket: fc.constantFrom('wharf', 'assets-1', 'my.bucket'),
  region: fc.constantFrom('us-east-1', 'eu-central-1', 'ap-southeast-2'),
  accessKeyId: fc.stringMatching(/^[A-Z0-9]{16,20}$/),
  secretAccessKey: fc.string({ minLength: 1, maxLength: 60 }),
});

describe('S3BlobStore.presignPut signs as the AWS SDK’s getSignedUrl does', () => {
  test('any store address, key, digests, write-once or not, date and expiry', async () => {
    await fc.assert(
      fc.asyncProperty(
        s3Options,
        key,
        contentType,
        fc.nat({ max: 5 * 2 ** 30 }),
        fc.option(hex(32), { nil: null }),
        fc.option(hex(64), { nil: null }),
        fc.boolean(),
        now,
        expires,
        async (opts, k, type, size, md5, sha256, contentTypeOnly, at, expiresInSeconds) => {
          const config: S3BlobStoreOptions = {
            ...opts.target,
            bucket: opts.bucket,
            region: opts.region,
            accessKeyId: opts.accessKeyId,
            secretAccessKey: opts.secretAccessKey,
          };
          const request = {
            key: k,
            contentType: type,
            size,
            md5,
            sha256,
            contentTypeOnly,
            expiresInSeconds,
            now: at,
          };
          const store = new S3BlobStore(config);
          try {
            const ours = await store.presignPut(request);
            assert.equal(ours.url, await sdkS3Put(config, request));
          } finally {
            await store.close();
          }
        },
      ),
      { numRuns: Math.max(200, Math.floor(RUNS / 4)) },
    );
  });
});
