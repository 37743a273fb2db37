import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { storesOnS3 } from '../helpers/deployment.js';
import { api } from '../helpers/http.js';
import { ERROR, INFO, LogCollector, WARN } from '../helpers/observe.js';
import { Receiver } from '../helpers/receiver.js';
import { freePort, startWharf } from '../helpers/wharf.js';

/** Uploads through a presigned URL, then downloads through a signed URL; returns Wharf's log. */
async function loggedFlow() {
  const lines: string[] = [];
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
  const w = await startWharf({ logStream: stream });
  try {
    const bytes = Buffer.from('log me not');
    const intent = (await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'l.txt', size: bytes.length }))
      .body;
    const putSignature = new URL(intent.url).searchParams.get('X-Amz-Signature');
    assert.ok(putSignature);
    assert.equal(
      (await fetch(intent.url, { method: 'PUT', headers: intent.headers, body: bytes })).status,
      200,
    );
    const asset = (await api(w.url, w.key, 'POST', `/v1/uploads/${intent.id}/complete`)).body.asset;
    const signed = (await api(w.url, w.key, 'POST', `/v1/assets/${asset.id}/signed-url`, {})).body.url;
    const downloadSignature = new URL(signed).searchParams.get('signature');
    assert.ok(downloadSignature);
    assert.equal((await fetch(signed)).status, 200);
    // The same URL with the parameter's name in escapes works all the same, and is redacted too.
    assert.equal((await fetch(signed.replace('signature=', '%73ignature='))).status, 200);
    // A key where Wharf does not take one, the query: refused, and its value not logged, under
    // a name that says what it is or under any name at all.
    for (const query of [
      `api_key=${w.key}`,
      `Token=${encodeURIComponent(w.key)}`,
      `q=%20${w.key}`,
      `h=Bearer%20${w.key}`,
      `f=key:${w.key}`,
    ]) {
      const misused = await fetch(`${w.url}/v1/assets?limit=1&${query}`);
      await misused.arrayBuffer();
      assert.equal(misused.status, 401, query);
    }
    return { log: lines.join('\n'), key: w.key, putSignature, downloadSignature };
  } finally {
    await w.close();
  }
}

