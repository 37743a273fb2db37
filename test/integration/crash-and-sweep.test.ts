import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { AFTER_COMMIT_CHECK_MS } from '../../src/core/assets.js';
import { ManualClock } from '../../src/core/clock.js';
import { isWharfError } from '../../src/core/errors.js';
import { dbQuery, eventually, objectFiles, uploadRaw } from '../helpers/assets.js';
import {
  holdsObject,
  pendingWrites,
  provision,
  putStrayObject,
  storedKeys,
  storesOnS3,
  withBucket,
} from '../helpers/deployment.js';
import { answerOf, api } from '../helpers/http.js';
import { answersAsItself, startWharfProcess, type WharfProcess } from '../helpers/server-process.js';
import { freePort, startWharf, type TestWharf } from '../helpers/wharf.js';

async function filesUnder(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe('the sweep', () => {
  test('an intent whose bytes arrived but which was never completed expires and its bytes are freed', async () => {
    const w = await startWharf();
    try {
      const bytes = randomBytes(2048);
      const intent = (
        await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'left.bin', size: bytes.length })
      ).body;
      const put = await fetch(intent.url, {
        method: 'PUT',
        headers: intent.headers,
        body: new Uint8Array(bytes),
      });
      assert.equal(put.status, 200);
      assert.equal((await objectFiles(w)).length, 1);

      // Within the intent's life plus the completion grace, nothing is swept.
      w.clock.advance(30 * 60_000);
      assert.deepEqual(await w.wharf.core.uploads.sweep(), { expired: 0, debris: 0, reconciled: 0 });
      assert.equal((await objectFiles(w)).length, 1);

      w.clock.advance(60 * 60_000);
      const swept = await w.wharf.core.uploads.sweep();
      assert.equal(swept.expired, 1);
      assert.deepEqual(await objectFiles(w), []);
      const state = await api(w.url, w.key, 'GET', `/v1/uploads/${intent.id}`);
      assert.equal(state.body.status, 'expired');
      const complete = await api(w.url, w.key, 'POST', `/v1/uploads/${intent.id}/complete`);
      assert.equal(complete.status, 410);
      assert.equal(complete.body.error.code, 'UPLOAD_EXPIRED');
    } finally {
      await w.close();
    }
  });

  test('completed uploads and their assets are never swept', async () => {
    const w = await startWharf();
    try {
      const bytes = randomBytes(1000);
      const intent = (
        await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'kept.bin', size: bytes.length })
      ).body;
      await fetch(intent.url, { method: 'PUT', headers: intent.headers, body: new Uint8Array(bytes) });
      const done = await api(w.url, w.key, 'POST', `/v1/uploads/${intent.id}/complete`);
      assert.equal(done.status, 200);
      w.clock.advance(48 * 3600_000);
      assert.equal((await w.wharf.core.uploads.sweep()).expired, 0);
      const content = await fetch(`${w.url}/v1/assets/${done.body.asset.id}/content`, {
        headers: { 'x-api-key': w.key },
      });
      assert.equal(Buffer.compare(Buffer.from(await content.arrayBuffer()), bytes), 0);
    } finally {
      await w.close();
    }
  });
});

/** The ids of the multipart uploads open in the server's bucket under `key` (scaled). */
async function openMultipartIds(server: TestWharf, key: string): Promise<string[]> {
  const { ListMultipartUploadsCommand } = await import('@aws-sdk/client-s3');
  return withBucket(server, async (s3, bucket) =>
    ((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }))).Uploads ?? [])
      .filter((u) => u.Key === key)
      .map((u) => u.UploadId!)
      .sort(),
  );
}

/** Starts a multipart upload in the server's bucket behind Wharf's back (scaled): its id. */
async function createStrayMultipart(server: TestWharf, key: string): Promise<string> {
  const { CreateMultipartUploadCommand } = await import('@aws-sdk/client-s3');
  return withBucket(
    server,
    async (s3, bucket) =>
      (await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }))).UploadId!,
  );
}

const onS3Only = !storesOnS3 && 'S3 only (scaled)';

