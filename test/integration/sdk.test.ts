import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync, truncateSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import {
  connect,
  downloadToFile,
  FileResumeStore,
  fileSource,
  MemoryResumeStore,
  portableSha256,
  type ResumeStore,
  type UploadProgress,
  type UploadSource,
  Wharf,
  WharfApiError,
  WharfError,
} from '../../src/sdk/node.js';
import { api, sha256Hex } from '../helpers/http.js';
import { freePort, startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * The SDK (src/sdk/) against a real server over real HTTP: every resource, the upload helper's
 * three flows chosen by size, progress, retries, resuming after a cut, skipping known content,
 * and typed errors. Runs on both deployments.
 */

const MiB = 1024 * 1024;
// Small thresholds and parts (S3's minimum part is 5 MiB), so each flow runs on small files.
const thresholds = { presigned: 1 * MiB, multipart: 6 * MiB };
const partSize = 5 * MiB;

let w: TestWharf;
let wharf: Wharf;
let dir: string;
before(async () => {
  w = await startWharf();
  wharf = connect({ url: w.url, key: w.key, retry: { minDelayMs: 10 } });
  dir = await mkdtemp(join(tmpdir(), 'wharf-sdk-'));
});
after(async () => {
  await w?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function file(name: string, size: number): Promise<{ path: string; bytes: Buffer }> {
  const bytes = randomBytes(size);
  const path = join(dir, name);
  await writeFile(path, bytes);
  return { path, bytes };
}

/**
 * `source`, but once a read reaches byte `at` of the file while `armed()` (the upload is sending,
 * not hashing: the hash pass reads the same bytes first) it calls `cut` (the test aborts the
 * upload there) and delivers nothing more: the request stays open, mid-body, until aborted.
 */
/** A multipart upload of `source`, cut once its first part is stored and the second is a megabyte in. */
async function multipartCutOff(source: UploadSource, store: ResumeStore): Promise<void> {
  const controller = new AbortController();
  let sending = false;
  const cut = wharf.upload(
    cutAt(
      source,
      partSize + MiB,
      () => sending,
      () => controller.abort(),
    ),
    {
      onProgress: (p) => {
        if (p.phase === 'uploading') sending = true;
      },
      strategy: 'multipart',
      partSize,
      partConcurrency: 1,
      resume: store,
      signal: controller.signal,
    },
  );
  await assert.rejects(cut, (err) => err instanceof WharfError && err.code === 'ABORTED');
}

function cutAt(source: UploadSource, at: number, armed: () => boolean, cut: () => void): UploadSource {
  return {
    ...source,
    open(start = 0, end = source.size) {
      const reader = source.open(start, end).getReader();
      let position = start;
      return new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (position >= at && armed()) {
            cut();
            return new Promise(() => {});
          }
          const { done, value } = await reader.read();
          if (done) return controller.close();
          const chunk = armed() ? value.subarray(0, Math.max(0, at - position)) : value;
          position += chunk.byteLength;
          controller.enqueue(chunk);
        },
        cancel: (reason) => reader.cancel(reason),
      });
    },
  };
}

async function content(id: string): Promise<Buffer> {
  const download = await wharf.assets.download(id);
  return Buffer.from(await new Response(download.body).arrayBuffer());
}

