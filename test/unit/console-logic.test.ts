// The web console's plain logic (no DOM), run in Node: what it shows for a failed upload.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DetailedError } from 'tus-js-client';
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
