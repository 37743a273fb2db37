import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createAsset, eventually } from '../helpers/assets.js';
import { api } from '../helpers/http.js';
import { Receiver } from '../helpers/receiver.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * The server's own job runner (not a test's drain()): a webhook endpoint that never answers
 * holds one worker for its whole timeout, and the node's other workers go on processing.
 */

let w: TestWharf;
let receiver: Receiver;
before(async () => {
  receiver = await Receiver.start();
  w = await startWharf({
    env: {
      WHARF_JOB_INTERVAL_MS: '20',
      WHARF_WEBHOOK_ALLOW_PRIVATE: 'true',
      // Longer than this test waits for anything: the hanging delivery stays in flight.
      WHARF_WEBHOOK_TIMEOUT_MS: '60000',
    },
  });
});
after(async () => {
  await receiver?.close();
  await w?.close();
});

describe('jobs run concurrently on a node', () => {
  test('a delivery hanging on its endpoint does not hold up asset processing', async () => {
    const created = await api(w.url, w.key, 'POST', '/v1/webhooks', {
      url: receiver.url,
      event_types: ['asset.created'],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    receiver.secrets = [created.body.secret];
    receiver.answer = () => 'hang';

    await createAsset(w, w.key, 'first.bin', randomBytes(100));
    await eventually(() => receiver.requests.length === 1, 'the first delivery reaches the endpoint');

    // The first delivery is still in flight (the endpoint holds it); a new asset is processed anyway.
    const second = await createAsset(w, w.key, 'second.bin', randomBytes(100));
    await eventually(async () => {
      const res = await api(w.url, w.key, 'GET', `/v1/assets/${second.id}`);
      return res.body.processing === 'done';
    }, 'the second asset is processed while the first delivery hangs');
    const first = receiver.requests[0]!;
    assert.equal(first.payload?.type, 'asset.created');
    assert.equal(receiver.accepted.length, 0, 'the endpoint has answered nothing yet');
  });
});
