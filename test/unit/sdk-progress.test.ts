import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { ProgressMeter, type UploadProgress } from '../../src/sdk/progress.js';

/** The SDK's progress reports (src/sdk/progress.ts): throttled, but no count left unreported. */

test('a count throttled away is delivered at the end of the interval, not only with the next one', async () => {
  const events: UploadProgress[] = [];
  const meter = new ProgressMeter(70, (p) => events.push({ ...p }), 50);
  meter.start('uploading', 'tus');
  // A browser's Blob body: its whole size counts when the request starts, right after the phase's report.
  meter.add(70);
  meter.add(0);
  assert.deepEqual(
    events.map((e) => e.bytes),
    [0],
  );
  await delay(120);
  assert.deepEqual(
    events.map((e) => [e.phase, e.bytes]),
    [
      ['uploading', 0],
      ['uploading', 70],
    ],
    'once, at the end of the interval',
  );
  meter.start('done');
  assert.deepEqual(events.at(-1), {
    phase: 'done',
    bytes: 70,
    total: 70,
    rate: events.at(-1)!.rate,
    strategy: 'tus',
  });
  assert.equal(events.length, 3);
});
