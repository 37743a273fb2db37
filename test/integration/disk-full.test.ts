import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, createWriteStream, existsSync, openSync, statfsSync, writeSync } from 'node:fs';
import { mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect as connectTcp, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { sql } from 'kysely';
import { AFTER_COMMIT_CHECK_MS } from '../../src/core/assets.js';
import { isWharfError } from '../../src/core/errors.js';
import { connect } from '../../src/db/connect.js';
import { putPresigned, uploadRaw } from '../helpers/assets.js';
import {
  type Backing,
  deployment,
  pendingWrites,
  provision,
  storedKeys,
  storesOnS3,
  withBucket,
} from '../helpers/deployment.js';
import { answerOf, api, type JsonResponse } from '../helpers/http.js';
import { ERROR, LogCollector, parseScrape, seriesValue } from '../helpers/observe.js';
import { sendRaw } from '../helpers/raw-http.js';
import { startWharfProcess, type WharfProcess } from '../helpers/server-process.js';
import { freePort, startWharf, type TestWharf } from '../helpers/wharf.js';

/*
 * The disk under the data directory fills up mid-upload. Every flow that writes there answers
 * 507 STORAGE_FULL in its own API's shape (never a 500), keeps nothing half-written, and the
 * node goes on: once space is free again the same uploads succeed. The data directory is a
 * small tmpfs of this test's own, so "full" is real: the kernel's ENOSPC, and SQLite's
 * SQLITE_FULL when its own writes find no room.
 */
const skip =
  deployment !== 'embedded'
    ? 'the scaled deployment keeps bytes in the S3 store and rows in PostgreSQL; a full bucket is the store’s own refusal (its used-up quota is tested below), not a disk of Wharf’s, and a full local disk does not stop the database recording an upload’s ending'
    : process.getuid?.() !== 0
      ? 'mounting a small tmpfs as the data directory needs root'
      : false;

const DISK_MIB = 48;
const BIG = 64 * 1024 * 1024;

describe('a full disk under the data directory (embedded deployment)', { skip }, () => {
  let mountPoint: string;
  let dataDir: string;
  let w: TestWharf;
  let big: Buffer;
  const logs = new LogCollector();

  before(async () => {
    mountPoint = await mkdtemp(join(tmpdir(), 'wharf-full-disk-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${DISK_MIB}m`, 'tmpfs', mountPoint]);
    dataDir = join(mountPoint, 'data');
    // Kept to a file as well when DISK_FULL_LOG names one.
    if (process.env.DISK_FULL_LOG) logs.stream.pipe(createWriteStream(process.env.DISK_FULL_LOG));
    w = await startWharf({ env: { WHARF_DATA_DIR: dataDir }, logStream: logs.stream });
    big = randomBytes(BIG);
  });
  after(async () => {
    await w?.close();
    if (mountPoint) {
      execFileSync('umount', [mountPoint]);
      await rm(mountPoint, { recursive: true, force: true });
    }
  });

  /** Files under the data directory other than the database's, as paths relative to it. */
  async function filesBeside(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, rel: string) => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const path = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory()) await walk(join(dir, entry.name), path);
        else if (!/^wharf\.db(-wal|-shm)?$/.test(path)) out.push(path);
      }
    };
    await walk(dataDir, '');
    return out.sort();
  }

  const freeMiB = () => {
    const fs = statfsSync(mountPoint);
    return (fs.bavail * fs.bsize) / 2 ** 20;
  };

  test('a direct upload: 507 STORAGE_FULL, its temp file gone, and the disk usable again', async () => {
    const before = await filesBeside();
    const res = await fetch(`${w.url}/v1/assets?name=big.bin`, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(big),
    });
    const body = await res.json();
    assert.equal(res.status, 507, JSON.stringify(body));
    assert.equal(body.error.code, 'STORAGE_FULL');
    assert.equal(res.headers.get('retry-after'), null, 'waiting does not free a disk');
    const metrics = parseScrape((await w.wharf.metrics.scrape()).body);
    const failed = { flow: 'direct', outcome: 'failed', error_code: 'STORAGE_FULL' };
    assert.equal(seriesValue(metrics, 'wharf_uploads_total', failed), 1);
    // Its upload ended as the client and the metrics were told, not as a connection that broke.
    const events = await api(w.url, w.key, 'GET', '/v1/events?type=upload.failed&limit=1000');
    assert.equal(events.body.data.length, 1, JSON.stringify(events.body));
    const [event] = events.body.data;
    assert.equal(event.data.error.code, 'STORAGE_FULL', JSON.stringify(event));
    const ended = await api(w.url, w.key, 'GET', `/v1/uploads/${event.data.upload.id}`);
    assert.deepEqual(ended.body.ended, { reason: 'failed', error: event.data.error });
    // What an operator alerts on before it comes to this: the data directory's disk.
    assert.equal(seriesValue(metrics, 'wharf_data_dir_size_bytes'), DISK_MIB * 2 ** 20);
    assert.ok(seriesValue(metrics, 'wharf_data_dir_free_bytes') > DISK_MIB * 2 ** 19);
    assert.deepEqual(await filesBeside(), before, 'something of the refused upload was left');
    assert.ok(freeMiB() > DISK_MIB / 2, `only ${freeMiB()} MiB free after the refusal`);
    assert.equal((await api(w.url, w.key, 'GET', '/v1/assets?limit=100')).body.data.length, 0);

    const small = await fetch(`${w.url}/v1/assets?name=small.bin`, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(big.subarray(0, 1024 * 1024)),
    });
    assert.equal(small.status, 201);
  });

  test('a presigned PUT to the storage endpoint: 507 InsufficientStorage in S3’s XML; the upload stays open', async () => {
    const created = await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'big.bin', size: BIG });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const intent = created.body;
    const before = await filesBeside();
    const res = await putPresigned(intent, big);
    const text = await res.text();
    assert.equal(res.status, 507, text);
    assert.match(text, /<Code>InsufficientStorage<\/Code>/);
    assert.deepEqual(await filesBeside(), before, 'something of the refused PUT was left');
    // Nothing was stored, so the intent is still pending: the client may PUT again later.
    const upload = await api(w.url, w.key, 'GET', `/v1/uploads/${intent.id}`);
    assert.equal(upload.body.status, 'pending');
    const fits = await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'fits.bin', size: 1024 });
    assert.equal((await putPresigned(fits.body, big.subarray(0, 1024))).status, 200);
  });

  test('a multipart part: 507 InsufficientStorage; no part file is left, the part can be sent again', async () => {
    const started = await api(w.url, w.key, 'POST', '/v1/multipart', { name: 'parts.bin', size: BIG + 1024 });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const id = started.body.id as string;
    const sign = async () => {
      const signed = await api(w.url, w.key, 'POST', `/v1/multipart/${id}/parts`, { partNumbers: [1] });
      assert.equal(signed.status, 200, JSON.stringify(signed.body));
      return signed.body.parts[0] as { url: string; headers: Record<string, string> };
    };
    const before = await filesBeside();
    const part = await sign();
    const res = await fetch(part.url, { method: 'PUT', headers: part.headers, body: new Uint8Array(big) });
    const text = await res.text();
    assert.equal(res.status, 507, text);
    assert.match(text, /<Code>InsufficientStorage<\/Code>/);
    assert.deepEqual(await filesBeside(), before, 'something of the refused part was left');
    assert.deepEqual((await api(w.url, w.key, 'GET', `/v1/multipart/${id}/parts`)).body, []);
    // A part that fits is taken once there is room (the refused one took none).
    const again = await sign();
    const small = await fetch(again.url, {
      method: 'PUT',
      headers: again.headers,
      body: new Uint8Array(big.subarray(0, 1024 * 1024)),
    });
    assert.equal(small.status, 200, await small.text());
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/multipart/${id}`)).status, 204);
  });

  test('a tus PATCH: 507 STORAGE_FULL with Tus-Resumable; the PATCH’s bytes are given back and the upload resumes', async () => {
    const tusHeaders = { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${w.key}` };
    const created = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        ...tusHeaders,
        'Upload-Length': String(BIG),
        'Upload-Metadata': `filename ${Buffer.from('big.bin').toString('base64')}`,
      },
    });
    assert.equal(created.status, 201, await created.text());
    const url = created.headers.get('location')!;
    const countedBefore = await storageFullCount(w, 'tus');
    const res = await fetch(url, {
      method: 'PATCH',
      headers: { ...tusHeaders, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body: new Uint8Array(big),
    });
    const text = await res.text();
    assert.equal(res.status, 507, text);
    assert.equal(res.headers.get('tus-resumable'), '1.0.0');
    assert.equal(JSON.parse(text).error.code, 'STORAGE_FULL');
    // Counted as every other flow's refusal for want of room is (it was not counted at all).
    assert.equal(await storageFullCount(w, 'tus'), countedBefore + 1);
    // What this PATCH wrote is given back (kept, it would leave the node without room): the
    // upload resumes from where the PATCH began, and the rest of the node has its space.
    const head = await fetch(url, { method: 'HEAD', headers: tusHeaders });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('upload-offset'), '0');
    assert.ok(freeMiB() > DISK_MIB / 2, `only ${freeMiB()} MiB free after the refused PATCH`);
    const first = big.subarray(0, 1024 * 1024);
    const patched = await fetch(url, {
      method: 'PATCH',
      headers: { ...tusHeaders, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body: new Uint8Array(first),
    });
    assert.equal(patched.status, 204, await patched.text());
    assert.equal(patched.headers.get('upload-offset'), String(first.length));
    assert.equal((await fetch(url, { method: 'DELETE', headers: tusHeaders })).status, 204);
  });

  test('a Resumable Uploads for HTTP append: 507 STORAGE_FULL, counted; the upload resumes from where the append began', async () => {
    const auth = { Authorization: `Bearer ${w.key}` };
    const created = await fetch(`${w.url}/v1/resumable/?name=big-rufh.bin`, {
      method: 'POST',
      headers: { ...auth, 'Upload-Complete': '?0', 'Upload-Length': String(BIG) },
    });
    assert.equal(created.status, 201, await created.text());
    const url = new URL(created.headers.get('location')!, w.url).href;
    const countedBefore = await storageFullCount(w, 'rufh');
    const append = (body: Buffer, complete: boolean) =>
      fetch(url, {
        method: 'PATCH',
        headers: {
          ...auth,
          'Upload-Offset': '0',
          'Upload-Complete': complete ? '?1' : '?0',
          'Content-Type': 'application/partial-upload',
        },
        body: new Uint8Array(body),
      });
    const res = await append(big, true);
    const text = await res.text();
    assert.equal(res.status, 507, text);
    assert.equal(JSON.parse(text).error.code, 'STORAGE_FULL');
    assert.equal(await storageFullCount(w, 'rufh'), countedBefore + 1);
    const head = await fetch(url, { method: 'HEAD', headers: auth });
    assert.equal(head.headers.get('upload-offset'), '0');
    assert.ok(freeMiB() > DISK_MIB / 2, `only ${freeMiB()} MiB free after the refused append`);
    const resumed = await append(big.subarray(0, 1024 * 1024), false);
    assert.ok(resumed.ok, `${resumed.status} ${await resumed.text()}`);
    assert.equal((await fetch(url, { method: 'DELETE', headers: auth })).status, 204);
  });

  test('the tus PATCH that brings the last bytes: its answer says what was kept, and the upload completes', async () => {
    await lastBytesOnFullDisk({ w, mountPoint, dataDir, logs }, tusProtocol(w), 'either');
  });

  test('the Resumable Uploads for HTTP append that completes: the same', async () => {
    await lastBytesOnFullDisk({ w, mountPoint, dataDir, logs }, rufhProtocol(w), 'either');
  });

  test('a disk full to the last block: /readyz stays 200 with storage "full", and downloads and listings go on', async () => {
    const bytes = randomBytes(4096);
    const stored = await fetch(`${w.url}/v1/assets?name=kept.bin`, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(bytes),
    });
    assert.equal(stored.status, 201);
    const { asset } = await stored.json();
    const filler = join(mountPoint, 'filler');
    try {
      await fillUp(filler);
      // Past the second a readiness answer is reused for.
      w.clock.advance(2000);
      const ready = await api(w.url, undefined, 'GET', '/readyz');
      // It answered 503 "storage (error)": a full disk took the node out of rotation.
      assert.equal(ready.status, 200, JSON.stringify(ready.body));
      assert.deepEqual(ready.body, {
        status: 'ready',
        checks: { database: { status: 'ok' }, storage: { status: 'full' } },
      });
      const content = await fetch(`${w.url}/v1/assets/${asset.id}/content`, {
        headers: { 'x-api-key': w.key },
      });
      assert.equal(content.status, 200);
      assert.deepEqual(Buffer.from(await content.arrayBuffer()), bytes);
      assert.equal((await api(w.url, w.key, 'GET', '/v1/assets?limit=100')).status, 200);
    } finally {
      await rm(filler, { force: true });
      // The answer above is not reused by the tests after this one.
      w.clock.advance(2000);
    }
    assert.deepEqual((await api(w.url, undefined, 'GET', '/readyz')).body.checks.storage, { status: 'ok' });
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${asset.id}`)).status, 204);
  });

  test('a disk full to the last block, the database’s too: a tus HEAD and a Resumable Uploads for HTTP HEAD still tell the offset', async () => {
    const part = randomBytes(64 * 1024);
    const tusHeaders = { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${w.key}` };
    const created = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        ...tusHeaders,
        'Upload-Length': String(4 * part.length),
        'Upload-Metadata': `filename ${Buffer.from('head.bin').toString('base64')}`,
      },
    });
    assert.equal(created.status, 201, await created.text());
    const tusUrl = created.headers.get('location')!;
    const patched = await fetch(tusUrl, {
      method: 'PATCH',
      headers: { ...tusHeaders, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body: new Uint8Array(part),
    });
    assert.equal(patched.status, 204, await patched.text());
    const auth = { Authorization: `Bearer ${w.key}` };
    const opened = await fetch(`${w.url}/v1/resumable/?name=head-rufh.bin`, {
      method: 'POST',
      headers: { ...auth, 'Upload-Complete': '?0', 'Upload-Length': String(4 * part.length) },
      body: new Uint8Array(part),
    });
    assert.equal(opened.status, 201, await opened.text());
    const rufhUrl = new URL(opened.headers.get('location')!, w.url).href;

    const filler = join(mountPoint, 'filler');
    try {
      // The database's next write (a lock's lease) must grow its log, and the disk has no room.
      await emptyWalThenFill(filler);
      // A HEAD is how a client learns where to resume: it needs no room. It answered 507 with
      // no Upload-Offset (the lock's lease could not be recorded).
      const tusHead = await fetch(tusUrl, { method: 'HEAD', headers: tusHeaders });
      assert.equal(tusHead.status, 200);
      assert.equal(tusHead.headers.get('upload-offset'), String(part.length));
      assert.equal(tusHead.headers.get('upload-length'), String(4 * part.length));
      const rufhHead = await fetch(rufhUrl, { method: 'HEAD', headers: auth });
      assert.equal(rufhHead.status, 204);
      assert.equal(rufhHead.headers.get('upload-offset'), String(part.length));
      assert.equal(rufhHead.headers.get('upload-complete'), '?0');
      // Writing still needs its lock (and room): refused as before.
      const refused = await fetch(tusUrl, {
        method: 'PATCH',
        headers: {
          ...tusHeaders,
          'Upload-Offset': String(part.length),
          'Content-Type': 'application/offset+octet-stream',
        },
        body: new Uint8Array(part),
      });
      assert.equal(refused.status, 507, await refused.text());
    } finally {
      await rm(filler, { force: true });
    }
    const head = await fetch(tusUrl, { method: 'HEAD', headers: tusHeaders });
    assert.equal(head.headers.get('upload-offset'), String(part.length));
    assert.equal((await fetch(tusUrl, { method: 'DELETE', headers: tusHeaders })).status, 204);
    assert.equal((await fetch(rufhUrl, { method: 'DELETE', headers: auth })).status, 204);
  });

  test('the database’s own writes: 507 STORAGE_FULL (SQLITE_FULL), never a 500; writes resume once there is room', async () => {
    const filler = join(mountPoint, 'filler');
    // Everything but a few KiB taken by a file that is not Wharf's.
    await writeFile(filler, Buffer.alloc(Math.max(0, Math.floor(freeMiB() * 2 ** 20) - 16 * 1024)));
    try {
      const files = Array.from({ length: 100 }, (_, i) => ({ name: `f${i}.bin`, size: 1 }));
      let refused: JsonResponse | undefined;
      // Each batch adds rows (uploads, events) the write-ahead log must take: it soon finds no room.
      for (let i = 0; i < 200 && !refused; i++) {
        const res = await api(w.url, w.key, 'POST', '/v1/uploads', { files });
        if (res.status !== 201) refused = res;
      }
      assert.ok(refused, 'every batch was recorded on a full disk');
      const metrics = parseScrape((await w.wharf.metrics.scrape()).body);
      assert.ok(
        seriesValue(metrics, 'wharf_data_dir_free_bytes') < 2 ** 20,
        'the disk does not read as full',
      );
      assert.equal(refused.status, 507, JSON.stringify(refused.body));
      assert.equal(refused.body.error.code, 'STORAGE_FULL');
    } finally {
      await rm(filler, { force: true });
    }
    assert.equal(existsSync(filler), false);
    const res = await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'after.bin', size: 1 });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal((await fetch(`${w.url}/readyz`)).status, 200);
  });

  test('direct uploads the database has no room to record: 507, every one counted, and no bytes of theirs kept', async () => {
    const filler = join(mountPoint, 'filler');
    await writeFile(filler, Buffer.alloc(Math.max(0, Math.floor(freeMiB() * 2 ** 20) - 300 * 1024)));
    const failed = { flow: 'direct', outcome: 'failed', error_code: 'STORAGE_FULL' };
    const counted = async () =>
      seriesValue(parseScrape((await w.wharf.metrics.scrape()).body), 'wharf_uploads_total', failed) ?? 0;
    try {
      const before = new Set(await filesBeside());
      const countedBefore = await counted();
      const kept: string[] = [];
      let refused = 0;
      for (let i = 0; i < 15; i++) {
        const res = await fetch(`${w.url}/v1/assets?name=row-${i}.bin`, {
          method: 'POST',
          headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
          body: new Uint8Array(randomBytes(30_000)),
        });
        const body = await res.json();
        if (res.status === 201) {
          kept.push(body.asset.id);
          continue;
        }
        assert.equal(res.status, 507, JSON.stringify(body));
        assert.equal(body.error.code, 'STORAGE_FULL');
        refused += 1;
      }
      assert.ok(refused > 0, 'the database found room for every row');
      assert.equal(await counted(), countedBefore + refused, 'each refusal is counted');
      // The objects added are the kept assets' (random bytes: one each), none of a refused upload.
      const added = (await filesBeside()).filter((path) => !before.has(path));
      const objects = added.filter((path) => path.startsWith('blobs/objects/'));
      assert.equal(objects.length, kept.length, `objects: ${objects.join(', ')}`);
      assert.deepEqual(
        added.filter((path) => !path.startsWith('blobs/objects/') && !path.startsWith('blobs/meta/')),
        [],
      );
    } finally {
      await rm(filler, { force: true });
    }
  });

  test('direct uploads whose failure the database had no room to record: ended once it has, what they held given back', async () => {
    // A browser's token: two files, two open uploads. Each declared upload holds a file, its
    // declared bytes and an open-upload slot until its row ends.
    const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {
      max_files: 2,
      max_bytes: 8 * 2 ** 20,
      max_open_uploads: 2,
    });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const token = minted.body.secret as string;
    const usage = async () =>
      (await api(w.url, w.key, 'GET', `/v1/upload-tokens/${minted.body.token.id}`)).body.usage;
    const pending = async () =>
      (await api(w.url, w.key, 'GET', '/v1/uploads?status=pending&limit=100')).body.data.filter(
        (u: { token_id: string | null }) => u.token_id === minted.body.token.id,
      ) as { id: string; status: string }[];
    const before = await filesBeside();
    const declared = 2 * 2 ** 20;
    const requests = ['a', 'b'].map((name) => {
      const req = request(`${w.url}/v1/assets?name=${name}.bin`, {
        method: 'POST',
        headers: {
          'x-api-key': token,
          'content-type': 'application/octet-stream',
          'content-length': String(declared),
        },
      });
      const answer = answerOf(req);
      // A few bytes only: when the write fails, removing what it wrote frees less than the
      // database's write needs.
      req.write(big.subarray(0, 100));
      return { req, answer };
    });
    for (let i = 0; i < 200 && (await pending()).length < 2; i++) await sleep(50);
    const uploads = await pending();
    assert.equal(uploads.length, 2, 'both uploads are recorded');

    const filler = join(mountPoint, 'filler');
    try {
      // The uploads' writes fail (ENOSPC), then so does recording that.
      await emptyWalThenFill(filler);
      for (const { req } of requests) req.end(big.subarray(100, declared));
      for (const { answer } of requests) {
        const { status, body } = await answer;
        assert.equal(status, 507, body);
        assert.equal(JSON.parse(body).error.code, 'STORAGE_FULL');
      }
      assert.equal((await pending()).length, 2, 'the database had room to record the failures');
      // Recording still fails while the disk is full: the endings are kept for later.
      await w.wharf.sweep();
      assert.equal((await pending()).length, 2);
    } finally {
      await rm(filler, { force: true });
    }

    // Once there is room: a cancel ends one at once (it is no longer running); the node's own
    // retry (every 5 s) records the other, with no sweep (sweeps are off in tests, and may be in
    // production: WHARF_SWEEP_INTERVAL=0).
    const [first, second] = uploads as unknown as [{ id: string }, { id: string }];
    const cancelled = await api(w.url, token, 'DELETE', `/v1/uploads/${first.id}`);
    assert.equal(cancelled.status, 204, JSON.stringify(cancelled.body));
    const status = async (id: string) => (await api(w.url, w.key, 'GET', `/v1/uploads/${id}`)).body.status;
    assert.equal(await status(first.id), 'expired');
    for (let i = 0; i < 30 && (await status(second.id)) !== 'expired'; i++) await sleep(500);
    assert.equal(await status(second.id), 'expired', 'recorded by the retry, without a sweep');
    assert.deepEqual(await usage(), {
      files_used: 0,
      bytes_used: 0,
      files_reserved: 0,
      bytes_reserved: 0,
      open_uploads: 0,
    });
    // Each ended as it failed, with its request: upload.failed, not a cancel or an expiry.
    const events = await api(w.url, w.key, 'GET', '/v1/events?limit=1000');
    for (const { id } of [first, second]) {
      const ended = events.body.data.filter(
        (e: { type: string; data: { upload?: { id: string } } }) =>
          e.data.upload?.id === id && e.type !== 'upload.created',
      );
      assert.deepEqual(
        ended.map((e: { type: string }) => e.type),
        ['upload.failed'],
        JSON.stringify(ended),
      );
    }
    assert.deepEqual(await filesBeside(), before, 'something of the failed uploads was left');
    // The token's two files are its own again.
    for (const name of ['c', 'd']) {
      const res = await fetch(`${w.url}/v1/assets?name=${name}.bin`, {
        method: 'POST',
        headers: { 'x-api-key': token, 'content-type': 'application/octet-stream' },
        body: new Uint8Array(randomBytes(1000)),
      });
      assert.equal(res.status, 201, await res.text());
    }
  });

  /** Fills the tmpfs to its last page with `path`. */
  /**
   * The write-ahead log emptied, so the database's next write must grow it, then the disk
   * filled to the last page (at `filler`).
   */
  async function emptyWalThenFill(filler: string): Promise<void> {
    const db = new Database(join(dataDir, 'wharf.db'));
    try {
      db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      db.close();
    }
    await fillUp(filler);
  }

  async function fillUp(path: string): Promise<void> {
    const fd = openSync(path, 'w');
    try {
      for (const size of [2 ** 20, 4096]) {
        const chunk = Buffer.alloc(size);
        for (;;) {
          try {
            writeSync(fd, chunk);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
            throw err;
          }
        }
      }
    } finally {
      closeSync(fd);
    }
  }
});

