import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { FsBlobStore } from '../../src/blobs/fs-store.js';
import { isWharfError } from '../../src/core/errors.js';
import { MULTIPART_LIMITS, type StoredPart } from '../../src/core/ports.js';
import { refusedForResources } from '../../src/core/unavailable.js';
import { localBlobStore } from '../helpers/fs-store.js';

const MIN = MULTIPART_LIMITS.minPartSize;
const KEY = 'acct/019b7c2a-1c2d-7e3f-8a4b-5c6d7e8f9a0b.bin';

let root: string;
let store: FsBlobStore;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'wharf-fs-multipart-'));
  store = await localBlobStore(root);
});
after(() => rm(root, { recursive: true, force: true }));

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function put(
  multipartId: string,
  partNumber: number,
  bytes: Buffer,
  extra: { md5?: string; key?: string } = {},
) {
  return store.writePart!({
    key: extra.key ?? KEY,
    multipartId,
    partNumber,
    body: Readable.from([bytes]),
    size: bytes.length,
    md5: extra.md5,
  });
}

async function refused(code: string, work: Promise<unknown>): Promise<void> {
  await assert.rejects(work, (err: unknown) => {
    assert.ok(isWharfError(err), String(err));
    assert.equal(err.code, code, err.message);
    return true;
  });
}