describe('the sweep, on S3', () => {
  // The start's checks (S3BlobStore.checkUnsignedCopy, checkPublicAcl) delete their probe
  // objects, but not past a store that stopped answering or a start stopped midway.
  test('probe objects a start left behind go once they are an hour old', { skip: onS3Only }, async () => {
    const w = await startWharf();
    try {
      const left = [
        'wharf-probe/copy-source-left',
        'wharf-probe/copy-target-left',
        'wharf-probe/public-acl-left',
      ];
      for (const key of left) await putStrayObject(w, key, Buffer.from('wharf'));
      // Younger than an hour: perhaps a check another node's start is running now.
      w.clock.advance(30 * 60_000);
      assert.deepEqual(await w.wharf.core.uploads.sweep(), { expired: 0, debris: 0, reconciled: 0 });
      for (const key of left) assert.ok(await holdsObject(w, key), key);
      w.clock.advance(31 * 60_000);
      assert.deepEqual(await w.wharf.core.uploads.sweep(), { expired: 0, debris: 3, reconciled: 0 });
      assert.deepEqual(
        (await storedKeys(w)).filter((key) => key.startsWith('wharf-probe/')),
        [],
      );
    } finally {
      await w.close();
    }
  });

  // A stalled store: the SDK retried CreateMultipartUpload after a timeout, and S3 had made the
  // first one too. Wharf recorded the id it got back; the other is nobody's.
  test("a pending multipart upload's strays go once an hour old; the one it writes through stays and completes", {
    skip: onS3Only,
  }, async () => {
    const w = await startWharf();
    try {
      const bytes = randomBytes(1000);
      const started = await api(w.url, w.key, 'POST', '/v1/multipart', {
        name: 'stray.bin',
        size: bytes.length,
      });
      assert.equal(started.status, 201, JSON.stringify(started.body));
      const { id, key, uploadId } = started.body as { id: string; key: string; uploadId: string };
      const stray = await createStrayMultipart(w, key);
      assert.deepEqual(await openMultipartIds(w, key), [stray, uploadId].sort());

      w.clock.advance(30 * 60_000);
      assert.equal((await w.wharf.core.uploads.sweep()).debris, 0, 'younger than an hour');
      w.clock.advance(31 * 60_000);
      assert.deepEqual(await w.wharf.core.uploads.sweep(), { expired: 0, debris: 1, reconciled: 0 });
      assert.deepEqual(await openMultipartIds(w, key), [uploadId], 'the stray went, the recorded one stayed');

      // Storage judges signed URLs by the real clock.
      w.clock.set(Date.now());
      const signed = await api(w.url, w.key, 'POST', `/v1/multipart/${id}/parts`, { partNumbers: [1] });
      assert.equal(signed.status, 200, JSON.stringify(signed.body));
      const part = signed.body.parts[0];
      const put = await fetch(part.url, {
        method: 'PUT',
        headers: part.headers,
        body: new Uint8Array(bytes),
      });
      assert.equal(put.status, 200, await put.text());
      const done = await api(w.url, w.key, 'POST', `/v1/multipart/${id}/complete`, {
        parts: [{ PartNumber: 1, ETag: put.headers.get('etag') }],
      });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      assert.equal(done.body.asset.sha256, createHash('sha256').update(bytes).digest('hex'));
    } finally {
      await w.close();
    }
  });

  /**
   * An S3 client's CreateMultipartUpload of `name`, signed once and sent twice (as the AWS SDK
   * retries one the store was slow to answer): the upload's key and both multipart ids.
   */
  async function twoClientMultipartUploads(
    w: TestWharf,
    name: string,
  ): Promise<{ key: string; created: [string, string] }> {
    const create = await api(w.url, w.key, 'POST', '/v1/s3/sign', { method: 'POST', key: name });
    assert.equal(create.status, 200, JSON.stringify(create.body));
    const created: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await fetch(create.body.url, { method: 'POST', headers: create.body.headers });
      const xml = await res.text();
      assert.equal(res.status, 200, xml);
      created.push(/<UploadId>([^<]+)<\/UploadId>/.exec(xml)![1]!);
    }
    return { key: create.body.key as string, created: created as [string, string] };
  }

  // An S3 client (Uppy) creates the multipart upload itself, with a URL Wharf signed; Wharf
  // learns its id from the first step the client has signed.
  test("a client's multipart uploads are all kept until one is named; then the others go once an hour old", {
    skip: onS3Only,
  }, async () => {
    const w = await startWharf();
    try {
      const { key, created } = await twoClientMultipartUploads(w, 'mine.bin');
      const [named, other] = created;

      w.clock.advance(61 * 60_000);
      assert.equal((await w.wharf.core.uploads.sweep()).debris, 0, 'no id named yet: either may be the one');
      assert.deepEqual(await openMultipartIds(w, key), [...created].sort());

      w.clock.set(Date.now());
      const part = await api(w.url, w.key, 'POST', '/v1/s3/sign', {
        method: 'PUT',
        key,
        uploadId: named,
        partNumber: 1,
      });
      assert.equal(part.status, 200, JSON.stringify(part.body));
      const refused = await api(w.url, w.key, 'POST', '/v1/s3/sign', {
        method: 'PUT',
        key,
        uploadId: other,
        partNumber: 1,
      });
      assert.equal(refused.status, 404, JSON.stringify(refused.body));
      assert.equal(refused.body.error.code, 'MULTIPART_NOT_FOUND');

      w.clock.advance(61 * 60_000);
      assert.equal((await w.wharf.core.uploads.sweep()).debris, 1);
      assert.deepEqual(await openMultipartIds(w, key), [named]);
    } finally {
      await w.close();
    }
  });

  test("a client's first steps naming two multipart uploads side by side: one is recorded, the other refused", {
    skip: onS3Only,
  }, async () => {
    const w = await startWharf();
    try {
      const { key, created } = await twoClientMultipartUploads(w, 'twice.bin');
      // Straight to the service, both reading the upload before either records an id.
      const principal = await w.wharf.core.keys.authenticate(w.key);
      const store = (
        w.wharf.core.s3Signing as unknown as { store: { getUpload: (id: string) => Promise<unknown> } }
      ).store;
      const getUpload = store.getUpload;
      let reading = 0;
      let bothRead: () => void = () => {};
      const bothReading = new Promise<void>((resolve) => {
        bothRead = resolve;
      });
      store.getUpload = async (id) => {
        const upload = await getUpload.call(store, id);
        if (++reading === 2) bothRead();
        await bothReading;
        return upload;
      };
      const outcomes = await Promise.all(
        created.map((uploadId) =>
          w.wharf.core.s3Signing
            .sign(principal, { operation: 'UploadPart', key, multipartId: uploadId, partNumber: 1 })
            .then(
              () => 'signed',
              (err: unknown) => (isWharfError(err, 'MULTIPART_NOT_FOUND') ? 'refused' : Promise.reject(err)),
            ),
        ),
      );
      store.getUpload = getUpload;
      assert.deepEqual([...outcomes].sort(), ['refused', 'signed']);
      // The one recorded is the one signed: later steps are signed for it only.
      const lists = await Promise.all(
        created.map((uploadId) => api(w.url, w.key, 'POST', '/v1/s3/sign', { method: 'GET', key, uploadId })),
      );
      assert.deepEqual(
        lists.map((a) => a.status),
        outcomes.map((o) => (o === 'signed' ? 200 : 404)),
      );
    } finally {
      await w.close();
    }
  });
});