describe('upload helper', () => {
  test('chooses direct, presigned or multipart by size, and Wharf verifies the declared SHA-256', async () => {
    const cases = [
      { name: 'small.bin', size: 100_000, strategy: 'direct' },
      { name: 'medium.bin', size: 2 * MiB + 3, strategy: 'presigned' },
      { name: 'large.bin', size: 11 * MiB + 7, strategy: 'multipart' },
    ];
    for (const c of cases) {
      const { path, bytes } = await file(c.name, c.size);
      const result = await wharf.upload(await fileSource(path), { thresholds, partSize });
      assert.equal(result.strategy, c.strategy, c.name);
      assert.equal(result.status, 'created');
      assert.equal(result.bytesSent, c.size);
      assert.equal(result.asset.name, c.name);
      assert.equal(result.asset.size, c.size);
      assert.equal(result.asset.sha256, sha256Hex(bytes));
      assert.ok((await content(result.asset.id)).equals(bytes), `${c.name} reads back`);
    }
  });

  test('reports progress: hashing, then the bytes sent with a rate, then done', async () => {
    const { path } = await file('progress.bin', 11 * MiB);
    const events: UploadProgress[] = [];
    await wharf.upload(await fileSource(path), {
      thresholds,
      partSize,
      partConcurrency: 2,
      onProgress: (p) => events.push({ ...p }),
    });
    const phases = [...new Set(events.map((e) => e.phase))];
    assert.deepEqual(phases, ['hashing', 'uploading', 'completing', 'done']);
    const hashing = events.filter((e) => e.phase === 'hashing');
    assert.equal(hashing.at(-1)!.bytes, 11 * MiB);
    const sending = events.filter((e) => e.phase === 'uploading');
    assert.ok(sending.every((e) => e.total === 11 * MiB && e.rate >= 0 && e.strategy === 'multipart'));
    assert.equal(events.at(-1)!.bytes, 11 * MiB, 'done reports every byte sent');
  });

  test('content the account already holds is not sent again, by any flow', async () => {
    const { path, bytes } = await file('known.bin', 7 * MiB);
    const first = await wharf.upload(await fileSource(path), { thresholds, partSize });
    assert.equal(first.status, 'created');
    for (const strategy of ['presigned', 'multipart'] as const) {
      const again = await wharf.upload(await fileSource(path, { name: `again-${strategy}.bin` }), {
        strategy,
        partSize,
      });
      assert.equal(again.status, 'exists', strategy);
      assert.equal(again.bytesSent, 0, `${strategy} sent nothing`);
      assert.equal(again.asset.id, first.asset.id);
    }
    // Direct sends the bytes (it is one request), and Wharf answers with the asset it holds:
    // docs/sdk.md says so, and bytesSent counts them.
    const direct = await wharf.upload(bytes, { name: 'again-direct.bin', strategy: 'direct' });
    assert.equal(direct.status, 'exists');
    assert.equal(direct.asset.id, first.asset.id);
    assert.equal(direct.bytesSent, bytes.length);
    // tus sends them too, and says `exists` as Wharf does (Wharf-Upload-Result), not `created`.
    const tus = await wharf.upload(bytes, { name: 'again-tus.bin', strategy: 'tus' });
    assert.equal(tus.status, 'exists');
    assert.equal(tus.asset.id, first.asset.id);
  });

  test('a multipart upload cut off mid-way resumes: only the missing parts are sent', async () => {
    const { path, bytes } = await file('resumed.bin', 16 * MiB);
    const store = new FileResumeStore(join(dir, 'state'));
    await multipartCutOff(await fileSource(path), store);

    const events: UploadProgress[] = [];
    const resumed = await wharf.upload(await fileSource(path), {
      strategy: 'multipart',
      partSize,
      resume: store,
      onProgress: (p) => events.push({ ...p }),
    });
    assert.equal(resumed.resumed, true);
    assert.equal(resumed.status, 'created');
    assert.equal(resumed.bytesSent, 16 * MiB, 'the count includes what storage held');
    assert.equal(events.find((e) => e.phase === 'uploading')!.bytes, partSize, 'progress starts there');
    // Hashed again, never taken from the state: only an upload of this same content is continued.
    assert.equal(events.filter((e) => e.phase === 'hashing').at(-1)!.bytes, 16 * MiB, 'hashed again');
    assert.equal(resumed.asset.sha256, sha256Hex(bytes));
    assert.ok((await content(resumed.asset.id)).equals(bytes));
    const parts = await wharf.multipart.listParts(resumed.asset.id).catch((err) => err);
    assert.ok(parts instanceof WharfApiError, 'the asset id is not an upload');
  });

  test('a file rewritten in place, its size and modification time kept, is uploaded as what it now holds', async () => {
    // cp -p, rsync -t and tar x keep the modification time: the fingerprint (path, size,
    // mtime) is the same, the content is not. Direct (Wharf sees the bytes) and presigned
    // (declared first: a remembered digest would be answered "exists" with the old asset).
    const store = new FileResumeStore(join(dir, 'rewritten-state'));
    for (const [name, size] of [
      ['rewritten-direct.bin', 100_000],
      ['rewritten-presigned.bin', 2 * MiB],
    ] as const) {
      const { path } = await file(name, size);
      const first = await wharf.upload(await fileSource(path), { thresholds, resume: store });
      assert.equal(first.status, 'created', name);
      const { mtime, atime } = await stat(path);
      const now = randomBytes(size);
      await writeFile(path, now);
      await utimes(path, atime, mtime);
      const again = await wharf.upload(await fileSource(path), { thresholds, resume: store });
      assert.equal(again.status, 'created', name);
      assert.equal(again.bytesSent, size, `${name}: its bytes were sent`);
      assert.equal(again.asset.sha256, sha256Hex(now), `${name}: the asset is the new content`);
      assert.notEqual(again.asset.id, first.asset.id);
    }
  });

  test('a multipart upload cut off, its file then rewritten with the same size and time, starts afresh', async () => {
    const { path } = await file('rewritten-resume.bin', 12 * MiB);
    const store = new FileResumeStore(join(dir, 'rewritten-resume-state'));
    await multipartCutOff(await fileSource(path), store);
    // Only the first part changes: resumed with the old digest, the parts stored before the
    // cut and the unchanged rest would make up the old file, and it would be "created".
    const { mtime, atime } = await stat(path);
    const now = await readFile(path);
    randomBytes(1000).copy(now, 10);
    await writeFile(path, now);
    await utimes(path, atime, mtime);
    const again = await wharf.upload(await fileSource(path), {
      strategy: 'multipart',
      partSize,
      resume: store,
    });
    assert.equal(again.resumed, false, 'not continued: the file is not the one the upload declared');
    assert.equal(again.status, 'created');
    assert.equal(again.asset.sha256, sha256Hex(now));
    assert.ok((await content(again.asset.id)).equals(now));
  });

  test('a multipart upload cut off, then run again under another name, starts afresh under that name', async () => {
    const { path, bytes } = await file('renamed.bin', 12 * MiB);
    const store = new MemoryResumeStore();
    await multipartCutOff(await fileSource(path, { name: 'old-prefix-renamed.bin' }), store);
    const again = await wharf.upload(await fileSource(path, { name: 'new-prefix-renamed.bin' }), {
      strategy: 'multipart',
      partSize,
      resume: store,
    });
    assert.equal(again.resumed, false);
    assert.equal(again.asset.name, 'new-prefix-renamed.bin');
    assert.ok((await content(again.asset.id)).equals(bytes));
    // The upload begun under the old name was given up, not left holding its reservation.
    const pending = await api(w.url, w.key, 'GET', '/v1/uploads?status=pending&limit=1000');
    assert.deepEqual(
      pending.body.data.filter((u: { name: string }) => u.name === 'old-prefix-renamed.bin'),
      [],
    );
  });

  test('a multipart or tus upload cut off, its file then changed, is given up when the file is uploaded again', async () => {
    // State is found by the file's path, not its size and time, which the change moved on: the
    // upload begun before is found, and ended, instead of holding its reservation for a day.
    const pending = async (name: string) =>
      (await api(w.url, w.key, 'GET', '/v1/uploads?status=pending&limit=1000')).body.data.filter(
        (u: { name: string }) => u.name === name,
      );
    const change = async (path: string, bytes: Buffer) => {
      const now = Buffer.from(bytes);
      now[11] = now[11]! ^ 0xff;
      await writeFile(path, now);
      await utimes(path, new Date(), new Date(Date.now() + 60_000));
      return now;
    };
    const { path, bytes } = await file('changed-multipart.bin', 12 * MiB);
    const state = join(dir, 'changed-multipart-state');
    const store = new FileResumeStore(state);
    await multipartCutOff(await fileSource(path), store);
    assert.equal((await pending('changed-multipart.bin')).length, 1, 'kept to be resumed');
    const now = await change(path, bytes);
    const again = await wharf.upload(await fileSource(path), {
      strategy: 'multipart',
      partSize,
      resume: store,
    });
    assert.equal(again.resumed, false);
    assert.ok((await content(again.asset.id)).equals(now));
    assert.deepEqual(await pending('changed-multipart.bin'), [], 'the upload begun before was aborted');
    assert.deepEqual(await readdir(state), [], 'no state is left');

    const tus = await cutOffTus('changed-tus.bin');
    assert.equal((await pending('changed-tus.bin')).length, 1, 'kept to be resumed');
    const tusNow = await change(tus.path, tus.bytes);
    const tusAgain = await wharf.upload(await fileSource(tus.path), { strategy: 'tus', resume: tus.store });
    assert.equal(tusAgain.resumed, false);
    assert.ok((await content(tusAgain.asset.id)).equals(tusNow));
    assert.deepEqual(await pending('changed-tus.bin'), [], 'the upload begun before was terminated');
  });

  test('a multipart upload whose state was kept under the file’s fingerprint (as before paths) still resumes', async () => {
    const { path, bytes } = await file('legacy-key.bin', 12 * MiB);
    const state = join(dir, 'legacy-key-state');
    const store = new FileResumeStore(state);
    // Without an identity, a file is keyed by its fingerprint, as the SDK kept every file before.
    await multipartCutOff({ ...(await fileSource(path)), identity: undefined }, store);
    const resumed = await wharf.upload(await fileSource(path), {
      strategy: 'multipart',
      partSize,
      resume: store,
    });
    assert.equal(resumed.resumed, true);
    assert.ok((await content(resumed.asset.id)).equals(bytes));
    assert.deepEqual(await readdir(state), [], 'the state, moved under the path, is gone once done');
  });

  /**
   * A 3 MiB tus upload of `name` cancelled once about 2 MiB are sent, its state kept in a
   * resume store: what the test then resumes.
   */
  async function cutOffTus(name: string, options: { hashFirst?: boolean } = {}) {
    const { path, bytes } = await file(name, 3 * MiB);
    const store = new MemoryResumeStore();
    const controller = new AbortController();
    let sending = false;
    const cut = wharf.upload(
      cutAt(
        await fileSource(path),
        2 * MiB,
        () => sending,
        () => controller.abort(),
      ),
      {
        onProgress: (p) => {
          if (p.phase === 'uploading') sending = true;
        },
        strategy: 'tus',
        ...options,
        resume: store,
        signal: controller.signal,
      },
    );
    await assert.rejects(cut, (err) => err instanceof WharfError && err.code === 'ABORTED');
    return { path, bytes, store };
  }

  test('a tus upload cut off mid-way resumes from the offset the server reports', async () => {
    const { path, bytes, store } = await cutOffTus('tus.bin');
    const events: UploadProgress[] = [];
    const resumed = await wharf.upload(await fileSource(path), {
      strategy: 'tus',
      resume: store,
      onProgress: (p) => events.push({ ...p }),
    });
    assert.equal(resumed.resumed, true);
    const from = events.find((e) => e.phase === 'uploading')!.bytes;
    assert.ok(from > 0 && from <= 2 * MiB, `resumed from ${from}, not from the start`);
    assert.equal(resumed.bytesSent, 3 * MiB, 'the count includes what the server held');
    assert.equal(resumed.asset.sha256, sha256Hex(bytes));
    assert.ok((await content(resumed.asset.id)).equals(bytes));
  });

  test('with hashFirst false (no digest declared), a cut-off tus upload resumes all the same', async () => {
    const { path, bytes, store } = await cutOffTus('tus-nohash.bin', { hashFirst: false });
    const resumed = await wharf.upload(await fileSource(path), {
      strategy: 'tus',
      hashFirst: false,
      resume: store,
    });
    assert.equal(resumed.resumed, true, 'the saved upload is continued, not given up');
    assert.equal(resumed.asset.sha256, sha256Hex(bytes));
    assert.ok((await content(resumed.asset.id)).equals(bytes));
  });

  test('a file deleted or truncated while it is sent fails SOURCE_CHANGED, its upload given up', async () => {
    for (const change of ['deleted', 'truncated'] as const) {
      const { path } = await file(`changing-${change}.bin`, 16 * MiB);
      const state = join(dir, `changing-${change}-state`);
      const source = await fileSource(path);
      let changed = false;
      // As the second part is about to be read, the file goes, or loses all but a megabyte of it.
      const changing: UploadSource = {
        ...source,
        open(start = 0, end = source.size) {
          if (start === partSize && !changed) {
            changed = true;
            if (change === 'deleted') rmSync(path);
            else truncateSync(path, partSize + MiB);
          }
          return source.open(start, end);
        },
      };
      const failed = await wharf
        .upload(changing, {
          strategy: 'multipart',
          partSize,
          partConcurrency: 1,
          resume: new FileResumeStore(state),
        })
        .catch((err) => err);
      assert.ok(changed, change);
      assert.ok(failed instanceof WharfError, `${change}: ${failed}`);
      assert.equal(failed.code, 'SOURCE_CHANGED', `${change}: ${failed.message}`);
      assert.deepEqual(await readdir(state).catch(() => []), [], `${change}: no state is left`);
      const pending = await api(w.url, w.key, 'GET', '/v1/uploads?status=pending&limit=1000');
      assert.deepEqual(
        pending.body.data.filter((u: { name: string }) => u.name === `changing-${change}.bin`),
        [],
        `${change}: the multipart upload was aborted`,
      );
    }
  });

  test('a connection lost mid-part is retried, and the part sent again whole', async () => {
    const { path, bytes } = await file('flaky.bin', 11 * MiB);
    let cuts = 0;
    // The network: the first PUT of part 2 loses its connection after 1 MiB of body.
    const flaky: typeof fetch = async (input, init) => {
      const url = String(input);
      if (
        init?.method === 'PUT' &&
        /partNumber=2\b/.test(url) &&
        cuts === 0 &&
        init.body instanceof ReadableStream
      ) {
        cuts++;
        const reader = (init.body as ReadableStream<Uint8Array>).getReader();
        let sent = 0;
        const body = new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (sent >= MiB) return controller.error(new Error('connection reset (test)'));
            const { done, value } = await reader.read();
            if (done) return controller.close();
            sent += value.byteLength;
            controller.enqueue(value);
          },
        });
        return fetch(input, { ...init, body } as RequestInit);
      }
      return fetch(input, init);
    };
    const client = connect({ url: w.url, key: w.key, fetch: flaky, retry: { minDelayMs: 10 } });
    const result = await client.upload(await fileSource(path), { strategy: 'multipart', partSize });
    assert.equal(cuts, 1, 'the cut happened');
    assert.equal(result.asset.sha256, sha256Hex(bytes));
    assert.equal(result.bytesSent, 11 * MiB, 'the lost bytes are not counted twice');
  });

  test('503 with Retry-After is waited out and retried; a 4xx is not retried', async () => {
    let calls = 0;
    // A server that is briefly away answers as Wharf does then: 503 SERVICE_UNAVAILABLE, Retry-After.
    const away: typeof fetch = async (input, init) => {
      calls++;
      if (calls === 1) {
        return new Response(
          JSON.stringify({ error: { code: 'SERVICE_UNAVAILABLE', message: 'The database is away.' } }),
          { status: 503, headers: { 'content-type': 'application/json', 'retry-after': '0' } },
        );
      }
      return fetch(input, init);
    };
    const client = new Wharf({ url: w.url, key: w.key, fetch: away, retry: { minDelayMs: 1 } });
    const page = await client.assets.list({ limit: 1 });
    assert.equal(calls, 2);
    assert.equal(page.data.length, 1);

    calls = 0;
    const counting: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const counted = new Wharf({ url: w.url, key: w.key, fetch: counting });
    await assert.rejects(counted.assets.get('no-such-asset'), (err) => {
      assert.ok(err instanceof WharfApiError);
      assert.equal(err.status, 404);
      assert.equal(err.code, 'NOT_FOUND');
      return true;
    });
    assert.equal(calls, 1, 'a refusal is final');
  });

  test('a one-shot stream goes directly, hashed on the way and checked against the asset', async () => {
    const bytes = randomBytes(300_000);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 65536) controller.enqueue(bytes.subarray(i, i + 65536));
        controller.close();
      },
    });
    const result = await wharf.upload(stream, { name: 'piped.bin', contentType: 'application/x-test' });
    assert.equal(result.strategy, 'direct');
    assert.equal(result.asset.sha256, sha256Hex(bytes));
    assert.equal(result.asset.content_type, 'application/x-test');
  });

  test('portable hashing (browsers) gives the same digest as node:crypto', async () => {
    const bytes = randomBytes(1_000_003);
    const portable = new Wharf({ url: w.url, key: w.key });
    assert.equal(portable.sha256, portableSha256);
    const result = await portable.upload(new Blob([bytes]), {
      name: 'blob.bin',
      strategy: 'presigned',
    });
    assert.equal(result.asset.sha256, sha256Hex(bytes));
  });
});

