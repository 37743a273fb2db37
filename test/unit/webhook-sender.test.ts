import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { after, before, describe, test } from 'node:test';
import { HttpWebhookSender, type Resolve } from '../../src/net/webhook-sender.js';
import { Receiver } from '../helpers/receiver.js';

// The outbound sender against a loopback receiver, with a stand-in resolver: what a hostile
// DNS server could answer, without asking one.
let r: Receiver;
before(async () => {
  r = await Receiver.start();
  r.secrets = ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'];
});
after(async () => {
  await r.close();
});

function resolver(answers: LookupAddress[][]): Resolve & { calls: number } {
  const resolve = ((_name: string, callback: (err: Error | null, a: LookupAddress[]) => void) => {
    const answer = answers[Math.min(resolve.calls, answers.length - 1)]!;
    resolve.calls += 1;
    setImmediate(() => callback(null, answer));
  }) as Resolve & { calls: number };
  resolve.calls = 0;
  return resolve;
}

const request = (url: string, timeoutMs = 2000) => ({ url, headers: {}, body: '{}', timeoutMs });

describe('HttpWebhookSender', () => {
  test('a name answered with a loopback address is refused without connecting', async () => {
    const resolve = resolver([[{ address: '127.0.0.1', family: 4 }]]);
    const result = await new HttpWebhookSender(false, resolve).send(request(`http://rebind.test:${r.port}/`));
    assert.equal(result.ok, false);
    const error = !result.ok ? result.error : '';
    assert.match(error, /^Refused: rebind\.test has no public address/);
    // The name, never what it resolved to: the delivery log would be a resolver for internal names.
    assert.doesNotMatch(error, /127\.0\.0\.1/);
    assert.equal(resolve.calls, 1, 'resolved once, for the connection itself');
    assert.equal(r.requests.length + r.invalid.length, 0);
  });

  test('an answer mixing public and private addresses is refused as a whole', async () => {
    const resolve = resolver([
      [
        { address: '93.184.216.34', family: 4 },
        { address: '10.0.0.7', family: 4 },
      ],
    ]);
    const result = await new HttpWebhookSender(false, resolve).send(request('http://mixed.test/'));
    assert.equal(result.ok, false);
    const error = !result.ok ? result.error : '';
    assert.match(error, /^Refused: mixed\.test has no public address/);
    assert.doesNotMatch(error, /10\.0\.0\.7|93\.184\.216\.34/);
  });

  test('a name that does not resolve is refused in the same words as one that resolves privately', async () => {
    const missing: Resolve = (name, callback) =>
      setImmediate(() =>
        callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' }), []),
      );
    const privately = resolver([[{ address: '10.0.0.7', family: 4 }]]);
    const [gone, internal] = await Promise.all([
      new HttpWebhookSender(false, missing).send(request('http://nowhere.test/')),
      new HttpWebhookSender(false, privately).send(request('http://nowhere.test/')),
    ]);
    // Otherwise the log would say which internal names exist (hosts file, split-horizon DNS).
    assert.equal(gone.ok, false);
    assert.deepEqual(!gone.ok && gone.error, !internal.ok && internal.error);
    // With private targets allowed there is nothing to hide, and the resolver's answer helps.
    const allowed = await new HttpWebhookSender(true, missing).send(request('http://nowhere.test/'));
    assert.match(!allowed.ok ? allowed.error : '', /ENOTFOUND/);
  });

  test('a private IP literal is refused before any connection', async () => {
    const result = await new HttpWebhookSender(false).send(request(`http://127.0.0.1:${r.port}/`));
    assert.equal(result.ok, false);
    assert.match(!result.ok ? result.error : '', /^Refused: 127\.0\.0\.1 is not a public address/);
    assert.equal(r.requests.length + r.invalid.length, 0);
  });

  test('the connection goes to the address the lookup vetted, not to a second resolution', async () => {
    // The system resolver knows no `rebind.test`: reaching the receiver proves the socket used
    // the answer of the one lookup.
    const resolve = resolver([[{ address: '127.0.0.1', family: 4 }], [{ address: '10.9.9.9', family: 4 }]]);
    const sender = new HttpWebhookSender(true, resolve);
    r.answer = () => ({
      status: 302,
      headers: { location: 'http://elsewhere.test/' },
      body: 'y'.repeat(4000),
    });
    const result = await sender.send({
      url: `http://rebind.test:${r.port}/hooks`,
      headers: {
        'webhook-id': 'msg_1',
        'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
        'webhook-signature': 'v1,x',
      },
      body: '{}',
      timeoutMs: 2000,
    });
    assert.equal(resolve.calls, 1);
    // The receiver refused the bad signature, but it was reached, once, with no redirect followed.
    assert.equal(r.invalid.length, 1);
    assert.equal(result.ok, true);
    assert.equal(result.ok && result.status, 401);
  });

  test('only the first KiB of an answer is kept, and a silent receiver times out', async () => {
    const big = await Receiver.start();
    try {
      big.secrets = r.secrets;
      const sender = new HttpWebhookSender(true);
      const { Webhook } = await import('standardwebhooks');
      const signed = () => {
        const ts = Math.floor(Date.now() / 1000);
        return {
          'webhook-id': 'msg_2',
          'webhook-timestamp': String(ts),
          'webhook-signature': new Webhook(r.secrets[0]!).sign('msg_2', new Date(ts * 1000), '{}'),
        };
      };
      big.answer = () => ({ status: 200, body: 'z'.repeat(100_000) });
      const result = await sender.send({ url: big.url, headers: signed(), body: '{}', timeoutMs: 2000 });
      assert.equal(result.ok && result.status, 200);
      assert.equal(result.ok && result.body, 'z'.repeat(1024));
      big.answer = () => 'hang';
      const silent = await sender.send({ url: big.url, headers: signed(), body: '{}', timeoutMs: 200 });
      assert.equal(silent.ok, false);
      assert.match(!silent.ok ? silent.error : '', /^Timed out/);
    } finally {
      await big.close();
    }
  });
});