// A process killed between a commit and the storage calls that follow it leaves bytes that
// no row names. These put such bytes back by hand, as the kill would have left them, and check
// that what the commit queued frees them.
describe('a crash right after a commit', () => {
  let w: TestWharf;
  after(() => w?.close());

  test('an asset deleted just before it still has its bytes freed, by the job queued with the deletion', async () => {
    w = await startWharf();
    const asset = (await uploadRaw(w, w.key, 'gone.bin', randomBytes(3000))).body.asset;
    const key = dbQuery<{ storage_key: string }>(
      w,
      'select storage_key from assets where id = ?',
      asset.id,
    )[0]!.storage_key;
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${asset.id}`)).status, 204);
    await putStrayObject(w, key, randomBytes(3000));
    assert.equal(await holdsObject(w, key), true);
    // The job runs once the request's own frees have had their chance.
    w.clock.advance(AFTER_COMMIT_CHECK_MS);
    await w.wharf.core.jobs.drain();
    assert.equal(await holdsObject(w, key), false);
  });

  test('an asset deleted just before it still has its renderings freed, recorded or not', async () => {
    const asset = (await uploadRaw(w, w.key, 'rendered.bin', randomBytes(3000))).body.asset;
    // A rendering written whose row the kill prevented: under the asset's own prefix.
    const stray = `default/derivatives/${asset.id}/w_64.webp`;
    await putStrayObject(w, stray, randomBytes(500));
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${asset.id}`)).status, 204);
    assert.equal(await holdsObject(w, stray), false);
  });

  test('a deduplicated completion just before it still frees the upload own bytes', async () => {
    const bytes = randomBytes(4000);
    const first = await uploadRaw(w, w.key, 'one.bin', bytes);
    const again = await uploadRaw(w, w.key, 'two.bin', bytes);
    assert.equal(again.body.asset.id, first.body.asset.id);
    const key = dbQuery<{ storage_key: string }>(
      w,
      'select storage_key from uploads where asset_id = ? and deduplicated = 1',
      first.body.asset.id,
    )[0]!.storage_key;
    assert.equal(await holdsObject(w, key), false);
    await putStrayObject(w, key, bytes);
    // The job runs once the request's own frees have had their chance.
    w.clock.advance(AFTER_COMMIT_CHECK_MS);
    await w.wharf.core.jobs.drain();
    assert.equal(await holdsObject(w, key), false);
    // The asset's own bytes are untouched.
    const content = await fetch(`${w.url}/v1/assets/${first.body.asset.id}/content`, {
      headers: { 'x-api-key': w.key },
    });
    assert.equal(Buffer.compare(Buffer.from(await content.arrayBuffer()), bytes), 0);
  });
});

