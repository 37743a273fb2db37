import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
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

const noFfmpeg =
  spawnSync('ffprobe', ['-version']).status !== 0 || spawnSync('ffmpeg', ['-version']).status !== 0;

/** MediaTools with the server's tools and limits, working in `dir`. */
async function tools(dir: string): Promise<MediaTools> {
  const config = loadConfig({ WHARF_DATA_DIR: dir });
  const media = new MediaTools(config.media, new Scratch(join(dir, 'work')), {
    timeoutSeconds: config.media.timeoutSeconds,
    maxInputBytes: config.media.maxInputBytes,
  });
  await media.detect();
  return media;
}

test('an HLS playlist behind an ID3 tag is not opened, so the file it names is never read in; real containers still are', {
  skip: noFfmpeg,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wharf-media-'));
  try {
    const media = await tools(dir);
    const tone = join(dir, 'tone.mp3');
    spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'sine=duration=3', '-y', tone]);
    // ffmpeg skips an ID3v2 tag before it probes, then takes what follows as HLS and opens the
    // segment it names: here a file of the server's, which would be reported as the upload.
    const id3 = Buffer.from([0x49, 0x44, 0x33, 3, 0, 0, 0, 0, 0, 0]);
    const playlist = Buffer.from(
      `#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:3,\nfile://${tone}\n#EXT-X-ENDLIST\n`,
    );
    const hostile = Buffer.concat([id3, playlist]);
    const facts = await media.inspect('audio', Readable.from([hostile]), hostile.length);
    assert.equal(facts.duration, undefined, 'the named file was read in as the upload');
    assert.equal(facts.error, 'TOOL_FAILED');

    for (const [ext, codec] of [
      ['mp3', []],
      ['webm', ['-c:a', 'libopus']],
      ['ogg', ['-c:a', 'libvorbis']],
      ['m4a', ['-c:a', 'aac']],
      ['wav', []],
      ['flac', []],
    ] as const) {
      const path = join(dir, `clip.${ext}`);
      spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'sine=duration=1', ...codec, '-y', path]);
      const bytes = await readFile(path);
      const real = await media.inspect('audio', Readable.from([bytes]), bytes.length);
      assert.equal(real.error, undefined, ext);
      assert.ok(real.duration !== undefined && real.duration > 0.9, `${ext}: ${JSON.stringify(real)}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
