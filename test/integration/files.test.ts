import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type RawBuilder, sql } from 'kysely';
import { connect } from '../../src/db/connect.js';
import { countAssets, dbQuery, eventually, objectFiles, readJson, uploadRaw } from '../helpers/assets.js';
import { deployment } from '../helpers/deployment.js';
import { api, b64, type JsonResponse, md5Hex, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

/** PUT /v1/files/{namespace}/{name}: both segments are encoded as a client library would. */
function putFile(
  namespace: string,
  name: string,
  bytes: Buffer | string,
  key = w.key,
  contentType = 'text/plain',
  base = w.url,
): Promise<JsonResponse> {
  return readJson(
    fetch(`${base}/v1/files/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`, {
      method: 'PUT',
      headers: { 'x-api-key': key, 'content-type': contentType },
      body: new Uint8Array(Buffer.from(bytes)),
    }),
  );
}

/** GET /v1/files/{namespace}/{name}, then `suffix` as it is (`?version=1`, `/versions`). */
function getFile(namespace: string, name: string, suffix = '', key = w.key): Promise<JsonResponse> {
  return api(
    w.url,
    key,
    'GET',
    `/v1/files/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}${suffix}`,
  );
}

async function content(url: string, key = w.key): Promise<Buffer> {
  const res = await fetch(url, { headers: { 'x-api-key': key } });
  assert.equal(res.status, 200, url);
  return Buffer.from(await res.arrayBuffer());
}

/**
 * A PUT with the path exactly as given, not normalised: fetch resolves `..` (even
 * percent-encoded) before sending, and a hostile client would not.
 */
function rawPut(path: string, bytes: string): Promise<JsonResponse> {
  const url = new URL(w.url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method: 'PUT',
        path,
        headers: {
          'x-api-key': w.key,
          'content-type': 'text/plain',
          'content-length': Buffer.byteLength(bytes),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // Not JSON: keep the text.
          }
          resolve({ status: res.statusCode ?? 0, headers: new Headers(), body });
        });
      },
    );
    req.on('error', reject);
    req.end(bytes);
  });
}

function countFileVersions(): number {
  return dbQuery<{ n: number }>(w, 'select count(*) as n from file_versions')[0]!.n;
}

describe('PUT /v1/files/{namespace}/{name}: versions', () => {
  const v1 = 'first version\n';
  const v2 = 'second version, a little longer\n';
  let first: JsonResponse;
  let second: JsonResponse;
  before(async () => {
    first = await putFile('docs', 'readme.txt', v1);
    second = await putFile('docs', 'readme.txt', v2);
  });

  test('each upload of a name is its next version', () => {
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.equal(second.status, 201, JSON.stringify(second.body));
    assert.equal(first.body.namespace, 'docs');
    assert.equal(first.body.name, 'readme.txt');
    assert.equal(first.body.version, 1);
    assert.equal(first.body.latest_version, 1);
    assert.equal(second.body.version, 2);
    assert.equal(second.body.latest_version, 2);
    assert.equal(first.body.asset.sha256, sha256Hex(v1));
    assert.equal(second.body.asset.sha256, sha256Hex(v2));
    assert.equal(first.body.asset.content_type, 'text/plain');
    assert.notEqual(first.body.asset.id, second.body.asset.id);
  });

  test('GET gives the latest version, its asset and its bytes', async () => {
    const res = await getFile('docs', 'readme.txt');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.version, 2);
    assert.equal(res.body.latest_version, 2);
    assert.equal(res.body.asset.id, second.body.asset.id);
    assert.equal((await content(res.body.asset.content_url)).toString(), v2);
  });

  test('?version=1 gives the older version, which stays readable', async () => {
    const res = await getFile('docs', 'readme.txt', '?version=1');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.version, 1);
    assert.equal(res.body.latest_version, 2, 'latest_version is the file’s, not the version’s');
    assert.equal(res.body.asset.id, first.body.asset.id);
    assert.equal((await content(res.body.asset.content_url)).toString(), v1);
  });

  test('a version that does not exist, or a name never uploaded, is 404', async () => {
    for (const [ns, name, query] of [
      ['docs', 'readme.txt', '?version=3'],
      ['docs', 'nothing-here.txt', ''],
      ['other', 'readme.txt', ''],
    ] as const) {
      const res = await getFile(ns, name, query);
      assert.equal(res.status, 404, `${ns}/${name}${query}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'NOT_FOUND');
    }
    const versions = await getFile('docs', 'nothing-here.txt', '/versions');
    assert.equal(versions.status, 404);
  });

  test('a version number that is not a positive integer is refused', async () => {
    for (const query of ['?version=0', '?version=-1', '?version=1.5', '?version=abc']) {
      const res = await getFile('docs', 'readme.txt', query);
      assert.equal(res.status, 400, `${query}: ${JSON.stringify(res.body)}`);
    }
  });

  test('the versions list takes no parameters: a cursor or a typo is refused, not ignored', async () => {
    for (const query of ['?cursor=zzz', '?limit=1', '?foo=bar']) {
      const res = await getFile('docs', 'readme.txt', `/versions${query}`);
      assert.equal(res.status, 400, `${query}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'VALIDATION_FAILED');
    }
    assert.equal((await getFile('docs', 'readme.txt', '/versions')).status, 200);
  });
});