/*
 * The database elsewhere (its own disk has room), so a resumable upload's lock and completion
 * are recorded, and only the bytes' disk is full: the request that brings the last bytes,
 * which fit in the file's last block, completes the upload. What completing writes beside the
 * bytes (their facts, a cache) must not refuse it: that answered 507 while the bytes were kept
 * and the upload completed at the next HEAD.
 */
describe('the last bytes of a resumable upload on a full disk, the database on another', { skip }, () => {
  let mountPoint: string;
  let dbDir: string;
  let dataDir: string;
  let w: TestWharf;
  const logs = new LogCollector();

  before(async () => {
    ({ mountPoint, dbDir, w } = await onSmallDisk('wharf-full-disk-', logs));
    dataDir = join(mountPoint, 'data');
  });
  after(async () => {
    await offSmallDisk({ w, mountPoint, dbDir });
  });

  test('tus: the last PATCH completes the upload and answers its asset', async () => {
    await lastBytesOnFullDisk({ w, mountPoint, dataDir, logs }, tusProtocol(w), 'completed');
  });

  test('Resumable Uploads for HTTP: the completing append answers the asset', async () => {
    await lastBytesOnFullDisk({ w, mountPoint, dataDir, logs }, rufhProtocol(w), 'completed');
  });
});

describe('a data directory that turns read-only under a running node, the database on another disk', {
  skip,
}, () => {
  let mountPoint: string;
  let dbDir: string;
  let w: TestWharf;

  before(async () => {
    ({ mountPoint, dbDir, w } = await onSmallDisk('wharf-read-only-'));
  });
  after(async () => {
    await offSmallDisk({ w, mountPoint, dbDir });
  });

  test('uploads are 500 STORAGE_DENIED, not INTERNAL, with no Retry-After, and go through once it is writable again', async () => {
    const upload = (name: string) =>
      uploadRaw(w, w.key, name, randomBytes(1000), { contentType: 'application/octet-stream' });
    assert.equal((await upload('before.bin')).status, 201);
    execFileSync('mount', ['-o', 'remount,ro', mountPoint]);
    try {
      const res = await upload('during.bin');
      assert.equal(res.status, 500, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'STORAGE_DENIED');
      assert.match(res.body.error.message, /may not use its storage \(EROFS on \w+\): an operator must mend/);
      // Not load: a Retry-After would hold a client (the SDK waits out a busy server) for what
      // only an operator mends.
      assert.equal(res.headers.get('retry-after'), null);
      const metrics = parseScrape((await w.wharf.metrics.scrape()).body);
      const refused = { flow: 'direct', outcome: 'failed', error_code: 'STORAGE_DENIED' };
      assert.equal(seriesValue(metrics, 'wharf_uploads_total', refused), 1, 'counted as it was answered');
      const events = await api(w.url, w.key, 'GET', '/v1/events?type=upload.failed');
      assert.equal(events.body.data.at(-1)?.data.error.code, 'STORAGE_DENIED', JSON.stringify(events.body));
    } finally {
      execFileSync('mount', ['-o', 'remount,rw', mountPoint]);
    }
    assert.equal((await upload('after.bin')).status, 201);
  });

  test('a deletion is 204 though the bytes cannot go yet; the free-asset job frees them once it can (h92)', async () => {
    const bytes = randomBytes(1000);
    const made = await uploadRaw(w, w.key, 'deleted-while-read-only.bin', bytes, {
      contentType: 'application/octet-stream',
    });
    assert.equal(made.status, 201);
    const objects = join(mountPoint, 'data', 'blobs', 'objects');
    const stored = async () =>
      (await readdir(objects, { recursive: true })).filter((f) => f.endsWith('.bin'));
    const before = await stored();
    execFileSync('mount', ['-o', 'remount,ro', mountPoint]);
    let deleted: JsonResponse;
    try {
      deleted = await api(w.url, w.key, 'DELETE', `/v1/assets/${made.body.asset.id}`);
    } finally {
      execFileSync('mount', ['-o', 'remount,rw', mountPoint]);
    }
    // The deletion was committed: the answer says so, and a retry finds nothing.
    assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${made.body.asset.id}`)).status, 404);
    // The free-asset job queued with the deletion (due an hour later: it only finishes what the
    // request could not) frees the bytes, now that the disk takes writes.
    assert.deepEqual(await stored(), before, 'the bytes wait for the job');
    w.clock.advance(AFTER_COMMIT_CHECK_MS + 1);
    assert.ok((await w.wharf.core.jobs.drain()) >= 1);
    assert.equal((await stored()).length, before.length - 1, 'its bytes were freed');
  });
});

/**
 * A server whose data directory is on a tmpfs of 8 MiB of its own (`<mountPoint>/data`) and
 * whose SQLite database is on another disk, so only the data directory's disk is at stake.
 */
async function onSmallDisk(prefix: string, logs?: LogCollector) {
  const mountPoint = await mkdtemp(join(tmpdir(), prefix));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint]);
  const dbDir = await mkdtemp(join(tmpdir(), `${prefix}db-`));
  try {
    const w = await startWharf({
      env: {
        WHARF_DATA_DIR: join(mountPoint, 'data'),
        WHARF_DATABASE_URL: `sqlite://${join(dbDir, 'wharf.db')}`,
      },
      ...(logs && { logStream: logs.stream }),
    });
    return { mountPoint, dbDir, w };
  } catch (err) {
    // Not left mounted for the next run to trip over.
    await offSmallDisk({ mountPoint, dbDir });
    throw err;
  }
}