test('request logs never contain presigned or signed-URL signatures, nor API keys', async () => {
  const { log, key, putSignature, downloadSignature } = await loggedFlow();
  assert.match(log, /\/content\?[^"]*signature=REDACTED/, 'the download was logged, its signature redacted');
  assert.ok(!log.includes(putSignature), 'the presigned signature is absent');
  assert.ok(!log.includes(downloadSignature), 'the download signature is absent');
  assert.ok(!log.includes(key), 'the API key is absent');
  assert.match(
    log,
    /\/v1\/assets\?limit=1&api_key=REDACTED"/,
    'a key in the query was logged, its value redacted',
  );
  assert.match(log, /\/v1\/assets\?limit=1&q=REDACTED"/);
  // Within a value too, after a scheme or a label.
  assert.match(log, /\/v1\/assets\?limit=1&h=REDACTED"/);
  assert.match(log, /\/v1\/assets\?limit=1&f=REDACTED"/);
});

test('a presigned PUT to the storage endpoint is logged with its signature redacted', {
  skip:
    storesOnS3 &&
    'the PUT goes to the S3 server, not to Wharf, so Wharf has no request of it to log (the test above covers the requests Wharf sees)',
}, async () => {
  const { log, putSignature } = await loggedFlow();
  assert.match(log, /"method":"PUT","url":"\/s3\/wharf\/[^"]*X-Amz-Signature=REDACTED/);
  assert.ok(!log.includes(putSignature));
});

test('an ActiveStorage signed id, which alone downloads its blob, is not logged', async () => {
  const lines: string[] = [];
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
  const w = await startWharf({ logStream: stream });
  let signedId = '';
  try {
    const bytes = Buffer.from(`blob ${Date.now()}`);
    const blob = (
      await api(w.url, w.key, 'POST', '/api/v1/upload/direct', {
        blob: {
          filename: 'b.txt',
          content_type: 'text/plain',
          byte_size: bytes.length,
          checksum: createHash('md5').update(bytes).digest('base64'),
        },
      })
    ).body;
    signedId = blob.signed_id;
    assert.ok(signedId.length > 20);
    const put = await fetch(blob.direct_upload.url, {
      method: 'PUT',
      headers: blob.direct_upload.headers,
      body: bytes,
    });
    assert.equal(put.status, 200);
    assert.equal((await api(w.url, w.key, 'GET', `/api/v1/upload/blobs/${blob.signed_id}`)).status, 200);
    const redirect = await fetch(`${w.url}/rails/active_storage/blobs/redirect/${blob.signed_id}/b.txt`, {
      redirect: 'manual',
    });
    assert.equal(redirect.status, 302);
    const escaped = await fetch(`${w.url}/rails/active_storage/%62lobs/redirect/${blob.signed_id}/b.txt`, {
      redirect: 'manual',
    });
    assert.equal(escaped.status, 302, 'a path in escapes reaches the same route');
  } finally {
    await w.close();
  }
  const log = lines.join('\n');
  assert.match(log, /\/rails\/active_storage\/blobs\/redirect\/REDACTED\/b\.txt/, 'the redirect was logged');
  assert.match(log, /\/api\/v1\/upload\/blobs\/REDACTED/);
  assert.ok(!log.includes(signedId), 'the signed id is absent');
});

test('at trace level, headers a library logs (multipart hands busboy the raw headers) show no credentials', async () => {
  const lines: string[] = [];
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
  const w = await startWharf({ logStream: stream, logLevel: 'trace' });
  const cookie = `wharf_session=cookie${createHash('sha256').update(w.key).digest('hex')}`;
  const member = await w.newKey('member');
  try {
    const sent: Array<Record<string, string>> = [
      { 'x-api-key': w.key },
      { authorization: `Bearer ${member.key}`, cookie },
    ];
    for (const [i, headers] of sent.entries()) {
      const form = new FormData();
      form.append('file', new Blob([`trace ${i}`]), `trace-${i}.txt`);
      const res = await fetch(`${w.url}/v1/assets`, { method: 'POST', headers, body: form });
      assert.equal(res.status, 201, await res.text());
    }
  } finally {
    await w.close();
  }
  const log = lines.join('\n');
  const busboy = lines.filter((l) => l.includes('Providing options to busboy')).map((l) => JSON.parse(l));
  assert.equal(busboy.length, 2, 'the library logged its options, headers included, for both uploads');
  assert.equal(busboy[0].busboyOptions.headers['x-api-key'], 'REDACTED');
  assert.equal(busboy[1].busboyOptions.headers.authorization, 'REDACTED');
  assert.equal(busboy[1].busboyOptions.headers.cookie, 'REDACTED');
  assert.match(
    busboy[1].busboyOptions.headers['content-type'],
    /^multipart\/form-data/,
    'other headers stay',
  );
  assert.ok(!log.includes(w.key), 'the admin key is absent');
  assert.ok(!log.includes(member.key), 'the Bearer key is absent');
  assert.ok(!log.includes(cookie.slice('wharf_session='.length)), 'the cookie is absent');
});

test('a job runner failing on every poll is logged when it starts, once a minute while it lasts, and when it recovers', async () => {
  const logs = new LogCollector();
  // The runner polls on its own here (tests otherwise drain the queue themselves).
  const w = await startWharf({ logStream: logs.stream, env: { WHARF_JOB_INTERVAL_MS: '10' } });
  try {
    // The store's claim fails as it does on a full disk, poll after poll.
    const store = (w.wharf.core.jobs as unknown as { store: { claimJob: (...args: unknown[]) => unknown } })
      .store;
    const claim = store.claimJob;
    let polls = 0;
    store.claimJob = async () => {
      polls += 1;
      throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    };
    const pollsPast = async (n: number) => {
      const target = polls + n;
      while (polls < target) await sleep(10);
    };
    await pollsPast(20);
    const failed = logs.lines.filter((l) => l.msg === 'job runner failed');
    assert.equal(failed.length, 1, `one line for ${polls} failed polls`);
    assert.equal(failed[0]!.level, ERROR);
    const err = failed[0]!.err as { message: string; code: string; stack: string };
    assert.equal(err.code, 'SQLITE_FULL');
    assert.match(err.stack, /database or disk is full\n\s+at /, 'the first one with its stack');
    assert.equal(
      logs.find((l) => l.msg === 'job runner still failing'),
      undefined,
      'nothing more within a minute',
    );

    // A minute on, the next failure says how many there were meanwhile, without the stack again.
    w.clock.advance(61_000);
    const still = await logs.waitFor((l) => l.msg === 'job runner still failing', 'a minute on');
    assert.equal(still.level, ERROR);
    assert.ok((still.repeats as number) >= 20, `repeats: ${still.repeats}`);
    assert.equal(still.err, undefined);
    assert.deepEqual(still.error, {
      type: 'Error',
      message: 'database or disk is full',
      code: 'SQLITE_FULL',
    });
    await pollsPast(5);
    assert.equal(logs.lines.filter((l) => l.msg === 'job runner still failing').length, 1);

    // A claim already under way when claimJob was replaced may have succeeded after the first
    // failures, logging an early `recovered` (true then): the one awaited is the one after this.
    const restoredAt = logs.lines.length;
    store.claimJob = claim;
    const recovered = await logs.waitFor(
      (l) => l.msg === 'job runner recovered' && logs.lines.indexOf(l) >= restoredAt,
      'once it works again',
    );
    assert.equal(recovered.level, INFO);
    assert.ok((recovered.failures as number) >= 26);
    assert.ok((recovered.failedForSeconds as number) >= 61);
    assert.equal(logs.lines.filter((l) => l.msg === 'job runner failed').length, 1);
  } finally {
    await w.close();
  }
});

test('a webhook attempt to be retried is logged without a stack, naming the endpoint (its host only), delivery, event and attempt', async () => {
  const logs = new LogCollector();
  const receiver = await Receiver.start();
  const w = await startWharf({ logStream: logs.stream, env: { WHARF_WEBHOOK_ALLOW_PRIVATE: 'true' } });
  try {
    const password = `pw${Date.now()}`;
    const token = `Q${Date.now()}SECRET`;
    const url = `http://alice:${password}@127.0.0.1:${receiver.port}/hooks?token=${token}`;
    const created = await api(w.url, w.key, 'POST', '/v1/webhooks', { url, event_types: ['asset.created'] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    receiver.secrets.push(created.body.secret);
    receiver.answer = () => ({ status: 500 });
    const form = new FormData();
    form.append('file', new Blob(['hooked']), 'hooked.txt');
    assert.equal(
      (await fetch(`${w.url}/v1/assets`, { method: 'POST', headers: { 'x-api-key': w.key }, body: form }))
        .status,
      201,
    );
    await w.wharf.core.jobs.drain();
    assert.equal(receiver.requests.length, 1, 'one attempt, answered 500');
    const eventId = receiver.requests[0]!.id;

    const line = await logs.waitFor(
      (l) => l.msg === 'background job failed; it will be retried',
      'of the retry',
    );
    assert.equal(line.level, WARN);
    assert.equal(line.err, undefined, 'no error with a stack');
    assert.deepEqual(line.error, { type: 'RetryJobError', message: 'HTTP 500' });
    assert.deepEqual(line.webhook, { id: created.body.webhook.id, host: `127.0.0.1:${receiver.port}` });
    const delivery = line.delivery as { id: string; event: string; attempt: number };
    assert.equal(delivery.event, eventId, 'the event, as the receiver got it in webhook-id');
    assert.equal(delivery.attempt, 1);
    const deliveries = await api(w.url, w.key, 'GET', `/v1/webhooks/${created.body.webhook.id}/deliveries`);
    assert.equal(deliveries.status, 200, JSON.stringify(deliveries.body));
    assert.equal(deliveries.body.data[0].id, delivery.id, 'the delivery, as the delivery log names it');
    assert.ok(Date.parse(String(line.retryAt)) > w.clock.now());
    assert.ok(!JSON.stringify(logs.lines).includes(password), 'the URL’s password is in no line');
    assert.ok(!JSON.stringify(logs.lines).includes(token), 'the URL’s query string is in no line');
    assert.ok(!JSON.stringify(line).includes('    at '), 'no stack anywhere in the line');
  } finally {
    await w.close();
    await receiver.close();
  }
});

test('the request completed line of a refused request names its error code; one line, no stack', async () => {
  const logs = new LogCollector();
  const w = await startWharf({ logStream: logs.stream });
  try {
    const cases: [string, string, Record<string, string>, unknown, number, string | undefined][] = [
      ['GET', '/v1/assets', {}, undefined, 401, 'UNAUTHORIZED'],
      [
        'POST',
        '/v1/uploads',
        { 'x-api-key': w.key },
        { name: 'two\nlines.txt', size: 1 },
        400,
        'INVALID_NAME',
      ],
      ['GET', '/no/such/route', {}, undefined, 404, 'NOT_FOUND'],
      ['POST', '/v1/tus/', { 'x-api-key': w.key }, undefined, 412, 'PRECONDITION_FAILED'],
      ['GET', '/healthz', {}, undefined, 200, undefined],
    ];
    for (const [method, path, headers, body, status, code] of cases) {
      const id = `why-${Math.random().toString(36).slice(2)}`;
      const res = await fetch(w.url + path, {
        method,
        headers: {
          ...headers,
          'x-request-id': id,
          ...(body !== undefined && { 'content-type': 'application/json' }),
        },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      });
      const answered = await res.text();
      assert.equal(res.status, status, `${method} ${path}: ${answered}`);
      if (code) assert.equal(JSON.parse(answered).error.code, code);
      const done = await logs.waitFor((l) => l.reqId === id && l.msg === 'request completed', `of ${path}`);
      assert.equal(done.level, INFO);
      assert.equal(done.error_code, code, `${method} ${path}`);
      const mine = logs.lines.filter((l) => l.reqId === id);
      assert.deepEqual(
        mine.map((l) => l.msg),
        ['incoming request', 'request completed'],
        `${method} ${path}: one line about its end`,
      );
      assert.ok(!JSON.stringify(mine).includes('    at '), 'no stack');
    }
  } finally {
    await w.close();
  }
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

test('x-request-id on the metrics listener and on requests the HTTP parser refuses, with the same reqId in their log lines', async () => {
  const logs = new LogCollector();
  const w = await startWharf({
    logStream: logs.stream,
    env: { WHARF_METRICS_PORT: String(await freePort()) },
  });
  try {
    const metricsUrl = w.wharf.metricsUrl!;
    const scraped = await fetch(`${metricsUrl}/metrics`);
    assert.equal(scraped.status, 200);
    assert.match(scraped.headers.get('x-request-id') ?? '', UUID);
    const elsewhere = await fetch(`${metricsUrl}/healthz`, {
      headers: { 'x-request-id': 'lb-7f3a.trace:42' },
    });
    assert.equal(elsewhere.status, 404);
    assert.equal(elsewhere.headers.get('x-request-id'), 'lb-7f3a.trace:42', 'an incoming one is kept');
    // A scrape that fails is logged with the id its answer carries.
    const metrics = w.wharf.metrics as unknown as { scrape: () => Promise<unknown> };
    metrics.scrape = async () => {
      throw new Error('collection broke');
    };
    const failed = await fetch(`${metricsUrl}/metrics`);
    assert.equal(failed.status, 500);
    const failedId = failed.headers.get('x-request-id') ?? '';
    assert.match(failedId, UUID);
    const scrapeLine = await logs.waitFor((l) => l.msg === 'metrics scrape failed', 'of the failed scrape');
    assert.equal(scrapeLine.reqId, failedId);

    // A header line without a colon: refused by Node's parser before Fastify sees a request.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect({ port: Number(new URL(w.url).port), host: '127.0.0.1' });
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('error', reject);
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n');
    });
    assert.match(answer, /^HTTP\/1\.1 400 /);
    const refusedId = /\r\nx-request-id: ([^\r]*)\r\n/i.exec(answer)?.[1] ?? '';
    assert.match(refusedId, UUID, answer);
    const line = await logs.waitFor(
      (l) => l.msg === 'refused a request the HTTP parser could not read',
      'of the refusal',
    );
    assert.equal(line.reqId, refusedId);
    assert.equal(line.code, 'MALFORMED_REQUEST');
  } finally {
    await w.close();
  }
});

test('a request the HTTP parser refuses on the metrics port: 400 with x-request-id, the same reqId in its log line', async () => {
  const logs = new LogCollector();
  const w = await startWharf({
    logStream: logs.stream,
    env: { WHARF_METRICS_PORT: String(await freePort()) },
  });
  try {
    // A header line without a colon, as on the main port above: Node's bare 400 had no id.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect({ port: Number(new URL(w.wharf.metricsUrl!).port), host: '127.0.0.1' });
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('error', reject);
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
      socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n');
    });
    assert.match(answer, /^HTTP\/1\.1 400 /);
    const refusedId = /\r\nx-request-id: ([^\r]*)\r\n/i.exec(answer)?.[1] ?? '';
    assert.match(refusedId, UUID, answer);
    assert.match(answer, /"code":"MALFORMED_REQUEST"/);
    const line = await logs.waitFor(
      (l) => l.msg === 'refused a request the HTTP parser could not read',
      'of the refusal',
    );
    assert.equal(line.reqId, refusedId);
  } finally {
    await w.close();
  }
});
