import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { knownVariables, loadConfig } from '../../src/config.js';
import { ERROR_STATUS } from '../../src/core/errors.js';
import { createWharf } from '../../src/server.js';
import { provision } from '../helpers/deployment.js';
import { freePort } from '../helpers/wharf.js';

/**
 * Keeps README.md honest: its walkthrough is run exactly as written against a fresh Wharf,
 * and its reference tables are compared with the code they describe.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const README = readFileSync(join(REPO, 'README.md'), 'utf8');
const MARKER = '<!-- walkthrough -->';

interface Block {
  /** 1-based line of the block's first code line in README.md. */
  line: number;
  code: string;
}

function walkthroughBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const pattern = /<!-- walkthrough -->\n```bash\n([\s\S]*?)\n```/g;
  for (const match of markdown.matchAll(pattern)) {
    const line = markdown.slice(0, match.index).split('\n').length + 2;
    blocks.push({ line, code: match[1]! });
  }
  return blocks;
}

function run(
  command: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('README.md', () => {
  test('every walkthrough block runs, in order, against a freshly started Wharf', async (t) => {
    const blocks = walkthroughBlocks(README);
    assert.equal(
      blocks.length,
      README.split(MARKER).length - 1,
      `every ${MARKER} must be followed directly by a \`\`\`bash block`,
    );
    assert.ok(blocks.length >= 12, `only ${blocks.length} walkthrough blocks found`);

    // A fresh installation, started the way `npm start` starts it: no WHARF_API_KEY, so
    // the first start generates the admin key the README tells the reader to use.
    const dataDir = await mkdtemp(join(tmpdir(), 'wharf-readme-'));
    // The README has the reader work in a scratch directory inside the checkout, where
    // `npm run wharf` finds the package; .tmp/ is git-ignored.
    await mkdir(join(REPO, '.tmp'), { recursive: true });
    const workDir = await mkdtemp(join(REPO, '.tmp', 'readme-'));
    const port = await freePort();
    const backing = await provision();
    const config = loadConfig({
      WHARF_HOST: '127.0.0.1',
      WHARF_PORT: String(port),
      WHARF_DATA_DIR: dataDir,
      WHARF_SWEEP_INTERVAL: '0',
      ...backing.env,
    });
    const wharf = await createWharf(config, { logger: false });
    t.after(async () => {
      await wharf.close();
      await backing.release();
      await rm(dataDir, { recursive: true, force: true });
      await rm(workDir, { recursive: true, force: true });
    });
    await wharf.listen();
    assert.ok(wharf.generatedKey, 'the first start of an empty installation generates a key');

    const script = [
      'set -euo pipefail',
      ...blocks.map(
        (block, i) =>
          `echo "── walkthrough block ${i + 1} (README.md line ${block.line})" >&2\n${block.code}`,
      ),
      '',
    ].join('\n');
    await writeFile(join(workDir, 'walkthrough.sh'), script);

    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(process.env)) {
      if (!name.startsWith('WHARF')) env[name] = value;
    }
    Object.assign(env, {
      WHARF: `http://localhost:${port}`,
      KEY: wharf.generatedKey,
      // What `npm run wharf` would find as ./data when the server was started by `npm start`.
      WHARF_DATA_DIR: dataDir,
      // The scaled deployment's database and storage, which the CLI examples must use too.
      ...backing.env,
    });
    const result = await run('bash', ['walkthrough.sh'], { cwd: workDir, env, timeoutMs: 180_000 });
    assert.equal(
      result.code,
      0,
      `the walkthrough failed (exit ${result.code}):\n${result.output.slice(-6000)}`,
    );
    assert.ok(result.output.includes(`── walkthrough block ${blocks.length} `), 'the last block ran');
  });

  test('states exactly the two set-up commands, and .ci/run runs the test one', () => {
    assert.ok(README.includes('`npm ci && npm start`'));
    assert.ok(README.includes('`npm ci && npm test`'));
    const ci = readFileSync(join(REPO, '.ci', 'run'), 'utf8');
    assert.match(ci, /^npm ci && npm test$/m);
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    assert.ok(pkg.scripts['start'] && pkg.scripts['test'] && pkg.scripts['wharf']);
  });

  test('the configuration table (docs/configuration.md) has every WHARF_* variable the code reads, with its default', () => {
    const inCode = new Set(knownVariables());
    const table = readFileSync(join(REPO, 'docs', 'configuration.md'), 'utf8');
    const rows = new Map(
      [...table.matchAll(/^\| `(WHARF_[A-Z0-9_]+)` \| (.*?) \|/gm)].map((m) => [m[1]!, m[2]!]),
    );
    assert.deepEqual([...rows.keys()].sort(), [...inCode].sort());
    const mentioned = new Set([...README.matchAll(/\b(WHARF_[A-Z_]+)\b/g)].map((m) => m[1]!));
    // WHARF_TEST_* belong to the test harness (test/helpers/deployment.ts), not to Wharf.
    const harness = readFileSync(join(REPO, 'test', 'helpers', 'deployment.ts'), 'utf8');
    for (const name of mentioned) {
      const exists = inCode.has(name) || (name.startsWith('WHARF_TEST_') && harness.includes(name));
      assert.ok(exists, `README mentions ${name}, which does not exist`);
    }

    const defaults = loadConfig({});
    const expected: Record<string, string | number> = {
      WHARF_HOST: defaults.host,
      WHARF_PORT: defaults.port,
      WHARF_MAX_FILE_SIZE: defaults.maxFileSize,
      WHARF_UPLOAD_EXPIRES: defaults.uploadExpiresSeconds,
      WHARF_MAX_FILES_PER_REQUEST: defaults.maxFilesPerRequest,
      WHARF_SWEEP_INTERVAL: defaults.sweepIntervalSeconds,
      WHARF_LOG_LEVEL: defaults.logLevel,
      WHARF_SHUTDOWN_TIMEOUT: defaults.shutdownTimeoutSeconds,
    };
    for (const [name, value] of Object.entries(expected)) {
      assert.ok(
        rows.get(name)?.startsWith(`\`${value}\``),
        `${name} defaults to ${value}: ${rows.get(name)}`,
      );
    }
  });

  test('the error table has every code of src/core/errors.ts with its status', () => {
    const rows = Object.fromEntries(
      [...README.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])]),
    );
    assert.deepEqual(rows, { ...ERROR_STATUS });
  });
});
