// The web console's plain logic (no DOM), run in Node: what it shows for a failed upload, and
// the days its assets filter asks for.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DetailedError } from 'tus-js-client';
import { endOfDay, startOfDay } from '../../src/console/dates.js';
import { uploadErrorText, uploadRefusal } from '../../src/console/upload-errors.js';

/** A tus-js-client request and response, as its browser HTTP stack hands them to DetailedError. */
function tusError(status: number, body: string): Error {
  const req = { getHeader: () => undefined, getMethod: () => 'POST', getURL: () => '/v1/tus/' };
  const res = { getStatus: () => status, getBody: () => body, getHeader: () => undefined };
  // Its constructor takes the request and response too, though its typings name only two arguments.
  const Detailed = DetailedError as unknown as new (...args: unknown[]) => Error;
  return new Detailed('tus: unexpected response while creating upload', null, req, res);
}

test('a refused upload shows the server’s message and code, not tus-js-client’s request dump', () => {
  const err = tusError(
    413,
    JSON.stringify({
      error: { code: 'FILE_TOO_LARGE', message: 'The file is larger than the limit of 20971520 bytes.' },
    }),
  );
  assert.match(err.message, /response text/, 'tus-js-client’s own message is the raw exchange');
  assert.equal(uploadErrorText(err), 'The file is larger than the limit of 20971520 bytes. (FILE_TOO_LARGE)');
  assert.deepEqual(uploadRefusal(err), {
    status: 413,
    code: 'FILE_TOO_LARGE',
    message: 'The file is larger than the limit of 20971520 bytes.',
  });
});

test('an answer that is not Wharf’s JSON says its status; an error with no answer keeps its message', () => {
  assert.equal(uploadErrorText(tusError(502, '<html>Bad Gateway</html>')), 'The server answered 502.');
  assert.equal(uploadErrorText(new Error('tus: failed to upload chunk')), 'tus: failed to upload chunk');
  assert.equal(uploadRefusal(new Error('offline')), null);
});

/** Runs `check` with the process in time zone `zone` (Node reads TZ afresh when it is set). */
function inZone(zone: string, check: () => void): void {
  const was = process.env.TZ;
  process.env.TZ = zone;
  try {
    check();
  } finally {
    if (was === undefined) delete process.env.TZ;
    else process.env.TZ = was;
  }
}

test('the assets filter’s "to" day ends at the next local midnight, on daylight-saving days too', () => {
  inZone('Europe/Berlin', () => {
    // Summer time ends on 2026-10-25: that day is 25 hours long.
    assert.equal(startOfDay('2026-10-25'), '2026-10-24T22:00:00.000Z');
    assert.equal(endOfDay('2026-10-25'), '2026-10-25T23:00:00.000Z');
    // Summer time starts on 2026-03-29: that day is 23 hours long.
    assert.equal(endOfDay('2026-03-29'), '2026-03-29T22:00:00.000Z');
    assert.equal(endOfDay('2026-06-01'), '2026-06-01T22:00:00.000Z');
    // The last day of a month and of a year.
    assert.equal(endOfDay('2026-12-31'), '2026-12-31T23:00:00.000Z');
  });
  inZone('America/New_York', () => {
    assert.equal(endOfDay('2026-11-01'), '2026-11-02T05:00:00.000Z');
    assert.equal(endOfDay('2026-03-08'), '2026-03-09T04:00:00.000Z');
  });
  inZone('UTC', () => assert.equal(endOfDay('2026-10-25'), '2026-10-26T00:00:00.000Z'));
});
