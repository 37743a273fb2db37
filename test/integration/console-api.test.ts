import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SIGN_IN_FAILURES_ALLOWED, SIGN_IN_WINDOW_MS } from '../../src/core/sessions.js';
import { buildConsoleForTest, type ConsoleClient, signIn } from '../helpers/console.js';
import { api, type JsonResponse } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// The web console's server side without a browser: the session cookie, CSRF refusals (as a
// non-browser client would try them), expiry and revocation on every node, the sign-in limit,
// the page's security headers, and the read endpoints the console added to the native API.

let w: TestWharf;
let built: Awaited<ReturnType<typeof buildConsoleForTest>>;
const IDLE_S = 600;
const TTL_S = 3600;

before(async () => {
  built = await buildConsoleForTest();
  w = await startWharf({
    consoleDir: built.dir,
    env: { WHARF_CONSOLE_IDLE_TIMEOUT: String(IDLE_S), WHARF_CONSOLE_SESSION_TTL: String(TTL_S) },
  });
});
after(async () => {
  await w?.close();
  await built?.remove();
});

async function upload(key: string, name: string, body: string, type = 'text/plain') {
  const res = await fetch(`${w.url}/v1/assets?name=${encodeURIComponent(name)}`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': type },
    body,
  });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { asset: { id: string } }).asset;
}

describe('signing in', () => {
  test('a key becomes an HttpOnly, SameSite=Strict cookie on /console; the answer never holds the key or the session id', async () => {
    const res = await api(w.url, undefined, 'POST', '/console/api/session', { key: w.key });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const cookie = res.headers.get('set-cookie') ?? '';
    assert.match(cookie, /^wharf_console=[A-Za-z0-9_-]{43};/);
    assert.match(cookie, /; Path=\/console(;|$)/);
    assert.match(cookie, /; HttpOnly/);
    assert.match(cookie, /; SameSite=Strict/);
    assert.doesNotMatch(cookie, /; Secure/, 'plain http here: a Secure cookie would never come back');
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const text = JSON.stringify(res.body);
    assert.ok(!text.includes(w.key), 'the key is not echoed');
    assert.ok(!text.includes(cookie.split(';')[0]!.split('=')[1]!), 'the session id is only in the cookie');
    assert.deepEqual(Object.keys(res.body).sort(), ['account', 'csrf_token', 'ends_at', 'expires_at', 'key']);
    assert.equal(res.body.account.id, 'default');
  });

  test('an upload token, an unknown key, a form body or another site cannot sign in', async () => {
    const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {});
    const token = await api(w.url, undefined, 'POST', '/console/api/session', { key: minted.body.secret });
    assert.equal(token.status, 401);
    assert.equal(token.body.error.code, 'UNAUTHORIZED');
    const unknown = await api(w.url, undefined, 'POST', '/console/api/session', { key: 'wharf_nope' });
    assert.equal(unknown.status, 401);
    // What a cross-site HTML form can send: text/plain.
    const form = await fetch(`${w.url}/console/api/session`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify({ key: w.key }),
    });
    assert.equal(form.status, 415);
    assert.equal(form.headers.get('set-cookie'), null);
    const crossSite = await api(
      w.url,
      undefined,
      'POST',
      '/console/api/session',
      { key: w.key },
      {
        'sec-fetch-site': 'cross-site',
      },
    );
    assert.equal(crossSite.status, 403);
    assert.equal(crossSite.body.error.code, 'CSRF_FAILED');
  });

  test('the session answers with the key it stands for and a CSRF token; no cookie, no session', async () => {
    const client = await signIn(w.url, w.key);
    const session = await client.call('GET', '/session');
    assert.equal(session.status, 200);
    assert.equal(session.body.csrf_token, client.csrf);
    assert.deepEqual(session.body.key.scopes, ['admin']);
    const none = await api(w.url, undefined, 'GET', '/console/api/session');
    assert.equal(none.status, 401);
    const forged = await api(w.url, undefined, 'GET', '/console/api/session', undefined, {
      cookie: 'wharf_console=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    });
    assert.equal(forged.status, 401);
  });
});