async function offSmallDisk(disk: { w?: TestWharf; mountPoint?: string; dbDir?: string }): Promise<void> {
  await disk.w?.close();
  if (disk.mountPoint) {
    execFileSync('umount', [disk.mountPoint]);
    await rm(disk.mountPoint, { recursive: true, force: true });
  }
  if (disk.dbDir) await rm(disk.dbDir, { recursive: true, force: true });
}

/** How many `flow` uploads `w` has counted as refused for want of room (wharf_uploads_total). */
async function storageFullCount(w: TestWharf, flow: string): Promise<number> {
  const metrics = parseScrape((await w.wharf.metrics.scrape()).body);
  return seriesValue(metrics, 'wharf_uploads_total', { flow, outcome: 'failed', error_code: 'STORAGE_FULL' });
}

/** A server whose data directory is the tmpfs at `mountPoint`. */
interface FullDisk {
  w: TestWharf;
  mountPoint: string;
  dataDir: string;
  logs: LogCollector;
}

/** Takes every byte left on the disk with files that are not Wharf's; returns them. */
async function fillDisk(mountPoint: string): Promise<string[]> {
  const fillers: string[] = [];
  // Large blocks, then small ones for what is left between them.
  for (const block of [2 ** 20, 4096]) {
    const path = join(mountPoint, `filler-${block}`);
    fillers.push(path);
    const handle = await open(path, 'w');
    try {
      const bytes = Buffer.alloc(block);
      for (;;) await handle.write(bytes);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    } finally {
      await handle.close();
    }
  }
  return fillers;
}

