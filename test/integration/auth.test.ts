import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import {
  type AssetJson,
  complete,
  createAsset,
  declare,
  type Intent,
  putPresigned,
  readJson,
  uploadRaw,
} from '../helpers/assets.js';
import { api, sha256Hex } from '../helpers/http.js';
import { LogCollector } from '../helpers/observe.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

const SOME_ID = '019b7c2a-1c2d-7e3f-8a4b-5c6d7e8f9a0b';

/** Every keyed native route, with a body that would be valid. */
function keyedRoutes(assetId: string, uploadId: string, keyId: string): Array<[string, string, unknown?]> {
  return [
    ['GET', '/v1/assets'],
    ['POST', '/v1/assets?name=x.txt', 'raw'],
    ['GET', `/v1/assets/${assetId}`],
    ['DELETE', `/v1/assets/${assetId}`],
    ['GET', `/v1/assets/${assetId}/content`],
    ['POST', `/v1/assets/${assetId}/signed-url`, {}],
    ['POST', '/v1/uploads', { name: 'x.txt', size: 1 }],
    ['GET', `/v1/uploads/${uploadId}`],
    ['POST', `/v1/uploads/${uploadId}/complete`],
    ['GET', '/v1/keys'],
    ['POST', '/v1/keys', { name: 'k' }],
    ['DELETE', `/v1/keys/${keyId}`],
  ];
}

function call(method: string, path: string, body: unknown, headers: Record<string, string>) {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body === 'raw') {
    (init.headers as Record<string, string>)['content-type'] = 'text/plain';
    init.body = 'bytes';
  } else if (body !== undefined) {
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return readJson(fetch(w.url + path, init));
}

