import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WharfApiError } from '../../src/sdk/errors.js';
import { redact, Transport } from '../../src/sdk/http.js';

/**
 * The SDK's retries (src/sdk/http.ts), against a fetch that answers what a busy Wharf does:
 * refusals that say "come back later" (with Retry-After) are retried for as long as the busy
 * budget lasts, past the count of retries that failures get; other refusals are not retried.
 */

function refusing(
  answers: Array<[number, string]>,
  retryAfter: string | null = '0',
): { fetch: typeof fetch; calls: () => number; times: number[] } {
  let calls = 0;
  const times: number[] = [];
  const fetchImpl = (async () => {
    times.push(performance.now());
    const answer = answers[calls++];
    if (!answer) return Response.json({ ok: true });
    const [status, code] = answer;
    return Response.json(
      { error: { code, message: `${code}: busy` } },
      { status, ...(retryAfter !== null && { headers: { 'retry-after': retryAfter } }) },
    );
  }) as typeof fetch;
  return { fetch: fetchImpl, calls: () => calls, times };
}

test('429 TOO_MANY_UPLOAD_STREAMS and 503s with Retry-After are retried beyond `retries`', async () => {
  const server = refusing([
    [429, 'TOO_MANY_UPLOAD_STREAMS'],
    [503, 'SERVICE_UNAVAILABLE'],
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

test("a 503 without Retry-After (a proxy's) is retried only `retries` times, with growing waits", async (t) => {
  // No jitter: each wait is the whole backoff, 20, 40, 80 ms.
  t.mock.method(Math, 'random', () => 1);
  const proxy = refusing(
    Array.from({ length: 100 }, () => [503, 'HTTP_503'] as [number, string]),
    null,
  );
  const http = new Transport({
    url: 'http://wharf.test',
    fetch: proxy.fetch,
    retry: { retries: 3, minDelayMs: 20, busyMs: 2000 },
  });
  await assert.rejects(http.json('GET', '/v1/account'), { code: 'HTTP_503' });
  assert.equal(proxy.calls(), 4);
  const waits = proxy.times.slice(1).map((at, i) => at - proxy.times[i]!);
  for (const [i, wait] of waits.entries()) {
    assert.ok(wait >= 20 * 2 ** i - 2, `wait ${i}: ${wait} ms`);
  }
});

test('429 TOO_MANY_OPEN_UPLOADS is not retried (open uploads close in hours, not seconds)', async () => {
  for (const retryAfter of [null, '0']) {
    const server = refusing([[429, 'TOO_MANY_OPEN_UPLOADS']], retryAfter);
    const http = new Transport({ url: 'http://wharf.test', fetch: server.fetch, retry: { minDelayMs: 1 } });
    await assert.rejects(http.json('POST', '/v1/uploads'), { code: 'TOO_MANY_OPEN_UPLOADS' });
    assert.equal(server.calls(), 1, `Retry-After ${retryAfter}`);
  }
});

test("retry: 'busy' (a tus PATCH) waits out busy refusals only; any other failure is the caller's", async () => {
  const busy = refusing([
    [503, 'TOO_MANY_UPLOAD_STREAMS'],
    [503, 'TOO_MANY_UPLOAD_STREAMS'],
  ]);
  const http = new Transport({ url: 'http://wharf.test', fetch: busy.fetch, retry: { minDelayMs: 1 } });
  let retried = 0;
  await http.request('PATCH', '/v1/tus/x', { retry: 'busy', onRetry: () => retried++ });
  assert.equal(busy.calls(), 3);
  assert.equal(retried, 2, 'onRetry is called before each, so the caller can take back the bytes counted');

  const failing = refusing([[500, 'INTERNAL']]);
  const other = new Transport({ url: 'http://wharf.test', fetch: failing.fetch, retry: { minDelayMs: 1 } });
  await assert.rejects(other.request('PATCH', '/v1/tus/x', { retry: 'busy' }), { code: 'INTERNAL' });
  assert.equal(failing.calls(), 1);
});

/** A server that answers once, then cannot be reached (`down`) until `upAfter` more calls. */
function restarting(
  down: () => Response | never,
  upAfter: number,
): { fetch: typeof fetch; calls: () => number } {
  let calls = 0;
  const fetchImpl = (async () => {
    calls++;
    if (calls === 1 || calls > 1 + upAfter) return Response.json({ ok: true });
    return down();
  }) as typeof fetch;
  return { fetch: fetchImpl, calls: () => calls };
}

const refused = (): never => {
  throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
};

test('a server that answered before and now cannot be reached is retried past `retries`, within restartMs', async () => {
  for (const [what, down] of [
    ['connection refused', refused],
    ['a 502 from a proxy', () => new Response('Bad Gateway', { status: 502 })],
    ['a 503 without Retry-After', () => new Response('Service Unavailable', { status: 503 })],
    ['a 504 from a proxy', () => new Response('Gateway Timeout', { status: 504 })],
  ] as const) {
    const server = restarting(down, 8);
    // maxDelayMs also bounds the waits past `retries` (1–2 s by default), so this runs in ms.
    const http = new Transport({
      url: 'http://wharf.test',
      fetch: server.fetch,
      retry: { retries: 2, minDelayMs: 1, maxDelayMs: 5, restartMs: 10_000 },
    });
    assert.deepEqual(await http.json('GET', '/v1/account'), { ok: true });
    assert.deepEqual(await http.json('GET', '/v1/account'), { ok: true }, what);
    assert.equal(server.calls(), 10, what);
  }
});

test('the restart window ends restartMs after the first failure; a 500 is not given one', async () => {
  const server = restarting(refused, Number.POSITIVE_INFINITY);
  const http = new Transport({
    url: 'http://wharf.test',
    fetch: server.fetch,
    retry: { retries: 2, minDelayMs: 1, maxDelayMs: 5, restartMs: 300 },
  });
  await http.json('GET', '/v1/account');
  const started = performance.now();
  await assert.rejects(http.json('GET', '/v1/account'), { code: 'NETWORK_ERROR' });
  assert.ok(performance.now() - started >= 300, 'not before the window ended');
  assert.ok(server.calls() > 4, `${server.calls()} calls: past the 3 attempts of \`retries\``);

  const failing = restarting(
    () => Response.json({ error: { code: 'INTERNAL', message: 'x' } }, { status: 500 }),
    50,
  );
  const other = new Transport({
    url: 'http://wharf.test',
    fetch: failing.fetch,
    retry: { retries: 2, minDelayMs: 1, restartMs: 10_000 },
  });
  await other.json('GET', '/v1/account');
  await assert.rejects(other.json('GET', '/v1/account'), { code: 'INTERNAL' });
  assert.equal(failing.calls(), 1 + 3);
});

test('a server that never answered gets only `retries`: a wrong URL is reported at once', async () => {
  let calls = 0;
  const http = new Transport({
    url: 'http://wharf.test',
    fetch: (async () => {
      calls++;
      return refused();
    }) as typeof fetch,
    retry: { retries: 2, minDelayMs: 1, restartMs: 10_000 },
  });
  await assert.rejects(http.json('GET', '/v1/account'), { code: 'NETWORK_ERROR' });
  assert.equal(calls, 3);
});

test('a refusal is an answer: after one, the server that stops answering gets the restart window', async () => {
  // What docs/sdk.md tells a one-off direct upload to do: any request first, refused or not.
  const server = restarting(refused, 8);
  let first = true;
  const http = new Transport({
    url: 'http://wharf.test',
    fetch: (async (input, init) => {
      if (first) {
        first = false;
        await server.fetch(input, init);
        return Response.json({ error: { code: 'FORBIDDEN', message: 'no' } }, { status: 403 });
      }
      return server.fetch(input, init);
    }) as typeof fetch,
    retry: { retries: 2, minDelayMs: 1, maxDelayMs: 5, restartMs: 10_000 },
  });
  await assert.rejects(http.json('GET', '/v1/account'), { code: 'FORBIDDEN' });
  assert.deepEqual(await http.json('POST', '/v1/assets'), { ok: true });
  assert.equal(server.calls(), 10);
});

test("a URL's user and password are never in an error's message, nor a presigned URL's signature", async () => {
  // Node's fetch refuses such a URL, naming it in its own message: both are redacted.
  const http = new Transport({
    url: 'http://user:s3cret-pw@127.0.0.1:9',
    retry: { retries: 0, restartMs: 0 },
  });
  const err = await http.json('GET', '/v1/account').then(
    () => assert.fail('a URL with credentials was fetched'),
    (e: Error) => e,
  );
  assert.doesNotMatch(err.message, /s3cret-pw/);
  assert.match(err.message, /http:\/\/…@127\.0\.0\.1:9\/v1\/account/);
  assert.equal(
    redact('GET https://a:b@c@s3.test/k?X-Amz-Signature=abc&x=1 failed: see https://u:p@other.test/'),
    'GET https://…@s3.test/k?X-Amz-Signature=…&x=1 failed: see https://…@other.test/',
  );
});
