import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { knownVariables, loadConfig } from '../../src/config.js';
import { ERROR_STATUS } from '../../src/core/errors.js';
import { createWharf, type Wharf } from '../../src/server.js';
import { deployment, provision } from '../helpers/deployment.js';
import { docExamples, parseDocJson, shapeDifferences } from '../helpers/doc-examples.js';
import { freePort } from '../helpers/wharf.js';

/**
 * Keeps the documentation honest: the walkthrough blocks of README.md and of every docs/*.md
 * are run exactly as written against a fresh Wharf, and the reference tables are compared
 * with the code they describe.
 *
 * The convention every docs file follows: a block preceded by the line `<!-- walkthrough -->`
 * and fenced as ```bash runs; a file's blocks run in order as one bash session
 * (`set -euo pipefail`) against a Wharf of its own, freshly installed, with WHARF (its URL)
 * and KEY (the admin key its first start generated) exported and a scratch working directory
 * inside the checkout. Files never see each other's state. A block marked
 * `<!-- walkthrough: embedded default -->` is about the embedded default alone (what the CLI
 * does with the SQLite file and the local store) and is left out of the scaled deployment's
 * run; the test of that feature says what the scaled deployment does instead. A json example
 * marked `<!-- example: json from FILE -->` is compared with FILE, which the walkthrough wrote.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const MARKER = '<!-- walkthrough -->';
const EMBEDDED_MARKER = '<!-- walkthrough: embedded default -->';

/** README.md and docs/*.md, as paths relative to the checkout. */
const DOC_FILES = [
  'README.md',
  ...readdirSync(join(REPO, 'docs'), { withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.md'))
    .map((entry) => `docs/${entry.name}`)
    .sort(),
];

function read(file: string): string {
  return readFileSync(join(REPO, file), 'utf8');
}

interface Block {
  /** 1-based line of the block's first code line in its file. */
  line: number;
  code: string;
  /** Run on the embedded default only. */
  embeddedOnly: boolean;
}

function walkthroughBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const pattern = /<!-- walkthrough(: embedded default)? -->\n```bash\n([\s\S]*?)\n```/g;
  for (const match of markdown.matchAll(pattern)) {
    const line = markdown.slice(0, match.index).split('\n').length + 2;
    blocks.push({ line, code: match[2]!, embeddedOnly: match[1] !== undefined });
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

/**
 * Runs one file's blocks as one bash session against a Wharf installed for it alone, started
 * the way `npm start` starts it: no WHARF_API_KEY, so the first start generates the admin key
 * the README tells the reader to use.
 */
async function runWalkthrough(file: string, blocks: Block[]): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'wharf-docs-'));
  // The reader works in a scratch directory inside the checkout, where `npm run -s wharf`
  // finds the package; .tmp/ is git-ignored.
  await mkdir(join(REPO, '.tmp'), { recursive: true });
  const workDir = await mkdtemp(join(REPO, '.tmp', 'docs-'));
  const backing = await provision();
  try {
    const port = await freePort();
    const config = loadConfig({
      WHARF_HOST: '127.0.0.1',
      WHARF_PORT: String(port),
      WHARF_DATA_DIR: dataDir,
      WHARF_SWEEP_INTERVAL: '0',
      ...backing.env,
    });
    const wharf = await createWharf(config, { logger: false });
    try {
      await wharf.listen();
      assert.ok(wharf.generatedKey, 'the first start of an empty installation generates a key');

      const script = [
        'set -euo pipefail',
        ...blocks.map(
          (block, i) =>
            `echo "── walkthrough block ${i + 1} (${file} line ${block.line})" >&2\n${block.code}`,
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
      const started = [...result.output.matchAll(/── walkthrough block \d+ \(([^)]*)\)/g)];
      const last = started.at(-1)?.[1] ?? 'before the first block';
      assert.equal(
        result.code,
        0,
        `the walkthrough of ${file} failed in the block at ${last} (exit ${result.code}):\n` +
          result.output.slice(-6000),
      );
      assert.equal(started.length, blocks.length, 'every block ran');
      // A json example marked `<!-- example: json from FILE -->` shows the shape of what the
      // walkthrough wrote to FILE: the same fields, recursively (test/helpers/doc-examples.ts).
      for (const example of docExamples(file).filter(
        (e) => e.kind === 'json' && e.name.startsWith('from '),
      )) {
        const written = JSON.parse(await readFile(join(workDir, example.name.slice('from '.length)), 'utf8'));
        assert.deepEqual(
          shapeDifferences(parseDocJson(example.code), written),
          [],
          `the example at ${file}:${example.line} against ${JSON.stringify(written)}`,
        );
      }
    } finally {
      await wharf.close();
    }
  } finally {
    await backing.release();
    await rm(dataDir, { recursive: true, force: true });
    await rm(workDir, { recursive: true, force: true });
  }
}

describe('documentation walkthroughs', () => {
  test('every walkthrough marker line is followed directly by a ```bash block', () => {
    for (const file of DOC_FILES) {
      const markdown = read(file);
      assert.equal(
        walkthroughBlocks(markdown).length,
        markdown.split('\n').filter((line) => line.trim() === MARKER || line.trim() === EMBEDDED_MARKER)
          .length,
        `${file}: every ${MARKER} must be followed directly by a \`\`\`bash block`,
      );
    }
  });

  test('the README has its five-minute walkthrough', () => {
    const blocks = walkthroughBlocks(read('README.md'));
    assert.ok(blocks.length >= 3, `README.md has only ${blocks.length} walkthrough blocks`);
  });

  for (const file of DOC_FILES) {
    const blocks = walkthroughBlocks(read(file)).filter((b) => !b.embeddedOnly || deployment === 'embedded');
    if (blocks.length === 0) continue;
    test(`${file}: its ${blocks.length} blocks run, in order, against a freshly installed Wharf`, () =>
      runWalkthrough(file, blocks));
  }
});

describe('README.md', () => {
  test('states exactly the two set-up commands, and .ci/run runs the test one', () => {
    const readme = read('README.md');
    assert.ok(readme.includes('`npm ci && npm start`'));
    assert.ok(readme.includes('`npm ci && npm test`'));
    const ci = read('.ci/run');
    assert.match(ci, /^npm ci && npm test$/m);
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    assert.ok(pkg.scripts['start'] && pkg.scripts['test'] && pkg.scripts['wharf']);
  });
});

const CONFIGURATION_FILE = 'docs/configuration.md';
const REFERENCE_FILE = 'docs/reference.md';

const SEED_PREFIXES = ['/api/', '/api_gateway/', '/rails/'];
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * The rows of the "Endpoints" table: a cell like `GET /v1/keys`, `POST /v1/keys` names two
 * routes, and `PUT`, `POST /s3/wharf/{key}` gives the path once for several methods.
 */
function endpointRows(markdown: string): { method: string; path: string }[] {
  const section = markdown.split(/^## Endpoints$/m)[1]?.split(/^## /m)[0] ?? '';
  const rows: { method: string; path: string }[] = [];
  for (const line of section.split('\n')) {
    if (!line.startsWith('| `')) continue;
    const cell = line.slice(2).split(' | ')[0]!;
    let methods: string[] = [];
    for (const [, span] of cell.matchAll(/`([^`]+)`/g)) {
      const [method = '', path, ...rest] = span!.split(' ');
      assert.ok(METHODS.has(method) && rest.length === 0, `an endpoint row names \`${span}\`: ${line}`);
      methods.push(method);
      if (path === undefined) continue;
      assert.ok(path.startsWith('/'), `an endpoint row names \`${span}\`: ${line}`);
      for (const each of methods) rows.push({ method: each, path });
      methods = [];
    }
    assert.equal(methods.length, 0, `methods without a path: ${line}`);
  }
  assert.ok(rows.length > 20, `only ${rows.length} endpoints found in the Endpoints table`);
  return rows;
}

