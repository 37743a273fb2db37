/**
 * processTempDir removes what processes that are gone left behind, and nothing of a process
 * that lives; withTmpdir redirects os.tmpdir() for one synchronous call and always restores it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os, { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { processTempDir, withTmpdir } from '../../src/blobs/process-temp.js';

/** The pid of a process that has just exited (reused within these milliseconds only by bad luck). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(child.stdout.toString());
}

describe('processTempDir', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'wharf-process-temp-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test('removes the directories of this host’s dead processes and a day-old one of another host', async () => {
    const host = hostname();
    const dead = `${host}-${deadPid()}-0a1b2c3d`;
    const live = `${host}-${process.pid}-deadbeef`; // another store of this very process
    const otherOld = 'other-host-4242-01234567';
    const otherFresh = 'other-host-4343-89abcdef';
    for (const entry of [dead, live, otherOld, otherFresh]) {
      await mkdir(join(root, entry));
      await writeFile(join(root, entry, 'Ab3_x-9ZqQ-1'), 'a part being uploaded');
    }
    const twoDaysAgo = new Date(Date.now() - 48 * 3600_000);
    await utimes(join(root, otherOld), twoDaysAgo, twoDaysAgo);

    const mine = await processTempDir(root);
    assert.match(mine, new RegExp(`${host}-${process.pid}-[0-9a-f]{8}$`));
    const left = (await readdir(root)).sort();
    assert.deepEqual(left, [live, otherFresh, mine.slice(root.length + 1)].sort());
    assert.deepEqual(await readdir(mine), [], 'a fresh, empty directory');
  });

  test('a left-over directory this process may not remove is left, and the start goes on', async (t) => {
    // What a CLI command run as root leaves in the service's data directory, seen by the service
    // user. The suite runs as root, whom permissions do not stop: an immutable file (chattr +i)
    // stops root too, as a directory of another user stops the service user.
    const stuck = join(root, `${hostname()}-${deadPid()}-feedface`);
    await mkdir(stuck);
    await writeFile(join(stuck, 'part'), 'a part of a command killed mid-work');
    const chattr = spawnSync('chattr', ['+i', join(stuck, 'part')]);
    if (chattr.status !== 0) {
      t.skip(
        `chattr +i is not available here (${chattr.stderr?.toString().trim() || chattr.error}), so nothing can refuse root`,
      );
      return;
    }
    try {
      const mine = await processTempDir(root);
      assert.match(mine, new RegExp(`${hostname()}-${process.pid}-[0-9a-f]{8}$`));
      assert.deepEqual(await readdir(stuck), ['part'], 'left where it was');
    } finally {
      spawnSync('chattr', ['-i', join(stuck, 'part')]);
      await rm(stuck, { recursive: true, force: true });
    }
  });

  test('two stores of one process get two directories and keep both', async () => {
    const a = await processTempDir(root);
    const b = await processTempDir(root);
    assert.notEqual(a, b);
    const left = await readdir(root);
    assert.ok(left.includes(a.slice(root.length + 1)) && left.includes(b.slice(root.length + 1)));
  });
});

describe('withTmpdir', () => {
  test('os.tmpdir() answers the directory during the call only', () => {
    const before = os.tmpdir();
    assert.equal(
      withTmpdir('/somewhere/else', () => os.tmpdir()),
      '/somewhere/else',
    );
    assert.equal(os.tmpdir(), before);
  });

  test('restored when the call throws', () => {
    const before = os.tmpdir();
    assert.throws(() =>
      withTmpdir('/somewhere/else', () => {
        throw new Error('boom');
      }),
    );
    assert.equal(os.tmpdir(), before);
  });
});