async function readAll(key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await store.read(key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('FsBlobStore multipart uploads', () => {
  test('parts compose, in order, into one object with S3’s composite ETag and recorded facts', async () => {
    const id = await store.createMultipart(KEY, 'video/mp4');
    assert.match(id, /^[A-Za-z0-9_-]{16,64}$/);
    const one = randomBytes(MIN);
    const two = randomBytes(MIN + 3);
    const three = randomBytes(1234);
    // Sent out of order, as parallel clients do.
    const p3 = await put(id, 3, three);
    const p1 = await put(id, 1, one);
    const p2 = await put(id, 2, two);
    assert.equal(p1.etag, `"${md5(one)}"`);
    assert.equal(p3.size, 1234);

    const listed = await store.listParts(KEY, id);
    assert.deepEqual(
      listed.map(({ partNumber, size, etag }) => ({ partNumber, size, etag })),
      [p1, p2, p3].map(({ partNumber, size, etag }) => ({ partNumber, size, etag })),
    );

    const whole = Buffer.concat([one, two, three]);
    const info = await store.completeMultipart(KEY, id, [
      { partNumber: 1, etag: p1.etag },
      // ETags are compared without their quotes, as S3 does.
      { partNumber: 2, etag: p2.etag.replaceAll('"', '') },
      { partNumber: 3, etag: p3.etag },
    ]);
    const composite = createHash('md5')
      .update(Buffer.concat([one, two, three].map((b) => Buffer.from(md5(b), 'hex'))))
      .digest('hex');
    assert.equal(info.etag, `"${composite}-3"`);
    assert.deepEqual(
      { size: info.size, sha256: info.sha256, md5: info.md5, contentType: info.contentType },
      { size: whole.length, sha256: sha256(whole), md5: md5(whole), contentType: 'video/mp4' },
    );
    assert.ok((await readAll(KEY)).equals(whole));
    assert.deepEqual(await store.head(KEY), {
      size: whole.length,
      sha256: sha256(whole),
      md5: md5(whole),
      contentType: 'video/mp4',
    });
    // The upload is over: its parts are freed and it is unknown from now on.
    assert.deepEqual(await readdir(join(root, 'multipart')), []);
    await refused('MULTIPART_NOT_FOUND', store.listParts(KEY, id));
    await refused(
      'MULTIPART_NOT_FOUND',
      store.completeMultipart(KEY, id, [{ partNumber: 1, etag: p1.etag }]),
    );
    await store.delete(KEY);
  });

  test('a part sent again replaces the earlier one of its number', async () => {
    const id = await store.createMultipart(KEY, 'text/plain');
    await put(id, 1, Buffer.from('first try'));
    const again = await put(id, 1, Buffer.from('second'));
    assert.deepEqual(
      (await store.listParts(KEY, id)).map((p) => [p.partNumber, p.size, p.etag]),
      [[1, 6, again.etag]],
    );
    const info = await store.completeMultipart(KEY, id, [{ partNumber: 1, etag: again.etag }]);
    assert.equal((await readAll(KEY)).toString(), 'second');
    assert.equal(
      info.etag,
      `"${createHash('md5')
        .update(Buffer.from(md5(Buffer.from('second')), 'hex'))
        .digest('hex')}-1"`,
    );
    await store.delete(KEY);
  });

  test('refusals leave the upload open, so the client can fix its list and complete', async () => {
    const id = await store.createMultipart(KEY, 'application/octet-stream');
    const small = await put(id, 1, Buffer.from('too small to be anything but last'));
    const last = await put(id, 2, Buffer.from('end'));
    await refused(
      'INVALID_PART_ORDER',
      store.completeMultipart(KEY, id, [
        { partNumber: 2, etag: last.etag },
        { partNumber: 1, etag: small.etag },
      ]),
    );
    await refused(
      'INVALID_PART_ORDER',
      store.completeMultipart(KEY, id, [
        { partNumber: 1, etag: small.etag },
        { partNumber: 1, etag: small.etag },
      ]),
    );
    await refused(
      'INVALID_PART',
      store.completeMultipart(KEY, id, [{ partNumber: 1, etag: `"${'0'.repeat(32)}"` }]),
    );
    await refused('INVALID_PART', store.completeMultipart(KEY, id, [{ partNumber: 3, etag: last.etag }]));
    await refused('INVALID_PART', store.completeMultipart(KEY, id, []));
    await refused(
      'PART_TOO_SMALL',
      store.completeMultipart(KEY, id, [
        { partNumber: 1, etag: small.etag },
        { partNumber: 2, etag: last.etag },
      ]),
    );
    assert.equal(await store.head(KEY), undefined);
    assert.deepEqual(
      (await store.listParts(KEY, id)).map((p) => p.partNumber),
      [1, 2],
    );
    // A single part may be any size.
    await store.completeMultipart(KEY, id, [{ partNumber: 2, etag: last.etag }]);
    assert.equal((await readAll(KEY)).toString(), 'end');
    await store.delete(KEY);
  });

  test('a part whose Content-MD5 does not match is refused and not stored', async () => {
    const id = await store.createMultipart(KEY, 'text/plain');
    await refused(
      'CHECKSUM_MISMATCH',
      put(id, 1, Buffer.from('payload'), { md5: md5(Buffer.from('other')) }),
    );
    assert.deepEqual(await store.listParts(KEY, id), []);
    const ok = await put(id, 1, Buffer.from('payload'), { md5: md5(Buffer.from('payload')) });
    assert.equal(ok.etag, `"${md5(Buffer.from('payload'))}"`);
    const temps = await readdir(join(root, 'tmp'), { recursive: true, withFileTypes: true });
    assert.deepEqual(
      temps.filter((e) => e.isFile()),
      [],
      'no temp file is left',
    );
    await store.abortMultipart(KEY, id);
  });

  test('a body shorter than its declared length is refused', async () => {
    const id = await store.createMultipart(KEY, 'text/plain');
    await refused(
      'SIZE_MISMATCH',
      store.writePart!({
        key: KEY,
        multipartId: id,
        partNumber: 1,
        body: Readable.from([Buffer.from('abc')]),
        size: 4,
      }),
    );
    assert.deepEqual(await store.listParts(KEY, id), []);
    await store.abortMultipart(KEY, id);
  });

  test('ids of other keys, unknown ids and hostile ids are MULTIPART_NOT_FOUND', async () => {
    const id = await store.createMultipart(KEY, 'text/plain');
    await refused('MULTIPART_NOT_FOUND', put(id, 1, Buffer.from('x'), { key: 'acct/other.bin' }));
    await refused('MULTIPART_NOT_FOUND', store.listParts('acct/other.bin', id));
    await refused('MULTIPART_NOT_FOUND', store.listParts(KEY, 'A'.repeat(32)));
    await refused('MULTIPART_NOT_FOUND', store.listParts(KEY, '../../objects'));
    await refused('VALIDATION_FAILED', put(id, 0, Buffer.from('x')));
    await refused('VALIDATION_FAILED', put(id, 10_001, Buffer.from('x')));
    // An abort naming another key frees nothing.
    await store.abortMultipart('acct/other.bin', id);
    assert.deepEqual(await store.listParts(KEY, id), []);
    await store.abortMultipart(KEY, id);
  });

  test('abort frees the parts; aborting again is a no-op; parts after abort find no upload', async () => {
    const id = await store.createMultipart(KEY, 'text/plain');
    await put(id, 1, Buffer.from('bytes'));
    await store.abortMultipart(KEY, id);
    assert.deepEqual(await readdir(join(root, 'multipart')), []);
    await store.abortMultipart(KEY, id);
    await refused('MULTIPART_NOT_FOUND', put(id, 2, Buffer.from('late')));
    await refused('MULTIPART_NOT_FOUND', store.listParts(KEY, id));
  });

  test('two completions at once: one composes, the other finds no upload', async () => {
    const id = await store.createMultipart(KEY, 'text/plain');
    const part = await put(id, 1, randomBytes(256 * 1024));
    const results = await Promise.allSettled([
      store.completeMultipart(KEY, id, [{ partNumber: 1, etag: part.etag }]),
      store.completeMultipart(KEY, id, [{ partNumber: 1, etag: part.etag }]),
    ]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.ok(isWharfError(failed.reason, 'MULTIPART_NOT_FOUND'), String(failed.reason));
    assert.equal((await store.head(KEY))?.size, 256 * 1024);
    await store.delete(KEY);
  });

  test('sweepIncomplete removes uploads started before the cut-off and keeps later ones', async () => {
    const old = await store.createMultipart(KEY, 'text/plain');
    await put(old, 1, Buffer.from('old'));
    const fresh = await store.createMultipart(KEY, 'text/plain');
    const past = new Date(Date.now() - 48 * 3600_000);
    await utimes(join(root, 'multipart', old, 'manifest.json'), past, past);
    assert.equal(await store.sweepIncomplete(Date.now() - 24 * 3600_000), 1);
    await refused('MULTIPART_NOT_FOUND', store.listParts(KEY, old));
    assert.deepEqual(await store.listParts(KEY, fresh), []);
    await store.abortMultipart(KEY, fresh);
  });

  test('multipart uploads survive a restart (init), so clients can resume them', async () => {
    const id = await store.createMultipart(KEY, 'text/plain');
    const part = await put(id, 1, Buffer.from('kept'));
    await store.init();
    const listed: StoredPart[] = await store.listParts(KEY, id);
    assert.deepEqual(
      listed.map((p) => p.etag),
      [part.etag],
    );
    await store.abortMultipart(KEY, id);
  });

  test("a start reopens the uploads whose completion died with its process, never a live process's", async () => {
    // A completion claims its upload by renaming it to `.completing-<id>@<owner>`. Claims as a
    // live server beside this one (this process), a killed one (an exited pid) and an older
    // release (no owner) leave them; a start settles the last two only.
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    const owners = {
      live: `@${hostname()}-${process.pid}-0123abcd`,
      gone: `@${hostname()}-${gone}-0123abcd`,
      older: '',
    };
    const ids: Record<string, string> = {};
    for (const [name, owner] of Object.entries(owners)) {
      const id = await store.createMultipart(KEY, 'text/plain');
      await put(id, 1, Buffer.from(name));
      await rename(join(root, 'multipart', id), join(root, 'multipart', `.completing-${id}${owner}`));
      ids[name] = id;
    }
    await store.init();
    await refused('MULTIPART_NOT_FOUND', store.listParts(KEY, ids.live!));
    assert.ok(existsSync(join(root, 'multipart', `.completing-${ids.live}${owners.live}`)));
    assert.equal((await store.listParts(KEY, ids.gone!)).length, 1);
    assert.equal((await store.listParts(KEY, ids.older!)).length, 1);
    await rename(
      join(root, 'multipart', `.completing-${ids.live}${owners.live}`),
      join(root, 'multipart', ids.live!),
    );
    for (const id of Object.values(ids)) await store.abortMultipart(KEY, id);
  });

  test('a part file holds its MD5 and its bytes, nothing else lies next to it', async () => {
    const id = await store.createMultipart(KEY, 'text/plain');
    const bytes = Buffer.from('abc');
    await put(id, 7, bytes);
    assert.deepEqual((await readdir(join(root, 'multipart', id))).sort(), ['7', 'manifest.json']);
    const file = await readFile(join(root, 'multipart', id, '7'));
    assert.ok(file.equals(Buffer.concat([Buffer.from(md5(bytes), 'hex'), bytes])));
    await store.abortMultipart(KEY, id);
  });
});

describe('FsBlobStore deletion', () => {
  test('an object storage refuses to remove is refused as not permitted (STORAGE_DENIED), not a failure of its own', async (t) => {
    const key = 'acct/019b7c2a-1c2d-7e3f-8a4b-5c6d7e8f9a0c.bin';
    const file = store.localFile(key);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, 'bytes');
    // As root (the suite), only an immutable file refuses its removal.
    const chattr = spawnSync('chattr', ['+i', file]);
    if (chattr.status !== 0) {
      t.skip(`chattr +i is not available here (${chattr.stderr?.toString().trim() || chattr.error})`);
      return;
    }
    try {
      await assert.rejects(store.delete(key), (err: unknown) => {
        const refusal = refusedForResources(err);
        assert.ok(isWharfError(refusal), `not taken for a refusal: ${String(err)}`);
        assert.equal(refusal.code, 'STORAGE_DENIED');
        return true;
      });
    } finally {
      spawnSync('chattr', ['-i', file]);
    }
    await store.delete(key);
    assert.equal(existsSync(file), false);
    // Gone already: nothing to do, no error.
    await store.delete(key);
  });
});