function storageFullLogged(logs: LogCollector): number {
  return logs.lines.filter(
    (line) =>
      line.level === ERROR &&
      line.msg === 'request failed' &&
      (line.err as { code?: unknown } | undefined)?.code === 'STORAGE_FULL',
  ).length;
}

/** The requests of a resumable protocol that lastBytesOnFullDisk sends. */
interface ResumableProtocol {
  /** Opens an upload of 1000 bytes with `first` (800 of them); its URL. */
  start: (first: Buffer) => Promise<string>;
  /** The rest, from offset 800 (the request that would complete the upload). */
  last: (url: string, rest: Buffer) => Promise<Response>;
  head: (url: string) => Promise<Response>;
  /** The asset a completing answer names. */
  assetOf: (res: Response) => Promise<string>;
}

/**
 * The request that brings an upload's last bytes onto a full disk. Either the upload
 * completes, answered with its asset, or it is a logged 507 that says where the upload stands:
 * nothing of the request kept (the offset where it began, to resume from), or, when the bytes
 * were written and only completing found no room, `details.offset` its length (the bytes
 * kept: a HEAD once there is room completes it). Before, a 507 whose bytes were kept
 * told the client to send them again, and the upload completed at the next HEAD.
 */
async function lastBytesOnFullDisk(
  { w, mountPoint, dataDir, logs }: FullDisk,
  protocol: ResumableProtocol,
  expect: 'completed' | 'either',
): Promise<void> {
  const bytes = randomBytes(1000);
  const url = await protocol.start(bytes.subarray(0, 800));
  const logged = storageFullLogged(logs);
  const fillers = await fillDisk(mountPoint);
  let resend = false;
  try {
    const res = await protocol.last(url, bytes.subarray(800));
    if (res.status === 507 && expect === 'either') {
      const { error } = await res.json();
      assert.equal(error.code, 'STORAGE_FULL');
      assert.equal(storageFullLogged(logs), logged + 1, 'the 507 is logged at error');
      const kept = error.details?.offset;
      assert.ok(kept === undefined || kept === 1000, JSON.stringify(error));
      const head = await protocol.head(url);
      // Where the 507 says the upload stands (a HEAD may complete it if there is room by now).
      if (head.status !== 507) assert.equal(head.headers.get('upload-offset'), String(kept ?? 800));
      resend = kept === undefined;
    } else {
      assert.ok(res.ok, `${res.status} ${await res.clone().text()}`);
      assert.ok(await protocol.assetOf(res), 'completed: the answer names its asset');
    }
  } finally {
    for (const filler of fillers) await rm(filler, { force: true });
  }
  if (resend) assert.ok((await protocol.last(url, bytes.subarray(800))).ok, 'the rest, sent again');
  // With room again, a HEAD answers the completed upload and its asset.
  const head = await protocol.head(url);
  assert.ok(head.ok, `HEAD: ${head.status}`);
  assert.equal(head.headers.get('upload-offset'), '1000');
  const assetId = head.headers.get('wharf-asset-id') ?? '';
  const content = await fetch(`${w.url}/v1/assets/${assetId}/content`, { headers: { 'x-api-key': w.key } });
  assert.equal(content.status, 200);
  assert.deepEqual(Buffer.from(await content.arrayBuffer()), bytes);
  const left = await readdir(join(dataDir, 'blobs', 'tmp'), { recursive: true, withFileTypes: true });
  assert.deepEqual(
    left.filter((entry) => entry.isFile()).map((entry) => entry.name),
    [],
    'nothing of the completion is left behind',
  );
}