describe('a session cookie planted beside the console’s own', () => {
  // A page of a sibling host (user content, marketing) may set `wharf_console` on the parent
  // domain with a longer path, e.g. Path=/console/api: the browser then sends it first, beside
  // the console's own. Whichever order they come in, the console must not run in it.
  const ambiguous = (res: JsonResponse, what: string) => {
    assert.equal(res.status, 401, `${what}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, 'AMBIGUOUS_SESSION', what);
    assert.equal(res.body.error.details.cookies, 2, what);
  };

  test('two session cookies, in either order, good or not: none is used, reads and writes are 401 AMBIGUOUS_SESSION', async () => {
    const victim = await signIn(w.url, w.key);
    const attacker = await signIn(w.url, (await w.newAccount('planter')).key);
    const asset = await upload(w.key, 'planted.txt', 'kept despite the planted cookie');
    const pairs = {
      'the planter’s first': `${attacker.cookie}; ${victim.cookie}`,
      'the planter’s last': `${victim.cookie}; ${attacker.cookie}`,
      'a bogus one first': `wharf_console=bogus; ${victim.cookie}`,
      'the same one twice': `${victim.cookie}; ${victim.cookie}`,
      'among other cookies': `theme=dark; ${attacker.cookie}; lang=en; ${victim.cookie}`,
    };
    for (const [what, cookie] of Object.entries(pairs)) {
      ambiguous(await api(w.url, undefined, 'GET', '/console/api/session', undefined, { cookie }), what);
      ambiguous(await api(w.url, undefined, 'GET', '/console/api/v1/assets', undefined, { cookie }), what);
      // The victim's own CSRF token does not make it the victim's session either.
      const deleted = await api(w.url, undefined, 'DELETE', `/console/api/v1/assets/${asset.id}`, undefined, {
        cookie,
        'x-csrf-token': victim.csrf,
      });
      ambiguous(deleted, `${what}, DELETE`);
    }
    assert.equal(
      (await api(w.url, w.key, 'GET', `/v1/assets/${asset.id}`)).status,
      200,
      'nothing was deleted',
    );
    // Signing in beside a planted cookie would be refused at the session's first use: refused now.
    const again = await api(
      w.url,
      undefined,
      'POST',
      '/console/api/session',
      { key: w.key },
      { cookie: `${attacker.cookie}; ${victim.cookie}` },
    );
    ambiguous(again, 'sign-in');
    assert.equal(again.headers.get('set-cookie'), null);
    // One session cookie, among others of other names, is the session.
    const alone = await api(w.url, undefined, 'GET', '/console/api/session', undefined, {
      cookie: `theme=dark; ${victim.cookie}; wharf_console_x=1`,
    });
    assert.equal(alone.status, 200);
    assert.equal(alone.body.account.id, 'default');
  });

  test('with an https public URL the cookie is __Host-wharf_console (Secure, Path=/, no Domain); a plain wharf_console is never read', async () => {
    const secure = await startWharf({ env: { WHARF_PUBLIC_URL: 'https://files.example.test' } });
    try {
      // Reached over loopback; the cookie's attributes follow the public URL.
      const { port } = secure.wharf.app.server.address() as AddressInfo;
      const base = `http://127.0.0.1:${port}`;
      const victim = await signIn(base, secure.key);
      assert.match(victim.setCookie, /^__Host-wharf_console=[A-Za-z0-9_-]{43};/);
      assert.match(victim.setCookie, /; Path=\/(;|$)/);
      assert.match(victim.setCookie, /; Secure(;|$)/);
      assert.match(victim.setCookie, /; HttpOnly/);
      assert.match(victim.setCookie, /; SameSite=Strict/);
      assert.doesNotMatch(victim.setCookie, /; Domain=/i, 'a __Host- cookie has no Domain');
      const session = (cookie: string) =>
        api(base, undefined, 'GET', '/console/api/session', undefined, { cookie });
      assert.equal((await session(victim.cookie)).status, 200);

      // What a sibling host can set: the name without the prefix. It opens nothing, and beside
      // the console's own cookie it changes nothing.
      const attacker = await signIn(base, (await secure.newAccount('planter')).key);
      const planted = attacker.cookie.replace(/^__Host-/, '');
      const alone = await session(planted);
      assert.equal(alone.status, 401);
      assert.equal(alone.body.error.code, 'UNAUTHORIZED');
      const beside = await session(`${planted}; ${victim.cookie}`);
      assert.equal(beside.status, 200);
      assert.equal(beside.body.account.id, 'default', 'the victim’s own session');
      const twice = await session(`${attacker.cookie}; ${victim.cookie}`);
      assert.equal(twice.status, 401);
      assert.equal(twice.body.error.code, 'AMBIGUOUS_SESSION');

      const out = await victim.call('DELETE', '/session');
      assert.equal(out.status, 204);
      assert.match(
        out.headers.get('set-cookie') ?? '',
        /^__Host-wharf_console=; Max-Age=0; Path=\/; HttpOnly; Secure/,
      );
    } finally {
      await secure.close();
    }
  });
});

