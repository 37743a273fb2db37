import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Backing, deployment, provision, storesOnS3, withBucket } from '../helpers/deployment.js';
import { startWharfProcess, type WharfProcess } from '../helpers/server-process.js';
import { freePort } from '../helpers/wharf.js';

/*
 * Wharf's log is JSON lines on stdout (pino), which log shippers parse line by line. Without a
 * logger of its own, the AWS SDK writes a plain line (console.warn: "An error was encountered
 * in a non-retryable streaming request.") whenever a write that streams its body to the bucket
 * fails: a part tus.io's S3 store uploads from its file, refused for a used-up bucket quota.
 * The SDK logs through Wharf's logger instead.
 */
const cephConf = process.env.WHARF_TEST_CEPH_CONF;
const skip =
  deployment !== 'scaled' || !storesOnS3
    ? 'the AWS SDK only runs against an S3 store (the scaled deployment); the embedded deployment stores on disk'
    : !cephConf
      ? 'a failing streaming write is a bucket quota set with radosgw-admin, which needs the test cluster’s ceph.conf (WHARF_TEST_CEPH_CONF, printed by scripts/services/ceph.sh)'
      : false;

/** The SDK's line on a streaming request that failed (it cannot retry one). */
const SDK_STREAMING_WARNING = 'An error was encountered in a non-retryable streaming request.';

describe('what the AWS SDK says goes through Wharf’s JSON log (S3 store)', { skip }, () => {
  let backing: Backing;
  let dataDir: string;
  let wharf: WharfProcess;
  const key = `wharf_sdklog_${randomBytes(16).toString('hex')}`;

  before(async () => {
    backing = await provision();
    dataDir = await mkdtemp(join(tmpdir(), 'wharf-sdk-log-'));
    wharf = await startWharfProcess({
      ...backing.env,
      WHARF_DATA_DIR: dataDir,
      WHARF_PORT: String(await freePort()),
      WHARF_API_KEY: key,
      // Every line Wharf writes, the SDK's own among them.
      WHARF_LOG_LEVEL: 'debug',
    });
  });

  after(async () => {
    await wharf?.kill();
    await backing?.release();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('a tus PATCH the bucket’s used-up quota refuses: the SDK’s warning is a JSON line of stdout, nothing else is written', async () => {
    // Made while there is room (its record in the bucket is a write too).
    const tus = { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${key}` };
    const size = 2 ** 20;
    const created = await fetch(`${wharf.url}/v1/tus/`, {
      method: 'POST',
      headers: { ...tus, 'Upload-Length': String(size), 'Upload-Metadata': `filename ${btoa('q.bin')}` },
    });
    assert.equal(created.status, 201, await created.text());
    const bucket = backing.env.WHARF_S3_BUCKET!;
    const scope = ['--quota-scope=bucket', `--bucket=${bucket}`];
    const radosgwAdmin = (...args: string[]) =>
      execFileSync('radosgw-admin', ['-c', cephConf!, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    radosgwAdmin('quota', 'set', ...scope, '--max-size=1024');
    radosgwAdmin('quota', 'enable', ...scope);
    // RGW applies it at once; waited for all the same (a PUT over it is refused).
    const { PutObjectCommand } = await import('@aws-sdk/client-s3');
    let refused = false;
    for (let i = 0; i < 50 && !refused; i++) {
      refused = await withBucket({ backingEnv: backing.env, dataDir }, (s3, name) =>
        s3.send(new PutObjectCommand({ Bucket: name, Key: 'quota-probe', Body: Buffer.alloc(2048) })).then(
          () => false,
          (err: Error) => err.name === 'QuotaExceeded',
        ),
      );
      if (!refused) await sleep(200);
    }
    assert.ok(refused, 'RGW applies the quota');
    const stderrBefore = wharf.stderr().length;

    const patched = await fetch(created.headers.get('location')!, {
      method: 'PATCH',
      headers: { ...tus, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body: new Uint8Array(randomBytes(size)),
    });
    const text = await patched.text();
    assert.equal(patched.status, 507, text);

    // The SDK said it (so this test makes it speak), as a line of Wharf's log.
    const said = () =>
      wharf.stdout().includes(SDK_STREAMING_WARNING) || wharf.stderr().includes(SDK_STREAMING_WARNING);
    for (let i = 0; i < 100 && !said(); i++) await sleep(100);
    assert.ok(said(), `the SDK said nothing:\n${wharf.tail()}`);
    const lines = wharf
      .stdout()
      .split('\n')
      .filter((line) => line !== '');
    const plain = lines.filter((line) => {
      try {
        return typeof JSON.parse(line) !== 'object';
      } catch {
        return true;
      }
    });
    assert.deepEqual(plain, [], 'every line of stdout is JSON');
    assert.equal(wharf.stderr().slice(stderrBefore), '', 'nothing on stderr either');
    assert.ok(
      lines.some((line) => (JSON.parse(line) as { msg?: string }).msg?.includes(SDK_STREAMING_WARNING)),
      'the SDK’s warning is a line of the log',
    );
  });
});
