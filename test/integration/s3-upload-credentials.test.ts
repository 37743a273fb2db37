import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createAsset, dbQuery, declare, putPresigned } from '../helpers/assets.js';
import { storesOnS3 } from '../helpers/deployment.js';
import { api } from '../helpers/http.js';
import { LogCollector, WARN } from '../helpers/observe.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * The URLs clients upload with, on S3 storage. A SigV4 URL binds only the headers it signs, and
 * some stores act on unsigned `x-amz-*` headers too (the test Ceph RGW does; AWS S3 refuses
 * them): `x-amz-copy-source` turns the URL of an upload into a server-side copy of any object
 * the signer may read, another account's asset included (a hunt copied one into its own upload
 * with nothing more than an upload token). With write-only credentials (WHARF_S3_UPLOAD_*,
 * which the test deployment gives every server) the copy is refused; without them the start
 * warns, where the store copies.
 */

const skip = !storesOnS3 && 'S3 storage only: the embedded endpoint is Wharf’s own and copies nothing';
const WARNING = /acts on x-amz-\* headers a presigned URL did not sign/;

let w: TestWharf;
const log = new LogCollector();
before(async () => {
  if (skip) return;
  assert.ok(process.env.WHARF_TEST_S3_UPLOAD_ACCESS_KEY_ID, 'the test store has write-only credentials');
  w = await startWharf({ logStream: log.stream });
});
after(async () => {
  await w?.close();
});

/** Another account's asset and where its bytes are in the bucket (`bucket/key`). */
async function victimObject(): Promise<{ bytes: Buffer; source: string }> {
  const victim = await w.newAccount();
  const bytes = Buffer.from(`victim's ${randomBytes(8).toString('hex')}`);
  const asset = await createAsset(w, victim.key, 'conf.txt', bytes);
  const [row] = dbQuery<{ storage_key: string }>(w, 'select storage_key from assets where id = ?', asset.id);
  return { bytes, source: `${w.backingEnv.WHARF_S3_BUCKET}/${row!.storage_key}` };
}

describe('upload URLs on S3 carry no copy', { skip }, () => {
  test('with write-only upload credentials the start does not warn', () => {
    assert.equal(
      log.lines.find((l) => l.level >= WARN && WARNING.test(l.msg)),
      undefined,
      JSON.stringify(log.lines.filter((l) => l.level >= WARN)),
    );
  });

  test('/v1/s3/sign PutObject: an unsigned x-amz-copy-source is refused by the store, and the upload stays the client’s own', async () => {
    const { source } = await victimObject();
    const attacker = await w.newAccount();
    const token = await api(w.url, attacker.key, 'POST', '/v1/upload-tokens', {});
    assert.equal(token.status, 201, JSON.stringify(token.body));
    const signed = await api(
      w.url,
      undefined,
      'POST',
      '/v1/s3/sign',
      { method: 'PUT', key: 'loot.txt', contentType: 'text/plain' },
      { authorization: `Bearer ${token.body.secret}` },
    );
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const copy = await fetch(signed.body.url, {
      method: 'PUT',
      headers: { ...signed.body.headers, 'x-amz-copy-source': source, 'x-amz-acl': 'public-read' },
      body: '',
    });
    assert.equal(copy.status, 403, await copy.text());
    await w.wharf.core.uploads.reconcile();
    const pending = await api(w.url, attacker.key, 'GET', `/v1/uploads/${signed.body.upload_id}`);
    assert.equal(pending.body.status, 'pending', 'nothing arrived');

    // The same URL still takes the client's own bytes, which become its asset.
    const own = await fetch(signed.body.url, { method: 'PUT', headers: signed.body.headers, body: 'my own' });
    assert.equal(own.status, 200, await own.text());
    await w.wharf.core.uploads.reconcile();
    const done = await api(w.url, attacker.key, 'GET', `/v1/uploads/${signed.body.upload_id}`);
    assert.equal(done.body.status, 'completed');
    const content = await fetch(`${w.url}/v1/assets/${done.body.asset_id}/content`, {
      headers: { 'x-api-key': attacker.key },
    });
    assert.equal(await content.text(), 'my own');
  });

  test('POST /v1/uploads: a copy onto a URL of a declared size is refused, and completing it finds no bytes', async () => {
    const { bytes, source } = await victimObject();
    const attacker = await w.newAccount();
    const intent = await declare(w, attacker.key, {
      name: 'loot.txt',
      size: bytes.length,
      content_type: 'text/plain',
    });
    const copy = await putPresigned(intent, Buffer.alloc(bytes.length), { 'x-amz-copy-source': source });
    assert.equal(copy.status, 403, await copy.text());
    const complete = await api(w.url, attacker.key, 'POST', `/v1/uploads/${intent.id}/complete`);
    assert.notEqual(complete.status, 200, JSON.stringify(complete.body));
    assert.notEqual(complete.status, 201, JSON.stringify(complete.body));
    const assets = await api(w.url, attacker.key, 'GET', '/v1/assets');
    assert.deepEqual(assets.body.data, [], 'the attacker holds no asset');
  });

  test('an unsigned x-amz-acl: public-read on an upload URL makes nothing readable without a signature', async () => {
    const signed = await api(w.url, w.key, 'POST', '/v1/s3/sign', {
      method: 'PUT',
      key: 'shared.txt',
      contentType: 'text/plain',
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const put = await fetch(signed.body.url, {
      method: 'PUT',
      headers: { ...signed.body.headers, 'x-amz-acl': 'public-read' },
      body: 'meant to stay behind Wharf',
    });
    await put.arrayBuffer();
    // The store refuses the header (AWS S3), or takes the bytes and serves no one unsigned: the
    // start set the bucket's public access block where a probe showed the ACL would be honoured.
    const bare = new URL(signed.body.url);
    bare.search = '';
    const anonymous = await fetch(bare);
    await anonymous.arrayBuffer();
    assert.notEqual(
      anonymous.status,
      200,
      `PUT answered ${put.status}; an unsigned GET of the object answered 200`,
    );
    assert.equal(
      log.lines.find((l) => l.level >= WARN && /public-read/.test(l.msg)),
      undefined,
      'no warning that public ACLs stay possible',
    );
  });

  test('without upload credentials the start warns exactly when the store copies on an unsigned header', async () => {
    // What the store does, asked directly: a presigned PUT signed with the main credentials
    // (as Wharf signs without WHARF_S3_UPLOAD_*), sent with an unsigned x-amz-copy-source.
    const mainOnly = new LogCollector();
    const node = await startWharf({
      logStream: mainOnly.stream,
      env: { WHARF_S3_UPLOAD_ACCESS_KEY_ID: '', WHARF_S3_UPLOAD_SECRET_ACCESS_KEY: '' },
    });
    try {
      const { source } = await victimObject();
      const signed = await api(node.url, node.key, 'POST', '/v1/s3/sign', {
        method: 'PUT',
        key: 'probe.txt',
        contentType: 'text/plain',
      });
      assert.equal(signed.status, 200, JSON.stringify(signed.body));
      const copy = await fetch(signed.body.url, {
        method: 'PUT',
        headers: { ...signed.body.headers, 'x-amz-copy-source': source },
        body: '',
      });
      await copy.arrayBuffer();
      const storeCopies = copy.ok;
      const warned = mainOnly.lines.some((l) => l.level === WARN && WARNING.test(l.msg));
      assert.equal(warned, storeCopies, `the store ${storeCopies ? 'copies' : 'refuses'}; warned: ${warned}`);
    } finally {
      await node.close();
    }
  });
});
