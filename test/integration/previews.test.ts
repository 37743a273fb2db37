import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { thumbHashToApproximateAspectRatio } from 'thumbhash';
import { uploadRaw } from '../helpers/assets.js';
import { api } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * Video, audio and PDF: facts from ffprobe and pdfinfo, a poster frame or first page stored
 * as a derivative that /image renders from, and the same server without the tools.
 */

function has(tool: string, versionFlag = '-version'): boolean {
  try {
    execFileSync(tool, [versionFlag], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
// scripts/test.sh installs them (Debian's ffmpeg and poppler-utils) where they are missing.
const noFfmpeg = has('ffmpeg') && has('ffprobe') ? false : 'needs ffmpeg (scripts/test.sh installs it)';
const noPoppler =
  has('pdftoppm', '-v') && has('pdfinfo', '-v') ? false : 'needs poppler-utils (scripts/test.sh installs it)';

let scratch: string;
/** A tiny clip made at test time: 160×120 test pattern, 3 s, H.264 with an AAC tone. */
let video: Buffer;
let audio: Buffer;

function ffmpeg(args: string[], out: string): Promise<Buffer> {
  execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', ...args, out], { stdio: 'ignore' });
  return readFile(out);
}

/** A minimal PDF of `pages` blank A6 pages, with a correct cross-reference table. */
function pdf(pages: number): Buffer {
  const objects: string[] = [];
  const kids = Array.from({ length: pages }, (_, i) => `${3 + i} 0 R`).join(' ');
  objects.push('<< /Type /Catalog /Pages 2 0 R >>');
  objects.push(`<< /Type /Pages /Kids [${kids}] /Count ${pages} >>`);
  for (let i = 0; i < pages; i += 1) objects.push('<< /Type /Page /Parent 2 0 R /MediaBox [0 0 298 420] >>');
  let body = `%PDF-1.4\n% ${randomBytes(4).toString('hex')}\n`;
  const offsets: number[] = [];
  objects.forEach((object, i) => {
    offsets.push(Buffer.byteLength(body));
    body += `${i + 1} 0 obj\n${object}\nendobj\n`;
  });
  const xref = Buffer.byteLength(body);
  body += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) body += `${String(offset).padStart(10, '0')} 00000 n \n`;
  body += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(body, 'latin1');
}

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'wharf-previews-'));
  if (!noFfmpeg) {
    video = await ffmpeg(
      [
        '-f',
        'lavfi',
        '-i',
        'testsrc=size=160x120:rate=10:duration=3',
        '-f',
        'lavfi',
        '-i',
        'sine=frequency=440:duration=3',
        '-c:v',
        'libx264',
        '-pix_fmt',
        'yuv420p',
        '-c:a',
        'aac',
        '-shortest',
      ],
      join(scratch, 'clip.mp4'),
    );
    audio = await ffmpeg(
      ['-f', 'lavfi', '-i', 'sine=frequency=330:duration=2', '-c:a', 'libmp3lame'],
      join(scratch, 'tone.mp3'),
    );
  }
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function put(w: TestWharf, name: string, bytes: Buffer, type: string) {
  const res = await uploadRaw(w, w.key, name, bytes, { contentType: type });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.asset.id as string;
}

async function analysis(w: TestWharf, id: string) {
  const res = await api(w.url, w.key, 'GET', `/v1/assets/${id}`);
  assert.equal(res.status, 200);
  assert.equal(res.body.processing, 'done');
  return res.body.analysis;
}

async function image(w: TestWharf, id: string, query: string) {
  const res = await fetch(`${w.url}/v1/assets/${id}/image?${query}`, { headers: { 'x-api-key': w.key } });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body, json: () => JSON.parse(body.toString()) };
}

/** No temp copy outlives its work (each process works in its own directory under work/). */
async function workLeftovers(w: TestWharf): Promise<string[]> {
  const entries = await readdir(join(w.dataDir, 'work'), { recursive: true }).catch(() => []);
  return entries.filter((entry) => entry.includes('/'));
}

