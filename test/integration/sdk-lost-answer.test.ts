import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Wharf } from '../../src/sdk/node.js';
import { api } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * What docs/sdk.md says of a request that creates something whose answer is lost after the
 * server acted (a connection cut as the answer comes back): the SDK sends it again. A direct
 * upload and a presigned or multipart declaration, each sent with an Idempotency-Key, get the
 * first answer (one upload; a token whose `max_files` the first used up does not refuse the
 * retry), a tus creation too.
 */

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

/**
 * A fetch that loses the answer to the first request matching `lose` (the server acted on it).
 * `keys` collects the Idempotency-Key of every request matching it.
 */
function losing(lose: (url: string, method: string) => boolean, keys: string[] = []): typeof fetch {
  let lost = false;
  return async (input, init) => {
    const matches = lose(String(input), init?.method ?? 'GET');
    const key = new Headers(init?.headers).get('idempotency-key');
    if (matches && key !== null) keys.push(key);
    const response = await fetch(input, init);
    if (!lost && matches) {
      lost = true;
      await response.body?.cancel();
      throw new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } });
    }
    return response;
  };
}

async function uploadsNamed(name: string): Promise<Array<{ id: string; status: string }>> {
  const listed = await api(w.url, w.key, 'GET', '/v1/uploads?limit=1000');
  return listed.body.data.filter((u: { name: string }) => u.name === name);
}

test('a direct upload whose answer is lost is sent again with its key and answered the same: one upload', async () => {
  const keys: string[] = [];
  const wharf = new Wharf({
    url: w.url,
    key: w.key,
    retry: { minDelayMs: 10 },
    fetch: losing((url, method) => method === 'POST' && url.includes('/v1/assets'), keys),
  });
  const result = await wharf.upload(randomBytes(1000), { name: 'lost-direct.bin' });
  assert.equal(result.status, 'created');
  assert.equal(keys.length, 2, 'sent twice');
  assert.equal(keys[0], keys[1], 'with one key');
  const listed = await api(w.url, w.key, 'GET', '/v1/assets?prefix=lost-direct.bin');
  assert.equal(listed.body.data.length, 1);
  assert.equal((await uploadsNamed('lost-direct.bin')).length, 1);
});

test('a named file whose answer is lost is sent again with its key and answered the same: one version', async () => {
  const keys: string[] = [];
  const wharf = new Wharf({
    url: w.url,
    key: w.key,
    retry: { minDelayMs: 10 },
    fetch: losing((url, method) => method === 'PUT' && url.includes('/v1/files/'), keys),
  });
  const name = `lost-${randomBytes(4).toString('hex')}.txt`;
  const bytes = new Uint8Array(randomBytes(1000));
  const version = await wharf.files.put('lost', name, () => bytes, {
    contentType: 'text/plain',
  });
  const listed = await api(w.url, w.key, 'GET', `/v1/files/lost/${name}/versions`);
  assert.deepEqual(
    listed.body.data.map((v: { version: number }) => v.version),
    [1],
    'one version',
  );
  assert.equal(version.version, 1);
  assert.equal(keys.length, 2, 'sent twice');
  assert.equal(keys[0], keys[1], 'with one key');
});

for (const [strategy, path] of [
  ['presigned', '/v1/uploads'],
  ['multipart', '/v1/multipart'],
] as const) {
  test(`${strategy}: a declaration whose answer is lost is sent again with its key and answered the same: one upload`, async () => {
    const name = `lost-${strategy}.bin`;
    const keys: string[] = [];
    const wharf = new Wharf({
      url: w.url,
      key: w.key,
      retry: { minDelayMs: 10 },
      fetch: losing((url, method) => method === 'POST' && new URL(url).pathname === path, keys),
    });
    const result = await wharf.upload(randomBytes(1000), { name, strategy });
    assert.equal(result.status, 'created');
    const uploads = await uploadsNamed(name);
    assert.deepEqual(
      uploads.map((u) => u.status),
      ['completed'],
      JSON.stringify(uploads),
    );
    // Both attempts carried one key.
    assert.equal(keys.length, 2);
    assert.equal(new Set(keys).size, 1);
    assert.match(keys[0]!, /^[0-9a-f]{32}$/);
  });
}

test('tus: a creation whose answer is lost is sent again with its key and answered the same: one upload', async () => {
  const name = 'lost-tus.bin';
  const keys: string[] = [];
  const wharf = new Wharf({
    url: w.url,
    key: w.key,
    retry: { minDelayMs: 10 },
    fetch: losing((url, method) => method === 'POST' && new URL(url).pathname === '/v1/tus/', keys),
  });
  const result = await wharf.upload(randomBytes(1000), { name, strategy: 'tus' });
  assert.equal(result.status, 'created');
  const uploads = await uploadsNamed(name);
  assert.deepEqual(
    uploads.map((u) => u.status),
    ['completed'],
    JSON.stringify(uploads),
  );
  assert.equal(keys.length, 2, 'sent twice');
  assert.equal(new Set(keys).size, 1, 'with one key');
});

/** An SDK client with a new upload token for one file, whose first POST to `path` loses its answer. */
async function oneFileTokenLosing(path: string): Promise<Wharf> {
  const admin = new Wharf({ url: w.url, key: w.key });
  const minted = await admin.uploadTokens.create({ max_files: 1, expires_in: 600 });
  return new Wharf({
    url: w.url,
    key: minted.secret,
    retry: { minDelayMs: 10 },
    fetch: losing((url, method) => method === 'POST' && new URL(url).pathname === path),
  });
}

// Each flow's creating POST loses its answer once; its retry must be replayed (the token's only
// file slot is held by the first), not refused TOKEN_FILES_EXHAUSTED.
for (const [strategy, path, what] of [
  ['direct', '/v1/assets', 'an upload'],
  ['presigned', '/v1/uploads', 'a declaration'],
  ['tus', '/v1/tus/', 'a creation'],
] as const) {
  test(`${strategy}: with a token for one file, ${what}'s lost answer is replayed and the file uploads`, async () => {
    const wharf = await oneFileTokenLosing(path);
    const name = `lost-token-${strategy}.bin`;
    const result = await wharf.upload(randomBytes(1000), { name, strategy });
    assert.equal(result.status, 'created');
    const uploads = await uploadsNamed(name);
    assert.deepEqual(
      uploads.map((u) => u.status),
      ['completed'],
    );
  });
}