describe('what the cookie opens, and what it does not', () => {
  let client: ConsoleClient;
  before(async () => {
    client = await signIn(w.url, w.key);
  });

  test('the console API reads with the cookie alone; the native API never accepts it, the console API never a key', async () => {
    const asset = await upload(w.key, 'seen.txt', 'seen by the console');
    const listed = await client.call('GET', '/v1/assets?limit=5');
    assert.equal(listed.status, 200);
    assert.ok(listed.body.data.some((a: { id: string }) => a.id === asset.id));
    const native = await api(w.url, undefined, 'GET', '/v1/assets', undefined, { cookie: client.cookie });
    assert.equal(native.status, 401, 'the native API knows keys only');
    const withKey = await api(w.url, w.key, 'GET', '/console/api/v1/assets');
    assert.equal(withKey.status, 401, 'the console API knows sessions only');
    const content = await fetch(`${w.url}/console/api/v1/assets/${asset.id}/content`, {
      headers: { cookie: client.cookie },
    });
    assert.equal(content.status, 200);
    assert.equal(await content.text(), 'seen by the console');
    // What the cookie unlocked is not for other sites' pages to embed.
    assert.equal(content.headers.get('cross-origin-resource-policy'), 'same-site');
    // Nor for the browser's disk cache, which outlives the session on a shared computer.
    assert.equal(content.headers.get('cache-control'), 'no-store');
  });

  test('a state-changing request without the CSRF token, or with another session’s, is refused and changes nothing', async () => {
    const asset = await upload(w.key, 'kept.txt', 'kept despite the forged requests');
    const other = await signIn(w.url, w.key);
    for (const csrf of [null, '', 'x'.repeat(43), other.csrf]) {
      const res = await client.call('DELETE', `/v1/assets/${asset.id}`, undefined, { csrf });
      assert.equal(res.status, 403, `csrf ${JSON.stringify(csrf)}`);
      assert.equal(res.body.error.code, 'CSRF_FAILED');
      const patch = await client.call('PATCH', `/v1/assets/${asset.id}`, { access: 'public' }, { csrf });
      assert.equal(patch.status, 403);
    }
    const minted = await client.call('POST', '/upload-token', undefined, { csrf: null });
    assert.equal(minted.status, 403);
    const signOut = await client.call('DELETE', '/session', undefined, { csrf: null });
    assert.equal(signOut.status, 403, 'nobody signs a user out from another site');
    // A request the browser marks as coming from another site is refused even with the token.
    const crossSite = await client.call('DELETE', `/v1/assets/${asset.id}`, undefined, {
      headers: { 'sec-fetch-site': 'cross-site' },
    });
    assert.equal(crossSite.status, 403);
    const still = await api(w.url, w.key, 'GET', `/v1/assets/${asset.id}`);
    assert.equal(still.status, 200);
    assert.equal(still.body.access, 'private');
    // With the token, the same requests go through.
    assert.equal((await client.call('PATCH', `/v1/assets/${asset.id}`, { access: 'public' })).status, 200);
    assert.equal((await client.call('DELETE', `/v1/assets/${asset.id}`)).status, 204);
  });

  test('a body that is not JSON is 415 UNSUPPORTED_MEDIA_TYPE, as on the native API', async () => {
    for (const path of ['/v1/keys', '/v1/upload-tokens', '/v1/webhooks']) {
      const res = await fetch(`${w.url}/console/api${path}`, {
        method: 'POST',
        headers: { cookie: client.cookie, 'x-csrf-token': client.csrf, 'content-type': 'text/plain' },
        body: '{"name": "x"}',
      });
      assert.equal(res.status, 415, path);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'UNSUPPORTED_MEDIA_TYPE');
    }
  });

  test('the console mints an upload token for its page with the session’s key, short-lived; it uploads over tus', async () => {
    const res = await client.call('POST', '/upload-token');
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.match(res.body.secret, /^wharf_ut_/);
    const session = await client.call('GET', '/session');
    assert.equal(res.body.token.key_id, session.body.key.id);
    const lifetime = Date.parse(res.body.token.expires_at) - Date.parse(res.body.token.created_at);
    assert.ok(lifetime <= 3600_000, `at most an hour: ${lifetime} ms`);
    const created = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${res.body.secret}`,
        'tus-resumable': '1.0.0',
        'upload-length': '5',
        'upload-metadata': `filename ${Buffer.from('tus.txt').toString('base64')}`,
        'content-type': 'application/offset+octet-stream',
      },
      body: 'hello',
    });
    assert.equal(created.status, 201, await created.text());
    assert.ok(created.headers.get('wharf-asset-id'));
  });

  test('a tus upload the page abandoned (reloaded mid-way) is cancelled through the session, with its CSRF token', async () => {
    const minted = await client.call('POST', '/upload-token');
    const started = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${minted.body.secret}`,
        'tus-resumable': '1.0.0',
        'upload-length': '1000',
        'upload-metadata': `filename ${Buffer.from('abandoned.bin').toString('base64')}`,
      },
    });
    assert.equal(started.status, 201, await started.text());
    const pending = await client.call('GET', '/v1/uploads?status=pending&limit=100');
    const upload = pending.body.data.find((u: { name: string }) => u.name === 'abandoned.bin');
    assert.ok(upload, 'the session sees the upload its token made');
    const held = (await client.call('GET', '/v1/account')).body.usage.bytes_reserved;
    assert.ok(held >= 1000, `it holds its bytes: ${held}`);
    const forged = await client.call('DELETE', `/v1/uploads/${upload.id}`, undefined, { csrf: null });
    assert.equal(forged.status, 403);
    assert.equal(forged.body.error.code, 'CSRF_FAILED');
    const cancelled = await client.call('DELETE', `/v1/uploads/${upload.id}`);
    assert.equal(cancelled.status, 204, JSON.stringify(cancelled.body));
    const ended = (await client.call('GET', '/v1/uploads?status=expired&limit=100')).body.data.find(
      (u: { id: string }) => u.id === upload.id,
    );
    assert.equal(ended?.ended?.reason, 'cancelled');
    assert.equal((await client.call('GET', '/v1/account')).body.usage.bytes_reserved, held - 1000);
  });
});

