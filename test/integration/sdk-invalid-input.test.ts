import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { bytesSource, streamSource, Wharf, WharfError } from '../../src/sdk/node.js';
import { freePort, startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * What fetch refuses itself (a header value with a CR, LF or NUL, a Content-Length that is not a
 * count of bytes) is bad input, not a lost connection: refused at once with a typed error, never
 * retried, never NETWORK_ERROR. The clients here have been answered once, so a failure taken for
 * the network's would be retried through the restart window (shortened to 3 s here, 30 s by
 * default) and reported as NETWORK_ERROR.
 */

const MiB = 1024 * 1024;

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

/** A client answered once, counting the requests it makes. */
async function client(): Promise<{ wharf: Wharf; requests: () => number }> {
  let requests = 0;
  const counting: typeof fetch = (input, init) => {
    requests++;
    return fetch(input, init);
  };
  const wharf = new Wharf({
    url: w.url,
    key: w.key,
    fetch: counting,
    retry: { minDelayMs: 10, restartMs: 3000 },
  });
  await wharf.account.get();
  return { wharf, requests: () => requests };
}

/** `promise`'s rejection and how long it took. */
async function failure(promise: Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const started = performance.now();
  const err = await promise.then(
    () => assert.fail('expected a failure'),
    (e: unknown) => e,
  );
  return { err, ms: performance.now() - started };
}

describe('bad input is refused before anything is sent', () => {
  test('a content type with a control character or past ASCII: INVALID_CONTENT_TYPE, by every flow', async () => {
    const { wharf, requests } = await client();
    const before = requests();
    for (const strategy of ['direct', 'presigned', 'multipart', 'tus'] as const) {
      for (const contentType of ['text/plain\r\nX-Evil: 1', 'text/plain\0', 'text/plain\n', 'text/pläin']) {
        const { err, ms } = await failure(
          wharf.upload(randomBytes(1000), { name: 'c.txt', contentType, strategy }),
        );
        const what = `${strategy} ${JSON.stringify(contentType)}: ${err}`;
        assert.ok(err instanceof WharfError && err.code === 'INVALID_CONTENT_TYPE', what);
        assert.ok(ms < 1000, `${what}: at once (${Math.round(ms)} ms)`);
      }
    }
    assert.equal(requests(), before, 'no request was made');
  });

  test('a source whose size is not a whole number of bytes: RangeError, the file neither read nor sent', async () => {
    const { wharf, requests } = await client();
    const before = requests();
    for (const size of [-1, Number.NaN, 1.5, Number.POSITIVE_INFINITY]) {
      let opened = 0;
      const real = bytesSource(randomBytes(1000), 'sized.bin');
      const source = {
        ...real,
        size,
        open: (start?: number, end?: number) => {
          opened++;
          return real.open(start, end);
        },
      };
      for (const hashFirst of [true, false]) {
        const { err, ms } = await failure(wharf.upload(source, { strategy: 'direct', hashFirst }));
        assert.ok(err instanceof RangeError, `size ${size}: ${err}`);
        assert.ok(ms < 1000, `size ${size}: at once (${Math.round(ms)} ms)`);
      }
      assert.equal(opened, 0, `size ${size}: not read`);
      const stream = streamSource(real.open(), { name: 'sized.bin', size });
      const { err } = await failure(wharf.upload(stream));
      assert.ok(err instanceof RangeError, `stream of size ${size}: ${err}`);
    }
    assert.equal(requests(), before, 'no request was made');
  });

  test('an empty content type is none, by every flow: application/octet-stream', async () => {
    const { wharf } = await client();
    for (const strategy of ['direct', 'presigned', 'multipart', 'tus'] as const) {
      const result = await wharf.upload(randomBytes(strategy === 'multipart' ? 6 * MiB : 1000), {
        name: `empty-type-${strategy}.bin`,
        contentType: '',
        strategy,
      });
      assert.equal(result.status, 'created', strategy);
      assert.equal(result.asset.content_type, 'application/octet-stream', strategy);
    }
    const raw = await wharf.assets.uploadRaw(() => randomBytes(100), {
      name: 'raw-empty.bin',
      contentType: '',
    });
    assert.equal(raw.asset.content_type, 'application/octet-stream');
  });
});

describe('the transport', () => {
  test('a request fetch refuses itself is thrown at once as a TypeError, not retried', async () => {
    const { wharf, requests } = await client();
    // A header value fetch refuses: found before the request is handed to fetch.
    let before = requests();
    let { err, ms } = await failure(
      wharf.assets.uploadRaw(() => randomBytes(100), {
        name: 'raw.bin',
        contentType: 'text/plain\r\nX-Evil: 1',
      }),
    );
    assert.ok(err instanceof TypeError, String(err));
    assert.match(err.message, /^POST http:\/\/.*\/v1\/assets/);
    assert.ok(ms < 1000, `at once (${Math.round(ms)} ms)`);
    assert.equal(requests(), before, 'not handed to fetch');
    // A Content-Length that is not a count of bytes: refused by fetch, once.
    for (const size of [-1, 1.5]) {
      before = requests();
      ({ err, ms } = await failure(
        wharf.assets.uploadRaw(() => randomBytes(100), { name: 'raw.bin', size }),
      ));
      assert.ok(err instanceof TypeError && !(err instanceof WharfError), `size ${size}: ${err}`);
      assert.match(err.message, /content-length/);
      assert.ok(ms < 1000, `size ${size}: at once (${Math.round(ms)} ms)`);
      assert.equal(requests() - before, 1, `size ${size}: not retried`);
    }
  });

  test('a connection refused is still a network failure, retried', async () => {
    // The first attempt goes to a port nothing listens on: a real ECONNREFUSED from fetch.
    const closed = `http://127.0.0.1:${await freePort()}`;
    let first = true;
    const flaky = new Wharf({
      url: w.url,
      key: w.key,
      retry: { minDelayMs: 10 },
      fetch: (input, init) => {
        const url = first ? String(input).replace(w.url, closed) : input;
        first = false;
        return fetch(url, init);
      },
    });
    const result = await flaky.upload(randomBytes(1000), { name: 'refused-once.bin' });
    assert.equal(result.status, 'created');
    assert.equal(first, false);
    // And with no server at all, it is NETWORK_ERROR after the retries.
    const nowhere = new Wharf({ url: closed, key: w.key, retry: { retries: 1, minDelayMs: 10 } });
    const { err } = await failure(nowhere.account.get());
    assert.ok(err instanceof WharfError && err.code === 'NETWORK_ERROR', String(err));
  });
});
