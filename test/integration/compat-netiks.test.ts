import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { curl } from '../helpers/curl.js';
import { api, b64, md5Hex, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * Seed 000, netiks cloud: the document's own requests, sent with curl against a real
 * Wharf with only the host and the key changed.
 */

let w: TestWharf;
let dir: string;
before(async () => {
  w = await startWharf();
  dir = await mkdtemp(join(tmpdir(), 'wharf-netiks-'));
});
after(async () => {
  await w?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const UPLOAD = '/api/v1/assets/developer-upload-file/';
const CONFIRM = '/api/v1/assets/developer-upload-file';
const GENERATE = '/api/v1/assets/developer-generate-presigned-url/';
const ASSET_KEYS = [
  'access',
  'asset_name',
  'created_at',
  'created_by',
  'dimensions',
  'file_size',
  'format',
  'id',
  'last_updated',
  'last_updated_by',
  'location',
  'location_name',
  'storage_url',
];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let files = 0;
async function file(name: string, bytes: Buffer | string): Promise<string> {
  // A directory per file: curl sends the file's own name, so names may repeat.
  const sub = join(dir, String(++files));
  await mkdir(sub);
  const path = join(sub, name);
  await writeFile(path, bytes);
  return path;
}

function json(body: string) {
  return JSON.parse(body);
}

/** The document's "Upload Single File" request. */
async function uploadSingle(path: string, key = w.key, url = UPLOAD) {
  return curl([
    '-X',
    'POST',
    `${w.url}${url}`,
    '-H',
    `x-api-key: ${key}`,
    '-H',
    'Content-Type: multipart/form-data',
    '-H',
    'Accept: */*',
    '-F',
    `file=@${path}`,
  ]);
}

/** `null` sends no key at all. */
async function postJson(path: string, body: unknown, key: string | null = w.key) {
  const args = ['-X', 'POST', `${w.url}${path}`, '-H', 'Content-Type: application/json', '-H', 'Accept: */*'];
  if (key !== null) args.push('-H', `x-api-key: ${key}`);
  return curl([...args, '--data-binary', typeof body === 'string' ? body : JSON.stringify(body)]);
}

interface PresignedUrl {
  file_name: string;
  presigned_url: string;
  storage_url: string;
  s3_path: string;
  content_type: string;
}

async function generate(fileList: Array<{ name: string; type?: string; size: number }>, key = w.key) {
  const res = await postJson(GENERATE, { files: fileList }, key);
  assert.equal(res.status, 200, res.body);
  return json(res.body).presigned_urls as PresignedUrl[];
}

/** The document's PUT: only Content-Type, the bytes as the body. */
async function putFile(url: string, path: string, contentType: string) {
  return curl([
    '-X',
    'PUT',
    url,
    '-H',
    `Content-Type: ${contentType}`,
    '-H',
    'Accept: */*',
    '--data-binary',
    `@${path}`,
  ]);
}

function confirmBody(p: PresignedUrl) {
  return {
    is_presigned: true,
    storage_url: p.storage_url,
    file_name: p.file_name,
    s3_path: p.s3_path,
    content_type: p.content_type,
  };
}

function checkAsset(
  asset: Record<string, unknown>,
  expected: { name: string; size: number; format: string | null },
) {
  assert.deepEqual(Object.keys(asset).sort(), ASSET_KEYS);
  assert.match(asset.id as string, UUID);
  assert.equal(asset.asset_name, expected.name);
  assert.equal(typeof asset.storage_url, 'string');
  assert.ok((asset.storage_url as string).length > 0);
  assert.equal(asset.file_size, expected.size);
  assert.equal(asset.format, expected.format);
  assert.equal(asset.access, 'private');
  assert.equal(asset.created_by, 'default');
  assert.equal(asset.last_updated_by, 'default');
  assert.match(asset.created_at as string, ISO);
  assert.match(asset.last_updated as string, ISO);
}

async function gpsJpeg(): Promise<Buffer> {
  const xmp =
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' +
    '<rdf:Description rdf:about="" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" ' +
    'photoshop:City="Paris" photoshop:Country="France"/></rdf:RDF></x:xmpmeta>';
  return sharp({ create: { width: 64, height: 48, channels: 3, background: '#3366cc' } })
    .jpeg()
    .withExif({
      IFD3: {
        GPSLatitudeRef: 'N',
        GPSLatitude: '48/1 51/1 24/1',
        GPSLongitudeRef: 'E',
        GPSLongitude: '2/1 21/1 3/1',
      },
    })
    .withXmp(xmp)
    .toBuffer();
}

function checkGps(asset: Record<string, unknown>) {
  assert.deepEqual(asset.dimensions, { width: 64, height: 48 });
  assert.equal(asset.format, 'jpg');
  const location = asset.location as { latitude: number; longitude: number };
  assert.deepEqual(Object.keys(location).sort(), ['latitude', 'longitude']);
  assert.ok(Math.abs(location.latitude - (48 + 51 / 60 + 24 / 3600)) < 1e-9, String(location.latitude));
  assert.ok(Math.abs(location.longitude - (2 + 21 / 60 + 3 / 3600)) < 1e-9, String(location.longitude));
  assert.equal(asset.location_name, 'Paris, France');
}

describe('Upload Single File', () => {
  test('the document’s request: 201 with the message and every asset field', async () => {
    const bytes = 'hello from a netiks client\n';
    const res = await uploadSingle(await file('notes.txt', bytes));
    assert.equal(res.status, 201, res.body);
    assert.match(res.headers, /content-type: application\/json/i);
    const body = json(res.body);
    assert.deepEqual(Object.keys(body).sort(), ['asset', 'message']);
    assert.equal(body.message, 'File uploaded successfully.');
    checkAsset(body.asset, { name: 'notes.txt', size: Buffer.byteLength(bytes), format: 'txt' });
    assert.equal(body.asset.location, null);
    assert.equal(body.asset.location_name, null);
    assert.equal(body.asset.dimensions, null);
    assert.equal(body.asset.created_at, body.asset.last_updated);

    const native = await api(w.url, w.key, 'GET', `/v1/assets/${body.asset.id}`);
    assert.equal(native.status, 200);
    assert.equal(native.body.name, 'notes.txt');
    assert.equal(native.body.size, Buffer.byteLength(bytes));
    assert.equal(native.body.sha256, sha256Hex(bytes));
    assert.equal(native.body.content_type, 'text/plain');
    assert.equal(native.body.created_at, body.asset.created_at);
    const content = await fetch(`${w.url}/v1/assets/${body.asset.id}/content`, {
      headers: { 'x-api-key': w.key },
    });
    assert.equal(await content.text(), bytes);
  });

  test('works without the trailing slash too', async () => {
    const res = await uploadSingle(await file('slashless.txt', 'no slash'), w.key, CONFIRM);
    assert.equal(res.status, 201, res.body);
    checkAsset(json(res.body).asset, { name: 'slashless.txt', size: 8, format: 'txt' });
  });

  test('the same content again: 201 with the existing asset', async () => {
    const first = json((await uploadSingle(await file('twice.txt', 'twice the same'))).body);
    const again = await uploadSingle(await file('twice.txt', 'twice the same'));
    assert.equal(again.status, 201);
    const body = json(again.body);
    assert.equal(body.asset.id, first.asset.id);
    assert.equal(body.message, 'This file is already in your account; the existing asset is returned.');
  });

  test('an image with GPS EXIF: dimensions, format and location once processing ran', async () => {
    const jpeg = await gpsJpeg();
    const res = await uploadSingle(await file('paris.jpg', jpeg));
    assert.equal(res.status, 201, res.body);
    const { asset } = json(res.body);
    checkAsset(asset, { name: 'paris.jpg', size: jpeg.length, format: 'jpg' });
    assert.equal(asset.dimensions, null, 'processing has not run yet');
    assert.equal(asset.location, null);

    await w.wharf.core.jobs.drain();
    const read = await curl([`${w.url}/api/v1/assets/${asset.id}/`, '-H', `x-api-key: ${w.key}`]);
    assert.equal(read.status, 200, read.body);
    const later = json(read.body);
    assert.deepEqual(Object.keys(later).sort(), ASSET_KEYS);
    assert.equal(later.id, asset.id);
    assert.equal(later.created_at, asset.created_at);
    checkGps(later);
  });

  test('a form without a file part, a file in another field, or two files: 400', async () => {
    const noFile = await curl([
      '-X',
      'POST',
      `${w.url}${UPLOAD}`,
      '-H',
      `x-api-key: ${w.key}`,
      '-F',
      'title=no file here',
    ]);
    assert.equal(noFile.status, 400);
    assert.deepEqual(json(noFile.body), {
      detail: 'The form has no file part (field "file").',
      code: 'validation_failed',
    });

    const path = await file('other.txt', 'x');
    const wrongField = await curl([
      '-X',
      'POST',
      `${w.url}${UPLOAD}`,
      '-H',
      `x-api-key: ${w.key}`,
      '-F',
      `upload=@${path}`,
    ]);
    assert.equal(wrongField.status, 400);
    assert.equal(json(wrongField.body).code, 'validation_failed');

    const two = await curl([
      '-X',
      'POST',
      `${w.url}${UPLOAD}`,
      '-H',
      `x-api-key: ${w.key}`,
      '-F',
      `file=@${path}`,
      '-F',
      `file=@${await file('second.txt', 'y')}`,
    ]);
    assert.equal(two.status, 400);
    assert.equal(json(two.body).code, 'too_many_files');
  });

  test('no body at all: 400', async () => {
    const res = await curl(['-X', 'POST', `${w.url}${UPLOAD}`, '-H', `x-api-key: ${w.key}`]);
    assert.equal(res.status, 400);
    assert.equal(json(res.body).code, 'validation_failed');
  });

  test('a form cut short: 400, nothing stored', async () => {
    const res = await curl([
      '-X',
      'POST',
      `${w.url}${UPLOAD}`,
      '-H',
      `x-api-key: ${w.key}`,
      '-H',
      'Content-Type: multipart/form-data; boundary=xx',
      '--data-binary',
      '--xx\r\nContent-Disposition: form-data; name="file"; filename="cut.txt"\r\n\r\nabc',
    ]);
    assert.equal(res.status, 400, res.body);
    assert.equal(json(res.body).code, 'validation_failed');
    const list = await api(w.url, w.key, 'GET', '/v1/assets?prefix=cut');
    assert.deepEqual(list.body.data, []);
  });

  test('a body that is neither a form nor JSON: 415', async () => {
    const res = await curl([
      '-X',
      'POST',
      `${w.url}${UPLOAD}`,
      '-H',
      `x-api-key: ${w.key}`,
      '-H',
      'Content-Type: text/plain',
      '--data-binary',
      'just text',
    ]);
    assert.equal(res.status, 415);
    const body = json(res.body);
    assert.deepEqual(Object.keys(body).sort(), ['code', 'detail']);
    assert.equal(body.code, 'unsupported_media_type');
  });

  test('Content-MD5 / Content-Digest / Repr-Digest cover the whole form (RFC 1864, RFC 9530): the form’s is accepted, the file’s refused, nothing stored', async () => {
    const tenant = await w.newAccount();
    const declarations: Array<[string, (b: Buffer | string) => string]> = [
      ['Content-MD5', (b) => `Content-MD5: ${b64(md5Hex(b))}`],
      ['Content-Digest', (b) => `Content-Digest: sha-256=:${b64(sha256Hex(b))}:`],
      ['Repr-Digest', (b) => `Repr-Digest: sha-256=:${b64(sha256Hex(b))}:`],
    ];
    const assets = async () => (await api(w.url, tenant.key, 'GET', '/v1/assets')).body.data.length;
    const boundary = 'netiks-digest-boundary';
    for (const [label, header] of declarations) {
      const before = await assets();
      const bytes = Buffer.from(`the file declared with ${label}`);
      // The form is built here, not by curl -F, so that its digest can be known before it is sent.
      const form = Buffer.concat([
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="declared.txt"\r\n` +
            'Content-Type: text/plain\r\n\r\n',
        ),
        bytes,
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      const path = await file(`form-${label}.bin`, form);
      const send = (declared: string) =>
        curl([
          '-X',
          'POST',
          `${w.url}${UPLOAD}`,
          '-H',
          `x-api-key: ${tenant.key}`,
          '-H',
          `Content-Type: multipart/form-data; boundary=${boundary}`,
          '-H',
          declared,
          '--data-binary',
          `@${path}`,
        ]);
      for (const wrong of ['other bytes', bytes]) {
        const refused = await send(header(wrong));
        assert.equal(refused.status, 400, `${label}: ${refused.body}`);
        assert.equal(json(refused.body).code, 'checksum_mismatch');
        assert.equal(await assets(), before, label);
      }
      const accepted = await send(header(form));
      assert.equal(accepted.status, 201, `${label}: ${accepted.body}`);
      assert.equal(json(accepted.body).asset.file_size, bytes.length);
    }
  });

  test('a file over the account’s limit: 413, nothing stored', async () => {
    const tenant = await w.newAccount();
    await w.wharf.core.keys.updateAccount(tenant.accountId, { maxFileSize: 10 });
    const res = await uploadSingle(await file('big.bin', Buffer.alloc(64, 1)), tenant.key);
    assert.equal(res.status, 413, res.body);
    assert.equal(json(res.body).code, 'file_too_large');
    const list = await api(w.url, tenant.key, 'GET', '/v1/assets');
    assert.deepEqual(list.body.data, []);
  });
});

describe('Bulk upload: generate, PUT, confirm', () => {
  test('the document’s three steps, field by field', async () => {
    // Step 1, the document's body as written: a 32-byte test-image.jpg.
    const bytes = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(28, 7)]);
    assert.equal(bytes.length, 32);
    const gen = await curl([
      '-X',
      'POST',
      `${w.url}${GENERATE}`,
      '-H',
      `x-api-key: ${w.key}`,
      '-H',
      'Content-Type: application/json',
      '-H',
      'Accept: */*',
      '-d',
      '{\n  "files": [\n    {\n      "name": "test-image.jpg",\n      "type": "image/jpeg",\n      "size": 32\n    }\n  ]\n}',
    ]);
    assert.equal(gen.status, 200, gen.body);
    const body = json(gen.body);
    assert.deepEqual(Object.keys(body), ['presigned_urls']);
    assert.equal(body.presigned_urls.length, 1);
    const p = body.presigned_urls[0] as PresignedUrl;
    assert.deepEqual(Object.keys(p).sort(), [
      'content_type',
      'file_name',
      'presigned_url',
      's3_path',
      'storage_url',
    ]);
    assert.equal(p.file_name, 'test-image.jpg');
    assert.equal(p.content_type, 'image/jpeg');
    assert.equal(p.storage_url, p.s3_path);
    assert.match(p.s3_path, /^default\/[0-9a-f-]{36}\.jpg$/);
    const url = new URL(p.presigned_url);
    assert.match(url.protocol, /^https?:$/);
    assert.equal(url.searchParams.get('X-Amz-Algorithm'), 'AWS4-HMAC-SHA256');
    assert.equal(url.searchParams.get('X-Amz-Expires'), '900', 'a 15 minutes limited link');
    assert.match(url.searchParams.get('X-Amz-SignedHeaders') ?? '', /content-type/);

    // Step 2, 14 minutes later: still within the link's life.
    w.clock.advance(14 * 60_000);
    const path = await file('test-image.jpg', bytes);
    const put = await putFile(p.presigned_url, path, 'image/jpeg');
    assert.equal(put.status, 200, put.body);

    // Step 3, the document's confirm body (without the trailing slash, as it shows).
    const done = await postJson(CONFIRM, confirmBody(p));
    assert.equal(done.status, 201, done.body);
    const confirmed = json(done.body);
    assert.deepEqual(Object.keys(confirmed).sort(), ['asset', 'message']);
    assert.equal(confirmed.message, 'File uploaded successfully.');
    checkAsset(confirmed.asset, { name: 'test-image.jpg', size: 32, format: 'jpg' });
    // Where the bytes are: at s3_path on Wharf's own endpoint (which refuses PUTs once the upload
    // is complete); an S3 store cannot refuse them (the document's PUT sends no write-once
    // header), so completion moved the verified bytes to a key no presigned URL names.
    const onObjectStore = !p.presigned_url.startsWith(w.url);
    assert.equal(confirmed.asset.storage_url, onObjectStore ? p.s3_path.replace('/', '/sealed/') : p.s3_path);
    assert.equal(confirmed.asset.dimensions, null);
    assert.equal(confirmed.asset.location, null);

    const native = await api(w.url, w.key, 'GET', `/v1/assets/${confirmed.asset.id}`);
    assert.equal(native.status, 200);
    assert.equal(native.body.sha256, sha256Hex(bytes));
    assert.equal(native.body.content_type, 'image/jpeg');

    // Confirming again is harmless: the same asset.
    const again = await postJson(CONFIRM, confirmBody(p));
    assert.equal(again.status, 201);
    assert.equal(json(again.body).asset.id, confirmed.asset.id);
  });

  test('an image with GPS EXIF through the three steps, analysed after processing', async () => {
    const jpeg = await gpsJpeg();
    const [p] = await generate([{ name: 'eiffel.jpg', type: 'image/jpeg', size: jpeg.length }]);
    const put = await putFile(p!.presigned_url, await file('eiffel.jpg', jpeg), 'image/jpeg');
    assert.equal(put.status, 200, put.body);
    // With the trailing slash too.
    const done = await postJson(UPLOAD, confirmBody(p!));
    assert.equal(done.status, 201, done.body);
    const { asset } = json(done.body);
    await w.wharf.core.jobs.drain();
    const read = await api(w.url, w.key, 'GET', `/api/v1/assets/${asset.id}/`);
    assert.equal(read.status, 200);
    checkGps(read.body);
  });

  test('several files in one request, each with its own URL and path', async () => {
    const urls = await generate([
      { name: 'a.png', type: 'image/png', size: 3 },
      { name: 'b.pdf', type: 'application/pdf', size: 4 },
      { name: 'c.bin', size: 5 },
    ]);
    assert.deepEqual(
      urls.map((u) => [u.file_name, u.content_type]),
      [
        ['a.png', 'image/png'],
        ['b.pdf', 'application/pdf'],
        ['c.bin', 'application/octet-stream'],
      ],
    );
    assert.equal(new Set(urls.map((u) => u.s3_path)).size, 3);
    const res = await putFile(
      urls[2]!.presigned_url,
      await file('c.bin', 'ccccc'),
      'application/octet-stream',
    );
    assert.equal(res.status, 200);
    const done = await postJson(CONFIRM, confirmBody(urls[2]!));
    assert.equal(done.status, 201);
    assert.equal(json(done.body).asset.format, 'bin');
  });

  test('a PUT with another Content-Type is refused and nothing is stored', async () => {
    const [p] = await generate([{ name: 'typed.jpg', type: 'image/jpeg', size: 6 }]);
    const path = await file('typed.jpg', 'abcdef');
    const put = await putFile(p!.presigned_url, path, 'image/png');
    assert.ok(put.status >= 400 && put.status < 500, `status ${put.status}`);
    const done = await postJson(CONFIRM, confirmBody(p!));
    assert.equal(done.status, 409, done.body);
    assert.equal(json(done.body).code, 'upload_incomplete');
    // The right type still works afterwards.
    assert.equal((await putFile(p!.presigned_url, path, 'image/jpeg')).status, 200);
    assert.equal((await postJson(CONFIRM, confirmBody(p!))).status, 201);
  });

  test('a type declared in another case: the answered content_type is the one the PUT is signed for', async () => {
    // The document's PUT sends the answered content_type; storage compares the signed text
    // exactly, so an answer in Wharf's own spelling (image/jpeg) was refused 403.
    const declared = ['image/JPEG', 'Text/Plain', 'text/plain; charset=UTF-8'];
    const urls = await generate(declared.map((type, i) => ({ name: `cased-${i}.txt`, type, size: 4 })));
    assert.deepEqual(
      urls.map((u) => u.content_type),
      declared,
    );
    for (const p of urls) {
      const put = await putFile(p.presigned_url, await file(p.file_name, 'abcd'), p.content_type);
      assert.equal(put.status, 200, `${p.content_type}: ${put.body}`);
      const done = await postJson(CONFIRM, confirmBody(p));
      assert.equal(done.status, 201, done.body);
    }
    // What Wharf records is the type, normalized.
    const asset = await api(
      w.url,
      w.key,
      'GET',
      `/v1/assets/${json((await postJson(CONFIRM, confirmBody(urls[0]!))).body).asset.id}`,
    );
    assert.equal(asset.body.content_type, 'image/jpeg');
  });

  test('confirming before the PUT: 409; after the 15 minutes: 410', async () => {
    const [p] = await generate([{ name: 'late.txt', type: 'text/plain', size: 4 }]);
    const early = await postJson(CONFIRM, confirmBody(p!));
    assert.equal(early.status, 409);
    assert.deepEqual(json(early.body), {
      detail: 'No bytes have been uploaded for this upload yet.',
      code: 'upload_incomplete',
    });
    w.clock.advance(16 * 60_000);
    const late = await postJson(CONFIRM, confirmBody(p!));
    assert.equal(late.status, 410);
    assert.equal(json(late.body).code, 'upload_expired');
  });

  test('bytes PUT in time confirm until an hour after the 15 minutes; past that 410, before any sweep', async () => {
    const [p] = await generate([{ name: 'slow.txt', type: 'text/plain', size: 4 }]);
    assert.equal((await putFile(p!.presigned_url, await file('slow.txt', 'slow'), 'text/plain')).status, 200);
    const now = w.clock.now();
    try {
      w.clock.advance(15 * 60_000 + 3600_000 + 1000);
      const late = await postJson(CONFIRM, confirmBody(p!));
      assert.equal(late.status, 410, late.body);
      assert.equal(json(late.body).code, 'upload_expired');
    } finally {
      w.clock.set(now);
    }
  });

  test('a confirm that does not match what was generated is refused', async () => {
    const [p] = await generate([{ name: 'exact.txt', type: 'text/plain', size: 5 }]);
    assert.equal(
      (await putFile(p!.presigned_url, await file('exact.txt', 'exact'), 'text/plain')).status,
      200,
    );

    const notPresigned = await postJson(CONFIRM, { ...confirmBody(p!), is_presigned: false });
    assert.equal(notPresigned.status, 400);
    assert.equal(json(notPresigned.body).code, 'validation_failed');

    const renamed = await postJson(CONFIRM, { ...confirmBody(p!), file_name: 'other.txt' });
    assert.equal(renamed.status, 400);
    assert.equal(json(renamed.body).code, 'validation_failed');

    const retyped = await postJson(CONFIRM, { ...confirmBody(p!), content_type: 'image/png' });
    assert.equal(retyped.status, 400);

    const unknown = await postJson(CONFIRM, { ...confirmBody(p!), s3_path: 'default/nothing-here.txt' });
    assert.equal(unknown.status, 404);
    assert.deepEqual(json(unknown.body), { detail: 'No such upload.', code: 'not_found' });

    const missing = await postJson(CONFIRM, { is_presigned: true, s3_path: p!.s3_path });
    assert.equal(missing.status, 400);
    assert.equal(json(missing.body).code, 'validation_failed');

    const wrongType = await postJson(CONFIRM, { ...confirmBody(p!), is_presigned: 'yes' });
    assert.equal(wrongType.status, 400);

    const broken = await postJson(CONFIRM, '{"is_presigned": true,');
    assert.equal(broken.status, 400);
    assert.equal(json(broken.body).code, 'validation_failed');

    // Case and a charset parameter are no reason to refuse; extra fields are ignored.
    const ok = await curl([
      '-X',
      'POST',
      `${w.url}${CONFIRM}`,
      '-H',
      `x-api-key: ${w.key}`,
      '-H',
      'Content-Type: application/json; charset=utf-8',
      '--data-binary',
      JSON.stringify({ ...confirmBody(p!), content_type: 'Text/Plain', client_version: '1.2' }),
    ]);
    assert.equal(ok.status, 201, ok.body);
  });

  test('another account cannot confirm or read this account’s uploads', async () => {
    const tenant = await w.newAccount();
    const [p] = await generate([{ name: 'mine.txt', type: 'text/plain', size: 4 }]);
    assert.equal((await putFile(p!.presigned_url, await file('mine.txt', 'mine'), 'text/plain')).status, 200);
    const theirs = await postJson(CONFIRM, confirmBody(p!), tenant.key);
    assert.equal(theirs.status, 404);
    const done = json((await postJson(CONFIRM, confirmBody(p!))).body);
    const read = await api(w.url, tenant.key, 'GET', `/api/v1/assets/${done.asset.id}/`);
    assert.equal(read.status, 404);
    assert.deepEqual(read.body, { detail: 'No such asset.', code: 'not_found' });
  });

  test('invalid declarations: 400; over the size limit: 413', async () => {
    const empty = await postJson(GENERATE, { files: [] });
    assert.equal(empty.status, 400);
    assert.equal(json(empty.body).code, 'validation_failed');

    const stringSize = await postJson(GENERATE, {
      files: [{ name: 'a.txt', type: 'text/plain', size: '32' }],
    });
    assert.equal(stringSize.status, 400);

    const badName = await postJson(GENERATE, { files: [{ name: '../etc/passwd', size: 3 }] });
    assert.equal(badName.status, 400);
    assert.equal(json(badName.body).code, 'invalid_name');

    const badType = await postJson(GENERATE, { files: [{ name: 'a.txt', type: 'not a type', size: 3 }] });
    assert.equal(badType.status, 400);
    assert.equal(json(badType.body).code, 'invalid_content_type');

    const tenant = await w.newAccount();
    await w.wharf.core.keys.updateAccount(tenant.accountId, { maxFileSize: 100 });
    const big = await postJson(GENERATE, { files: [{ name: 'big.bin', size: 101 }] }, tenant.key);
    assert.equal(big.status, 413);
    assert.equal(json(big.body).code, 'file_too_large');
  });

  test('a presign request in a Content-Encoding (gzip): 415, not "not valid JSON"', async () => {
    const { gzipSync } = await import('node:zlib');
    const gz = await file(
      'presign.json.gz',
      gzipSync(JSON.stringify({ files: [{ name: 'a.bin', size: 1 }] })),
    );
    const res = await curl([
      '-X',
      'POST',
      `${w.url}${GENERATE}`,
      '-H',
      `x-api-key: ${w.key}`,
      '-H',
      'Content-Type: application/json',
      '-H',
      'Content-Encoding: gzip',
      '--data-binary',
      `@${gz}`,
    ]);
    assert.equal(res.status, 415, res.body);
    const body = json(res.body);
    assert.equal(body.code, 'unsupported_media_type');
    assert.match(body.detail, /Content-Encoding gzip/);
  });

  test('a path or method netiks does not have: 404 not_found in its shape', async () => {
    for (const [method, path] of [
      ['PUT', GENERATE],
      ['GET', '/api/v1/assets/no-such/route/'],
    ] as const) {
      const res = await api(w.url, w.key, method, path);
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.deepEqual(res.body, { detail: `No route ${method} ${path}`, code: 'not_found' });
    }
  });
});

describe('keys', () => {
  test('no x-api-key, or a wrong one: 401 on every route, in the same shape', async () => {
    const path = await file('nokey.txt', 'no key');
    const requests = [
      () => postJson(GENERATE, { files: [{ name: 'a.txt', size: 1 }] }, null),
      () =>
        postJson(
          CONFIRM,
          { is_presigned: true, storage_url: 'x', file_name: 'x', s3_path: 'x', content_type: 'x' },
          null,
        ),
      () => curl(['-X', 'POST', `${w.url}${UPLOAD}`, '-F', `file=@${path}`]),
      () => curl([`${w.url}/api/v1/assets/00000000-0000-0000-0000-000000000000/`]),
    ];
    for (const send of requests) {
      const res = await send();
      assert.equal(res.status, 401, res.body);
      const body = json(res.body);
      assert.deepEqual(Object.keys(body).sort(), ['code', 'detail']);
      assert.equal(body.code, 'unauthorized');
      // netiks takes the key in x-api-key only: the message names no other way.
      assert.equal(body.detail, 'An API key is required (x-api-key).');
    }
    const wrong = await uploadSingle(path, 'ne-zwpVh1idj6InYwTWk866n1qrf');
    assert.equal(wrong.status, 401);
    assert.equal(json(wrong.body).code, 'unauthorized');
    const list = await api(w.url, w.key, 'GET', '/v1/assets?prefix=nokey');
    assert.deepEqual(list.body.data, []);
  });

  test('a disabled account’s key: 403', async () => {
    const tenant = await w.newAccount();
    await w.wharf.core.keys.updateAccount(tenant.accountId, { disabled: true });
    const res = await postJson(GENERATE, { files: [{ name: 'a.txt', size: 1 }] }, tenant.key);
    assert.equal(res.status, 403);
    assert.equal(json(res.body).code, 'account_disabled');
  });
});

describe('reading assets', () => {
  test('an asset uploaded through the native API reads in the netiks shape', async () => {
    const form = new FormData();
    form.append('file', new Blob(['native bytes'], { type: 'text/plain' }), 'native.txt');
    const up = await fetch(`${w.url}/v1/assets`, {
      method: 'POST',
      headers: { 'x-api-key': w.key },
      body: form,
    });
    assert.equal(up.status, 201);
    const native = (await up.json()).asset;
    const read = await api(w.url, w.key, 'GET', `/api/v1/assets/${native.id}/`);
    assert.equal(read.status, 200);
    checkAsset(read.body, { name: 'native.txt', size: 12, format: 'txt' });
    assert.equal(read.body.id, native.id);
    assert.equal(read.body.created_at, native.created_at);
    assert.equal(read.body.last_updated, native.updated_at);

    for (const id of ['00000000-0000-0000-0000-000000000000', 'not-an-id']) {
      const missing = await api(w.url, w.key, 'GET', `/api/v1/assets/${id}/`);
      assert.equal(missing.status, 404);
      assert.deepEqual(missing.body, { detail: 'No such asset.', code: 'not_found' });
    }
  });

  test('a caller that reads only its own uploads: content another uploader stored shows its own storage path, never theirs', async () => {
    // An upload token sees a deduplicated asset as its own upload declared it
    // (docs/integration.md). storage_url used to be the asset's key: the first uploader's
    // upload id and object key (default/<their upload id>.txt), i.e. another user's upload,
    // and the name of the object a request aimed at it would need.
    const tokenOf = async () =>
      (await api(w.url, w.key, 'POST', '/v1/upload-tokens', {})).body.secret as string;
    const [alice, bob, carol] = [await tokenOf(), await tokenOf(), await tokenOf()];
    const bytes = `shared ${Date.now()} ${Math.random()}`;
    const first = await uploadSingle(await file('alice-private-diagnosis.txt', bytes), alice);
    assert.equal(first.status, 201, first.body);
    const theirs = json(first.body).asset;
    const theirId = /^default\/([0-9a-f-]{36})\./.exec(theirs.storage_url)?.[1];
    assert.ok(theirId, theirs.storage_url);
    const leaks = (url: string) => url === theirs.storage_url || url.includes(theirId);

    // The single upload: its own upload's path.
    const single = await uploadSingle(await file('mine.bin', bytes), bob);
    assert.equal(single.status, 201, single.body);
    const mine = json(single.body).asset;
    assert.equal(mine.id, theirs.id, 'one asset per content');
    assert.equal(mine.asset_name, 'mine.bin');
    assert.match(mine.storage_url, /^default\/[0-9a-f-]{36}\.bin$/);
    assert.ok(!leaks(mine.storage_url), mine.storage_url);
    const read = await api(w.url, bob, 'GET', `/api/v1/assets/${mine.id}/`);
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.equal(read.body.asset_name, 'mine.bin');
    assert.equal(read.body.storage_url, mine.storage_url, 'read back as its upload answered it');

    // The bulk upload: the path it was given (s3_path), read back the same.
    const [p] = await generate([{ name: 'bulk.txt', type: 'text/plain', size: bytes.length }], carol);
    assert.equal((await putFile(p!.presigned_url, await file('bulk.txt', bytes), 'text/plain')).status, 200);
    const confirmed = await postJson(CONFIRM, confirmBody(p!), carol);
    assert.equal(confirmed.status, 201, confirmed.body);
    const bulk = json(confirmed.body).asset;
    assert.equal(bulk.id, theirs.id);
    assert.equal(bulk.storage_url, p!.s3_path);
    const bulkRead = await api(w.url, carol, 'GET', `/api/v1/assets/${bulk.id}/`);
    assert.equal(bulkRead.status, 200, JSON.stringify(bulkRead.body));
    assert.equal(bulkRead.body.storage_url, p!.s3_path);

    // A key that reads the whole account sees the asset as recorded: where its bytes are.
    const whole = await api(w.url, w.key, 'GET', `/api/v1/assets/${theirs.id}/`);
    assert.equal(whole.body.asset_name, 'alice-private-diagnosis.txt');
    assert.equal(whole.body.storage_url, theirs.storage_url);
    const aliceRead = await api(w.url, alice, 'GET', `/api/v1/assets/${theirs.id}/`);
    assert.equal(aliceRead.body.storage_url, theirs.storage_url, 'the first uploader’s own path is its own');
  });

  test('the routes are in /openapi.json under the netiks tag', async () => {
    const doc = await (await fetch(`${w.url}/openapi.json`)).json();
    for (const [path, method] of [
      [UPLOAD, 'post'],
      [CONFIRM, 'post'],
      [GENERATE, 'post'],
      ['/api/v1/assets/developer-generate-presigned-url', 'post'],
      ['/api/v1/assets/{id}/', 'get'],
    ] as const) {
      const op = doc.paths[path]?.[method];
      assert.ok(op, `${method} ${path}`);
      assert.deepEqual(op.tags, ['netiks']);
      assert.ok(op.summary);
    }
  });
});
