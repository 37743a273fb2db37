import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type AssetJson, createAsset, uploadRaw } from '../helpers/assets.js';
import { curl } from '../helpers/curl.js';
import { putStrayObject, storedKeys } from '../helpers/deployment.js';
import { api, type JsonResponse, md5Hex, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// Seed 002: the ActiveStorage-style direct upload API, driven with the real curl binary.

let w: TestWharf;
let dir: string;
before(async () => {
  w = await startWharf();
  dir = await mkdtemp(join(tmpdir(), 'wharf-as-'));
});
after(async () => {
  await w?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const md5B64 = (b: Buffer) => createHash('md5').update(b).digest('base64');
const sha256B64 = (b: Buffer) => createHash('sha256').update(b).digest('base64');
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** The native asset as GET /v1/assets lists it, with its integer number. */
type NativeAsset = AssetJson & { number: number };

interface BlobJson {
  id: number;
  key: string;
  filename: string;
  content_type: string;
  metadata: Record<string, unknown>;
  service_name: string;
  byte_size: number;
  checksum: string;
  created_at: string;
  signed_id: string;
  direct_upload?: { url: string; headers: Record<string, string> };
}

/** The document's request, as curl sends it: JSON body, key in x-api-key. */
async function createBlob(blob: unknown, key = w.key): Promise<JsonResponse> {
  const res = await curl([
    '-X',
    'POST',
    '-H',
    `x-api-key: ${key}`,
    '-H',
    'Content-Type: application/json',
    '--data-binary',
    JSON.stringify({ blob }),
    `${w.url}/api/v1/upload/direct`,
  ]);
  return {
    status: res.status,
    headers: new Headers(),
    body: res.body === '' ? undefined : JSON.parse(res.body),
  };
}

/** PUT the file to direct_upload.url with exactly direct_upload.headers, as curl. */
async function putFile(upload: { url: string; headers: Record<string, string> }, bytes: Buffer) {
  const file = join(dir, `put-${randomBytes(4).toString('hex')}`);
  await writeFile(file, bytes);
  const headers = Object.entries(upload.headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  return curl(['-X', 'PUT', ...headers, '--data-binary', `@${file}`, upload.url]);
}

function getRecord(signedId: string, key = w.key) {
  return api(w.url, key, 'GET', `/api/v1/upload/blobs/${signedId}`);
}

/** The native API's view of the asset with this number (ids differ: the document's are integers). */
async function nativeByNumber(n: number, key = w.key) {
  const list = await api(w.url, key, 'GET', '/v1/assets?limit=1000');
  assert.equal(list.status, 200);
  return (list.body.data as NativeAsset[]).find((a) => a.number === n);
}

function assertRecordShape(r: BlobJson) {
  assert.ok(Number.isInteger(r.id) && r.id > 0, 'id is a positive integer');
  assert.equal(typeof r.key, 'string');
  assert.equal(typeof r.signed_id, 'string');
  assert.match(r.created_at, ISO);
  assert.deepEqual(r.metadata, {});
  assert.equal(r.service_name, w.wharf.core.endpoint ? 'local' : 's3');
}

function assertErrorResponse(body: Record<string, unknown>, status: number, code: string) {
  assert.deepEqual(Object.keys(body).sort(), ['detail', 'error', 'error_code']);
  assert.equal(typeof body.detail, 'string');
  assert.equal(body.error_code, code);
  assert.equal(
    body.error,
    { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 413: 'Payload Too Large' }[
      status
    ],
  );
}

describe('direct upload: POST, PUT, done', () => {
  test('MD5 checksum (what ActiveStorage clients send): every field, then the PUT makes the asset', async () => {
    const bytes = randomBytes(20_000);
    const checksum = md5B64(bytes);
    const res = await createBlob({
      filename: 'report.pdf',
      content_type: 'application/pdf',
      byte_size: bytes.length,
      checksum,
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const r = res.body as BlobJson;
    assertRecordShape(r);
    assert.deepEqual(Object.keys(r).sort(), [
      'byte_size',
      'checksum',
      'content_type',
      'created_at',
      'direct_upload',
      'filename',
      'id',
      'key',
      'metadata',
      'service_name',
      'signed_id',
    ]);
    assert.equal(r.filename, 'report.pdf');
    assert.equal(r.content_type, 'application/pdf');
    assert.equal(r.byte_size, bytes.length);
    assert.equal(r.checksum, checksum);
    assert.match(r.key, /\.pdf$/);
    assert.equal(Math.abs(Date.parse(r.created_at) - w.clock.now()) < 1000, true);
    const du = r.direct_upload!;
    assert.match(du.url, /^https?:\/\//);
    assert.equal(du.headers['Content-Type'], 'application/pdf');
    assert.equal(du.headers['Content-MD5'], checksum);
    assert.equal(du.headers['Content-Disposition'], 'inline; filename="report.pdf"');

    // Nothing exists until the bytes arrive; the record is already readable.
    assert.equal(await nativeByNumber(r.id), undefined);
    const early = await getRecord(r.signed_id);
    assert.equal(early.status, 200);
    assert.equal(early.body.id, r.id);
    assert.equal(early.body.direct_upload, undefined);

    const put = await putFile(du, bytes);
    assert.equal(put.status, 200, put.body);
    // No confirm step: storage holding the bytes is enough (the embedded endpoint completes on
    // the PUT; with S3, reconciliation does).
    await w.wharf.core.uploads.reconcile();
    const asset = await nativeByNumber(r.id);
    assert.ok(asset, 'the asset is visible through the native API');
    assert.equal(asset.sha256, sha256Hex(bytes));
    assert.equal(asset.md5, md5Hex(bytes));
    assert.equal(asset.name, 'report.pdf');
    assert.equal(asset.content_type, 'application/pdf');
    assert.equal(asset.size, bytes.length);

    const record = await getRecord(r.signed_id);
    assert.equal(record.status, 200);
    const { direct_upload: _du, ...withoutUpload } = r;
    assert.deepEqual(record.body, withoutUpload);

    // Rails' redirect URL: no key, the signed id is the credential.
    const redirect = await fetch(`${w.url}/rails/active_storage/blobs/redirect/${r.signed_id}/report.pdf`, {
      redirect: 'manual',
    });
    assert.equal(redirect.status, 302);
    const location = redirect.headers.get('location')!;
    assert.ok(location.startsWith(`${w.url}/v1/assets/${asset.id}/content?`), location);
    const download = await fetch(location);
    assert.equal(download.status, 200);
    assert.equal(sha256Hex(Buffer.from(await download.arrayBuffer())), sha256Hex(bytes));
    // A credential in the URL, like Rails' own: a page of any site may embed it.
    assert.equal(download.headers.get('cross-origin-resource-policy'), 'cross-origin');
  });

  test('SHA-256 checksum (the document’s example): bound by x-amz-checksum-sha256 instead of Content-MD5', async () => {
    const bytes = randomBytes(7_000);
    const checksum = sha256B64(bytes);
    const res = await createBlob({
      filename: 'n.txt',
      content_type: 'text/plain',
      byte_size: bytes.length,
      checksum,
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const r = res.body as BlobJson;
    assertRecordShape(r);
    assert.equal(r.checksum, checksum);
    assert.equal(r.direct_upload!.headers['Content-Type'], 'text/plain');
    assert.equal(r.direct_upload!.headers['Content-MD5'], undefined);
    assert.equal(r.direct_upload!.headers['x-amz-checksum-sha256'], checksum);
    const put = await putFile(r.direct_upload!, bytes);
    assert.equal(put.status, 200, put.body);
    const record = await getRecord(r.signed_id);
    assert.equal(record.status, 200);
    assert.equal(record.body.checksum, checksum);
    const asset = await nativeByNumber(r.id);
    assert.equal(asset?.sha256, sha256Hex(bytes));
  });

  test('byte_size as a numeric string is that number, as FastAPI (Pydantic’s lax mode) reads it', async () => {
    const bytes = randomBytes(12);
    const checksum = md5B64(bytes);
    for (const byteSize of ['12', ' 12\n', '+12', '012', '0_012', '12.0', '12.00']) {
      const res = await createBlob({
        filename: 'twelve.bin',
        content_type: 'application/octet-stream',
        byte_size: byteSize,
        checksum,
      });
      assert.equal(res.status, 200, `${JSON.stringify(byteSize)}: ${JSON.stringify(res.body)}`);
      const r = res.body as BlobJson;
      assert.equal(r.byte_size, 12, JSON.stringify(byteSize));
      assert.ok(r.direct_upload, JSON.stringify(byteSize));
    }
    // The declared size binds the PUT as a number's would.
    const r = (
      await createBlob({
        filename: 'twelve.bin',
        content_type: 'application/octet-stream',
        byte_size: '12',
        checksum,
      })
    ).body as BlobJson;
    assert.equal((await putFile(r.direct_upload!, bytes)).status, 200);
    const record = await getRecord(r.signed_id);
    assert.equal(record.status, 200);
    assert.equal(record.body.byte_size, 12);
    assert.equal((await nativeByNumber(r.id))?.sha256, sha256Hex(bytes));
  });

  test('bytes that do not match the checksum are refused; the right ones still go through', async () => {
    const bytes = randomBytes(4_096);
    const res = await createBlob({
      filename: 'x.bin',
      content_type: 'application/octet-stream',
      byte_size: bytes.length,
      checksum: md5B64(bytes),
    });
    const r = res.body as BlobJson;
    const wrong = randomBytes(4_096);
    const put = await putFile(r.direct_upload!, wrong);
    assert.ok(put.status >= 400 && put.status < 500, `storage refuses the body (${put.status})`);
    await w.wharf.core.uploads.reconcile();
    assert.equal(await nativeByNumber(r.id), undefined);
    const record = await getRecord(r.signed_id);
    assert.equal(record.status, 200, 'the record stays, waiting for the right bytes');
    const redirect = await fetch(`${w.url}/rails/active_storage/blobs/redirect/${r.signed_id}/x.bin`, {
      redirect: 'manual',
    });
    assert.equal(redirect.status, 404);
    assertErrorResponse(await redirect.json(), 404, 'NOT_FOUND');

    assert.equal((await putFile(r.direct_upload!, bytes)).status, 200);
    await getRecord(r.signed_id);
    assert.equal((await nativeByNumber(r.id))?.sha256, sha256Hex(bytes));
  });
});

describe('a SHA-256 upload sent the wrong bytes of the right size', () => {
  // Which of the two happens is the store's: Wharf's own endpoint and AWS S3 check
  // x-amz-checksum-sha256 at the PUT; Ceph RGW ignores it, so Wharf's completion finds it.
  test('refused at the PUT by a store that checks x-amz-checksum-sha256, else at completion; the right bytes then go through', async () => {
    const bytes = randomBytes(4_000);
    const r = (
      await createBlob({
        filename: 'g.bin',
        content_type: 'application/octet-stream',
        byte_size: bytes.length,
        checksum: sha256B64(bytes),
      })
    ).body as BlobJson;
    const redirectOf = () =>
      fetch(`${w.url}/rails/active_storage/blobs/redirect/${r.signed_id}/g.bin`, { redirect: 'manual' });
    const put = await putFile(r.direct_upload!, randomBytes(4_000));
    if (put.status === 200) {
      // What a Rails DirectUpload client sees: a successful upload, then a blob without a file.
      const first = await redirectOf();
      assert.equal(first.status, 400);
      assertErrorResponse(await first.json(), 400, 'CHECKSUM_MISMATCH');
      const record = await getRecord(r.signed_id);
      assert.equal(record.status, 200, 'the record stays, waiting for the right bytes');
      assert.equal(record.body.direct_upload, undefined);
    } else {
      assert.ok(put.status >= 400 && put.status < 500, `storage refuses the body (${put.status})`);
    }
    const redirect = await redirectOf();
    assert.equal(redirect.status, 404);
    assertErrorResponse(await redirect.json(), 404, 'NOT_FOUND');
    assert.equal(await nativeByNumber(r.id), undefined);

    assert.equal((await putFile(r.direct_upload!, bytes)).status, 200);
    assert.equal((await getRecord(r.signed_id)).status, 200);
    assert.equal((await nativeByNumber(r.id))?.sha256, sha256Hex(bytes));
  });
});

describe('lookup of content already uploaded', () => {
  test('same SHA-256 and size: the existing record, without direct_upload', async () => {
    const bytes = randomBytes(3_000);
    const first = (
      await createBlob({
        filename: 'orig.bin',
        content_type: 'application/octet-stream',
        byte_size: bytes.length,
        checksum: md5B64(bytes),
      })
    ).body as BlobJson;
    assert.equal((await putFile(first.direct_upload!, bytes)).status, 200);
    await w.wharf.core.uploads.reconcile();

    const again = await createBlob({
      filename: 'copy.bin',
      content_type: 'application/octet-stream',
      byte_size: bytes.length,
      checksum: sha256B64(bytes),
    });
    assert.equal(again.status, 200);
    const r = again.body as BlobJson;
    assertRecordShape(r);
    assert.equal(r.direct_upload, undefined);
    assert.equal('direct_upload' in r, false);
    assert.equal(r.id, first.id);
    assert.equal(r.key, first.key);
    assert.equal(r.filename, 'orig.bin', 'the record of the content, under its first name');
    assert.equal(r.byte_size, bytes.length);
    assert.equal(r.checksum, sha256B64(bytes));
    const record = await getRecord(r.signed_id);
    assert.equal(record.status, 200);
    assert.equal(record.body.id, first.id);
  });

  test('an MD5 never stands for content: another file with the same MD5 is sent and stored as itself', async () => {
    // The classic MD5 collision pair (Wang et al.): same MD5 and size, different bytes.
    const twinA = Buffer.from(
      'd131dd02c5e6eec4693d9a0698aff95c2fcab58712467eab4004583eb8fb7f8955ad340609f4b30283e488832571415a085125e8f7cdc99fd91dbdf280373c5bd8823e3156348f5bae6dacd436c919c6dd53e2b487da03fd02396306d248cda0e99f33420f577ee8ce54b67080a80d1ec69821bcb6a8839396f9652b6ff72a70',
      'hex',
    );
    const twinB = Buffer.from(
      'd131dd02c5e6eec4693d9a0698aff95c2fcab50712467eab4004583eb8fb7f8955ad340609f4b30283e4888325f1415a085125e8f7cdc99fd91dbd7280373c5bd8823e3156348f5bae6dacd436c919c6dd53e23487da03fd02396306d248cda0e99f33420f577ee8ce54b67080280d1ec69821bcb6a8839396f965ab6ff72a70',
      'hex',
    );
    assert.equal(md5B64(twinA), md5B64(twinB));
    assert.notEqual(sha256Hex(twinA), sha256Hex(twinB));
    const declare = (filename: string) =>
      createBlob({
        filename,
        content_type: 'application/octet-stream',
        byte_size: 128,
        checksum: md5B64(twinA),
      });
    const planted = (await declare('evil-twin.bin')).body as BlobJson;
    assert.equal((await putFile(planted.direct_upload!, twinB)).status, 200);
    // Right after the PUT (on S3 nothing has told Wharf of it), and after it completed.
    const early = (await declare('mine.bin')).body as BlobJson;
    assert.ok(early.direct_upload, 'the file is asked for');
    await w.wharf.core.uploads.reconcile();
    const mine = (await declare('mine.bin')).body as BlobJson;
    assert.ok(mine.direct_upload, 'still asked for once the other is stored');
    assert.notEqual(mine.id, planted.id);
    assert.equal((await putFile(mine.direct_upload!, twinA)).status, 200);
    await w.wharf.core.uploads.reconcile();
    const redirect = await fetch(`${w.url}/rails/active_storage/blobs/redirect/${mine.signed_id}/mine.bin`);
    assert.equal(redirect.status, 200);
    assert.ok(Buffer.from(await redirect.arrayBuffer()).equals(twinA), 'its own bytes, not its twin');
  });

  test('declared again before its bytes arrive: a second upload; after they arrive, one record for both', async () => {
    const bytes = randomBytes(4_000);
    const declare = () =>
      createBlob({
        filename: 'twice.bin',
        content_type: 'application/octet-stream',
        byte_size: bytes.length,
        checksum: sha256B64(bytes),
      });
    const first = (await declare()).body as BlobJson;
    const second = (await declare()).body as BlobJson;
    assert.ok(first.direct_upload && second.direct_upload, 'nothing has arrived yet: both get a URL');
    assert.notEqual(second.id, first.id);

    assert.equal((await putFile(second.direct_upload!, bytes)).status, 200);
    const third = await declare();
    assert.equal(third.status, 200);
    assert.equal('direct_upload' in third.body, false, JSON.stringify(third.body));
    assert.equal(third.body.id, second.id, 'the upload whose bytes arrived');
    assert.equal(third.body.key, second.key);
    const asset = await nativeByNumber(second.id);
    assert.equal(asset?.sha256, sha256Hex(bytes));
    assert.equal((await getRecord(second.signed_id)).body.id, second.id);
  });

  test('an MD5 upload of content the account holds: its record names that asset and the key holding it', async () => {
    // Rails' DirectUpload always declares an MD5, which never finds content: the file is sent
    // and deduplicated as it completes. Its record used to keep the upload's own number and
    // key, which the deduplication had just freed (a key holding nothing, an id no asset has).
    const bytes = randomBytes(2_200);
    const held = (await createAsset(w, w.key, 'held.bin', bytes)) as NativeAsset;
    const declared = await createBlob({
      filename: 'again.bin',
      content_type: 'application/octet-stream',
      byte_size: bytes.length,
      checksum: md5B64(bytes),
    });
    assert.equal(declared.status, 200, JSON.stringify(declared.body));
    const blob = declared.body as BlobJson;
    assert.ok(blob.direct_upload, 'an MD5 never stands for content: the file is asked for');
    assert.equal((await putFile(blob.direct_upload!, bytes)).status, 200);
    await w.wharf.core.uploads.reconcile();

    const record = await getRecord(blob.signed_id);
    assert.equal(record.status, 200, JSON.stringify(record.body));
    const r = record.body as BlobJson;
    const bySha = (
      await createBlob({
        filename: 'lookup.bin',
        content_type: 'application/octet-stream',
        byte_size: bytes.length,
        checksum: sha256B64(bytes),
      })
    ).body as BlobJson;
    assert.equal(r.id, held.number, 'the number the asset keeps');
    assert.equal(r.key, bySha.key, 'the key a SHA-256 lookup of the same bytes gives');
    assert.notEqual(r.key, blob.key);
    const stored = await storedKeys(w);
    assert.ok(stored.includes(r.key), 'the key holds the bytes');
    assert.ok(!stored.includes(blob.key), 'the upload’s own key was freed');
    assert.equal(r.filename, 'again.bin', 'the blob’s own name, as its redirect serves it');
    assert.equal(r.signed_id, blob.signed_id);
    const redirect = await fetch(`${w.url}/rails/active_storage/blobs/redirect/${r.signed_id}/again.bin`);
    assert.equal(redirect.status, 200);
    assert.ok(Buffer.from(await redirect.arrayBuffer()).equals(bytes));
  });

  test('content uploaded through the native API is found by its checksum', async () => {
    const bytes = randomBytes(2_500);
    const asset = await createAsset(w, w.key, 'native.png', bytes, 'image/png');
    const res = await createBlob({
      filename: 'other.png',
      content_type: 'image/png',
      byte_size: bytes.length,
      checksum: sha256B64(bytes),
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.id, (asset as NativeAsset).number);
    assert.equal(res.body.filename, 'native.png');
    assert.equal(res.body.direct_upload, undefined);
    const redirect = await fetch(
      `${w.url}/rails/active_storage/blobs/redirect/${res.body.signed_id}/native.png?disposition=attachment`,
      { redirect: 'manual' },
    );
    assert.equal(redirect.status, 302);
    assert.match(
      redirect.headers.get('location')!,
      new RegExp(`/v1/assets/${asset.id}/content\\?.*disposition=attachment`),
    );
  });

  test('same checksum, different size: a new upload', async () => {
    const bytes = randomBytes(1_000);
    await createAsset(w, w.key, 'sized.bin', bytes);
    const res = await createBlob({
      filename: 'sized.bin',
      content_type: 'application/octet-stream',
      byte_size: bytes.length + 1,
      checksum: md5B64(bytes),
    });
    assert.equal(res.status, 200);
    assert.ok(res.body.direct_upload);
  });

  test('another account’s content is not found', async () => {
    const other = await w.newAccount();
    const bytes = randomBytes(1_500);
    await createAsset(w, w.key, 'mine.bin', bytes);
    const res = await createBlob(
      {
        filename: 'mine.bin',
        content_type: 'application/octet-stream',
        byte_size: bytes.length,
        checksum: md5B64(bytes),
      },
      other.key,
    );
    assert.equal(res.status, 200);
    assert.ok(res.body.direct_upload, 'a fresh upload in the other account');
  });
});

describe('a caller that reads only its own uploads', () => {
  test('the redirect of its blob names its own file, not the first uploader of the same bytes', async () => {
    const bytes = Buffer.from(`top secret payroll ${randomBytes(6).toString('hex')}`);
    const first = await uploadRaw(w, w.key, 'payroll-ceo.txt', bytes, { contentType: 'text/plain' });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const uploader = await api(w.url, w.key, 'POST', '/v1/keys', {
      name: 'uploads only',
      scopes: ['upload'],
    });
    const mine = await createBlob(
      { filename: 'mine.txt', content_type: 'text/plain', byte_size: bytes.length, checksum: md5B64(bytes) },
      uploader.body.secret,
    );
    assert.equal(mine.status, 200, JSON.stringify(mine.body));
    const blob = mine.body as BlobJson;
    assert.ok(blob.direct_upload, 'a pending upload: it is not told the account holds the bytes');
    assert.equal((await putFile(blob.direct_upload, bytes)).status, 200);
    assert.equal((await getRecord(blob.signed_id, uploader.body.secret)).body.filename, 'mine.txt');
    const redirect = await fetch(`${w.url}/rails/active_storage/blobs/redirect/${blob.signed_id}/mine.txt`, {
      redirect: 'manual',
    });
    assert.equal(redirect.status, 302);
    const served = await fetch(new URL(redirect.headers.get('location')!, w.url));
    assert.equal(served.status, 200);
    const disposition = served.headers.get('content-disposition') ?? '';
    assert.match(disposition, /mine\.txt/);
    assert.doesNotMatch(disposition, /payroll/);
  });
});

describe('content another caller’s upload has just stored', () => {
  // Bytes at an upload's key that nothing has completed yet: what the embedded endpoint holds
  // for a moment during a PUT, and an S3 bucket until the sweep or a lookup notices them.
  async function arrivedUnnoticed(filename: string, bytes: Buffer, key = w.key): Promise<BlobJson> {
    const declared = await createBlob(
      {
        filename,
        content_type: 'application/octet-stream',
        byte_size: bytes.length,
        checksum: sha256B64(bytes),
      },
      key,
    );
    assert.equal(declared.status, 200, JSON.stringify(declared.body));
    const blob = declared.body as BlobJson;
    assert.ok(blob.direct_upload);
    await putStrayObject(w, blob.key, bytes);
    return blob;
  }

  test('is not answered to a caller that cannot see the whole account: it gets an upload of its own', async () => {
    const bytes = randomBytes(4_000);
    const payroll = await arrivedUnnoticed('payroll.bin', bytes);
    const token = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {});
    const uploadOnly = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'uploads', scopes: ['upload'] });
    const confined = await api(w.url, w.key, 'POST', '/v1/keys', {
      name: 'inbox',
      scopes: ['read', 'upload'],
      name_prefix: 'inbox-',
    });
    for (const [label, key] of [
      ['an upload token', token.body.secret],
      ['an upload-only key', uploadOnly.body.secret],
      ['a key confined by name_prefix', confined.body.secret],
    ] as const) {
      const res = await createBlob(
        {
          filename: 'inbox-guess.bin',
          content_type: 'application/octet-stream',
          byte_size: bytes.length,
          checksum: sha256B64(bytes),
        },
        key,
      );
      assert.equal(res.status, 200, `${label}: ${JSON.stringify(res.body)}`);
      const r = res.body as BlobJson;
      assert.ok(r.direct_upload, `${label}: asked for the file`);
      assert.notEqual(r.id, payroll.id, label);
      assert.equal(r.filename, 'inbox-guess.bin', label);
    }
    // Still the uploader's to complete: its own declaration of the content finds it.
    const again = await createBlob({
      filename: 'again.bin',
      content_type: 'application/octet-stream',
      byte_size: bytes.length,
      checksum: sha256B64(bytes),
    });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal('direct_upload' in again.body, false);
    assert.equal(again.body.id, payroll.id);
    assert.equal(again.body.filename, 'payroll.bin');
  });

  test('bytes that arrived in time complete however late they are looked at: a Wharf down for longer than the hour loses none', async () => {
    const bytes = randomBytes(3_000);
    const blob = await arrivedUnnoticed('late-look.bin', bytes);
    const redirect = () =>
      fetch(`${w.url}/rails/active_storage/blobs/redirect/${blob.signed_id}/late-look.bin`, {
        redirect: 'manual',
      });
    const now = w.clock.now();
    try {
      // Past the upload's expiry and the hour after it; no sweep has run.
      w.clock.advance(2 * 24 * 3600_000);
      assert.equal(
        (await redirect()).status,
        302,
        'the look completes it: its bytes could only arrive in time',
      );
      await w.wharf.core.uploads.sweep();
      assert.ok(
        (await storedKeys(w)).includes(blob.key),
        'the sweep keeps the bytes of the completed upload',
      );
      assert.equal((await redirect()).status, 302);
    } finally {
      w.clock.set(now);
    }
  });

  test('a caller’s own upload is completed for it, and answered as its own upload declared it', async () => {
    const bytes = Buffer.from(`ceo payroll ${randomBytes(6).toString('hex')}`);
    assert.equal((await uploadRaw(w, w.key, 'payroll-ceo.bin', bytes)).status, 201);
    const token = (await api(w.url, w.key, 'POST', '/v1/upload-tokens', {})).body.secret;
    const mine = await arrivedUnnoticed('mine.bin', bytes, token);
    const again = await createBlob(
      {
        filename: 'mine.bin',
        content_type: 'application/octet-stream',
        byte_size: bytes.length,
        checksum: sha256B64(bytes),
      },
      token,
    );
    assert.equal(again.status, 200, JSON.stringify(again.body));
    const r = again.body as BlobJson;
    assert.equal('direct_upload' in r, false, 'its bytes have arrived');
    assert.equal(r.signed_id, mine.signed_id, 'its own upload’s record');
    assert.equal(r.filename, 'mine.bin');
    const redirect = await fetch(`${w.url}/rails/active_storage/blobs/redirect/${r.signed_id}/mine.bin`, {
      redirect: 'manual',
    });
    assert.equal(redirect.status, 302);
    // Stored into the content the account held: the number and key are that asset's, as the
    // native API shows this caller its asset (its own name, never the first uploader's).
    const assetId = /\/v1\/assets\/([^/]+)\/content/.exec(redirect.headers.get('location')!)![1];
    const native = await api(w.url, token, 'GET', `/v1/assets/${assetId}`);
    assert.equal(native.status, 200, JSON.stringify(native.body));
    assert.equal(native.body.name, 'mine.bin');
    assert.equal(r.id, native.body.number);
    assert.ok((await storedKeys(w)).includes(r.key), 'the key holds the bytes');
    const served = await fetch(new URL(redirect.headers.get('location')!, w.url));
    assert.equal(served.status, 200);
    assert.ok(Buffer.from(await served.arrayBuffer()).equals(bytes));
    assert.doesNotMatch(served.headers.get('content-disposition') ?? '', /payroll/);
  });
});

describe('reading the record of an upload whose bytes arrived', () => {
  test('completes it for any key that may read it (no confirm step to keep for the upload scope)', async () => {
    const bytes = randomBytes(3_000);
    const declared = await createBlob({
      filename: 'looked-at.bin',
      content_type: 'application/octet-stream',
      byte_size: bytes.length,
      checksum: md5B64(bytes),
    });
    const blob = declared.body as BlobJson;
    await putStrayObject(w, blob.key, bytes);
    const stranger = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'stranger', scopes: ['upload'] });
    const unseen = await getRecord(blob.signed_id, stranger.body.secret);
    assert.equal(unseen.status, 404, 'not its upload');
    assertErrorResponse(unseen.body, 404, 'NOT_FOUND');
    assert.equal(await nativeByNumber(blob.id), undefined, 'nor completed by its look');
    const reader = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'reader', scopes: ['read'] });
    const record = await getRecord(blob.signed_id, reader.body.secret);
    assert.equal(record.status, 200, JSON.stringify(record.body));
    assert.equal(record.body.id, blob.id);
    assert.equal((await nativeByNumber(blob.id))?.sha256, sha256Hex(bytes));
  });
});

describe('signed ids', () => {
  let good: BlobJson;
  before(async () => {
    const bytes = randomBytes(500);
    good = (
      await createBlob({
        filename: 's.bin',
        content_type: 'application/octet-stream',
        byte_size: bytes.length,
        checksum: md5B64(bytes),
      })
    ).body as BlobJson;
    assert.equal((await putFile(good.direct_upload!, bytes)).status, 200);
  });

  function forgeries(): string[] {
    const [body, mac] = good.signed_id.split('--') as [string, string];
    const payload = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    // Point the token at another record, keeping the old MAC.
    payload._wharf.id = payload._wharf.id.replace(/^u:/, 'a:');
    const retargeted = Buffer.from(JSON.stringify(payload)).toString('base64url');
    const flipped = mac.slice(0, -1) + (mac.endsWith('0') ? '1' : '0');
    return [`${body}--${flipped}`, `${retargeted}--${mac}`, 'garbage', `${body}--`, `--${mac}`];
  }

  test('a tampered or made-up signed id is refused with 404 and the ErrorResponse shape', async () => {
    for (const forged of forgeries()) {
      const record = await getRecord(encodeURIComponent(forged));
      assert.equal(record.status, 404, forged);
      assertErrorResponse(record.body, 404, 'NOT_FOUND');
      const redirect = await fetch(
        `${w.url}/rails/active_storage/blobs/redirect/${encodeURIComponent(forged)}/s.bin`,
        { redirect: 'manual' },
      );
      assert.equal(redirect.status, 404, forged);
      assertErrorResponse(await redirect.json(), 404, 'NOT_FOUND');
    }
  });

  test('any length up to 500 that is not a signed id is 404 (record and redirect); longer is 414', async () => {
    const [body, mac] = good.signed_id.split('--') as [string, string];
    const padded = (n: number) => `${body}${'A'.repeat(n - good.signed_id.length)}--${mac}`;
    for (const forged of ['a'.repeat(401), 'a'.repeat(450), 'a'.repeat(500), padded(401), padded(500)]) {
      const label = `${forged.length} characters`;
      const record = await getRecord(forged);
      assert.equal(record.status, 404, label);
      assertErrorResponse(record.body, 404, 'NOT_FOUND');
      const redirect = await fetch(`${w.url}/rails/active_storage/blobs/redirect/${forged}/s.bin`, {
        redirect: 'manual',
      });
      assert.equal(redirect.status, 404, label);
      assertErrorResponse(await redirect.json(), 404, 'NOT_FOUND');
    }
    const tooLong = 'a'.repeat(501);
    for (const res of [
      await getRecord(tooLong),
      await api(w.url, undefined, 'GET', `/rails/active_storage/blobs/redirect/${tooLong}/s.bin`),
    ]) {
      assert.equal(res.status, 414);
      assert.deepEqual(Object.keys(res.body).sort(), ['detail', 'error', 'error_code']);
      assert.equal(res.body.error_code, 'URI_TOO_LONG');
    }
  });

  test('a signed id of another account reads as missing with this account’s key', async () => {
    const other = await w.newAccount();
    const record = await getRecord(good.signed_id, other.key);
    assert.equal(record.status, 404);
    assertErrorResponse(record.body, 404, 'NOT_FOUND');
  });

  test('a signed id made under a previous server secret opens its blob while that secret is known', async () => {
    const secret = () => randomBytes(32).toString('base64url');
    /** A blob made and uploaded on `server`, and how the record and redirect of a signed id answer there. */
    const blobOn = async (server: TestWharf) => {
      const bytes = randomBytes(300);
      const made = await api(server.url, server.key, 'POST', '/api/v1/upload/direct', {
        blob: {
          filename: 'kept.bin',
          content_type: 'application/octet-stream',
          byte_size: bytes.length,
          checksum: md5B64(bytes),
        },
      });
      assert.equal(made.status, 200, JSON.stringify(made.body));
      assert.equal((await putFile(made.body.direct_upload, bytes)).status, 200);
      return made.body as BlobJson;
    };
    const opens = async (server: TestWharf, signedId: string) => {
      const record = await api(server.url, server.key, 'GET', `/api/v1/upload/blobs/${signedId}`);
      const redirect = await fetch(`${server.url}/rails/active_storage/blobs/redirect/${signedId}/kept.bin`, {
        redirect: 'manual',
      });
      return { record, redirect: redirect.status };
    };

    const s1 = secret();
    const first = await startWharf({ env: { WHARF_SECRET: s1 } });
    try {
      const blob = await blobOn(first);
      const s2 = secret();
      const rotated = await startWharf({
        sharing: first,
        clock: first.clock,
        env: { WHARF_SECRET: s2, WHARF_SECRET_PREVIOUS: s1 },
      });
      let fresh: string;
      try {
        const { record, redirect } = await opens(rotated, blob.signed_id);
        assert.equal(record.status, 200, JSON.stringify(record.body));
        assert.equal(record.body.id, blob.id);
        assert.equal(redirect, 302);
        // The record hands out the blob's signed id under the new secret.
        fresh = record.body.signed_id;
        assert.notEqual(fresh, blob.signed_id);
      } finally {
        await rotated.close();
      }
      // Once the old secret is no longer given, only signed ids made under the new one open.
      const later = await startWharf({ sharing: first, clock: first.clock, env: { WHARF_SECRET: s2 } });
      try {
        assert.equal((await opens(later, blob.signed_id)).record.status, 404);
        assert.equal((await opens(later, fresh)).record.status, 200);
      } finally {
        await later.close();
      }
    } finally {
      await first.close();
    }

    // The generated secret WHARF_SECRET replaces stays in the database and keeps verifying.
    const generated = await startWharf();
    try {
      const blob = await blobOn(generated);
      const set = await startWharf({
        sharing: generated,
        clock: generated.clock,
        env: { WHARF_SECRET: secret() },
      });
      try {
        const { record, redirect } = await opens(set, blob.signed_id);
        assert.equal(record.status, 200, JSON.stringify(record.body));
        assert.equal(redirect, 302);
      } finally {
        await set.close();
      }
    } finally {
      await generated.close();
    }
  });

  test('the record route needs a key; the redirect does not', async () => {
    const res = await curl([`${w.url}/api/v1/upload/blobs/${good.signed_id}`]);
    assert.equal(res.status, 401);
    assertErrorResponse(JSON.parse(res.body), 401, 'UNAUTHORIZED');
    const redirect = await curl([`${w.url}/rails/active_storage/blobs/redirect/${good.signed_id}/s.bin`]);
    assert.equal(redirect.status, 302);
  });
});

describe('errors', () => {
  const valid = {
    filename: 'a.txt',
    content_type: 'text/plain',
    byte_size: 3,
    checksum: md5B64(Buffer.from('abc')),
  };

  test('missing fields: 422 with FastAPI’s detail list, in field order', async () => {
    const res = await createBlob({ byte_size: 3 });
    assert.equal(res.status, 422);
    assert.deepEqual(res.body, {
      detail: [
        {
          loc: ['body', 'blob', 'filename'],
          msg: 'Field required',
          type: 'missing',
        },
        {
          loc: ['body', 'blob', 'content_type'],
          msg: 'Field required',
          type: 'missing',
        },
        {
          loc: ['body', 'blob', 'checksum'],
          msg: 'Field required',
          type: 'missing',
        },
      ],
    });
    const noBlob = await curl([
      '-H',
      `x-api-key: ${w.key}`,
      '-H',
      'Content-Type: application/json',
      '-d',
      '{}',
      `${w.url}/api/v1/upload/direct`,
    ]);
    assert.equal(noBlob.status, 422);
    assert.deepEqual(JSON.parse(noBlob.body), {
      detail: [{ loc: ['body', 'blob'], msg: 'Field required', type: 'missing' }],
    });
  });

  test('what a client sent is echoed as `input` only when it is one field’s short scalar', async () => {
    // Pydantic would echo these objects (and a 10 KB string) whole.
    const nested = await createBlob({ ...valid, filename: { a: [1, 2, 3] }, byte_size: [3] });
    assert.equal(nested.status, 422);
    assert.deepEqual(
      nested.body.detail.map((d: { loc: string[]; type: string; input?: unknown }) => [
        d.loc.at(-1),
        d.type,
        'input' in d,
      ]),
      [
        ['filename', 'string_type', false],
        ['byte_size', 'int_type', false],
      ],
    );
    const long = 'x'.repeat(10_000);
    const longName = await createBlob({ ...valid, filename: long });
    assert.equal(longName.status, 422);
    assert.equal(longName.body.detail[0].type, 'value_error');
    assert.ok(!('input' in longName.body.detail[0]));
    const broken = await curl([
      '-H',
      `x-api-key: ${w.key}`,
      '-H',
      'Content-Type: application/json',
      '-d',
      '{"blob": SECRET-LOOKING-TEXT}',
      `${w.url}/api/v1/upload/direct`,
    ]);
    assert.equal(broken.status, 422);
    assert.ok(!broken.body.includes('SECRET'), broken.body);
  });

  test('a deeply nested body is a 422 without echo, never a 500 (typed or not)', async () => {
    const depth = 100_000;
    const bodies = {
      arrays: `{"blob": ${'['.repeat(depth)}${']'.repeat(depth)}}`,
      objects: `{"blob": {"filename": ${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}}`,
      'extra field': `{"blob": ${JSON.stringify(valid).slice(0, -1)}, "x": ${'['.repeat(depth)}${']'.repeat(depth)}}}`,
    };
    for (const [label, body] of Object.entries(bodies)) {
      for (const type of ['application/json', undefined]) {
        const res = await fetch(`${w.url}/api/v1/upload/direct`, {
          method: 'POST',
          headers: { 'x-api-key': w.key, ...(type && { 'content-type': type }) },
          // Bytes, not a string: fetch would label a string text/plain.
          body: new TextEncoder().encode(body),
        });
        const text = await res.text();
        // Nesting past 64 levels is refused before the body is parsed, in an extra field too:
        // parsing it would hold the event loop for every request.
        assert.equal(res.status, 422, `${label}, ${type}: ${text.slice(0, 300)}`);
        assert.ok(text.length < 1000, `${label}: a short answer, not the body again (${text.length})`);
      }
    }
  });

  test('`__proto__` and `constructor` keys are refused as JSON the server will not read, typed or not', async () => {
    for (const body of [
      '{"blob": {"__proto__": {"x": 1}}}',
      '{"blob": {"constructor": {"prototype": {"x": 1}}}}',
    ]) {
      for (const type of ['application/json', undefined]) {
        const res = await fetch(`${w.url}/api/v1/upload/direct`, {
          method: 'POST',
          headers: { 'x-api-key': w.key, ...(type && { 'content-type': type }) },
          // Bytes, not a string: fetch would label a string text/plain.
          body: new TextEncoder().encode(body),
        });
        const answer = (await res.json()) as { detail: Array<{ type: string }> };
        assert.equal(res.status, 422, `${body} ${type}`);
        assert.equal(answer.detail[0]!.type, 'json_invalid');
      }
    }
  });

  test('a caller without a valid key gets 401 before its body is read or checked', async () => {
    // Over the 1 MiB body limit: a server that read it first would answer 413.
    const huge = `{"blob": {"filename": "${'a'.repeat(2 * 1024 * 1024)}"}}`;
    for (const [label, body] of [
      ['invalid JSON', '{"blob":'],
      ['a body that fails validation', '{"blob": {}}'],
      ['a body over the size limit', huge],
    ] as const) {
      for (const key of [undefined, 'wharf_not_a_key_at_all_000000']) {
        const res = await fetch(`${w.url}/api/v1/upload/direct`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(key && { 'x-api-key': key }) },
          body,
        });
        assert.equal(res.status, 401, `${label}, key ${key}`);
        assertErrorResponse((await res.json()) as Record<string, unknown>, 401, 'UNAUTHORIZED');
      }
    }
  });

  test('wrong types: int_parsing, int_from_float, string_type, model_attributes_type', async () => {
    const res = await createBlob({ ...valid, filename: 7, byte_size: 'abc' });
    assert.equal(res.status, 422);
    assert.deepEqual(res.body, {
      detail: [
        {
          loc: ['body', 'blob', 'filename'],
          msg: 'Input should be a valid string',
          type: 'string_type',
          input: 7,
        },
        {
          loc: ['body', 'blob', 'byte_size'],
          msg: 'Input should be a valid integer, unable to parse string as an integer',
          type: 'int_parsing',
          input: 'abc',
        },
      ],
    });
    const fraction = await createBlob({ ...valid, byte_size: 1.5 });
    assert.deepEqual(fraction.body.detail, [
      {
        loc: ['body', 'blob', 'byte_size'],
        msg: 'Input should be a valid integer, got a number with a fractional part',
        type: 'int_from_float',
        input: 1.5,
      },
    ]);
    const notObject = await createBlob('a string');
    assert.deepEqual(notObject.body.detail, [
      {
        loc: ['body', 'blob'],
        msg: 'Input should be a valid dictionary or object to extract fields from',
        type: 'model_attributes_type',
        input: 'a string',
      },
    ]);
    const negative = await createBlob({ ...valid, byte_size: -1 });
    assert.equal(negative.status, 422);
    assert.equal(negative.body.detail[0].type, 'greater_than_equal');
    assert.deepEqual(negative.body.detail[0].loc, ['body', 'blob', 'byte_size']);
  });

  test('byte_size strings that are not integers stay int_parsing; numeric ones meet the bounds numbers meet', async () => {
    for (const byteSize of ['12.5', '12.', '1e3', '0x10', '_12', '12_', '1__2', '1 2', '', ' ', 'abc']) {
      const res = await createBlob({ ...valid, byte_size: byteSize });
      assert.equal(res.status, 422, JSON.stringify(byteSize));
      assert.deepEqual(
        res.body.detail,
        [
          {
            loc: ['body', 'blob', 'byte_size'],
            msg: 'Input should be a valid integer, unable to parse string as an integer',
            type: 'int_parsing',
            input: byteSize,
          },
        ],
        JSON.stringify(byteSize),
      );
    }
    // Refused as the number it reads as, echoed as sent.
    const negative = await createBlob({ ...valid, byte_size: '-1' });
    assert.equal(negative.status, 422);
    assert.deepEqual(negative.body.detail, [
      {
        loc: ['body', 'blob', 'byte_size'],
        msg: 'Input should be greater than or equal to 0',
        type: 'greater_than_equal',
        input: '-1',
        ctx: { ge: 0 },
      },
    ]);
    for (const huge of ['99999999999999999999', '9'.repeat(400), 1e20]) {
      const res = await createBlob({ ...valid, byte_size: huge });
      assert.equal(res.status, 422, String(huge));
      assert.equal(res.body.detail.length, 1);
      assert.deepEqual(res.body.detail[0].loc, ['body', 'blob', 'byte_size']);
      assert.equal(res.body.detail[0].type, 'value_error', String(huge));
    }
  });

  test('values the checks refuse: checksum of neither length, a bad file name, a bad type', async () => {
    for (const [field, value] of [
      ['checksum', 'abc'],
      ['checksum', `${'!'.repeat(22)}==`],
      ['filename', 'a/b.txt'],
      ['content_type', 'not a type'],
    ] as const) {
      const res = await createBlob({ ...valid, [field]: value });
      assert.equal(res.status, 422, `${field}=${value}`);
      assert.equal(res.body.detail.length, 1);
      const [d] = res.body.detail;
      assert.deepEqual(d.loc, ['body', 'blob', field]);
      assert.equal(d.type, 'value_error');
      assert.match(d.msg, /^Value error, /);
      // A checksum is base64 only: the message never offers hex (h93).
      if (field === 'checksum') assert.match(d.msg, /base64 MD5 \(24 characters\)/);
      assert.doesNotMatch(d.msg, /hex/);
      assert.equal(d.input, value);
    }
  });

  test('a body that is not JSON, or no body at all', async () => {
    const broken = await curl([
      '-H',
      `x-api-key: ${w.key}`,
      '-H',
      'Content-Type: application/json',
      '-d',
      '{"blob":',
      `${w.url}/api/v1/upload/direct`,
    ]);
    assert.equal(broken.status, 422);
    const detail = JSON.parse(broken.body).detail;
    assert.equal(detail[0].type, 'json_invalid');
    assert.equal(detail[0].msg, 'JSON decode error');
    assert.deepEqual(detail[0].loc, ['body']);

    const empty = await curl(['-X', 'POST', '-H', `x-api-key: ${w.key}`, `${w.url}/api/v1/upload/direct`]);
    assert.equal(empty.status, 422);
    assert.deepEqual(JSON.parse(empty.body), {
      detail: [{ loc: ['body'], msg: 'Field required', type: 'missing', input: null }],
    });

    // Without Content-Type, FastAPI still reads the body as JSON.
    const untyped = await curl([
      '-H',
      `x-api-key: ${w.key}`,
      '-H',
      'Content-Type:',
      '-d',
      JSON.stringify({ blob: valid }),
      `${w.url}/api/v1/upload/direct`,
    ]);
    assert.equal(untyped.status, 200, untyped.body);
  });

  test('no key, a wrong key, a disabled account, a file over the limit: ErrorResponse', async () => {
    const none = await curl([
      '-H',
      'Content-Type: application/json',
      '-d',
      JSON.stringify({ blob: valid }),
      `${w.url}/api/v1/upload/direct`,
    ]);
    assert.equal(none.status, 401);
    assertErrorResponse(JSON.parse(none.body), 401, 'UNAUTHORIZED');
    const wrong = await createBlob(valid, 'wharf_not_a_key_at_all_000000');
    assert.equal(wrong.status, 401);
    assertErrorResponse(wrong.body, 401, 'UNAUTHORIZED');

    const other = await w.newAccount();
    await w.wharf.core.keys.updateAccount(other.accountId, { maxFileSize: 10 });
    const big = await createBlob({ ...valid, byte_size: 11 }, other.key);
    assert.equal(big.status, 413);
    assertErrorResponse(big.body, 413, 'FILE_TOO_LARGE');
    await w.wharf.core.keys.updateAccount(other.accountId, { disabled: true });
    const disabled = await createBlob(valid, other.key);
    assert.equal(disabled.status, 403);
    assertErrorResponse(disabled.body, 403, 'ACCOUNT_DISABLED');
  });

  test('Bearer keys work as well', async () => {
    const res = await curl([
      '-H',
      `Authorization: Bearer ${w.key}`,
      '-H',
      'Content-Type: application/json',
      '-d',
      JSON.stringify({ blob: { ...valid, filename: 'bearer.txt' } }),
      `${w.url}/api/v1/upload/direct`,
    ]);
    assert.equal(res.status, 200, res.body);
  });
});

test('the routes are in /openapi.json under the document’s tag', async () => {
  const doc = await api(w.url, undefined, 'GET', '/openapi.json');
  const post = doc.body.paths['/api/v1/upload/direct'].post;
  assert.ok(post.tags[0].includes('ActiveStorage'));
  assert.ok(post.responses['200']);
  assert.ok(post.responses['422']);
  assert.ok(doc.body.paths['/api/v1/upload/blobs/{signed_id}'].get);
  assert.ok(doc.body.paths['/rails/active_storage/blobs/redirect/{signed_id}/{filename}'].get);
});

// Last in this file: it moves the server's clock past every upload's expiry.
describe('a blob whose bytes never arrived', () => {
  test('after its upload expired, its redirect is 404, as before it expired', async () => {
    const bytes = randomBytes(64);
    const created = await createBlob({
      filename: 'never.bin',
      content_type: 'application/octet-stream',
      byte_size: bytes.length,
      checksum: md5B64(bytes),
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const blob = created.body as BlobJson;
    const redirect = () =>
      fetch(`${w.url}/rails/active_storage/blobs/redirect/${blob.signed_id}/never.bin`, {
        redirect: 'manual',
      });
    assert.equal((await redirect()).status, 404);
    w.clock.advance(2 * 24 * 3600_000);
    const late = await redirect();
    assert.equal(late.status, 404, await late.text());
    assert.equal((await getRecord(blob.signed_id)).status, 200);
  });
});

describe('a disabled account', () => {
  test('its redirects answer 403 ACCOUNT_DISABLED, complete nothing, and work again once it is enabled', async () => {
    // Disabling an account stops every URL of it (docs/security.md). The redirect is keyless
    // (the signed_id is the credential) and completes an upload whose bytes have arrived: it
    // answered 302, and completed such an upload (events, webhooks) for the disabled account.
    const other = await w.newAccount();
    const stored = randomBytes(1_500);
    const done = (
      await createBlob(
        {
          filename: 'done.bin',
          content_type: 'application/octet-stream',
          byte_size: stored.length,
          checksum: md5B64(stored),
        },
        other.key,
      )
    ).body as BlobJson;
    assert.equal((await putFile(done.direct_upload!, stored)).status, 200);
    // Completed (on S3 nothing else tells Wharf the PUT happened): a blob with its file.
    assert.equal(
      (await nativeByNumber((await getRecord(done.signed_id, other.key)).body.id, other.key))?.name,
      'done.bin',
    );
    // Bytes at the upload's key that nothing has completed yet (an S3 bucket until the sweep
    // or a look notices them).
    const arrived = randomBytes(1_700);
    const pending = (
      await createBlob(
        {
          filename: 'pending.bin',
          content_type: 'application/octet-stream',
          byte_size: arrived.length,
          checksum: sha256B64(arrived),
        },
        other.key,
      )
    ).body as BlobJson;
    assert.ok(pending.direct_upload);
    await putStrayObject(w, pending.key, arrived);
    const redirect = (blob: BlobJson, name: string) =>
      fetch(`${w.url}/rails/active_storage/blobs/redirect/${blob.signed_id}/${name}`, { redirect: 'manual' });
    const completions = async () =>
      (await api(w.url, other.key, 'GET', '/v1/events?type=upload.completed&limit=100')).body
        .data as unknown[];
    const before = (await completions()).length;

    await w.wharf.core.keys.updateAccount(other.accountId, { disabled: true });
    try {
      for (const [blob, name] of [
        [done, 'done.bin'],
        [pending, 'pending.bin'],
      ] as const) {
        const res = await redirect(blob, name);
        assert.equal(res.status, 403, `${name}: ${res.headers.get('location')}`);
        assert.equal(res.headers.get('location'), null);
        assertErrorResponse((await res.json()) as Record<string, unknown>, 403, 'ACCOUNT_DISABLED');
      }
    } finally {
      await w.wharf.core.keys.updateAccount(other.accountId, { disabled: false });
    }
    assert.equal((await completions()).length, before, 'no upload completed while it was disabled');
    assert.equal(await nativeByNumber(pending.id, other.key), undefined, 'no asset made');

    // Enabled again: the same signed ids redirect, and the look completes the arrived upload.
    for (const [blob, name, bytes] of [
      [done, 'done.bin', stored],
      [pending, 'pending.bin', arrived],
    ] as const) {
      const res = await redirect(blob, name);
      assert.equal(res.status, 302, name);
      const served = await fetch(new URL(res.headers.get('location')!, w.url));
      assert.equal(served.status, 200, name);
      assert.ok(Buffer.from(await served.arrayBuffer()).equals(bytes), name);
    }
    assert.equal((await completions()).length, before + 1);
    assert.equal((await nativeByNumber(pending.id, other.key))?.sha256, sha256Hex(arrived));
  });
});