describe('with the tools', () => {
  let w: TestWharf;
  before(async () => {
    w = await startWharf();
  });
  after(async () => {
    await w?.close();
  });

  test('video: duration, codecs, dimensions and a poster frame that /image renders from', {
    skip: noFfmpeg,
  }, async () => {
    const id = await put(w, 'clip.mp4', video, 'video/mp4');
    const early = await image(w, id, 'w=64&format=png');
    assert.equal(early.status, 409, 'before processing there is no poster yet');
    assert.equal(early.json().error.code, 'PREVIEW_PENDING');
    assert.equal(early.headers.get('retry-after'), '5');

    await w.wharf.core.jobs.drain();
    const facts = await analysis(w, id);
    assert.equal(facts.mime, 'video/mp4');
    assert.ok(Math.abs(facts.duration - 3) < 0.2, `duration ${facts.duration}`);
    assert.equal(facts.codec, 'h264');
    assert.equal(facts.audio_codec, 'aac');
    assert.equal(facts.width, 160);
    assert.equal(facts.height, 120);
    assert.deepEqual(facts.preview, { width: 160, height: 120, format: 'jpg' });
    assert.equal(facts.missing_tools, undefined);
    // The placeholder is the poster's: 4:3 (ThumbHash keeps its own grid's ratio, 7:5 here).
    const ratio = thumbHashToApproximateAspectRatio(Buffer.from(facts.placeholder.thumbhash, 'base64'));
    assert.ok(ratio > 1.2 && ratio < 1.5, `aspect ratio ${ratio}`);
    assert.match(facts.placeholder.color, /^#[0-9a-f]{6}$/);

    const derivatives = await api(w.url, w.key, 'GET', `/v1/assets/${id}/derivatives`);
    assert.deepEqual(
      derivatives.body.data.map((d: { params: string; content_type: string }) => [d.params, d.content_type]),
      [['preview', 'image/jpeg']],
    );
    const rendered = await image(w, id, 'w=64&format=png');
    assert.equal(rendered.status, 200);
    const m = await sharp(rendered.body).metadata();
    assert.deepEqual([m.format, m.width, m.height], ['png', 64, 48]);
    // format=auto falls back to the poster's family: JPEG.
    assert.equal((await image(w, id, 'w=64')).headers.get('content-type'), 'image/jpeg');
    assert.deepEqual(await workLeftovers(w), []);
  });

  test('the seed API that reports dimensions reports the video’s', { skip: noFfmpeg }, async () => {
    const id = await put(w, 'clip2.mp4', Buffer.concat([video, randomBytes(16)]), 'video/mp4');
    await w.wharf.core.jobs.drain();
    const res = await api(w.url, undefined, 'GET', `/api/v1/assets/${id}/`, undefined, {
      'x-api-key': w.key,
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.dimensions, { width: 160, height: 120 });
    assert.equal(res.body.format, 'mp4');
  });

  test('audio: duration and codec; no preview, so /image refuses it', { skip: noFfmpeg }, async () => {
    const id = await put(w, 'tone.mp3', audio, 'audio/mpeg');
    await w.wharf.core.jobs.drain();
    const facts = await analysis(w, id);
    assert.equal(facts.mime, 'audio/mpeg');
    assert.ok(Math.abs(facts.duration - 2) < 0.2, `duration ${facts.duration}`);
    assert.equal(facts.codec, 'mp3');
    assert.equal(facts.preview, undefined);
    const res = await image(w, id, 'w=64');
    assert.equal(res.status, 415);
    assert.equal(res.json().error.code, 'UNSUPPORTED_IMAGE');
  });

  test('PDF: page count and a first-page preview', { skip: noPoppler }, async () => {
    const id = await put(w, 'three.pdf', pdf(3), 'application/pdf');
    await w.wharf.core.jobs.drain();
    const facts = await analysis(w, id);
    assert.equal(facts.mime, 'application/pdf');
    assert.equal(facts.pages, 3);
    assert.equal(facts.preview.format, 'png');
    // A portrait page: so is its placeholder.
    assert.ok(thumbHashToApproximateAspectRatio(Buffer.from(facts.placeholder.thumbhash, 'base64')) < 0.9);
    // The longest side scaled to 1280 px, the page's proportions kept (298 × 420 pt).
    assert.equal(facts.preview.height, 1280);
    assert.ok(
      Math.abs(facts.preview.width - Math.round((1280 * 298) / 420)) <= 1,
      JSON.stringify(facts.preview),
    );
    const res = await image(w, id, 'w=200&format=webp');
    assert.equal(res.status, 200);
    const m = await sharp(res.body).metadata();
    assert.deepEqual([m.format, m.width], ['webp', 208]);
    assert.equal((await image(w, id, 'w=64')).headers.get('content-type'), 'image/png');
  });

  test('a file the tools cannot read: processing is done, the reason recorded, /image says so', {
    skip: noFfmpeg,
  }, async () => {
    // An MP4 header (so it sniffs as video) followed by noise.
    const broken = Buffer.concat([video.subarray(0, 64), randomBytes(4096)]);
    const id = await put(w, 'broken.mp4', broken, 'video/mp4');
    await w.wharf.core.jobs.drain();
    const facts = await analysis(w, id);
    assert.equal(facts.mime, 'video/mp4');
    assert.equal(facts.media_error, 'TOOL_FAILED');
    const res = await image(w, id, 'w=64');
    assert.equal(res.status, 422);
    assert.equal(res.json().error.code, 'PREVIEW_UNAVAILABLE');
    assert.equal(res.json().error.details.reason, 'TOOL_FAILED');
    const pdfId = await put(
      w,
      'broken.pdf',
      Buffer.from(`%PDF-1.4\n${randomBytes(200).toString('hex')}`),
      'application/pdf',
    );
    await w.wharf.core.jobs.drain();
    assert.equal((await analysis(w, pdfId)).media_error, 'TOOL_FAILED');
    assert.deepEqual(await workLeftovers(w), []);
  });

  test('an eager preset is rendered from a video’s poster as soon as it exists', {
    skip: noFfmpeg,
  }, async () => {
    const put1 = await api(w.url, w.key, 'PUT', '/v1/image-presets/poster', {
      w: 96,
      format: 'webp',
      eager: true,
    });
    assert.equal(put1.status, 200);
    const id = await put(w, 'eager.mp4', Buffer.concat([video, randomBytes(16)]), 'video/mp4');
    await w.wharf.core.jobs.drain();
    const derivatives = await api(w.url, w.key, 'GET', `/v1/assets/${id}/derivatives`);
    assert.deepEqual(derivatives.body.data.map((d: { params: string }) => d.params).sort(), [
      'preview',
      'w96-q80-webp',
    ]);
    await api(w.url, w.key, 'DELETE', '/v1/image-presets/poster');
    // Deleting the asset frees the poster and the rendering.
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/assets/${id}`)).status, 204);
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${id}/derivatives`)).status, 404);
  });
});