/** Whether a route answers `path` ({param} segments as in OpenAPI), or a wildcard above it. */
function routeExists(app: Wharf['app'], method: string, path: string): boolean {
  const pattern = path.replace(/\{([^}]+)\}/g, ':$1');
  const segments = pattern.split('/');
  const candidates = [pattern];
  for (let i = segments.length - 1; i >= 2; i--) candidates.push(`${segments.slice(0, i).join('/')}/*`);
  return candidates.some((url) => app.hasRoute({ method: method as 'GET', url }));
}

describe('reference tables', () => {
  // The routes are the code's, whatever the deployment; the embedded app is the one that also
  // serves the storage endpoint (/s3), so its routes are the documented ones. No listen: the
  // route table is all this needs.
  let embedded: Wharf;
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'wharf-routes-'));
    embedded = await createWharf(
      loadConfig({ WHARF_DATA_DIR: dataDir, WHARF_SWEEP_INTERVAL: '0', WHARF_JOB_INTERVAL_MS: '0' }),
      {
        logger: false,
      },
    );
    await embedded.app.ready();
  });
  after(async () => {
    await embedded?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test(`the configuration table (${CONFIGURATION_FILE}) has every WHARF_* variable the code reads, with its default`, () => {
    const table = read(CONFIGURATION_FILE);
    // Every variable the configuration reads registers itself (src/config.ts).
    const inCode = new Set(knownVariables());
    const rows = new Map(
      [...table.matchAll(/^\| `(WHARF_[A-Z0-9_]+)` \| (.*?) \|/gm)].map((m) => [m[1]!, m[2]!]),
    );
    assert.deepEqual([...rows.keys()].sort(), [...inCode].sort());

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
      WHARF_SHUTDOWN_DELAY: defaults.shutdownDelaySeconds,
    };
    for (const [name, value] of Object.entries(expected)) {
      assert.ok(
        rows.get(name)?.startsWith(`\`${value}\``),
        `${name} defaults to ${value}: ${rows.get(name)}`,
      );
    }
  });

  test('every WHARF_* variable the documentation mentions exists', () => {
    // The server's settings, and the upload CLI's (WHARF_URL, WHARF_KEY, …), which the server ignores.
    const source = `${read('src/config.ts')}\n${read('src/cli/upload/variables.ts')}`;
    // WHARF_TEST_* and the like belong to the test harness and its scripts, not to Wharf.
    const harness = [
      read('test/helpers/deployment.ts'),
      read('scripts/test.sh'),
      ...readdirSync(join(REPO, 'scripts', 'services')).map((name) => read(`scripts/services/${name}`)),
      // Knobs of single tests (WHARF_FUZZ_SEED, WHARF_CRASH_SEED) that their docs tell how to set.
      ...readdirSync(join(REPO, 'test', 'integration')).map((name) => read(`test/integration/${name}`)),
    ].join('\n');
    for (const file of DOC_FILES) {
      for (const [, name] of read(file).matchAll(/\b(WHARF_[A-Z0-9_]+)\b/g)) {
        // The configuration page shows the warning a mistyped variable gets.
        if (file === 'docs/configuration.md' && name === 'WHARF_PROT') continue;
        const exists = new RegExp(`\\b${name}\\b`).test(source) || new RegExp(`\\b${name}\\b`).test(harness);
        assert.ok(exists, `${file} mentions ${name}, which does not exist`);
      }
    }
  });

  test(`the endpoint table (${REFERENCE_FILE}) lists every native route the server registers, and only those`, () => {
    const documented = endpointRows(read(REFERENCE_FILE));
    const listed = new Set(documented.map(({ method, path }) => `${method} ${path}`));
    // Table → code: each row names a route (a wildcard route answers /s3/… and /v1/tus/{id}).
    for (const { method, path } of documented) {
      assert.ok(
        routeExists(embedded.app, method, path),
        `${REFERENCE_FILE} lists ${method} ${path}: no such route`,
      );
    }
    // Code → table: every operation of the OpenAPI document (the routes with schemas; the
    // storage endpoint, tus and the docs are hidden from it but are rows above). A seed API's
    // routes are documented on its own page instead.
    const seedPages = DOC_FILES.filter((file) => file.startsWith('docs/compat-'))
      .map(read)
      .join('\n');
    const paths = (embedded.app.swagger() as { paths: Record<string, Record<string, unknown>> }).paths;
    for (const [path, operations] of Object.entries(paths)) {
      for (const method of Object.keys(operations).map((m) => m.toUpperCase())) {
        if (SEED_PREFIXES.some((prefix) => path.startsWith(prefix))) {
          assert.ok(
            seedPages.includes(`${method} ${path}`),
            `no docs/compat-*.md page names ${method} ${path}`,
          );
        } else {
          assert.ok(listed.has(`${method} ${path}`), `${REFERENCE_FILE} does not list ${method} ${path}`);
        }
      }
    }
  });

  test(`the error table (${REFERENCE_FILE}) has every code of src/core/errors.ts with its status`, () => {
    const rows = Object.fromEntries(
      [...read(REFERENCE_FILE).matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])]),
    );
    assert.deepEqual(rows, { ...ERROR_STATUS });
  });
});
