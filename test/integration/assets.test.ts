import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { deriveKey } from '../../src/core/wharf.js';
import {
  type AssetJson,
  createAsset,
  dbQuery,
  metaFiles,
  objectFiles,
  presignedUpload,
  serverSecret,
  uploadRaw,
} from '../helpers/assets.js';
import { onS3, removeStoredObject } from '../helpers/deployment.js';
import { api, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

function get(path: string, headers: Record<string, string> = {}, key: string | undefined = w.key) {
  return fetch(w.url + path, { headers: key ? { 'x-api-key': key, ...headers } : headers });
}

async function body(res: Response): Promise<Buffer> {
  return Buffer.from(await res.arrayBuffer());
}

/** The filename* parameter of a Content-Disposition header, decoded (RFC 8187). */
function extendedFilename(header: string | null): string | undefined {
  const match = /filename\*=UTF-8''([^;]+)/i.exec(header ?? '');
  return match ? decodeURIComponent(match[1]!) : undefined;
}

describe('GET /v1/assets: listing', () => {
  let key: string;
  const created: AssetJson[] = [];
  before(async () => {
    // A fresh account, so the listing holds exactly what this block created.
    ({ key } = await newAccount());
    const files: Array<[string, string]> = [
      ['alpha.png', 'image/png'],
      ['Alpha-upper.txt', 'text/plain'],
      ['beta.jpg', 'image/jpeg'],
      ['résumé 📄.pdf', 'application/pdf'],
      ['résumé 📄 v2.pdf', 'application/pdf'],
      ['100%_done.txt', 'text/plain'],
      ['100_x.txt', 'text/plain'],
      ['imagery.svg', 'image/svg+xml'],
    ];
    // Created in the same instant as far as the clock can tell: order must still hold.
    for (const [name, type] of files) created.push(await createAsset(w, key, name, randomBytes(16), type));
  });

  const list = async (query = '') => {
    const res = await api(w.url, key, 'GET', `/v1/assets${query}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body as { data: AssetJson[]; next_cursor: string | null };
  };

  test('lists the account’s assets newest first', async () => {
    const page = await list();
    assert.deepEqual(
      page.data.map((a) => a.name),
      created.map((a) => a.name).reverse(),
    );
    assert.equal(page.next_cursor, null);
    assert.deepEqual(page.data.at(-1), created[0]);
  });

  test('pages with limit and next_cursor visit every asset exactly once, in order', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: { data: AssetJson[]; next_cursor: string | null } = await list(
        `?limit=3${cursor ? `&cursor=${cursor}` : ''}`,
      );
      assert.ok(page.data.length <= 3);
      seen.push(...page.data.map((a) => a.id));
      cursor = page.next_cursor;
      pages += 1;
    } while (cursor && pages < 10);
    assert.equal(pages, 3);
    assert.deepEqual(seen, created.map((a) => a.id).reverse());
  });

  test('a page exactly as long as what is left ends with next_cursor null', async () => {
    const page = await list(`?limit=${created.length}`);
    assert.equal(page.data.length, created.length);
    assert.equal(page.next_cursor, null);
    const shorter = await list(`?limit=${created.length - 1}`);
    assert.equal(shorter.next_cursor, shorter.data.at(-1)!.id);
  });

  test('a page started from a cursor sees assets created before it, not after', async () => {
    const first = await list('?limit=2');
    const later = await createAsset(w, key, 'later.bin', randomBytes(8));
    try {
      const next = await list(`?limit=100&cursor=${first.next_cursor}`);
      assert.ok(
        !next.data.some((a) => a.id === later.id),
        'an asset created after the cursor is not on later pages',
      );
      assert.deepEqual(
        next.data.map((a) => a.id),
        created
          .map((a) => a.id)
          .reverse()
          .slice(2),
      );
    } finally {
      await api(w.url, key, 'DELETE', `/v1/assets/${later.id}`);
    }
  });

  test('prefix matches the start of the name, case-sensitively, with no wildcards', async () => {
    const names = async (prefix: string) =>
      (await list(`?prefix=${encodeURIComponent(prefix)}`)).data.map((a) => a.name).sort();
    assert.deepEqual(await names('alpha'), ['alpha.png']);
    assert.deepEqual(await names('Alpha'), ['Alpha-upper.txt']);
    assert.deepEqual(await names('100%'), ['100%_done.txt']);
    assert.deepEqual(await names('100_'), ['100_x.txt']);
    assert.deepEqual(await names('%'), []);
    assert.deepEqual(await names('_'), []);
    assert.deepEqual(await names('zzz'), []);
  });

  test('prefix works with accents and emoji', async () => {
    const names = async (prefix: string) =>
      (await list(`?prefix=${encodeURIComponent(prefix)}`)).data.map((a) => a.name).sort();
    assert.deepEqual(await names('résumé'), ['résumé 📄 v2.pdf', 'résumé 📄.pdf']);
    assert.deepEqual(await names('résumé 📄'), ['résumé 📄 v2.pdf', 'résumé 📄.pdf']);
    assert.deepEqual(await names('résumé 📄.'), ['résumé 📄.pdf']);
    assert.deepEqual(await names('résumé 📄 v'), ['résumé 📄 v2.pdf']);
  });

  test('prefix is matched in the same Unicode normal form the names are stored in', async () => {
    const decomposed = 're\u0301sume\u0301'; // How macOS spells "résumé".
    const found = (await list(`?prefix=${encodeURIComponent(decomposed)}`)).data.map((a) => a.name);
    assert.equal(found.length, 2);
  });

  test('content_type filters on an exact type or a whole family with /*', async () => {
    const names = async (type: string) =>
      (await list(`?content_type=${encodeURIComponent(type)}`)).data.map((a) => a.name).sort();
    assert.deepEqual(await names('image/png'), ['alpha.png']);
    assert.deepEqual(await names('IMAGE/PNG'), ['alpha.png']);
    assert.deepEqual(await names('image/*'), ['alpha.png', 'beta.jpg', 'imagery.svg']);
    assert.deepEqual(await names('text/*'), ['100%_done.txt', '100_x.txt', 'Alpha-upper.txt']);
    assert.deepEqual(await names('video/*'), []);
    assert.deepEqual(await names('image/svg+xml'), ['imagery.svg']);
  });

  test('filters combine with each other and with paging', async () => {
    const page = await list(`?content_type=${encodeURIComponent('application/pdf')}&prefix=r&limit=1`);
    assert.equal(page.data.length, 1);
    assert.equal(page.data[0]!.name, 'résumé 📄 v2.pdf');
    const rest = await list(
      `?content_type=${encodeURIComponent('application/pdf')}&prefix=r&limit=1&cursor=${page.next_cursor}`,
    );
    assert.deepEqual(
      rest.data.map((a) => a.name),
      ['résumé 📄.pdf'],
    );
    assert.equal(rest.next_cursor, null);
  });

  test('invalid list parameters are 400 VALIDATION_FAILED or INVALID_CONTENT_TYPE', async () => {
    for (const query of ['?limit=0', '?limit=1001', '?limit=abc', '?limit=1.5', '?unknown=1', '?limit=-1']) {
      const res = await api(w.url, key, 'GET', `/v1/assets${query}`);
      assert.equal(res.status, 400, query);
      assert.equal(res.body.error.code, 'VALIDATION_FAILED', query);
    }
    // A cursor is the id of the last item of a page: anything else is refused, not read as
    // "from the start" (a client with a damaged cursor would loop on page one) or "nothing left".
    const cursors = ['abc', '0', 'zzzz', `${'0'.repeat(8)}-0000-0000-0000-00000000000`, "' or 1=1 --"];
    for (const route of ['/v1/assets', '/v1/uploads', '/v1/upload-tokens']) {
      for (const cursor of cursors) {
        const res = await api(w.url, key, 'GET', `${route}?cursor=${encodeURIComponent(cursor)}`);
        assert.equal(res.status, 400, `${route} ${cursor}`);
        assert.equal(res.body.error.code, 'VALIDATION_FAILED', `${route} ${cursor}`);
      }
    }
    for (const type of ['image', 'image/', '/*', 'a b/c', 'text/plain\r\nx: y']) {
      const res = await api(w.url, key, 'GET', `/v1/assets?content_type=${encodeURIComponent(type)}`);
      assert.equal(res.status, 400, type);
      assert.equal(res.body.error.code, 'INVALID_CONTENT_TYPE', type);
    }
  });

  test('an integer parameter is plain decimal digits, not whatever Number() reads', async () => {
    // The query string's coercion read `0x10` as 16, `1e1` as 10 and ` 5` as 5; each is a
    // client bug (or a probe) that deserves the same refusal as `abc`.
    for (const limit of ['0x10', '+5', '1e1', '5.0', ' 5', '5 ', '', '0b11', '0o7', '1_0', 'Infinity']) {
      const res = await api(w.url, key, 'GET', `/v1/assets?limit=${encodeURIComponent(limit)}`);
      assert.equal(res.status, 400, `limit=${JSON.stringify(limit)}`);
      assert.equal(res.body.error.code, 'VALIDATION_FAILED', `limit=${JSON.stringify(limit)}`);
      assert.equal(
        res.body.error.message,
        'querystring/limit must be integer',
        `limit=${JSON.stringify(limit)}`,
      );
    }
    // A bound is still reported as a bound, whatever the digits' sign.
    const negative = await api(w.url, key, 'GET', '/v1/assets?limit=-1');
    assert.equal(negative.body.error.message, 'querystring/limit must be >= 1');
    assert.equal((await list('?limit=5')).data.length, 5);
    // Leading zeros are still decimal: 007 is 7.
    assert.equal((await list('?limit=007')).data.length, 7);
  });

  test('limit=1000 is allowed', async () => {
    assert.equal((await list('?limit=1000')).data.length, created.length);
  });
});

describe('GET /v1/assets/{id}', () => {
  test('returns the asset; unknown ids are 404 NOT_FOUND', async () => {
    const asset = await createAsset(w, w.key, 'one.txt', 'one', 'text/plain');
    const res = await api(w.url, w.key, 'GET', `/v1/assets/${asset.id}`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, asset);
    // A UUID is case-insensitive (RFC 9562): in upper case it is the same asset, its id lower case.
    assert.deepEqual((await api(w.url, w.key, 'GET', `/v1/assets/${asset.id.toUpperCase()}`)).body, asset);
    for (const id of ['019b7c2a-1c2d-7e3f-8a4b-5c6d7e8f9a0b', 'nope']) {
      const missing = await api(w.url, w.key, 'GET', `/v1/assets/${id}`);
      assert.equal(missing.status, 404, id);
      assert.equal(missing.body.error.code, 'NOT_FOUND');
    }
  });
});

describe('DELETE /v1/assets/{id}', () => {
  test('204, then the asset is gone everywhere and its bytes are freed', async () => {
    const bytes = randomBytes(4000);
    const asset = await createAsset(w, w.key, 'doomed.bin', bytes);
    const signed = await api(w.url, w.key, 'POST', `/v1/assets/${asset.id}/signed-url`, {});
    const key = dbQuery<{ storage_key: string }>(
      w,
      'select storage_key from assets where id = ?',
      asset.id,
    )[0]!.storage_key;
    assert.ok((await objectFiles(w)).includes(key));
    // The local store keeps a metadata file beside each object; S3 keeps it on the object.
    if (!onS3(w)) assert.ok((await metaFiles(w)).includes(`${key}.json`));

    const del = await fetch(`${w.url}/v1/assets/${asset.id}`, {
      method: 'DELETE',
      headers: { 'x-api-key': w.key },
    });
    assert.equal(del.status, 204);
    assert.equal((await del.text()).length, 0);

    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${asset.id}`)).status, 404);
    assert.equal((await get(`/v1/assets/${asset.id}/content`)).status, 404);
    assert.equal((await fetch(signed.body.url)).status, 404, 'a signed URL stops working too');
    const listed = await api(w.url, w.key, 'GET', '/v1/assets?limit=1000');
    assert.ok(!listed.body.data.some((a: AssetJson) => a.id === asset.id));
    assert.ok(!(await objectFiles(w)).includes(key), 'object file removed');
    if (!onS3(w)) assert.ok(!(await metaFiles(w)).includes(`${key}.json`), 'metadata file removed');
    assert.deepEqual(dbQuery(w, 'select id from assets where id = ?', asset.id), []);

    const again = await api(w.url, w.key, 'DELETE', `/v1/assets/${asset.id}`);
    assert.equal(again.status, 404);
    assert.equal(again.body.error.code, 'NOT_FOUND');
  });

  test('the same bytes can be uploaded again after deletion, as a new asset', async () => {
    const bytes = randomBytes(100);
    const first = await createAsset(w, w.key, 'again.bin', bytes);
    await api(w.url, w.key, 'DELETE', `/v1/assets/${first.id}`);
    const second = await uploadRaw(w, w.key, 'again.bin', bytes);
    assert.equal(second.status, 201);
    assert.notEqual(second.body.asset.id, first.id);
    assert.ok((await body(await get(`/v1/assets/${second.body.asset.id}/content`))).equals(bytes));
  });

  test('deleting one account’s copy leaves another account’s identical bytes readable', async () => {
    const other = await newAccount();
    const bytes = randomBytes(64);
    const mine = await createAsset(w, w.key, 'shared.bin', bytes);
    const theirs = await createAsset(w, other.key, 'shared.bin', bytes);
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${mine.id}`)).status, 204);
    const res = await get(`/v1/assets/${theirs.id}/content`, {}, other.key);
    assert.equal(res.status, 200);
    assert.ok((await body(res)).equals(bytes));
  });

  test('a presigned upload’s bytes are freed too', async () => {
    const bytes = randomBytes(300);
    const done = await presignedUpload(w, w.key, 'via-url.bin', bytes);
    const objects = await objectFiles(w);
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${done.body.asset.id}`)).status, 204);
    const after = await objectFiles(w);
    assert.equal(after.length, objects.length - 1);
    assert.ok(!after.some((f) => f.endsWith('.bin') && objects.indexOf(f) === -1));
  });
});

