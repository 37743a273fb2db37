import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { LocalEndpoint, type LocalEndpointOptions } from '../../src/blobs/local-endpoint.js';
import { isWharfError } from '../../src/core/errors.js';
import type { PresignedRequest, SignedRequest } from '../../src/core/ports.js';

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
const OPTIONS: LocalEndpointOptions = {
  publicUrl: 'http://127.0.0.1:8080',
  bucket: 'wharf',
  region: 'us-east-1',
  accessKeyId: 'wharf-local',
  secretAccessKey: 'a-secret-that-only-the-server-knows',
};
const KEY = 'default/019b7c2a-1c2d-7e3f-8a4b-5c6d7e8f9a0b.txt';
const BYTES = Buffer.from('hello, endpoint');
const MD5 = createHash('md5').update(BYTES).digest('hex');
const SHA256 = createHash('sha256').update(BYTES).digest('hex');

const endpoint = new LocalEndpoint(OPTIONS);

function presign(extra: { md5?: string; sha256?: string; expires?: number; now?: number } = {}) {
  return endpoint.presignPut({
    key: KEY,
    contentType: 'text/plain',
    size: BYTES.length,
    md5: extra.md5 ?? null,
    sha256: extra.sha256 ?? null,
    expiresInSeconds: extra.expires ?? 900,
    now: extra.now ?? NOW,
  });
}

/** What an HTTP client following the presigned request would send (Host from the URL). */
function asSent(signed: PresignedRequest): SignedRequest {
  const url = new URL(signed.url);
  const headers: Record<string, string> = { host: url.host, 'content-length': String(BYTES.length) };
  for (const [name, value] of Object.entries(signed.headers)) headers[name.toLowerCase()] = value;
  return { method: 'PUT', rawUrl: url.pathname + url.search, headers };
}

function withQuery(request: SignedRequest, edit: (q: URLSearchParams) => void): SignedRequest {
  const at = request.rawUrl.indexOf('?');
  const q = new URLSearchParams(request.rawUrl.slice(at + 1));
  edit(q);
  return { ...request, rawUrl: `${request.rawUrl.slice(0, at)}?${q}` };
}

