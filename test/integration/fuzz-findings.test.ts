import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readJson, uploadRaw } from '../helpers/assets.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// Regression tests for what the route fuzzer (fuzz-routes.test.ts) found: each a request that
// was answered with a 500, now refused with a 4xx in the path's own error shape.

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

describe('fuzzer findings', () => {
  test('a NUL or traversal in a /docs static path is 403 FORBIDDEN, not a 500', async () => {
    for (const path of ['/docs/static/%00', '/docs/static/%25/0/%00', '/docs/static/a%00b.js']) {
      for (const method of ['GET', 'HEAD']) {
        const res = await readJson(fetch(`${w.url}${path}`, { method }));
        assert.equal(res.status, 403, `${method} ${path}`);
        if (method === 'GET') assert.equal(res.body.error.code, 'FORBIDDEN', JSON.stringify(res.body));
      }
    }
  });

  test("HEAD of an asset's content with a matching If-None-Match is 304, not a 500", async () => {
    const created = await uploadRaw(w, w.key, 'etag.txt', 'conditional', { contentType: 'text/plain' });
    assert.equal(created.status, 201);
    const { id, sha256 } = created.body.asset;
    for (const method of ['HEAD', 'GET']) {
      for (const tag of ['*', `"${sha256}"`, `"other", "${sha256}"`]) {
        const res = await fetch(`${w.url}/v1/assets/${id}/content`, {
          method,
          headers: { 'x-api-key': w.key, 'if-none-match': tag },
        });
        assert.equal(res.status, 304, `${method} If-None-Match: ${tag}`);
        assert.equal(await res.text(), '');
      }
    }
  });

  test('a file version past any that can exist (?version=2^53, 10^20) is 404, not a 500 (PostgreSQL)', async () => {
    const put = await fetch(`${w.url}/v1/files/docs/versioned.txt`, {
      method: 'PUT',
      headers: { 'x-api-key': w.key, 'content-type': 'text/plain' },
      body: 'v1',
    });
    assert.equal(put.status, 201, await put.text());
    const paths = (version: string) => [
      `/v1/files/docs/versioned.txt?version=${version}`,
      `/api_gateway/file-service/docs/versioned.txt?version=${version}`,
      `/api_gateway/file-service/docs/versioned.txt/content?version=${version}`,
    ];
    for (const version of ['99999999999999999999', '9007199254740993', '2147483648', '1'.padEnd(400, '0')]) {
      for (const path of paths(version)) {
        const res = await fetch(`${w.url}${path}`, { headers: { 'x-api-key': w.key } });
        assert.equal(res.status, 404, `${path}: ${await res.text()}`);
      }
    }
    // In exponent notation it is no query number at all (only plain decimal is).
    for (const version of ['1e309', '1e300']) {
      for (const path of paths(version)) {
        const res = await fetch(`${w.url}${path}`, { headers: { 'x-api-key': w.key } });
        assert.equal(res.status, 400, `${path}: ${await res.text()}`);
      }
    }
    const latest = await fetch(`${w.url}/v1/files/docs/versioned.txt?version=1`, {
      headers: { 'x-api-key': w.key },
    });
    assert.equal(latest.status, 200, await latest.text());
  });
});
