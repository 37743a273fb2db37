/**
 * Placeholders (analysis.placeholder): a ThumbHash and a dominant colour, made by processing
 * from the decoded image, on both deployments. The hashes are decoded here with the thumbhash
 * package itself, and what they decode to is compared with the picture that was uploaded.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import sharp, { type Sharp } from 'sharp';
import { thumbHashToApproximateAspectRatio, thumbHashToAverageRGBA, thumbHashToRGBA } from 'thumbhash';
import { wharfCli } from '../helpers/admin-cli.js';
import { dbQuery, uploadRaw } from '../helpers/assets.js';
import { api } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

async function processed(w: TestWharf, name: string, bytes: Buffer, contentType: string) {
  const created = await uploadRaw(w, w.key, name, bytes, { contentType });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await w.wharf.core.jobs.drain();
  const res = await api(w.url, w.key, 'GET', `/v1/assets/${created.body.asset.id}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.processing, 'done');
  return res.body;
}

function hashOf(placeholder: { thumbhash: string; color: string }): Uint8Array {
  assert.match(placeholder.thumbhash, /^[A-Za-z0-9+/]+={0,2}$/, 'standard base64');
  const bytes = Buffer.from(placeholder.thumbhash, 'base64');
  assert.ok(bytes.length >= 5 && bytes.length <= 40, `a ThumbHash is ~25 bytes, not ${bytes.length}`);
  return bytes;
}

/** The decoded placeholder's average colour of the left and the right third. */
function thirds(hash: Uint8Array): { left: number[]; right: number[] } {
  const { w: width, h: height, rgba } = thumbHashToRGBA(hash);
  const mean = (x0: number, x1: number) => {
    const sum = [0, 0, 0];
    let n = 0;
    for (let y = 0; y < height; y++) {
      for (let x = x0; x < x1; x++) {
        for (let c = 0; c < 3; c++) sum[c]! += rgba[(y * width + x) * 4 + c]!;
        n++;
      }
    }
    return sum.map((v) => v / n);
  };
  const third = Math.floor(width / 3);
  return { left: mean(0, third), right: mean(width - third, width) };
}

/** A unique picture (a few random pixels in a corner) so no upload is deduplicated. */
function unique(image: Sharp): Sharp {
  const noise = randomBytes(4 * 4 * 3);
  return image.composite([{ input: noise, raw: { width: 4, height: 4, channels: 3 }, top: 0, left: 0 }]);
}