async function refused(code: string, request: SignedRequest, now = NOW, verifier = endpoint): Promise<void> {
  await assert.rejects(verifier.verify(request, now), (err: unknown) => {
    assert.ok(isWharfError(err), String(err));
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('LocalEndpoint.presignPut', () => {
  test('makes a SigV4 query-presigned URL for the key under /s3/<bucket>', async () => {
    const signed = await presign();
    const url = new URL(signed.url);
    assert.equal(signed.method, 'PUT');
    assert.equal(url.origin, 'http://127.0.0.1:8080');
    assert.equal(url.pathname, `/s3/wharf/${KEY}`);
    const q = url.searchParams;
    assert.equal(q.get('X-Amz-Algorithm'), 'AWS4-HMAC-SHA256');
    assert.equal(q.get('X-Amz-Credential'), 'wharf-local/20260101/us-east-1/s3/aws4_request');
    assert.equal(q.get('X-Amz-Date'), '20260101T120000Z');
    assert.equal(q.get('X-Amz-Expires'), '900');
    assert.match(q.get('X-Amz-Signature') ?? '', /^[0-9a-f]{64}$/);
    assert.deepEqual(q.get('X-Amz-SignedHeaders')?.split(';'), ['content-length', 'content-type', 'host']);
  });

  test('carries no x-amz-checksum-* (e.g. crc32) or sdk-checksum parameter nobody asked for', async () => {
    for (const signed of [await presign(), await presign({ md5: MD5, sha256: SHA256 })]) {
      const names = [...new URL(signed.url).searchParams.keys()].map((n) => n.toLowerCase());
      assert.deepEqual(
        names.filter((n) => n.startsWith('x-amz-checksum') || n.startsWith('x-amz-sdk-checksum')),
        [],
      );
      assert.doesNotMatch(signed.url.toLowerCase(), /crc32/);
      assert.deepEqual(
        Object.keys(signed.headers).filter((h) => /crc/i.test(h)),
        [],
      );
    }
  });

  test('returns the headers to send: Content-Type only when no digest was declared', async () => {
    assert.deepEqual((await presign()).headers, { 'Content-Type': 'text/plain' });
  });

  test('declared digests are bound as signed headers, not hoisted into the query', async () => {
    const signed = await presign({ md5: MD5, sha256: SHA256 });
    assert.deepEqual(signed.headers, {
      'Content-Type': 'text/plain',
      'Content-MD5': Buffer.from(MD5, 'hex').toString('base64'),
      'x-amz-checksum-sha256': Buffer.from(SHA256, 'hex').toString('base64'),
    });
    const q = new URL(signed.url).searchParams;
    assert.deepEqual(q.get('X-Amz-SignedHeaders')?.split(';'), [
      'content-length',
      'content-md5',
      'content-type',
      'host',
      'x-amz-checksum-sha256',
    ]);
    assert.equal(q.get('Content-MD5'), null);
  });

  test('two URLs for the same request at the same instant are identical (deterministic signing)', async () => {
    assert.equal((await presign()).url, (await presign()).url);
    assert.notEqual((await presign()).url, (await presign({ now: NOW + 1000 })).url);
  });
});

describe('LocalEndpoint.verify: a URL it signed verifies, and only unchanged', () => {
  test('round trip returns the key, the signed headers and no query beyond the signature’s', async () => {
    assert.deepEqual(await endpoint.verify(asSent(await presign()), NOW), {
      key: KEY,
      query: {},
      signedHeaders: ['content-length', 'content-type', 'host'],
    });
    assert.equal((await endpoint.verify(asSent(await presign()), NOW)).key, KEY);
    assert.equal((await endpoint.verify(asSent(await presign({ md5: MD5, sha256: SHA256 })), NOW)).key, KEY);
  });

  test('header names are case-insensitive and extra unsigned headers are allowed', async () => {
    const request = asSent(await presign());
    request.headers['user-agent'] = 'curl/8';
    request.headers['x-whatever'] = '1';
    assert.equal((await endpoint.verify(request, NOW)).key, KEY);
  });

  test('a base URL with a path prefix signs and verifies under that prefix', async () => {
    const prefixed = new LocalEndpoint({ ...OPTIONS, publicUrl: 'https://files.example.com/wharf/' });
    const signed = await prefixed.presignPut({
      key: KEY,
      contentType: 'image/png',
      size: BYTES.length,
      expiresInSeconds: 60,
      now: NOW,
    });
    assert.ok(signed.url.startsWith(`https://files.example.com/wharf/s3/wharf/${KEY}?`), signed.url);
    assert.equal((await prefixed.verify(asSent(signed), NOW)).key, KEY);
    await refused('NOT_FOUND', asSent(signed), NOW, endpoint);
  });

  const queryTampering: Array<[string, string, (q: URLSearchParams) => void]> = [
    [
      'signature changed',
      'INVALID_SIGNATURE',
      (q) => q.set('X-Amz-Signature', flip(q.get('X-Amz-Signature')!)),
    ],
    [
      'signature truncated',
      'INVALID_SIGNATURE',
      (q) => q.set('X-Amz-Signature', q.get('X-Amz-Signature')!.slice(1)),
    ],
    ['expiry lengthened', 'INVALID_SIGNATURE', (q) => q.set('X-Amz-Expires', '604800')],
    ['signing time moved', 'INVALID_SIGNATURE', (q) => q.set('X-Amz-Date', '20260101T120500Z')],
    [
      'content-type dropped from the signed headers',
      'INVALID_SIGNATURE',
      (q) => q.set('X-Amz-SignedHeaders', 'content-length;host'),
    ],
    // Names of Object.prototype's members: found by the route fuzzer, they reached the
    // signer as functions (500) before headers were looked up as own properties only.
    ...['constructor', '__proto__', 'tostring'].map(
      (name): [string, string, (q: URLSearchParams) => void] => [
        `a signed header named ${name}`,
        'INVALID_SIGNATURE',
        (q) => q.set('X-Amz-SignedHeaders', `content-length;content-type;host;${name}`),
      ],
    ),
    ['extra query parameter', 'INVALID_SIGNATURE', (q) => q.set('acl', 'public-read')],
    ['payload hash parameter added', 'INVALID_SIGNATURE', (q) => q.set('X-Amz-Content-Sha256', SHA256)],
    [
      'another access key',
      'UNKNOWN_ACCESS_KEY',
      (q) => q.set('X-Amz-Credential', 'someone-else/20260101/us-east-1/s3/aws4_request'),
    ],
    [
      'another region',
      'MALFORMED_SIGNATURE',
      (q) => q.set('X-Amz-Credential', 'wharf-local/20260101/eu-west-1/s3/aws4_request'),
    ],
    [
      'credential date not the signing date',
      'MALFORMED_SIGNATURE',
      (q) => q.set('X-Amz-Credential', 'wharf-local/20260102/us-east-1/s3/aws4_request'),
    ],
    ['another algorithm', 'MALFORMED_SIGNATURE', (q) => q.set('X-Amz-Algorithm', 'AWS4-HMAC-SHA1')],
    ['expiry beyond seven days', 'MALFORMED_SIGNATURE', (q) => q.set('X-Amz-Expires', '604801')],
    ['expiry not a number', 'MALFORMED_SIGNATURE', (q) => q.set('X-Amz-Expires', '9e9')],
    ['unparseable date', 'MALFORMED_SIGNATURE', (q) => q.set('X-Amz-Date', '2026-01-01T12:00:00Z')],
    ['signature removed', 'MALFORMED_SIGNATURE', (q) => q.delete('X-Amz-Signature')],
    ['credential removed', 'MALFORMED_SIGNATURE', (q) => q.delete('X-Amz-Credential')],
  ];
  for (const [label, code, edit] of queryTampering) {
    test(`query: ${label} → ${code}`, async () => {
      await refused(code, withQuery(asSent(await presign({ md5: MD5, sha256: SHA256 })), edit));
    });
  }

  test('path: another key under the same signature', async () => {
    const request = asSent(await presign());
    request.rawUrl = request.rawUrl.replace('019b7c2a', '019b7c2b');
    await refused('INVALID_SIGNATURE', request);
  });

  test('path: traversal out of the key', async () => {
    const request = asSent(await presign());
    request.rawUrl = request.rawUrl.replace(`/s3/wharf/${KEY}`, `/s3/wharf/default/../other/${KEY.slice(8)}`);
    await refused('INVALID_SIGNATURE', request);
  });

  test('path: another bucket', async () => {
    const request = asSent(await presign());
    request.rawUrl = request.rawUrl.replace('/s3/wharf/', '/s3/other/');
    await refused('NOT_FOUND', request);
  });

  test('method: the URL is for PUT only', async () => {
    await refused('INVALID_SIGNATURE', { ...asSent(await presign()), method: 'POST' });
  });

  const headerTampering: Array<[string, (h: SignedRequest['headers']) => void]> = [
    ['another content type', (h) => (h['content-type'] = 'text/html')],
    ['content type parameters added', (h) => (h['content-type'] = 'text/plain; charset=utf-8')],
    ['another length', (h) => (h['content-length'] = String(BYTES.length + 1))],
    ['content length missing', (h) => delete h['content-length']],
    ['content type missing', (h) => delete h['content-type']],
    ['another host', (h) => (h.host = 'evil.example.com')],
    ['another Content-MD5', (h) => (h['content-md5'] = Buffer.alloc(16).toString('base64'))],
    ['Content-MD5 missing', (h) => delete h['content-md5']],
    [
      'another x-amz-checksum-sha256',
      (h) => (h['x-amz-checksum-sha256'] = Buffer.alloc(32).toString('base64')),
    ],
    ['x-amz-checksum-sha256 missing', (h) => delete h['x-amz-checksum-sha256']],
  ];
  for (const [label, edit] of headerTampering) {
    test(`header: ${label}`, async () => {
      const request = asSent(await presign({ md5: MD5, sha256: SHA256 }));
      edit(request.headers);
      await refused('INVALID_SIGNATURE', request);
    });
  }

  test('a URL signed with another secret does not verify', async () => {
    const other = new LocalEndpoint({ ...OPTIONS, secretAccessKey: 'another-secret' });
    const signed = await other.presignPut({
      key: KEY,
      contentType: 'text/plain',
      size: BYTES.length,
      expiresInSeconds: 900,
      now: NOW,
    });
    await refused('INVALID_SIGNATURE', asSent(signed));
  });
});

describe('LocalEndpoint.verify: expiry', () => {
  test('valid through the last millisecond of its lifetime, expired one millisecond later', async () => {
    const request = asSent(await presign({ expires: 900 }));
    assert.equal((await endpoint.verify(request, NOW + 900_000)).key, KEY);
    await refused('URL_EXPIRED', request, NOW + 900_001);
    await refused('URL_EXPIRED', request, NOW + 30 * 24 * 3600_000);
  });

  test('a short lifetime is honoured as signed', async () => {
    const request = asSent(await presign({ expires: 1 }));
    assert.equal((await endpoint.verify(request, NOW + 1000)).key, KEY);
    await refused('URL_EXPIRED', request, NOW + 1001);
  });

  test('a tampered URL is reported as a bad signature even once expired (no oracle on validity)', async () => {
    const request = withQuery(asSent(await presign()), (q) => q.set('X-Amz-Signature', '0'.repeat(64)));
    await refused('INVALID_SIGNATURE', request, NOW + 3600_000);
  });

  test('a URL used long before its signing time is refused; small clock skew is tolerated', async () => {
    const request = asSent(await presign());
    assert.equal((await endpoint.verify(request, NOW - 14 * 60_000)).key, KEY);
    await refused('MALFORMED_SIGNATURE', request, NOW - 16 * 60_000);
  });
});

function flip(hex: string): string {
  const last = hex.at(-1) === '0' ? '1' : '0';
  return hex.slice(0, -1) + last;
}

describe('LocalEndpoint.presignOperation: S3 requests on the endpoint, as S3 shapes them', () => {
  const UPLOAD_ID = 'b3Jh2tQ5xW8yZ1aB4cD7eF0gH3iJ6kL9';
  const operation = (
    op: import('../../src/core/ports.js').S3Operation,
    extra: { contentType?: string; partNumber?: number; expires?: number } = {},
  ) =>
    endpoint.presignOperation({
      operation: op,
      key: KEY,
      contentType: extra.contentType,
      multipartId: op === 'PutObject' || op === 'CreateMultipartUpload' ? undefined : UPLOAD_ID,
      partNumber: extra.partNumber,
      expiresInSeconds: extra.expires ?? 900,
      now: NOW,
    });
  /** As a client sends it: only the headers it was told to send, plus Host. */
  const sent = (signed: PresignedRequest, extra: Record<string, string> = {}): SignedRequest => {
    const url = new URL(signed.url);
    const headers: Record<string, string> = { host: url.host, ...extra };
    for (const [name, value] of Object.entries(signed.headers)) headers[name.toLowerCase()] = value;
    return { method: signed.method, rawUrl: url.pathname + url.search, headers };
  };

  const shapes: Array<
    [Parameters<typeof operation>[0], Parameters<typeof operation>[1], string, Record<string, string>]
  > = [
    ['PutObject', { contentType: 'image/png' }, 'PUT', {}],
    ['CreateMultipartUpload', { contentType: 'video/mp4' }, 'POST', { uploads: '' }],
    ['UploadPart', { partNumber: 7 }, 'PUT', { partNumber: '7', uploadId: UPLOAD_ID }],
    ['ListParts', {}, 'GET', { uploadId: UPLOAD_ID }],
    ['CompleteMultipartUpload', {}, 'POST', { uploadId: UPLOAD_ID }],
    ['AbortMultipartUpload', {}, 'DELETE', { uploadId: UPLOAD_ID }],
  ];
  for (const [op, extra, method, query] of shapes) {
    test(`${op}: ${method} on /s3/wharf/<key> with its query, verified back with that query`, async () => {
      const signed = await operation(op, extra);
      assert.equal(signed.method, method);
      const url = new URL(signed.url);
      assert.equal(url.pathname, `/s3/wharf/${KEY}`);
      for (const [name, value] of Object.entries(query)) assert.equal(url.searchParams.get(name), value);
      assert.deepEqual(
        [...url.searchParams.keys()].filter((n) => /checksum/i.test(n)),
        [],
      );
      const verified = await endpoint.verify(sent(signed), NOW);
      assert.equal(verified.key, KEY);
      assert.deepEqual(verified.query, query);
    });
  }

  test('PutObject and CreateMultipartUpload sign the type, not the length, and say to send the type', async () => {
    for (const op of ['PutObject', 'CreateMultipartUpload'] as const) {
      const signed = await operation(op, { contentType: 'image/png' });
      assert.deepEqual(signed.headers, { 'Content-Type': 'image/png' });
      assert.deepEqual(new URL(signed.url).searchParams.get('X-Amz-SignedHeaders')?.split(';'), [
        'content-type',
        'host',
      ]);
      // Any length verifies: the client did not say how large the file is.
      assert.equal((await endpoint.verify(sent(signed, { 'content-length': '123456' }), NOW)).key, KEY);
      await refused('INVALID_SIGNATURE', {
        ...sent(signed),
        headers: { ...sent(signed).headers, 'content-type': 'text/html' },
      });
    }
  });

  test('multipart operations other than create sign no header but Host', async () => {
    for (const op of [
      'UploadPart',
      'ListParts',
      'CompleteMultipartUpload',
      'AbortMultipartUpload',
    ] as const) {
      const signed = await operation(op, { partNumber: 1 });
      assert.deepEqual(signed.headers, {});
      assert.equal(new URL(signed.url).searchParams.get('X-Amz-SignedHeaders'), 'host');
    }
  });

  const tampering: Array<[string, Parameters<typeof operation>[0], (q: URLSearchParams) => void]> = [
    ['another part number', 'UploadPart', (q) => q.set('partNumber', '8')],
    ['another upload id', 'UploadPart', (q) => q.set('uploadId', `${UPLOAD_ID.slice(0, -1)}X`)],
    ['part number removed (a PutObject)', 'UploadPart', (q) => q.delete('partNumber')],
    ['upload id removed', 'UploadPart', (q) => q.delete('uploadId')],
    ['another upload id', 'ListParts', (q) => q.set('uploadId', 'someone-elses-upload-id-0123456789')],
    ['another upload id', 'CompleteMultipartUpload', (q) => q.set('uploadId', 'x'.repeat(32))],
    ['another upload id', 'AbortMultipartUpload', (q) => q.set('uploadId', 'x'.repeat(32))],
    ['uploads removed', 'CreateMultipartUpload', (q) => q.delete('uploads')],
    [
      'an upload id added (a ListParts/Complete)',
      'CreateMultipartUpload',
      (q) => q.set('uploadId', UPLOAD_ID),
    ],
    ['a part number added (an UploadPart)', 'PutObject', (q) => q.set('partNumber', '1')],
  ];
  for (const [label, op, edit] of tampering) {
    test(`${op}: ${label} → INVALID_SIGNATURE`, async () => {
      await refused(
        'INVALID_SIGNATURE',
        withQuery(sent(await operation(op, { contentType: 'image/png', partNumber: 7 })), edit),
      );
    });
  }

  test('an operation signed for one method does not verify under another', async () => {
    // Complete and Create are both POST; ListParts is Abort's twin but GET.
    const list = sent(await operation('ListParts'));
    await refused('INVALID_SIGNATURE', { ...list, method: 'DELETE' });
    const part = sent(await operation('UploadPart', { partNumber: 1 }));
    await refused('INVALID_SIGNATURE', { ...part, method: 'POST' });
  });

  test('expiry: valid through its lifetime, URL_EXPIRED a millisecond later', async () => {
    const request = sent(await operation('UploadPart', { partNumber: 3, expires: 60 }));
    assert.equal((await endpoint.verify(request, NOW + 60_000)).key, KEY);
    await refused('URL_EXPIRED', request, NOW + 60_001);
  });

  test('PutObject cannot be signed without its type', async () => {
    await assert.rejects(operation('PutObject'));
  });
});
