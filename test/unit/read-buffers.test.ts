/**
 * ReadBuffers lends buffers and takes back only what it lent, once; readFileRange reads exactly
 * the bytes asked for into them and closes its file however it ends.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readFileRange } from '../../src/blobs/file-reader.js';
import { ReadBuffers } from '../../src/core/read-buffers.js';

describe('ReadBuffers', () => {
  test('a buffer given back is lent again; one never given back is not', () => {
    const buffers = new ReadBuffers(16, 4);
    const first = buffers.lend();
    const second = buffers.lend();
    assert.equal(buffers.allocated, 2);
    buffers.giveBack(first.subarray(0, 3)); // a view of its start, as the last chunk of a file is
    assert.equal(buffers.lend(), first);
    assert.equal(buffers.allocated, 2);
    assert.notEqual(buffers.lend(), second);
    assert.equal(buffers.allocated, 3);
  });

  test('a chunk it did not lend, or had back already, is ignored', () => {
    const buffers = new ReadBuffers(16, 4);
    buffers.giveBack(Buffer.alloc(16));
    assert.equal(buffers.idle, 0);
    const lent = buffers.lend();
    assert.ok(buffers.owns(lent));
    buffers.giveBack(lent);
    assert.ok(!buffers.owns(lent));
    buffers.giveBack(lent);
    assert.equal(buffers.idle, 1, 'given back twice, held once: never lent to two readers');
    assert.equal(buffers.lend(), lent);
    assert.notEqual(buffers.lend(), lent);
  });

  test('keeps at most `keep` idle buffers', () => {
    const buffers = new ReadBuffers(16, 2);
    const lent = [buffers.lend(), buffers.lend(), buffers.lend()];
    for (const buffer of lent) buffers.giveBack(buffer);
    assert.equal(buffers.idle, 2);
  });
});

describe('readFileRange', () => {
  let dir: string;
  let path: string;
  const bytes = randomBytes(10 * 64 + 7);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wharf-file-reader-'));
    path = join(dir, 'object');
    await writeFile(path, bytes);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function collect(start?: number, end?: number, buffers = new ReadBuffers(64, 4)): Promise<Buffer> {
    const handle = await open(path, 'r');
    const chunks: Buffer[] = [];
    // Copies: the buffers are given back as they arrive, as a response does once written.
    for await (const chunk of readFileRange(handle, buffers, start, end)) {
      chunks.push(Buffer.from(chunk as Buffer));
      buffers.giveBack(chunk as Buffer);
    }
    assert.equal(handle.fd, -1, 'the file is closed once read');
    return Buffer.concat(chunks);
  }

  test('whole file and ranges, across chunk boundaries', async () => {
    assert.ok((await collect()).equals(bytes));
    for (const [start, end] of [
      [0, 0],
      [63, 64],
      [64, 127],
      [1, 639],
      [640, 646],
      [646, 646],
      [100, 10_000],
    ] as const) {
      assert.ok((await collect(start, end)).equals(bytes.subarray(start, end + 1)), `${start}-${end}`);
    }
  });

  test('a range starting past the end reads nothing', async () => {
    assert.equal((await collect(bytes.length + 5)).length, 0);
  });

  test('given-back buffers carry the next chunks without mixing them', async () => {
    const buffers = new ReadBuffers(64, 4);
    assert.ok((await collect(undefined, undefined, buffers)).equals(bytes));
    // 11 chunks and the empty read at the end, from a chunk being read and one queued.
    assert.ok(buffers.allocated <= 3, `${buffers.allocated} allocated`);
  });

  test('destroyed half-way, it closes the file', async () => {
    const handle = await open(path, 'r');
    const stream = readFileRange(handle, new ReadBuffers(64, 4));
    await once(stream, 'readable');
    assert.ok(stream.read(), 'a first chunk');
    stream.destroy();
    // 'close' comes once the handle is closed, after the read that was in flight.
    if (!stream.closed) await once(stream, 'close');
    assert.ok(stream.destroyed);
    assert.equal(handle.fd, -1);
  });

  test('a read error ends the stream with that error', async () => {
    const handle = await open(path, 'r');
    await handle.close();
    const stream = readFileRange(handle, new ReadBuffers(64, 4));
    await assert.rejects(
      async () => {
        for await (const _chunk of stream) {
          // nothing arrives
        }
      },
      { code: 'EBADF' },
    );
  });
});
