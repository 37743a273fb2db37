import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WharfApiError } from '../../src/sdk/errors.js';
import { Transport } from '../../src/sdk/http.js';

/**
 * The SDK's retries (src/sdk/http.ts), against a fetch that answers what a busy Wharf does:
 * refusals that say "come back later" are retried for as long as the busy budget lasts, past
 * the count of retries that failures get; other refusals are not retried.
 */

function refusing(answers: Array<[number, string]>): { fetch: typeof fetch; calls: () => number } {
  let calls = 0;
  const fetchImpl = (async () => {
    const answer = answers[calls++];
    if (!answer) return Response.json({ ok: true });
    const [status, code] = answer;
    return Response.json(
      { error: { code, message: `${code}: busy` } },
      { status, headers: { 'retry-after': '0' } },
    );
  }) as typeof fetch;
  return { fetch: fetchImpl, calls: () => calls };
}

test('429 TOO_MANY_UPLOAD_STREAMS and TOO_MANY_OPEN_UPLOADS, and 503s, are retried beyond `retries`', async () => {
  const server = refusing([
    [429, 'TOO_MANY_UPLOAD_STREAMS'],
    [429, 'TOO_MANY_OPEN_UPLOADS'],
    [503, 'SlowDown'],
    [503, 'SERVICE_UNAVAILABLE'],
    [429, 'TOO_MANY_UPLOAD_STREAMS'],
  ]);
  const http = new Transport({
    url: 'http://wharf.test',
    fetch: server.fetch,
    retry: { retries: 1, minDelayMs: 1 },
  });
  assert.deepEqual(await http.json('GET', '/v1/account'), { ok: true });
  assert.equal(server.calls(), 6);
});

test('busy refusals stop being retried once the busy budget is spent; other 429s are not retried', async () => {
  const busy = refusing(
    Array.from({ length: 50 }, () => [429, 'TOO_MANY_UPLOAD_STREAMS'] as [number, string]),
  );
  const http = new Transport({
    url: 'http://wharf.test',
    fetch: busy.fetch,
    retry: { retries: 3, minDelayMs: 10, busyMs: 50 },
  });
  await assert.rejects(http.json('GET', '/v1/account'), (err: unknown) => {
    return err instanceof WharfApiError && err.code === 'TOO_MANY_UPLOAD_STREAMS';
  });
  // Each wait is 10 to 15 ms: at most five fit in 50 ms.
  assert.ok(busy.calls() >= 4 && busy.calls() <= 6, `${busy.calls()} calls`);

  const limited = refusing([[429, 'RATE_LIMITED']]);
  const other = new Transport({ url: 'http://wharf.test', fetch: limited.fetch, retry: { minDelayMs: 1 } });
  await assert.rejects(other.json('GET', '/v1/account'), { code: 'RATE_LIMITED' });
  assert.equal(limited.calls(), 1);
});