describe('an asset whose stored bytes vanished', () => {
  test('answers 500 BYTES_MISSING, whole or a range, and the server goes on', async () => {
    const bytes = randomBytes(70_000);
    const asset = await createAsset(w, w.key, 'vanishing.bin', bytes);
    const key = dbQuery<{ storage_key: string }>(
      w,
      'select storage_key from assets where id = ?',
      asset.id,
    )[0]!.storage_key;
    await removeStoredObject(w, key);
    for (const headers of [{}, { range: 'bytes=10-19' }] as Record<string, string>[]) {
      const res = await get(`/v1/assets/${asset.id}/content`, headers);
      assert.equal(res.status, 500);
      const error = ((await res.json()) as { error: { code: string; details: { asset_id: string } } }).error;
      assert.equal(error.code, 'BYTES_MISSING');
      assert.equal(error.details.asset_id, asset.id);
    }
    // The record stays (an operator restores the bytes or deletes it); others are served.
    assert.equal((await get(`/v1/assets/${asset.id}`)).status, 200);
    const other = randomBytes(1000);
    const kept = await createAsset(w, w.key, 'kept.bin', other);
    assert.ok((await body(await get(`/v1/assets/${kept.id}/content`))).equals(other));
  });
});

describe('GET /v1/assets/{id}/content', () => {
  let text: AssetJson;
  const textBytes = Buffer.from('0123456789abcdefghij'); // 20 bytes
  let binary: AssetJson;
  const binaryBytes = randomBytes(300_000);
  before(async () => {
    text = await createAsset(w, w.key, 'digits.txt', textBytes, 'text/plain');
    binary = await createAsset(w, w.key, 'blob.bin', binaryBytes, 'application/octet-stream');
  });

  test('streams the exact bytes with type, length, ETag and hardening headers', async () => {
    const res = await get(`/v1/assets/${binary.id}/content`);
    assert.equal(res.status, 200);
    assert.ok((await body(res)).equals(binaryBytes));
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    assert.equal(res.headers.get('content-length'), String(binaryBytes.length));
    assert.equal(res.headers.get('etag'), `"${sha256Hex(binaryBytes)}"`);
    assert.equal(res.headers.get('accept-ranges'), 'bytes');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.match(res.headers.get('content-security-policy') ?? '', /(^|;\s*)sandbox(;|$)/);
    assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    // What a key unlocked stays with Wharf's own site (a page reads it with fetch, under CORS).
    assert.equal(res.headers.get('cross-origin-resource-policy'), 'same-site');
    assert.equal(
      res.headers.get('repr-digest'),
      `sha-256=:${Buffer.from(sha256Hex(binaryBytes), 'hex').toString('base64')}:`,
    );
    assert.match(res.headers.get('cache-control') ?? '', /private/);
  });

  test('Bearer authentication works for downloads too', async () => {
    const res = await fetch(`${w.url}/v1/assets/${text.id}/content`, {
      headers: { authorization: `Bearer ${w.key}` },
    });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), textBytes.toString());
  });

  const ranges: Array<[string, number, number]> = [
    ['bytes=0-4', 0, 4],
    ['bytes=5-9', 5, 9],
    ['bytes=15-', 15, 19],
    ['bytes=-3', 17, 19],
    ['bytes=19-19', 19, 19],
    ['bytes=10-1000', 10, 19],
    ['bytes=0-1,2-3', 0, 3], // Adjacent ranges are combined into one.
  ];
  for (const [header, start, end] of ranges) {
    test(`Range: ${header} → 206 bytes ${start}-${end}`, async () => {
      const res = await get(`/v1/assets/${text.id}/content`, { range: header });
      assert.equal(res.status, 206);
      assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/20`);
      assert.equal(res.headers.get('content-length'), String(end - start + 1));
      assert.equal(await res.text(), textBytes.subarray(start, end + 1).toString());
      assert.equal(res.headers.get('etag'), `"${text.sha256}"`);
    });
  }

  test('a range deep inside a large binary file is exact', async () => {
    const res = await get(`/v1/assets/${binary.id}/content`, { range: 'bytes=123456-223455' });
    assert.equal(res.status, 206);
    assert.ok((await body(res)).equals(binaryBytes.subarray(123456, 223456)));
  });

  for (const header of ['bytes=20-', 'bytes=100-200', 'bytes=-0']) {
    test(`Range: ${header} is unsatisfiable → 416 with Content-Range */20`, async () => {
      const res = await get(`/v1/assets/${text.id}/content`, { range: header });
      assert.equal(res.status, 416);
      assert.equal(res.headers.get('content-range'), 'bytes */20');
      const json = (await res.json()) as { error: { code: string } };
      assert.equal(json.error.code, 'RANGE_NOT_SATISFIABLE');
    });
  }

  for (const header of ['bytes=abc', 'bytes=', 'pages=0-4', 'bytes=0-1,5-6', '0-4', 'bytes 0-4']) {
    test(`Range: ${JSON.stringify(header)} is ignored → the whole file with 200`, async () => {
      const res = await get(`/v1/assets/${text.id}/content`, { range: header });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-range'), null);
      assert.equal(await res.text(), textBytes.toString());
    });
  }

  test('If-Range with the current ETag honours the range; with another it sends the whole file', async () => {
    const same = await get(`/v1/assets/${text.id}/content`, {
      range: 'bytes=0-1',
      'if-range': `"${text.sha256}"`,
    });
    assert.equal(same.status, 206);
    assert.equal(await same.text(), '01');
    const stale = await get(`/v1/assets/${text.id}/content`, { range: 'bytes=0-1', 'if-range': '"stale"' });
    assert.equal(stale.status, 200);
    assert.equal(await stale.text(), textBytes.toString());
  });

  test('a range of an empty file is unsatisfiable; the whole empty file is 200', async () => {
    const empty = await createAsset(w, w.key, 'empty.txt', '', 'text/plain');
    const whole = await get(`/v1/assets/${empty.id}/content`);
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get('content-length'), '0');
    assert.equal(await whole.text(), '');
    const ranged = await get(`/v1/assets/${empty.id}/content`, { range: 'bytes=0-0' });
    assert.equal(ranged.status, 416);
    assert.equal(ranged.headers.get('content-range'), 'bytes */0');
  });

  test('If-None-Match with the ETag is 304 with no body', async () => {
    // Weak comparison (RFC 9110 §13.1.2): a W/ tag a cache or proxy weakened still matches.
    for (const inm of [
      `"${text.sha256}"`,
      `"other", "${text.sha256}"`,
      '*',
      `W/"${text.sha256}"`,
      `"x",W/"${text.sha256}"`,
    ]) {
      const res = await get(`/v1/assets/${text.id}/content`, { 'if-none-match': inm });
      assert.equal(res.status, 304, inm);
      assert.equal(await res.text(), '');
      assert.equal(res.headers.get('etag'), `"${text.sha256}"`);
    }
    const changed = await get(`/v1/assets/${text.id}/content`, { 'if-none-match': '"something-else"' });
    assert.equal(changed.status, 200);
    assert.equal(await changed.text(), textBytes.toString());
  });

  /** The asset's Last-Modified: its creation, in whole seconds, as an HTTP-date. */
  const lastModifiedOf = (asset: AssetJson) =>
    new Date(Math.floor(Date.parse(asset.created_at) / 1000) * 1000).toUTCString();
  /** An HTTP-date `seconds` from the asset's Last-Modified (never the wall clock's). */
  const shifted = (asset: AssetJson, seconds: number) =>
    new Date(Date.parse(lastModifiedOf(asset)) + seconds * 1000).toUTCString();

  test('Last-Modified is the asset’s creation, on 200, 206, 304 and HEAD answers', async () => {
    const expected = lastModifiedOf(text);
    const answers = [
      await get(`/v1/assets/${text.id}/content`),
      await get(`/v1/assets/${text.id}/content`, { range: 'bytes=0-1' }),
      await get(`/v1/assets/${text.id}/content`, { 'if-none-match': `"${text.sha256}"` }),
      await fetch(`${w.url}/v1/assets/${text.id}/content`, {
        method: 'HEAD',
        headers: { 'x-api-key': w.key },
      }),
    ];
    assert.deepEqual(
      answers.map((res) => res.status),
      [200, 206, 304, 200],
    );
    for (const res of answers) assert.equal(res.headers.get('last-modified'), expected, String(res.status));
  });

  test('If-Modified-Since: 304 at or after Last-Modified, 200 before; If-None-Match takes precedence', async () => {
    const path = `/v1/assets/${text.id}/content`;
    for (const since of [lastModifiedOf(text), shifted(text, 3600)]) {
      const res = await get(path, { 'if-modified-since': since });
      assert.equal(res.status, 304, since);
      assert.equal(await res.text(), '');
      assert.equal(res.headers.get('etag'), `"${text.sha256}"`);
    }
    // RFC 850 and asctime dates are HTTP-dates too (asctime is GMT, whatever the server's zone).
    const at = new Date(Date.parse(lastModifiedOf(text)));
    const asctime = `${at.toUTCString().slice(0, 3)} ${at.toUTCString().slice(8, 11)} ${String(at.getUTCDate()).padStart(2, ' ')} ${at.toISOString().slice(11, 19)} ${at.getUTCFullYear()}`;
    assert.equal((await get(path, { 'if-modified-since': asctime })).status, 304, asctime);
    const older = await get(path, { 'if-modified-since': shifted(text, -1) });
    assert.equal(older.status, 200);
    assert.equal(await older.text(), textBytes.toString());
    // Not an HTTP-date: ignored (RFC 9110 §13.1.3), so the whole file.
    assert.equal((await get(path, { 'if-modified-since': '1' })).status, 200);
    // If-None-Match that does not match decides alone: the file, whatever If-Modified-Since says.
    const precedence = await get(path, {
      'if-none-match': '"something-else"',
      'if-modified-since': shifted(text, 3600),
    });
    assert.equal(precedence.status, 200);
    assert.equal(await precedence.text(), textBytes.toString());
  });

  test('If-Match / If-Unmodified-Since that do not hold are 412 PRECONDITION_FAILED; that hold, the file', async () => {
    const path = `/v1/assets/${text.id}/content`;
    const failing: Array<Record<string, string>> = [
      { 'if-match': '"something-else"' },
      // If-Match compares strongly (RFC 9110 §13.1.1): a weak tag never matches.
      { 'if-match': `W/"${text.sha256}"` },
      { 'if-unmodified-since': shifted(text, -1) },
      // Before If-None-Match and Range: a failed precondition is 412 whatever else is asked.
      { 'if-match': '"x"', 'if-none-match': `"${text.sha256}"`, range: 'bytes=0-1' },
    ];
    for (const headers of failing) {
      const res = await get(path, headers);
      assert.equal(res.status, 412, JSON.stringify(headers));
      const json = (await res.json()) as { error: { code: string } };
      assert.equal(json.error.code, 'PRECONDITION_FAILED');
      const head = await fetch(w.url + path, { method: 'HEAD', headers: { 'x-api-key': w.key, ...headers } });
      assert.equal(head.status, 412, `HEAD ${JSON.stringify(headers)}`);
    }
    const holding: Array<Record<string, string>> = [
      { 'if-match': `"${text.sha256}"` },
      { 'if-match': `"x", "${text.sha256}"` },
      { 'if-match': '*' },
      { 'if-unmodified-since': lastModifiedOf(text) },
      { 'if-unmodified-since': shifted(text, 3600) },
      { 'if-unmodified-since': 'not a date' },
      // If-Match present: If-Unmodified-Since is not evaluated (§13.2.2).
      { 'if-match': `"${text.sha256}"`, 'if-unmodified-since': shifted(text, -1) },
    ];
    for (const headers of holding) {
      const res = await get(path, headers);
      assert.equal(res.status, 200, JSON.stringify(headers));
      assert.equal(await res.text(), textBytes.toString());
    }
    const ranged = await get(path, { 'if-match': `"${text.sha256}"`, range: 'bytes=0-1' });
    assert.equal(ranged.status, 206);
    assert.equal(await ranged.text(), '01');
  });

  test('If-Range with the Last-Modified date honours the range; another date or a weak tag sends the whole file', async () => {
    const path = `/v1/assets/${text.id}/content`;
    const same = await get(path, { range: 'bytes=0-1', 'if-range': lastModifiedOf(text) });
    assert.equal(same.status, 206);
    assert.equal(await same.text(), '01');
    for (const ifRange of [shifted(text, 3600), shifted(text, -1), `W/"${text.sha256}"`, 'garbage']) {
      const whole = await get(path, { range: 'bytes=0-1', 'if-range': ifRange });
      assert.equal(whole.status, 200, ifRange);
      assert.equal(whole.headers.get('content-range'), null);
      assert.equal(await whole.text(), textBytes.toString());
    }
  });

  test('HEAD gives the headers without the body', async () => {
    const res = await fetch(`${w.url}/v1/assets/${text.id}/content`, {
      method: 'HEAD',
      headers: { 'x-api-key': w.key },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), '20');
    assert.equal(res.headers.get('etag'), `"${text.sha256}"`);
    assert.equal(await res.text(), '');
  });
});

describe('Content-Disposition: only types that cannot run script are inline', () => {
  const cases: Array<[string, string, 'inline' | 'attachment']> = [
    ['text/plain', 'notes.txt', 'inline'],
    ['image/png', 'pic.png', 'inline'],
    ['image/jpeg', 'pic.jpg', 'inline'],
    ['application/pdf', 'doc.pdf', 'inline'],
    ['video/mp4', 'clip.mp4', 'inline'],
    ['text/html', 'page.html', 'attachment'],
    ['text/html; charset=utf-8', 'page2.html', 'attachment'],
    ['image/svg+xml', 'logo.svg', 'attachment'],
    ['application/xhtml+xml', 'page.xhtml', 'attachment'],
    ['text/xml', 'feed.xml', 'attachment'],
    ['audio/mpeg', 'tune.mp3', 'inline'],
    // Any +xml subtype is XML to a browser, whatever the top-level type that lets video/* inline.
    ['video/x+xml', 'clip.xhtml', 'attachment'],
    ['audio/svg+xml', 'tune.svg', 'attachment'],
    ['video/x+xml; charset=utf-8', 'clip2.xhtml', 'attachment'],
    ['application/javascript', 'app.js', 'attachment'],
    ['text/javascript', 'app2.js', 'attachment'],
    ['application/octet-stream', 'blob', 'attachment'],
    ['application/x-shockwave-flash', 'old.swf', 'attachment'],
  ];
  for (const [type, name, expected] of cases) {
    test(`${type} → ${expected}`, async () => {
      const asset = await createAsset(w, w.key, name, `<script>alert(1)</script> ${type}`, type);
      const res = await get(`/v1/assets/${asset.id}/content`);
      assert.equal(res.status, 200);
      const disposition = res.headers.get('content-disposition') ?? '';
      assert.ok(disposition.startsWith(`${expected};`), disposition);
      assert.match(disposition, new RegExp(`filename="${name.replace('.', '\\.')}"`));
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.match(res.headers.get('content-security-policy') ?? '', /sandbox/);
    });
  }

  test('?download=true forces attachment even for an inline-safe type', async () => {
    const asset = await createAsset(w, w.key, 'forced.png', randomBytes(10), 'image/png');
    const res = await get(`/v1/assets/${asset.id}/content?download=true`);
    assert.ok(res.headers.get('content-disposition')?.startsWith('attachment;'));
  });

  test('a Unicode name round-trips through filename*, with an ASCII fallback', async () => {
    const name = 'résumé 📄.pdf';
    const asset = await createAsset(w, w.key, name, randomBytes(10), 'application/pdf');
    assert.equal(asset.name, name);
    const res = await get(`/v1/assets/${asset.id}/content`);
    const header = res.headers.get('content-disposition');
    assert.equal(extendedFilename(header), name);
    // The plain filename is an ASCII fallback (RFC 6266): accents dropped, the emoji replaced.
    assert.match(header ?? '', /filename="resume _\.pdf"/);
    // A name within Latin-1 gets filename* too: the header is ASCII, the same from a bucket.
    const latin = await createAsset(w, w.key, 'café.txt', randomBytes(10), 'text/plain');
    const plain = (await get(`/v1/assets/${latin.id}/content`)).headers.get('content-disposition');
    assert.equal(plain, `inline; filename="cafe.txt"; filename*=UTF-8''caf%C3%A9.txt`);
  });

  test('quotes and semicolons in a name cannot break out of the header', async () => {
    const name = 'a"; filename="evil.html; x=.txt';
    const asset = await createAsset(w, w.key, name, 'harmless', 'text/plain');
    const res = await get(`/v1/assets/${asset.id}/content`);
    const header = res.headers.get('content-disposition') ?? '';
    assert.equal(header, 'inline; filename="a\\"; filename=\\"evil.html; x=.txt"');
  });
});

describe('signed download URLs', () => {
  let asset: AssetJson;
  const bytes = Buffer.from('signed content, 30 bytes long.');
  before(async () => {
    asset = await createAsset(w, w.key, 'signed.txt', bytes, 'text/plain');
  });

  const sign = (body?: unknown, id = asset.id, key = w.key) =>
    api(w.url, key, 'POST', `/v1/assets/${id}/signed-url`, body);

  test('the URL downloads without a key until it expires (default one hour)', async () => {
    const now = w.clock.now();
    const res = await sign();
    assert.equal(res.status, 200);
    assert.equal(res.body.expires_at, new Date((Math.floor(now / 1000) + 3600) * 1000).toISOString());
    // A JSON null is no body too (as the document says), and so are the defaults.
    for (const body of [null, {}]) {
      const same = await sign(body);
      assert.equal(same.status, 200, JSON.stringify(same.body));
      assert.equal(same.body.expires_at, res.body.expires_at, JSON.stringify(body));
      assert.match(same.body.url, /[?&]disposition=inline(&|$)/);
    }
    assert.ok(res.body.url.startsWith(`${w.url}/v1/assets/${asset.id}/content?`));
    const download = await fetch(res.body.url);
    assert.equal(download.status, 200);
    assert.ok((await body(download)).equals(bytes));
    assert.equal(download.headers.get('etag'), `"${asset.sha256}"`);
    assert.equal(download.headers.get('x-content-type-options'), 'nosniff');
    // Handed out to be used without a key, by a page of any site: an <img> or <video> of
    // another site loads it (browsers block a same-site resource there); still sandboxed.
    assert.equal(download.headers.get('cross-origin-resource-policy'), 'cross-origin');
    assert.match(download.headers.get('content-security-policy') ?? '', /(^|;\s*)sandbox(;|$)/);
  });

  test('expires_in is honoured to the second, then URL_EXPIRED', async () => {
    const res = await sign({ expires_in: 60 });
    const expiresAt = Date.parse(res.body.expires_at);
    w.clock.set(expiresAt);
    assert.equal((await fetch(res.body.url)).status, 200, 'valid through its last second');
    w.clock.set(expiresAt + 1000);
    const expired = await fetch(res.body.url);
    assert.equal(expired.status, 403);
    assert.equal(((await expired.json()) as { error: { code: string } }).error.code, 'URL_EXPIRED');
  });

  test('expires_at: the same moment gives the same URL on every signing; it works through that second, then URL_EXPIRED', async () => {
    const at = (Math.floor(w.clock.now() / 60_000) + 2) * 60_000;
    const first = await sign({ expires_at: new Date(at).toISOString() });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    w.clock.advance(1500);
    const second = await sign({ expires_at: new Date(at + 250).toISOString() });
    assert.equal(second.body.url, first.body.url, 'a second later, the same URL');
    assert.equal(first.body.expires_at, new Date(at).toISOString());
    w.clock.set(at + 999);
    assert.equal((await fetch(first.body.url)).status, 200, 'valid through its last second');
    w.clock.set(at + 1000);
    const expired = await fetch(first.body.url);
    assert.equal(expired.status, 403);
    assert.equal(((await expired.json()) as { error: { code: string } }).error.code, 'URL_EXPIRED');
  });

  test('every tampered part of the URL is 403 INVALID_SIGNATURE', async () => {
    const { url } = (await sign({ expires_in: 600 })).body as { url: string };
    const other = await createAsset(w, w.key, 'other.txt', randomBytes(5), 'text/plain');
    const otherKey = await w.newKey('admin');
    assert.ok(new URL(url).searchParams.get('signer'), 'the URL names its signer');
    const edits: Array<[string, (u: URL) => void]> = [
      [
        'signature',
        (u) => {
          // Always a different last character (a fixed 'A' would be no change 1 time in 64).
          const sig = u.searchParams.get('signature')!;
          u.searchParams.set('signature', `${sig.slice(0, -1)}${sig.endsWith('A') ? 'B' : 'A'}`);
        },
      ],
      ['expires', (u) => u.searchParams.set('expires', String(Number(u.searchParams.get('expires')) + 1))],
      ['disposition', (u) => u.searchParams.set('disposition', 'attachment')],
      ['asset id', (u) => (u.pathname = u.pathname.replace(asset.id, other.id))],
      ['signature removed', (u) => u.searchParams.delete('signature')],
      ['disposition removed', (u) => u.searchParams.delete('disposition')],
      ['expires removed', (u) => u.searchParams.delete('expires')],
      // A spelling of the signed number that queries accept (leading zeros are decimal): still
      // not the URL that was handed out.
      [
        'expires with a leading zero',
        (u) => u.searchParams.set('expires', `0${u.searchParams.get('expires')}`),
      ],
      // The signer is signed: another key, none, a token added, or text that is no signer.
      ['signer', (u) => u.searchParams.set('signer', otherKey.id)],
      ['signer removed', (u) => u.searchParams.delete('signer')],
      [
        'signer with a token',
        (u) => u.searchParams.set('signer', `${u.searchParams.get('signer')}.${other.id}`),
      ],
      ['signer with a newline', (u) => u.searchParams.set('signer', `${u.searchParams.get('signer')}\nx`)],
    ];
    for (const [label, edit] of edits) {
      const u = new URL(url);
      edit(u);
      const res = await fetch(u);
      assert.equal(res.status, 403, label);
      assert.equal(
        ((await res.json()) as { error: { code: string } }).error.code,
        'INVALID_SIGNATURE',
        label,
      );
    }
    // Spellings no query integer may take are malformed, whatever the signature: refused as
    // `expires=abc` is, before the signature is looked at.
    const expires = new URL(url).searchParams.get('expires');
    for (const spelling of [`${expires}.0`, `+${expires}`, ` ${expires}`]) {
      const u = new URL(url);
      u.searchParams.set('expires', spelling);
      const res = await fetch(u);
      assert.equal(res.status, 400, spelling);
      const refusal = (await res.json()) as { error: { code: string; message: string } };
      assert.deepEqual(
        [refusal.error.code, refusal.error.message],
        ['VALIDATION_FAILED', 'querystring/expires must be integer'],
        spelling,
      );
    }
  });

  test('a URL handed out before URLs named their signer (no signer parameter) still works', async () => {
    // Signed as every download URL was before: asset id, expiry and disposition, nothing else.
    const expires = Math.floor(w.clock.now() / 1000) + 600;
    const signature = createHmac('sha256', deriveKey(serverSecret(w), 'download'))
      .update(`download\n${asset.id}\n${expires}\ninline`)
      .digest('base64url');
    const query = new URLSearchParams({ expires: String(expires), disposition: 'inline', signature });
    const res = await fetch(`${w.url}/v1/assets/${asset.id}/content?${query}`);
    assert.equal(res.status, 200);
    assert.ok((await body(res)).equals(bytes));
    // A signer added to it is not what was signed.
    query.set('signer', (await w.newKey('admin')).id);
    const added = await fetch(`${w.url}/v1/assets/${asset.id}/content?${query}`);
    assert.equal(added.status, 403);
    assert.equal(((await added.json()) as { error: { code: string } }).error.code, 'INVALID_SIGNATURE');
  });

  test('a tampered URL is INVALID_SIGNATURE even after expiry (no validity oracle)', async () => {
    const { url } = (await sign({ expires_in: 1 })).body as { url: string };
    w.clock.advance(10_000);
    const u = new URL(url);
    u.searchParams.set('signature', 'A'.repeat(43));
    const res = await fetch(u);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'INVALID_SIGNATURE');
  });

  test('disposition attachment is honoured; inline never makes HTML inline', async () => {
    const attachment = await sign({ disposition: 'attachment' });
    const res = await fetch(attachment.body.url);
    assert.ok(res.headers.get('content-disposition')?.startsWith('attachment;'));

    const html = await createAsset(w, w.key, 'x.html', '<script>alert(1)</script>', 'text/html');
    const inline = await sign({ disposition: 'inline' }, html.id);
    const htmlRes = await fetch(inline.body.url);
    assert.equal(htmlRes.status, 200);
    assert.ok(htmlRes.headers.get('content-disposition')?.startsWith('attachment;'));
    assert.match(htmlRes.headers.get('content-security-policy') ?? '', /sandbox/);
  });

  test('signed URLs support Range and conditional requests', async () => {
    const { url } = (await sign()).body as { url: string };
    const ranged = await fetch(url, { headers: { range: 'bytes=0-5' } });
    assert.equal(ranged.status, 206);
    assert.equal(await ranged.text(), bytes.subarray(0, 6).toString());
    const cached = await fetch(url, { headers: { 'if-none-match': `"${asset.sha256}"` } });
    assert.equal(cached.status, 304);
    const lastModified = new Date(Math.floor(Date.parse(asset.created_at) / 1000) * 1000).toUTCString();
    assert.equal(cached.headers.get('last-modified'), lastModified);
    assert.equal((await fetch(url, { headers: { 'if-modified-since': lastModified } })).status, 304);
    const refused = await fetch(url, { headers: { 'if-match': '"another"' } });
    assert.equal(refused.status, 412);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'PRECONDITION_FAILED');
  });

  test('invalid bodies are 400 VALIDATION_FAILED', async () => {
    for (const bad of [
      { expires_in: 0 },
      { expires_in: 604801 },
      { expires_in: '60' },
      { expires_in: 1.5 },
      { disposition: 'evil' },
      { expires_in: 60, extra: true },
      { expires_at: 'tomorrow' },
      { expires_at: 1767225600 },
    ]) {
      const res = await sign(bad);
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.equal(res.body.error.code, 'VALIDATION_FAILED', JSON.stringify(bad));
    }
    // Said as for the object the client sent, not as for the null the body may also be.
    for (const [bad, message] of [
      [{ expires_in: 0 }, 'body/expires_in must be >= 1'],
      [{ disposition: 'evil' }, 'body/disposition must be one of "inline", "attachment"'],
      [{ expires_in: 60, extra: true }, 'body must NOT have additional properties'],
      [[], 'body must be object'],
    ] as const) {
      assert.equal((await sign(bad)).body.error.message, message, JSON.stringify(bad));
    }
    assert.equal((await sign({ expires_in: 604800 })).status, 200, 'seven days is the maximum');
    const second = Math.floor(w.clock.now() / 1000) * 1000;
    const moments: Array<[string, Record<string, unknown>, RegExp]> = [
      ['both', { expires_in: 60, expires_at: new Date(second + 60_000).toISOString() }, /not both/],
      ['past', { expires_at: new Date(second - 1000).toISOString() }, /expires_at must be in the future/],
      ['now', { expires_at: new Date(second).toISOString() }, /in the future/],
      [
        'beyond seven days',
        { expires_at: new Date(second + 604801_000).toISOString() },
        /at most 604800 seconds from now/,
      ],
    ];
    for (const [label, bad, message] of moments) {
      const res = await sign(bad);
      assert.equal(res.status, 400, label);
      assert.equal(res.body.error.code, 'VALIDATION_FAILED', label);
      assert.match(res.body.error.message, message, label);
    }
    const week = await sign({ expires_at: new Date(second + 604800_000).toISOString() });
    assert.equal(week.status, 200, 'seven days ahead is the maximum');
  });

  test('an unknown asset is 404', async () => {
    const res = await sign({}, '019b7c2a-1c2d-7e3f-8a4b-5c6d7e8f9a0b');
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, 'NOT_FOUND');
  });
});

async function newAccount() {
  return w.newAccount();
}

test('content_type matches the media type whatever its parameters, in the filter and in the stored type', async () => {
  const { key } = await newAccount();
  for (const [name, type] of [
    ['plain.csv', 'text/csv'],
    ['utf8.csv', 'text/csv; charset=UTF-8'],
    ['tight.csv', 'text/csv;header=present'],
    ['spaced.csv', 'Text/CSV \t; charset=utf-8'],
    ['schema.json', 'text/csv-schema'],
  ] as const) {
    await createAsset(w, key, name, `${name} body`, type);
  }
  const names = async (filter: string) => {
    const res = await api(w.url, key, 'GET', `/v1/assets?content_type=${encodeURIComponent(filter)}`);
    assert.equal(res.status, 200, `${filter}: ${JSON.stringify(res.body)}`);
    return res.body.data.map((a: AssetJson) => a.name).sort();
  };
  const csv = ['plain.csv', 'spaced.csv', 'tight.csv', 'utf8.csv'];
  for (const filter of [
    'text/csv',
    'TEXT/CSV',
    'text/csv;charset=utf-8',
    'text/csv; charset=UTF-8',
    'text/csv ;x=y',
  ]) {
    assert.deepEqual(await names(filter), csv, filter);
  }
  assert.deepEqual(await names('text/csv-schema'), ['schema.json'], 'a longer subtype is another type');
  assert.deepEqual(await names('text/cs'), []);
  assert.deepEqual(await names('text/*'), [...csv, 'schema.json'].sort());
  // A wildcard for the type would silently match nothing: refused.
  for (const filter of ['*/csv', '*/csv; charset=utf-8']) {
    const res = await api(w.url, key, 'GET', `/v1/assets?content_type=${encodeURIComponent(filter)}`);
    assert.equal(res.status, 400, filter);
    assert.equal(res.body.error.code, 'INVALID_CONTENT_TYPE', filter);
  }
});

test('content_type=*/* lists every type, like no filter at all', async () => {
  const own = await startWharf();
  try {
    for (const [name, type] of [
      ['a.png', 'image/png'],
      ['b.txt', 'text/plain'],
    ] as const) {
      const res = await fetch(`${own.url}/v1/assets?name=${name}`, {
        method: 'POST',
        headers: { 'x-api-key': own.key, 'content-type': type },
        body: `${name} body`,
      });
      assert.equal(res.status, 201);
    }
    const all = await api(own.url, own.key, 'GET', '/v1/assets?content_type=*/*');
    assert.equal(all.status, 200);
    assert.deepEqual(all.body.data.map((a: { name: string }) => a.name).sort(), ['a.png', 'b.txt']);
  } finally {
    await own.close();
  }
});
