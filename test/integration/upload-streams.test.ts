import assert from 'node:assert/strict';
import { type ClientRequest, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { declare, putPresigned } from '../helpers/assets.js';
import { storesOnS3 } from '../helpers/deployment.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * WHARF_MAX_UPLOAD_STREAMS_PER_ACCOUNT: one account holding many slow upload bodies open took
 * every descriptor of the process (a hunt's 9,950 uploads trickling 1 KiB every 5 s), and every
 * other account's requests timed out. Now the account's next body is refused before it is read
 * (429 TOO_MANY_UPLOAD_STREAMS, Retry-After) while other accounts upload as before, and each
 * ending of a held body (stored, cut by its client, cut for idling) gives its stream back.
 */

const CAP = 3;
const LENGTH = 1000;

let w: TestWharf;
let a: { accountId: string; key: string };
let b: { accountId: string; key: string };
before(async () => {
  w = await startWharf({
    env: { WHARF_MAX_UPLOAD_STREAMS_PER_ACCOUNT: String(CAP), WHARF_BODY_IDLE_TIMEOUT: '1' },
  });
  a = await w.newAccount('a');
  b = await w.newAccount('b');
});
after(async () => {
  for (const req of opened) req.destroy();
  await w?.close();
});

/** Every request opened, ended at the latest when the file's tests are over. */
const opened: ClientRequest[] = [];

interface Refused {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A direct upload whose body trickles (a few bytes every 200 ms) until it is told otherwise. */
interface Held {
  req: ClientRequest;
  /** Stops the trickle: the body goes silent (and is cut for idling). */
  silence(): void;
  /** Sends the rest of the body; resolves with the answer's status. */
  finish(): Promise<number>;
  sent: number;
}

/**
 * A direct upload with `Expect: 100-continue`: its body is sent only when Wharf starts reading
 * it (100 Continue), so a refusal before the body is read is the first answer, and no byte of
 * the body has left the client. Resolves with the held upload, or with the refusal.
 */
function openSlow(key: string, name: string): Promise<Held | Refused> {
  const { hostname, port } = new URL(w.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: hostname,
      port: Number(port),
      method: 'POST',
      path: `/v1/assets?name=${encodeURIComponent(name)}`,
      agent: false,
      headers: {
        'x-api-key': key,
        'content-type': 'application/octet-stream',
        'content-length': String(LENGTH),
        expect: '100-continue',
      },
    });
    opened.push(req);
    let answer: ((status: number) => void) | undefined;
    let trickle: NodeJS.Timeout | undefined;
    req.on('error', (err) => {
      clearInterval(trickle);
      if (!answer) reject(err);
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => {
        clearInterval(trickle);
        if (answer) answer(res.statusCode ?? 0);
        else {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        }
      });
    });
    req.on('continue', () => {
      const held: Held = {
        req,
        sent: 0,
        silence: () => clearInterval(trickle),
        finish: () =>
          new Promise((done) => {
            clearInterval(trickle);
            answer = done;
            req.end(Buffer.alloc(LENGTH - held.sent, 7));
          }),
      };
      const send = (n: number) => {
        if (held.sent + n >= LENGTH) return;
        req.write(Buffer.alloc(n, 7));
        held.sent += n;
      };
      send(10);
      trickle = setInterval(() => send(1), 200);
      resolve(held);
    });
  });
}

function isHeld(x: Held | Refused): x is Held {
  return 'req' in x;
}

function assertRefused(x: Held | Refused): Refused {
  assert.ok(!isHeld(x), 'the upload was let in (its body was asked for)');
  assert.equal(x.status, 429, x.body);
  assert.equal(JSON.parse(x.body).error.code, 'TOO_MANY_UPLOAD_STREAMS');
  assert.match(String(x.headers['retry-after']), /^\d+$/);
  return x;
}

async function upload(key: string, name: string): Promise<Response> {
  return fetch(`${w.url}/v1/assets?name=${name}`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/octet-stream' },
    body: new Uint8Array(Buffer.from(`bytes of ${name}`)),
  });
}

/** Opens CAP slow uploads for A; each must be let in. */
async function holdCap(round: string): Promise<Held[]> {
  const held: Held[] = [];
  for (let i = 0; i < CAP; i++) {
    const opened = await openSlow(a.key, `${round}-${i}.bin`);
    if (!isHeld(opened)) assert.fail(`upload ${i} of ${CAP} was refused: ${opened.status} ${opened.body}`);
    held.push(opened);
  }
  return held;
}

describe('upload bodies one account streams at once', () => {
  test('over the cap A is refused before its body is read, B uploads meanwhile, and every ending frees a stream', async () => {
    const held = await holdCap('first');

    // A's next body, of any flow, is refused unread: a direct upload (no 100 Continue came)...
    assertRefused(await openSlow(a.key, 'one-too-many.bin'));
    // ...and a PUT to a presigned URL of the embedded storage endpoint, in S3's terms.
    if (!storesOnS3) {
      const bytes = Buffer.from('presigned while full');
      const intent = await declare(w, a.key, { name: 'p.bin', size: bytes.length });
      const res = await putPresigned(intent, bytes);
      assert.equal(res.status, 503, await res.clone().text());
      assert.match(await res.text(), /<Code>SlowDown<\/Code>/);
      assert.match(String(res.headers.get('retry-after')), /^\d+$/);
    }

    // Another account is not affected.
    const other = await upload(b.key, 'b.bin');
    assert.equal(other.status, 201, await other.text());

    // Every way a held body ends gives its stream back: stored, cut by the client, idle.
    assert.equal(await held[0]!.finish(), 201);
    held[1]!.req.destroy();
    held[2]!.silence();
    // The idle cut (WHARF_BODY_IDLE_TIMEOUT=1) comes within about a second of silence.
    await sleep(2500);

    // All CAP streams are free again (and no more than that: the next one is refused).
    const again = await holdCap('second');
    assertRefused(await openSlow(a.key, 'still-too-many.bin'));
    for (const h of again) h.req.destroy();
    await sleep(200);
    const res = await upload(a.key, 'after.bin');
    assert.equal(res.status, 201, await res.text());
  });
});
