import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readJson } from '../helpers/assets.js';
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
});
