/**
 * `wharf assets verify` on both deployments: the real command, run where the server runs,
 * reads every stored asset back and finds what was changed behind Wharf's back — in the local
 * store's files or the S3 bucket — by hashing the bytes, not by trusting what the store
 * recorded beside them.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { wharfCli } from '../helpers/admin-cli.js';
import { dbQuery, uploadRaw } from '../helpers/assets.js';
import { onS3, pendingWrites, removeStoredObject, replaceStoredObject } from '../helpers/deployment.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

interface Stored {
  id: string;
  size: number;
  sha256: string;
  key: string;
}

async function upload(key: string, name: string, bytes: Buffer): Promise<Stored> {
  const res = await uploadRaw(w, key, name, bytes, { contentType: 'application/octet-stream' });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const { id, size, sha256 } = res.body.asset;
  const [row] = dbQuery<{ storage_key: string }>(w, 'select storage_key from assets where id = ?', id);
  return { id, size, sha256, key: row!.storage_key };
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const md5 = (bytes: Buffer) => createHash('md5').update(bytes).digest('hex');

describe('wharf assets verify', () => {
  test('every asset matches: exit 0, each read and counted', async () => {
    const other = await w.newAccount();
    const sizes = [0, 1, 300_000];
    for (const [i, size] of sizes.entries()) await upload(w.key, `ok-${i}.bin`, randomBytes(size));
    await upload(other.key, 'theirs.bin', randomBytes(1234));

    const json = await wharfCli(w, ['assets', 'verify', '--json']);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), {
      checked: 4,
      bytes: 300_001 + 1234,
      skipped: 0,
      problems: [],
    });
    const human = await wharfCli(w, ['assets', 'verify', '--account', other.accountId]);
    assert.equal(human.code, 0, human.stderr);
    assert.equal(human.stdout, 'Checked 1 assets (1234 bytes): every one matches its record.\n');
  });

  test('finds a missing object, a changed size and changed bytes of the same size; --account narrows it', async () => {
    const other = await w.newAccount();
    const same = await upload(other.key, 'same-size.bin', randomBytes(4096));
    const longer = await upload(other.key, 'longer.txt', Buffer.from('short\n'));
    const gone = await upload(other.key, 'gone.bin', randomBytes(100));
    const fine = await upload(other.key, 'fine.bin', randomBytes(100));
    const elsewhere = await w.newAccount();
    const theirs = await upload(elsewhere.key, 'theirs.bin', randomBytes(64));

    const flipped = randomBytes(4096);
    await replaceStoredObject(w, same.key, flipped);
    const grown = Buffer.from('short, and then some\n');
    await replaceStoredObject(w, longer.key, grown);
    await removeStoredObject(w, gone.key);
    await replaceStoredObject(w, theirs.key, randomBytes(64));

    const json = await wharfCli(w, ['assets', 'verify', '--account', other.accountId, '--json']);
    assert.equal(json.code, 1, 'a problem fails the command');
    assert.equal(json.stderr, 'wharf: 3 of 4 assets do not match their records.\n');
    const report = JSON.parse(json.stdout);
    assert.equal(report.checked, 4);
    assert.equal(report.bytes, flipped.length + grown.length + fine.size);
    const byId = Object.fromEntries(report.problems.map((p: { asset_id: string }) => [p.asset_id, p]));
    assert.deepEqual(
      Object.keys(byId).sort(),
      [same.id, longer.id, gone.id].sort(),
      'the fine one is not listed',
    );
    assert.deepEqual(byId[same.id], {
      problem: 'checksum_mismatch',
      asset_id: same.id,
      account_id: other.accountId,
      name: 'same-size.bin',
      storage_key: same.key,
      recorded: { size: 4096, sha256: same.sha256, md5: byId[same.id].recorded.md5 },
      stored: { size: 4096, sha256: sha256(flipped), md5: md5(flipped) },
    });
    assert.notEqual(byId[same.id].recorded.md5, md5(flipped));
    assert.equal(byId[longer.id].problem, 'size_mismatch');
    assert.deepEqual(byId[longer.id].stored, { size: grown.length, sha256: sha256(grown), md5: md5(grown) });
    assert.equal(byId[gone.id].problem, 'missing');
    assert.equal(byId[gone.id].stored, null);

    // Human output: one line a problem, as it is found, then the count.
    const human = await wharfCli(w, ['assets', 'verify', '--account', other.accountId]);
    assert.equal(human.code, 1);
    const lines = human.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 4, human.stdout);
    assert.ok(
      lines.includes(
        `MISSING  ${gone.id}  ${other.accountId}  gone.bin: storage holds no object under ${gone.key}`,
      ),
      human.stdout,
    );
    assert.ok(
      lines.includes(
        `SIZE MISMATCH  ${longer.id}  ${other.accountId}  longer.txt: stored ${grown.length} bytes, recorded 6`,
      ),
      human.stdout,
    );
    assert.ok(
      lines.includes(
        `CHECKSUM MISMATCH  ${same.id}  ${other.accountId}  same-size.bin: stored SHA-256 ${sha256(flipped)}, recorded ${same.sha256}`,
      ),
      human.stdout,
    );
    assert.equal(lines[3], `Checked 4 assets (${flipped.length + grown.length + fine.size} bytes).`);

    // Every account: the other tenant's changed object too (and the first test's, all fine).
    const all = JSON.parse((await wharfCli(w, ['assets', 'verify', '--json'])).stdout);
    assert.equal(all.problems.length, 4);
    assert.ok(all.problems.some((p: { asset_id: string }) => p.asset_id === theirs.id));
  });

  test('an unknown account is refused (exit 1), a malformed one is a usage error (exit 2)', async () => {
    const unknown = await wharfCli(w, ['assets', 'verify', '--account', 'nobody-here']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /No account "nobody-here"/);
    const malformed = await wharfCli(w, ['assets', 'verify', '--account', '../x']);
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /Account ids are 1 to 64/);
  });

  test('run beside the server, it leaves the uploads the server is receiving alone', async () => {
    // The operations page suggests running it from cron: it must not take the temp files of
    // uploads the server is receiving for a crash's leftovers (they were deleted, and the
    // uploads failed with 500).
    const fresh = await w.newAccount();
    await upload(fresh.key, 'stored.bin', randomBytes(1000));
    const first = randomBytes(256 * 1024);
    const rest = randomBytes(256 * 1024);
    let send!: (last: Buffer) => void;
    const answer = fetch(`${w.url}/v1/assets?name=in-flight.bin`, {
      method: 'POST',
      headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
      body: new ReadableStream({
        start(controller) {
          controller.enqueue(new Uint8Array(first));
          send = (last) => {
            controller.enqueue(new Uint8Array(last));
            controller.close();
          };
        },
      }),
      duplex: 'half',
    } as RequestInit);
    try {
      // The local store's temp file shows the write has begun; a small body streamed to S3
      // leaves no trace in the bucket until it is whole, so there a moment is given instead.
      const local = !onS3(w);
      for (let i = 0; local ? (await pendingWrites(w)).length === 0 : i < 8; i += 1) {
        assert.ok(i < 200, 'the upload began writing');
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      for (const args of [
        ['assets', 'verify', '--account', fresh.accountId],
        ['keys', 'list'],
      ]) {
        const run = await wharfCli(w, args);
        assert.equal(run.code, 0, `${args.join(' ')}: ${run.stderr}`);
      }
      if (local) assert.ok((await pendingWrites(w)).length > 0, 'the upload is still writing');
    } finally {
      send(rest);
    }
    const res = await answer;
    const body = await res.json();
    assert.equal(res.status, 201, JSON.stringify(body));
    assert.equal(body.asset.sha256, sha256(Buffer.concat([first, rest])));
  });
});
