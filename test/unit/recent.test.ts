import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RecentMap } from '../../src/core/recent.js';

test('RecentMap forgets the entry used least recently once full', () => {
  const map = new RecentMap<string, number>(2);
  map.set('a', 1);
  map.set('b', 2);
  assert.equal(map.get('a'), 1); // a is now the most recent
  map.set('c', 3);
  assert.equal(map.get('b'), undefined);
  assert.equal(map.get('a'), 1);
  assert.equal(map.get('c'), 3);
  assert.equal(map.size, 2);
  map.set('a', 10); // replacing counts as a use and keeps the size
  map.set('d', 4);
  assert.equal(map.get('c'), undefined);
  assert.equal(map.get('a'), 10);
});

test('RecentMap.deleteWhere forgets the matching keys only', () => {
  const map = new RecentMap<string, number>(10);
  for (const key of ['x:1', 'x:2', 'y:1']) map.set(key, 0);
  map.deleteWhere((key) => key.startsWith('x:'));
  assert.equal(map.size, 1);
  assert.equal(map.get('y:1'), 0);
});