describe('typed errors', () => {
  test('the API’s error.code, status and details, for refusals of every kind', async () => {
    const bytes = randomBytes(1000);
    const mismatch = await wharf
      .upload(bytes, { name: 'wrong.bin', sha256: sha256Hex('something else') })
      .catch((err) => err);
    assert.ok(mismatch instanceof WharfApiError);
    assert.equal(mismatch.code, 'CHECKSUM_MISMATCH');
    assert.equal(mismatch.status, 400);
    assert.equal(mismatch.details.algorithm, 'sha256');

    const anonymous = new Wharf({ url: w.url, key: 'wharf_not_a_key_at_all_0000' });
    const refused = await anonymous.assets.list().catch((err) => err);
    assert.ok(refused instanceof WharfApiError && refused.code === 'UNAUTHORIZED' && refused.status === 401);

    const member = await w.newKey('member');
    const forbidden = await new Wharf({ url: w.url, key: member.key }).keys.list().catch((err) => err);
    assert.ok(forbidden instanceof WharfApiError && forbidden.code === 'FORBIDDEN');

    const closed = new Wharf({
      url: `http://127.0.0.1:${await freePort()}`,
      key: w.key,
      retry: { retries: 1, minDelayMs: 1 },
    });
    const network = await closed.assets.list().catch((err) => err);
    assert.ok(network instanceof WharfError);
    assert.equal(network.code, 'NETWORK_ERROR');
    assert.ok(!(network instanceof WharfApiError));
  });
});

