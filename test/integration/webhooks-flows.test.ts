import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Upload } from 'tus-js-client';
import { createAsset, dbQuery, eventually, presignedUpload } from '../helpers/assets.js';
import { api, md5Hex, sha256Hex } from '../helpers/http.js';
import { Receiver } from '../helpers/receiver.js';
import { rufh } from '../helpers/rufh-client.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * Every upload flow ends in verified webhook deliveries of the right types carrying the right
 * data: the receiver checks each request with the `standardwebhooks` library, and what it
 * accepted is compared with the account's events (`GET /v1/events`).
 */

// biome-ignore lint/suspicious/noExplicitAny: JSON bodies are walked dynamically
type Json = any;

let w: TestWharf;
const receivers: Receiver[] = [];
before(async () => {
  w = await startWharf({ env: { WHARF_WEBHOOK_ALLOW_PRIVATE: 'true' } });
});
after(async () => {
  for (const r of receivers) await r.close();
  await w?.close();
});

/** A fresh account with an endpoint for every event type, and its receiver. */
async function subscribed(): Promise<{ key: string; r: Receiver }> {
  const { key } = await w.newAccount();
  const r = await Receiver.start();
  receivers.push(r);
  const res = await api(w.url, key, 'POST', '/v1/webhooks', { url: r.url });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  r.secrets.push(res.body.secret);
  return { key, r };
}

/**
 * Delivers what is due, then checks the receiver got every event of the account exactly once,
 * under the event's id, with its type, timestamp and data; returns what it got.
 */
async function delivered(key: string, r: Receiver): Promise<Json[]> {
  await w.wharf.core.jobs.drain();
  const res = await api(w.url, key, 'GET', '/v1/events?limit=1000');
  const events: Json[] = res.body.data;
  assert.deepEqual(r.invalid, []);
  assert.deepEqual(
    r.accepted.map((d) => d.id),
    events.map((e) => e.id),
    'every event once, in order, under its own id',
  );
  for (const [i, e] of events.entries()) {
    assert.deepEqual(r.accepted[i]!.payload, { type: e.type, timestamp: e.timestamp, data: e.data });
  }
  return r.accepted.map((d) => d.payload);
}

/** The completion of one upload: upload.completed of `kind` naming an asset with these bytes. */
function assertCompleted(payloads: Json[], kind: string, bytes: Buffer, name: string) {
  const types = payloads.map((p) => p.type);
  for (const t of ['upload.created', 'asset.created', 'upload.completed']) assert.ok(types.includes(t), t);
  const completed = payloads.find((p) => p.type === 'upload.completed');
  assert.equal(completed.data.upload.kind, kind);
  assert.equal(completed.data.upload.status, 'completed');
  assert.equal(completed.data.upload.name, name);
  assert.equal(completed.data.asset.sha256, sha256Hex(bytes));
  assert.equal(completed.data.asset.size, bytes.length);
  assert.equal(completed.data.upload.asset_id, completed.data.asset.id);
  assert.equal(completed.data.deduplicated, false);
  const created = payloads.find((p) => p.type === 'asset.created');
  assert.equal(created.data.asset.id, completed.data.asset.id);
  assert.equal(created.data.asset.content_url, `${w.url}/v1/assets/${created.data.asset.id}/content`);
}

