import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { isWharfError } from '../../src/core/errors.js';
import { DigestStream } from '../../src/core/hashing.js';

/** Splits `data` into chunks of varied sizes (including empty ones) to stress chunk boundaries. */
function chunksOf(data: Buffer, seed: number): Buffer[] {
  const chunks: Buffer[] = [];
  let at = 0;
  let x = seed;
  while (at < data.length) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const size = x % 7 === 0 ? 0 : 1 + (x % 9000);
    chunks.push(data.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

async function run(chunks: Buffer[], maxBytes?: number) {
  const digest = maxBytes === undefined ? new DigestStream() : new DigestStream(maxBytes);
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(chunks, { objectMode: false }),
    digest,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return { digests: digest.digests(), output: Buffer.concat(out) };
}

describe('DigestStream computes what crypto computes', () => {
  for (const size of [0, 1, 63, 64, 65, 1000, 65_536, 1_000_003]) {
    test(`${size} bytes in uneven chunks`, async () => {
      const data = randomBytes(size);
      const { digests, output } = await run(chunksOf(data, size + 1));
      assert.equal(digests.size, size);
      assert.equal(digests.sha256, createHash('sha256').update(data).digest('hex'));
      assert.equal(digests.md5, createHash('md5').update(data).digest('hex'));
      assert.ok(output.equals(data), 'bytes pass through unchanged and in order');
    });
  }

  test('known vectors (empty input and "abc")', async () => {
    const empty = await run([]);
    assert.equal(empty.digests.sha256, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(empty.digests.md5, 'd41d8cd98f00b204e9800998ecf8427e');
    const abc = await run([Buffer.from('a'), Buffer.from('bc')]);
    assert.equal(abc.digests.sha256, 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(abc.digests.md5, '900150983cd24fb0d6963f7d28e17f72');
  });

  test('digests() before the stream has ended is an error, not a wrong answer', () => {
    const digest = new DigestStream();
    digest.write(Buffer.from('partial'));
    assert.throws(() => digest.digests());
    digest.destroy();
  });
});

describe('DigestStream enforces its byte limit as bytes arrive', () => {
  test('exactly the limit passes', async () => {
    const data = randomBytes(4096);
    const { digests } = await run(chunksOf(data, 7), 4096);
    assert.equal(digests.size, 4096);
  });

  test('one byte over fails with FILE_TOO_LARGE carrying the limit', async () => {
    await assert.rejects(run(chunksOf(randomBytes(4097), 3), 4096), (err: unknown) => {
      assert.ok(isWharfError(err, 'FILE_TOO_LARGE'), String(err));
      assert.equal(err.status, 413);
      assert.deepEqual(err.details, { limit: 4096 });
      return true;
    });
  });

  test('a limit of zero accepts only an empty stream', async () => {
    assert.equal((await run([], 0)).digests.size, 0);
    await assert.rejects(run([Buffer.from('x')], 0), (err: unknown) => isWharfError(err, 'FILE_TOO_LARGE'));
  });

  test('nothing past the limit is passed on downstream', async () => {
    const digest = new DigestStream(1000);
    const received: Buffer[] = [];
    const chunks = Array.from({ length: 50 }, () => randomBytes(100));
    await assert.rejects(
      pipeline(
        Readable.from(chunks),
        digest,
        new Writable({
          write(chunk: Buffer, _enc, cb) {
            received.push(chunk);
            cb();
          },
        }),
      ),
    );
    const total = Buffer.concat(received).length;
    assert.ok(total <= 1000, `downstream received ${total} bytes, more than the 1000-byte limit`);
  });
});
