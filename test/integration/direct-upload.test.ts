import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import {
  countAssets,
  createAsset,
  dbQuery,
  eventually,
  objectFiles,
  postRawMultipart,
  rawMultipart,
  readJson,
  tmpFiles,
  uploadForm,
  uploadRaw,
} from '../helpers/assets.js';
import { curl } from '../helpers/curl.js';
import { api, b64, md5Hex, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

async function content(id: string, key = w.key): Promise<Buffer> {
  const res = await fetch(`${w.url}/v1/assets/${id}/content`, { headers: { 'x-api-key': key } });
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

/** Nothing of a refused upload remains: no asset, no object, no temp file, the intent closed. */
async function assertNothingStored(
  server: TestWharf,
  before: { assets: number; objects: string[] },
  what: string,
): Promise<void> {
  assert.equal(countAssets(server), before.assets, `${what}: no asset row`);
  assert.deepEqual(await objectFiles(server), before.objects, `${what}: no new object file`);
  assert.deepEqual(await tmpFiles(server), [], `${what}: no temp file left`);
  const pending = dbQuery(server, "select id from uploads where kind = 'direct' and status = 'pending'");
  assert.deepEqual(pending, [], `${what}: no direct upload left pending`);
}

async function snapshot(server: TestWharf) {
  return { assets: countAssets(server), objects: await objectFiles(server) };
}

describe('POST /v1/assets with a raw body', () => {
  test('stores the bytes and reports their verified size and digests', async () => {
    const bytes = randomBytes(5000);
    const res = await uploadRaw(w, w.key, 'photo.png', bytes, { contentType: 'image/png' });
    assert.equal(res.status, 201);
    assert.equal(res.body.status, 'created');
    const asset = res.body.asset;
    assert.match(asset.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(asset.name, 'photo.png');
    assert.equal(asset.content_type, 'image/png');
    assert.equal(asset.size, 5000);
    assert.equal(asset.sha256, sha256Hex(bytes));
    assert.equal(asset.md5, md5Hex(bytes));
    assert.equal(asset.status, 'ready');
    assert.deepEqual(asset.metadata, {});
    assert.equal(asset.created_at, new Date(w.clock.now()).toISOString());
    assert.equal(asset.content_url, `${w.url}/v1/assets/${asset.id}/content`);
    assert.ok((await content(asset.id)).equals(bytes));
    const got = await api(w.url, w.key, 'GET', `/v1/assets/${asset.id}`);
    assert.deepEqual(got.body, asset);
  });

  test('a raw body needs ?name=', async () => {
    const before = await snapshot(w);
    const res = await fetch(`${w.url}/v1/assets`, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'text/plain' },
      body: 'no name',
    });
    assert.equal(res.status, 400);
    assert.equal((await readJson(res)).body.error.code, 'VALIDATION_FAILED');
    await assertNothingStored(w, before, 'nameless raw body');
  });

  test('a JSON or form-encoded body is stored as a file, byte for byte, not parsed', async () => {
    const json = '{"a": 1,   "b": [true, null]}\n';
    const res = await uploadRaw(w, w.key, 'data.json', json, { contentType: 'application/json' });
    assert.equal(res.status, 201);
    assert.equal(res.body.asset.content_type, 'application/json');
    assert.equal((await content(res.body.asset.id)).toString(), json);

    const form = 'a=1&b=2&b=3';
    const res2 = await uploadRaw(w, w.key, 'form.txt', form, {
      contentType: 'application/x-www-form-urlencoded',
    });
    assert.equal(res2.status, 201);
    assert.equal((await content(res2.body.asset.id)).toString(), form);
  });

  test('without a Content-Type the asset is application/octet-stream; ?content_type= overrides', async () => {
    const res = await fetch(`${w.url}/v1/assets?name=blob.bin`, {
      method: 'POST',
      headers: { 'x-api-key': w.key },
      body: new Uint8Array(randomBytes(10)),
    });
    assert.equal(res.status, 201);
    assert.equal((await readJson(res)).body.asset.content_type, 'application/octet-stream');

    const res2 = await uploadRaw(w, w.key, 'pic', randomBytes(10), {
      contentType: 'application/octet-stream',
      query: { content_type: 'IMAGE/WebP' },
    });
    assert.equal(res2.status, 201);
    assert.equal(res2.body.asset.content_type, 'image/webp');
  });

  test('an empty file is a valid asset', async () => {
    const res = await uploadRaw(w, w.key, 'empty.txt', '', { contentType: 'text/plain' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.asset.size, 0);
    assert.equal(res.body.asset.sha256, sha256Hex(''));
    assert.equal((await content(res.body.asset.id)).length, 0);
  });

  test('a chunked body without Content-Length is stored whole', async () => {
    const parts = [randomBytes(70_000), randomBytes(1), randomBytes(123_456)];
    const res = await fetch(`${w.url}/v1/assets?name=chunked.bin`, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
      body: new ReadableStream({
        start(controller) {
          for (const p of parts) controller.enqueue(new Uint8Array(p));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    const { body } = await readJson(res);
    assert.equal(res.status, 201, JSON.stringify(body));
    const all = Buffer.concat(parts);
    assert.equal(body.asset.size, all.length);
    assert.equal(body.asset.sha256, sha256Hex(all));
    assert.ok((await content(body.asset.id)).equals(all));
  });
});

describe('POST /v1/assets with multipart/form-data', () => {
  test('takes the name and type from the file part', async () => {
    const bytes = Buffer.from('col1,col2\n1,2\n');
    const res = await uploadForm(w, w.key, 'table.csv', bytes, 'text/csv');
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.asset.name, 'table.csv');
    assert.equal(res.body.asset.content_type, 'text/csv');
    assert.equal(res.body.asset.sha256, sha256Hex(bytes));
    assert.ok((await content(res.body.asset.id)).equals(bytes));
  });

  test('?name= and ?content_type= override the part', async () => {
    const res = await uploadForm(
      w,
      w.key,
      'upload.bin',
      randomBytes(32),
      'application/octet-stream',
      '/v1/assets?name=renamed.dat&content_type=application/x-custom',
    );
    assert.equal(res.status, 201);
    assert.equal(res.body.asset.name, 'renamed.dat');
    assert.equal(res.body.asset.content_type, 'application/x-custom');
  });

  test('binary content with CR LF and boundary-like bytes survives the form encoding', async () => {
    const bytes = Buffer.concat([
      Buffer.from('\r\n--boundary\r\n\r\n--'),
      randomBytes(100_000),
      Buffer.from('\r\n'),
    ]);
    const res = await uploadForm(w, w.key, 'tricky.bin', bytes);
    assert.equal(res.status, 201);
    assert.equal(res.body.asset.sha256, sha256Hex(bytes));
    assert.ok((await content(res.body.asset.id)).equals(bytes));
  });

  test('a raw UTF-8 filename (as browsers and curl send it) keeps its characters', async () => {
    const name = 'résumé 📄.pdf';
    const res = await postRawMultipart(w, w.key, Buffer.from(name, 'utf8'), 'pdf bytes');
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.asset.name, name);
  });

  test('the file must be in field "file"; a form without one is refused', async () => {
    const before = await snapshot(w);
    const form = new FormData();
    form.append('upload', new Blob(['x']), 'x.txt');
    const res = await fetch(`${w.url}/v1/assets`, {
      method: 'POST',
      headers: { 'x-api-key': w.key },
      body: form,
    });
    assert.equal(res.status, 400);
    assert.equal((await readJson(res)).body.error.code, 'VALIDATION_FAILED');

    const fieldsOnly = new FormData();
    fieldsOnly.append('note', 'no file here');
    const res2 = await fetch(`${w.url}/v1/assets`, {
      method: 'POST',
      headers: { 'x-api-key': w.key },
      body: fieldsOnly,
    });
    assert.equal(res2.status, 400);
    assert.equal((await readJson(res2)).body.error.code, 'VALIDATION_FAILED');
    await assertNothingStored(w, before, 'form without a file field');
  });
});

describe('deduplication: the same bytes twice in one account are one asset', () => {
  test('the second upload answers 200 "exists" with the first asset, and keeps one copy of the bytes', async () => {
    const bytes = randomBytes(2048);
    const first = await uploadRaw(w, w.key, 'one.bin', bytes, { contentType: 'application/octet-stream' });
    assert.equal(first.status, 201);
    const objectsAfterFirst = await objectFiles(w);

    const second = await uploadForm(w, w.key, 'two.bin', bytes);
    assert.equal(second.status, 200);
    assert.equal(second.body.status, 'exists');
    assert.equal(second.body.asset.id, first.body.asset.id);
    assert.equal(second.body.asset.name, 'one.bin', 'the existing asset is returned unchanged');
    assert.deepEqual(await objectFiles(w), objectsAfterFirst, 'the duplicate bytes were not kept');
    assert.equal(dbQuery(w, 'select id from assets where sha256 = ?', sha256Hex(bytes)).length, 1);
  });
});

describe('integrity declarations', () => {
  const bytes = Buffer.from('integrity matters');
  const wrong = Buffer.from('something else entirely');
  type Declaration = { headers?: Record<string, string>; query?: Record<string, string> };
  const good: Array<[string, (b: Buffer) => Declaration]> = [
    ['Content-MD5', (b) => ({ headers: { 'content-md5': b64(md5Hex(b)) } })],
    ['Content-Digest sha-256', (b) => ({ headers: { 'content-digest': `sha-256=:${b64(sha256Hex(b))}:` } })],
    ['Repr-Digest sha-256', (b) => ({ headers: { 'repr-digest': `sha-256=:${b64(sha256Hex(b))}:` } })],
    [
      'Content-Digest with sha-512 beside sha-256',
      (b) => ({
        headers: {
          'content-digest': `sha-512=:${Buffer.alloc(64).toString('base64')}:, sha-256=:${b64(sha256Hex(b))}:`,
        },
      }),
    ],
    ['?sha256= hex', (b) => ({ query: { sha256: sha256Hex(b) } })],
    ['?sha256= upper-case hex', (b) => ({ query: { sha256: sha256Hex(b).toUpperCase() } })],
    ['?sha256= base64', (b) => ({ query: { sha256: b64(sha256Hex(b)) } })],
    [
      '?sha256= base64url',
      (b) => ({ query: { sha256: Buffer.from(sha256Hex(b), 'hex').toString('base64url') } }),
    ],
    ['?md5= hex', (b) => ({ query: { md5: md5Hex(b) } })],
    ['?md5= base64', (b) => ({ query: { md5: b64(md5Hex(b)) } })],
    [
      'every declaration at once, agreeing',
      (b) => ({
        headers: {
          'content-md5': b64(md5Hex(b)),
          'content-digest': `sha-256=:${b64(sha256Hex(b))}:`,
          'repr-digest': `sha-256=:${b64(sha256Hex(b))}:`,
        },
        query: { sha256: sha256Hex(b), md5: md5Hex(b) },
      }),
    ],
  ];

  for (const [label, declare] of good) {
    test(`a matching ${label} is accepted`, async () => {
      const fresh = Buffer.from(`integrity matters: ${label}`);
      const res = await uploadRaw(w, w.key, 'checked.txt', fresh, {
        contentType: 'text/plain',
        ...declare(fresh),
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal(res.body.asset.sha256, sha256Hex(fresh));
      assert.equal(res.body.asset.md5, md5Hex(fresh));
    });
  }

  const bad: Array<[string, Declaration]> = [
    ['Content-MD5', { headers: { 'content-md5': b64(md5Hex(wrong)) } }],
    ['Content-Digest', { headers: { 'content-digest': `sha-256=:${b64(sha256Hex(wrong))}:` } }],
    ['Repr-Digest', { headers: { 'repr-digest': `sha-256=:${b64(sha256Hex(wrong))}:` } }],
    ['?sha256=', { query: { sha256: sha256Hex(wrong) } }],
    ['?md5=', { query: { md5: md5Hex(wrong) } }],
    [
      'MD5 right but SHA-256 wrong',
      { headers: { 'content-md5': b64(md5Hex(bytes)) }, query: { sha256: sha256Hex(wrong) } },
    ],
  ];
  for (const [label, options] of bad) {
    test(`a mismatching ${label} is CHECKSUM_MISMATCH and stores nothing`, async () => {
      const fresh = Buffer.concat([bytes, randomBytes(8)]);
      const before = await snapshot(w);
      const res = await uploadRaw(w, w.key, 'tampered.txt', fresh, { contentType: 'text/plain', ...options });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'CHECKSUM_MISMATCH');
      await assertNothingStored(w, before, label);
      assert.deepEqual(dbQuery(w, 'select id from assets where sha256 = ?', sha256Hex(fresh)), []);
    });
  }

  test('a mismatch on a multipart upload stores nothing either', async () => {
    const before = await snapshot(w);
    const fresh = randomBytes(3000);
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(fresh)]), 'f.bin');
    const res = await fetch(`${w.url}/v1/assets?sha256=${sha256Hex(wrong)}`, {
      method: 'POST',
      headers: { 'x-api-key': w.key },
      body: form,
    });
    assert.equal(res.status, 400);
    assert.equal((await readJson(res)).body.error.code, 'CHECKSUM_MISMATCH');
    await assertNothingStored(w, before, 'multipart mismatch');
  });

  // RFC 1864 and RFC 9530 define these headers over the message content: of a form, the whole
  // form with its boundaries, not the file part in it.
  const headerOf: Array<[string, (b: Buffer) => Record<string, string>]> = [
    ['Content-MD5', (b) => ({ 'content-md5': b64(md5Hex(b)) })],
    ['Content-Digest', (b) => ({ 'content-digest': `sha-256=:${b64(sha256Hex(b))}:` })],
    ['Repr-Digest', (b) => ({ 'repr-digest': `sha-256=:${b64(sha256Hex(b))}:` })],
  ];
  const postForm = (body: Buffer, contentType: string, headers: Record<string, string>, query = '') =>
    readJson(
      fetch(`${w.url}/v1/assets${query}`, {
        method: 'POST',
        headers: { 'x-api-key': w.key, 'content-type': contentType, ...headers },
        body: new Uint8Array(body),
      }),
    );
  for (const [label, declare] of headerOf) {
    test(`on a multipart upload, ${label} is the whole form's: its digest is accepted, the file's refused`, async () => {
      const file = randomBytes(3000);
      const { body, contentType } = rawMultipart(Buffer.from('form.bin'), file);
      const before = await snapshot(w);
      const refused = await postForm(body, contentType, declare(file));
      assert.equal(refused.status, 400, JSON.stringify(refused.body));
      assert.equal(refused.body.error.code, 'CHECKSUM_MISMATCH');
      await assertNothingStored(w, before, `${label} of the file part`);

      const accepted = await postForm(body, contentType, declare(body));
      assert.equal(accepted.status, 201, JSON.stringify(accepted.body));
      assert.equal(accepted.body.asset.sha256, sha256Hex(file));
      assert.equal(accepted.body.asset.md5, md5Hex(file));
    });
  }

  test("on a multipart upload, the query declares the file's digests beside the headers' of the form", async () => {
    // Big enough to arrive in many chunks, hashed as busboy takes them.
    const file = randomBytes(1_500_000);
    const { body, contentType } = rawMultipart(Buffer.from('both.bin'), file);
    const headers = { 'content-md5': b64(md5Hex(body)), 'repr-digest': `sha-256=:${b64(sha256Hex(body))}:` };
    const before = await snapshot(w);
    const wrongFile = await postForm(body, contentType, headers, `?sha256=${sha256Hex(wrong)}`);
    assert.equal(wrongFile.status, 400, JSON.stringify(wrongFile.body));
    assert.equal(wrongFile.body.error.code, 'CHECKSUM_MISMATCH');
    await assertNothingStored(w, before, 'a form whose file does not match ?sha256=');

    const ok = await postForm(body, contentType, headers, `?sha256=${sha256Hex(file)}&md5=${md5Hex(file)}`);
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.equal(ok.body.asset.sha256, sha256Hex(file));
  });

  test('declarations that disagree with each other are INVALID_DIGEST, before any byte is stored', async () => {
    const before = await snapshot(w);
    const res = await uploadRaw(w, w.key, 'x.txt', bytes, {
      headers: { 'content-digest': `sha-256=:${b64(sha256Hex(bytes))}:` },
      query: { sha256: sha256Hex(wrong) },
    });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'INVALID_DIGEST');
    await assertNothingStored(w, before, 'disagreeing declarations');
  });
});

describe('size limit (WHARF_MAX_FILE_SIZE=1000)', () => {
  let small: TestWharf;
  before(async () => {
    small = await startWharf({ env: { WHARF_MAX_FILE_SIZE: '1000' } });
  });
  after(async () => {
    await small?.close();
  });

  test('exactly the limit is accepted, raw and multipart', async () => {
    const raw = await uploadRaw(small, small.key, 'max.bin', randomBytes(1000));
    assert.equal(raw.status, 201, JSON.stringify(raw.body));
    assert.equal(raw.body.asset.size, 1000);
    const form = await uploadForm(small, small.key, 'max2.bin', randomBytes(1000));
    assert.equal(form.status, 201, JSON.stringify(form.body));
    assert.equal(form.body.asset.size, 1000);
  });

  test('one byte over, with Content-Length, is 413 FILE_TOO_LARGE and stores nothing', async () => {
    const before = await snapshot(small);
    const res = await uploadRaw(small, small.key, 'over.bin', randomBytes(1001));
    assert.equal(res.status, 413);
    assert.equal(res.body.error.code, 'FILE_TOO_LARGE');
    assert.equal(res.body.error.details.limit, 1000);
    await assertNothingStored(small, before, 'oversize raw');
  });

  test('a chunked body without Content-Length is stopped at the limit while streaming', async () => {
    const before = await snapshot(small);
    const res = await fetch(`${small.url}/v1/assets?name=stream.bin`, {
      method: 'POST',
      headers: { 'x-api-key': small.key, 'content-type': 'application/octet-stream' },
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 8; i += 1) controller.enqueue(new Uint8Array(randomBytes(400)));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    assert.equal(res.status, 413);
    assert.equal((await readJson(res)).body.error.code, 'FILE_TOO_LARGE');
    await assertNothingStored(small, before, 'oversize chunked');
  });

  test('a multipart file one byte over is 413 and stores nothing', async () => {
    const before = await snapshot(small);
    const res = await uploadForm(small, small.key, 'over.bin', randomBytes(1001));
    assert.equal(res.status, 413, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'FILE_TOO_LARGE');
    await assertNothingStored(small, before, 'oversize multipart');
  });

  test('presigned declarations over the limit are refused up front', async () => {
    const res = await api(small.url, small.key, 'POST', '/v1/uploads', { name: 'big.bin', size: 1001 });
    assert.equal(res.status, 413);
    assert.equal(res.body.error.code, 'FILE_TOO_LARGE');
    const ok = await api(small.url, small.key, 'POST', '/v1/uploads', { name: 'ok.bin', size: 1000 });
    assert.equal(ok.status, 201);
  });
});

describe('a client that goes away mid-body leaves nothing behind', () => {
  /** Sends the headers and part of the body, then closes the socket. */
  function abortAfter(path: string, headers: Record<string, string>, sent: Buffer): Promise<void> {
    return new Promise((resolve) => {
      const req = httpRequest(`${w.url}${path}`, { method: 'POST', headers });
      req.on('error', () => resolve());
      req.on('response', (res) => {
        res.resume();
        resolve();
      });
      req.write(sent, () => {
        req.destroy();
        resolve();
      });
    });
  }

  async function settled(): Promise<void> {
    await eventually(
      () => dbQuery(w, "select id from uploads where kind = 'direct' and status = 'pending'").length === 0,
      'the aborted upload is closed on the server',
    );
    await eventually(async () => (await tmpFiles(w)).length === 0, 'the temp file is removed');
  }

  test('raw body with a Content-Length it never finishes', async () => {
    const before = await snapshot(w);
    const uploadsBefore = dbQuery(w, "select id from uploads where kind = 'direct'").length;
    await abortAfter(
      '/v1/assets?name=aborted.bin',
      { 'x-api-key': w.key, 'content-type': 'application/octet-stream', 'content-length': '5000000' },
      randomBytes(300_000),
    );
    await eventually(
      () => dbQuery(w, "select id from uploads where kind = 'direct'").length > uploadsBefore,
      'the server saw the upload start',
    );
    await settled();
    await assertNothingStored(w, before, 'aborted raw upload');
    const [row] = dbQuery<{ status: string }>(
      w,
      "select status from uploads where kind = 'direct' and name = 'aborted.bin'",
    );
    assert.equal(row?.status, 'expired');
  });

  test('chunked body cut off mid-stream (AbortController)', async () => {
    const before = await snapshot(w);
    const controller = new AbortController();
    let sent = 0;
    const body = new ReadableStream({
      async pull(c) {
        if (sent >= 400_000) {
          controller.abort();
          return;
        }
        sent += 65_536;
        c.enqueue(new Uint8Array(randomBytes(65_536)));
      },
    });
    await assert.rejects(
      fetch(`${w.url}/v1/assets?name=cut.bin`, {
        method: 'POST',
        headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
        body,
        duplex: 'half',
        signal: controller.signal,
      } as RequestInit),
    );
    await eventually(
      () => dbQuery(w, "select id from uploads where name = 'cut.bin'").length === 1,
      'the server saw the upload start',
    );
    await settled();
    await assertNothingStored(w, before, 'aborted chunked upload');
  });

  test('multipart form cut off inside the file part', async () => {
    const before = await snapshot(w);
    const boundary = 'cut-boundary-31337';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="partial.bin"\r\n` +
        'Content-Type: application/octet-stream\r\n\r\n',
    );
    await abortAfter(
      '/v1/assets',
      {
        'x-api-key': w.key,
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': '2000000',
      },
      Buffer.concat([head, randomBytes(200_000)]),
    );
    await eventually(
      () => dbQuery(w, "select id from uploads where name = 'partial.bin'").length === 1,
      'the server saw the upload start',
    );
    await settled();
    await assertNothingStored(w, before, 'aborted multipart upload');
  });

  test('the server still serves requests afterwards', async () => {
    const asset = await createAsset(w, w.key, 'after-abort.txt', 'still here', 'text/plain');
    assert.equal((await content(asset.id)).toString(), 'still here');
  });
});

describe('POST /v1/uploads/{id}/complete on a direct upload', () => {
  test('while its request streams: 409 UPLOAD_NOT_PENDING (it completes by itself); once done: its asset again', async () => {
    const bytes = randomBytes(2000);
    let answer!: (res: { status: number; body: string }) => void;
    const answered = new Promise<{ status: number; body: string }>((resolve) => {
      answer = resolve;
    });
    const req = httpRequest(`${w.url}/v1/assets?name=streaming.bin`, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream', 'content-length': '2000' },
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => answer({ status: res.statusCode ?? 0, body }));
    });
    req.write(bytes.subarray(0, 1000));
    let id: string | undefined;
    await eventually(() => {
      id = dbQuery<{ id: string }>(
        w,
        "select id from uploads where kind = 'direct' and name = 'streaming.bin' and status = 'pending'",
      )[0]?.id;
      return id !== undefined;
    }, 'the server saw the upload start');
    const early = await api(w.url, w.key, 'POST', `/v1/uploads/${id}/complete`);
    assert.equal(early.status, 409, JSON.stringify(early.body));
    assert.equal(early.body.error.code, 'UPLOAD_NOT_PENDING');

    req.end(bytes.subarray(1000));
    const done = await answered;
    assert.equal(done.status, 201, done.body);
    const asset = JSON.parse(done.body).asset;
    // Idempotent, as for every kind: the outcome again, not a refusal.
    const again = await api(w.url, w.key, 'POST', `/v1/uploads/${id}/complete`);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.asset.id, asset.id);
    assert.equal(again.body.asset.sha256, sha256Hex(bytes));
  });
});

describe('raw body content type', () => {
  test('curl --data-binary without a Content-Type is recorded as application/octet-stream, not a URL-encoded form', async () => {
    const w = await startWharf();
    try {
      const res = await curl([
        '-X',
        'POST',
        '--data-binary',
        'not a form',
        '-H',
        `x-api-key: ${w.key}`,
        `${w.url}/v1/assets?name=blob.bin`,
      ]);
      assert.equal(res.status, 201, res.body);
      assert.equal(JSON.parse(res.body).asset.content_type, 'application/octet-stream');
    } finally {
      await w.close();
    }
  });
});

describe('forms with more than one file', () => {
  test('a second file part is refused with TOO_MANY_FILES and neither file is stored', async () => {
    const w = await startWharf();
    try {
      const form = new FormData();
      form.append('note', 'text fields before the file are fine');
      form.append('file', new Blob(['first file']), 'one.txt');
      form.append('file', new Blob(['second file']), 'two.txt');
      const res = await fetch(`${w.url}/v1/assets`, {
        method: 'POST',
        headers: { 'x-api-key': w.key },
        body: form,
      });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'TOO_MANY_FILES');
      const list = await api(w.url, w.key, 'GET', '/v1/assets');
      assert.deepEqual(list.body.data, []);
      assert.deepEqual(await objectFiles(w), []);
    } finally {
      await w.close();
    }
  });

  test('text fields before the file part are ignored, and the file is stored', async () => {
    const w = await startWharf();
    try {
      const form = new FormData();
      form.append('note', 'hello');
      form.append('file', new Blob(['only file']), 'only.txt');
      const res = await fetch(`${w.url}/v1/assets`, {
        method: 'POST',
        headers: { 'x-api-key': w.key },
        body: form,
      });
      assert.equal(res.status, 201);
      assert.equal(((await res.json()) as { asset: { name: string } }).asset.name, 'only.txt');
    } finally {
      await w.close();
    }
  });
});