describe('a completion that loses to an ending, or dies midway', () => {
  let w: TestWharf;
  after(() => w?.close());

  test('a completion that finds its upload ended meanwhile (another node aborted it) frees the bytes it composed', async () => {
    w = await startWharf();
    const bytes = randomBytes(3000);
    const started = await api(w.url, w.key, 'POST', '/v1/multipart', {
      name: 'raced.bin',
      size: bytes.length,
    });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const principal = await w.wharf.core.keys.authenticate(w.key);
    // This node's completion read the upload pending, then another node's abort committed ...
    const seen = await w.wharf.core.uploads.get(principal, started.body.id);
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/multipart/${started.body.id}`)).status, 204);
    // ... and this one composed the parts into the object before it checked the upload again.
    await putStrayObject(w, seen.storageKey, bytes);
    await assert.rejects(w.wharf.core.uploads.completeUpload(seen), { code: 'UPLOAD_EXPIRED' });
    assert.equal(await holdsObject(w, seen.storageKey), false, 'no sweep looks at an ended upload again');
  });

  test('a rewritable upload whose completion died after sealing its copy: the copy goes when the upload expires', {
    skip: !storesOnS3 && 'only S3 uploads are rewritable (the embedded endpoint makes every URL write-once)',
  }, async () => {
    const principal = await w.wharf.core.keys.authenticate(w.key);
    const { upload } = await w.wharf.core.uploads.createPost(principal, { name: 'sealed.jpg' });
    assert.equal(upload.intent.rewritable, true);
    // What a kill between the seal's copy and the record leaves: the copy, the upload pending.
    const sealed = upload.storageKey.replace('/', '/sealed/');
    await putStrayObject(w, sealed, randomBytes(2000));
    w.clock.advance(upload.expiresAt - w.clock.now() + 2 * 3600_000);
    assert.equal((await w.wharf.core.uploads.sweep()).expired, 1);
    assert.equal(await holdsObject(w, sealed), false);
  });
});

describe('a torn metadata sidecar', () => {
  // The sidecar is where the local store keeps an object's facts; S3 keeps them on the
  // object itself, and s3-store.test.ts checks what head() reads from there.
  const skip = storesOnS3 && "the local store's metadata sidecar; this server stores on S3, which has none";
  test('is not trusted: completion re-hashes the stored bytes and records the right digests', {
    skip,
  }, async () => {
    const w = await startWharf();
    try {
      const bytes = randomBytes(4096);
      const intent = (
        await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'torn.bin', size: bytes.length })
      ).body;
      assert.equal(
        (await fetch(intent.url, { method: 'PUT', headers: intent.headers, body: new Uint8Array(bytes) }))
          .status,
        200,
      );
      const [sidecar] = await filesUnder(join(w.dataDir, 'blobs', 'meta'));
      assert.ok(sidecar, 'the PUT recorded its facts');
      await writeFile(sidecar, '{"size":40'); // as a crash mid-write could leave it
      const done = await api(w.url, w.key, 'POST', `/v1/uploads/${intent.id}/complete`);
      assert.equal(done.status, 200);
      assert.equal(done.body.asset.sha256, createHash('sha256').update(bytes).digest('hex'));
      assert.equal(done.body.asset.md5, createHash('md5').update(bytes).digest('hex'));
    } finally {
      await w.close();
    }
  });
});

// Tests run a second node on the first's data directory, and a restart may overlap the old
// process: a server's start settles what dead processes left, never a live one's writes.
describe('a second server starting on the same data directory', () => {
  test("leaves the first server's upload in flight alone: it completes, verified", async () => {
    const w = await startWharf();
    let second: TestWharf | undefined;
    try {
      // As large as the crash test's below: on S3 the first half is then an open multipart upload.
      const bytes = randomBytes(64 * 1024 * 1024);
      const half = bytes.length / 2;
      const req = request(`${w.url}/v1/assets?name=overlap.bin`, {
        method: 'POST',
        headers: {
          'x-api-key': w.key,
          'content-type': 'application/octet-stream',
          'content-length': String(bytes.length),
        },
      });
      const answer = answerOf(req);
      req.write(bytes.subarray(0, half));
      // The first half is in storage (a temp file, or an open multipart upload on S3).
      for (let i = 0; i < 200 && (await pendingWrites(w)).length === 0; i++)
        await new Promise((r) => setTimeout(r, 50));
      assert.equal((await pendingWrites(w)).length, 1, 'a write is in progress');

      second = await startWharf({ sharing: w, clock: w.clock });
      assert.equal((await pendingWrites(w)).length, 1, "the second server's start left the write alone");
      req.end(bytes.subarray(half));
      const { status, body } = await answer;
      assert.equal(status, 201, body);
      const asset = JSON.parse(body).asset;
      assert.equal(asset.sha256, createHash('sha256').update(bytes).digest('hex'));
      const content = await fetch(`${second.url}/v1/assets/${asset.id}/content`, {
        headers: { 'x-api-key': w.key },
      });
      assert.equal(Buffer.compare(Buffer.from(await content.arrayBuffer()), bytes), 0);
    } finally {
      await second?.close();
      await w.close();
    }
  });
});

describe('a crash mid-upload', () => {
  const children: ChildProcess[] = [];
  after(() => {
    for (const child of children) child.kill('SIGKILL');
  });

  async function startProcess(env: Record<string, string>): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    children.push(child);
    // Waits for the process itself, not a fixed budget: compiling src/ with tsx on a loaded
    // 2-core machine took longer than 15 s. It fails at once if the process exits, and gives up
    // only after two minutes.
    const deadline = Date.now() + 120_000;
    while (child.exitCode === null && child.signalCode === null && Date.now() < deadline) {
      if (await answersAsItself(`http://127.0.0.1:${env.WHARF_PORT}`, env)) return child;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`Wharf did not start (exit code ${child.exitCode}, signal ${child.signalCode})`);
  }

  test('SIGKILL during a direct upload leaves no asset, and its partial bytes are cleared', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'wharf-crash-'));
    const backing = await provision();
    const env = {
      ...backing.env,
      WHARF_DATA_DIR: dataDir,
      WHARF_PORT: String(await freePort()),
      WHARF_API_KEY: `crash-test-key-${randomBytes(8).toString('hex')}`,
      WHARF_LOG_LEVEL: 'error',
    };
    try {
      const first = await startProcess(env);
      let base = `http://127.0.0.1:${env.WHARF_PORT}`;
      // Send half of a declared 64 MiB body, then kill the server while it waits for more.
      const sent = await new Promise<number>((resolve) => {
        const req = request(`${base}/v1/assets?name=partial.bin`, {
          method: 'POST',
          headers: {
            'x-api-key': env.WHARF_API_KEY,
            'content-type': 'application/octet-stream',
            'content-length': String(64 * 1024 * 1024),
          },
        });
        req.on('error', () => {});
        const chunk = randomBytes(1024 * 1024);
        let written = 0;
        const pump = () => {
          while (written < 32) {
            written += 1;
            if (!req.write(chunk)) return void req.once('drain', pump);
          }
          resolve(written);
        };
        pump();
      });
      assert.equal(sent, 32);
      const server = { dataDir, backingEnv: backing.env };
      // Wait until the partial write is in storage (a temp file, or an open multipart upload
      // on S3), so the crash really interrupts a write.
      for (let i = 0; i < 100 && (await pendingWrites(server)).length === 0; i++)
        await new Promise((r) => setTimeout(r, 50));
      assert.equal((await pendingWrites(server)).length, 1, 'a write is in progress');
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));

      // Restarted on a port of its own: the killed one's may have been taken meanwhile.
      env.WHARF_PORT = String(await freePort());
      base = `http://127.0.0.1:${env.WHARF_PORT}`;
      await startProcess(env);
      assert.deepEqual(await storedKeys(server), []);
      const list = await api(base, env.WHARF_API_KEY, 'GET', '/v1/assets');
      assert.equal(list.status, 200);
      assert.deepEqual(list.body.data, [], 'no asset exists for the interrupted upload');
      if (!storesOnS3) {
        assert.deepEqual(await pendingWrites(server), [], 'the restart removed the partial write');
      } else {
        // A bucket may be shared by nodes whose uploads are still running, so a start does
        // not abort open multipart uploads; the sweep that ends the upload once its lease has
        // run out (see "a direct upload's lease" below) aborts its one.
        assert.equal((await pendingWrites(server)).length, 1);
        const later = await startWharf({
          sharing: server as TestWharf,
          clock: new ManualClock(Date.now() + 61 * 60_000),
        });
        try {
          const swept = await later.wharf.core.uploads.sweep();
          assert.equal(swept.expired, 1);
          assert.equal(swept.debris, 0, 'aborted with its upload, not left as debris');
        } finally {
          await later.close();
        }
        assert.deepEqual(await pendingWrites(server), [], 'the sweep aborted the partial write');
      }
    } finally {
      for (const child of children) child.kill('SIGKILL');
      // The database is dropped next, which the killed servers must no longer hold open.
      await Promise.all(
        children.map(
          (c) => c.exitCode === null && c.signalCode === null && new Promise((r) => c.once('exit', r)),
        ),
      );
      await backing.release();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  // The local tus directory is the embedded deployment's; on S3 a tus upload is an S3
  // multipart upload, which the sweep's sweepIncomplete aborts once no upload runs it.
  test('after a restart the tus files no live upload references are gone; live uploads keep theirs and resume', {
    skip: storesOnS3 && 'the local tus directory; this server keeps tus uploads on S3',
  }, async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'wharf-crash-'));
    const env = {
      WHARF_DATA_DIR: dataDir,
      WHARF_PORT: String(await freePort()),
      WHARF_API_KEY: `crash-test-key-${randomBytes(8).toString('hex')}`,
      WHARF_LOG_LEVEL: 'error',
    };
    const base = `http://127.0.0.1:${env.WHARF_PORT}`;
    const tus = { authorization: `Bearer ${env.WHARF_API_KEY}`, 'tus-resumable': '1.0.0' };
    const size = 4 * 1024 * 1024;
    const sent = 1024 * 1024;
    const files = {
      live: randomBytes(size),
      expired: randomBytes(size),
    };
    try {
      const first = await startProcess(env);
      const uploads: Record<string, string> = {};
      for (const [name, bytes] of Object.entries(files)) {
        const created = await fetch(`${base}/v1/tus/`, {
          method: 'POST',
          headers: {
            ...tus,
            'upload-length': String(bytes.length),
            'upload-metadata': `filename ${Buffer.from(`${name}.bin`).toString('base64')}`,
          },
        });
        assert.equal(created.status, 201);
        uploads[name] = created.headers.get('location')!;
        // The first megabyte of four, then the server dies mid-PATCH.
        const req = request(uploads[name], {
          method: 'PATCH',
          headers: {
            ...tus,
            'upload-offset': '0',
            'content-type': 'application/offset+octet-stream',
            'content-length': String(bytes.length),
          },
        });
        req.on('error', () => {});
        req.write(bytes.subarray(0, sent));
      }
      // A multipart upload with its manifest on disk (its part cut too).
      const multipart = await api(base, env.WHARF_API_KEY, 'POST', '/v1/multipart', {
        name: 'parts.bin',
        size: 6 * 1024 * 1024,
      });
      assert.equal(multipart.status, 201, JSON.stringify(multipart.body));

      const tusDir = join(dataDir, 'tus', 'uploads');
      const fileOf = (name: string) =>
        join(tusDir, 'default', new URL(uploads[name]!).pathname.split('/').at(-1)!);
      for (const name of Object.keys(files)) {
        for (let i = 0; i < 200 && (await stat(fileOf(name)).then((s) => s.size)) < sent; i++) {
          await new Promise((r) => setTimeout(r, 25));
        }
        assert.equal((await stat(fileOf(name))).size, sent, `${name}: the PATCH's bytes are on disk`);
      }
      const multipartFiles = await filesUnder(join(dataDir, 'blobs', 'multipart'));
      assert.equal(multipartFiles.length, 1, 'the multipart upload’s manifest');
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));

      // What a crash between the sweep's two steps leaves: it marks an upload expired first
      // (so a completion racing it cannot win) and frees the upload's files after; this one
      // died in between. Nothing would ever free those files later.
      const db = new Database(join(dataDir, 'wharf.db'));
      try {
        const key = `default/${new URL(uploads.expired!).pathname.split('/').at(-1)}`;
        assert.equal(
          db.prepare("update uploads set status = 'expired' where storage_key = ?").run(key).changes,
          1,
        );
      } finally {
        db.close();
      }
      const before = await filesUnder(tusDir);
      assert.ok(
        before.includes(fileOf('expired')) && before.includes(`${fileOf('expired')}.json`),
        before.join(),
      );

      // The same port: the uploads' resume URLs name it.
      await startProcess(env);
      // The start-up sweep runs once the server listens.
      for (
        let i = 0;
        i < 200 && (await filesUnder(tusDir)).some((f) => f.startsWith(fileOf('expired')));
        i++
      ) {
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.deepEqual(
        (await filesUnder(tusDir)).sort(),
        [fileOf('live'), `${fileOf('live')}.json`],
        'the expired upload’s bytes and facts are gone; the live one’s stay',
      );
      assert.deepEqual(await filesUnder(join(dataDir, 'blobs', 'multipart')), multipartFiles);
      assert.deepEqual(await filesUnder(join(dataDir, 'blobs', 'meta')), [], 'no facts without an object');

      const gone = await fetch(uploads.expired!, { method: 'HEAD', headers: tus });
      assert.equal(gone.status, 410);
      // The live upload resumes where the crash cut it, byte-exact.
      const head = await fetch(uploads.live!, { method: 'HEAD', headers: tus });
      assert.equal(head.status, 200);
      const offset = Number(head.headers.get('upload-offset'));
      assert.equal(offset, sent);
      const rest = await fetch(uploads.live!, {
        method: 'PATCH',
        headers: {
          ...tus,
          'upload-offset': String(offset),
          'content-type': 'application/offset+octet-stream',
        },
        body: new Uint8Array(files.live.subarray(offset)),
      });
      assert.equal(rest.status, 204, await rest.text());
      const assetId = rest.headers.get('wharf-asset-id');
      const content = await fetch(`${base}/v1/assets/${assetId}/content`, {
        headers: { 'x-api-key': env.WHARF_API_KEY },
      });
      assert.equal(Buffer.compare(Buffer.from(await content.arrayBuffer()), files.live), 0);
    } finally {
      for (const child of children) child.kill('SIGKILL');
      await Promise.all(
        children.map(
          (c) => c.exitCode === null && c.signalCode === null && new Promise((r) => c.once('exit', r)),
        ),
      );
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

// A direct upload's row holds its token's file, bytes and open-upload slot while its body
// streams, and only the process running the request knows when that is over. Its expiry is a
// lease that process renews (WHARF_DIRECT_UPLOAD_LEASE, a few seconds here): a killed process
// renews nothing, and another node's sweep ends the upload once the lease has run out (it waited
// a day); a live one's upload is never ended, however long it streams. Two processes of one
// deployment: the same data directory on embedded, the same database and bucket when scaled.
describe("a direct upload's lease", () => {
  const LEASE_SECONDS = 3;
  const nodes: WharfProcess[] = [];
  let dataDir: string;
  let backing: Awaited<ReturnType<typeof provision>>;
  let env: Record<string, string>;
  const server = () => ({ dataDir, backingEnv: backing.env });

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'wharf-lease-'));
    backing = await provision();
    env = {
      ...backing.env,
      WHARF_DATA_DIR: dataDir,
      WHARF_API_KEY: `lease-test-key-${randomBytes(8).toString('hex')}`,
      WHARF_DIRECT_UPLOAD_LEASE: String(LEASE_SECONDS),
      // Every node sweeps every second: a lease is judged as soon as it can be.
      WHARF_SWEEP_INTERVAL: '1',
    };
  });
  after(async () => {
    await Promise.all(nodes.map((node) => node.kill()));
    await backing?.release();
    await rm(dataDir, { recursive: true, force: true });
  });

  async function node(): Promise<WharfProcess> {
    const started = await startWharfProcess({ ...env, WHARF_PORT: String(await freePort()) });
    nodes.push(started);
    return started;
  }

  /** A direct upload of `size` declared bytes to `base`, its body sent by the caller. */
  function directUpload(base: string, secret: string, name: string, size: number) {
    const req = request(`${base}/v1/assets?name=${name}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${secret}`,
        'content-type': 'application/octet-stream',
        'content-length': String(size),
      },
    });
    return { req, answer: answerOf(req) };
  }

  /** The one pending upload of the account, once it is recorded. */
  async function thePending(
    base: string,
    key = env.WHARF_API_KEY!,
  ): Promise<{ id: string; expires_at: string }> {
    let found: { id: string; expires_at: string } | undefined;
    await eventually(async () => {
      const list = await api(base, key, 'GET', '/v1/uploads?status=pending');
      found = list.body.data?.[0];
      return found !== undefined;
    }, 'the upload is recorded');
    return found!;
  }

  test('a node killed mid-body: another node ends the upload once its lease ran out, and gives back what it held', async () => {
    const doomed = await node();
    const peer = await node();
    // A token for one file: the upload holds its only file, its bytes and its open slot.
    const minted = await api(peer.url, env.WHARF_API_KEY, 'POST', '/v1/upload-tokens', { max_files: 1 });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const token = { id: minted.body.token.id as string, secret: minted.body.secret as string };
    const usage = async () =>
      (await api(peer.url, env.WHARF_API_KEY, 'GET', `/v1/upload-tokens/${token.id}`)).body.usage;

    const size = 64 * 1024 * 1024;
    const { req } = directUpload(doomed.url, token.secret, 'cut.bin', size);
    // 10 MiB: on S3 more than a part, so the body is an open multipart upload in the bucket.
    req.write(randomBytes(10 * 1024 * 1024));
    const upload = await thePending(peer.url);
    await eventually(
      async () => (await pendingWrites(server())).length === 1,
      'the body is being written (a temp file, or an open multipart upload on S3)',
      { every: 50, tries: 600 },
    );
    assert.deepEqual(await usage(), {
      files_used: 0,
      bytes_used: 0,
      files_reserved: 1,
      bytes_reserved: size,
      open_uploads: 1,
    });

    await doomed.kill();
    // Nothing asks for it: the peer's periodic sweep finds the lease run out and ends it.
    await eventually(
      async () =>
        (await api(peer.url, env.WHARF_API_KEY, 'GET', `/v1/uploads/${upload.id}`)).body.status === 'expired',
      'the upload of the killed node is ended',
      { every: 100, tries: 1200 },
    );
    assert.deepEqual(await usage(), {
      files_used: 0,
      bytes_used: 0,
      files_reserved: 0,
      bytes_reserved: 0,
      open_uploads: 0,
    });
    const events = await api(peer.url, env.WHARF_API_KEY, 'GET', '/v1/events?type=upload.expired');
    assert.deepEqual(
      events.body.data.map((e: { data: { upload: { id: string } } }) => e.data.upload.id),
      [upload.id],
    );
    // Its bytes go too: the dead process's temp file, or the multipart upload left open on S3.
    await eventually(async () => (await pendingWrites(server())).length === 0, 'the partial body is freed', {
      every: 100,
      tries: 600,
    });
    assert.deepEqual(await storedKeys(server()), []);

    // The token's one file may be sent again.
    const bytes = randomBytes(4096);
    const again = directUpload(peer.url, token.secret, 'again.bin', bytes.length);
    again.req.end(bytes);
    const { status, body } = await again.answer;
    assert.equal(status, 201, body);
    assert.equal(JSON.parse(body).asset.sha256, createHash('sha256').update(bytes).digest('hex'));
  });

  test('a live node streaming a body for several leases keeps its upload, through every sweep, and completes it', async () => {
    const streaming = await node();
    const peer = nodes.find((n) => n.running() && n !== streaming) ?? (await node());
    const minted = await api(peer.url, env.WHARF_API_KEY, 'POST', '/v1/upload-tokens', {});
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const bytes = randomBytes(4 * 1024 * 1024);
    const { req, answer } = directUpload(streaming.url, minted.body.secret, 'slow.bin', bytes.length);
    let sent = 64 * 1024;
    req.write(bytes.subarray(0, sent));
    const upload = await thePending(peer.url);
    const first = Date.parse(upload.expires_at);
    // A trickle, while both nodes sweep every second: the upload stays pending, its lease moved
    // on by the node streaming it, until it has been renewed three leases past the first.
    await eventually(
      async () => {
        req.write(bytes.subarray(sent, sent + 4096));
        sent += 4096;
        const state = (await api(peer.url, env.WHARF_API_KEY, 'GET', `/v1/uploads/${upload.id}`)).body;
        assert.equal(state.status, 'pending', 'a live upload is never ended');
        return Date.parse(state.expires_at) >= first + 3 * LEASE_SECONDS * 1000;
      },
      'the lease is renewed while the body streams',
      { every: 200, tries: 600 },
    );
    req.end(bytes.subarray(sent));
    const { status, body } = await answer;
    assert.equal(status, 201, body);
    const asset = JSON.parse(body).asset;
    assert.equal(asset.sha256, createHash('sha256').update(bytes).digest('hex'));
    const state = await api(peer.url, env.WHARF_API_KEY, 'GET', `/v1/uploads/${upload.id}`);
    assert.equal(state.body.status, 'completed');
    assert.equal(state.body.asset_id, asset.id);
  });

  test('a renewal that fails (the database away) ends nothing: the sweep of the node streaming the body then judges no lease', async () => {
    const w = await startWharf();
    const leases = w.wharf.core.uploads.leases;
    const renew = leases.renew;
    const bytes = randomBytes(256 * 1024);
    const { req, answer } = directUpload(w.url, w.key, 'unrenewed.bin', bytes.length);
    try {
      req.write(bytes.subarray(0, 1024));
      const upload = await thePending(w.url, w.key);
      leases.renew = () => Promise.reject(new Error('the database is away'));
      // Its lease ran out while no renewal got through: its own node's sweep leaves it alone.
      w.clock.advance(leases.leaseMs * 2);
      assert.equal((await w.wharf.core.uploads.sweep()).expired, 0);
      assert.equal((await api(w.url, w.key, 'GET', `/v1/uploads/${upload.id}`)).body.status, 'pending');
      leases.renew = renew;
      assert.equal((await w.wharf.core.uploads.sweep()).expired, 0, 'renewed first, then judged');
      req.end(bytes.subarray(1024));
      const { status, body } = await answer;
      assert.equal(status, 201, body);
    } finally {
      leases.renew = renew;
      // A failed assertion left the body unfinished: the stop would wait for it.
      req.destroy();
      await w.close();
    }
  });

  // The sweep aborts open multipart uploads older than an hour as debris of writes that never
  // finished; a direct upload's is not one while its lease is live, however long it streams.
  test('on S3, the open multipart upload of a body streaming for more than an hour is not taken for debris', {
    skip:
      !storesOnS3 &&
      "the local store judges its own temp files by when they were last written, which a streaming body keeps recent; S3's multipart uploads by when they began",
  }, async () => {
    const w = await startWharf();
    const bytes = randomBytes(12 * 1024 * 1024);
    const { req, answer } = directUpload(w.url, w.key, 'long.bin', bytes.length);
    try {
      // More than a part: the body is an open multipart upload in the bucket.
      req.write(bytes.subarray(0, 10 * 1024 * 1024));
      await eventually(async () => (await pendingWrites(w)).length === 1, 'the multipart upload is open', {
        every: 50,
        tries: 600,
      });
      w.clock.advance(61 * 60_000);
      assert.deepEqual(await w.wharf.core.uploads.sweep(), { expired: 0, debris: 0, reconciled: 0 });
      assert.equal((await pendingWrites(w)).length, 1, 'the live write is left alone');
      req.end(bytes.subarray(10 * 1024 * 1024));
      const { status, body } = await answer;
      assert.equal(status, 201, body);
      assert.equal(JSON.parse(body).asset.sha256, createHash('sha256').update(bytes).digest('hex'));
    } finally {
      req.destroy();
      await w.close();
    }
  });
});
