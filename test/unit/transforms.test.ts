import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isWharfError } from '../../src/core/errors.js';
import { ImageService } from '../../src/core/images.js';
import { Slots } from '../../src/core/slots.js';
import {
  acceptedImageTypes,
  canonicalize,
  canonicalQuery,
  negotiateFormat,
  outputSpec,
  specKey,
  type TransformInput,
  withDpr,
} from '../../src/core/transforms.js';

function refused(input: TransformInput): void {
  assert.throws(
    () => canonicalize(input),
    (err: unknown) => isWharfError(err, 'VALIDATION_FAILED'),
    JSON.stringify(input),
  );
}

describe('canonical transform parameters', () => {
  test('sizes: × dpr, rounded up to 16, at least 16, at most 4096', () => {
    assert.deepEqual(canonicalize({ w: 100 }), { format: 'auto', w: 112 });
    assert.deepEqual(canonicalize({ w: 112 }), { format: 'auto', w: 112 });
    assert.deepEqual(canonicalize({ w: 1 }), { format: 'auto', w: 16 });
    assert.deepEqual(canonicalize({ w: 100, dpr: 2 }), { format: 'auto', w: 208 });
    assert.deepEqual(canonicalize({ w: 100, dpr: 1.5 }), { format: 'auto', w: 160 });
    assert.deepEqual(canonicalize({ h: 99_999, dpr: 3 }), { format: 'auto', h: 4096 });
  });

  test('fit only with both sides (defaulting to inside); dpr without a size changes nothing', () => {
    assert.deepEqual(canonicalize({ w: 64, fit: 'cover' }), { format: 'auto', w: 64 });
    assert.deepEqual(canonicalize({ w: 64, h: 64 }), { format: 'auto', w: 64, h: 64, fit: 'inside' });
    assert.deepEqual(canonicalize({ w: 64, h: 64, fit: 'contain' }).fit, 'contain');
    assert.deepEqual(canonicalize({ dpr: 3 }), { format: 'auto' });
  });

  test('quality: nearest multiple of 5, at least 5; none for PNG', () => {
    assert.equal(canonicalize({ q: 72 }).q, 70);
    assert.equal(canonicalize({ q: 73 }).q, 75);
    assert.equal(canonicalize({ q: 1 }).q, 5);
    assert.equal(canonicalize({ q: 100 }).q, 100);
    assert.equal(canonicalize({ q: 50, format: 'png' }).q, undefined);
  });

  test('is idempotent: the canonical form of a canonical form is itself', () => {
    const inputs: TransformInput[] = [
      { w: 333, h: 77, fit: 'cover', q: 61, format: 'webp', dpr: 2.5 },
      { h: 1 },
      { format: 'avif', q: 100 },
      {},
    ];
    for (const input of inputs) {
      const once = canonicalize(input);
      assert.deepEqual(canonicalize(once), once, JSON.stringify(input));
    }
  });

  test('out-of-range values are refused', () => {
    refused({ w: 0 });
    refused({ w: 1.5 });
    refused({ h: -1 });
    refused({ dpr: 0.9 });
    refused({ dpr: 3.1 });
    refused({ dpr: Number.NaN });
    refused({ q: 0 });
    refused({ q: 101 });
    refused({ format: 'gif' as never });
    refused({ w: 10, h: 10, fit: 'fill' as never });
  });

  test('a preset with dpr is the preset scaled', () => {
    const preset = canonicalize({ w: 100, h: 50, fit: 'cover' });
    assert.deepEqual(withDpr(preset, 2), { format: 'auto', w: 224, h: 128, fit: 'cover' });
    assert.equal(withDpr(preset, undefined), preset);
  });

  test('the signed query string has one fixed order', () => {
    const t = canonicalize({ q: 80, fit: 'cover', h: 20, w: 30, format: 'webp' });
    assert.equal(canonicalQuery(t), 'w=32&h=32&fit=cover&format=webp&q=80');
    assert.equal(
      ImageService.subject({ kind: 'params', input: { format: 'webp', w: 30, q: 78, h: 20, fit: 'cover' } }),
      'w=32&h=32&fit=cover&format=webp&q=80',
    );
    assert.equal(ImageService.subject({ kind: 'preset', name: 'thumb', dpr: 2 }), 'preset=thumb&dpr=2');
  });

  test('the storage key names every rendering parameter, with the format’s default quality', () => {
    assert.equal(specKey(outputSpec(canonicalize({ w: 320 }), 'webp')), 'w320-q80-webp');
    assert.equal(specKey(outputSpec(canonicalize({ w: 320 }), 'avif')), 'w320-q50-avif');
    assert.equal(
      specKey(outputSpec(canonicalize({ w: 320, h: 200, fit: 'cover', q: 90 }), 'jpeg')),
      'w320-h208-cover-q90-jpeg',
    );
    assert.equal(specKey(outputSpec(canonicalize({ q: 90 }), 'png')), 'png');
  });
});

