import assert from 'node:assert/strict';
import { type ClientRequest, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { declare, putPresigned } from '../helpers/assets.js';
import { storesOnS3 } from '../helpers/deployment.js';
import { api } from '../helpers/http.js';
import { ERROR, LogCollector, WARN } from '../helpers/observe.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * WHARF_MAX_UPLOAD_STREAMS_PER_ACCOUNT: one account holding many slow upload bodies open took
 * every descriptor of the process (a hunt's 9,950 uploads trickling 1 KiB every 5 s), and every
 * other account's requests timed out. Now the account's next body is refused before it is read
 * (429 TOO_MANY_UPLOAD_STREAMS, Retry-After) while other accounts upload as before, and each
 * ending of a held body (stored, cut by its client, cut for idling) gives its stream back.
 */

const CAP = 3;
/** WHARF_MAX_UPLOAD_STREAMS_PER_TOKEN: below the account's, so one token cannot take them all. */
const TOKEN_CAP = 2;
const LENGTH = 1000;

let w: TestWharf;
let a: { accountId: string; key: string };
let b: { accountId: string; key: string };
const logs = new LogCollector();
before(async () => {
  w = await startWharf({
    env: {
      WHARF_MAX_UPLOAD_STREAMS_PER_ACCOUNT: String(CAP),
      WHARF_MAX_UPLOAD_STREAMS_PER_TOKEN: String(TOKEN_CAP),
      WHARF_BODY_IDLE_TIMEOUT: '1',
    },
    logStream: logs.stream,
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
  return openSlowRequest('POST', `${w.url}/v1/assets?name=${encodeURIComponent(name)}`, {
    'x-api-key': key,
    'content-type': 'application/octet-stream',
  });
}

/** Any request whose body of LENGTH bytes trickles, as openSlow's (a presigned PUT, a tus PATCH). */
function openSlowRequest(
  method: string,
  url: string,
  headers: Record<string, string>,
): Promise<Held | Refused> {
  const { hostname, port, pathname, search } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: hostname,
      port: Number(port),
      method,
      path: pathname + search,
      agent: false,
      headers: { ...headers, 'content-length': String(LENGTH), expect: '100-continue' },
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
      // As the OpenAPI document declares it (it once did not).
      const doc = (await (await fetch(`${w.url}/openapi.json`)).json()) as {
        paths: Record<string, Record<string, { responses: Record<string, { description: string }> }>>;
      };
      assert.match(doc.paths['/s3/wharf/{key}']!.put!.responses['503']?.description ?? '', /SlowDown/);
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

/** An upload token of A's account, as a browser holds one. */
async function mintToken(limits: Record<string, unknown> = {}): Promise<string> {
  const minted = await api(w.url, a.key, 'POST', '/v1/upload-tokens', limits);
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  return minted.body.secret as string;
}

/** Ends held bodies and waits until the server has let their streams go. */
async function drop(held: Held[]): Promise<void> {
  for (const h of held) h.req.destroy();
  await sleep(300);
}

/** A presigned upload of a few bytes, PUT whole, by another token of A's account. */
async function otherTokensPut(name: string): Promise<void> {
  const bytes = Buffer.from(`bytes of ${name}`);
  const intent = await declare(w, await mintToken(), { name, size: bytes.length });
  const res = await putPresigned(intent, bytes);
  assert.equal(res.status, 200, await res.text());
}

describe('upload bodies below the account: per upload token, per presigned upload', () => {
  test('one presigned URL streams two bodies at a time (one and a retry); the account’s other users upload meanwhile', {
    skip: storesOnS3 && 'the embedded storage endpoint only',
  }, async () => {
    // A hunt's token limited to one upload opened the account's whole cap of trickling PUTs to
    // its one URL, and every other user of the account was refused for as long as they trickled.
    // Declared by the key here (no token cap), so it is the URL's own cap (2, under CAP) that holds.
    const intent = await declare(w, a.key, { name: 'same.bin', size: LENGTH });
    const first = await openSlowRequest('PUT', intent.url, intent.headers);
    assert.ok(isHeld(first), `the first PUT was refused: ${(first as Refused).status}`);
    // A retry of it, sent while the first still streams (its connection broke unseen), is let in.
    const retry = await openSlowRequest('PUT', intent.url, intent.headers);
    assert.ok(isHeld(retry), `the retry was refused: ${(retry as Refused).status}`);
    const second = await openSlowRequest('PUT', intent.url, intent.headers);
    if (isHeld(second)) {
      await drop([first, retry, second]);
      assert.fail('a third body to the same presigned URL was let in');
    }
    assert.equal(second.status, 503, second.body);
    assert.match(second.body, /<Code>SlowDown<\/Code>/);
    assert.match(String(second.headers['retry-after']), /^\d+$/);
    // The account has streams left for its other users.
    await otherTokensPut('other-user.bin');
    await drop([first, retry]);
    // The URL's stream is given back with its body.
    const again = await openSlowRequest('PUT', intent.url, intent.headers);
    assert.ok(isHeld(again), `the URL's stream was not given back: ${(again as Refused).status}`);
    await drop([again]);
  });

  test('an upload token streams at most WHARF_MAX_UPLOAD_STREAMS_PER_TOKEN bodies, whatever the flow', async () => {
    const token = await mintToken();
    const held: Held[] = [];
    for (let i = 0; i < TOKEN_CAP; i++) {
      const opened = await openSlow(token, `token-${i}.bin`);
      if (!isHeld(opened))
        assert.fail(`upload ${i} of ${TOKEN_CAP} was refused: ${opened.status} ${opened.body}`);
      held.push(opened);
    }
    // The account (CAP) has room; the token does not.
    const over = await openSlow(token, 'token-over.bin');
    if (isHeld(over)) await drop([...held, over]);
    const refused = assertRefused(over);
    assert.equal(JSON.parse(refused.body).error.details.scope, 'token');
    // The storage endpoint counts the token its signed upload was declared by.
    if (!storesOnS3) {
      const intent = await declare(w, token, { name: 'token-put.bin', size: 4 });
      const res = await putPresigned(intent, 'abcd');
      assert.equal(res.status, 503, await res.clone().text());
      assert.match(await res.text(), /<Code>SlowDown<\/Code>/);
    }
    // Another token of the account uploads meanwhile.
    const other = await fetch(`${w.url}/v1/assets?name=other-token.bin`, {
      method: 'POST',
      headers: { 'x-api-key': await mintToken(), 'content-type': 'application/octet-stream' },
      body: new Uint8Array(Buffer.from('other token')),
    });
    assert.equal(other.status, 201, await other.text());
    await drop(held);
    const after = await openSlow(token, 'token-after.bin');
    assert.ok(isHeld(after), 'the token’s streams were not given back');
    await drop([after]);
  });

  test('tus answers the refusal 503 with Retry-After (tus-js-client retries it; not 429)', async () => {
    const held = await holdCap('tus');
    try {
      const created = await fetch(`${w.url}/v1/tus`, {
        method: 'POST',
        headers: {
          'x-api-key': a.key,
          'tus-resumable': '1.0.0',
          'upload-length': '4',
          'upload-metadata': `filename ${Buffer.from('t.bin').toString('base64')}`,
        },
      });
      assert.equal(created.status, 201, await created.text());
      const patch = await fetch(new URL(created.headers.get('location')!, w.url), {
        method: 'PATCH',
        headers: {
          'x-api-key': a.key,
          'tus-resumable': '1.0.0',
          'upload-offset': '0',
          'content-type': 'application/offset+octet-stream',
        },
        body: 'abcd',
      });
      const text = await patch.text();
      assert.equal(patch.status, 503, text);
      assert.equal(JSON.parse(text).error.code, 'TOO_MANY_UPLOAD_STREAMS');
      assert.match(String(patch.headers.get('retry-after')), /^\d+$/);
      // The native API keeps its 429.
      assertRefused(await openSlow(a.key, 'native-still-429.bin'));
    } finally {
      await drop(held);
    }
  });

  test('refusals (429, and 503 SlowDown or tus) are logged at warn, never as errors with a stack', async () => {
    // Refusals for load are the cap doing its work: a warning, never an error with a stack.
    await logs.waitFor(
      (l) => l.level === WARN && l.code === 'TOO_MANY_UPLOAD_STREAMS',
      'warning of a refused upload body',
    );
    const errors = logs.lines.filter((l) => l.level >= ERROR);
    assert.deepEqual(errors, [], 'no error logged for a refused body');
  });
});
