import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
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
