import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UsageError } from '../../src/cli/args.js';
import { parsePartSize, parseSize, resolveConnection } from '../../src/cli/upload/connection.js';
import { expand } from '../../src/cli/upload/files.js';

describe('upload CLI options', () => {
  test('--part-size: S3 part sizes only (5M to 5G), refused before anything is sent', () => {
    assert.equal(parsePartSize('5M'), 5 * 1024 * 1024);
    assert.equal(parsePartSize('5G'), 5 * 1024 ** 3);
    for (const bad of ['1M', '5242879', '6G']) assert.throws(() => parsePartSize(bad), UsageError, bad);
  });

  test('sizes: bytes, binary units with or without B/iB, decimals', () => {
    assert.equal(parseSize('1048576', '--part-size'), 1048576);
    assert.equal(parseSize('8M', '--part-size'), 8 * 1024 * 1024);
    assert.equal(parseSize('512k', '--limit-rate'), 512 * 1024);
    assert.equal(parseSize('1.5GiB', '--x'), 1.5 * 1024 ** 3);
    assert.equal(parseSize('2 MB', '--x'), 2 * 1024 * 1024);
    for (const bad of ['', 'big', '-1', '0', '5X', '1e9']) {
      assert.throws(() => parseSize(bad, '--part-size'), UsageError, bad);
    }
  });

  test('the connection: flags over the environment; a token when no key; trailing slashes dropped', async () => {
    const env = {
      WHARF_URL: 'https://env.example.com/',
      WHARF_KEY: 'env-key',
      XDG_CONFIG_HOME: '/nonexistent',
    };
    const fromEnv = await resolveConnection({}, env);
    assert.equal(fromEnv.url, 'https://env.example.com');
    assert.equal(fromEnv.key, 'env-key');
    const flagged = await resolveConnection({ url: 'http://flag.example.com', key: 'flag-key' }, env);
    assert.deepEqual([flagged.url, flagged.key], ['http://flag.example.com', 'flag-key']);
    const token = await resolveConnection({}, { ...env, WHARF_KEY: '', WHARF_TOKEN: 'wharf_ut_x' });
    assert.equal(token.key, 'wharf_ut_x');
    await assert.rejects(resolveConnection({ url: 'ftp://x' }, env), /must be http\(s\)/);
    await assert.rejects(resolveConnection({}, { XDG_CONFIG_HOME: '/nonexistent' }), /No server URL/);
    await assert.rejects(
      resolveConnection({ config: '/nonexistent/wharf.json' }, env),
      /Cannot read the config file/,
    );
  });

  test('a path that exists is that file, even with glob characters in its name; globs still match', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wharf-expand-'));
    try {
      const named = join(dir, '[draft] report.pdf');
      await writeFile(named, 'x');
      await writeFile(join(dir, 'other.pdf'), 'y');
      assert.deepEqual(
        (await expand([named])).map((f) => f.name),
        ['[draft] report.pdf'],
      );
      assert.deepEqual((await expand([join(dir, '*.pdf')])).map((f) => f.name).sort(), [
        '[draft] report.pdf',
        'other.pdf',
      ]);
      await assert.rejects(expand([join(dir, 'missing.pdf')]), UsageError);
      await assert.rejects(expand([join(dir, '*.txt')]), UsageError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
