import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  createAsset,
  dbQuery,
  declare,
  presignedUpload,
  putPresigned,
  uploadRaw,
} from '../helpers/assets.js';
import { api, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * The events outbox (`GET /v1/events`): every state change recorded in the transaction that
 * made it, in commit order, per account. Runs on both deployments.
 */

interface EventJson {
  id: string;
  cursor: string;
  type: string;
  timestamp: string;
  data: Record<string, any>;
}

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

/** Every event of the account after `after`, paging through as an app would. */
async function allEvents(key: string, after = '0', type?: string): Promise<EventJson[]> {
  const out: EventJson[] = [];
  let cursor = after;
  for (;;) {
    const query = new URLSearchParams({ after: cursor, limit: '7', ...(type && { type }) });
    const res = await api(w.url, key, 'GET', `/v1/events?${query}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    out.push(...res.body.data);
    cursor = res.body.cursor;
    if (!res.body.has_more) return out;
  }
}

async function fresh(): Promise<{ key: string; accountId: string }> {
  return w.newAccount();
}

describe('events of the upload flows', () => {
  test('a direct upload records upload.created, asset.created, upload.completed, then asset.processed', async () => {
    const { key } = await fresh();
    const bytes = randomBytes(1000);
    const asset = await createAsset(w, key, 'a.bin', bytes);
    await w.wharf.core.jobs.drain();
    const events = await allEvents(key);
    assert.deepEqual(
      events.map((e) => e.type),
      ['upload.created', 'asset.created', 'upload.completed', 'asset.processed'],
    );
    const [created, assetCreated, completed, processed] = events;
    assert.equal(created!.data.upload.name, 'a.bin');
    assert.equal(created!.data.upload.kind, 'direct');
    assert.equal(assetCreated!.data.asset.id, asset.id);
    assert.equal(assetCreated!.data.asset.sha256, sha256Hex(bytes));
    assert.equal(completed!.data.upload.id, created!.data.upload.id);
    assert.equal(completed!.data.upload.status, 'completed');
    assert.equal(completed!.data.upload.asset_id, asset.id);
    assert.equal(completed!.data.deduplicated, false);
    assert.equal(processed!.data.asset.processing, 'done');
    // Cursors increase; ids are distinct; timestamps are ISO.
    const cursors = events.map((e) => BigInt(e.cursor));
    assert.deepEqual(
      cursors,
      [...cursors].sort((a, b) => (a < b ? -1 : 1)),
    );
    assert.equal(new Set(events.map((e) => e.id)).size, events.length);
    for (const e of events) assert.ok(!Number.isNaN(Date.parse(e.timestamp)));
  });

  test('content the account holds already completes as deduplicated, with no asset.created', async () => {
    const { key } = await fresh();
    const bytes = randomBytes(500);
    const first = await createAsset(w, key, 'one.bin', bytes);
    const mark = (await allEvents(key)).at(-1)!.cursor;
    const again = await uploadRaw(w, key, 'two.bin', bytes);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    const events = await allEvents(key, mark);
    assert.deepEqual(
      events.map((e) => e.type),
      ['upload.created', 'upload.completed'],
    );
    assert.equal(events[1]!.data.deduplicated, true);
    assert.equal(events[1]!.data.asset.id, first.id);
  });

  test('a refused upload records upload.failed with the refusal code', async () => {
    const { key } = await fresh();
    const res = await uploadRaw(w, key, 'bad.bin', 'hello', { query: { sha256: sha256Hex('other') } });
    assert.equal(res.status, 400);
    const events = await allEvents(key);
    assert.deepEqual(
      events.map((e) => e.type),
      ['upload.created', 'upload.failed'],
    );
    assert.equal(events[1]!.data.error.code, 'CHECKSUM_MISMATCH');
    assert.equal(events[1]!.data.upload.status, 'expired');
    assert.equal(dbQuery(w, 'select count(*) as n from assets where name = ?', 'bad.bin')[0]!.n, 0);
  });

  test('presigned uploads: one upload.created each; an abandoned one expires in the sweep', async () => {
    const { key } = await fresh();
    const res = await api(w.url, key, 'POST', '/v1/uploads', {
      files: [
        { name: 'x.txt', size: 3 },
        { name: 'y.txt', size: 3 },
        { name: 'z.txt', size: 3 },
      ],
    });
    assert.equal(res.status, 201);
    const [x, y] = res.body.uploads;
    assert.equal((await putPresigned(x, 'xxx')).status, 200);
    assert.equal((await api(w.url, key, 'POST', `/v1/uploads/${x.id}/complete`)).status, 200);
    assert.equal((await putPresigned(y, 'yyy')).status, 200);
    const before = await allEvents(key);
    assert.deepEqual(
      before.map((e) => e.type),
      ['upload.created', 'upload.created', 'upload.created', 'asset.created', 'upload.completed'],
    );
    // Past expiry and the completion grace: the never-completed ones expire.
    w.clock.advance(2 * 24 * 3600_000);
    await w.wharf.core.uploads.sweep();
    const later = await allEvents(key, before.at(-1)!.cursor);
    assert.deepEqual(later.map((e) => e.type).sort(), ['upload.expired', 'upload.expired']);
    assert.deepEqual(later.map((e) => e.data.upload.name).sort(), ['y.txt', 'z.txt']);
  });

  test('a multipart upload its client aborts records upload.cancelled', async () => {
    const { key } = await fresh();
    const started = await api(w.url, key, 'POST', '/v1/multipart', {
      name: 'big.bin',
      content_type: 'application/octet-stream',
      size: 6 * 1024 * 1024,
    });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    assert.equal((await api(w.url, key, 'DELETE', `/v1/multipart/${started.body.id}`)).status, 204);
    const events = await allEvents(key);
    assert.deepEqual(
      events.map((e) => e.type),
      ['upload.created', 'upload.cancelled'],
    );
    assert.equal(events[1]!.data.upload.kind, 'multipart');
  });
});

describe('events of asset changes', () => {
  test('access changes record asset.updated; deletion records asset.deleted with the last state', async () => {
    const { key } = await fresh();
    const asset = await createAsset(w, key, 'doc.txt', 'some text');
    const mark = (await allEvents(key)).at(-1)!.cursor;
    const patched = await api(w.url, key, 'PATCH', `/v1/assets/${asset.id}`, { access: 'public' });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.equal((await api(w.url, key, 'DELETE', `/v1/assets/${asset.id}`)).status, 204);
    const events = await allEvents(key, mark);
    assert.deepEqual(
      events.map((e) => e.type),
      ['asset.updated', 'asset.deleted'],
    );
    assert.equal(events[0]!.data.asset.access, 'public');
    assert.equal(events[1]!.data.asset.id, asset.id);
    assert.equal(events[1]!.data.asset.access, 'public');
  });

  test('setting the access an asset has already records nothing and changes nothing', async () => {
    const { key } = await fresh();
    const asset = await createAsset(w, key, 'same.txt', 'same access');
    const before = await api(w.url, key, 'GET', `/v1/assets/${asset.id}`);
    assert.equal(before.body.access, 'private');
    const mark = (await allEvents(key)).at(-1)!.cursor;
    for (let i = 0; i < 3; i++) {
      w.clock.advance(1000);
      const same = await api(w.url, key, 'PATCH', `/v1/assets/${asset.id}`, { access: 'private' });
      assert.equal(same.status, 200, JSON.stringify(same.body));
      assert.deepEqual(same.body, before.body, 'the asset as it was, updated_at included');
    }
    assert.deepEqual(await allEvents(key, mark), []);
    // A real change still records one.
    const changed = await api(w.url, key, 'PATCH', `/v1/assets/${asset.id}`, { access: 'public' });
    assert.equal(changed.body.access, 'public');
    assert.deepEqual(
      (await allEvents(key, mark)).map((e) => e.type),
      ['asset.updated'],
    );
  });
});

describe('GET /v1/events', () => {
  test('type filters take exact types and families; unknown types are refused', async () => {
    const { key } = await fresh();
    await createAsset(w, key, 'f.bin', randomBytes(10));
    const completed = await allEvents(key, '0', 'upload.completed');
    assert.deepEqual(
      completed.map((e) => e.type),
      ['upload.completed'],
    );
    const uploads = await allEvents(key, '0', 'upload.*');
    assert.deepEqual(
      uploads.map((e) => e.type),
      ['upload.created', 'upload.completed'],
    );
    const both = await allEvents(key, '0', 'asset.created, upload.created');
    assert.deepEqual(
      both.map((e) => e.type),
      ['upload.created', 'asset.created'],
    );
    for (const bad of ['upload.done', 'nothing.*', 'upload']) {
      const res = await api(w.url, key, 'GET', `/v1/events?type=${encodeURIComponent(bad)}`);
      assert.equal(res.status, 400, bad);
      assert.equal(res.body.error.code, 'VALIDATION_FAILED');
    }
  });

  test('has_more says whether events follow the page, also when exactly `limit` remain', async () => {
    const { key } = await fresh();
    await createAsset(w, key, 'm.bin', randomBytes(10));
    const page = async (query: string) => {
      const res = await api(w.url, key, 'GET', `/v1/events?${query}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body;
    };
    // upload.created, asset.created, upload.completed (asset.processed waits for the jobs).
    assert.equal((await page('limit=3')).data.length, 3);
    assert.equal((await page('limit=3')).has_more, false, 'the page holds the last 3: nothing to ask for');
    const first = await page('limit=2');
    assert.deepEqual([first.data.length, first.has_more], [2, true]);
    const rest = await page(`limit=2&after=${first.cursor}`);
    assert.deepEqual([rest.data.length, rest.has_more], [1, false]);
    const filtered = await page('limit=1&type=upload.*');
    assert.deepEqual([filtered.data.length, filtered.has_more], [1, true]);
    assert.equal((await page(`limit=1&type=upload.*&after=${filtered.cursor}`)).has_more, false);
  });

  test('bad cursors and limits are refused with VALIDATION_FAILED', async () => {
    for (const query of [
      'after=-1',
      'after=abc',
      'after=1e3',
      'limit=0',
      'limit=1001',
      'limit=x',
      'colour=red',
    ]) {
      const res = await api(w.url, w.key, 'GET', `/v1/events?${query}`);
      assert.equal(res.status, 400, query);
      assert.equal(res.body.error.code, 'VALIDATION_FAILED', query);
    }
  });

  test('a cursor above any the account was handed is 409 CURSOR_AHEAD, not an empty page to wait on forever', async () => {
    const { key } = await fresh();
    // No event yet: the cursor an empty listing hands out is accepted.
    const empty = await api(w.url, key, 'GET', '/v1/events?after=0');
    assert.equal(empty.status, 200, JSON.stringify(empty.body));
    assert.equal(empty.body.cursor, '0');
    for (const after of ['1', '999999999999']) {
      const res = await api(w.url, key, 'GET', `/v1/events?after=${after}`);
      assert.equal(res.status, 409, after);
      assert.equal(res.body.error.code, 'CURSOR_AHEAD');
      assert.equal(res.body.error.details.latest_cursor, '0');
    }
    await createAsset(w, key, 'ahead.bin', randomBytes(10));
    const last = (await allEvents(key)).at(-1)!;
    assert.equal((await api(w.url, key, 'GET', `/v1/events?after=${last.cursor}`)).status, 200);
    const ahead = await api(w.url, key, 'GET', `/v1/events?after=${Number(last.cursor) + 1}&type=asset.*`);
    assert.equal(ahead.status, 409);
    assert.equal(ahead.body.error.details.latest_cursor, last.cursor);
  });

  test('needs a key, and an account never sees another account’s events', async () => {
    assert.equal((await api(w.url, undefined, 'GET', '/v1/events')).status, 401);
    const a = await fresh();
    const b = await fresh();
    await createAsset(w, a.key, 'secret-a.bin', randomBytes(10));
    const seenByB = await allEvents(b.key);
    assert.deepEqual(seenByB, []);
    const seenByA = await allEvents(a.key);
    assert.ok(seenByA.length >= 3);
  });

  test('concurrent changes: every change is recorded once, in an order consistent with each upload', async () => {
    const { key, accountId } = await fresh();
    const outcomes = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        i % 3 === 0
          ? presignedUpload(w, key, `p${i}.bin`, randomBytes(64 + i))
          : uploadRaw(w, key, `d${i}.bin`, i % 3 === 1 ? randomBytes(64 + i) : 'same bytes'),
      ),
    );
    for (const o of outcomes) assert.ok(o.status === 200 || o.status === 201, JSON.stringify(o.body));
    const events = await allEvents(key);
    const uploads = dbQuery<{ id: string; status: string }>(
      w,
      'select id, status from uploads where account_id = ?',
      accountId,
    );
    assert.equal(uploads.length, 24);
    for (const upload of uploads) {
      const mine = events.filter((e) => e.data.upload?.id === upload.id).map((e) => e.type);
      assert.deepEqual(mine, ['upload.created', 'upload.completed'], upload.id);
    }
    // One asset.created per distinct content: 16 random files and one shared content.
    const assetCreated = events.filter((e) => e.type === 'asset.created');
    assert.equal(assetCreated.length, 17);
    const assets = dbQuery<{ id: string }>(w, 'select id from assets where account_id = ?', accountId);
    assert.deepEqual(assetCreated.map((e) => e.data.asset.id).sort(), assets.map((a) => a.id).sort());
    // Each asset.created comes before the upload.completed that names it.
    for (const e of assetCreated) {
      const createdAt = events.indexOf(e);
      const completedAt = events.findIndex(
        (c) => c.type === 'upload.completed' && c.data.asset.id === e.data.asset.id,
      );
      assert.ok(createdAt < completedAt);
    }
  });
});

