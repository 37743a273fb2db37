import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nestsDeeperThan } from '../../src/http/json-depth.js';

test('counts objects and arrays inside one another, not their number', () => {
  assert.equal(nestsDeeperThan('[[[]]]', 3), false);
  assert.equal(nestsDeeperThan('[[[[]]]]', 3), true);
  assert.equal(nestsDeeperThan(`[${'[],'.repeat(10_000)}[]]`, 2), false);
  assert.equal(nestsDeeperThan('{"a":{"b":[{"c":1}]}}', 4), false);
  assert.equal(nestsDeeperThan('{"a":{"b":[{"c":[1]}]}}', 4), true);
});

test('brackets in strings are text, escaped quotes do not end them', () => {
  assert.equal(nestsDeeperThan('["[[[[[[", "{{{{"]', 1), false);
  assert.equal(nestsDeeperThan('["\\"[[[[", "\\\\"]', 1), false);
  // After an escaped backslash the quote does end the string, so these brackets count.
  assert.equal(nestsDeeperThan('["\\\\", [[[]]]]', 3), true);
});
