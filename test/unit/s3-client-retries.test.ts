import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { CreateMultipartUploadCommand, S3Client } from '@aws-sdk/client-s3';
import { reportingStoreRefusals, s3ClientConfig } from '../../src/blobs/s3-client.js';
import { S3BlobStore } from '../../src/blobs/s3-store.js';
import { isWharfError } from '../../src/core/errors.js';

/**
 * docs/reliability.md: a request to an S3 store that stopped answering is refused 503 after
 * 120 s, not after the SDK has waited that long three times over; a store that answers 503 (or
 * refuses a connection) is still asked again, as the SDK does. Real HTTP servers stand in for a
 * store that hangs and one that answers 503; the handler's request timeout is shortened here.
 */

const servers: Server[] = [];
after(() => {
  for (const s of servers) s.closeAllConnections();
  for (const s of servers) s.close();
});

/** `server` listening on loopback, and the S3 options of a store there, its wait shortened. */
async function listening(server: Server) {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    bucket: 'b',
    accessKeyId: 'id',
    secretAccessKey: 'secret',
    forcePathStyle: true,
    requestTimeoutMs: 300,
  };
}

async function store(answer: (req: IncomingMessage, res: ServerResponse) => void) {
  const seen = { requests: 0 };
  const options = await listening(
    createServer((req, res) => {
      seen.requests += 1;
      answer(req, res);
    }),
  );
  // Wharf's client settings (its retries among them), as the store makes them.
  const client = reportingStoreRefusals(new S3Client(s3ClientConfig(options)));
  return { seen, client };
}

test('a store that does not answer in time is asked once: SERVICE_UNAVAILABLE after one timeout', async () => {
  const { seen, client } = await store(() => {
    // Never answers.
  });
  const err = await client.send(new CreateMultipartUploadCommand({ Bucket: 'b', Key: 'k' })).catch((e) => e);
  assert.ok(isWharfError(err, 'SERVICE_UNAVAILABLE'), String(err));
  assert.equal(seen.requests, 1, 'not asked again after a request timed out');
});

test('a store that answers 503 is asked again, as the SDK does, then refused SERVICE_UNAVAILABLE', async () => {
  const { seen, client } = await store((_req, res) => {
    res.writeHead(503, { 'content-type': 'application/xml' });
    res.end('<Error><Code>ServiceUnavailable</Code><Message>busy</Message></Error>');
  });
  const err = await client.send(new CreateMultipartUploadCommand({ Bucket: 'b', Key: 'k' })).catch((e) => e);
  assert.ok(isWharfError(err, 'SERVICE_UNAVAILABLE'), String(err));
  assert.equal(seen.requests, 3, 'three attempts');
});

test('a write to a store that stopped answering is refused after one timeout: its cleanup does not wait on the store', async () => {
  // PutObject never answered; ListMultipartUploads (the cleanup's first request) held too. The
  // server runs on this event loop: a request the store sends after the refusal cannot reach it
  // before the test goes on, and one the refusal waited for has.
  const list = { received: 0 };
  const store = new S3BlobStore(
    await listening(
      createServer((req) => {
        if (req.method === 'GET' && req.url?.includes('uploads')) list.received += 1;
      }),
    ),
  );
  const sealed = () => assert.fail('a write that failed is never sealed');
  const err = await store.write('k', Readable.from([Buffer.from('bytes')]), sealed).catch((e) => e);
  assert.ok(isWharfError(err, 'SERVICE_UNAVAILABLE'), String(err));
  // Refused before the cleanup asked the store anything, not once its request too timed out.
  assert.equal(list.received, 0, 'the refusal waited for the cleanup’s request');
});