// Counted from one counter for every account, a tenant could tell from two of its own asset
// numbers or event cursors how much every other tenant had done in between.
describe('a cursor after which retention removed events', () => {
  test('is 410 CURSOR_EXPIRED, whatever types are asked for, until the app continues from the pruned cursor', async () => {
    const s = await startWharf({ env: { WHARF_EVENTS_RETENTION_DAYS: '1' } });
    try {
      const a = await s.newAccount();
      const list = (key: string, query: string) => api(s.url, key, 'GET', `/v1/events?${query}`);
      await createAsset(s, a.key, 'old.bin', randomBytes(10));
      const old = (await list(a.key, '')).body.data as EventJson[];
      assert.ok(old.length >= 2, JSON.stringify(old));
      const oldLast = old.at(-1)!.cursor;
      s.clock.advance(24 * 3600_000 + 1);
      await createAsset(s, a.key, 'new.bin', randomBytes(10));
      // Another account whose events all came after: nothing of it was pruned.
      const b = await s.newAccount();
      await createAsset(s, b.key, 'b.bin', randomBytes(10));
      assert.equal((await s.wharf.core.webhooks.prune()).events, old.length);

      for (const query of [`after=${old[0]!.cursor}`, 'after=0', `after=${old[0]!.cursor}&type=asset.*`]) {
        const res = await list(a.key, query);
        assert.equal(res.status, 410, `${query}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error.code, 'CURSOR_EXPIRED');
        assert.equal(res.body.error.details.pruned_cursor, oldLast);
        assert.match(res.body.error.message, /WHARF_EVENTS_RETENTION_DAYS/);
      }
      // From the pruned cursor on, every event kept is listed.
      const rest = await list(a.key, `after=${oldLast}`);
      assert.equal(rest.status, 200, JSON.stringify(rest.body));
      assert.equal(rest.body.data[0].cursor, String(Number(oldLast) + 1));
      assert.ok(rest.body.data.some((e: EventJson) => e.data.asset?.name === 'new.bin'));
      // Without a cursor: from the oldest kept, as before.
      assert.equal((await list(a.key, '')).body.data[0].cursor, String(Number(oldLast) + 1));
      assert.equal((await list(b.key, 'after=0')).status, 200);

      // A type whose events are all gone, or never came: the cursor handed out passes over what
      // the page passed over, so polling with it is never refused for events of other types.
      const rare = await list(a.key, 'type=asset.deleted');
      assert.equal(rare.status, 200);
      assert.deepEqual(rare.body.data, []);
      assert.equal(rare.body.cursor, rest.body.data.at(-1).cursor);
      assert.equal((await list(a.key, `type=asset.deleted&after=${rare.body.cursor}`)).status, 200);

      // A later prune raises the account's pruned cursor.
      const newLast = rest.body.data.at(-1).cursor as string;
      s.clock.advance(24 * 3600_000 + 1);
      await s.wharf.core.webhooks.prune();
      const again = await list(a.key, `after=${oldLast}`);
      assert.equal(again.status, 410);
      assert.equal(again.body.error.details.pruned_cursor, newLast);
      assert.equal((await list(a.key, `after=${newLast}`)).status, 200);
      // Everything pruned: a first listing hands out a cursor to continue from, not "0".
      const empty = await list(a.key, '');
      assert.deepEqual(empty.body.data, []);
      assert.equal(empty.body.cursor, newLast);
      assert.equal((await list(a.key, `after=${empty.body.cursor}`)).status, 200);
    } finally {
      await s.close();
    }
  });
});

describe('numbers each account counts alone', () => {
  test('another account’s uploads and events between two of this account’s move neither its asset numbers nor its cursors', async () => {
    const a = await fresh();
    const b = await fresh();
    const first = await createAsset(w, a.key, 'a1.bin', randomBytes(100));
    // A fresh account counts from 1.
    assert.equal(first.number, 1);
    const before = await allEvents(a.key);
    // The other account: direct and presigned uploads, an intent left pending, a deletion.
    const gone = await createAsset(w, b.key, 'b1.bin', randomBytes(100));
    assert.equal((await api(w.url, b.key, 'DELETE', `/v1/assets/${gone.id}`)).status, 204);
    const presigned = await presignedUpload(w, b.key, 'b2.bin', randomBytes(100));
    assert.equal(presigned.status, 200, JSON.stringify(presigned.body));
    await declare(w, b.key, { name: 'b3.bin', content_type: 'application/octet-stream', size: 10 });
    const second = await createAsset(w, a.key, 'a2.bin', randomBytes(100));
    assert.equal(second.number, first.number + 1);
    const since = await allEvents(a.key, before.at(-1)!.cursor);
    assert.deepEqual(
      since.map((e) => e.type),
      ['upload.created', 'asset.created', 'upload.completed'],
    );
    const all = [...before, ...since];
    assert.deepEqual(
      all.map((e) => Number(e.cursor)),
      all.map((_, i) => i + 1),
    );
  });

  test('intents of two accounts recorded together are numbered each from its own account’s count', async () => {
    const a = await fresh();
    const b = await fresh();
    // Declared at once: the store records concurrent intents in one transaction.
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        declare(w, i % 2 === 0 ? a.key : b.key, {
          name: `i${i}.bin`,
          content_type: 'application/octet-stream',
          size: 10 + i,
        }),
      ),
    );
    for (const { accountId, key } of [a, b]) {
      const numbers = dbQuery<{ seq: number | string }>(
        w,
        'select seq from uploads where account_id = ?',
        accountId,
      ).map((r) => Number(r.seq));
      assert.deepEqual(
        numbers.sort((x, y) => x - y),
        Array.from({ length: 10 }, (_, i) => i + 1),
      );
      assert.deepEqual(
        (await allEvents(key)).map((e) => Number(e.cursor)),
        Array.from({ length: 10 }, (_, i) => i + 1),
      );
    }
  });

  test('paging with after= while both accounts change lists each of the account’s events once', async () => {
    const a = await fresh();
    const b = await fresh();
    const seen: EventJson[] = [];
    let cursor = '0';
    const page = async (): Promise<boolean> => {
      const res = await api(w.url, a.key, 'GET', `/v1/events?after=${cursor}&limit=3`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      seen.push(...res.body.data);
      cursor = res.body.cursor;
      return res.body.has_more;
    };
    let done = false;
    const changes = Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        uploadRaw(w, i % 2 === 0 ? a.key : b.key, `c${i}.bin`, randomBytes(50 + i)),
      ),
    ).finally(() => {
      done = true;
    });
    while (!done) await page();
    for (const o of await changes) assert.equal(o.status, 201, JSON.stringify(o.body));
    while (await page());
    const all = await allEvents(a.key);
    assert.equal(all.length, 8 * 3);
    assert.deepEqual(
      seen.map((e) => e.id),
      all.map((e) => e.id),
    );
    assert.deepEqual(
      all.map((e) => Number(e.cursor)),
      all.map((_, i) => i + 1),
    );
  });
});

describe('an intent declared with known content', () => {
  test('records nothing: no upload was opened', async () => {
    const { key } = await fresh();
    const bytes = randomBytes(100);
    await createAsset(w, key, 'known.bin', bytes);
    const mark = (await allEvents(key)).at(-1)!.cursor;
    const res = await api(w.url, key, 'POST', '/v1/uploads', {
      name: 'k.bin',
      size: 100,
      sha256: sha256Hex(bytes),
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.status, 'exists');
    assert.deepEqual(await allEvents(key, mark), []);
    // A pending one, by contrast, is an upload.created.
    await declare(w, key, { name: 'new.bin', size: 5 });
    assert.deepEqual(
      (await allEvents(key, mark)).map((e) => e.type),
      ['upload.created'],
    );
  });
});
