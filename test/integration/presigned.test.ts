import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { api, b64, md5Hex, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

async function declare(file: Record<string, unknown>) {
  const res = await api(w.url, w.key, 'POST', '/v1/uploads', file);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

function put(
  intent: { url: string; headers: Record<string, string> },
  body: Buffer,
  headers: Record<string, string> = {},
) {
  return fetch(intent.url, {
    method: 'PUT',
    headers: { ...intent.headers, ...headers },
    body: new Uint8Array(body),
  });
}

describe('presigned PUT then complete', () => {
  test('the declared bytes become an asset with verified digests', async () => {
    const bytes = Buffer.from('presigned hello');
    const intent = await declare({ name: 'a.txt', content_type: 'text/plain', size: bytes.length });
    assert.equal(intent.method, 'PUT');
    assert.equal(intent.headers['Content-Type'], 'text/plain');
    const res = await put(intent, bytes);
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get('etag'), `"${md5Hex(bytes)}"`);

    const done = await api(w.url, w.key, 'POST', `/v1/uploads/${intent.id}/complete`);
    assert.equal(done.status, 200);
    assert.equal(done.body.status, 'created');
    assert.equal(done.body.asset.sha256, sha256Hex(bytes));
    assert.equal(done.body.asset.size, bytes.length);

    const again = await api(w.url, w.key, 'POST', `/v1/uploads/${intent.id}/complete`);
    assert.equal(again.status, 200);
    assert.equal(again.body.asset.id, done.body.asset.id);
  });

  test('a body whose SHA-256 differs from the declared one is refused and stores nothing', async () => {
    const bytes = Buffer.from('the real bytes');
    const intent = await declare({ name: 'b.bin', size: bytes.length, sha256: sha256Hex(bytes) });
    const forged = Buffer.from('the fake bytes');
    const res = await put(intent, forged, { 'x-amz-checksum-sha256': b64(sha256Hex(forged)) });
    assert.equal(res.status, 403, 'changing a signed header breaks the signature');
    const res2 = await put(intent, forged);
    assert.equal(res2.status, 400);
    assert.match(await res2.text(), /<Code>BadDigest<\/Code>/);
    const done = await api(w.url, w.key, 'POST', `/v1/uploads/${intent.id}/complete`);
    assert.equal(done.status, 409);
    assert.equal(done.body.error.code, 'UPLOAD_INCOMPLETE');
  });
});