describe('versions and identical content', () => {
  test('identical content in two versions is one asset; the versions list shows them all', async () => {
    const a = `content A ${randomBytes(8).toString('hex')}`;
    const b = `content B ${randomBytes(8).toString('hex')}`;
    const r1 = await putFile('dedupe', 'notes.txt', a);
    const r2 = await putFile('dedupe', 'notes.txt', b);
    const r3 = await putFile('dedupe', 'notes.txt', a);
    assert.deepEqual(
      [r1.status, r2.status, r3.status],
      [201, 201, 201],
      JSON.stringify([r1.body, r2.body, r3.body]),
    );
    assert.deepEqual([r1.body.version, r2.body.version, r3.body.version], [1, 2, 3]);
    assert.equal(r3.body.asset.id, r1.body.asset.id, 'the same content is the same asset');
    assert.notEqual(r2.body.asset.id, r1.body.asset.id);
    const stored = dbQuery<{ n: number }>(
      w,
      "select count(*) as n from assets where account_id = 'default' and sha256 = ?",
      sha256Hex(a),
    );
    assert.equal(stored[0]!.n, 1);

    // Another name with the same content also reuses the asset.
    const other = await putFile('dedupe', 'copy.txt', a);
    assert.equal(other.status, 201);
    assert.equal(other.body.version, 1);
    assert.equal(other.body.asset.id, r1.body.asset.id);

    const list = await getFile('dedupe', 'notes.txt', '/versions');
    assert.equal(list.status, 200, JSON.stringify(list.body));
    assert.deepEqual(
      list.body.data.map((v: { version: number; asset_id: string; latest_version: number }) => [
        v.version,
        v.asset_id,
        v.latest_version,
      ]),
      [
        [1, r1.body.asset.id, 3],
        [2, r2.body.asset.id, 3],
        [3, r1.body.asset.id, 3],
      ],
    );
    assert.ok(list.body.data.every((v: { namespace: string; name: string }) => v.namespace === 'dedupe'));
    assert.ok(list.body.data.every((v: { namespace: string; name: string }) => v.name === 'notes.txt'));

    const v3 = await getFile('dedupe', 'notes.txt', '?version=3');
    assert.equal((await content(v3.body.asset.content_url)).toString(), a);
    const v2 = await getFile('dedupe', 'notes.txt', '?version=2');
    assert.equal((await content(v2.body.asset.content_url)).toString(), b);
  });

  test('8 concurrent uploads of one name get versions 1 to 8, each once', async () => {
    const bodies = Array.from({ length: 8 }, (_, i) => `parallel ${i} ${randomBytes(8).toString('hex')}`);
    const results = await Promise.all(bodies.map((b) => putFile('race', 'same-name.bin', b)));
    for (const r of results) assert.equal(r.status, 201, JSON.stringify(r.body));
    const versions = results.map((r) => r.body.version as number).sort((x, y) => x - y);
    assert.deepEqual(versions, [1, 2, 3, 4, 5, 6, 7, 8]);

    // Each version points at the content of the request that was told that version.
    const list = await getFile('race', 'same-name.bin', '/versions');
    assert.equal(list.status, 200);
    assert.equal(list.body.data.length, 8);
    const byVersion = new Map<number, string>(
      list.body.data.map((v: { version: number; asset_id: string }) => [v.version, v.asset_id]),
    );
    for (const r of results) assert.equal(byVersion.get(r.body.version), r.body.asset.id);
    for (let i = 0; i < bodies.length; i += 1) {
      const got = await getFile('race', 'same-name.bin', `?version=${results[i]!.body.version}`);
      assert.equal((await content(got.body.asset.content_url)).toString(), bodies[i]);
    }
    const latest = await getFile('race', 'same-name.bin');
    assert.equal(latest.body.version, 8);
    assert.equal(latest.body.latest_version, 8);
  });

  test('a version is never dated before the one before it: the list, oldest first, runs forward in time', async () => {
    const name = `dated-${randomBytes(4).toString('hex')}.txt`;
    const first = await putFile('dated', name, `one ${name}`);
    assert.equal(first.status, 201);
    // The second upload's time is taken before it waits for the file's lock, and on another
    // node's clock: here, a minute before the first's.
    const now = w.clock.now();
    w.clock.set(now - 60_000);
    let second: JsonResponse;
    try {
      second = await putFile('dated', name, `two ${name}`);
    } finally {
      w.clock.set(now);
    }
    assert.equal(second.body.version, 2);
    const listed = await getFile('dated', name, '/versions');
    const dates = listed.body.data.map((v: { created_at: string }) => Date.parse(v.created_at));
    assert.ok(dates[1] >= dates[0], `oldest first, forward in time: ${JSON.stringify(listed.body.data)}`);
    assert.equal(Date.parse(second.body.created_at), dates[1]);
  });

  test('conditional headers are refused, not ignored: nothing is written', async () => {
    const name = `cond-${randomBytes(4).toString('hex')}.txt`;
    for (const [header, value] of [
      ['if-none-match', '*'],
      ['if-match', '"abc"'],
      ['if-unmodified-since', new Date().toUTCString()],
    ] as const) {
      const refused = await readJson(
        fetch(`${w.url}/v1/files/cond/${name}`, {
          method: 'PUT',
          headers: { 'x-api-key': w.key, 'content-type': 'text/plain', [header]: value },
          body: `one ${name}`,
        }),
      );
      assert.equal(refused.status, 400, `${header}: ${JSON.stringify(refused.body)}`);
      assert.equal(refused.body.error.code, 'VALIDATION_FAILED');
      assert.equal(refused.body.error.details.header, header);
    }
    assert.equal((await getFile('cond', name)).status, 404, 'no version written');
    assert.equal((await putFile('cond', name, `one ${name}`)).body.version, 1);
  });

  test('namespaces and names are separate files', async () => {
    const a = await putFile('ns-one', 'x.txt', 'one');
    const b = await putFile('ns-two', 'x.txt', 'two');
    const c = await putFile('ns-one', 'y.txt', 'three');
    assert.deepEqual([a.body.version, b.body.version, c.body.version], [1, 1, 1]);
    assert.equal((await getFile('ns-two', 'x.txt')).body.asset.id, b.body.asset.id);
  });
});