describe('sessions end', () => {
  test('after the idle timeout, and at the absolute lifetime however much they are used', async () => {
    const idle = await signIn(w.url, w.key);
    w.clock.advance(IDLE_S * 1000 - 1000);
    assert.equal((await idle.call('GET', '/session')).status, 200, 'used just in time: extended');
    w.clock.advance(IDLE_S * 1000 - 1000);
    assert.equal((await idle.call('GET', '/session')).status, 200);
    w.clock.advance(IDLE_S * 1000 + 1);
    const expired = await idle.call('GET', '/session');
    assert.equal(expired.status, 401);
    assert.equal(expired.body.error.code, 'UNAUTHORIZED');

    const busy = await signIn(w.url, w.key);
    let last = 200;
    for (let elapsed = 0; elapsed <= TTL_S * 1000; elapsed += (IDLE_S / 2) * 1000) {
      last = (await busy.call('GET', '/session')).status;
      w.clock.advance((IDLE_S / 2) * 1000);
    }
    assert.equal(last, 401, 'used every five minutes, it still ends after the TTL');
  });

  test('with the shortest idle timeout (60 s), a session used every 20 s stays open', async () => {
    const short = await startWharf({ sharing: w, clock: w.clock, env: { WHARF_CONSOLE_IDLE_TIMEOUT: '60' } });
    try {
      const client = await signIn(short.url, short.key);
      for (let i = 0; i < 6; i++) {
        w.clock.advance(20_000);
        assert.equal(
          (await client.call('GET', '/session')).status,
          200,
          `use ${i + 1}, ${(i + 1) * 20} s in`,
        );
      }
      w.clock.advance(61_000);
      assert.equal((await client.call('GET', '/session')).status, 401, 'unused for the timeout');
    } finally {
      await short.close();
    }
  });

  test('signing out ends the session on every node; revoking the key ends its sessions', async () => {
    const second = await startWharf({ sharing: w, clock: w.clock });
    try {
      const client = await signIn(w.url, w.key);
      const onSecond = (path: string) =>
        api(second.url, undefined, 'GET', `/console/api${path}`, undefined, { cookie: client.cookie });
      assert.equal((await onSecond('/session')).status, 200, 'a session works on every node');
      const out = await client.call('DELETE', '/session');
      assert.equal(out.status, 204);
      assert.match(out.headers.get('set-cookie') ?? '', /^wharf_console=; Max-Age=0; Path=\/console/);
      assert.equal((await client.call('GET', '/session')).status, 401);
      assert.equal((await onSecond('/session')).status, 401, 'and ends on every node');

      const made = await w.newKey('admin');
      const withKey = await signIn(second.url, made.key);
      assert.equal((await withKey.call('GET', '/v1/assets')).status, 200);
      assert.equal((await api(w.url, w.key, 'DELETE', `/v1/keys/${made.id}`)).status, 204);
      assert.equal(
        (await withKey.call('GET', '/v1/assets')).status,
        401,
        'the revoked key’s session is over',
      );
    } finally {
      await second.close();
    }
  });

  test('disabling the account ends its sessions: enabled again, it must sign in anew', async () => {
    const tenant = await w.newAccount();
    const client = await signIn(w.url, tenant.key);
    assert.equal((await client.call('GET', '/v1/assets')).status, 200);
    await w.wharf.core.keys.updateAccount(tenant.accountId, { disabled: true });
    assert.equal((await client.call('GET', '/v1/assets')).status, 401, 'the session is over at once');
    await w.wharf.core.keys.updateAccount(tenant.accountId, { disabled: false });
    assert.equal((await client.call('GET', '/v1/assets')).status, 401, 'the old session stays over');
    const again = await signIn(w.url, tenant.key);
    assert.equal((await again.call('GET', '/v1/assets')).status, 200);
  });

  test('a member key’s session does what the key may, and no more', async () => {
    const member = await w.newKey('member');
    const client = await signIn(w.url, member.key);
    assert.equal((await client.call('GET', '/v1/assets')).status, 200);
    const keys = await client.call('GET', '/v1/keys');
    assert.equal(keys.status, 403);
    assert.equal(keys.body.error.code, 'FORBIDDEN');
  });
});