describe('webhooks of every upload flow', () => {
  test('direct upload (POST /v1/assets)', async () => {
    const { key, r } = await subscribed();
    const bytes = randomBytes(2000);
    await createAsset(w, key, 'direct.bin', bytes);
    const payloads = await delivered(key, r);
    assert.deepEqual(
      payloads.map((p) => p.type),
      ['upload.created', 'asset.created', 'upload.completed', 'asset.processed'],
    );
    assertCompleted(payloads, 'direct', bytes, 'direct.bin');
  });

  test('presigned PUT, then complete', async () => {
    const { key, r } = await subscribed();
    const bytes = randomBytes(3000);
    const done = await presignedUpload(w, key, 'presigned.bin', bytes);
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assertCompleted(await delivered(key, r), 'presigned', bytes, 'presigned.bin');
  });

  test('POST form to storage (the FileSpin seed API: storage URL, form, register)', async () => {
    const { key, r } = await subscribed();
    const bytes = randomBytes(1500);
    const started = await api(
      w.url,
      undefined,
      'GET',
      '/api/v1/assets/new/content_storage_url?filename=form.bin',
      undefined,
      {
        'X-FileSpin-Api-Key': key,
      },
    );
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const { storage, asset_id } = started.body;
    const form = new FormData();
    for (const [name, value] of Object.entries<string>(storage.fields)) form.append(name, value);
    form.append('file', new Blob([new Uint8Array(bytes)]), 'form.bin');
    const posted = await fetch(storage.url, { method: 'POST', body: form });
    assert.ok(posted.status >= 200 && posted.status < 300, `${posted.status} ${await posted.text()}`);
    const registered = await api(
      w.url,
      undefined,
      'POST',
      '/api/v1/assets/new/register_asset',
      {
        asset_id,
        size: bytes.length,
        checksum: md5Hex(bytes),
      },
      { 'X-FileSpin-Api-Key': key },
    );
    assert.equal(registered.status, 200, JSON.stringify(registered.body));
    assertCompleted(await delivered(key, r), 'post', bytes, 'form.bin');
  });

  test('multipart (POST /v1/multipart, signed parts, complete)', async () => {
    const { key, r } = await subscribed();
    const bytes = randomBytes(100 * 1024);
    const started = await api(w.url, key, 'POST', '/v1/multipart', {
      name: 'parts.bin',
      content_type: 'application/octet-stream',
      size: bytes.length,
    });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const signed = await api(w.url, key, 'POST', `/v1/multipart/${started.body.id}/parts`, {
      partNumbers: [1],
    });
    const part = signed.body.parts[0];
    const put = await fetch(part.url, { method: 'PUT', headers: part.headers, body: new Uint8Array(bytes) });
    assert.equal(put.status, 200, await put.text());
    const done = await api(w.url, key, 'POST', `/v1/multipart/${started.body.id}/complete`, {
      parts: [{ PartNumber: 1, ETag: put.headers.get('etag') }],
    });
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assertCompleted(await delivered(key, r), 'multipart', bytes, 'parts.bin');
  });

  test('tus with tus-js-client', async () => {
    const { key, r } = await subscribed();
    const bytes = randomBytes(70_000);
    await new Promise<void>((resolve, reject) => {
      new Upload(bytes, {
        endpoint: `${w.url}/v1/tus/`,
        headers: { Authorization: `Bearer ${key}` },
        metadata: { filename: 'resumable.bin' },
        retryDelays: [],
        onError: reject,
        onSuccess: () => resolve(),
      }).start();
    });
    assertCompleted(await delivered(key, r), 'tus', bytes, 'resumable.bin');
  });

  test('Resumable Uploads for HTTP: a first part, a drop, the rest', async () => {
    const { key, r } = await subscribed();
    const bytes = randomBytes(60_000);
    const rufh = { Authorization: `Bearer ${key}`, 'Upload-Draft-Interop-Version': '8' };
    const created = await fetch(`${w.url}/v1/resumable/?name=rufh.bin`, {
      method: 'POST',
      headers: { ...rufh, 'Upload-Complete': '?0', 'Upload-Length': String(bytes.length) },
      body: new Uint8Array(bytes.subarray(0, 20_000)),
    });
    assert.equal(created.status, 201, await created.text());
    const rest = await fetch(created.headers.get('location')!, {
      method: 'PATCH',
      headers: {
        ...rufh,
        'Upload-Complete': '?1',
        'Upload-Offset': '20000',
        'Content-Type': 'application/partial-upload',
      },
      body: new Uint8Array(bytes.subarray(20_000)),
    });
    assert.equal(rest.status, 201, await rest.text());
    assertCompleted(await delivered(key, r), 'rufh', bytes, 'rufh.bin');
  });

  test('Resumable Uploads for HTTP: the client vanishes right after its last byte; the webhook still comes', async () => {
    const { key, r } = await subscribed();
    const bytes = randomBytes(50_000);
    // The whole file in the creating request on a raw socket, closed once the last byte is
    // written and before the answer comes (after the 104, so the close loses no byte).
    await rufh(Number(new URL(w.url).port), {
      method: 'POST',
      target: '/v1/assets?name=gone.bin',
      headers: [
        ['Authorization', `Bearer ${key}`],
        ['Upload-Draft-Interop-Version', '8'],
        ['Upload-Complete', '?1'],
      ],
      body: bytes,
      bodyAfter104: true,
      stopAfter: bytes.length,
    });
    const status = () =>
      dbQuery<{ status: string }>(
        w,
        "select status from uploads where kind = 'rufh' and name = 'gone.bin'",
      )[0]?.status;
    await eventually(async () => {
      if (status() === 'completed') return true;
      await w.wharf.core.uploads.sweep();
      return status() === 'completed';
    }, 'the vanished upload completes');
    assertCompleted(await delivered(key, r), 'rufh', bytes, 'gone.bin');
  });

  test('Uppy 6’s flow: /v1/s3/sign presigns a PutObject, the bytes go to storage, Wharf notices', async () => {
    const { key, r } = await subscribed();
    const bytes = randomBytes(4000);
    const signed = await api(w.url, key, 'POST', '/v1/s3/sign', {
      method: 'PUT',
      key: '0f8fad5b-d9cb-469f-a165-70867728950e-uppy.bin',
      contentType: 'application/octet-stream',
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const put = await fetch(signed.body.url, {
      method: 'PUT',
      headers: signed.body.headers,
      body: new Uint8Array(bytes),
    });
    assert.equal(put.status, 200, await put.text());
    // The client never says it finished: Wharf's reconcile job looks a moment later.
    w.clock.advance(1000);
    assertCompleted(await delivered(key, r), 'presigned', bytes, 'uppy.bin');
  });

  test('tus: the client vanishes right after its last byte; the completion and its webhook still come', async () => {
    const { key, r } = await subscribed();
    const bytes = randomBytes(50_000);
    const created = await fetch(`${w.url}/v1/tus/`, {
      method: 'POST',
      headers: {
        'Tus-Resumable': '1.0.0',
        Authorization: `Bearer ${key}`,
        'Upload-Length': String(bytes.length),
        'Upload-Metadata': `filename ${Buffer.from('vanished.bin').toString('base64')}`,
      },
    });
    assert.equal(created.status, 201);
    const path = new URL(created.headers.get('location')!).pathname;
    const uploadId = path.split('/').pop()!.split('.')[0]!;
    // The whole body on a raw socket, closed before the answer is read.
    const { port } = new URL(w.url);
    await new Promise<void>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1', () => {
        socket.write(
          `PATCH ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nTus-Resumable: 1.0.0\r\n` +
            `Authorization: Bearer ${key}\r\nContent-Type: application/offset+octet-stream\r\n` +
            `Upload-Offset: 0\r\nContent-Length: ${bytes.length}\r\n\r\n`,
        );
        socket.write(bytes, () => {
          socket.destroy();
          resolve();
        });
      });
      socket.on('error', reject);
    });
    // Completed by the PATCH itself, or else by the sweep once every byte is stored.
    const status = () =>
      dbQuery<{ status: string }>(w, 'select status from uploads where id = ?', uploadId)[0]?.status;
    await eventually(async () => {
      if (status() === 'completed') return true;
      await w.wharf.core.uploads.sweep();
      return status() === 'completed';
    }, 'the vanished upload completes');
    assertCompleted(await delivered(key, r), 'tus', bytes, 'vanished.bin');
  });
});