describe('without the tools (WHARF_FFMPEG and WHARF_PDFTOPPM pointing nowhere)', () => {
  let w: TestWharf;
  const log = new PassThrough();
  let logged = '';
  log.on('data', (chunk: Buffer) => {
    logged += chunk.toString();
  });
  before(async () => {
    w = await startWharf({
      env: { WHARF_FFMPEG: '/nonexistent/ffmpeg', WHARF_PDFTOPPM: '/nonexistent/pdftoppm' },
      logStream: log,
    });
  });
  after(async () => {
    await w?.close();
  });

  test('the start-up log says what is off', () => {
    for (const tool of ['ffmpeg', 'ffprobe', 'pdftoppm', 'pdfinfo']) {
      assert.match(logged, new RegExp(`"tool":"${tool}".*"path":"/nonexistent/${tool}"`), tool);
    }
  });

  test('a video is processed, its analysis names the missing tools, /image explains', async () => {
    // Any MP4 will do: nothing here runs a tool. This one is an ftyp box and noise.
    const mp4 = Buffer.concat([
      Buffer.from('0000001866747970697336000000000069736f6d', 'hex'),
      randomBytes(256),
    ]);
    const id = await put(w, 'clip.mp4', mp4, 'video/mp4');
    await w.wharf.core.jobs.drain();
    const facts = await analysis(w, id);
    assert.equal(facts.mime, 'video/mp4');
    assert.deepEqual(facts.missing_tools, ['ffprobe', 'ffmpeg']);
    assert.equal(facts.duration, undefined);
    assert.equal(facts.placeholder, undefined, 'no preview, no placeholder');
    const res = await image(w, id, 'w=64');
    assert.equal(res.status, 422);
    assert.equal(res.json().error.code, 'PREVIEW_UNAVAILABLE');
    assert.deepEqual(res.json().error.details.missing_tools, ['ffprobe', 'ffmpeg']);
  });

  test('a PDF likewise; images are transformed as ever', async () => {
    const id = await put(w, 'doc.pdf', pdf(2), 'application/pdf');
    await w.wharf.core.jobs.drain();
    const facts = await analysis(w, id);
    assert.deepEqual(facts.missing_tools, ['pdfinfo', 'pdftoppm']);
    assert.equal(facts.pages, undefined);
    const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#abc' } })
      .png()
      .toBuffer();
    const img = await put(w, 'fine.png', png, 'image/png');
    const res = await image(w, img, 'w=16&format=png');
    assert.equal(res.status, 200);
    assert.equal((await sharp(res.body).metadata()).width, 16);
  });
});
