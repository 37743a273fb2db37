import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { CreateMultipartUploadCommand, S3Client } from '@aws-sdk/client-s3';
import { reportingStoreRefusals, s3ClientConfig } from '../../src/blobs/s3-client.js';
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

async function store(answer: (req: IncomingMessage, res: ServerResponse) => void) {
  const seen = { requests: 0 };
  const server = createServer((req, res) => {
    seen.requests += 1;
    answer(req, res);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const config = s3ClientConfig({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    bucket: 'b',
    accessKeyId: 'id',
    secretAccessKey: 'secret',
    forcePathStyle: true,
  });
  const client = reportingStoreRefusals(
    new S3Client({
      ...config,
      // The retries are Wharf's (config.retryStrategy); only the wait is shortened.
      requestHandler: { connectionTimeout: 1_000, requestTimeout: 300, throwOnRequestTimeout: true },
    }),
  );
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
