import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { MediaTools } from '../../src/processing/media-tools.js';
import { Scratch } from '../../src/processing/scratch.js';

test('detect() tries only the four tools, never the limits that share their configuration', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wharf-media-'));
  try {
    // Tools that cannot exist, configured the way the server does it (limits in the same object).
    const config = loadConfig({
      WHARF_DATA_DIR: dir,
      WHARF_FFMPEG: join(dir, 'no-such-ffmpeg'),
      WHARF_PDFTOPPM: join(dir, 'no-such-pdftoppm'),
    });
    const media = new MediaTools(config.media, new Scratch(join(dir, 'work')), {
      timeoutSeconds: config.media.timeoutSeconds,
      maxInputBytes: config.media.maxInputBytes,
    });
    const { missing, present } = await media.detect();
    assert.deepEqual(Object.keys(missing).sort(), ['ffmpeg', 'ffprobe', 'pdfinfo', 'pdftoppm']);
    assert.deepEqual(present, []);
    assert.equal(missing.ffprobe, join(dir, 'ffprobe'));
    assert.deepEqual(media.missingTools('video'), ['ffprobe', 'ffmpeg']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
