import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Wharf, WharfApiError } from '../../src/sdk/node.js';
import { sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * The SDK against a Wharf that lets an account stream one upload body at a time
 * (WHARF_MAX_UPLOAD_STREAMS_PER_ACCOUNT=1): concurrent uploads are refused as busy (Retry-After)
 * and must wait their turn, by every flow that can send again, tus included.
 */

const MiB = 1024 * 1024;

let w: TestWharf;
before(async () => {
  w = await startWharf({ env: { WHARF_MAX_UPLOAD_STREAMS_PER_ACCOUNT: '1' } });
});
after(async () => {
  await w?.close();
});

/** A client whose busy waits are short (Retry-After is 5 s, capped at maxDelayMs), counting busy answers. */
function client(): { wharf: Wharf; busy: () => number } {
  let busy = 0;
  const counting: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if ((response.status === 503 || response.status === 429) && response.headers.has('retry-after')) busy++;
    return response;
  };
  const wharf = new Wharf({
    url: w.url,
    key: w.key,
    fetch: counting,
    retry: { minDelayMs: 20, maxDelayMs: 100, busyMs: 60_000 },
  });
  return { wharf, busy: () => busy };
}

test('concurrent tus uploads refused as busy wait Retry-After and all complete', async () => {
  const { wharf, busy } = client();
  const files = Array.from({ length: 6 }, () => randomBytes(2 * MiB));
  const results = await Promise.allSettled(
    files.map((bytes, i) => wharf.upload(bytes, { name: `busy-${i}.bin`, strategy: 'tus' })),
  );
  const failed = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
  assert.deepEqual(failed, []);
  assert.ok(busy() > 0, 'the limit refused some PATCHes (else this test shows nothing)');
  results.forEach((r, i) => {
    assert.equal(r.status === 'fulfilled' && r.value.asset.sha256, sha256Hex(files[i]!));
  });
});

test('a one-shot stream refused as busy is not sent again: the error says when to retry', async () => {
  const { wharf } = client();
  // The account's one body slot, held by a body that trickles until released.
  let release = false;
  const trickle = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (release) return controller.close();
      await new Promise((resolve) => setTimeout(resolve, 20));
      controller.enqueue(new Uint8Array(1024));
    },
  });
  const held = fetch(`${w.url}/v1/assets?name=held.bin`, {
    method: 'POST',
    headers: { authorization: `Bearer ${w.key}` },
    body: trickle,
    duplex: 'half',
  } as RequestInit);
  await new Promise((resolve) => setTimeout(resolve, 300));
  try {
    const bytes = randomBytes(2 * MiB);
    const stream = new Blob([bytes]).stream();
    const refused = await wharf.upload(stream, { name: 'one-shot.bin' }).catch((err) => err);
    assert.ok(refused instanceof WharfApiError, String(refused));
    assert.equal(refused.code, 'TOO_MANY_UPLOAD_STREAMS');
    assert.equal(refused.retryAfter, 5);
  } finally {
    release = true;
    await (await held).body?.cancel();
  }
});
