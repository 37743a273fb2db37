import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { complete, declare, putPresigned } from '../helpers/assets.js';
import { deployment } from '../helpers/deployment.js';
import { api, md5Hex, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// With WHARF_INLINE_VERIFY_MAX=0 every object whose SHA-256 storage cannot attest is
// verified by a job, whatever its size: the path large files take, shown with small ones.
describe('SHA-256 verification when storage cannot attest it', () => {
  let w: TestWharf;
  before(async () => {
    w = await startWharf({ env: { WHARF_INLINE_VERIFY_MAX: '0' } });
  });
  after(() => w.close());

  const onS3 = deployment === 'scaled' && process.env.WHARF_TEST_S3_ENDPOINT !== undefined;
  const s3Only = !onS3 && 'the embedded store records the SHA-256 as it writes: nothing is ever deferred';

  test('the asset is "verifying" until the job hashed it, then ready; content waits for it', {
    skip: s3Only,
  }, async () => {
    const bytes = randomBytes(4096);
    const intent = await declare(w, w.key, {
      name: 'big.bin',
      content_type: 'application/octet-stream',
      size: bytes.length,
      sha256: sha256Hex(bytes),
    });
    assert.equal((await putPresigned(intent, bytes)).status, 200);
    const done = await complete(w, w.key, intent.id);
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.asset.status, 'verifying');
    const early = await api(w.url, w.key, 'GET', `/v1/assets/${done.body.asset.id}/content`);
    assert.equal(early.status, 409);
    assert.equal(early.body.error.code, 'ASSET_VERIFYING');

    await w.wharf.core.jobs.drain();
    const asset = await api(w.url, w.key, 'GET', `/v1/assets/${done.body.asset.id}`);
    assert.equal(asset.body.status, 'ready');
    assert.equal(asset.body.md5, md5Hex(bytes));
    const content = await fetch(`${w.url}/v1/assets/${done.body.asset.id}/content`, {
      headers: { 'x-api-key': w.key },
      redirect: 'follow',
    });
    assert.equal(content.status, 200);
    assert.equal(sha256Hex(Buffer.from(await content.arrayBuffer())), sha256Hex(bytes));
  });

  test('bytes that do not match the declared SHA-256 never become readable: the job deletes the asset', {
    skip: s3Only,
  }, async () => {
    const declared = randomBytes(2048);
    const sent = randomBytes(2048);
    const intent = await declare(w, w.key, {
      name: 'forged.bin',
      content_type: 'application/octet-stream',
      size: declared.length,
      sha256: sha256Hex(declared),
    });
    // The signed x-amz-checksum-sha256 header is sent as bound; this S3 server (Ceph 16)
    // does not check it against the body, so the wrong bytes are stored.
    assert.equal((await putPresigned(intent, sent)).status, 200);
    const done = await complete(w, w.key, intent.id);
    assert.equal(done.body.asset.status, 'verifying');
    const id = done.body.asset.id;

    await w.wharf.core.jobs.drain();
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${id}`)).status, 404);
    const page = await api(w.url, w.key, 'GET', '/v1/assets?prefix=forged');
    assert.deepEqual(page.body.data, []);
  });

  test('the right bytes are not lost to a verifying asset of their SHA-256 that turns out wrong', {
    skip: s3Only,
  }, async () => {
    const good = randomBytes(3000);
    const forged = await declare(w, w.key, {
      name: 'forged-first.bin',
      content_type: 'application/octet-stream',
      size: good.length,
      sha256: sha256Hex(good),
    });
    assert.equal((await putPresigned(forged, randomBytes(good.length))).status, 200);
    const first = await complete(w, w.key, forged.id);
    assert.equal(first.body.asset.status, 'verifying');
    // While it verifies, the account does not hold that content: an intent is told to send it.
    const intent = await api(w.url, w.key, 'POST', '/v1/uploads', {
      name: 'honest-intent.bin',
      size: good.length,
      sha256: sha256Hex(good),
    });
    assert.equal(intent.body.status, 'pending', JSON.stringify(intent.body));
    // The right bytes, hashed by Wharf as they arrive: they become the asset.
    const honest = await fetch(`${w.url}/v1/assets?name=honest.bin`, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
      body: good,
    });
    const body = await honest.json();
    assert.equal(honest.status, 201, JSON.stringify(body));
    assert.equal(body.asset.status, 'ready');
    await w.wharf.core.jobs.drain();
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${first.body.asset.id}`)).status, 404);
    const content = await fetch(`${w.url}/v1/assets/${body.asset.id}/content`, {
      headers: { 'x-api-key': w.key },
    });
    assert.equal(content.status, 200);
    assert.ok(
      Buffer.from(await content.arrayBuffer()).equals(good),
      'the honest upload is there, byte for byte',
    );
  });

  test('bytes that only claim a SHA-256 the account holds are hashed before they may stand for it', {
    skip: s3Only,
  }, async () => {
    const secret = randomBytes(2500);
    const held = await fetch(`${w.url}/v1/assets?name=secret.bin`, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
      body: secret,
    });
    assert.equal(held.status, 201);
    // A token that knows only the file's SHA-256 and size sends other bytes of that size.
    const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', { subject: 'guesser' });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const intent = await declare(w, minted.body.secret, {
      name: 'guess.bin',
      content_type: 'application/octet-stream',
      size: secret.length,
      sha256: sha256Hex(secret),
    });
    assert.equal((await putPresigned(intent, randomBytes(secret.length))).status, 200);
    const done = await complete(w, minted.body.secret, intent.id);
    assert.equal(done.status, 400, JSON.stringify(done.body));
    assert.equal(done.body.error.code, 'CHECKSUM_MISMATCH');
  });

  test('the embedded store attests the SHA-256 as it writes, so completion never defers', {
    skip: onS3 && 'S3 storage here cannot attest a SHA-256 (shown by the tests above)',
  }, async () => {
    const bytes = randomBytes(1024);
    const intent = await declare(w, w.key, {
      name: 'small.bin',
      content_type: 'application/octet-stream',
      size: bytes.length,
      sha256: sha256Hex(bytes),
    });
    assert.equal((await putPresigned(intent, bytes)).status, 200);
    const done = await complete(w, w.key, intent.id);
    assert.equal(done.body.asset.status, 'ready');
  });
});
