import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { S3Client } from '@aws-sdk/client-s3';
import { createPresignedPost } from '@aws-sdk/s3-presigned-post';
import { LocalEndpoint, type LocalEndpointOptions } from '../../src/blobs/local-endpoint.js';
import { type ErrorCode, isWharfError } from '../../src/core/errors.js';

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
const OPTIONS: LocalEndpointOptions = {
  publicUrl: 'http://127.0.0.1:8080',
  bucket: 'wharf',
  region: 'us-east-1',
  accessKeyId: 'wharf-local',
  secretAccessKey: 'a-secret-that-only-the-server-knows',
};
const KEY = 'default/019b7c2a-1c2d-7e3f-8a4b-5c6d7e8f9a0b.jpg';
const endpoint = new LocalEndpoint(OPTIONS);

function presign(extra: { contentType?: string; now?: number; expires?: number } = {}) {
  return endpoint.presignPost({
    key: KEY,
    contentType: extra.contentType,
    minSize: 1,
    maxSize: 1000,
    expiresInSeconds: extra.expires ?? 900,
    now: extra.now ?? NOW,
  });
}

function decode(policy: string): { expiration: string; conditions: unknown[] } {
  return JSON.parse(Buffer.from(policy, 'base64').toString('utf8'));
}

/** Signs a policy of the test's own making, deriving the SigV4 key by the spec's steps. */
function signed(fields: Record<string, string>, document: object): Record<string, string> {
  const policy = Buffer.from(JSON.stringify(document)).toString('base64');
  const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
  let key = hmac(`AWS4${OPTIONS.secretAccessKey}`, '20260101');
  for (const part of ['us-east-1', 's3', 'aws4_request']) key = hmac(key, part);
  return { ...fields, policy, 'x-amz-signature': createHmac('sha256', key).update(policy).digest('hex') };
}

