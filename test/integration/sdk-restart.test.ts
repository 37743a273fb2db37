import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type UploadSource, type UploadStrategy } from '../../src/sdk/node.js';
import { provision } from '../helpers/deployment.js';
import { sha256Hex } from '../helpers/http.js';
import { startWharfProcess, type WharfProcess } from '../helpers/server-process.js';
import { freePort } from '../helpers/wharf.js';

/*
 * The SDK across a server restart (a deploy, or a crash and its supervisor): Wharf, its own
 * process, is SIGKILLed while one upload of each flow is sending, and started again on the same
 * database and storage 10 s later. That is longer than the SDK's `retries` last (about 4 s, at
 * most 8), so only its restart window (`retry.restartMs`, default 30 s) carries the uploads
 * over: each must finish with its bytes, with the SDK's default settings. Both deployments.
 */

const MiB = 1024 * 1024;
const DOWNTIME_MS = 10_000;

/**
 * `bytes` as a re-readable source whose reads stop at byte `at` (they hang there, the request
 * open mid-body) while `held()`: the test kills the server meanwhile. Once released, every read
 * (the SDK's retries open it again) delivers all the bytes.
 */
function holdingAt(
  name: string,
  bytes: Buffer,
  at: number,
  held: () => boolean,
  reached: () => void,
): UploadSource {
  return {
    name,
    size: bytes.length,
    reopenable: true,
    open(start = 0, end = bytes.length) {
      let position = start;
      let signalled = false;
      return new ReadableStream<Uint8Array>({
        pull(controller) {
          if (position >= end) return controller.close();
          if (position >= at && held()) {
            if (!signalled) {
              signalled = true;
              reached();
            }
            return new Promise(() => {});
          }
          const stop = held() && position < at ? Math.min(end, at) : end;
          const chunk = bytes.subarray(position, Math.min(stop, position + 256 * 1024));
          position += chunk.length;
          controller.enqueue(new Uint8Array(chunk));
        },
      });
    },
  };
}

test('uploads of every flow ride out a 10 s restart of the server with the default retries', {
  timeout: 180_000,
}, async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'wharf-sdk-restart-'));
  const backing = await provision();
  const key = `sdk-restart-${randomBytes(8).toString('hex')}`;
  const env = {
    ...backing.env,
    WHARF_DATA_DIR: dataDir,
    WHARF_PORT: String(await freePort()),
    WHARF_API_KEY: key,
  };
  let wharf: WharfProcess | undefined;
  try {
    wharf = await startWharfProcess(env);
    const client = connect({ url: wharf.url, key });
    // The client has talked to this server: a server that stops answering now is restarting.
    await client.assets.list();

    const plans: Array<{ strategy: UploadStrategy; size: number; at: number }> = [
      { strategy: 'direct', size: 2 * MiB, at: 1 * MiB },
      { strategy: 'presigned', size: 3 * MiB, at: 1 * MiB },
      // Cut in its second part, the first (5 MiB, S3's smallest) stored.
      { strategy: 'multipart', size: 6 * MiB, at: 5 * MiB + MiB / 2 },
      { strategy: 'tus', size: 6 * MiB, at: 3 * MiB },
    ];
    let holding = true;
    let reachedCount = 0;
    let allReached!: () => void;
    const allHeld = new Promise<void>((resolve) => {
      allReached = resolve;
    });
    const uploads = plans.map(({ strategy, size, at }) => {
      const bytes = randomBytes(size);
      let sending = false;
      const source = holdingAt(
        `restart-${strategy}.bin`,
        bytes,
        at,
        () => holding && sending,
        () => {
          if (++reachedCount === plans.length) allReached();
        },
      );
      const result = client.upload(source, {
        strategy,
        partSize: 5 * MiB,
        partConcurrency: 1,
        onProgress: (p) => {
          // Hold only the sending: the hash pass reads the same bytes first.
          if (p.phase === 'uploading') sending = true;
        },
      });
      return { strategy, bytes, result };
    });

    await allHeld;
    await wharf.kill();
    holding = false;
    await sleep(DOWNTIME_MS);
    wharf = await startWharfProcess(env);

    for (const { strategy, bytes, result } of uploads) {
      const outcome = await result;
      assert.equal(outcome.asset.sha256, sha256Hex(bytes), strategy);
      assert.equal(outcome.asset.size, bytes.length, strategy);
      const download = await client.assets.download(outcome.asset.id);
      const stored = Buffer.from(await new Response(download.body).arrayBuffer());
      assert.ok(stored.equals(bytes), `${strategy}: the stored bytes are the file's`);
    }
  } finally {
    await wharf?.kill();
    await backing.release();
    await rm(dataDir, { recursive: true, force: true });
  }
});