describe('the native read endpoints the console uses', () => {
  test('GET /v1/uploads lists pending uploads newest first with a cursor; a token sees only its own', async () => {
    const ids: string[] = [];
    for (const name of ['p1.bin', 'p2.bin', 'p3.bin']) {
      const res = await api(w.url, w.key, 'POST', '/v1/uploads', { name, size: 3 });
      assert.equal(res.status, 201);
      ids.push(res.body.id);
    }
    const first = await api(w.url, w.key, 'GET', '/v1/uploads?status=pending&limit=2');
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(
      first.body.data.map((u: { id: string }) => u.id),
      [ids[2], ids[1]],
    );
    assert.equal(first.body.data[0].status, 'pending');
    assert.equal(first.body.data[0].kind, 'presigned');
    // Only tus and RUFH uploads are resumed at a URL; only a lookup by file says an offset.
    assert.equal(first.body.data[0].resume_url, null);
    assert.equal('offset' in first.body.data[0], false);
    const second = await api(
      w.url,
      w.key,
      'GET',
      `/v1/uploads?status=pending&limit=2&cursor=${first.body.next_cursor}`,
    );
    assert.equal(second.body.data[0].id, ids[0]);
    const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {});
    const own = await api(w.url, minted.body.secret, 'POST', '/v1/uploads', { name: 'own.bin', size: 3 });
    const seen = await api(w.url, minted.body.secret, 'GET', '/v1/uploads');
    assert.deepEqual(
      seen.body.data.map((u: { id: string }) => u.id),
      [own.body.id],
    );
    const bad = await api(w.url, w.key, 'GET', '/v1/uploads?status=failed');
    assert.equal(bad.status, 400);
  });

  test('GET /v1/account shows usage against the quota', async () => {
    const tenant = await w.newAccount();
    await w.wharf.core.keys.updateAccount(tenant.accountId, { storageQuota: 1000 });
    await upload(tenant.key, 'a.txt', 'x'.repeat(100));
    await api(w.url, tenant.key, 'POST', '/v1/uploads', { name: 'b.bin', size: 50 });
    const res = await api(w.url, tenant.key, 'GET', '/v1/account');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.id, tenant.accountId);
    assert.equal(res.body.storage_quota, 1000);
    assert.deepEqual(res.body.usage, {
      bytes_used: 100,
      bytes_reserved: 50,
      bytes_free: 850,
      assets: 1,
      pending_uploads: 1,
    });
    const minted = await api(w.url, tenant.key, 'POST', '/v1/upload-tokens', {});
    assert.equal((await api(w.url, minted.body.secret, 'GET', '/v1/account')).status, 403);
  });

  test('GET /v1/assets/{id}/files names the files an asset is a version of, with their versions', async () => {
    for (const text of ['first', 'second']) {
      const res = await fetch(`${w.url}/v1/files/docs/readme.txt`, {
        method: 'PUT',
        headers: { 'x-api-key': w.key, 'content-type': 'text/plain' },
        body: `${text} edition`,
      });
      assert.equal(res.status, 201);
    }
    const v1 = await api(w.url, w.key, 'GET', '/v1/files/docs/readme.txt?version=1');
    const files = await api(w.url, w.key, 'GET', `/v1/assets/${v1.body.asset.id}/files`);
    assert.equal(files.status, 200, JSON.stringify(files.body));
    assert.equal(files.body.data.length, 1);
    const [file] = files.body.data;
    assert.deepEqual(
      [file.namespace, file.name, file.version, file.latest_version],
      ['docs', 'readme.txt', 1, 2],
    );
    assert.deepEqual(
      file.versions.map((v: { version: number }) => v.version),
      [1, 2],
    );
    const other = await w.newAccount();
    assert.equal((await api(w.url, other.key, 'GET', `/v1/assets/${v1.body.asset.id}/files`)).status, 404);
  });

  test('GET /v1/assets filters by creation time', async () => {
    const before = new Date(w.clock.now()).toISOString();
    w.clock.advance(60_000);
    const later = await upload(w.key, 'later.txt', 'made a minute later');
    const after = await api(
      w.url,
      w.key,
      'GET',
      `/v1/assets?created_after=${encodeURIComponent(new Date(w.clock.now()).toISOString())}`,
    );
    assert.deepEqual(
      after.body.data.map((a: { id: string }) => a.id),
      [later.id],
    );
    const earlier = await api(w.url, w.key, 'GET', `/v1/assets?created_before=${encodeURIComponent(before)}`);
    assert.ok(earlier.body.data.length > 0);
    assert.ok(earlier.body.data.every((a: { id: string }) => a.id !== later.id));
    assert.equal((await api(w.url, w.key, 'GET', '/v1/assets?created_after=yesterday')).status, 400);
    // A leap second is a valid date-time: the next second, as Unix time counts it.
    const leap = await api(w.url, w.key, 'GET', '/v1/assets?created_after=2016-12-31T23:59:60Z');
    assert.equal(leap.status, 200, JSON.stringify(leap.body));
    assert.ok(leap.body.data.length > 0, 'every asset was made after 2016');
    const leapBefore = await api(w.url, w.key, 'GET', '/v1/assets?created_before=2016-12-31T23:59:60Z');
    assert.deepEqual(leapBefore.body.data, []);
  });
});