describe('an image gets a placeholder', () => {
  test('a red-to-blue JPEG: right shape, red on the left and blue on the right, its colour', async () => {
    // 300 × 150: the left half red, the right half blue.
    const left = await sharp({ create: { width: 150, height: 150, channels: 3, background: '#d01010' } })
      .png()
      .toBuffer();
    const jpeg = await unique(
      sharp({ create: { width: 300, height: 150, channels: 3, background: '#1020d0' } }),
    )
      .composite([{ input: left, left: 0, top: 0 }])
      .jpeg({ quality: 90 })
      .toBuffer();
    const asset = await processed(w, 'flag.jpg', jpeg, 'image/jpeg');
    const placeholder = asset.analysis.placeholder;
    assert.ok(placeholder, JSON.stringify(asset.analysis));
    assert.deepEqual(Object.keys(placeholder).sort(), ['color', 'thumbhash']);
    const hash = hashOf(placeholder);
    // Approximate by design: ThumbHash keeps the ratio of its own grid (2:1 comes back as 7:4).
    const ratio = thumbHashToApproximateAspectRatio(hash);
    assert.ok(ratio > 1.6 && ratio < 2.4, `aspect ratio ${ratio}, not about 2`);
    const { left: l, right: r } = thirds(hash);
    assert.ok(l[0]! > 120 && l[2]! < 100, `left third is red: ${l}`);
    assert.ok(r[2]! > 120 && r[0]! < 100, `right third is blue: ${r}`);
    // Half red, half blue: the dominant colour is one of the two.
    assert.match(placeholder.color, /^#[0-9a-f]{6}$/);
    const [red, , blue] = [1, 3, 5].map((i) => Number.parseInt(placeholder.color.slice(i, i + 2), 16));
    assert.ok(Math.abs(red! - blue!) > 100, `dominant ${placeholder.color} is red or blue, not a mix`);
  });

  test('a solid PNG: its exact colour, opaque', async () => {
    const png = await sharp({ create: { width: 40, height: 40, channels: 3, background: '#3366cc' } })
      .png()
      .toBuffer();
    const asset = await processed(w, 'blue.png', png, 'image/png');
    assert.equal(asset.analysis.placeholder.color, '#3366cc');
    const average = thumbHashToAverageRGBA(hashOf(asset.analysis.placeholder));
    assert.ok(Math.abs(average.r * 255 - 0x33) < 8, JSON.stringify(average));
    assert.ok(Math.abs(average.b * 255 - 0xcc) < 8, JSON.stringify(average));
    assert.equal(average.a, 1);
  });

  test('a tiny image and a thin panorama: a flat placeholder of their colour, not noise', async () => {
    // ThumbHash cannot encode a picture 3 pixels or fewer on a side: these are what shrinking
    // into 100 × 100 leaves of a 1 × 1 dot, a 2 × 2 tile and a 100:1 panorama.
    for (const [width, height, colour] of [
      [1, 1, '#123456'],
      [2, 2, '#563412'],
      [1000, 10, '#aa5500'],
      [3, 300, '#22aa66'],
    ] as const) {
      const png = await sharp({ create: { width, height, channels: 3, background: colour } })
        .png()
        .toBuffer();
      const asset = await processed(w, `flat-${width}x${height}.png`, png, 'image/png');
      assert.equal(asset.analysis.placeholder.color, colour);
      const { rgba } = thumbHashToRGBA(hashOf(asset.analysis.placeholder));
      const want = [1, 3, 5].map((i) => Number.parseInt(colour.slice(i, i + 2), 16));
      let worst = 0;
      for (let i = 0; i < rgba.length; i += 4) {
        for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(rgba[i + c]! - want[c]!));
      }
      assert.ok(worst <= 24, `${width} × ${height}: a pixel of the placeholder is ${worst} off ${colour}`);
    }
  });

  test('a one-channel grey PNG and a 16-bit PNG: their grey', async () => {
    const base = await unique(
      sharp({ create: { width: 30, height: 30, channels: 3, background: '#606060' } }),
    )
      .png()
      .toBuffer();
    const grey = await sharp(base).removeAlpha().toColourspace('b-w').png().toBuffer();
    const deep = await sharp(base).removeAlpha().toColourspace('rgb16').png().toBuffer();
    assert.equal((await sharp(grey).metadata()).channels, 1);
    assert.equal((await sharp(deep).metadata()).depth, 'ushort');
    for (const [name, png] of [
      ['grey.png', grey],
      ['deep.png', deep],
    ] as const) {
      const asset = await processed(w, name, png, 'image/png');
      assert.equal(asset.analysis.placeholder.color, '#606060', name);
      const average = thumbHashToAverageRGBA(hashOf(asset.analysis.placeholder));
      for (const c of [average.r, average.g, average.b])
        assert.ok(Math.abs(c * 255 - 0x60) < 10, `${name}: ${JSON.stringify(average)}`);
    }
  });

  test('transparency is kept; the colour is of what shows, not of transparent pixels', async () => {
    // Two thirds fully transparent (whatever red their pixels hold), the right third green.
    const png = await unique(
      sharp({ create: { width: 96, height: 32, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 0 } } }),
    )
      .composite([
        {
          input: await sharp({ create: { width: 32, height: 32, channels: 4, background: '#00a000ff' } })
            .png()
            .toBuffer(),
          left: 64,
          top: 0,
        },
      ])
      .png()
      .toBuffer();
    const asset = await processed(w, 'half.png', png, 'image/png');
    const average = thumbHashToAverageRGBA(hashOf(asset.analysis.placeholder));
    assert.ok(average.a > 0.2 && average.a < 0.9, `alpha ${average.a}: part transparent`);
    assert.equal(asset.analysis.placeholder.color, '#00a000');
  });

  test('a photo turned by its EXIF orientation: the placeholder is as it displays', async () => {
    // Stored 400 × 200, orientation 6 (a quarter turn): it displays 200 × 400.
    const jpeg = await unique(sharp({ create: { width: 400, height: 200, channels: 3, background: '#777' } }))
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const asset = await processed(w, 'portrait.jpg', jpeg, 'image/jpeg');
    assert.deepEqual([asset.analysis.width, asset.analysis.height], [200, 400]);
    const ratio = thumbHashToApproximateAspectRatio(hashOf(asset.analysis.placeholder));
    assert.ok(ratio > 0.4 && ratio < 0.63, `aspect ratio ${ratio}, not about 0.5`);
  });

  test('listings carry the same placeholder', async () => {
    const png = await unique(sharp({ create: { width: 20, height: 10, channels: 3, background: '#c0c000' } }))
      .png()
      .toBuffer();
    const asset = await processed(w, 'listed.png', png, 'image/png');
    const list = await api(w.url, w.key, 'GET', '/v1/assets?limit=100');
    assert.equal(list.status, 200);
    const listed = list.body.data.find((a: { id: string }) => a.id === asset.id);
    assert.deepEqual(listed.analysis.placeholder, asset.analysis.placeholder);
  });
});

