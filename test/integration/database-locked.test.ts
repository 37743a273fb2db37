/**
 * The embedded deployment's SQLite file, its write lock held by another process for longer than
 * the busy timeout (a `sqlite3` shell's open transaction, an operator's script): a write that
 * outwaits it is answered 503 SERVICE_UNAVAILABLE with Retry-After, never a 500, and keeps
 * nothing; one whose lock is let go in time waits and succeeds. It was a 500 (INTERNAL, "database
 * is locked") for createKey and createWebhook, while writes queued behind them on the SQLite
 * thread, whose wait began later, outlasted the lock and succeeded.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import SQLite from 'better-sqlite3';
import { deployment } from '../helpers/deployment.js';
import { api, type JsonResponse } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

const skip = deployment !== 'embedded' && 'the scaled deployment has no SQLite file';

describe('the SQLite file locked by another process (embedded deployment)', { skip }, () => {
  let w: TestWharf;
  /** Another connection to the file, as another process's would be. */
  let other: SQLite.Database;

  before(async () => {
    w = await startWharf();
    other = new SQLite(join(w.dataDir, 'wharf.db'), { timeout: 0 });
  });
  after(async () => {
    other?.close();
    await w?.close();
  });

  /** Runs `during` with the database's write lock held by `other`, let go after `holdMs` or once `during` is done. */
  async function locked<T>(during: () => Promise<T>, holdMs = Number.POSITIVE_INFINITY): Promise<T> {
    other.exec('BEGIN IMMEDIATE');
    const release = () => {
      if (other.inTransaction) other.exec('ROLLBACK');
    };
    const timer = Number.isFinite(holdMs) ? setTimeout(release, holdMs) : undefined;
    try {
      return await during();
    } finally {
      clearTimeout(timer);
      release();
    }
  }

  function refusedForNow(res: JsonResponse, what: string): void {
    assert.equal(res.status, 503, `${what}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, 'SERVICE_UNAVAILABLE');
    assert.equal(res.headers.get('retry-after'), '5');
  }

  test('createKey and createWebhook past the busy timeout: 503 with Retry-After, never a 500, nothing kept', async (t) => {
    // A key used just now (its last use recorded): its requests write only what they create.
    assert.equal((await api(w.url, w.key, 'GET', '/v1/keys')).status, 200);
    // A key never used: its first request also records that use, a write of its own.
    const fresh = await w.newKey('admin');
    const started = performance.now();
    const [key, webhook, firstUse] = await locked(() =>
      Promise.all([
        api(w.url, w.key, 'POST', '/v1/keys', { name: 'during the lock', role: 'member' }),
        api(w.url, w.key, 'POST', '/v1/webhooks', {
          url: 'https://hooks.example.com/during-the-lock',
          event_types: ['asset.created'],
        }),
        api(w.url, fresh.key, 'POST', '/v1/webhooks', {
          url: 'https://hooks.example.com/first-use',
          event_types: ['asset.created'],
        }),
      ]),
    );
    // One after another on the SQLite thread: each waits out the busy timeout once its turn comes.
    t.diagnostic(`three writes refused after ${((performance.now() - started) / 1000).toFixed(1)} s`);
    refusedForNow(key, 'createKey');
    refusedForNow(webhook, 'createWebhook');
    refusedForNow(firstUse, 'a first use of a key');

    // Nothing of them was kept, and the same requests succeed now.
    const keys = (await api(w.url, w.key, 'GET', '/v1/keys?limit=100')).body.data as { name: string }[];
    assert.deepEqual(
      keys.filter((k) => k.name === 'during the lock'),
      [],
    );
    assert.deepEqual((await api(w.url, w.key, 'GET', '/v1/webhooks')).body.data, []);
    const again = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'during the lock', role: 'member' });
    assert.equal(again.status, 201, JSON.stringify(again.body));
    const hook = await api(w.url, fresh.key, 'POST', '/v1/webhooks', {
      url: 'https://hooks.example.com/first-use',
      event_types: ['asset.created'],
    });
    assert.equal(hook.status, 201, JSON.stringify(hook.body));
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/webhooks/${hook.body.webhook.id}`)).status, 204);
  });

  test('a lock let go within the busy timeout: the writes wait for it and succeed', async () => {
    const [key, webhook] = await locked(
      () =>
        Promise.all([
          api(w.url, w.key, 'POST', '/v1/keys', { name: 'after a short lock', role: 'member' }),
          api(w.url, w.key, 'POST', '/v1/webhooks', {
            url: 'https://hooks.example.com/after-a-short-lock',
            event_types: ['asset.created'],
          }),
        ]),
      1_000,
    );
    assert.equal(key.status, 201, JSON.stringify(key.body));
    assert.equal(webhook.status, 201, JSON.stringify(webhook.body));
  });
});
