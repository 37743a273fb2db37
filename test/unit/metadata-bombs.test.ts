import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL('../fixtures/metadata/png-profile-bomb.ts', import.meta.url));

/** What the child found in the PNG whose profile inflates to 256 MiB, and its peak memory's growth. */
async function readBomb(how: 'analyze' | 'strip') {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', CHILD, how], { encoding: 'utf8' });
  return JSON.parse(stdout) as { bytes: number; grownMiB: number; found: Record<string, unknown> };
}

// exifr inflated a PNG's colour profile whole, whatever its options: this one, 256 KB sent,
// raised the peak by over 500 MiB (a 2 MB one, by 4 GB on a server). A peak is a high-water
// mark, so this measures what was held, not how long it took.
const BOUND_MIB = 128;

describe('a PNG whose colour profile inflates to 256 MiB', () => {
  test('analysis reads its size and EXIF position without inflating the profile', async () => {
    const { bytes, grownMiB, found } = await readBomb('analyze');
    assert.ok(bytes < 512 * 1024, `${bytes} bytes`);
    assert.ok(grownMiB < BOUND_MIB, `analysis raised the peak memory by ${grownMiB.toFixed(0)} MiB`);
    assert.equal(found.format, 'png');
    assert.deepEqual([found.width, found.height], [64, 48]);
    const location = found.location as { latitude: number; longitude: number };
    assert.ok(Math.abs(location.latitude - (52 + 31 / 60 + 12.34 / 3600)) < 1e-4, JSON.stringify(found));
    assert.ok(Math.abs(location.longitude + (13 + 24 / 60 + 36 / 3600)) < 1e-4, JSON.stringify(found));
  });

  test('the location scrubber (strip_gps) strips it without inflating the profile', async () => {
    const { grownMiB, found } = await readBomb('strip');
    assert.ok(grownMiB < BOUND_MIB, `stripping raised the peak memory by ${grownMiB.toFixed(0)} MiB`);
    assert.equal(found.kind, 'stripped');
  });
});