describe('PUT /v1/files with an Idempotency-Key', () => {
  function putWithKey(name: string, text: string, key: string, namespace = 'idem'): Promise<Response> {
    return fetch(`${w.url}/v1/files/${namespace}/${encodeURIComponent(name)}`, {
      method: 'PUT',
      headers: { 'x-api-key': w.key, 'content-type': 'text/plain', 'idempotency-key': key },
      body: text,
    });
  }

  test('the same request again gets the first answer, replayed, and makes no second version', async () => {
    const name = `idem-${randomBytes(4).toString('hex')}.txt`;
    const key = randomBytes(16).toString('hex');
    const first = await putWithKey(name, `one ${name}`, key);
    assert.equal(first.status, 201);
    const firstBody = await first.json();
    const again = await putWithKey(name, `one ${name}`, key);
    assert.equal(again.status, 201);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    const againBody = await again.json();
    assert.equal(againBody.version, 1);
    assert.equal(againBody.asset.id, firstBody.asset.id);
    assert.deepEqual(
      (await getFile('idem', name, '/versions')).body.data.map((v: { version: number }) => v.version),
      [1],
    );
    // The key names that file: sent for another file (or other content headers) it is refused.
    const elsewhere = await putWithKey(`other-${name}`, `one ${name}`, key);
    assert.equal(elsewhere.status, 422);
    assert.equal(
      ((await elsewhere.json()) as { error: { code: string } }).error.code,
      'IDEMPOTENCY_KEY_REUSED',
    );
    // Without a key, or with another, each upload is the next version.
    const next = await putWithKey(name, `two ${name}`, randomBytes(16).toString('hex'));
    assert.equal(((await next.json()) as { version: number }).version, 2);
  });
});

