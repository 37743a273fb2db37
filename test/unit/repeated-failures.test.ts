import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Logger } from '../../src/telemetry/log.js';
import { REPEAT_LOG_INTERVAL_MS, RepeatedFailureLog } from '../../src/telemetry/repeated-failures.js';

function setup() {
  const lines: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  const logger = {
    error: (fields: Record<string, unknown>, msg: string) => lines.push({ level: 'error', msg, fields }),
    info: (fields: Record<string, unknown>, msg: string) => lines.push({ level: 'info', msg, fields }),
  } as unknown as Logger;
  let now = 1_000_000;
  const log = new RepeatedFailureLog(
    () => logger,
    'job runner',
    () => now,
  );
  return { lines, log, advance: (ms: number) => (now += ms) };
}

const busy = (message = 'database is locked') => Object.assign(new Error(message), { code: 'SQLITE_BUSY' });

test('a runner failing every other poll is logged once, and recovers once, within a minute', () => {
  const { lines, log, advance } = setup();
  for (let poll = 0; poll < 120; poll++) {
    if (poll % 2 === 0) log.failed(busy());
    else log.succeeded();
    advance(400);
  }
  assert.ok(lines.length <= 2, lines.map((l) => l.msg).join(', '));
  assert.deepEqual(
    lines.map((l) => l.msg),
    ['job runner failed', 'job runner recovered'],
  );
});

test('a flapping runner past the interval: one stackless line a minute, with its count', () => {
  const { lines, log, advance } = setup();
  for (let poll = 0; poll < 300; poll++) {
    if (poll % 2 === 0) log.failed(busy());
    else log.succeeded();
    advance(1000);
  }
  const failed = lines.filter((l) => l.msg === 'job runner failed');
  assert.equal(failed.length, 1, 'the stack once');
  const still = lines.filter((l) => l.msg === 'job runner still failing');
  assert.ok(still.length >= 4 && still.length <= 5, `${still.length} still failing lines in 5 minutes`);
  assert.ok((still[0]!.fields.repeats as number) >= 29);
  assert.ok(lines.filter((l) => l.msg === 'job runner recovered').length <= still.length + 1);
});

test('failures with the same code and different messages are one failure', () => {
  const { lines, log, advance } = setup();
  log.failed(busy('cannot open /var/lib/wharf/a.db'));
  advance(1000);
  log.failed(busy('cannot open /var/lib/wharf/b.db'));
  assert.equal(lines.length, 1);
  advance(REPEAT_LOG_INTERVAL_MS);
  log.failed(Object.assign(new Error('disk full'), { code: 'SQLITE_FULL' }));
  assert.equal(lines.length, 2, 'another code: in full');
  assert.equal(lines[1]!.msg, 'job runner failed');
});

test('a success a whole interval after the last failure forgets it: the next failure is logged in full', () => {
  const { lines, log, advance } = setup();
  log.failed(busy());
  log.succeeded();
  advance(REPEAT_LOG_INTERVAL_MS);
  log.succeeded();
  log.failed(busy());
  assert.deepEqual(
    lines.map((l) => l.msg),
    ['job runner failed', 'job runner recovered', 'job runner failed'],
  );
});
