import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { type HasherFactory, Wharf as PortableWharf, portableSha256 } from '../../src/sdk/index.js';
import { fileSource, type UploadSource, Wharf, WharfError } from '../../src/sdk/node.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * An aborted upload stops reading its source: the body fetch was sending is cancelled with it
 * (fetch, aborted, did not: the file went on being read to its end, and its bytes counted into
 * progress reported after the upload had failed), and nothing is reported once it has settled.
 */

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;

let w: TestWharf;
let dir: string;
before(async () => {
  w = await startWharf();
  dir = await mkdtemp(join(tmpdir(), 'wharf-sdk-abort-'));
});
after(async () => {
  await w?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** `source`, counting the bytes read from it, that calls `cut` once `at` bytes are read. */
function counted(source: UploadSource, at: number, cut: () => void) {
  const seen = { read: 0, cancelled: 0 };
  const wrapped: UploadSource = {
    ...source,
    open(start, end) {
      const reader = source.open(start, end).getReader();
      return new ReadableStream<Uint8Array>({
        async pull(controller) {
          // A slow disk: the rest of the file would take a while to read.
          await delay(2);
          const { done, value } = await reader.read();
          if (done) return controller.close();
          seen.read += value.byteLength;
          if (seen.read >= at) cut();
          controller.enqueue(value);
        },
        cancel: (reason) => {
          seen.cancelled++;
          return reader.cancel(reason);
        },
      });
    },
  };
  return { source: wrapped, seen };
}

for (const strategy of ['direct', 'presigned', 'multipart', 'tus'] as const) {
  test(`${strategy}: an aborted upload stops reading its file and reports no progress after it failed`, async () => {
    const path = join(dir, `${strategy}.bin`);
    await writeFile(path, randomBytes(SIZE));
    const wharf = new Wharf({ url: w.url, key: w.key, retry: { minDelayMs: 10 } });
    const controller = new AbortController();
    const { source, seen } = counted(await fileSource(path), 4 * MiB, () => controller.abort());
    let settled = false;
    const late: string[] = [];
    const err = await wharf
      .upload(source, {
        strategy,
        hashFirst: false,
        partSize: 8 * MiB,
        partConcurrency: 1,
        signal: controller.signal,
        onProgress: (p) => {
          if (settled) late.push(`${p.phase} ${p.bytes}/${p.total}`);
        },
      })
      .catch((e: unknown) => e);
    settled = true;
    assert.ok(err instanceof WharfError && err.code === 'ABORTED', String(err));
    const atRejection = seen.read;
    await delay(1500);
    assert.deepEqual(late, [], 'no progress after the upload failed');
    assert.ok(seen.read < 8 * MiB, `read ${seen.read} of ${SIZE} bytes (${atRejection} when it failed)`);
    assert.ok(seen.cancelled >= 1, 'the source was cancelled');
  });
}

/**
 * A page hashes a Blob with the portable SHA-256 (`new Wharf`, no node:crypto) on its only
 * thread. The hashing must give the event loop turns: it ran to its end in promises already
 * settled, so no timer fired, no frame was drawn and no Cancel was heard until the whole file was
 * hashed (15 s for 300 MiB in Chromium). Node runs the same code here: a Blob's chunks come as
 * settled promises as they do in a browser.
 */
const HASHED = 48 * MiB;

/** A fetch that records every request (sent on to the real server). */
function recording() {
  const requests: string[] = [];
  const spy: typeof fetch = (input, init) => {
    requests.push(`${init?.method ?? 'GET'} ${input instanceof Request ? input.url : String(input)}`);
    return fetch(input, init);
  };
  return { requests, fetch: spy };
}

/** The portable SHA-256 (what a page hashes with), counting the bytes it is fed. */
function countedHashing() {
  const seen = { hashed: 0 };
  const sha256: HasherFactory = () => {
    const hasher = portableSha256();
    return {
      update: (chunk) => {
        seen.hashed += chunk.byteLength;
        hasher.update(chunk);
      },
      hex: () => hasher.hex(),
    };
  };
  return { sha256, seen };
}

test('hashing a Blob (portable SHA-256, as in a browser) lets timers run while it goes', async () => {
  const blob = new Blob([randomBytes(HASHED)]);
  const { requests, fetch } = recording();
  const { sha256, seen } = countedHashing();
  const wharf = new PortableWharf({ url: w.url, key: w.key, fetch, sha256 });
  let ticks = 0;
  // Ticks between the first bytes hashed and the first request (made once the hash is known).
  const timer = setInterval(() => {
    if (seen.hashed > 0 && requests.length === 0) ticks++;
  }, 5);
  try {
    const result = await wharf.upload(blob, { name: 'hashed.bin' });
    assert.equal(result.asset.size, HASHED);
  } finally {
    clearInterval(timer);
  }
  assert.ok(ticks > 0, `a timer fired while ${HASHED} bytes were hashed (${ticks} ticks)`);
});

test('an abort while a Blob is hashed (portable SHA-256) stops it at once, with no request sent', async () => {
  const blob = new Blob([randomBytes(HASHED)]);
  const { requests, fetch } = recording();
  const { sha256, seen } = countedHashing();
  const wharf = new PortableWharf({ url: w.url, key: w.key, fetch, sha256 });
  const pendingBefore = (await wharf.uploads.list({ status: 'pending' })).data.length;
  requests.length = 0;
  const controller = new AbortController();
  let settled = false;
  let hashedAtAbort: number | undefined;
  const late: string[] = [];
  const err = await wharf
    .upload(blob, {
      name: 'hashed.bin',
      signal: controller.signal,
      onProgress: (p) => {
        if (settled) late.push(`${p.phase} ${p.bytes}/${p.total}`);
        // Cancel pressed once hashing is under way: a task of its own, as a click is.
        if (p.phase === 'hashing' && p.bytes > 0 && hashedAtAbort === undefined) {
          hashedAtAbort = -1;
          setTimeout(() => {
            hashedAtAbort = seen.hashed;
            controller.abort();
          }, 0);
        }
      },
    })
    .catch((e: unknown) => e);
  settled = true;
  assert.ok(err instanceof WharfError && err.code === 'ABORTED', String(err));
  assert.ok(
    hashedAtAbort !== undefined && hashedAtAbort >= 0 && hashedAtAbort < HASHED,
    `the abort was heard while hashing (at byte ${hashedAtAbort} of ${HASHED})`,
  );
  assert.ok(seen.hashed < HASHED, `hashing stopped at the abort: ${seen.hashed} of ${HASHED} bytes hashed`);
  assert.deepEqual(requests, [], 'no request was sent');
  assert.equal(
    (await wharf.uploads.list({ status: 'pending' })).data.length,
    pendingBefore,
    'nothing declared',
  );
  await delay(300);
  assert.deepEqual(late, [], 'no progress after the upload failed');
});
