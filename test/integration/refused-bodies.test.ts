import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * A request refused before its body was read (no key, a scope it lacks): a small body is read
 * and dropped, so a client that writes everything before it reads still gets the answer; a
 * large one closes the connection instead of being read to the end.
 */

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

/** Sends the head and the first `sent` bytes of a body of `length`; returns what comes back before the socket closes. */
function rawRequest(length: number, sent: number): Promise<{ head: string; closed: boolean }> {
  const { hostname, port } = new URL(w.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let received = '';
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
    });
    socket.on('error', reject);
    socket.on('close', () => resolve({ head: received.split('\r\n\r\n')[0] ?? '', closed: true }));
    socket.write(
      `POST /v1/assets?name=a.bin HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
        `Content-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`,
    );
    socket.write(Buffer.alloc(sent));
    // Give up waiting for a close after the answer, as a client would; the server kept it open.
    socket.once('data', () => {
      setTimeout(() => {
        if (!socket.destroyed) {
          socket.destroy();
          resolve({ head: received.split('\r\n\r\n')[0] ?? '', closed: false });
        }
      }, 300);
    });
  });
}

describe('refused requests with a body still arriving', () => {
  test('fetch reads the 401 of a small body, every time (no EPIPE, no reset)', async () => {
    const body = new Uint8Array(512 * 1024);
    for (let i = 0; i < 25; i += 1) {
      const res = await fetch(`${w.url}/v1/assets?name=a.bin`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body,
      });
      assert.equal(res.status, 401);
      assert.equal((await res.json()).error.code, 'UNAUTHORIZED');
    }
  });

  test('a small refused body is drained: the connection stays open for the next request', async () => {
    const { head, closed } = await rawRequest(64 * 1024, 1024);
    assert.match(head, /^HTTP\/1\.1 401/);
    assert.doesNotMatch(head, /connection: close/i);
    assert.equal(closed, false);
  });

  test('a large refused body is not read: the answer says Connection: close and the server closes', async () => {
    const { head, closed } = await rawRequest(64 * 1024 * 1024, 1024);
    assert.match(head, /^HTTP\/1\.1 401/);
    assert.match(head, /connection: close/i);
    assert.equal(closed, true);
  });
});
