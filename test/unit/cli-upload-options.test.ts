import assert from 'node:assert/strict';
import { chmod, chown, link, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UsageError } from '../../src/cli/args.js';
import { parsePartSize, parseSize, resolveConnection, saveConfig } from '../../src/cli/upload/connection.js';
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

  test('the config file: a file planted where its temp file was once named never receives the key; it is 0600 and ours', async () => {
    // A --config folder other users can write to: one of them creates `<config>.<pid>.tmp`
    // (the name login used to write) as a 0666 file they own, and keeps another name for it.
    const dir = await mkdtemp(join(tmpdir(), 'wharf-config-'));
    try {
      await chmod(dir, 0o1777);
      const config = join(dir, 'config.json');
      const planted = `${config}.${process.pid}.tmp`;
      const kept = join(dir, 'attacker-copy');
      await writeFile(planted, 'planted');
      await chmod(planted, 0o666);
      // As root (the CLI run by root): owned by someone else, as a real attacker's file is.
      if (process.getuid?.() === 0) await chown(planted, 65534, 65534);
      await link(planted, kept);

      await saveConfig(config, { url: 'https://files.example.com', key: 'wharf_secret-key' });

      assert.equal(await readFile(kept, 'utf8'), 'planted');
      assert.equal((await stat(kept)).mode & 0o777, 0o666);
      assert.deepEqual(JSON.parse(await readFile(config, 'utf8')), {
        url: 'https://files.example.com',
        key: 'wharf_secret-key',
      });
      const saved = await stat(config);
      assert.equal(saved.mode & 0o777, 0o600);
      assert.equal(saved.uid, process.getuid?.());
      assert.notEqual(saved.ino, (await stat(kept)).ino);
      // Saved again, over the old one: still a new file of ours, and no temp file left.
      await saveConfig(config, { url: 'https://files.example.com', key: 'wharf_other-key' });
      assert.equal(JSON.parse(await readFile(config, 'utf8')).key, 'wharf_other-key');
      assert.equal((await stat(config)).mode & 0o777, 0o600);
      assert.deepEqual((await readdir(dir)).sort(), [
        'attacker-copy',
        'config.json',
        `config.json.${process.pid}.tmp`,
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the config file: one that cannot be put in place leaves no temp file behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wharf-config-'));
    try {
      // A folder where the file should be: the rename fails (EISDIR).
      const config = join(dir, 'config.json');
      await mkdir(config);
      await assert.rejects(saveConfig(config, { key: 'wharf_secret-key' }), { code: 'EISDIR' });
      assert.deepEqual(await readdir(dir), ['config.json']);
      assert.deepEqual(await readdir(config), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
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
