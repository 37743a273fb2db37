import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eachAtOnce } from '../../src/backup/at-once.js';

/**
 * The backup copies objects a few at a time (src/backup/at-once.ts), then removes its temporary
 * directory. A failed copy (a full disk) must not let that cleanup run while other copies still
 * write there: it met their files and said ENOTEMPTY instead of why the backup failed.
 */

test('a failure is thrown once the work under way has ended, and no item starts after it', async () => {
  const started: number[] = [];
  const ended: number[] = [];
  const full = new Error('ENOSPC: no space left on device');
  const run = eachAtOnce([0, 1, 2, 3, 4, 5, 6, 7], 3, async (item) => {
    started.push(item);
    if (item === 0) throw full;
    // The others are still copying when the first fails.
    await new Promise((resolve) => setTimeout(resolve, 30));
    ended.push(item);
  });
  await assert.rejects(run, (err) => err === full);
  assert.deepEqual(started, [0, 1, 2], 'nothing started after the failure');
  assert.deepEqual(ended.sort(), [1, 2], 'the copies under way ended before the failure was thrown');
});

test('the first failure is the one thrown, and every item runs when none fails', async () => {
  const first = new Error('first');
  const run = eachAtOnce([0, 1, 2], 3, async (item) => {
    await new Promise((resolve) => setTimeout(resolve, item * 10));
    throw item === 0 ? first : new Error(`later ${item}`);
  });
  await assert.rejects(run, (err) => err === first);
  const done: number[] = [];
  await eachAtOnce([0, 1, 2, 3, 4], 2, async (item) => {
    done.push(item);
  });
  assert.deepEqual(done, [0, 1, 2, 3, 4]);
});
