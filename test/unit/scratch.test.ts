import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { isWharfError } from '../../src/core/errors.js';
import { Scratch } from '../../src/processing/scratch.js';

/**
 * Scratch.place: what a transform reads. A stored file on the same filesystem is hard-linked
 * (no copy, and unaffected by the object's deletion meanwhile); otherwise the bytes are
 * streamed from storage. The size limit holds either way.
 */

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wharf-scratch-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function source(file: string | undefined, bytes: Buffer) {
  const opened = { count: 0 };
  return {
    opened,
    file,
    async open() {
      opened.count += 1;
      return Readable.from([bytes]);
    },
  };
}

describe('Scratch.place', () => {
  test('a local file is linked, not copied or streamed; deleting the original leaves the link whole', async () => {
    const bytes = randomBytes(100_000);
    const stored = join(dir, 'stored-1');
    await writeFile(stored, bytes);
    const from = source(stored, bytes);
    const placed = join(dir, 'placed-1');
    assert.equal(await Scratch.place(from, placed), bytes.length);
    assert.equal(from.opened.count, 0, 'storage was not read');
    assert.equal((await stat(placed)).ino, (await stat(stored)).ino, 'the same file, not a copy');
    await rm(stored);
    assert.deepEqual(await readFile(placed), bytes);
  });

  test('without a file, or when it is gone, the bytes are streamed from storage', async () => {
    const bytes = randomBytes(5000);
    for (const file of [undefined, join(dir, 'no-such-file')]) {
      const from = source(file, bytes);
      const placed = join(dir, `placed-${file ? 'gone' : 'none'}`);
      assert.equal(await Scratch.place(from, placed), bytes.length);
      assert.equal(from.opened.count, 1);
      assert.deepEqual(await readFile(placed), bytes);
    }
  });

  test('over the limit: IMAGE_TOO_LARGE, linked or streamed', async () => {
    const bytes = randomBytes(2000);
    const stored = join(dir, 'stored-2');
    await writeFile(stored, bytes);
    for (const file of [stored, undefined]) {
      await assert.rejects(
        Scratch.place(source(file, bytes), join(dir, `big-${file ? 'linked' : 'streamed'}`), 1999),
        (err) => isWharfError(err, 'IMAGE_TOO_LARGE'),
      );
    }
  });
});

describe('Scratch.init', () => {
  test('removes at once what processes of this host that are gone left, however recent; a live one keeps its own', async () => {
    const root = join(dir, 'work');
    // A pid above the kernel's maximum (4194304) belongs to no process.
    const dead = join(root, `${hostname()}-4194305-0badc0de`);
    const live = join(root, `${hostname()}-${process.pid}-0c0ffee0`);
    for (const d of [dead, live]) {
      await mkdir(d, { recursive: true });
      await writeFile(join(d, 'input'), 'left over');
    }
    const scratch = new Scratch(root);
    await scratch.init();
    assert.equal(existsSync(dead), false, 'a crashed process left it: gone at the next start');
    assert.equal(existsSync(live), true, 'a running process still uses it');
    const used = await scratch.withDir(async (work) => {
      assert.match(work, new RegExp(`^${root}/${hostname()}-${process.pid}-[0-9a-f]{8}/`));
      return work;
    });
    assert.equal(existsSync(used), false);
  });
});

describe('Scratch.close', () => {
  test('removes this instance’s own directory, with what is in it; another’s, live in this process, stays', async () => {
    const root = join(dir, 'work-close');
    const closing = new Scratch(root);
    const other = new Scratch(root);
    await closing.init();
    await other.init();
    const [mine, theirs] = await Promise.all(
      [closing, other].map((s) => s.withDir(async (work) => join(work, '..'))),
    );
    await writeFile(join(mine!, 'left-by-a-job'), 'x');
    await closing.close();
    assert.equal(existsSync(mine!), false, 'a clean stop leaves no directory of its own');
    assert.equal(existsSync(theirs!), true, 'another Scratch still uses its own');
    await other.close();
    assert.deepEqual(await readdir(root), []);
  });
});