async function refused(fields: Record<string, string>, code: ErrorCode, now = NOW, message?: RegExp) {
  await assert.rejects(endpoint.verifyPost(fields, now), (err: unknown) => {
    assert.ok(isWharfError(err, code), `expected ${code}, got ${String(err)}`);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe('presignPost builds the policy S3 expects', () => {
  test('the URL is the bucket (path style) and the fields are the seed form', async () => {
    const { url, fields } = await presign();
    assert.equal(url, 'http://127.0.0.1:8080/s3/wharf/');
    assert.deepEqual(Object.keys(fields), [
      'key',
      'x-amz-algorithm',
      'x-amz-credential',
      'x-amz-date',
      'policy',
      'x-amz-signature',
    ]);
    assert.equal(fields['key'], KEY);
    assert.equal(fields['x-amz-algorithm'], 'AWS4-HMAC-SHA256');
    assert.equal(fields['x-amz-credential'], 'wharf-local/20260101/us-east-1/s3/aws4_request');
    assert.equal(fields['x-amz-date'], '20260101T120000Z');
    assert.match(fields['x-amz-signature']!, /^[0-9a-f]{64}$/);
  });

  test('the policy binds bucket, key, size range, signing fields and expiry', async () => {
    const { fields } = await presign({ contentType: 'image/jpeg' });
    assert.deepEqual(decode(fields['policy']!), {
      expiration: '2026-01-01T12:15:00Z',
      conditions: [
        { bucket: 'wharf' },
        { key: KEY },
        ['content-length-range', 1, 1000],
        { 'x-amz-algorithm': 'AWS4-HMAC-SHA256' },
        { 'x-amz-credential': 'wharf-local/20260101/us-east-1/s3/aws4_request' },
        { 'x-amz-date': '20260101T120000Z' },
        ['eq', '$Content-Type', 'image/jpeg'],
      ],
    });
    assert.equal(fields['Content-Type'], 'image/jpeg');
  });
});

describe('verifyPost', () => {
  test('a form as presigned verifies and yields the key and size range', async () => {
    const { fields } = await presign();
    assert.deepEqual(await endpoint.verifyPost(fields, NOW + 60_000), {
      key: KEY,
      minSize: 1,
      maxSize: 1000,
      contentType: undefined,
    });
  });

  test('field names are matched in any case; values are not', async () => {
    const { fields } = await presign({ contentType: 'image/jpeg' });
    const shouted = Object.fromEntries(Object.entries(fields).map(([k, v]) => [k.toUpperCase(), v]));
    const result = await endpoint.verifyPost(shouted, NOW);
    assert.equal(result.contentType, 'image/jpeg');
    await refused({ ...fields, 'Content-Type': 'IMAGE/JPEG' }, 'FORBIDDEN', NOW, /Policy Condition failed/);
  });

  test('a policy made by the AWS SDK (createPresignedPost) for this endpoint verifies', async () => {
    const client = new S3Client({
      region: OPTIONS.region,
      endpoint: 'http://127.0.0.1:8080/s3',
      forcePathStyle: true,
      credentials: { accessKeyId: OPTIONS.accessKeyId, secretAccessKey: OPTIONS.secretAccessKey },
    });
    const post = await createPresignedPost(client, {
      Bucket: 'wharf',
      Key: KEY,
      Conditions: [['content-length-range', 0, 500]],
      Expires: 600,
    });
    // The SDK dates its policy by the wall clock, so it is verified at the time it names.
    const signedAt = Date.parse(decode(post.fields['Policy']!).expiration) - 600_000;
    assert.equal(post.url.replace(/\/?$/, '/'), (await presign()).url);
    assert.deepEqual(await endpoint.verifyPost(post.fields, signedAt), {
      key: KEY,
      minSize: 0,
      maxSize: 500,
      contentType: undefined,
    });
  });

  test('a tampered policy fails the signature', async () => {
    const { fields } = await presign();
    const document = decode(fields['policy']!);
    document.conditions[2] = ['content-length-range', 1, 10_000_000];
    const policy = Buffer.from(JSON.stringify(document)).toString('base64');
    await refused({ ...fields, policy }, 'INVALID_SIGNATURE');
  });

  test('a tampered or foreign signature fails', async () => {
    const { fields } = await presign();
    const sig = fields['x-amz-signature']!;
    const flipped = (sig[0] === 'a' ? 'b' : 'a') + sig.slice(1);
    await refused({ ...fields, 'x-amz-signature': flipped }, 'INVALID_SIGNATURE');
    const other = new LocalEndpoint({ ...OPTIONS, secretAccessKey: 'another-secret' });
    const forged = await other.presignPost({
      key: KEY,
      minSize: 0,
      maxSize: 1,
      expiresInSeconds: 60,
      now: NOW,
    });
    await refused(forged.fields, 'INVALID_SIGNATURE');
  });

  test('an expired policy is refused as S3 does', async () => {
    const { fields } = await presign({ expires: 60 });
    await endpoint.verifyPost(fields, NOW + 60_000);
    await refused(fields, 'FORBIDDEN', NOW + 61_000, /^Invalid according to Policy: Policy expired\.$/);
  });

  test('a field no condition covers is refused; x-ignore- fields are not', async () => {
    const { fields } = await presign();
    await refused(
      { ...fields, acl: 'public-read' },
      'FORBIDDEN',
      NOW,
      /^Invalid according to Policy: Extra input fields: acl$/,
    );
    await endpoint.verifyPost({ ...fields, 'x-ignore-note': 'anything', file: 'x' }, NOW);
  });

  test('a different key is refused', async () => {
    const { fields } = await presign();
    await refused(
      { ...fields, key: 'default/another-object.jpg' },
      'FORBIDDEN',
      NOW,
      /Policy Condition failed: \{"key":/,
    );
  });

  test('Content-Type eq: missing or different type is refused', async () => {
    const { fields } = await presign({ contentType: 'image/jpeg' });
    const { 'Content-Type': _type, ...without } = fields;
    await refused(without, 'FORBIDDEN', NOW, /\["eq","\$Content-Type","image\/jpeg"\]/);
    await refused({ ...fields, 'Content-Type': 'text/html' }, 'FORBIDDEN');
  });

  test('no bound type: the policy names no Content-Type, so a form sends none', async () => {
    const { fields } = await presign();
    assert.ok(!JSON.stringify(decode(fields['policy']!).conditions).toLowerCase().includes('content-type'));
    // The seed's six fields are the whole form.
    assert.equal((await endpoint.verifyPost(fields, NOW)).contentType, undefined);
    await refused(
      { ...fields, 'Content-Type': 'application/pdf' },
      'FORBIDDEN',
      NOW,
      /Extra input fields: content-type/,
    );
  });

  test('starts-with "" allows any value, but a form that leaves the field out fails it, as on S3', async () => {
    const document = {
      expiration: '2026-01-01T13:00:00.000Z',
      conditions: [
        { bucket: 'wharf' },
        { key: KEY },
        ['starts-with', '$Content-Type', ''],
        ['starts-with', '$x-amz-meta-tag', ''],
        { 'x-amz-algorithm': 'AWS4-HMAC-SHA256' },
        { 'x-amz-credential': 'wharf-local/20260101/us-east-1/s3/aws4_request' },
        { 'x-amz-date': '20260101T120000Z' },
      ],
    };
    const form = {
      key: KEY,
      'Content-Type': 'application/pdf',
      'x-amz-meta-tag': '',
      'x-amz-algorithm': 'AWS4-HMAC-SHA256',
      'x-amz-credential': 'wharf-local/20260101/us-east-1/s3/aws4_request',
      'x-amz-date': '20260101T120000Z',
    };
    // Any value, the empty one included, meets an empty prefix.
    assert.equal((await endpoint.verifyPost(signed(form, document), NOW)).contentType, undefined);
    await endpoint.verifyPost(signed({ ...form, 'Content-Type': '' }, document), NOW);
    // A missing field is not an empty one: S3 answers AccessDenied naming the condition.
    const { 'Content-Type': _type, ...withoutType } = form;
    await refused(signed(withoutType, document), 'FORBIDDEN', NOW, /\["starts-with","\$Content-Type",""\]/);
    const { 'x-amz-meta-tag': _tag, ...withoutTag } = form;
    await refused(signed(withoutTag, document), 'FORBIDDEN', NOW, /\["starts-with","\$x-amz-meta-tag",""\]/);
  });

  test('starts-with conditions, including a comma-separated Content-Type', async () => {
    const document = {
      expiration: '2026-01-01T13:00:00.000Z',
      conditions: [
        { bucket: 'wharf' },
        ['starts-with', '$key', 'default/'],
        ['starts-with', '$Content-Type', 'image/'],
        ['starts-with', '$x-amz-meta-tag', ''],
        { 'x-amz-algorithm': 'AWS4-HMAC-SHA256' },
        { 'x-amz-credential': 'wharf-local/20260101/us-east-1/s3/aws4_request' },
        { 'x-amz-date': '20260101T120000Z' },
      ],
    };
    const form = {
      key: 'default/photo.jpg',
      'Content-Type': 'image/jpeg, image/png',
      'x-amz-meta-tag': 'holiday',
      'x-amz-algorithm': 'AWS4-HMAC-SHA256',
      'x-amz-credential': 'wharf-local/20260101/us-east-1/s3/aws4_request',
      'x-amz-date': '20260101T120000Z',
    };
    const ok = await endpoint.verifyPost(signed(form, document), NOW);
    assert.deepEqual(ok, {
      key: 'default/photo.jpg',
      minSize: 0,
      maxSize: Number.MAX_SAFE_INTEGER,
      contentType: undefined,
    });
    await refused(signed({ ...form, key: 'other/photo.jpg' }, document), 'FORBIDDEN', NOW, /starts-with/);
    await refused(signed({ ...form, 'Content-Type': 'image/jpeg, text/html' }, document), 'FORBIDDEN');
  });

  test('a bucket condition for another bucket is refused', async () => {
    const document = {
      expiration: '2026-01-01T13:00:00Z',
      conditions: [
        { bucket: 'elsewhere' },
        { key: KEY },
        { 'x-amz-algorithm': 'AWS4-HMAC-SHA256' },
        { 'x-amz-credential': 'wharf-local/20260101/us-east-1/s3/aws4_request' },
        { 'x-amz-date': '20260101T120000Z' },
      ],
    };
    const form = {
      key: KEY,
      'x-amz-algorithm': 'AWS4-HMAC-SHA256',
      'x-amz-credential': 'wharf-local/20260101/us-east-1/s3/aws4_request',
      'x-amz-date': '20260101T120000Z',
    };
    await refused(signed(form, document), 'FORBIDDEN', NOW, /"bucket":"elsewhere"/);
  });

  test('missing fields, wrong access key, wrong scope and repeated fields are refused', async () => {
    const { fields } = await presign();
    const { policy: _p, ...noPolicy } = fields;
    await refused(noPolicy, 'VALIDATION_FAILED', NOW, /'policy'/);
    const { key: _k, ...noKey } = fields;
    await refused(noKey, 'VALIDATION_FAILED', NOW, /'key'/);
    await refused(
      { ...fields, 'x-amz-credential': 'someone-else/20260101/us-east-1/s3/aws4_request' },
      'UNKNOWN_ACCESS_KEY',
    );
    await refused(
      { ...fields, 'x-amz-credential': 'wharf-local/20260101/eu-west-1/s3/aws4_request' },
      'VALIDATION_FAILED',
    );
    await refused({ ...fields, 'x-amz-algorithm': 'AWS4-HMAC-SHA1' }, 'VALIDATION_FAILED');
    await refused({ ...fields, KEY: KEY }, 'VALIDATION_FAILED', NOW, /exactly one key/);
  });

  test('a signed but malformed policy document is refused', async () => {
    const form = {
      key: KEY,
      'x-amz-algorithm': 'AWS4-HMAC-SHA256',
      'x-amz-credential': 'wharf-local/20260101/us-east-1/s3/aws4_request',
      'x-amz-date': '20260101T120000Z',
    };
    await refused(signed(form, { conditions: [] }), 'VALIDATION_FAILED', NOW, /expiration/);
    await refused(
      signed(form, { expiration: '2026-01-01T13:00:00Z', conditions: [['matches', '$key', '.*']] }),
      'VALIDATION_FAILED',
      NOW,
      /Invalid Simple-Condition/,
    );
  });
});
