import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, test } from 'node:test';
import { RunningDigests } from '../../src/blobs/running-digest.js';
import { HashPool, hashingPassThrough, type OffThreadDigest } from '../../src/core/hash-worker.js';
import { DigestStream } from '../../src/core/hashing.js';

const MiB = 1 << 20;

function oneShot(data: Buffer) {
  return {
    size: data.length,
    sha256: createHash('sha256').update(data).digest('hex'),
    md5: createHash('md5').update(data).digest('hex'),
  };
}

/** Deterministic pseudo-random chunk sizes between 1 byte and `max`. */
function chunksOf(data: Buffer, seed: number, max: number): Buffer[] {
  const chunks: Buffer[] = [];
  let x = seed;
  for (let at = 0; at < data.length; ) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    // Mostly small, sometimes up to `max`: both sides of a block boundary get crossed.
    const size = x % 5 === 0 ? 1 + (x % max) : 1 + (x % 70_000);
    chunks.push(data.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

/** Feeds `chunks` as a stream would: waits whenever update() says so. */
async function feedAll(digest: OffThreadDigest, chunks: Buffer[]): Promise<void> {
  for (const chunk of chunks) await digest.update(chunk);
}

const pools: HashPool[] = [];
function pool(options?: ConstructorParameters<typeof HashPool>[0]): HashPool {
  const p = new HashPool(options);
  pools.push(p);
  return p;
}
after(async () => {
  for (const p of pools) await p.close();
});

describe('off-thread digests equal node:crypto', () => {
  const sizes = [0, 1, 63, 64, 65, 1000, MiB - 1, MiB, MiB + 1, 7 * MiB + 12_345];
  for (const [label, options] of [
    ['default blocks', {}],
    ['small blocks', { blockBytes: 4096, maxInFlightBytes: 16_384 }],
  ] as const) {
    for (const size of sizes) {
      test(`${size} bytes, random chunks of 1 byte to 5 MiB (${label})`, async () => {
        const data = randomBytes(size);
        const digest = pool(options).open();
        await feedAll(digest, chunksOf(data, size + 7, 5 * MiB));
        assert.deepEqual(await digest.digests(), oneShot(data));
        digest.drop();
      });
    }
  }

  test('an MD5-only digest (a multipart part): MD5 and size equal node:crypto, and it has no SHA-256', async () => {
    for (const size of [0, 1, MiB + 1, 3 * MiB + 77]) {
      const data = randomBytes(size);
      const digest = pool({ blockBytes: 64 * 1024, maxInFlightBytes: 256 * 1024 }).open({ md5Only: true });
      await feedAll(digest, chunksOf(data, size + 3, 2 * MiB));
      const { md5 } = oneShot(data);
      assert.deepEqual(await digest.md5(), { size, md5 });
      await assert.rejects(digest.digests(), /MD5 only/);
      digest.drop();
    }
  });

  test('one-byte chunks', async () => {
    const data = randomBytes(3000);
    const digest = pool({ blockBytes: 256, maxInFlightBytes: 1024 }).open();
    await feedAll(
      digest,
      [...data].map((b) => Buffer.from([b])),
    );
    assert.deepEqual(await digest.digests(), oneShot(data));
  });

  test('the caller may reuse its buffer as soon as update() returns (bytes are copied)', async () => {
    const data = randomBytes(3 * MiB);
    const digest = pool().open();
    const scratch = Buffer.alloc(100_000);
    for (let at = 0; at < data.length; at += scratch.length) {
      const n = data.copy(scratch, 0, at);
      await digest.update(scratch.subarray(0, n));
      scratch.fill(0xaa);
    }
    assert.deepEqual(await digest.digests(), oneShot(data));
  });

  test('many digests at once on two threads keep their states apart', async () => {
    const p = pool({ threads: 2 });
    const inputs = Array.from({ length: 6 }, (_, i) => randomBytes(MiB + i * 99_991));
    const results = await Promise.all(
      inputs.map(async (data, i) => {
        const digest = p.open();
        await feedAll(digest, chunksOf(data, i, MiB));
        return digest.digests();
      }),
    );
    for (const [i, r] of results.entries()) assert.deepEqual(r, oneShot(inputs[i]!));
  });
});

describe('a digest carries its state across calls', () => {
  test('digests() part-way reads the prefix and the state goes on', async () => {
    const data = randomBytes(5 * MiB + 3);
    const digest = pool().open();
    const cuts = [0, 1, 700_000, 3 * MiB, data.length];
    for (let i = 1; i < cuts.length; i += 1) {
      await feedAll(digest, chunksOf(data.subarray(cuts[i - 1], cuts[i]), i, MiB));
      digest.flush();
      assert.deepEqual(await digest.digests(), oneShot(data.subarray(0, cuts[i])));
    }
    assert.equal(digest.offset, data.length);
  });

  test('catch-up from a file (with a header before byte 0) equals one pass', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hash-worker-'));
    try {
      const header = Buffer.from('HEADER--');
      const data = randomBytes(4 * MiB + 17);
      const file = join(dir, 'bytes');
      await writeFile(file, Buffer.concat([header, data]));
      // Seen in part by this process, the rest caught up from the file, then more streamed.
      const digest = pool().open();
      await feedAll(digest, chunksOf(data.subarray(0, 1_234_567), 3, MiB));
      await digest.catchUp(file, 3 * MiB, header.length);
      assert.equal(digest.offset, 3 * MiB);
      await feedAll(digest, chunksOf(data.subarray(3 * MiB), 4, MiB));
      assert.deepEqual(await digest.digests(), oneShot(data));
      // A node that saw nothing catches up on all of it.
      const fresh = pool().open();
      await fresh.catchUp(file, data.length, header.length);
      assert.deepEqual(await fresh.digests(), oneShot(data));
      // Nothing to catch up is no work; backwards is an error.
      await fresh.catchUp(file, data.length, header.length);
      await assert.rejects(fresh.catchUp(file, 10, header.length), /backwards/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a file that ends before the catch-up does fails it and makes the digest unusable', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hash-worker-'));
    try {
      const file = join(dir, 'short');
      await writeFile(file, randomBytes(1000));
      const digest = pool().open();
      await assert.rejects(digest.catchUp(file, 2000), /ended/);
      assert.equal(digest.usable, false);
      assert.throws(() => digest.update(Buffer.from('x')));
      // The file system's code comes across from the worker (a promote that lost a race to a
      // concurrent one tells "moved away" apart from a failure by it).
      await assert.rejects(pool().open().catchUp(join(dir, 'missing'), 1), { code: 'ENOENT' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('running digests (tus) across requests and a dead worker', () => {
  test('a state kept between requests, lost with its worker, is rebuilt from the stored bytes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hash-worker-'));
    try {
      const p = pool({ threads: 1 });
      const digests = new RunningDigests(10, p);
      const file = join(dir, 'upload');
      const data = randomBytes(5 * MiB + 77);
      const cuts = [0, 2 * MiB + 1, 4 * MiB, data.length];
      // First request: nothing cached, nothing stored.
      await writeFile(file, data.subarray(0, cuts[1]));
      let digest = await digests.take('k', file, 0);
      await feedAll(digest, chunksOf(data.subarray(0, cuts[1]), 1, MiB));
      digests.put('k', digest);
      // The worker dies between requests: the cached state is gone with it.
      await p.close();
      await writeFile(file, data.subarray(0, cuts[2]));
      digest = await digests.take('k', file, cuts[1]!);
      assert.equal(p.started, 2, 'a new worker');
      assert.equal(digest.offset, cuts[1]);
      await feedAll(digest, chunksOf(data.subarray(cuts[1], cuts[2]), 2, MiB));
      digests.put('k', digest);
      // Another node wrote the rest: this one catches up on it from the file.
      await writeFile(file, data);
      digest = await digests.take('k', file, data.length);
      assert.deepEqual(await digest.digests(), oneShot(data));
      digest.drop();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('without bytes to catch up from (S3): only a digest of exactly the offset asked for', async () => {
    const p = pool({ threads: 1 });
    try {
      const digests = new RunningDigests(10, p);
      const data = randomBytes(3 * MiB + 5);
      assert.equal(digests.resume('k', MiB), undefined, 'nothing seen: nothing to resume');
      let digest = digests.resume('k', 0)!;
      await feedAll(digest, chunksOf(data.subarray(0, MiB), 3, MiB));
      digests.put('k', digest);
      // Another node took the upload on: this one's digest is behind and is dropped.
      assert.equal(digests.resume('k', 2 * MiB), undefined);
      assert.equal(digests.resume('k', MiB), undefined, 'dropped, not kept for later');
      assert.equal(await digests.finish('k', data.length), undefined);
      // One node from start to end: the digests of every byte; finish forgets them.
      digest = digests.resume('k', 0)!;
      await feedAll(digest, chunksOf(data.subarray(0, 2 * MiB), 4, MiB));
      digests.put('k', digest);
      digest = digests.resume('k', 2 * MiB)!;
      assert.equal(digest.offset, 2 * MiB);
      await feedAll(digest, chunksOf(data.subarray(2 * MiB), 5, MiB));
      digests.put('k', digest);
      assert.equal(await digests.finish('k', data.length - 1), undefined, 'a size other than what it saw');
      digest = digests.resume('k', 0)!;
      await feedAll(digest, chunksOf(data, 6, MiB));
      digests.put('k', digest);
      assert.deepEqual(await digests.finish('k', data.length), oneShot(data));
      assert.equal(await digests.finish('k', data.length), undefined, 'finished once');
    } finally {
      await p.close();
    }
  });
});

describe('flow control: bytes in flight stay within the bound', () => {
  test('a caller that never yields is held once the bound is reached', () => {
    const bound = 256 * 1024;
    const digest = pool({ blockBytes: 64 * 1024, maxInFlightBytes: bound }).open();
    // Acknowledgements arrive only through the event loop, which this loop never yields to:
    // update() must refuse to take more than the bound.
    let accepted = 0;
    let held: Promise<void> | undefined;
    while (!held) {
      held = digest.update(randomBytes(10_000));
      accepted += 10_000;
      assert.ok(digest.inFlight <= bound, `${digest.inFlight} bytes in flight`);
      assert.ok(accepted < 10 * bound, 'never held');
    }
    assert.equal(digest.holds, 1);
    held.catch(() => {});
    digest.drop();
  });

  test('32 MiB through a pass-through never has more than the bound in flight', async () => {
    const bound = 512 * 1024;
    const digest = pool({ blockBytes: 128 * 1024, maxInFlightBytes: bound }).open();
    const data = randomBytes(32 * MiB);
    let out = 0;
    let worst = 0;
    await pipeline(
      Readable.from(chunksOf(data, 9, 256 * 1024)),
      hashingPassThrough(digest),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          out += chunk.length;
          worst = Math.max(worst, digest.inFlight);
          cb();
        },
      }),
    );
    assert.equal(out, data.length);
    assert.ok(worst <= bound && digest.peakInFlight <= bound, `peak ${digest.peakInFlight} of ${bound}`);
    assert.ok(digest.holds > 0, 'the worker was waited for at least once');
    assert.deepEqual(await digest.digests(), oneShot(data));
  });
});

describe('a worker that dies', () => {
  test('fails the work pending on it with an error; later work gets a new worker', async () => {
    const p = pool({ threads: 1, blockBytes: 64 * 1024, maxInFlightBytes: 128 * 1024 });
    // Keeps the worker busy for hours: nothing queued behind it can finish before the kill.
    const busy = p.open();
    const endless = busy.catchUp('/dev/zero', 2 ** 40);
    const pendingDigest = p.open();
    await pendingDigest.update(randomBytes(1000));
    const asked = pendingDigest.digests();
    const heldStream = p.open();
    let held: Promise<void> | undefined;
    while (!held) held = heldStream.update(randomBytes(50_000));
    assert.equal(p.started, 1);

    await p.close();
    await assert.rejects(endless, /hashing worker/);
    await assert.rejects(asked, /hashing worker/);
    await assert.rejects(held, /hashing worker/);
    for (const d of [busy, pendingDigest, heldStream]) {
      assert.equal(d.usable, false);
      assert.throws(() => d.update(Buffer.from('more')), /hashing worker/);
      await assert.rejects(d.digests(), /hashing worker/);
    }

    const data = randomBytes(2 * MiB + 5);
    const later = p.open();
    await feedAll(later, chunksOf(data, 1, MiB));
    assert.deepEqual(await later.digests(), oneShot(data));
    assert.equal(p.started, 2);
  });

  test('a DigestStream whose worker dies fails its pipeline instead of hanging', async () => {
    const p = pool({ threads: 1, blockBytes: 64 * 1024, maxInFlightBytes: 128 * 1024 });
    const busy = p.open();
    busy.catchUp('/dev/zero', 2 ** 40).catch(() => {});
    const stream = new DigestStream(Number.POSITIVE_INFINITY, p);
    let passed = 0;
    const running = pipeline(
      Readable.from(chunksOf(randomBytes(8 * MiB), 2, 100_000)),
      stream,
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          passed += chunk.length;
          // The worker cannot acknowledge (it is busy for hours), so the stream is held
          // within 128 KiB of this: kill the worker under it.
          if (passed === chunk.length) void p.close();
          cb();
        },
      }),
    );
    await assert.rejects(running, /hashing worker/);
    assert.throws(() => stream.digests());
    // The next stream on the same pool works.
    const data = randomBytes(300_000);
    const next = new DigestStream(Number.POSITIVE_INFINITY, p);
    await pipeline(Readable.from([data]), next, new Writable({ write: (_c, _e, cb) => cb() }));
    assert.deepEqual(next.digests(), oneShot(data));
  });
});

describe("the pool's shared budget", () => {
  test('many uploads at once hold no more than the pool allows, and each digest is right', async () => {
    const blockBytes = 64 * 1024;
    const maxPoolBytes = 8 * blockBytes;
    const p = pool({ threads: 2, blockBytes, maxInFlightBytes: 4 * blockBytes, maxPoolBytes });
    // 12 uploads, each allowed 4 blocks: 48 blocks if nothing bounded them together.
    const inputs = Array.from({ length: 12 }, (_, i) => randomBytes(MiB + i * 7919));
    const digests = inputs.map(() => p.open());
    await Promise.all(digests.map((d, i) => feedAll(d, chunksOf(inputs[i]!, i + 3, 200_000))));
    // While they were fed (reading the digests sends each one's last block early, over the bound).
    const peak = p.peakReserved;
    for (const [i, d] of digests.entries()) assert.deepEqual(await d.digests(), oneShot(inputs[i]!));
    assert.ok(peak <= maxPoolBytes, `peak ${peak} of ${maxPoolBytes}`);
    assert.ok(peak > 4 * blockBytes, 'more than one upload had blocks at the workers at once');
    assert.ok(
      digests.some((d) => d.holds > 0),
      'some upload waited for room',
    );
    for (const d of digests) d.drop();
    // Every block's room came back once it was hashed.
    assert.equal(p.reserved, 0);
  });

  const BLOCK = 64 * 1024;

  /**
   * A one-worker pool with room for `poolBlocks` blocks, its worker busy hashing `busyBytes`
   * of /dev/zero (so nothing is acknowledged meanwhile), and one upload that has sent two
   * blocks behind that.
   */
  function busyPool(poolBlocks: number, busyBytes: number) {
    const p = pool({
      threads: 1,
      blockBytes: BLOCK,
      maxInFlightBytes: 2 * BLOCK,
      maxPoolBytes: poolBlocks * BLOCK,
    });
    const busy = p.open();
    const reading = busy.catchUp('/dev/zero', busyBytes);
    const first = p.open();
    assert.equal(first.update(randomBytes(2 * BLOCK)), undefined);
    return { p, busy, reading, first };
  }

  test('an upload dropped while it waits for room does not stop the ones behind it', async () => {
    const { p, busy, reading, first } = busyPool(2, 64 * MiB);
    const waiting = p.open();
    // A full block, and no room for it at the workers: the second upload waits.
    const held = waiting.update(randomBytes(BLOCK));
    assert.ok(held, 'the pool is full: the second upload waits');
    const data = randomBytes(3 * BLOCK + 1);
    const behind = p.open();
    const feeding = feedAll(behind, chunksOf(data, 9, 50_000));
    waiting.drop();
    await assert.rejects(held, /dropped/);
    await reading;
    await feeding;
    assert.deepEqual(await behind.digests(), oneShot(data));
    for (const d of [busy, first, behind]) d.drop();
    assert.equal(p.reserved, 0);
  });

  test('a worker that dies frees the room of everything it held and everyone waiting fails', async () => {
    const { p, reading } = busyPool(3, 2 ** 40);
    reading.catch(() => {});
    const waiting = p.open();
    let held: Promise<void> | undefined;
    while (!held) held = waiting.update(randomBytes(50_000));
    await p.close();
    await assert.rejects(held, /hashing worker/);
    assert.equal(p.reserved, 0);
    const data = randomBytes(5 * BLOCK);
    const later = p.open();
    await feedAll(later, chunksOf(data, 4, 100_000));
    assert.deepEqual(await later.digests(), oneShot(data));
  });
});

describe('an idle worker does not keep the process alive', () => {
  test('nor one whose only digest was dropped before it filled a block (a body cut early)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wharf-hash-idle-'));
    try {
      const file = join(dir, 'idle.mts');
      // What a direct upload does when its chunked framing breaks after a few bytes: the
      // worker starts for the digest, the bytes wait in its first block, the stream is
      // destroyed and the digest dropped, and the worker never got a message to answer.
      await writeFile(
        file,
        `
        import { HashPool } from ${JSON.stringify(new URL('../../src/core/hash-worker.ts', import.meta.url).href)};
        const digest = new HashPool().open();
        digest.update(Buffer.from('hello'));
        digest.drop();
        console.log('done');
      `,
      );
      const run = spawnSync(process.execPath, ['--import', 'tsx', file], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(run.signal, null, 'the process had to be killed: the idle worker kept it alive');
      assert.equal(run.status, 0, run.stderr);
      assert.equal(run.stdout.trim(), 'done');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