describe('no placeholder where nothing can be decoded', () => {
  test('a text file', async () => {
    const asset = await processed(
      w,
      'notes.txt',
      Buffer.from(`text ${randomBytes(8).toString('hex')}`),
      'text/plain',
    );
    assert.equal(asset.analysis.placeholder, undefined);
  });

  test('a truncated PNG: its header gives the size, its pixels are missing; processing is done', async () => {
    const png = await unique(
      sharp({ create: { width: 300, height: 300, channels: 3, background: '#123456' } }),
    )
      .png({ compressionLevel: 0 })
      .toBuffer();
    const asset = await processed(w, 'cut.png', png.subarray(0, 2000), 'image/png');
    assert.deepEqual([asset.analysis.format, asset.analysis.width], ['png', 300]);
    assert.equal(asset.analysis.placeholder, undefined);
    assert.equal(asset.analysis.placeholder_error, 'IMAGE_UNDECODABLE', 'and why');
  });

  test('a PNG cut inside its header: no size known, no placeholder, and placeholder_error says why', async () => {
    const png = await unique(
      sharp({ create: { width: 300, height: 200, channels: 3, background: '#00aa00' } }),
    )
      .png()
      .toBuffer();
    const asset = await processed(w, 'headless.png', png.subarray(0, 60), 'image/png');
    assert.equal(asset.analysis.width, undefined);
    assert.equal(asset.analysis.placeholder, undefined);
    assert.equal(asset.analysis.placeholder_error, 'IMAGE_UNDECODABLE');
  });

  test('an image over the transforms’ pixel limit is never decoded for one', async () => {
    const small = await startWharf({ env: { WHARF_IMAGE_MAX_PIXELS: '10000' } });
    try {
      const within = await sharp({ create: { width: 100, height: 100, channels: 3, background: '#101010' } })
        .png()
        .toBuffer();
      const over = await sharp({ create: { width: 101, height: 100, channels: 3, background: '#202020' } })
        .png()
        .toBuffer();
      assert.ok((await processed(small, 'within.png', within, 'image/png')).analysis.placeholder);
      const big = await processed(small, 'over.png', over, 'image/png');
      assert.equal(big.analysis.width, 101);
      assert.equal(big.analysis.placeholder, undefined);
    } finally {
      await small.close();
    }
  });
});

/**
 * What an asset processed before placeholders existed looks like: its analysis without one.
 * Written straight into the database (the analysis column is JSON text on both).
 */