describe('uploads given up', () => {
  /** The account's pending uploads of these names. */
  async function pending(...names: string[]): Promise<string[]> {
    const listed = await api(w.url, w.key, 'GET', '/v1/uploads?status=pending&limit=1000');
    return listed.body.data
      .filter((u: { name: string }) => names.includes(u.name))
      .map((u: { id: string }) => u.id);
  }

  /** An upload of `path` by `strategy` with `client`, aborted 1 MiB into sending its bytes. */
  async function aborted(
    client: Wharf,
    path: string,
    strategy: 'presigned' | 'multipart' | 'tus',
    resume?: ResumeStore,
  ) {
    const controller = new AbortController();
    let sending = false;
    return client
      .upload(
        cutAt(
          await fileSource(path),
          MiB,
          () => sending,
          () => controller.abort(),
        ),
        {
          onProgress: (p) => {
            if (p.phase === 'uploading') sending = true;
          },
          strategy,
          partSize,
          ...(resume && { resume }),
          signal: controller.signal,
        },
      )
      .catch((err) => err);
  }

  test('an aborted upload without a resume store is cancelled: its token slot and reservation are given back', async () => {
    // A token of one file: each upload given up must give its slot back for the next to start.
    const minted = await wharf.uploadTokens.create({ max_files: 1, expires_in: 600 });
    const browser = new Wharf({ url: w.url, key: minted.secret, retry: { minDelayMs: 10 } });
    for (const strategy of ['presigned', 'multipart', 'tus'] as const) {
      const { path } = await file(`given-up-${strategy}.bin`, 7 * MiB);
      const err = await aborted(browser, path, strategy);
      assert.ok(err instanceof WharfError && err.code === 'ABORTED', `${strategy}: ${err}`);
      assert.match(err.uploadId ?? '', /^[0-9a-f-]{36}$/, `${strategy}: the error names the upload`);
      assert.deepEqual(await pending(`given-up-${strategy}.bin`), [], `${strategy}: cancelled`);
      assert.equal((await wharf.uploads.get(err.uploadId!)).ended?.reason, 'cancelled', strategy);
    }
    const usage = await wharf.uploadTokens.get(minted.token.id);
    assert.equal(usage.usage.files_used, 0);
    const last = await browser.upload(randomBytes(1000), { name: 'after-given-up.bin' });
    assert.equal(last.status, 'created');
  });

  test('with a resume store, an aborted multipart or tus upload stays open to be resumed', async () => {
    const store = new MemoryResumeStore();
    for (const strategy of ['multipart', 'tus'] as const) {
      const { path } = await file(`kept-${strategy}.bin`, 7 * MiB);
      const err = await aborted(wharf, path, strategy, store);
      assert.ok(err instanceof WharfError && err.code === 'ABORTED', `${strategy}: ${err}`);
      assert.deepEqual(await pending(`kept-${strategy}.bin`), [err.uploadId], `${strategy}: still pending`);
      const resumed = await wharf.upload(await fileSource(path), { strategy, partSize, resume: store });
      assert.equal(resumed.resumed, true, strategy);
    }
  });

  test('refusals after the upload was declared cancel it; bad options are refused before it is', async () => {
    const { path } = await file('refused.bin', 12 * MiB);
    // The storage endpoint's BadDigest reads as the API's CHECKSUM_MISMATCH, as in every other flow.
    const mismatch = await wharf
      .upload(await fileSource(path), { strategy: 'presigned', sha256: sha256Hex('something else') })
      .catch((err) => err);
    assert.ok(mismatch instanceof WharfApiError, String(mismatch));
    assert.equal(mismatch.code, 'CHECKSUM_MISMATCH');
    assert.equal(mismatch.details.algorithm, 'sha256');
    // Refused by the PUT itself (Wharf's endpoint; a bucket may take the bytes and completion
    // refuse them, in the API's own JSON): storage's code is kept beside.
    if (mismatch.details.s3_code !== undefined) assert.equal(mismatch.details.s3_code, 'BadDigest');
    assert.ok(mismatch.uploadId);
    assert.deepEqual(await pending('refused.bin'), [], 'the refused presigned upload is ended');

    for (const options of [
      { partConcurrency: 0 },
      { partSize: 0 },
      { partSize: MiB },
      { partSize: 1.5 * MiB },
    ]) {
      const err = await wharf
        .upload(await fileSource(path), { strategy: 'multipart', ...options })
        .catch((e) => e);
      assert.ok(err instanceof RangeError, `${JSON.stringify(options)}: ${err}`);
    }
    assert.deepEqual(await pending('refused.bin'), [], 'nothing was declared');
  });

  test('an expired presigned URL: the upload is cancelled before it is declared again', async () => {
    // The first PUT is answered as storage answers an expired URL (403 AccessDenied).
    let refused = 0;
    const expiring: typeof fetch = async (input, init) => {
      if (init?.method === 'PUT' && refused++ === 0) {
        await (init.body as ReadableStream | undefined)?.cancel?.();
        return new Response(
          '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>',
          { status: 403, headers: { 'content-type': 'application/xml' } },
        );
      }
      return fetch(input, init);
    };
    const minted = await wharf.uploadTokens.create({ max_files: 1, expires_in: 600 });
    const browser = new Wharf({ url: w.url, key: minted.secret, fetch: expiring });
    const { path } = await file('expired-url.bin', 3 * MiB);
    const result = await browser.upload(await fileSource(path), { strategy: 'presigned' });
    assert.equal(refused, 2);
    assert.equal(result.status, 'created');
  });
});

