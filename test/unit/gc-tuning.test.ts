import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BUFFER_ACCOUNTING_FLAG, gcFlagsFor } from '../../src/gc-tuning.js';

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL('../fixtures/gc/buffer-churn.ts', import.meta.url));

/** Full collections in a child that makes 8 GiB of short-lived Buffers beside a kept heap. */
async function fullCollections(tuned: boolean): Promise<number> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', CHILD, ...(tuned ? ['tuned'] : [])], {
    encoding: 'utf8',
  });
  return (JSON.parse(stdout) as { full: number }).full;
}

describe('garbage collection tuning', () => {
  test('the flag is set on the V8s that need it and know it, and on no other', () => {
    assert.equal(gcFlagsFor('14.6.202.34-node.40'), BUFFER_ACCOUNTING_FLAG);
    assert.equal(gcFlagsFor('14.7.0'), BUFFER_ACCOUNTING_FLAG);
    assert.equal(gcFlagsFor('13.6.233.10'), BUFFER_ACCOUNTING_FLAG);
    assert.equal(gcFlagsFor('14.8.0'), undefined);
    assert.equal(gcFlagsFor('14.10.1'), undefined);
    assert.equal(gcFlagsFor('15.0.0'), undefined);
    // Node 22's and Node 20's V8s (the SDK package's command runs on older Nodes than the server):
    // Node 20's does not know the flag, and no V8 before 13 is trusted to.
    assert.equal(gcFlagsFor('12.4.254.21-node.33'), undefined);
    assert.equal(gcFlagsFor('11.3.244.8-node.33'), undefined);
  });

  test('short-lived Buffers no longer set off full collections of the heap that stays', async () => {
    // This Node's V8 needs the flag; on one that does not, the comparison would be of nothing.
    assert.equal(gcFlagsFor(process.versions.v8), BUFFER_ACCOUNTING_FLAG, `V8 ${process.versions.v8}`);
    // How many full collections V8's default runs depends on how fast each one's incremental
    // marking finishes beside the allocation, so on how busy the machine is: 5 to 30 for 2 GiB
    // seen here (5 once in CI, with the suite's other files running). 8 GiB keeps the default's
    // count above the bar; the tuned child runs 1 or none either way. One after the other:
    // side by side, each child's GC threads compete with the other's on two cores, and one CI run
    // (2026-12-05) saw the tuned child at 22 full collections beside the plain one's 45. Not seen
    // again here: a tuned child alone beside two busy loops ran 1; this test passed 6 times beside
    // a running CI suite. Why the GC threads fell that far behind is not known.
    // The default's bar is only that it ran several (the effect is there to remove): a CI run
    // (2026-12-06) saw 6 and 7 for 4 GiB, under a bar of 8 set from too few runs, where this
    // machine gives 41-49 idle or beside a running suite (why that run's V8 kept up is not
    // known); hence 8 GiB now, and a bar of 4. What is asserted of the tuning is the ratio.
    const plain = await fullCollections(false);
    const tuned = await fullCollections(true);
    assert.ok(plain >= 4, `V8's default ran ${plain} full collections for 8 GiB of Buffers`);
    assert.ok(tuned * 4 <= plain, `tuned: ${tuned} full collections, against ${plain} untuned`);
  });
});