function tusProtocol(w: TestWharf): ResumableProtocol {
  const tusHeaders = { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${w.key}` };
  const patch = (url: string, offset: number, body: Buffer) =>
    fetch(url, {
      method: 'PATCH',
      headers: {
        ...tusHeaders,
        'Upload-Offset': String(offset),
        'Content-Type': 'application/offset+octet-stream',
      },
      body: new Uint8Array(body),
    });
  return {
    start: async (first) => {
      const created = await fetch(`${w.url}/v1/tus/`, {
        method: 'POST',
        headers: {
          ...tusHeaders,
          'Upload-Length': '1000',
          'Upload-Metadata': `filename ${Buffer.from('last.bin').toString('base64')}`,
        },
      });
      assert.equal(created.status, 201, await created.text());
      const url = created.headers.get('location')!;
      assert.equal((await patch(url, 0, first)).status, 204);
      return url;
    },
    last: (url, rest) => patch(url, 800, rest),
    head: (url) => fetch(url, { method: 'HEAD', headers: tusHeaders }),
    assetOf: async (res) => res.headers.get('wharf-asset-id') ?? '',
  };
}

function rufhProtocol(w: TestWharf): ResumableProtocol {
  const auth = { Authorization: `Bearer ${w.key}` };
  return {
    start: async (first) => {
      const created = await fetch(`${w.url}/v1/resumable/?name=last-rufh.bin`, {
        method: 'POST',
        headers: { ...auth, 'Upload-Complete': '?0', 'Upload-Length': '1000' },
        body: new Uint8Array(first),
      });
      assert.equal(created.status, 201, await created.text());
      return new URL(created.headers.get('location')!, w.url).href;
    },
    last: (url, rest) =>
      fetch(url, {
        method: 'PATCH',
        headers: {
          ...auth,
          'Upload-Offset': '800',
          'Upload-Complete': '?1',
          'Content-Type': 'application/partial-upload',
        },
        body: new Uint8Array(rest),
      }),
    head: (url) => fetch(url, { method: 'HEAD', headers: auth }),
    assetOf: async (res) => (await res.json()).asset.id,
  };
}

describe('a full disk under PostgreSQL (scaled deployment)', {
  skip: deployment !== 'scaled' && 'the embedded deployment has no PostgreSQL server',
}, () => {
  test('its disk_full error (SQLSTATE 53100) is STORAGE_FULL, like a full disk of Wharf’s own', async () => {
    const url = process.env.WHARF_TEST_PG_URL;
    assert.ok(url, 'WHARF_TEST_PG_URL is not set');
    const { db } = connect(url);
    try {
      // What PostgreSQL raises when it cannot extend a file, raised on purpose: the disk of the
      // test's shared server is not this test's to fill.
      await assert.rejects(
        sql`do $$ begin raise exception 'could not extend file' using errcode = 'disk_full'; end $$`.execute(
          db,
        ),
        (err: unknown) => {
          assert.ok(isWharfError(err, 'STORAGE_FULL'), String(err));
          assert.equal(err.status, 507);
          return true;
        },
      );
    } finally {
      await db.destroy();
    }
  });
});

/*
 * The scaled deployment's full disk: the S3 store refuses a write because the bucket's (or
 * its user's) quota is used up. Ceph RGW answers 403 `QuotaExceeded`; Wharf answers it as a
 * full disk of its own, for every flow whose bytes pass through it to the store: 507
 * STORAGE_FULL with the same message, counted, nothing of the write left in the bucket, and
 * what the upload held given back. The quota is the test bucket's, set on the test cluster
 * with radosgw-admin (WHARF_TEST_CEPH_CONF, which scripts/services/ceph.sh prints); RGW applies
 * it at once. It adds each write's size to the bucket's usage as it last read it, which it
 * caches for minutes (rgw bucket quota ttl), so every write refused here is larger than the
 * whole quota by itself.
 */
const cephConf = process.env.WHARF_TEST_CEPH_CONF;
const quotaSkip =
  deployment !== 'scaled'
    ? 'the embedded deployment keeps bytes on a local disk, whose filling up is tested above; a bucket quota is the S3 store’s'
    : !storesOnS3
      ? 'no S3 store (WHARF_TEST_S3_ENDPOINT) to set a bucket quota on'
      : !cephConf
        ? 'a bucket quota is set with radosgw-admin, which needs the test cluster’s ceph.conf (WHARF_TEST_CEPH_CONF, printed by scripts/services/ceph.sh)'
        : false;

const QUOTA = 2 ** 20;
const STORAGE_FULL_MESSAGE =
  'The server has no room left to store this; try again once space has been freed.';

describe('a bucket quota used up (scaled deployment, Ceph RGW)', { skip: quotaSkip }, () => {
  let w: TestWharf;
  let bucket: string;

  const radosgwAdmin = (...args: string[]) =>
    execFileSync('radosgw-admin', ['-c', cephConf!, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  /**
   * Sets the bucket's quota to `maxBytes`, or lifts it, and waits until the gateway holds to
   * it: a PUT of one byte more than the quota is refused (or, lifted, taken).
   */
  async function quota(maxBytes: number | undefined): Promise<void> {
    const scope = ['--quota-scope=bucket', `--bucket=${bucket}`];
    if (maxBytes === undefined) {
      radosgwAdmin('quota', 'disable', ...scope);
    } else {
      radosgwAdmin('quota', 'set', ...scope, `--max-size=${maxBytes}`);
      radosgwAdmin('quota', 'enable', ...scope);
    }
    const expected = maxBytes === undefined ? 'ok' : 'QuotaExceeded';
    let answer = '';
    for (let i = 0; i < 50; i++) {
      answer = await storeAnswers((maxBytes ?? QUOTA) + 1);
      if (answer === expected) return;
      await sleep(200);
    }
    assert.fail(`RGW did not apply the bucket quota ${maxBytes ?? 'lifted'}: a PUT was answered ${answer}`);
  }
  /** What the store answers a PUT of `size` bytes straight to the bucket (its error's name, or `ok`). */
  async function storeAnswers(size: number): Promise<string> {
    const { PutObjectCommand, DeleteObjectCommand } = await import('@aws-sdk/client-s3');
    return withBucket(w, async (s3, name) => {
      try {
        await s3.send(new PutObjectCommand({ Bucket: name, Key: 'quota-probe', Body: Buffer.alloc(size) }));
      } catch (err) {
        return (err as Error).name;
      }
      await s3.send(new DeleteObjectCommand({ Bucket: name, Key: 'quota-probe' }));
      return 'ok';
    });
  }
  /** Runs `work` with the quota lifted (there is room again), then sets it back. */
  async function withRoom<T>(work: () => Promise<T>): Promise<T> {
    await quota(undefined);
    try {
      return await work();
    } finally {
      await quota(QUOTA);
    }
  }
  const counted = async (flow: string) => storageFullCount(w, flow);

  before(async () => {
    w = await startWharf();
    bucket = w.backingEnv.WHARF_S3_BUCKET!;
    await quota(QUOTA);
  });
  after(async () => {
    await w?.close();
  });

  /** A 507 STORAGE_FULL in the native shape, with the message a full disk gets. */
  async function assertStorageFull(res: Response): Promise<void> {
    const text = await res.text();
    assert.equal(res.status, 507, text);
    assert.deepEqual(JSON.parse(text).error, { code: 'STORAGE_FULL', message: STORAGE_FULL_MESSAGE });
    assert.equal(res.headers.get('retry-after'), null, 'waiting does not free a quota');
  }

  test('a direct upload: 507 STORAGE_FULL, counted, nothing left in the bucket, its token’s file given back', async () => {
    const minted = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {
      max_files: 1,
      max_bytes: 32 * 2 ** 20,
      max_open_uploads: 1,
    });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const token = minted.body.secret as string;
    const keys = await storedKeys(w);
    const before = await counted('direct');
    // PutObjects, then a multipart upload of 8 MiB parts. Ten PutObjects: RGW refuses one only
    // after it has told the client to go on sending, and a client that then writes the body
    // into the closed connection loses the refusal (a 503 for about one upload in three, the
    // SDK's retries included, while Wharf asked for `100 Continue`): each must come back 507.
    const sizes = [...Array<number>(10).fill(3 * 2 ** 20), 10 * 2 ** 20];
    for (const size of sizes) {
      const res = await fetch(`${w.url}/v1/assets?name=big.bin`, {
        method: 'POST',
        headers: { 'x-api-key': token, 'content-type': 'application/octet-stream' },
        body: new Uint8Array(randomBytes(size)),
      });
      await assertStorageFull(res);
    }
    assert.equal(await counted('direct'), before + sizes.length);
    assert.deepEqual(await storedKeys(w), keys, 'something of the refused uploads was left');
    assert.deepEqual(await pendingWrites(w), [], 'a multipart upload was left open');
    const pending = await api(w.url, w.key, 'GET', '/v1/uploads?status=pending&limit=100');
    assert.deepEqual(pending.body.data, []);
    assert.deepEqual(
      (await api(w.url, w.key, 'GET', `/v1/upload-tokens/${minted.body.token.id}`)).body.usage,
      {
        files_used: 0,
        bytes_used: 0,
        files_reserved: 0,
        bytes_reserved: 0,
        open_uploads: 0,
      },
    );
    // The token's one file is its own again, and a file that fits is stored.
    const small = await fetch(`${w.url}/v1/assets?name=small.bin`, {
      method: 'POST',
      headers: { 'x-api-key': token, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(randomBytes(100_000)),
    });
    assert.equal(small.status, 201, await small.text());
  });

  test('a tus PATCH: 507 STORAGE_FULL, counted; nothing of it kept, and the upload completes once there is room', async () => {
    const tusHeaders = { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${w.key}` };
    const bytes = randomBytes(12 * 2 ** 20);
    const created = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        ...tusHeaders,
        'Upload-Length': String(bytes.length),
        'Upload-Metadata': `filename ${Buffer.from('big.bin').toString('base64')}`,
      },
    });
    assert.equal(created.status, 201, await created.text());
    const url = created.headers.get('location')!;
    const writes = await pendingWrites(w);
    const before = await counted('tus');
    const patch = () =>
      fetch(url, {
        method: 'PATCH',
        headers: { ...tusHeaders, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
        body: new Uint8Array(bytes),
      });
    const res = await patch();
    assert.equal(res.headers.get('tus-resumable'), '1.0.0');
    await assertStorageFull(res);
    assert.equal(await counted('tus'), before + 1);
    const head = await fetch(url, { method: 'HEAD', headers: tusHeaders });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('upload-offset'), '0');
    assert.deepEqual(await pendingWrites(w), writes);
    const done = await withRoom(patch);
    assert.equal(done.status, 204, await done.text());
    const assetId = done.headers.get('wharf-asset-id')!;
    const content = await fetch(`${w.url}/v1/assets/${assetId}/content`, { headers: { 'x-api-key': w.key } });
    assert.deepEqual(Buffer.from(await content.arrayBuffer()), bytes);
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${assetId}`)).status, 204);
  });

  test('a Resumable Uploads for HTTP append: 507 STORAGE_FULL, counted; the upload resumes from where it began', async () => {
    const auth = { Authorization: `Bearer ${w.key}` };
    const bytes = randomBytes(12 * 2 ** 20);
    const created = await fetch(`${w.url}/v1/resumable/?name=big-rufh.bin`, {
      method: 'POST',
      headers: { ...auth, 'Upload-Complete': '?0', 'Upload-Length': String(bytes.length) },
    });
    assert.equal(created.status, 201, await created.text());
    const url = new URL(created.headers.get('location')!, w.url).href;
    const before = await counted('rufh');
    const append = () =>
      fetch(url, {
        method: 'PATCH',
        headers: {
          ...auth,
          'Upload-Offset': '0',
          'Upload-Complete': '?1',
          'Content-Type': 'application/partial-upload',
        },
        body: new Uint8Array(bytes),
      });
    await assertStorageFull(await append());
    assert.equal(await counted('rufh'), before + 1);
    // On the same connection: the refused append's body no longer holds it (this HEAD waited
    // out the idle timeout and was reset).
    const head = await fetch(url, { method: 'HEAD', headers: auth });
    assert.equal(head.headers.get('upload-offset'), '0');
    const done = await withRoom(append);
    const body = await done.json();
    assert.equal(done.status, 201, JSON.stringify(body));
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${body.asset.id}`)).status, 204);
  });

  test('a presigned PUT goes to the store, which refuses it itself; completing it then answers cleanly', async () => {
    const size = 3 * 2 ** 20;
    const created = await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'big.bin', size });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const bytes = randomBytes(size);
    const put = await putPresigned(created.body, bytes);
    const text = await put.text();
    // The client sees the store's own answer: Wharf is not in the way of these bytes.
    assert.equal(put.status, 403, text);
    assert.match(text, /<Code>QuotaExceeded<\/Code>/);
    // Nothing was stored: completing says so, and the upload stays open for the PUT to be sent again.
    const completed = await api(w.url, w.key, 'POST', `/v1/uploads/${created.body.id}/complete`);
    assert.equal(completed.status, 409, JSON.stringify(completed.body));
    assert.equal(completed.body.error.code, 'UPLOAD_INCOMPLETE');
    assert.equal((await api(w.url, w.key, 'GET', `/v1/uploads/${created.body.id}`)).body.status, 'pending');
    const done = await withRoom(async () => {
      assert.equal((await putPresigned(created.body, bytes)).status, 200);
      return api(w.url, w.key, 'POST', `/v1/uploads/${created.body.id}/complete`);
    });
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.status, 'created');
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${done.body.asset.id}`)).status, 204);
  });

  test('a bucket with no room even for the readiness probe: /readyz stays 200 with storage "full"', async () => {
    // A quota of one byte refuses the probe's few bytes (a full bucket refused it: 503, and
    // the node was taken out of rotation while it could still serve every download).
    await quota(1);
    w.clock.advance(2000);
    const ready = await api(w.url, undefined, 'GET', '/readyz');
    assert.equal(ready.status, 200, JSON.stringify(ready.body));
    assert.deepEqual(ready.body.checks.storage, { status: 'full' });
    // (With the quota back at a MiB, the bucket's usage may already pass it: the tests above
    // stored more. Lifted, there is room.)
    const again = await withRoom(async () => {
      w.clock.advance(2000);
      return api(w.url, undefined, 'GET', '/readyz');
    });
    assert.deepEqual(again.body.checks.storage, { status: 'ok' });
  });
});

/*
 * The other resource a burst of clients uses up: file descriptors. A request that cannot open
 * a file (or a socket) for want of one (EMFILE) is load, not a bug: 503 SERVICE_UNAVAILABLE
 * with Retry-After, as for a dependency that is away, never 500 INTERNAL. The server runs as
 * its own process, whose descriptor limit the test lowers (prlimit) once it has started, then
 * fills with kept-alive connections until one more is refused: closing one of them leaves
 * exactly the descriptor the next request's connection takes, so that request finds none.
 */
describe('no file descriptor left', {
  skip:
    process.platform !== 'linux' && 'counts descriptors in /proc and lowers the limit with prlimit (Linux)',
}, () => {
  let server: WharfProcess;
  let backing: Backing;
  let dataDir: string;
  let port: number;
  const key = `fd-key-${randomBytes(8).toString('hex')}`;
  const held: Socket[] = [];

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'wharf-fds-'));
    backing = await provision();
    port = await freePort();
    server = await startWharfProcess({
      ...backing.env,
      WHARF_DATA_DIR: dataDir,
      WHARF_PORT: String(port),
      WHARF_API_KEY: key,
      WHARF_SWEEP_INTERVAL: '0',
    });
  });
  after(async () => {
    for (const socket of held) socket.destroy();
    await server?.kill();
    await backing?.release();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  /** A kept-alive connection that has had an answer (so the server holds its descriptor), or null if it was dropped. */
  function holdConnection(): Promise<Socket | null> {
    return new Promise((resolve) => {
      const socket = connectTcp({ port, host: '127.0.0.1' });
      socket.on('error', () => {});
      socket.once('data', () => resolve(socket));
      socket.once('close', () => resolve(null));
      socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    });
  }

  /** Takes every descriptor the server has left with kept-alive connections, then gives `free` back. */
  async function leaveDescriptors(free: number): Promise<void> {
    for (;;) {
      const socket = await holdConnection();
      if (!socket) break;
      held.push(socket);
      assert.ok(held.length < 1000, 'the server never ran out of descriptors');
    }
    assert.ok(held.length >= free, `only ${held.length} connections held`);
    for (let i = 0; i < free; i++) {
      const released = held.pop()!;
      const closed = new Promise((resolve) => released.once('close', resolve));
      released.end();
      // The server closes its end (and so frees the descriptor) before this end sees it close.
      await closed;
    }
  }

  function release(): void {
    for (const socket of held.splice(0)) socket.destroy();
  }

  const tus = (extra: Array<[string, string]>): Array<[string, string]> => [
    ['Tus-Resumable', '1.0.0'],
    ['Authorization', `Bearer ${key}`],
    ...extra,
  ];

  test('uploads that find none get 503 SERVICE_UNAVAILABLE with Retry-After, never a 500, and leave nothing', async () => {
    // A tus upload of its own for each PATCH: one that gets through moves its offset.
    const tusPaths: string[] = [];
    for (let i = 0; i < 5; i++) {
      const created = await fetch(`http://127.0.0.1:${port}/v1/tus/`, {
        method: 'POST',
        headers: {
          'Tus-Resumable': '1.0.0',
          Authorization: `Bearer ${key}`,
          'Upload-Length': '100',
          'Upload-Metadata': `filename ${Buffer.from('fd.bin').toString('base64')}`,
        },
      });
      assert.equal(created.status, 201, await created.text());
      tusPaths.push(new URL(created.headers.get('location')!).pathname);
    }
    const probes = {
      direct: () =>
        sendRaw(port, {
          method: 'POST',
          target: '/v1/assets?name=fd.bin',
          headers: [
            ['x-api-key', key],
            ['Content-Type', 'application/octet-stream'],
          ],
          body: randomBytes(1000),
        }),
      tus: () =>
        sendRaw(port, {
          method: 'PATCH',
          target: tusPaths.pop()!,
          headers: tus([
            ['Upload-Offset', '0'],
            ['Content-Type', 'application/offset+octet-stream'],
          ]),
          body: randomBytes(10),
        }),
    };
    // The tus uploads' own (their S3 multipart uploads when scaled); a refused upload adds none.
    const writesBefore = await pendingWrites({ dataDir, backingEnv: backing.env });
    const pid = server.child.pid!;
    const baseline = (await readdir(`/proc/${pid}/fd`)).length;
    const hard = execFileSync('prlimit', [
      '--pid',
      String(pid),
      '--nofile',
      '--raw',
      '--noheadings',
      '--output=HARD',
    ])
      .toString()
      .trim();
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${baseline + 40}:${hard}`]);
    const answers: string[] = [];
    try {
      for (const [flow, probe] of Object.entries(probes)) {
        // With one descriptor left the request's connection takes it; with a few more, what
        // the request opens next finds none (a temp file, a worker, SQLite's files).
        for (let free = 1; free <= 4; free++) {
          await leaveDescriptors(free);
          const outcome = await probe();
          const answer =
            outcome.kind === 'response'
              ? `${outcome.status} ${outcome.head.match(/^retry-after: .*$/im)?.[0] ?? 'no Retry-After'} ${outcome.body}`
              : outcome.kind;
          answers.push(`${flow}: ${answer}`);
          if (outcome.kind === 'response' && outcome.status === 503) {
            assert.match(outcome.head, /^retry-after: 5\r?$/im);
            assert.equal(JSON.parse(outcome.body.toString()).error.code, 'SERVICE_UNAVAILABLE');
          }
        }
        assert.ok(
          answers.some((a) => a.startsWith(`${flow}: 503`)),
          `no 503 for the ${flow} upload: ${answers.join('; ')}`,
        );
      }
      assert.deepEqual(
        answers.filter((a) => !/^\w+: (503|201|204) /.test(a)),
        [],
      );
    } finally {
      execFileSync('prlimit', ['--pid', String(pid), `--nofile=${hard}:${hard}`]);
      release();
    }
    // Nothing is left of the refused uploads, and the same uploads work once descriptors are back.
    // (Descriptors themselves are not compared: the database pool and the S3 client keep
    // the connections they opened meanwhile.)
    assert.deepEqual(await pendingWrites({ dataDir, backingEnv: backing.env }), writesBefore);
    // A refused direct upload whose ending the database could not take either (its connection
    // found no descriptor: a CI run under load saw one) is recorded by the node's retry, every
    // 5 s, once descriptors are back; sweeps are off here. Within a few retries, none is pending.
    const pendingDirect = async () => {
      const pending = await fetch(`http://127.0.0.1:${port}/v1/uploads?status=pending`, {
        headers: { 'x-api-key': key },
      }).then((r) => r.json() as Promise<{ data: Array<{ kind: string }> }>);
      return pending.data.filter((u) => u.kind === 'direct');
    };
    let left = await pendingDirect();
    for (let i = 0; left.length > 0 && i < 40; i++) {
      await sleep(500);
      left = await pendingDirect();
    }
    assert.deepEqual(left, []);
    const direct = await probes.direct();
    assert.equal(direct.kind === 'response' && direct.status, 201);
    const patched = await probes.tus();
    assert.equal(patched.kind === 'response' && patched.status, 204);
    assert.ok(server.running());
  });
});