describe('format negotiation', () => {
  test('AVIF, then WebP, only when named with q > 0; else the source’s family', () => {
    assert.equal(negotiateFormat('auto', 'image/avif,image/webp,*/*', 'jpg'), 'avif');
    assert.equal(negotiateFormat('auto', 'image/webp', 'jpg'), 'webp');
    assert.equal(negotiateFormat('auto', 'IMAGE/WEBP; q=0.4', 'jpg'), 'webp');
    assert.equal(negotiateFormat('auto', 'image/avif;q=0,image/webp;q=0', 'jpg'), 'jpeg');
    assert.equal(negotiateFormat('auto', '*/*', 'jpg'), 'jpeg');
    assert.equal(negotiateFormat('auto', undefined, 'png'), 'png');
    assert.equal(negotiateFormat('auto', 'image/*', 'gif'), 'png');
    assert.equal(negotiateFormat('auto', '', 'webp'), 'png');
    assert.equal(negotiateFormat('jpeg', 'image/avif', 'png'), 'jpeg');
  });

  test('parses Accept leniently', () => {
    assert.deepEqual([...acceptedImageTypes(' image/webp ;q=1 , ,text/html')], ['image/webp', 'text/html']);
    assert.deepEqual([...acceptedImageTypes('image/avif;q=abc')], []);
  });
});

describe('transform slots', () => {
  // A bounded time: before accounts were passed, an acquire that should be refused waited for ever.
  const bounded = { timeout: 5_000 };
  test(
    'run up to their size, queue up to the limit, refuse beyond with TRANSFORMS_BUSY',
    bounded,
    async () => {
      const slots = new Slots(2, 1);
      const a = await slots.acquire('acct');
      const b = await slots.acquire('acct');
      let cGranted = false;
      const c = slots.acquire('acct').then((release) => {
        cGranted = true;
        return release;
      });
      await assert.rejects(slots.acquire('acct'), (err: unknown) => {
        assert.ok(isWharfError(err, 'TRANSFORMS_BUSY'));
        assert.equal(err.details?.retry_after, 2);
        return true;
      });
      assert.deepEqual(slots.stats, { running: 2, queued: 1 });
      // Background work waits however long the queue is.
      let dGranted = false;
      const d = slots.acquire('acct', true).then((release) => {
        dGranted = true;
        return release;
      });
      a();
      a(); // releasing twice frees one slot only
      const releaseC = await c;
      assert.ok(cGranted);
      assert.equal(dGranted, false);
      b();
      const releaseD = await d;
      assert.ok(dGranted);
      releaseC();
      releaseD();
      assert.deepEqual(slots.stats, { running: 0, queued: 0 });
    },
  );

  test('a waiter leaves the queue when its signal aborts or its wait passes maxWaitMs', bounded, async () => {
    const slots = new Slots(1, 4);
    const holder = await slots.acquire('acct');
    const left = new AbortController();
    const leaving = slots.acquire('acct', false, { signal: left.signal });
    const staying = slots.acquire('acct');
    assert.deepEqual(slots.stats, { running: 1, queued: 2 });
    const reason = new Error('client left');
    left.abort(reason);
    await assert.rejects(leaving, (err: unknown) => err === reason);
    // Its place is free: the account may queue another within its share (two of four).
    const timed = slots.acquire('acct', false, { maxWaitMs: 20 });
    assert.deepEqual(slots.stats, { running: 1, queued: 2 });
    await assert.rejects(timed, (err: unknown) => {
      assert.ok(isWharfError(err, 'TRANSFORMS_BUSY'));
      assert.equal(err.details?.retry_after, 2);
      return true;
    });
    assert.deepEqual(slots.stats, { running: 1, queued: 1 });
    // A signal already aborted gets no slot, even a free one: nobody would read the work.
    const gone = new AbortController();
    gone.abort(reason);
    holder();
    const release = await staying;
    release();
    await assert.rejects(
      slots.acquire('acct', false, { signal: gone.signal }),
      (err: unknown) => err === reason,
    );
    assert.deepEqual(slots.stats, { running: 0, queued: 0 });
  });

  test(
    'are shared fairly: an account holds at most half the queue, and accounts are served in turn',
    bounded,
    async () => {
      const slots = new Slots(1, 4);
      const granted: string[] = [];
      const wait = (account: string, name: string, background = false) =>
        slots.acquire(account, background).then((release) => {
          granted.push(name);
          return release;
        });
      const holder = await slots.acquire('other');
      const a1 = wait('a', 'a1');
      const a2 = wait('a', 'a2');
      // A has its share (half of 4): its next request is refused while the queue has room...
      await assert.rejects(slots.acquire('a'), (err: unknown) => {
        assert.ok(isWharfError(err, 'TRANSFORMS_BUSY'));
        assert.equal(err.details?.retry_after, 2);
        return true;
      });
      // ...which B's still gets, and background work of A's waits whatever its share.
      const b1 = wait('b', 'b1');
      const a3 = wait('a', 'a3', true);
      assert.deepEqual(slots.stats, { running: 1, queued: 4 });
      // The whole queue full: refused for everyone.
      await assert.rejects(slots.acquire('c'), (err: unknown) => isWharfError(err, 'TRANSFORMS_BUSY'));
      // Round-robin between accounts, first come first served within one: a1, b1, a2, a3
      // (first come first served across accounts would have been a1, a2, b1, a3).
      holder();
      for (const next of [a1, b1, a2, a3]) (await next)();
      assert.deepEqual(granted, ['a1', 'b1', 'a2', 'a3']);
      assert.deepEqual(slots.stats, { running: 0, queued: 0 });
    },
  );
});
