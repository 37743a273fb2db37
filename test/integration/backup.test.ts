/**
 * `wharf data backup DIR`: the real command, run beside a running server as an operator runs
 * it, and a second server started on a copy of what it wrote. On the scaled deployment the
 * command refuses (PostgreSQL and S3 are backed up with their own tools), and that refusal is
 * what is tested there.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { holdLock } from '../../src/backup/sqlite.js';
import { connect, fileSource } from '../../src/sdk/node.js';
import { wharfCli } from '../helpers/admin-cli.js';
import { dbQuery, uploadRaw } from '../helpers/assets.js';
import { deployment, removeStoredObject, replaceStoredObject } from '../helpers/deployment.js';
import { REPO } from '../helpers/process.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

const MiB = 1024 * 1024;
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

let w: TestWharf;
let scratch: string;
before(async () => {
  w = await startWharf();
  scratch = await mkdtemp(join(tmpdir(), 'wharf-backup-test-'));
});
after(async () => {
  await w?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

interface BackupJson {
  snapshots: number;
  assets: number;
  renderings: number;
  copied: number;
  copied_bytes: number;
  kept: number;
  removed: number;
  repaired: number;
  renderings_left_out: number;
  problems: Array<{ problem: string; asset_id: string; storage_key: string; stored: unknown }>;
}

async function backupJson(target: string): Promise<{ code: number; report: BackupJson; stderr: string }> {
  const ran = await wharfCli(w, ['data', 'backup', target, '--json']);
  return { code: ran.code, report: JSON.parse(ran.stdout || 'null') as BackupJson, stderr: ran.stderr };
}

async function upload(key: string, name: string, bytes: Buffer): Promise<{ id: string; storageKey: string }> {
  const res = await uploadRaw(w, key, name, bytes, { contentType: 'application/octet-stream' });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const id = res.body.asset.id as string;
  const [row] = dbQuery<{ storage_key: string }>(w, 'select storage_key from assets where id = ?', id);
  return { id, storageKey: row!.storage_key };
}

async function download(server: TestWharf, key: string, path: string): Promise<Response> {
  return fetch(`${server.url}${path}`, { headers: { 'x-api-key': key } });
}

describe('wharf data backup', { skip: deployment === 'scaled' && 'the embedded default only' }, () => {
  test('taken while the server runs: a server started on a copy serves every asset, byte for byte', async () => {
    const other = await w.newAccount();
    const plain = randomBytes(300_000);
    const mine = await upload(w.key, 'plain.bin', plain);
    const theirsBytes = randomBytes(1234);
    const theirs = await upload(other.key, 'theirs.bin', theirsBytes);
    // A multipart upload is stored as its parts (composed without a copy): the backup holds it whole.
    const big = randomBytes(11 * MiB + 5);
    const bigPath = join(scratch, 'big.bin');
    await writeFile(bigPath, big);
    const sdk = connect({ url: w.url, key: w.key });
    const multipart = await sdk.upload(await fileSource(bigPath), {
      strategy: 'multipart',
      partSize: 5 * MiB,
    });
    assert.equal(multipart.strategy, 'multipart');
    // A stored rendering, with its own object.
    const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#3a7' } })
      .png()
      .toBuffer();
    const photo = await upload(w.key, 'photo.png', png);
    const rendered = await download(w, w.key, `/v1/assets/${photo.id}/image?w=16&format=webp`);
    assert.equal(rendered.status, 200);
    const rendering = Buffer.from(await rendered.arrayBuffer());

    const target = join(scratch, 'nightly');
    const first = await backupJson(target);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.report.snapshots, 1);
    assert.equal(first.report.assets, 4);
    assert.equal(first.report.renderings, 1);
    assert.equal(first.report.copied, 5);
    assert.equal(first.report.kept, 0);
    assert.deepEqual(first.report.problems, []);

    // Restored: a copy of the backup is a data directory; the same keys work on it.
    const restoredDir = join(scratch, 'restored');
    await cp(target, restoredDir, { recursive: true });
    const restored = await startWharf({ dataDir: restoredDir });
    try {
      for (const [key, id, bytes] of [
        [w.key, mine.id, plain],
        [other.key, theirs.id, theirsBytes],
        [w.key, multipart.asset.id, big],
        [w.key, photo.id, png],
      ] as const) {
        const res = await download(restored, key, `/v1/assets/${id}/content`);
        assert.equal(res.status, 200, id);
        assert.equal(sha256(Buffer.from(await res.arrayBuffer())), sha256(bytes), `${id} byte-identical`);
      }
      // Tenancy came along: the other account's key does not see this one's asset.
      assert.equal((await download(restored, other.key, `/v1/assets/${mine.id}/content`)).status, 404);
      const again = await download(restored, w.key, `/v1/assets/${photo.id}/image?w=16&format=webp`);
      assert.equal(again.status, 200);
      assert.ok(Buffer.from(await again.arrayBuffer()).equals(rendering), 'the stored rendering, as it was');
      const verify = await wharfCli(restored, ['assets', 'verify', '--json']);
      assert.equal(verify.code, 0, verify.stderr);
      assert.equal(JSON.parse(verify.stdout).checked, countLive());
    } finally {
      await restored.close();
    }

    // The next night: nothing new is copied; a deleted asset's bytes leave the backup.
    assert.equal((await download(w, w.key, `/v1/assets/${mine.id}`)).status, 200);
    const gone = await fetch(`${w.url}/v1/assets/${mine.id}`, {
      method: 'DELETE',
      headers: { 'x-api-key': w.key },
    });
    assert.equal(gone.status, 204);
    const second = await backupJson(target);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.report.copied, 0);
    assert.equal(second.report.kept, 4);
    assert.equal(second.report.removed, 1);
    assert.ok(!(await filesIn(join(target, 'blobs', 'objects'))).includes(mine.storageKey));

    const human = await wharfCli(w, ['data', 'backup', target]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(
      human.stdout,
      /^Backed up 3 assets and 1 renderings into .*: 0 objects copied \(0 bytes\), 4 kept/m,
    );
  });

  test('assets deleted while it runs: the database is copied again, and the backup holds all it names', async () => {
    const account = await w.newAccount();
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) ids.push((await upload(account.key, `churn-${i}.bin`, randomBytes(MiB))).id);
    const target = join(scratch, 'churn');
    await mkdir(target);
    const running = backupJson(target);
    // Once it has copied the database, the assets are deleted, the last copied first: their
    // bytes go while the backup is still copying objects its copy of the database names.
    await until(async () => (await readdir(target)).some((e) => /^\.wharf-backup-.*\.db$/.test(e)));
    for (const id of ids.reverse()) {
      await fetch(`${w.url}/v1/assets/${id}`, { method: 'DELETE', headers: { 'x-api-key': account.key } });
    }
    const { code, report, stderr } = await running;
    assert.equal(code, 0, stderr);
    assert.deepEqual(report.problems, []);
    // Counted once over the run, however many times the database was copied.
    assert.equal(report.kept, 0, 'a new backup keeps nothing from before');
    assert.ok(report.copied <= 60 + 1, `copied ${report.copied}`);
    const restoredDir = join(scratch, 'churn-restored');
    await cp(target, restoredDir, { recursive: true });
    const restored = await startWharf({ dataDir: restoredDir });
    try {
      const verify = await wharfCli(restored, ['assets', 'verify', '--json']);
      assert.equal(verify.code, 0, `every asset the backup names has its bytes: ${verify.stdout}`);
    } finally {
      await restored.close();
    }
  });

  test('bytes lost or changed behind the server: exit 1, listed; the rest is backed up', async () => {
    const account = await w.newAccount();
    const changed = await upload(account.key, 'changed.bin', randomBytes(4096));
    const lost = await upload(account.key, 'lost.bin', randomBytes(100));
    const fine = await upload(account.key, 'fine.bin', randomBytes(100));
    await replaceStoredObject(w, changed.storageKey, randomBytes(4096));
    await removeStoredObject(w, lost.storageKey);

    const target = join(scratch, 'damaged');
    const { code, report, stderr } = await backupJson(target);
    assert.equal(code, 1);
    assert.match(stderr, /^wharf: 2 assets' bytes are missing or differ from their records in storage/);
    const byId = Object.fromEntries(report.problems.map((p) => [p.asset_id, p]));
    assert.deepEqual(Object.keys(byId).sort(), [changed.id, lost.id].sort());
    assert.equal(byId[changed.id]!.problem, 'checksum_mismatch');
    assert.equal(byId[lost.id]!.problem, 'missing');
    assert.equal(byId[lost.id]!.stored, null);
    const copied = await filesIn(join(target, 'blobs', 'objects'));
    assert.ok(copied.includes(fine.storageKey), 'the fine one is copied');
    assert.ok(!copied.includes(changed.storageKey), 'changed bytes are not passed off as the asset');
    assert.ok((await readdir(target)).includes('wharf.db'), 'the database is backed up all the same');

    // Deleted (the operator's choice for bytes nobody can restore), the next run passes.
    for (const id of [changed.id, lost.id]) {
      const res = await fetch(`${w.url}/v1/assets/${id}`, {
        method: 'DELETE',
        headers: { 'x-api-key': account.key },
      });
      assert.equal(res.status, 204);
    }
    const next = await backupJson(target);
    assert.equal(next.code, 0, next.stderr);
  });

  test('a rendering whose bytes are gone is left out, and made again on the restored copy', async () => {
    const png = await sharp({ create: { width: 40, height: 40, channels: 3, background: '#a37' } })
      .png()
      .toBuffer();
    const photo = await upload(w.key, 'left-out.png', png);
    const first = await download(w, w.key, `/v1/assets/${photo.id}/image?w=8&format=png`);
    assert.equal(first.status, 200);
    const { width } = await sharp(Buffer.from(await first.arrayBuffer())).metadata();
    const [rendering] = dbQuery<{ storage_key: string }>(
      w,
      'select storage_key from derivatives where asset_id = ?',
      photo.id,
    );
    await removeStoredObject(w, rendering!.storage_key);

    const target = join(scratch, 'renderings');
    const { code, report, stderr } = await backupJson(target);
    assert.equal(code, 0, stderr);
    assert.equal(report.renderings_left_out, 1);
    const restoredDir = join(scratch, 'renderings-restored');
    await cp(target, restoredDir, { recursive: true });
    const restored = await startWharf({ dataDir: restoredDir });
    try {
      const res = await download(restored, w.key, `/v1/assets/${photo.id}/image?w=8&format=png`);
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal((await sharp(Buffer.from(await res.arrayBuffer())).metadata()).width, width, 'made again');
    } finally {
      await restored.close();
    }
  });

  test('bytes changed in the backup itself: kept on their recorded facts, copied again with --verify', async () => {
    const account = await w.newAccount();
    const bytes = randomBytes(5000);
    const asset = await upload(account.key, 'rot.bin', bytes);
    const target = join(scratch, 'rot');
    assert.equal((await backupJson(target)).code, 0);
    // A killed backup's database copy is left behind; the next run removes it.
    const stale = join(target, '.wharf-backup-0b9e9d4e-6f2a-4d33-9a53-111111111111.db');
    await writeFile(stale, 'a copy of a database');
    // One byte of the backup's copy flipped (a disk that rots under a backup).
    const copy = join(target, 'blobs', 'objects', asset.storageKey);
    const rotten = Buffer.from(bytes);
    rotten[100] = rotten[100]! ^ 0xff;
    await writeFile(copy, rotten);

    const trusting = await backupJson(target);
    assert.equal(trusting.code, 0, trusting.stderr);
    assert.equal(trusting.report.repaired, 0, 'without --verify the recorded facts are trusted');
    assert.ok(!(await readdir(target)).includes(basename(stale)), 'the stale database copy is gone');

    const ran = await wharfCli(w, ['data', 'backup', target, '--verify', '--json']);
    assert.equal(ran.code, 0, ran.stderr);
    const verified = JSON.parse(ran.stdout) as BackupJson;
    assert.equal(verified.repaired, 1);
    assert.equal(verified.copied, 1);
    assert.equal(sha256(await readFile(copy)), sha256(bytes), 'copied again from the server');
  });

  test('a symlink into the data directory is inside it; one to nowhere is refused', async () => {
    const intoData = join(scratch, 'sneaky');
    await symlink(join(w.dataDir, 'work'), intoData);
    const inside = await wharfCli(w, ['data', 'backup', intoData]);
    assert.equal(inside.code, 1);
    assert.match(inside.stderr, /must go outside the data directory/);
    const below = await wharfCli(w, ['data', 'backup', join(intoData, 'deeper', 'still')]);
    assert.equal(below.code, 1);
    assert.match(below.stderr, /must go outside the data directory/);
    assert.deepEqual(
      await readdir(join(w.dataDir, 'work')).then((e) => e.includes('deeper')),
      false,
      'nothing made',
    );
    const dangling = join(scratch, 'dangling');
    await symlink(join(scratch, 'no-such-place'), dangling);
    const nowhere = await wharfCli(w, ['data', 'backup', dangling]);
    assert.equal(nowhere.code, 1);
    assert.match(nowhere.stderr, /is a symbolic link to a path that does not exist/);
  });

  test('refused: inside the data directory, over other files, over a server’s directory, beside another backup', async () => {
    const inside = await wharfCli(w, ['data', 'backup', join(w.dataDir, 'backup')]);
    assert.equal(inside.code, 1);
    assert.match(inside.stderr, /must go outside the data directory/);
    const parent = await wharfCli(w, ['data', 'backup', join(w.dataDir, '..')]);
    assert.equal(parent.code, 1);
    assert.match(parent.stderr, /must go outside the data directory/);

    const foreign = join(scratch, 'foreign');
    await mkdir(foreign);
    await writeFile(join(foreign, 'notes.txt'), 'mine');
    const over = await wharfCli(w, ['data', 'backup', foreign]);
    assert.equal(over.code, 1);
    assert.match(over.stderr, /holds other files \(notes\.txt\)/);

    const file = join(scratch, 'a-file');
    await writeFile(file, 'not a directory');
    const onFile = await wharfCli(w, ['data', 'backup', file]);
    assert.equal(onFile.code, 1);
    assert.match(onFile.stderr, /is a file, not a directory/);
    assert.doesNotMatch(onFile.stderr, /ENOTDIR/);

    const used = join(scratch, 'used');
    await mkdir(used);
    await writeFile(join(used, 'wharf.db-wal'), '');
    const served = await wharfCli(w, ['data', 'backup', used]);
    assert.equal(served.code, 1);
    assert.match(served.stderr, /has been used as a server's data directory/);

    const busy = join(scratch, 'busy');
    await mkdir(busy);
    const held = holdLock(join(busy, '.wharf-backup.lock'));
    assert.ok(held, 'the test holds the lock');
    try {
      const second = await wharfCli(w, ['data', 'backup', busy]);
      assert.equal(second.code, 1);
      assert.match(second.stderr, /Another backup is writing into/);
    } finally {
      held.release();
    }
    const usage = await wharfCli(w, ['data', 'backup']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /Give the directory to back up into/);
  });

  test('run as the docs give it, `npm run -s wharf`, from another directory: a relative DIR is there', async () => {
    // npm runs the script in the package's folder wherever it was typed (it keeps that in
    // INIT_CWD): the backup went into the checkout instead.
    await mkdir(join(REPO, '.tmp'), { recursive: true });
    const caller = await mkdtemp(join(REPO, '.tmp', 'backup-caller-'));
    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(process.env))
      if (!name.startsWith('WHARF_')) env[name] = value;
    Object.assign(env, { WHARF_DATA_DIR: w.dataDir, ...w.backingEnv });
    try {
      const ran = await new Promise<{ code: number; stderr: string }>((done) =>
        execFile(
          'npm',
          ['run', '-s', 'wharf', '--', 'data', 'backup', 'relbk', '--json'],
          { cwd: caller, env, encoding: 'utf8' },
          (err, _stdout, stderr) => done({ code: err ? Number(err.code ?? -1) : 0, stderr }),
        ),
      );
      assert.equal(ran.code, 0, ran.stderr);
      assert.ok(existsSync(join(caller, 'relbk', 'wharf.db')), 'the backup is in the caller’s directory');
      assert.equal(existsSync(join(REPO, 'relbk')), false, 'nothing in the package’s folder');
    } finally {
      await rm(caller, { recursive: true, force: true });
      await rm(join(REPO, 'relbk'), { recursive: true, force: true });
    }
  });

  test('a target it cannot write into: refused naming the path and why (read-only, no space)', {
    skip: process.getuid?.() !== 0 && 'mounting a small tmpfs needs root',
  }, async () => {
    // Bytes to copy whatever ran before: more than the 1 MiB disk below holds.
    await upload(w.key, 'roomy.bin', randomBytes(2 * MiB));
    const disk = join(scratch, 'small-disk');
    await mkdir(disk);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', disk]);
    try {
      // Missing, on a read-only file system: Node's recursive mkdir said ENOENT of the path
      // whose parent is right there.
      const missing = join(disk, 'bk');
      const made = await wharfCli(w, ['data', 'backup', join(missing, 'deeper')]);
      assert.equal(made.code, 1);
      assert.match(made.stderr, new RegExp(`${literal(missing)}.*read-only file system`), made.stderr);
      assert.doesNotMatch(made.stderr, /ENOENT/);

      // There and empty: "unable to open database file" (its lock file), naming nothing.
      execFileSync('mount', ['-o', 'remount,rw', disk]);
      const empty = join(disk, 'empty');
      await mkdir(empty);
      execFileSync('mount', ['-o', 'remount,ro', disk]);
      const into = await wharfCli(w, ['data', 'backup', empty]);
      assert.equal(into.code, 1);
      assert.match(into.stderr, new RegExp(`${literal(empty)}.*read-only file system`), into.stderr);

      // No room: "ENOSPC: no space left on device, write", naming no path.
      execFileSync('mount', ['-o', 'remount,rw', disk]);
      const full = join(disk, 'full');
      const filled = await wharfCli(w, ['data', 'backup', full]);
      assert.equal(filled.code, 1);
      assert.match(filled.stderr, new RegExp(`${literal(full)}.*no space left`, 'i'), filled.stderr);
    } finally {
      execFileSync('umount', [disk]);
    }
  });
});

describe('wharf data backup on the scaled deployment', {
  skip: deployment !== 'scaled' && 'scaled only',
}, () => {
  test('refused, naming the tools that back up PostgreSQL and S3', async () => {
    const ran = await wharfCli(w, ['data', 'backup', join(scratch, 'pg')]);
    assert.equal(ran.code, 1);
    assert.match(ran.stderr, /copies the embedded default .* back up with their own tools \(pg_dump/);
    assert.deepEqual(await readdir(scratch), [], 'nothing written');
  });
});

function countLive(): number {
  return dbQuery<{ n: number }>(w, 'select count(*) as n from assets')[0]!.n;
}

/** Polls `check` every 5 ms until it holds (a condition, not a duration). */
/** `text` matched as it is in a RegExp. */
function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 12_000; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('never happened');
}

async function filesIn(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(root.length + 1));
}
