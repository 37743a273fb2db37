import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * What the server imports at run time must be a dependency, never a dev dependency: a
 * production install (npm ci --omit=dev) has none of those. test/integration/run-path.test.ts
 * runs such an install; this finds the mistake in milliseconds, with the file that makes it.
 */

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
};

function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts') || name.endsWith('.js'))
    .map((name) => join(dir, name));
}

/** Packages a file loads at run time: static and dynamic imports, not `import type`. */
function runtimeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [
    ...[...text.matchAll(/^\s*(?:import|export)\s+(?!type\s)[^'";]*?\sfrom\s+'([^']+)'/gm)].map((m) => m[1]!),
    ...[...text.matchAll(/^\s*import\s+'([^']+)'/gm)].map((m) => m[1]!),
    ...[...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]!),
  ];
  return specifiers
    .filter((s) => !s.startsWith('.') && !s.startsWith('node:') && !builtinModules.includes(s))
    .map((s) => (s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!));
}

describe('dependencies', () => {
  const files = [
    ...sources(join(REPO, 'src')),
    ...sources(join(REPO, 'bin')),
    join(REPO, 'scripts', 'start.js'),
  ];
  const used = new Map<string, string>();
  for (const file of files) for (const name of runtimeImports(file)) used.set(name, file);

  test('everything the server, the CLI and the start script import is a dependency, not a dev dependency', () => {
    assert.ok(used.has('fastify') && used.has('better-sqlite3'), 'the scan finds imports');
    const wrong = [...used].filter(([name]) => !(name in pkg.dependencies));
    assert.deepEqual(
      wrong.map(([name, file]) => `${name} (${file.slice(REPO.length)})`),
      [],
      'imported at run time but not in dependencies',
    );
  });

  test('every dependency is imported by the server (an unused one only costs installs)', () => {
    const unused = Object.keys(pkg.dependencies).filter((name) => !used.has(name));
    assert.deepEqual(unused, []);
  });
});