describe('the page', () => {
  test('/ goes to /console; the page and its files carry a strict CSP, and hashed files are cached for good', async () => {
    const root = await fetch(`${w.url}/`, { redirect: 'manual' });
    assert.equal(root.status, 302);
    assert.equal(root.headers.get('location'), '/console');
    const page = await fetch(`${w.url}/console`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(page.headers.get('cache-control'), 'no-cache');
    const csp = page.headers.get('content-security-policy') ?? '';
    for (const directive of [
      "default-src 'self'",
      "script-src 'self'",
      "style-src 'self'",
      "object-src 'none'",
      "base-uri 'none'",
      "frame-ancestors 'none'",
    ]) {
      assert.ok(csp.includes(directive), `${directive} in ${csp}`);
    }
    assert.ok(!csp.includes('unsafe'), 'nothing inline, no eval');
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
    const html = await page.text();
    assert.doesNotMatch(html, /<script>|<style|style=/, 'no inline script or style');
    const files = [...html.matchAll(/(?:src|href)="(\/console\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    assert.equal(files.length, 2);
    for (const file of files) {
      assert.match(file, /-[A-Z0-9]{8}\.(js|css)$/, 'content-hashed');
      const res = await fetch(w.url + file);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.match(res.headers.get('content-type') ?? '', file.endsWith('.js') ? /javascript/ : /text\/css/);
    }
    assert.equal((await fetch(`${w.url}/console/assets/nope.js`)).status, 404);
  });

  test('the OpenAPI document leaves the console out', async () => {
    const doc = (await (await fetch(`${w.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    assert.ok(Object.keys(doc.paths).every((path) => !path.startsWith('/console')));
  });

  test('WHARF_CONSOLE=false serves no console and no session', async () => {
    const off = await startWharf({ consoleDir: built.dir, env: { WHARF_CONSOLE: 'false' } });
    try {
      assert.equal((await fetch(`${off.url}/console`)).status, 404);
      assert.equal(
        (await api(off.url, undefined, 'POST', '/console/api/session', { key: off.key })).status,
        404,
      );
    } finally {
      await off.close();
    }
  });
});

describe('the sign-in limit', () => {
  test(`after ${SIGN_IN_FAILURES_ALLOWED} failed sign-ins an address waits (429 with Retry-After), even with a good key`, async () => {
    w.clock.advance(SIGN_IN_WINDOW_MS);
    for (let i = 0; i < SIGN_IN_FAILURES_ALLOWED; i++) {
      const res = await api(w.url, undefined, 'POST', '/console/api/session', { key: `wharf_wrong_${i}` });
      assert.equal(res.status, 401);
    }
    const limited = await api(w.url, undefined, 'POST', '/console/api/session', { key: w.key });
    assert.equal(limited.status, 429);
    assert.equal(limited.body.error.code, 'RATE_LIMITED');
    const wait = Number(limited.headers.get('retry-after'));
    assert.ok(wait > 0);
    // The console shows the message: it says the wait too.
    assert.match(limited.body.error.message, new RegExp(`try again in ${wait} s\\.$`));
    w.clock.advance(SIGN_IN_WINDOW_MS);
    assert.equal((await api(w.url, undefined, 'POST', '/console/api/session', { key: w.key })).status, 201);
  });
});