function forgetPlaceholder(w: TestWharf, assetId: string): void {
  const [row] = dbQuery<{ analysis: string }>(w, 'select analysis from assets where id = ?', assetId);
  const analysis = JSON.parse(row!.analysis);
  assert.ok(analysis.placeholder, 'it had one');
  delete analysis.placeholder;
  const json = JSON.stringify(analysis);
  if (/^postgres(ql)?:/.test(w.databaseUrl)) {
    const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;
    const sql = `update assets set analysis = ${literal(json)} where id = ${literal(assetId)}`;
    execFileSync('psql', [w.databaseUrl, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
    return;
  }
  const db = new Database(join(w.dataDir, 'wharf.db'));
  try {
    db.pragma('busy_timeout = 5000');
    db.prepare('update assets set analysis = ? where id = ?').run(json, assetId);
  } finally {
    db.close();
  }
}

describe('wharf placeholders backfill: images processed before placeholders get one', () => {
  // A server of its own: what the command finds is all this test's.
  let w: TestWharf;
  before(async () => {
    w = await startWharf();
  });
  after(async () => {
    await w?.close();
  });

  test('queues exactly the images without one; the server’s jobs make them; a second run finds none', async () => {
    const other = await w.newAccount();
    const image = (background: string) =>
      unique(sharp({ create: { width: 48, height: 24, channels: 3, background } }))
        .png()
        .toBuffer();
    const old = await processed(w, 'old.png', await image('#aa2200'), 'image/png');
    const current = await processed(w, 'current.png', await image('#00aa22'), 'image/png');
    await processed(w, 'old.txt', Buffer.from(`text ${randomBytes(8).toString('hex')}`), 'text/plain');
    // Undecodable: processing said so, and a backfill does not try it again.
    const cut = await sharp({ create: { width: 200, height: 200, channels: 3, background: '#445566' } })
      .png({ compressionLevel: 0 })
      .toBuffer();
    assert.equal(
      (await processed(w, 'cut.png', cut.subarray(0, 1500), 'image/png')).analysis.placeholder_error,
      'IMAGE_UNDECODABLE',
    );
    // Another account's old image: a backfill of one account leaves it alone.
    const theirs = await uploadRaw(w, other.key, 'theirs.png', await image('#2200aa'), {
      contentType: 'image/png',
    });
    assert.equal(theirs.status, 201);
    await w.wharf.core.jobs.drain();
    const kept = old.analysis.placeholder;
    forgetPlaceholder(w, old.id);
    forgetPlaceholder(w, theirs.body.asset.id);
    const read = async (id: string, key = w.key) => (await api(w.url, key, 'GET', `/v1/assets/${id}`)).body;
    assert.equal((await read(old.id)).analysis.placeholder, undefined);

    const one = await wharfCli(w, ['placeholders', 'backfill', '--account', 'default', '--json']);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(JSON.parse(one.stdout), { scanned: 4, queued: 1 });
    // The command queued the job at its own (real) time; the test server's clock catches up.
    w.clock.set(Math.max(w.clock.now(), Date.now()));
    assert.equal(await w.wharf.core.jobs.drain(), 1);
    const back = await read(old.id);
    assert.deepEqual(back.analysis.placeholder, kept, 'the same placeholder as before');
    assert.equal(back.processing, 'done');
    assert.deepEqual((await read(current.id)).analysis, current.analysis, 'untouched');
    assert.equal((await read(theirs.body.asset.id, other.key)).analysis.placeholder, undefined);

    // Every account: the other one's image now; the default account has nothing left to do.
    const all = await wharfCli(w, ['placeholders', 'backfill']);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /Looked at 5 assets; queued 1 for processing again/);
    w.clock.set(Math.max(w.clock.now(), Date.now()));
    assert.equal(await w.wharf.core.jobs.drain(), 1);
    assert.ok((await read(theirs.body.asset.id, other.key)).analysis.placeholder);
    const again = await wharfCli(w, ['placeholders', 'backfill', '--json']);
    assert.deepEqual(JSON.parse(again.stdout), { scanned: 5, queued: 0 });
    assert.match((await wharfCli(w, ['placeholders', 'backfill'])).stdout, /none is missing a placeholder/);
  });

  test('an unknown account is refused (exit 1), a malformed one is a usage error (exit 2)', async () => {
    const unknown = await wharfCli(w, ['placeholders', 'backfill', '--account', 'nobody-here']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /No account "nobody-here"/);
    const malformed = await wharfCli(w, ['placeholders', 'backfill', '--account', '../x']);
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /Account ids are 1 to 64/);
  });
});