describe('authentication', () => {
  let asset: AssetJson;
  let intent: Intent;
  before(async () => {
    asset = await createAsset(w, w.key, 'protected.txt', 'secret bytes', 'text/plain');
    intent = await declare(w, w.key, { name: 'p.bin', size: 3 });
  });

  const presentations: Array<[string, (key: string) => Record<string, string>]> = [
    ['no key at all', () => ({})],
    ['an unknown key', () => ({ 'x-api-key': `wharf_${randomBytes(32).toString('base64url')}` })],
    ['an empty x-api-key', () => ({ 'x-api-key': '' })],
    [
      'the key with a character changed',
      (k) => ({ 'x-api-key': `${k.slice(0, -1)}${k.endsWith('a') ? 'b' : 'a'}` }),
    ],
    [
      'the key as a Basic credential',
      (k) => ({ authorization: `Basic ${Buffer.from(`:${k}`).toString('base64')}` }),
    ],
    ['Bearer with no token', () => ({ authorization: 'Bearer ' })],
    ['a huge garbage key', () => ({ 'x-api-key': 'x'.repeat(8000) })],
  ];
  for (const [label, headers] of presentations) {
    test(`${label} → 401 UNAUTHORIZED on every keyed route, and nothing happens`, async () => {
      for (const [method, path, body] of keyedRoutes(asset.id, intent.id, SOME_ID)) {
        const res = await call(method, path, body, headers(w.key));
        assert.equal(res.status, 401, `${method} ${path}`);
        assert.equal(res.body.error.code, 'UNAUTHORIZED', `${method} ${path}`);
        assert.equal(typeof res.body.error.message, 'string');
      }
      assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${asset.id}`)).status, 200, 'not deleted');
    });
  }

  test('authentication comes before body validation: an anonymous bad body is 401, not 400', async () => {
    const res = await api(w.url, undefined, 'POST', '/v1/uploads', { nonsense: true });
    assert.equal(res.status, 401);
  });

  test('x-api-key and Authorization: Bearer (any case) both work', async () => {
    const variants: Array<Record<string, string>> = [
      { 'x-api-key': w.key },
      { authorization: `Bearer ${w.key}` },
      { authorization: `bearer ${w.key}` },
      { authorization: `BEARER   ${w.key}` },
    ];
    for (const headers of variants) {
      const res = await call('GET', `/v1/assets/${asset.id}`, undefined, headers);
      assert.equal(res.status, 200, JSON.stringify(Object.keys(headers)));
      assert.equal(res.body.id, asset.id);
    }
  });

  test('public routes need no key: /healthz, /openapi.json, /docs, signed URLs and presigned PUTs', async () => {
    assert.equal((await fetch(`${w.url}/healthz`)).status, 200);
    assert.equal((await fetch(`${w.url}/openapi.json`)).status, 200);
    assert.equal((await fetch(`${w.url}/docs`)).status, 200);
    const signed = await api(w.url, w.key, 'POST', `/v1/assets/${asset.id}/signed-url`, {});
    assert.equal(await (await fetch(signed.body.url)).text(), 'secret bytes');
    assert.equal((await putPresigned(intent, 'abc')).status, 200);
  });
});

/** Sets the listed prefix of the key named `name`, as an earlier version recorded it. */
function setKeyPrefix(server: TestWharf, name: string, prefix: string): void {
  if (/^postgres(ql)?:/.test(server.databaseUrl)) {
    const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;
    const sql = `update api_keys set prefix = ${literal(prefix)} where name = ${literal(name)}`;
    execFileSync('psql', [server.databaseUrl, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
    return;
  }
  const db = new Database(join(server.dataDir, 'wharf.db'));
  try {
    db.pragma('busy_timeout = 5000');
    db.prepare('update api_keys set prefix = ? where name = ?').run(prefix, name);
  } finally {
    db.close();
  }
}

describe('keys and roles', () => {
  test('a key the operator chose (WHARF_API_KEY) is listed with none of its characters, also one listed with some before', async () => {
    // As short as it may be: a 12-character prefix left 4 characters of it secret.
    const secret = `operator${randomBytes(4).toString('hex')}`;
    const own = await startWharf({ env: { WHARF_API_KEY: secret } });
    let again: TestWharf | undefined;
    try {
      const listed = async (server: TestWharf) => {
        const keys = (await api(server.url, secret, 'GET', '/v1/keys')).body.data as Array<{
          name: string;
          prefix: string;
        }>;
        return keys.find((k) => k.name === 'WHARF_API_KEY')!.prefix;
      };
      assert.equal(await listed(own), '');
      // An earlier version recorded its first 12 characters: the next start drops them.
      setKeyPrefix(own, 'WHARF_API_KEY', secret.slice(0, 12));
      assert.equal(await listed(own), secret.slice(0, 12));
      again = await startWharf({ sharing: own, env: { WHARF_API_KEY: secret } });
      assert.equal(await listed(again), '');
    } finally {
      await again?.close();
      await own.close();
    }
  });

  test('a revoked WHARF_API_KEY stays revoked at the next start, which says so in one warning', async () => {
    const secret = `operator${randomBytes(8).toString('hex')}`;
    const own = await startWharf({ env: { WHARF_API_KEY: secret } });
    let again: TestWharf | undefined;
    try {
      const keys = (await api(own.url, secret, 'GET', '/v1/keys')).body.data as Array<{
        id: string;
        name: string;
      }>;
      const id = keys.find((k) => k.name === 'WHARF_API_KEY')!.id;
      const other = await own.newKey('admin');
      assert.equal((await api(own.url, other.key, 'DELETE', `/v1/keys/${id}`)).status, 204);
      const logs = new LogCollector();
      again = await startWharf({ sharing: own, env: { WHARF_API_KEY: secret }, logStream: logs.stream });
      assert.equal((await api(again.url, secret, 'GET', '/v1/keys')).status, 401);
      const warnings = logs.lines.filter((l) => l.level === 40 && /WHARF_API_KEY/.test(String(l.msg)));
      assert.equal(warnings.length, 1, JSON.stringify(logs.lines));
      assert.match(
        String(warnings[0]!.msg),
        new RegExp(`revoked \\(${id}\\).*set WHARF_API_KEY to a new key, or unset it`),
      );
      assert.ok(!JSON.stringify(logs.lines).includes(secret), 'the log shows none of the key');
    } finally {
      await again?.close();
      await own.close();
    }
  });

  test('an admin creates a member key (the default role); the secret is shown once', async () => {
    const res = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'ci pipeline' });
    assert.equal(res.status, 201);
    const { key, secret } = res.body;
    assert.match(secret, /^wharf_/);
    assert.equal(key.name, 'ci pipeline');
    assert.equal(key.role, 'member');
    assert.equal(key.account_id, 'default');
    assert.equal(key.prefix, secret.slice(0, key.prefix.length));
    assert.ok(key.prefix.length < secret.length / 2, 'the prefix does not give away the key');
    assert.equal(key.revoked_at, null);
    assert.equal(key.created_at, new Date(w.clock.now()).toISOString());

    const listed = await api(w.url, w.key, 'GET', '/v1/keys');
    assert.equal(listed.status, 200);
    const entry = listed.body.data.find((k: { id: string }) => k.id === key.id);
    assert.deepEqual(entry, key);
    assert.ok(!JSON.stringify(listed.body).includes(secret), 'listings never contain a secret');
    assert.ok(!JSON.stringify(listed.body).includes(w.key), 'nor the operator key');
    assert.ok(listed.body.data.every((k: object) => !('secret' in k) && !('secret_hash' in k)));
  });

  test('the key listing is paged: limit (default 100, at most 1000) and cursor, oldest first, one account only', async () => {
    const tenant = await w.newAccount();
    const made: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await api(w.url, tenant.key, 'POST', '/v1/keys', { name: `paged ${i}` });
      assert.equal(res.status, 201);
      made.push(res.body.key.id);
    }
    assert.equal((await api(w.url, tenant.key, 'DELETE', `/v1/keys/${made[1]}`)).status, 204);
    const all = await api(w.url, tenant.key, 'GET', '/v1/keys');
    assert.equal(all.status, 200);
    assert.equal(all.body.next_cursor, null, 'under the default limit: one page');
    const ids = all.body.data.map((k: { id: string }) => k.id);
    assert.equal(ids.length, 5, 'its admin key and the four, the revoked one included');
    assert.deepEqual(ids.slice(1), made, 'oldest first');
    assert.ok(all.body.data.every((k: { account_id: string }) => k.account_id === tenant.accountId));

    const pages: string[][] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: { data: Array<{ id: string }>; next_cursor: string | null } } =
        await api(w.url, tenant.key, 'GET', `/v1/keys?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(page.status, 200);
      assert.ok(page.body.data.length <= 2);
      pages.push(page.body.data.map((k) => k.id));
      cursor = page.body.next_cursor;
      assert.ok(pages.length <= 3, 'the cursor ends');
    } while (cursor);
    assert.deepEqual(pages.flat(), ids, 'the pages are the whole listing, each key once');
    assert.equal(pages.length, 3);

    for (const query of ['limit=0', 'limit=1001', 'cursor=not-a-key', 'other=1']) {
      const refused = await api(w.url, tenant.key, 'GET', `/v1/keys?${query}`);
      assert.equal(refused.status, 400, query);
      assert.equal(refused.body.error.code, 'VALIDATION_FAILED', query);
    }
  });

  test('a new key works at once and records when it was used', async () => {
    const created = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'usage', role: 'member' });
    const secret = created.body.secret;
    assert.equal((await api(w.url, secret, 'GET', '/v1/assets')).status, 200);
    const listed = await api(w.url, w.key, 'GET', '/v1/keys');
    const entry = listed.body.data.find((k: { id: string }) => k.id === created.body.key.id);
    assert.equal(entry.last_used_at, new Date(w.clock.now()).toISOString());
  });

  test('a member key uploads, reads and deletes assets, but cannot manage keys (403 FORBIDDEN)', async () => {
    const member = await w.newKey('member');
    const asset = await createAsset(w, member.key, 'by-member.txt', 'member bytes', 'text/plain');
    assert.equal((await api(w.url, member.key, 'GET', `/v1/assets/${asset.id}`)).status, 200);
    const intent = await declare(w, member.key, { name: 'm.bin', size: 2 });
    assert.equal((await putPresigned(intent, 'hi')).status, 200);
    assert.equal((await complete(w, member.key, intent.id)).status, 200);
    for (const [method, path, body] of [
      ['GET', '/v1/keys'],
      ['POST', '/v1/keys', { name: 'escalate', role: 'admin' }],
      ['DELETE', `/v1/keys/${member.id}`],
    ] as Array<[string, string, unknown?]>) {
      const res = await api(w.url, member.key, method, path, body);
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(res.body.error.code, 'FORBIDDEN');
    }
    assert.equal((await api(w.url, member.key, 'DELETE', `/v1/assets/${asset.id}`)).status, 204);
    const still = await api(w.url, w.key, 'GET', '/v1/keys');
    assert.ok(!still.body.data.some((k: { name: string }) => k.name === 'escalate'), 'no key was created');
  });

  test('an admin key can create another admin key', async () => {
    const res = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'second admin', role: 'admin' });
    assert.equal(res.status, 201);
    assert.equal((await api(w.url, res.body.secret, 'GET', '/v1/keys')).status, 200);
  });

  test('a revoked key is refused at once (401) on every route; revoking again is 404', async () => {
    const victim = await w.newKey('admin');
    const asset = await createAsset(w, victim.key, 'before-revoke.txt', randomBytes(9), 'text/plain');
    const intent = await declare(w, victim.key, { name: 'r.bin', size: 1 });
    const del = await fetch(`${w.url}/v1/keys/${victim.id}`, {
      method: 'DELETE',
      headers: { 'x-api-key': w.key },
    });
    assert.equal(del.status, 204);
    for (const [method, path, body] of keyedRoutes(asset.id, intent.id, SOME_ID)) {
      const res = await call(method, path, body, { 'x-api-key': victim.key });
      assert.equal(res.status, 401, `${method} ${path}`);
      assert.equal(res.body.error.code, 'UNAUTHORIZED');
    }
    const listed = await api(w.url, w.key, 'GET', '/v1/keys');
    const entry = listed.body.data.find((k: { id: string }) => k.id === victim.id);
    assert.equal(entry.revoked_at, new Date(w.clock.now()).toISOString());
    const again = await api(w.url, w.key, 'DELETE', `/v1/keys/${victim.id}`);
    assert.equal(again.status, 404);
    assert.equal(again.body.error.code, 'NOT_FOUND');
    // The account's assets are untouched by a key's revocation.
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${asset.id}`)).status, 200);
  });

  test('revoking a key stops the download and transform URLs it signed (403 URL_REVOKED)', async () => {
    // As an S3 access key's presigned URLs die with it: a leaked key's week-long download URLs
    // and year-long transform URLs would otherwise outlive its revocation.
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const image = await createAsset(w, w.key, 'revoked-signer.png', png, 'image/png');
    const leaked = await w.newKey('member');
    const sign = async (key: string) => [
      (await api(w.url, key, 'POST', `/v1/assets/${image.id}/signed-url`, { expires_in: 604800 })).body
        .url as string,
      (await api(w.url, key, 'POST', `/v1/assets/${image.id}/image-url`, { w: 4, expires_in: 31536000 })).body
        .url as string,
    ];
    const theirs = await sign(leaked.key);
    const ours = await sign(w.key);
    for (const url of theirs) {
      assert.equal(new URL(url).searchParams.get('signer'), leaked.id, url);
      assert.equal((await fetch(url)).status, 200, url);
    }
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/keys/${leaked.id}`)).status, 204);
    for (const url of theirs) {
      const res = await readJson(fetch(url));
      assert.equal(res.status, 403, url);
      assert.equal(res.body.error.code, 'URL_REVOKED', url);
    }
    // Only that key's: the URLs other keys signed for the same asset work on.
    for (const url of ours) assert.equal((await fetch(url)).status, 200, url);
  });

  test('an admin may revoke its own key; it stops working immediately', async () => {
    const self = await w.newKey('admin');
    assert.equal((await api(w.url, self.key, 'DELETE', `/v1/keys/${self.id}`)).status, 204);
    assert.equal((await api(w.url, self.key, 'GET', '/v1/keys')).status, 401);
  });

  test('invalid key requests are 400 VALIDATION_FAILED', async () => {
    for (const body of [
      {},
      { name: '' },
      { name: 5 },
      { name: 'x'.repeat(201) },
      { name: 'k', role: 'owner' },
      { name: 'k', role: 'ADMIN' },
      { name: 'k', account_id: 'someone-else' },
      { name: 'k', scopes: ['*'] },
    ]) {
      const res = await api(w.url, w.key, 'POST', '/v1/keys', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.error.code, 'VALIDATION_FAILED', JSON.stringify(body));
    }
  });
});

