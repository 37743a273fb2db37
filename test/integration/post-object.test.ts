import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Principal } from '../../src/core/model.js';
import type { PresignedPost } from '../../src/core/ports.js';
import type { PostDeclaration } from '../../src/core/upload-types.js';
import { deriveKey } from '../../src/core/wharf.js';
import { eventually, objectFiles, tmpFiles } from '../helpers/assets.js';
import { curl } from '../helpers/curl.js';
import { storesOnS3 } from '../helpers/deployment.js';
import { heldLastByte, md5Hex, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// These tests sign policies with the key Wharf's own storage endpoint derives from
// WHARF_SECRET and check that endpoint's answers. A server that stores on S3 has no such
// endpoint: its forms go to the S3 server, whose enforcement of Wharf's policies (size
// range, key, Content-Type, expiry, tampering) s3-store.test.ts checks, and the form flow
// end to end is compat-filespin.test.ts's.
const skip =
  storesOnS3 && "Wharf's own POST Object endpoint; this server stores on S3 (see s3-store.test.ts)";

const SECRET = randomBytes(32).toString('base64url');
let w: TestWharf;
let principal: Principal;
let dir: string;
before(async () => {
  if (skip) return;
  // A known server secret lets the tests sign policies of their own, as a client of the
  // S3 deployment could with its credentials.
  w = await startWharf({ env: { WHARF_SECRET: SECRET } });
  principal = await w.wharf.core.keys.authenticate(w.key);
  dir = await mkdtemp(join(tmpdir(), 'wharf-post-object-'));
});
after(async () => {
  await w?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function intent(declaration: Partial<PostDeclaration> = {}) {
  return w.wharf.core.uploads.createPost(principal, { name: 'photo.jpg', ...declaration });
}

async function file(bytes: Buffer): Promise<string> {
  const path = join(dir, `${randomBytes(6).toString('hex')}.jpg`);
  await writeFile(path, bytes);
  return path;
}

/** The seed's flow: every field with curl -F, in the order given, then the file. */
function postForm(post: PresignedPost, path: string, fields: Record<string, string> = post.fields) {
  const args = ['-X', 'POST', post.url];
  for (const [name, value] of Object.entries(fields)) args.push('-F', `${name}=${value}`);
  args.push('-F', `file=@${path};type=image/jpeg`);
  return curl(args);
}

/** The intent's policy with extra conditions, re-signed by the SigV4 spec's own steps. */
function withConditions(post: PresignedPost, extra: unknown[]): Record<string, string> {
  const document = JSON.parse(Buffer.from(post.fields['policy']!, 'base64').toString('utf8'));
  document.conditions.push(...extra);
  const policy = Buffer.from(JSON.stringify(document)).toString('base64');
  const [, date, region, service] = post.fields['x-amz-credential']!.split('/');
  const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
  let key = hmac(`AWS4${deriveKey(SECRET, 'local-s3').toString('base64url')}`, date!);
  for (const part of [region!, service!, 'aws4_request']) key = hmac(key, part);
  return { ...post.fields, policy, 'x-amz-signature': hmac(key, policy).toString('hex') };
}

function s3Code(body: string): string | undefined {
  return /<Code>([^<]+)<\/Code>/.exec(body)?.[1];
}

function header(headers: string, name: string): string | undefined {
  return new RegExp(`^${name}: *(.*?)\\r?$`, 'im').exec(headers)?.[1];
}

describe('POST Object with a presigned policy (curl -F)', () => {
  test('a good form stores the file: 204 with ETag and Location, and it completes', { skip }, async () => {
    const { upload, post } = await intent({ maxSize: 4096 });
    assert.equal(post.url, `${w.url}/s3/wharf/`);
    const bytes = randomBytes(3000);
    const res = await postForm(post, await file(bytes));
    assert.equal(res.status, 204, res.body);
    assert.equal(header(res.headers, 'etag'), `"${md5Hex(bytes)}"`);
    assert.equal(header(res.headers, 'location'), `${w.url}/s3/wharf/${upload.storageKey}`);
    const done = await w.wharf.core.uploads.complete(principal, upload.id);
    assert.equal(done.asset.sha256, sha256Hex(bytes));
    assert.equal(done.asset.size, bytes.length);
  });

  test('a field the policy does not cover (success_action_status) is 403 Extra input fields', {
    skip,
  }, async () => {
    const { post } = await intent();
    const res = await postForm(post, await file(randomBytes(10)), {
      ...post.fields,
      success_action_status: '201',
    });
    // The field is not in the policy, so S3 refuses it as an extra input field.
    assert.equal(res.status, 403, res.body);
    assert.equal(s3Code(res.body), 'AccessDenied');
    assert.match(res.body, /Extra input fields: success_action_status/);
  });

  test('success_action_status 201 answers PostResponse XML when the policy allows it', { skip }, async () => {
    const { upload, post } = await intent();
    const bytes = randomBytes(50);
    const fields = withConditions(post, [{ success_action_status: '201' }]);
    const res = await postForm(post, await file(bytes), { ...fields, success_action_status: '201' });
    assert.equal(res.status, 201, res.body);
    assert.match(res.body, /^<\?xml/);
    assert.match(res.body, new RegExp(`<Bucket>wharf</Bucket><Key>${upload.storageKey}</Key>`));
    assert.match(res.body, new RegExp(`<ETag>&#34;${md5Hex(bytes)}&#34;</ETag>`));
  });

  test('success_action_redirect answers 303 to it with bucket, key and etag', { skip }, async () => {
    const { upload, post } = await intent();
    const bytes = randomBytes(50);
    const fields = withConditions(post, [
      ['starts-with', '$success_action_redirect', 'https://app.example/'],
    ]);
    const res = await postForm(post, await file(bytes), {
      ...fields,
      success_action_redirect: 'https://app.example/done?x=1',
    });
    assert.equal(res.status, 303, res.body);
    const target = new URL(header(res.headers, 'location')!);
    assert.equal(target.origin + target.pathname, 'https://app.example/done');
    assert.equal(target.searchParams.get('x'), '1');
    assert.equal(target.searchParams.get('key'), upload.storageKey);
    assert.equal(target.searchParams.get('etag'), `"${md5Hex(bytes)}"`);
  });

  test('x-ignore- fields need no condition; fields after the file are ignored', { skip }, async () => {
    const { post } = await intent();
    const path = await file(randomBytes(20));
    const args = ['-X', 'POST', post.url, '-F', 'x-ignore-note=anything'];
    for (const [name, value] of Object.entries(post.fields)) args.push('-F', `${name}=${value}`);
    args.push('-F', `file=@${path}`, '-F', 'acl=public-read-write');
    const res = await curl(args);
    assert.equal(res.status, 204, res.body);
  });

  test('a field sent twice is refused', { skip }, async () => {
    const { post } = await intent();
    const path = await file(randomBytes(20));
    const args = ['-X', 'POST', post.url];
    for (const [name, value] of Object.entries(post.fields)) args.push('-F', `${name}=${value}`);
    args.push('-F', `KEY=${post.fields['key']}`, '-F', `file=@${path}`);
    const res = await curl(args);
    assert.equal(res.status, 400, res.body);
    assert.equal(s3Code(res.body), 'InvalidArgument');
  });

  test('a file above the policy range is 400 EntityTooLarge and nothing is stored', { skip }, async () => {
    const { upload, post } = await intent({ maxSize: 1024 });
    const before = (await objectFiles(w)).length;
    const res = await postForm(post, await file(randomBytes(200_000)));
    assert.equal(res.status, 400, res.body);
    assert.equal(s3Code(res.body), 'EntityTooLarge');
    assert.equal((await objectFiles(w)).length, before);
    assert.deepEqual(await tmpFiles(w), []);
    await assert.rejects(w.wharf.core.uploads.complete(principal, upload.id), { code: 'UPLOAD_INCOMPLETE' });
  });

  test('a file below the policy range is 400 EntityTooSmall and nothing is stored', { skip }, async () => {
    const { upload, post } = await intent();
    const before = (await objectFiles(w)).length;
    const fields = withConditions(post, [['content-length-range', 100, 1000]]);
    const res = await postForm(post, await file(randomBytes(10)), fields);
    assert.equal(res.status, 400, res.body);
    assert.equal(s3Code(res.body), 'EntityTooSmall');
    assert.equal((await objectFiles(w)).length, before);
    await assert.rejects(w.wharf.core.uploads.complete(principal, upload.id), { code: 'UPLOAD_INCOMPLETE' });
  });

  test('a tampered policy is 403 SignatureDoesNotMatch', { skip }, async () => {
    const { post } = await intent({ maxSize: 1024 });
    const document = JSON.parse(Buffer.from(post.fields['policy']!, 'base64').toString('utf8'));
    document.conditions = document.conditions.map((c: unknown) =>
      Array.isArray(c) && c[0] === 'content-length-range' ? ['content-length-range', 0, 10_000_000] : c,
    );
    const policy = Buffer.from(JSON.stringify(document)).toString('base64');
    const res = await postForm(post, await file(randomBytes(10)), { ...post.fields, policy });
    assert.equal(res.status, 403, res.body);
    assert.equal(s3Code(res.body), 'SignatureDoesNotMatch');
  });

  test('an expired policy is 403 AccessDenied "Policy expired."', { skip }, async () => {
    const { post } = await intent({ expiresInSeconds: 60 });
    w.clock.advance(61_000);
    const res = await postForm(post, await file(randomBytes(10)));
    assert.equal(res.status, 403, res.body);
    assert.equal(s3Code(res.body), 'AccessDenied');
    assert.match(res.body, /Invalid according to Policy: Policy expired\./);
  });

  test('a form that starts before the policy expires and ends after it is stored', { skip }, async () => {
    const { upload, post } = await intent({ expiresInSeconds: 60 });
    const bytes = randomBytes(100_000);
    const boundary = `----wharf${randomBytes(8).toString('hex')}`;
    const field = (name: string, value: string) =>
      `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
    const body = Buffer.concat([
      Buffer.from(
        Object.entries(post.fields)
          .map(([name, value]) => field(name, value))
          .join(''),
      ),
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n` +
          'Content-Type: image/jpeg\r\n\r\n',
      ),
      bytes,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const slow = heldLastByte(
      post.url,
      'POST',
      { 'content-type': `multipart/form-data; boundary=${boundary}` },
      body,
    );
    // The policy was checked and the file taken; it expires before the last byte. The held byte
    // is the form's closing boundary's, after the file's end: the file is written and stored
    // before it (its temp file lives a few milliseconds, which a poll could miss under load, and
    // did once in CI). Either is the sign.
    await eventually(
      async () => (await tmpFiles(w)).length > 0 || (await objectFiles(w)).includes(upload.storageKey),
      'the file is being written or stored',
    );
    w.clock.advance(61_000);
    slow.finish();
    assert.equal(await slow.status, 204, 'judged when the request began, as S3 judges it');
    const done = await w.wharf.core.uploads.complete(principal, upload.id);
    assert.equal(done.asset.sha256, sha256Hex(bytes));
  });

  test('a key other than the policy names is 403 AccessDenied', { skip }, async () => {
    const { post } = await intent();
    const other = await intent();
    const res = await postForm(post, await file(randomBytes(10)), {
      ...post.fields,
      key: other.post.fields['key']!,
    });
    assert.equal(res.status, 403, res.body);
    assert.equal(s3Code(res.body), 'AccessDenied');
    assert.match(res.body, /Policy Condition failed/);
  });

  test('a bound Content-Type must be sent as that field', { skip }, async () => {
    const { post } = await intent({ contentType: 'image/jpeg' });
    assert.equal(post.fields['Content-Type'], 'image/jpeg');
    const res = await postForm(post, await file(randomBytes(10)), {
      ...post.fields,
      'Content-Type': 'text/html',
    });
    assert.equal(res.status, 403, res.body);
    assert.equal(s3Code(res.body), 'AccessDenied');
    const ok = await postForm(post, await file(randomBytes(10)));
    assert.equal(ok.status, 204, ok.body);
  });

  test('a form that is not multipart is refused as S3 does', { skip }, async () => {
    const res = await curl(['-X', 'POST', `${w.url}/s3/wharf/`, '--data', 'key=x']);
    assert.equal(res.status, 400, res.body);
    assert.equal(s3Code(res.body), 'InvalidArgument');
  });
});
