import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { api } from '../helpers/http.js';
import { startWharf } from '../helpers/wharf.js';

test('request logs never contain presigned or signed-URL signatures, nor API keys', async () => {
  const lines: string[] = [];
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
  const w = await startWharf({ logStream: stream });
  try {
    const bytes = Buffer.from('log me not');
    const intent = (await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'l.txt', size: bytes.length }))
      .body;
    const signature = new URL(intent.url).searchParams.get('X-Amz-Signature');
    assert.ok(signature);
    assert.equal(
      (await fetch(intent.url, { method: 'PUT', headers: intent.headers, body: bytes })).status,
      200,
    );
    const asset = (await api(w.url, w.key, 'POST', `/v1/uploads/${intent.id}/complete`)).body.asset;
    const signed = (await api(w.url, w.key, 'POST', `/v1/assets/${asset.id}/signed-url`, {})).body.url;
    const downloadSignature = new URL(signed).searchParams.get('signature');
    assert.ok(downloadSignature);
    assert.equal((await fetch(signed)).status, 200);

    const log = lines.join('\n');
    assert.match(log, /X-Amz-Signature=REDACTED/, 'the PUT was logged, with its signature redacted');
    assert.match(log, /signature=REDACTED/);
    assert.ok(!log.includes(signature), 'the presigned signature is absent');
    assert.ok(!log.includes(downloadSignature), 'the download signature is absent');
    assert.ok(!log.includes(w.key), 'the API key is absent');
  } finally {
    await w.close();
  }
});
