import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, test } from 'node:test';
import { writeBehind } from '../../src/blobs/write-behind.js';

const dir = await mkdtemp(join(tmpdir(), 'wharf-write-behind-'));
after(() => rm(dir, { recursive: true, force: true }));

/** `size` random bytes in chunks of 64 KiB, as a socket gives them. */
function chunks(bytes: Buffer): Readable {
  return Readable.from(
    (function* () {
      for (let at = 0; at < bytes.length; at += 1 << 16) yield bytes.subarray(at, at + (1 << 16));
    })(),
  );
}

describe('writeBehind', () => {
  test('passes every byte through unchanged and flushes the file as it grows', async () => {
    const bytes = randomBytes(6 << 20);
    const path = join(dir, 'whole.bin');
    const file = createWriteStream(path, { flags: 'wx', flush: true, highWaterMark: 1 << 20 });
    const behind = writeBehind(file, 1 << 20);
    await pipeline(chunks(bytes), behind, file);
    assert.ok((await readFile(path)).equals(bytes));
    // One at a time and only once per MiB passed: at least one, at most six.
    assert.ok(behind.flushes >= 1 && behind.flushes <= 6, `${behind.flushes} flushes`);
  });

  test('a file smaller than the interval is never flushed early', async () => {
    const bytes = randomBytes(300_000);
    const path = join(dir, 'small.bin');
    const file = createWriteStream(path, { flags: 'wx' });
    const behind = writeBehind(file, 1 << 20);
    await pipeline(chunks(bytes), behind, file);
    assert.equal(behind.flushes, 0);
    assert.ok((await readFile(path)).equals(bytes));
  });

  test('a source that fails midway fails the pipeline and leaves nothing running', async () => {
    const path = join(dir, 'cut.bin');
    const file = createWriteStream(path, { flags: 'wx' });
    const behind = writeBehind(file, 64 << 10);
    const source = Readable.from(
      (async function* () {
        for (let i = 0; i < 40; i += 1) yield randomBytes(64 << 10);
        throw new Error('client went away');
      })(),
    );
    await assert.rejects(pipeline(source, behind, file), /client went away/);
    assert.ok(file.destroyed && behind.destroyed);
  });
});