describe("deleting the asset of a file's latest version", () => {
  test('latest_version names the latest version that still exists, and the next upload is numbered on (h90)', async () => {
    const name = `lv-${randomBytes(4).toString('hex')}.txt`;
    const made = [];
    for (const text of ['one', 'two', 'three']) made.push(await putFile('lv', name, `${text} ${name}`));
    assert.deepEqual(
      made.map((r) => r.body.version),
      [1, 2, 3],
    );
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${made[2]!.body.asset.id}`)).status, 204);

    const latest = await getFile('lv', name);
    assert.equal(latest.body.version, 2);
    assert.equal(latest.body.latest_version, 2, 'the latest that exists, not the deleted 3');
    assert.equal((await getFile('lv', name, '?version=1')).body.latest_version, 2);
    const listed = await getFile('lv', name, '/versions');
    assert.deepEqual(
      listed.body.data.map((v: { version: number; latest_version: number }) => [v.version, v.latest_version]),
      [
        [1, 2],
        [2, 2],
      ],
    );
    // The file service's view of it says the same.
    const seed = await api(w.url, w.key, 'GET', `/api_gateway/file-service/lv/${name}/versions`);
    assert.equal(seed.status, 200, JSON.stringify(seed.body));
    assert.equal(seed.body.latest_version, 2);
    // A number is never given twice: the next upload is 4.
    const next = await putFile('lv', name, `four ${name}`);
    assert.equal(next.body.version, 4);
    assert.equal(next.body.latest_version, 4);
    assert.equal((await getFile('lv', name)).body.latest_version, 4);
  });

  test('a read of the latest version while its asset is deleted gets the version left, not 404', async () => {
    const name = `lvr-${randomBytes(4).toString('hex')}.txt`;
    await putFile('lv', name, `one ${name}`);
    const second = await putFile('lv', name, `two ${name}`);
    assert.equal(second.body.version, 2);
    // The read finds version 2's row; the asset is deleted before the read loads it (the
    // window a concurrent DELETE hits). The store is the server's own, only held at that point.
    const store = (
      w.wharf.core.files as unknown as { store: { getFileVersion: (...args: never[]) => Promise<unknown> } }
    ).store;
    const original = store.getFileVersion;
    let held = false;
    store.getFileVersion = async function (this: unknown, ...args: never[]) {
      const found = await original.apply(this, args);
      if (!held) {
        held = true;
        const deleted = await api(w.url, w.key, 'DELETE', `/v1/assets/${second.body.asset.id}`);
        assert.equal(deleted.status, 204);
      }
      return found;
    };
    let latest: JsonResponse;
    try {
      latest = await getFile('lv', name);
    } finally {
      store.getFileVersion = original;
    }
    assert.ok(held);
    assert.equal(latest.status, 200, JSON.stringify(latest.body));
    assert.equal(latest.body.version, 1);
    assert.equal(latest.body.latest_version, 1);
    // An asked-for version that went is missing, as it is once the delete is over.
    assert.equal((await getFile('lv', name, '?version=2')).status, 404);
  });
});

describe('a named file written while the asset of its content is deleted', () => {
  // Scaled: the write goes to a second node, as behind a load balancer, and the two requests'
  // transactions run side by side on PostgreSQL. Embedded has one process (SQLite, one writer).
  let other: TestWharf;
  before(async () => {
    other = deployment === 'scaled' ? await startWharf({ sharing: w, clock: w.clock }) : w;
  });
  after(async () => {
    if (other !== w) await other?.close();
  });

  /** Every version the list shows can be read, and so can its asset's bytes. */
  async function assertVersionsReadable(namespace: string, name: string, bytes: string): Promise<number[]> {
    const list = await getFile(namespace, name, '/versions');
    if (list.status === 404) return [];
    assert.equal(list.status, 200, JSON.stringify(list.body));
    for (const v of list.body.data as Array<{ version: number; asset_id: string }>) {
      const got = await getFile(namespace, name, `?version=${v.version}`);
      assert.equal(got.status, 200, `version ${v.version} is listed: ${JSON.stringify(got.body)}`);
      assert.equal(got.body.asset.id, v.asset_id);
      if (got.body.asset.sha256 === sha256Hex(bytes)) {
        assert.equal((await content(got.body.asset.content_url)).toString(), bytes);
      }
    }
    return list.body.data.map((v: { version: number }) => v.version);
  }

  test('PUT and DELETE of the same content at once: every version listed can be read', async () => {
    for (let round = 0; round < 10; round++) {
      const bytes = `raced ${round} ${randomBytes(8).toString('hex')}`;
      const held = await uploadRaw(w, w.key, `held-${round}.txt`, bytes, { contentType: 'text/plain' });
      assert.equal(held.status, 201, JSON.stringify(held.body));
      const name = `f${round}.txt`;
      const [deleted, put] = await Promise.all([
        api(w.url, w.key, 'DELETE', `/v1/assets/${held.body.asset.id}`),
        putFile('raced', name, bytes, w.key, 'text/plain', other.url),
      ]);
      assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
      assert.equal(put.status, 201, JSON.stringify(put.body));
      const listed = await assertVersionsReadable('raced', name, bytes);
      // One of the two serial outcomes: the write took the asset and its version went with it,
      // or the delete came first and the write stored the content anew.
      if (put.body.asset.id === held.body.asset.id) assert.deepEqual(listed, []);
      else assert.deepEqual(listed, [1]);
    }
  });

  describe('each order, held at a row lock', {
    skip:
      deployment !== 'scaled' &&
      'SQLite runs one write transaction at a time: neither request can be held inside its transaction while the other runs',
  }, () => {
    /** The statements of the deployment's database now waiting for a lock. */
    function waitingOnLocks(): string[] {
      return dbQuery<{ query: string }>(
        w,
        "select query from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
      ).map((r) => r.query);
    }

    /** Runs `during` while a transaction of the test's own holds the rows `lock` selects. */
    async function holding(lock: RawBuilder<unknown>, during: () => Promise<void>): Promise<void> {
      const conn = connect(w.databaseUrl);
      try {
        await conn.db.transaction().execute(async (trx) => {
          await lock.execute(trx);
          await during();
        });
      } finally {
        await conn.db.destroy();
      }
    }

    /** A request's promise and whether it has answered yet. */
    function started(pending: Promise<JsonResponse>) {
      const call = { done: false, answer: pending };
      call.answer = pending.finally(() => {
        call.done = true;
      });
      return call;
    }

    test('the write took the asset first: the delete waits for it, then takes the new version with it', async () => {
      const bytes = `held write ${randomBytes(8).toString('hex')}`;
      assert.equal((await putFile('held', 'first.txt', 'version 1')).status, 201);
      const held = await uploadRaw(w, w.key, 'held-first.txt', bytes, { contentType: 'text/plain' });
      let put: ReturnType<typeof started> | undefined;
      let deleted: ReturnType<typeof started> | undefined;
      // The file's head row, which the write locks right after it has chosen the asset: the
      // write is held there, inside its transaction, while the delete runs.
      await holding(
        sql`select latest_version from files where account_id = 'default' and namespace = 'held' and name = 'first.txt' for update`,
        async () => {
          put = started(putFile('held', 'first.txt', bytes, w.key, 'text/plain', other.url));
          await eventually(
            () => waitingOnLocks().some((q) => q.startsWith('insert into "files"')),
            'the write waits for the file row',
          );
          deleted = started(api(w.url, w.key, 'DELETE', `/v1/assets/${held.body.asset.id}`));
          await eventually(
            () => deleted!.done || waitingOnLocks().length >= 2,
            'the delete answered or waits too',
          );
        },
      );
      const [putAnswer, deleteAnswer] = await Promise.all([put!.answer, deleted!.answer]);
      assert.equal(putAnswer.status, 201, JSON.stringify(putAnswer.body));
      assert.equal(deleteAnswer.status, 204, JSON.stringify(deleteAnswer.body));
      assert.equal(putAnswer.body.asset.id, held.body.asset.id, 'the write found the asset');
      assert.equal(putAnswer.body.version, 2);
      assert.deepEqual(await assertVersionsReadable('held', 'first.txt', bytes), [1]);
      assert.equal((await getFile('held', 'first.txt', '?version=2')).status, 404);
    });

    test('the delete took the asset first: the write stores the content anew', async () => {
      const bytes = `held delete ${randomBytes(8).toString('hex')}`;
      const source = await putFile('held', 'source.txt', bytes);
      assert.equal(source.status, 201, JSON.stringify(source.body));
      const assetId = source.body.asset.id as string;
      let put: ReturnType<typeof started> | undefined;
      let deleted: ReturnType<typeof started> | undefined;
      // The asset's version row, which the delete removes before the asset: the delete is held
      // there, inside its transaction, while the write runs.
      await holding(
        sql`select version from file_versions where asset_id = ${assetId} for update`,
        async () => {
          deleted = started(api(w.url, w.key, 'DELETE', `/v1/assets/${assetId}`));
          await eventually(
            () => waitingOnLocks().some((q) => q.startsWith('delete from "file_versions"')),
            'the delete waits for the version row',
          );
          put = started(putFile('held', 'second.txt', bytes, w.key, 'text/plain', other.url));
          await eventually(
            () => put!.done || waitingOnLocks().length >= 2,
            'the write answered or waits too',
          );
        },
      );
      const [putAnswer, deleteAnswer] = await Promise.all([put!.answer, deleted!.answer]);
      assert.equal(deleteAnswer.status, 204, JSON.stringify(deleteAnswer.body));
      assert.equal(putAnswer.status, 201, JSON.stringify(putAnswer.body));
      assert.deepEqual(await assertVersionsReadable('held', 'second.txt', bytes), [1]);
      assert.notEqual(putAnswer.body.asset.id, assetId, 'a new asset, not the deleted one');
      assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${assetId}`)).status, 404);
      assert.deepEqual(await assertVersionsReadable('held', 'source.txt', bytes), []);
    });
  });
});