describe('tenancy: another account’s things do not exist for you', () => {
  let a: { accountId: string; key: string };
  let b: { accountId: string; key: string };
  let aAsset: AssetJson;
  const aBytes = randomBytes(500);
  let aIntent: Intent;
  let aKeyId: string;

  before(async () => {
    a = await w.newAccount('tenant A');
    b = await w.newAccount('tenant B');
    aAsset = await createAsset(w, a.key, 'a-private.bin', aBytes);
    aIntent = await declare(w, a.key, { name: 'a-upload.bin', size: 4 });
    const key = await api(w.url, a.key, 'POST', '/v1/keys', { name: 'a member' });
    aKeyId = key.body.key.id;
  });

  test('every route answers B about A’s ids exactly as about ids that never existed', async () => {
    const foreign = keyedRoutes(aAsset.id, aIntent.id, aKeyId).filter(
      ([, path]) => path.includes(aAsset.id) || path.includes(aIntent.id) || path.includes(aKeyId),
    );
    const missing = keyedRoutes(SOME_ID, SOME_ID, SOME_ID).filter(([, path]) => path.includes(SOME_ID));
    assert.equal(foreign.length, 7);
    for (const [i, [method, path, body]] of foreign.entries()) {
      const theirs = await call(method, path, body, { 'x-api-key': b.key });
      const nothing = await call(missing[i]![0], missing[i]![1], missing[i]![2], { 'x-api-key': b.key });
      assert.equal(theirs.status, 404, `${method} ${path}`);
      assert.equal(theirs.body.error.code, 'NOT_FOUND', `${method} ${path}`);
      // Messages may echo the id that was asked for; apart from that, identical answers.
      const anonymise = (text: string) =>
        text
          .replaceAll(aAsset.id, '<id>')
          .replaceAll(aIntent.id, '<id>')
          .replaceAll(aKeyId, '<id>')
          .replaceAll(SOME_ID, '<id>');
      assert.deepEqual(
        { status: theirs.status, body: anonymise(JSON.stringify(theirs.body)) },
        { status: nothing.status, body: anonymise(JSON.stringify(nothing.body)) },
        `${method} ${path}: indistinguishable from a missing id`,
      );
    }
  });

  test('…and nothing B tried changed A’s asset, upload or key', async () => {
    const asset = await api(w.url, a.key, 'GET', `/v1/assets/${aAsset.id}`);
    assert.equal(asset.status, 200);
    const bytes = await fetch(`${w.url}/v1/assets/${aAsset.id}/content`, { headers: { 'x-api-key': a.key } });
    assert.ok(Buffer.from(await bytes.arrayBuffer()).equals(aBytes));
    const upload = await api(w.url, a.key, 'GET', `/v1/uploads/${aIntent.id}`);
    assert.equal(upload.body.status, 'pending');
    const keys = await api(w.url, a.key, 'GET', '/v1/keys');
    assert.equal(keys.body.data.find((k: { id: string }) => k.id === aKeyId).revoked_at, null);
  });

  test('listings show only your own assets and keys', async () => {
    await createAsset(w, b.key, 'b-own.txt', randomBytes(7), 'text/plain');
    const list = await api(w.url, b.key, 'GET', '/v1/assets?limit=1000');
    assert.deepEqual(
      list.body.data.map((x: AssetJson) => x.name),
      ['b-own.txt'],
    );
    const byPrefix = await api(w.url, b.key, 'GET', '/v1/assets?prefix=a-private');
    assert.deepEqual(byPrefix.body.data, []);
    const keys = await api(w.url, b.key, 'GET', '/v1/keys');
    assert.ok(keys.body.data.length >= 1);
    assert.ok(keys.body.data.every((k: { account_id: string }) => k.account_id === b.accountId));
    // A cursor taken from another account reveals nothing either.
    const cursor = await api(w.url, b.key, 'GET', `/v1/assets?cursor=${aAsset.id}`);
    assert.ok(cursor.body.data.every((x: AssetJson) => x.name !== 'a-private.bin'));
  });

  test('declaring A’s content from B is a fresh upload, never "exists" (no cross-account dedupe)', async () => {
    const res = await api(w.url, b.key, 'POST', '/v1/uploads', {
      name: 'probe.bin',
      size: aBytes.length,
      sha256: sha256Hex(aBytes),
    });
    assert.equal(res.status, 201);
    assert.equal(res.body.status, 'pending');
    assert.equal(res.body.asset, undefined);
  });

  test('uploading A’s bytes to B creates B’s own asset; deleting it leaves A’s intact', async () => {
    const res = await uploadRaw(w, b.key, 'copy.bin', aBytes);
    assert.equal(res.status, 201);
    assert.equal(res.body.status, 'created');
    assert.notEqual(res.body.asset.id, aAsset.id);
    assert.equal((await api(w.url, b.key, 'DELETE', `/v1/assets/${res.body.asset.id}`)).status, 204);
    const read = await fetch(`${w.url}/v1/assets/${aAsset.id}/content`, { headers: { 'x-api-key': a.key } });
    assert.equal(read.status, 200);
    assert.ok(Buffer.from(await read.arrayBuffer()).equals(aBytes));
  });

  test('B cannot complete A’s upload even after the bytes arrived', async () => {
    assert.equal((await putPresigned(aIntent, 'abcd')).status, 200);
    const res = await complete(w, b.key, aIntent.id);
    assert.equal(res.status, 404);
    assert.equal((await complete(w, a.key, aIntent.id)).status, 200);
  });

  test('a signed URL is the one way to share: it works for anyone, for that asset only', async () => {
    const signed = await api(w.url, a.key, 'POST', `/v1/assets/${aAsset.id}/signed-url`, { expires_in: 60 });
    const res = await fetch(signed.body.url);
    assert.equal(res.status, 200);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(aBytes));
  });

  test('the operator’s default account is isolated the same way', async () => {
    const mine = await createAsset(w, w.key, 'default-only.txt', randomBytes(11), 'text/plain');
    assert.equal((await api(w.url, b.key, 'GET', `/v1/assets/${mine.id}`)).status, 404);
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${aAsset.id}`)).status, 404);
  });
});
