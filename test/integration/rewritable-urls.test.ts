import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { dbQuery } from '../helpers/assets.js';
import { onS3, storedKeys, storesOnS3 } from '../helpers/deployment.js';
import { api, sha256Hex } from '../helpers/http.js';
import { pgQuerySync } from '../helpers/pg-sync.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// Seed 000's documented PUT sends only Content-Type, so its presigned URL cannot carry S3's
// write-once header: after completion the store would still accept a PUT to it. Whatever the
// store, a verified asset's bytes must never change.
describe('presigned URLs that storage cannot make write-once', () => {
  let w: TestWharf;
  before(async () => {
    w = await startWharf();
  });
  after(() => w.close());

  async function netiksUpload(bytes: Buffer) {
    const generated = await api(w.url, w.key, 'POST', '/api/v1/assets/developer-generate-presigned-url/', {
      files: [{ name: 'doc.bin', type: 'application/octet-stream', size: bytes.length }],
    });
    assert.equal(generated.status, 200, JSON.stringify(generated.body));
    const p = generated.body.presigned_urls[0];
    const put = (body: Buffer) =>
      fetch(p.presigned_url, {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream' },
        body: new Uint8Array(body),
      });
    assert.equal((await put(bytes)).status, 200);
    const confirmed = await api(w.url, w.key, 'POST', '/api/v1/assets/developer-upload-file', {
      is_presigned: true,
      storage_url: p.storage_url,
      file_name: 'doc.bin',
      s3_path: p.s3_path,
      content_type: 'application/octet-stream',
    });
    assert.equal(confirmed.status, 201, JSON.stringify(confirmed.body));
    return { p, put, assetId: confirmed.body.asset.id as string };
  }

  async function content(id: string): Promise<Buffer> {
    const res = await fetch(`${w.url}/v1/assets/${id}/content`, { headers: { 'x-api-key': w.key } });
    assert.equal(res.status, 200);
    return Buffer.from(await res.arrayBuffer());
  }

  test('a completion another node holds is answered "retry" and seals nothing; the upload completes after', {
    skip: !storesOnS3 && 'only S3 uploads are rewritable (the embedded endpoint makes every URL write-once)',
  }, async () => {
    const bytes = randomBytes(900);
    const generated = await api(w.url, w.key, 'POST', '/api/v1/assets/developer-generate-presigned-url/', {
      files: [{ name: 'held.bin', type: 'application/octet-stream', size: bytes.length }],
    });
    const p = generated.body.presigned_urls[0];
    const put = await fetch(p.presigned_url, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(bytes),
    });
    assert.equal(put.status, 200);
    const [upload] = dbQuery<{ id: string; storage_key: string }>(
      w,
      'select id, storage_key from uploads where storage_key = ?',
      p.s3_path,
    );
    assert.ok(upload, 'the upload behind the URL');
    // What another node's completion holds while it seals, hashes and records: its lease.
    const lease = (sql: string, ...values: string[]) =>
      pgQuerySync(
        w.databaseUrl,
        `with l as (${sql} returning name) select coalesce(json_agg(l), '[]') as rows from l`,
        values,
      );
    lease(
      "insert into locks (name, owner, expires_at, release_requested) values ($1, 'other-node', $2, 0)",
      `seal:${upload.id}`,
      String(w.clock.now() + 600_000),
    );
    const confirm = () =>
      api(w.url, w.key, 'POST', '/api/v1/assets/developer-upload-file', {
        is_presigned: true,
        storage_url: p.storage_url,
        file_name: 'held.bin',
        s3_path: p.s3_path,
        content_type: 'application/octet-stream',
      });
    const held = await confirm();
    assert.equal(held.status, 503, JSON.stringify(held.body));
    const sealed = upload.storage_key.replace('/', '/sealed/');
    assert.equal(
      (await storedKeys(w)).includes(sealed),
      false,
      'nothing sealed over what the other node seals',
    );
    lease('delete from locks where name = $1', `seal:${upload.id}`);
    const done = await confirm();
    assert.equal(done.status, 201, JSON.stringify(done.body));
    assert.equal(sha256Hex(await content(done.body.asset.id)), sha256Hex(bytes));
  });

  test('a PUT to the URL after completion never changes the asset', async () => {
    const bytes = randomBytes(1000);
    const { put, assetId } = await netiksUpload(bytes);
    const again = await put(randomBytes(1000));
    // Wharf's own endpoint refuses it; an S3 store takes it, into a key the asset no longer uses.
    assert.equal(again.status, onS3(w) ? 200 : 403, await again.text());
    assert.equal(sha256Hex(await content(assetId)), sha256Hex(bytes));
    const asset = await api(w.url, w.key, 'GET', `/v1/assets/${assetId}`);
    assert.equal(asset.body.sha256, sha256Hex(bytes));
  });

  test('what a late PUT leaves under the URL’s key is deleted once the URL has expired', async () => {
    const bytes = randomBytes(1200);
    const { p, put, assetId } = await netiksUpload(bytes);
    assert.equal((await put(randomBytes(1200))).status, onS3(w) ? 200 : 403);

    w.clock.advance(16 * 60_000);
    await w.wharf.core.jobs.drain();
    // Storage holds the assets' bytes and nothing else (seed 000's read shows where they are).
    const assets = await api(w.url, w.key, 'GET', '/v1/assets');
    const locations: string[] = [];
    for (const { id } of assets.body.data as Array<{ id: string }>) {
      locations.push((await api(w.url, w.key, 'GET', `/api/v1/assets/${id}/`)).body.storage_url);
    }
    assert.deepEqual(await storedKeys(w), locations.sort());
    assert.equal(locations.includes(p.s3_path), !onS3(w), 'on S3 the URL’s own key is not the asset’s');
    assert.equal(sha256Hex(await content(assetId)), sha256Hex(bytes));
  });
});