describe('integrity: the declarations POST /v1/assets takes', () => {
  interface Declaration {
    headers?: Record<string, string>;
    query?: Record<string, string>;
  }

  function putDeclared(name: string, bytes: Buffer, { headers = {}, query = {} }: Declaration) {
    const search = new URLSearchParams(query).toString();
    return readJson(
      fetch(`${w.url}/v1/files/checked/${encodeURIComponent(name)}${search ? `?${search}` : ''}`, {
        method: 'PUT',
        headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream', ...headers },
        body: new Uint8Array(bytes),
      }),
    );
  }

  const wrong = Buffer.from('not the bytes that were sent');
  const declarations: Array<[string, (bytes: Buffer) => Declaration]> = [
    ['Content-MD5', (b) => ({ headers: { 'content-md5': b64(md5Hex(b)) } })],
    ['Content-Digest', (b) => ({ headers: { 'content-digest': `sha-256=:${b64(sha256Hex(b))}:` } })],
    ['Repr-Digest', (b) => ({ headers: { 'repr-digest': `sha-256=:${b64(sha256Hex(b))}:` } })],
    ['?sha256=', (b) => ({ query: { sha256: sha256Hex(b) } })],
    ['?md5=', (b) => ({ query: { md5: md5Hex(b) } })],
  ];

  for (const [label, declare] of declarations) {
    test(`a matching ${label} is accepted`, async () => {
      const bytes = randomBytes(3000);
      const res = await putDeclared(`good-${label}.bin`, bytes, declare(bytes));
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal(res.body.version, 1);
      assert.equal(res.body.asset.sha256, sha256Hex(bytes));
    });

    test(`a mismatching ${label} is CHECKSUM_MISMATCH: no version, no asset, no object`, async () => {
      const bytes = randomBytes(3000);
      const name = `bad-${label}.bin`;
      const before = { versions: countFileVersions(), assets: countAssets(w), objects: await objectFiles(w) };
      const res = await putDeclared(name, bytes, declare(wrong));
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'CHECKSUM_MISMATCH');
      assert.equal(countFileVersions(), before.versions);
      assert.equal(countAssets(w), before.assets);
      assert.deepEqual(await objectFiles(w), before.objects);
      assert.equal((await getFile('checked', name)).status, 404);
    });
  }

  test('declarations that disagree are INVALID_DIGEST; a malformed one too', async () => {
    const bytes = randomBytes(100);
    const before = countFileVersions();
    const disagree = await putDeclared('disagree.bin', bytes, {
      headers: { 'repr-digest': `sha-256=:${b64(sha256Hex(bytes))}:` },
      query: { sha256: sha256Hex(wrong) },
    });
    assert.equal(disagree.status, 400, JSON.stringify(disagree.body));
    assert.equal(disagree.body.error.code, 'INVALID_DIGEST');
    const malformed = await putDeclared('malformed.bin', bytes, { query: { md5: 'zzz' } });
    assert.equal(malformed.status, 400, JSON.stringify(malformed.body));
    assert.equal(malformed.body.error.code, 'INVALID_DIGEST');
    assert.equal(countFileVersions(), before);
  });
});

