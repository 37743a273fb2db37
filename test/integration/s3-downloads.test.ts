import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  DeleteBucketCommand,
  DeleteObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/blobs/s3-client.js';
import { createAsset, readJson } from '../helpers/assets.js';
import { curl } from '../helpers/curl.js';
import { api } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

const endpoint = process.env.WHARF_TEST_S3_ENDPOINT;
const skip = endpoint ? false : 'needs an S3 server: run via scripts/test.sh';

/** Response headers of a curl -D dump, names lower-cased (the last response's when -L). */
function headersOf(dump: string): Map<string, string> {
  const last =
    dump
      .trim()
      .split(/\r?\n\r?\n/)
      .pop() ?? '';
  return new Map(
    last
      .split(/\r?\n/)
      .slice(1)
      .map((line) => {
        const at = line.indexOf(':');
        return [line.slice(0, at).trim().toLowerCase(), line.slice(at + 1).trim()] as [string, string];
      }),
  );
}

describe('WHARF_S3_DOWNLOADS=redirect: downloads come from the bucket', { skip }, () => {
  // A bucket nobody made: Wharf creates it at start.
  const bucket = `wharf-redirect-${randomBytes(6).toString('hex')}`;
  const credentials = {
    accessKeyId: process.env.WHARF_TEST_S3_ACCESS_KEY_ID ?? '',
    secretAccessKey: process.env.WHARF_TEST_S3_SECRET_ACCESS_KEY ?? '',
  };
  const region = process.env.WHARF_TEST_S3_REGION ?? 'us-east-1';
  let w: TestWharf;
  let s3: S3Client;

  before(async () => {
    s3 = createS3Client({ endpoint, region, bucket, ...credentials, forcePathStyle: true });
    w = await startWharf({
      env: {
        WHARF_STORAGE: 's3',
        WHARF_S3_ENDPOINT: endpoint ?? '',
        WHARF_S3_REGION: region,
        WHARF_S3_BUCKET: bucket,
        WHARF_S3_ACCESS_KEY_ID: credentials.accessKeyId,
        WHARF_S3_SECRET_ACCESS_KEY: credentials.secretAccessKey,
        WHARF_S3_DOWNLOADS: 'redirect',
      },
    });
  });

  after(async () => {
    await w?.close();
    if (!s3) return;
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket })).catch(() => undefined);
    for (const object of listed?.Contents ?? []) {
      await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: object.Key }));
    }
    if (listed) await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
    s3.destroy();
  });

  test('the server created its bucket at start', async () => {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  });

  test('with a key: 302 to the bucket, which serves the bytes as an attachment when the type is active', async () => {
    const bytes = Buffer.from('<html><script>alert(document.domain)</script></html>');
    const asset = await createAsset(w, w.key, 'page.html', bytes, 'text/html');
    const res = await fetch(`${w.url}/v1/assets/${asset.id}/content`, {
      headers: { 'x-api-key': w.key },
      redirect: 'manual',
    });
    assert.equal(res.status, 302);
    const location = new URL(res.headers.get('location') ?? '');
    assert.equal(location.origin, new URL(endpoint!).origin);
    assert.equal(location.searchParams.get('X-Amz-Expires'), '300');

    const direct = await fetch(location);
    assert.equal(direct.status, 200);
    assert.ok(Buffer.from(await direct.arrayBuffer()).equals(bytes));
    assert.equal(direct.headers.get('content-type'), 'text/html');
    assert.equal(direct.headers.get('content-disposition'), 'attachment; filename="page.html"');
  });

  test('a name beyond ASCII: the bucket sends the same Content-Disposition, byte for byte, as streaming', async () => {
    const asset = await createAsset(w, w.key, 'café.txt', Buffer.from('latte'), 'text/plain');
    const res = await fetch(`${w.url}/v1/assets/${asset.id}/content`, {
      headers: { 'x-api-key': w.key },
      redirect: 'manual',
    });
    assert.equal(res.status, 302);
    const direct = await fetch(res.headers.get('location')!);
    assert.equal(direct.status, 200);
    assert.equal(
      direct.headers.get('content-disposition'),
      `inline; filename="cafe.txt"; filename*=UTF-8''caf%C3%A9.txt`,
    );
  });

  // Bearer rather than x-api-key: clients that follow redirects drop Authorization when the
  // origin changes, but forward custom headers to the store.
  test('curl -L follows the redirect; a Range goes to the bucket', async () => {
    const bytes = Buffer.from('0123456789abcdefghij');
    const asset = await createAsset(w, w.key, 'digits.txt', bytes, 'text/plain');
    const url = `${w.url}/v1/assets/${asset.id}/content`;
    const whole = await curl(['-L', '-H', `Authorization: Bearer ${w.key}`, url]);
    assert.equal(whole.status, 200);
    assert.equal(whole.body, bytes.toString());
    const headers = headersOf(whole.headers);
    assert.equal(headers.get('content-type'), 'text/plain');
    assert.equal(headers.get('content-disposition'), 'inline; filename="digits.txt"');

    const part = await curl(['-L', '-H', `Authorization: Bearer ${w.key}`, '-H', 'Range: bytes=5-9', url]);
    assert.equal(part.status, 206);
    assert.equal(part.body, '56789');
  });

  test('a signed URL redirects for no longer than it lives, with the disposition it was signed for', async () => {
    const bytes = randomBytes(2000);
    const asset = await createAsset(w, w.key, 'photo.png', bytes, 'image/png');
    const signed = await api(w.url, w.key, 'POST', `/v1/assets/${asset.id}/signed-url`, {
      expires_in: 120,
      disposition: 'attachment',
    });
    assert.equal(signed.status, 200);
    const res = await fetch(signed.body.url, { redirect: 'manual' });
    assert.equal(res.status, 302);
    const location = new URL(res.headers.get('location') ?? '');
    const lifetime = Number(location.searchParams.get('X-Amz-Expires'));
    assert.ok(lifetime > 0 && lifetime <= 120, `X-Amz-Expires=${lifetime}`);
    const direct = await fetch(location);
    assert.equal(direct.status, 200);
    assert.ok(Buffer.from(await direct.arrayBuffer()).equals(bytes));
    assert.equal(direct.headers.get('content-disposition'), 'attachment; filename="photo.png"');
  });

  test('a URL whose key was revoked redirects no more; a bucket URL already handed out lives on', async () => {
    const bytes = randomBytes(700);
    const asset = await createAsset(w, w.key, 'revoked.png', bytes, 'image/png');
    const signer = await w.newKey('member');
    const signed = await api(w.url, signer.key, 'POST', `/v1/assets/${asset.id}/signed-url`, {
      expires_in: 120,
    });
    assert.equal(signed.status, 200);
    const first = await fetch(signed.body.url, { redirect: 'manual' });
    assert.equal(first.status, 302);
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/keys/${signer.id}`)).status, 204);
    const again = await readJson(fetch(signed.body.url, { redirect: 'manual' }));
    assert.equal(again.status, 403);
    assert.equal(again.body.error.code, 'URL_REVOKED');
    assert.equal(again.headers.get('location'), null);
    // Signed with the storage credentials, not the key: Wharf cannot recall it (docs/scaling.md).
    const direct = await fetch(first.headers.get('location') ?? '');
    assert.equal(direct.status, 200);
    assert.ok(Buffer.from(await direct.arrayBuffer()).equals(bytes));
  });

  test('without a key or signature there is no redirect', async () => {
    const asset = await createAsset(w, w.key, 'secret.txt', 'secret', 'text/plain');
    const res = await fetch(`${w.url}/v1/assets/${asset.id}/content`, { redirect: 'manual' });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('location'), null);
  });
});