describe('resources', () => {
  test('assets: list with cursors, iterate, get, access, signed URL, download (whole, range, to a file), delete', async () => {
    const prefix = `list-${randomBytes(3).toString('hex')}-`;
    const made = [];
    for (let i = 0; i < 5; i++) {
      made.push((await wharf.upload(randomBytes(100 + i), { name: `${prefix}${i}.bin` })).asset);
    }
    const first = await wharf.assets.list({ prefix, limit: 2 });
    assert.equal(first.data.length, 2);
    assert.ok(first.next_cursor);
    const all = [];
    for await (const asset of wharf.assets.iterate({ prefix, limit: 2 })) all.push(asset.id);
    assert.deepEqual(all.sort(), made.map((a) => a.id).sort());

    const asset = made[0]!;
    assert.equal((await wharf.assets.get(asset.id)).name, `${prefix}0.bin`);
    assert.equal((await wharf.assets.setAccess(asset.id, 'public'))?.access, 'public');
    // A key that may change the asset but not read it gets no asset back.
    const writer = await wharf.keys.create({ name: 'sdk writer', scopes: ['write'] });
    const writing = new Wharf({ url: w.url, key: writer.secret });
    assert.equal(await writing.assets.setAccess(asset.id, 'private'), undefined);
    assert.equal((await wharf.assets.get(asset.id)).access, 'private');
    const signed = await wharf.assets.signedUrl(asset.id, { expires_in: 60, disposition: 'attachment' });
    const viaUrl = await fetch(signed.url);
    assert.equal(viaUrl.status, 200);
    assert.match(viaUrl.headers.get('content-disposition') ?? '', /attachment/);
    // A moment instead of seconds from now: the same URL every time it is asked.
    const until = new Date((Math.floor(w.clock.now() / 3600_000) + 1) * 3600_000).toISOString();
    const moment = await wharf.assets.signedUrl(asset.id, { expires_at: until });
    assert.equal(moment.expires_at, until);
    assert.equal((await wharf.assets.signedUrl(asset.id, { expires_at: until })).url, moment.url);
    // A rendering's signed URL, for an <img>: as image-url answers it, and it serves the image.
    const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#3a7' } })
      .png()
      .toBuffer();
    const image = (await wharf.upload(png, { name: `${prefix}photo.png`, contentType: 'image/png' })).asset;
    const rendering = await wharf.assets.imageUrl(image.id, { w: 32, format: 'webp', expires_at: until });
    assert.equal(rendering.expires_at, until);
    assert.equal(rendering.params.w, 32);
    assert.equal(rendering.params.format, 'webp');
    const shown = await fetch(rendering.url);
    assert.equal(shown.status, 200);
    assert.equal(shown.headers.get('content-type'), 'image/webp');
    assert.equal((await sharp(Buffer.from(await shown.arrayBuffer())).metadata()).width, 32);
    // As one upload of it shows it (the first and only here: the asset's own name).
    const asUpload = await wharf.assets.signedUrl(image.id, {
      disposition: 'attachment',
      upload_id: (await wharf.uploads.list({ limit: 1 })).data[0]!.id,
    });
    assert.match((await fetch(asUpload.url)).headers.get('content-disposition') ?? '', /photo\.png/);

    const ranged = await wharf.assets.download(asset.id, { range: { start: 10, end: 19 } });
    assert.equal(ranged.status, 206);
    assert.equal((await new Response(ranged.body).arrayBuffer()).byteLength, 10);

    const target = join(dir, 'downloaded.bin');
    const saved = await downloadToFile(wharf, asset.id, target);
    assert.equal(saved.size, 100);
    assert.equal(sha256Hex(await readFile(target)), asset.sha256);

    await wharf.assets.delete(asset.id);
    await assert.rejects(
      wharf.assets.get(asset.id),
      (err) => err instanceof WharfApiError && err.code === 'NOT_FOUND',
    );
  });

  test('a download redirected to storage that declares no digest is checked against the asset’s SHA-256', async () => {
    const bytes = randomBytes(2000);
    const { asset } = await wharf.upload(bytes, { name: 'redirected.bin' });
    // Wharf with WHARF_S3_DOWNLOADS=redirect as the client sees it: the content answer is a
    // 302 to the bucket, whose answer carries an MD5 ETag and no Repr-Digest. `served` is what
    // the bucket hands out (a wrong or damaged object, or the right one).
    let served: Buffer = bytes;
    const redirected: typeof fetch = async (input, init) => {
      const url = String(input);
      if (url.endsWith(`/v1/assets/${asset.id}/content`)) {
        return new Response(null, { status: 302, headers: { location: 'http://bucket.test/object' } });
      }
      if (url === 'http://bucket.test/object') {
        const md5 = createHash('md5').update(served).digest('hex');
        return new Response(new Uint8Array(served), {
          headers: { etag: `"${md5}"`, 'content-length': String(served.length) },
        });
      }
      return fetch(input, init);
    };
    const client = connect({ url: w.url, key: w.key, fetch: redirected });
    const target = join(dir, 'redirected.bin');
    assert.deepEqual(await downloadToFile(client, asset.id, target), { size: 2000, sha256: asset.sha256 });
    assert.ok((await readFile(target)).equals(bytes));

    served = Buffer.from('BAD bytes!!');
    for (const options of [{}, { sha256: asset.sha256 }]) {
      await assert.rejects(
        downloadToFile(client, asset.id, target, options),
        (err) => err instanceof WharfError && err.code === 'INTEGRITY_ERROR',
      );
      assert.ok((await readFile(target)).equals(bytes), 'the target is left as it was');
    }
    const download = await client.assets.download(asset.id);
    assert.equal(download.sha256, asset.sha256);
    await assert.rejects(new Response(download.body).arrayBuffer(), /INTEGRITY_ERROR|hash to/);
  });

  test('presigned uploads by hand: a batch with a known file, PUT, complete, state', async () => {
    const known = (await wharf.upload(randomBytes(500), { name: 'known-batch.bin' })).asset;
    const fresh = randomBytes(700);
    const batch = await wharf.uploads.createBatch([
      { name: 'fresh.bin', size: fresh.length, sha256: sha256Hex(fresh) },
      { name: 'known.bin', size: known.size, sha256: known.sha256 },
    ]);
    assert.deepEqual(
      batch.uploads.map((u) => u.status),
      ['pending', 'exists'],
    );
    const pending = batch.uploads[0]!;
    assert.equal(pending.status, 'pending');
    if (pending.status !== 'pending') return;
    await wharf.uploads.put(pending, () => new Blob([fresh]));
    const done = await wharf.uploads.complete(pending.id);
    assert.equal(done.asset.sha256, sha256Hex(fresh));
    assert.equal((await wharf.uploads.get(pending.id)).status, 'completed');
  });

  test('uploads.cancel ends a pending upload (again: no error); a completed one is UPLOAD_NOT_PENDING', async () => {
    const item = await wharf.uploads.create({ name: 'unsent.bin', size: 1000 });
    assert.equal(item.status, 'pending');
    if (item.status !== 'pending') return;
    await wharf.uploads.cancel(item.id);
    assert.equal((await wharf.uploads.get(item.id)).status, 'expired');
    await wharf.uploads.cancel(item.id);
    const bytes = randomBytes(300);
    const sent = await wharf.uploads.create({ name: 'sent.bin', size: bytes.length });
    if (sent.status !== 'pending') assert.fail('a new file is pending');
    await wharf.uploads.put(sent, () => new Blob([bytes]));
    await wharf.uploads.complete(sent.id);
    const refused = await wharf.uploads.cancel(sent.id).catch((err) => err);
    assert.ok(refused instanceof WharfApiError && refused.code === 'UPLOAD_NOT_PENDING', String(refused));
  });

  test('progress ends at the full count, then done: a download to a file, a named file put from bytes', async () => {
    const bytes = randomBytes(3 * MiB + 17);
    const { asset } = await wharf.upload(bytes, { name: 'progress-down.bin' });
    const down: UploadProgress[] = [];
    await downloadToFile(wharf, asset.id, join(dir, 'progress-down.bin'), {
      onProgress: (p) => down.push({ ...p }),
    });
    assert.deepEqual(
      down.slice(-2).map((p) => [p.phase, p.bytes]),
      [
        ['downloading', bytes.length],
        ['done', bytes.length],
      ],
    );

    for (const body of [() => new Uint8Array(bytes), () => new Blob([bytes])]) {
      const up: UploadProgress[] = [];
      await wharf.files.put('sdk-progress', 'bytes.bin', body, { onProgress: (p) => up.push({ ...p }) });
      assert.deepEqual(
        up.slice(-2).map((p) => [p.phase, p.bytes]),
        [
          ['uploading', bytes.length],
          ['done', bytes.length],
        ],
        'its bytes count when the request starts, as a browser Blob body does',
      );
    }
  });

  test('named files: put versions, get, list versions', async () => {
    const ns = 'sdk-docs';
    const one = await wharf.files.put(ns, 'terms.txt', () => 'first edition', { contentType: 'text/plain' });
    const two = await wharf.files.put(ns, 'terms.txt', () => 'second edition', { contentType: 'text/plain' });
    assert.deepEqual([one.version, two.version], [1, 2]);
    assert.equal((await wharf.files.get(ns, 'terms.txt', 1)).asset.id, one.asset.id);
    assert.equal((await wharf.files.get(ns, 'terms.txt')).version, 2);
    assert.deepEqual(
      (await wharf.files.versions(ns, 'terms.txt')).map((v) => v.version),
      [1, 2],
    );
    // A declared SHA-256 is verified: a mismatch records no version, the right one does.
    const mismatch = await wharf.files
      .put(ns, 'terms.txt', () => 'third edition', { sha256: sha256Hex('something else') })
      .catch((err) => err);
    assert.ok(mismatch instanceof WharfApiError && mismatch.code === 'CHECKSUM_MISMATCH', String(mismatch));
    const three = await wharf.files.put(ns, 'terms.txt', () => 'third edition', {
      sha256: sha256Hex('third edition'),
    });
    assert.equal(three.version, 3);
  });

  test('keys and upload tokens: create, list, get, revoke; a token uploads and is then refused', async () => {
    const created = await wharf.keys.create({ name: 'sdk backend', scopes: ['upload'] });
    assert.deepEqual(created.key.scopes, ['upload']);
    assert.ok((await wharf.keys.list()).some((k) => k.id === created.key.id));
    const backend = new Wharf({ url: w.url, key: created.secret });
    const minted = await backend.uploadTokens.create({ subject: 'user-7', max_files: 1, expires_in: 600 });
    assert.match(minted.secret, /^wharf_ut_/);
    const browser = new Wharf({ url: w.url, key: minted.secret });
    const uploaded = await browser.upload(randomBytes(2000), { name: 'from-token.bin' });
    assert.equal(uploaded.asset.subject, 'user-7');
    const usage = await backend.uploadTokens.get(minted.token.id);
    assert.equal(usage.usage.files_used, 1);
    assert.ok((await backend.uploadTokens.list()).data.some((t) => t.id === minted.token.id));
    await backend.uploadTokens.revoke(minted.token.id);
    await assert.rejects(
      browser.upload(randomBytes(10), { name: 'late.bin' }),
      (err) => err instanceof WharfApiError && err.code === 'UNAUTHORIZED',
    );
    await wharf.keys.revoke(created.key.id);
    assert.ok((await wharf.keys.list()).find((k) => k.id === created.key.id)?.revoked_at);
  });

  test('keys are listed page by page: list() and iterate() follow the cursor, page() is one page', async () => {
    const { key } = await w.newAccount();
    const client = new Wharf({ url: w.url, key });
    const made: string[] = [];
    for (let i = 0; i < 3; i++) made.push((await client.keys.create({ name: `paged ${i}` })).key.id);
    const first = await client.keys.page({ limit: 2 });
    assert.equal(first.data.length, 2);
    assert.ok(first.next_cursor);
    const rest = await client.keys.page({ limit: 2, cursor: first.next_cursor });
    assert.equal(rest.data.length, 2);
    assert.equal(rest.next_cursor, null);
    const ids = [...first.data, ...rest.data].map((k) => k.id);
    assert.deepEqual(ids.slice(1), made, 'its admin key, then the three, oldest first');
    const iterated: string[] = [];
    for await (const k of client.keys.iterate({ limit: 1 })) iterated.push(k.id);
    assert.deepEqual(iterated, ids);
    assert.deepEqual(
      (await client.keys.list()).map((k) => k.id),
      ids,
    );
  });

  test('webhooks and events: every operation', async () => {
    // An account of its own, where no event follows the endpoint: nothing is ever sent.
    const { key } = await w.newAccount();
    const client = new Wharf({ url: w.url, key });
    const created = await client.webhooks.create({
      url: 'https://hooks.example.com/wharf',
      event_types: ['upload.*'],
    });
    const id = created.webhook.id;
    assert.match(created.secret, /^whsec_/);
    assert.deepEqual(
      (await client.webhooks.list()).map((h) => h.id),
      [id],
    );
    assert.equal((await client.webhooks.get(id)).url, 'https://hooks.example.com/wharf');
    assert.equal((await client.webhooks.update(id, { description: 'sdk' })).description, 'sdk');
    assert.equal(await client.webhooks.secret(id), created.secret);
    const rotated = await client.webhooks.rotateSecret(id, 0);
    assert.notEqual(rotated.secret, created.secret);
    assert.deepEqual((await client.webhooks.deliveries(id)).data, []);
    await assert.rejects(
      client.webhooks.delivery(id, 'nope'),
      (err) => err instanceof WharfApiError && err.status === 404,
    );
    assert.deepEqual(await client.webhooks.replay(id, new Date(0)), { requeued: 0, created: 0 });
    await client.webhooks.delete(id);

    const before = await wharf.events.list({ type: 'upload.completed', limit: 1000 });
    const uploaded = await wharf.upload(randomBytes(123), { name: 'evented.bin' });
    const seen = [];
    for await (const event of wharf.events.iterate({ after: before.cursor, type: ['upload.completed'] })) {
      seen.push(event);
    }
    assert.ok(seen.some((e) => (e.data.asset as { id: string }).id === uploaded.asset.id));
  });

  test('the account and its usage, the named files of an asset, uploads listed, assets by creation time', async () => {
    // An account of its own, so its usage and listings hold only what this test made.
    const { key } = await w.newAccount();
    const client = new Wharf({ url: w.url, key });
    const fresh = await client.account.get();
    assert.deepEqual([fresh.usage.assets, fresh.usage.bytes_used, fresh.usage.pending_uploads], [0, 0, 0]);

    const one = await client.files.put('sdk-files', 'notes.txt', () => 'one', { contentType: 'text/plain' });
    const two = await client.files.put('sdk-files', 'notes.txt', () => 'two!', { contentType: 'text/plain' });
    const files = await client.assets.files(one.asset.id);
    assert.deepEqual(
      files.map((f) => [f.namespace, f.name, f.version, f.latest_version]),
      [['sdk-files', 'notes.txt', 1, 2]],
    );
    assert.deepEqual(
      files[0]!.versions.map((v) => [v.version, v.asset_id]),
      [
        [1, one.asset.id],
        [2, two.asset.id],
      ],
    );

    const declared = await client.uploads.create({ name: 'later.bin', size: 10 });
    assert.equal(declared.status, 'pending');
    if (declared.status !== 'pending') return;
    const pending = await client.uploads.list({ status: 'pending' });
    assert.deepEqual(
      pending.data.map((u) => [u.id, u.kind, u.status]),
      [[declared.id, 'presigned', 'pending']],
    );
    assert.equal(pending.next_cursor, null);
    assert.deepEqual((await client.uploads.list({ status: 'expired' })).data, []);

    const account = await client.account.get();
    assert.equal(account.id, fresh.id);
    assert.deepEqual(
      [account.usage.assets, account.usage.bytes_used, account.usage.pending_uploads],
      [2, 7, 1],
    );

    const future = new Date(Date.now() + 86_400_000).toISOString();
    assert.deepEqual((await client.assets.list({ created_after: future })).data, []);
    assert.equal((await client.assets.list({ created_before: future })).data.length, 2);
  });

  test('the responses the SDK types describe are the ones the server sends (spot check with the raw API)', async () => {
    const uploaded = await wharf.upload(randomBytes(64), { name: 'shape.bin' });
    const raw = await api(w.url, w.key, 'GET', `/v1/assets/${uploaded.asset.id}`);
    assert.deepEqual(Object.keys(uploaded.asset).sort(), Object.keys(raw.body).sort());
  });
});