describe('hostile namespaces and names', () => {
  const HOSTILE_PATHS: Array<[string, string]> = [
    ['namespace ..', '/v1/files/../evil.txt'],
    ['namespace %2E%2E', '/v1/files/%2E%2E/evil.txt'],
    ['name ..', '/v1/files/docs/..'],
    ['name %2e%2e', '/v1/files/docs/%2e%2e'],
    ['namespace with ..', '/v1/files/a..b/evil.txt'],
    ['namespace starting with .', '/v1/files/.hidden/evil.txt'],
    ['NUL in namespace', '/v1/files/do%00cs/evil.txt'],
    ['NUL in name', '/v1/files/docs/evil%00.txt'],
    ['CR/LF in namespace', '/v1/files/do%0D%0Acs/evil.txt'],
    ['CR/LF in name', '/v1/files/docs/evil%0D%0AX-Injected:%201.txt'],
    ['LF in name', '/v1/files/docs/evil%0A.txt'],
    ['encoded slash in name', '/v1/files/docs/..%2F..%2Fetc%2Fpasswd'],
    ['encoded slash in namespace', '/v1/files/a%2Fb/evil.txt'],
    ['backslash traversal in name', '/v1/files/docs/..%5C..%5Cboot.ini'],
    ['namespace of spaces', '/v1/files/%20%20/evil.txt'],
  ];

  for (const [label, path] of HOSTILE_PATHS) {
    test(`${label} is 400 INVALID_NAME and stores nothing`, async () => {
      const before = countFileVersions();
      const res = await rawPut(path, 'should not be stored');
      assert.equal(res.status, 400, `${path}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body?.error?.code, 'INVALID_NAME', `${path}: ${JSON.stringify(res.body)}`);
      assert.equal(countFileVersions(), before);
      const read = await api(w.url, w.key, 'GET', path);
      assert.ok(read.status === 400 || read.status === 404, `GET ${path}: ${read.status}`);
      assert.notEqual(read.status, 200);
    });
  }

  test('a namespace longer than 64 characters is refused', async () => {
    const res = await putFile('n'.repeat(65), 'x.txt', 'x');
    assert.equal(res.status, 400, JSON.stringify(res.body));
  });
});

describe('tenancy', () => {
  test('another account cannot see, list or read a file, and its own file of that name is separate', async () => {
    const mine = await putFile('private-ns', 'secret.txt', 'the default account’s secret');
    assert.equal(mine.status, 201);
    const other = await w.newAccount();

    for (const query of ['', '?version=1']) {
      const res = await getFile('private-ns', 'secret.txt', query, other.key);
      assert.equal(res.status, 404, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'NOT_FOUND');
    }
    const versions = await getFile('private-ns', 'secret.txt', '/versions', other.key);
    assert.equal(versions.status, 404);
    const bytes = await fetch(mine.body.asset.content_url, { headers: { 'x-api-key': other.key } });
    assert.equal(bytes.status, 404);
    await bytes.arrayBuffer();

    // The same name in the other account starts at version 1 and leaves mine alone.
    const theirs = await putFile('private-ns', 'secret.txt', 'theirs', other.key);
    assert.equal(theirs.status, 201);
    assert.equal(theirs.body.version, 1);
    const still = await getFile('private-ns', 'secret.txt');
    assert.equal(still.body.version, 1);
    assert.equal(still.body.asset.id, mine.body.asset.id);
  });

  test('without a key, files are 401', async () => {
    const res = await getFile('docs', 'readme.txt', '', '');
    assert.equal(res.status, 401);
    const put = await readJson(
      fetch(`${w.url}/v1/files/docs/readme.txt`, {
        method: 'PUT',
        body: 'x',
        headers: { 'content-type': 'text/plain' },
      }),
    );
    assert.equal(put.status, 401);
  });
});
