import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { FsBlobStore } from '../../src/blobs/fs-store.js';
import { localTusBackend } from '../../src/blobs/tus-local.js';
import { localBlobStore } from '../helpers/fs-store.js';

let root: string;
let store: FsBlobStore;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'wharf-tus-storage-'));
  store = await localBlobStore(join(root, 'blobs'));
});
after(() => rm(root, { recursive: true, force: true }));

describe('local tus storage: promote', () => {
  // The request that brought the last byte and the sweep's reconcile may promote the same
  // upload at once (seen in CI: the sweep's promote failed when the other had moved the file
  // away while the hashing worker caught up on it). Both must end with the object in place.
  test('two concurrent promotes of one upload both succeed, and the object is the bytes', async () => {
    const tus = localTusBackend(join(root, 'tus'), store, 3600);
    for (const size of [1, 70_000, 3 << 20, 9 << 20]) {
      const key = `acct/${crypto.randomUUID()}.bin`;
      const bytes = randomBytes(size);
      await tus.storage.open(key, size);
      assert.equal(await tus.storage.append(key, 0, Readable.from([bytes])), size);
      const [a, b] = await Promise.all([tus.storage.promote(key), tus.storage.promote(key)]);
      const expected = {
        size,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        md5: createHash('md5').update(bytes).digest('hex'),
      };
      for (const facts of [a, b]) if (facts) assert.deepEqual(facts, expected);
      assert.ok(a ?? b, 'one of them hands over the digests');
      const head = await store.head(key);
      assert.equal(head?.size, size);
      assert.equal(head?.sha256, expected.sha256);
      assert.equal(await tus.storage.received(key), size);
    }
  });
});
