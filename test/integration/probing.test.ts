import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { complete, declare, objectFiles, putPresigned, tmpFiles } from '../helpers/assets.js';
import { storesOnS3 } from '../helpers/deployment.js';
import { api } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

/**
 * Hostile input found by probing a running server: each answered 500 once. Every answer
 * here must be a 4xx in the error shape of the path's clients.
 */
let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

interface Answer {
  status: number;
  text: string;
  headers: Headers;
}

async function send(path: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(`${w.url}${path}`, init);
  return { status: res.status, text: await res.text(), headers: res.headers };
}

function json(answer: Answer): any {
  try {
    return JSON.parse(answer.text);
  } catch {
    assert.fail(`not JSON (${answer.status}): ${answer.text.slice(0, 200)}`);
  }
}

describe('an over-long path parameter', () => {
  // Past the router's 500-character limit on one parameter.
  const long = 'a'.repeat(600);

  function assertNoEcho(answer: Answer, label: string): void {
    assert.ok(!answer.text.includes(long.slice(0, 100)), `${label}: the path is not echoed: ${answer.text}`);
  }

  test('is 414 URI_TOO_LONG in the native shape', async () => {
    const key = { 'x-api-key': w.key };
    for (const path of [`/v1/assets/${long}`, `/v1/uploads/${long}`, `/v1/files/docs/${long}`]) {
      const answer = await send(path, { headers: key });
      assert.equal(answer.status, 414, `${path.slice(0, 20)}: ${answer.text}`);
      assert.equal(json(answer).error.code, 'URI_TOO_LONG');
      assert.equal(typeof json(answer).error.message, 'string');
      assertNoEcho(answer, path.slice(0, 20));
    }
  });

  test('is 400 Bad Request in the Inspect API’s shape (seed 001 lists no 414)', async () => {
    const answer = await send(`/api/inspect/v1/file/${long}`, { headers: { 'x-api-key': w.key } });
    assert.equal(answer.status, 400, answer.text);
    const body = json(answer);
    assert.equal(body.error, 'Bad Request');
    assert.match(body.errorDescription, /longer than 500 characters/);
    assertNoEcho(answer, 'inspect');
  });

  test('is 414 in the ActiveStorage API’s ErrorResponse, on both of its paths', async () => {
    for (const path of [
      `/api/v1/upload/blobs/${long}`,
      `/rails/active_storage/blobs/redirect/${long}/a.png`,
    ]) {
      const answer = await send(path, { headers: { 'x-api-key': w.key } });
      assert.equal(answer.status, 414, answer.text);
      assert.deepEqual(
        { ...json(answer), detail: typeof json(answer).detail },
        { detail: 'string', error: 'URI Too Long', error_code: 'URI_TOO_LONG' },
      );
      assertNoEcho(answer, path.slice(0, 20));
    }
  });

  test('is 414 in netiks’s and the file service’s shapes', async () => {
    const netiks = await send(`/api/v1/assets/${long}/`, { headers: { 'x-api-key': w.key } });
    assert.equal(netiks.status, 414, netiks.text);
    assert.equal(json(netiks).code, 'uri_too_long');
    assert.equal(typeof json(netiks).detail, 'string');
    assertNoEcho(netiks, 'netiks');

    const files = await send(`/api_gateway/file-service/rewards/${long}`, {
      headers: { authorization: `Bearer ${w.key}` },
    });
    assert.equal(files.status, 414, files.text);
    assert.deepEqual(
      { ...json(files), message: typeof json(files).message },
      { code: 414, status: 'false', message: 'string', error_code: 'URI_TOO_LONG' },
    );
    assertNoEcho(files, 'file service');
  });

  test('a tus upload URL of any length is 404 in the tus routes’ shape', async () => {
    for (const method of ['HEAD', 'PATCH', 'DELETE']) {
      const answer = await send(`/v1/tus/${long}`, {
        method,
        headers: {
          authorization: `Bearer ${w.key}`,
          'tus-resumable': '1.0.0',
          'upload-offset': '0',
          'content-type': 'application/offset+octet-stream',
        },
        ...(method === 'PATCH' && { body: 'abc' }),
      });
      assert.equal(answer.status, 404, `${method}: ${answer.text}`);
      assert.equal(answer.headers.get('tus-resumable'), '1.0.0');
      if (method !== 'HEAD') assert.equal(json(answer).error.code, 'NOT_FOUND');
    }
  });

  test('a malformed percent-encoding is refused in each path’s shape, without echoing the path', async () => {
    const headers = { 'x-api-key': w.key, authorization: `Bearer ${w.key}`, 'tus-resumable': '1.0.0' };
    const inspect = await send('/api/inspect/v1/file/%E0%A4%A', { headers });
    assert.equal(inspect.status, 400, inspect.text);
    assert.equal(json(inspect).error, 'Bad Request');

    const blobs = await send('/api/v1/upload/blobs/%E0%A4%A', { headers });
    assert.equal(blobs.status, 422, blobs.text);
    assert.deepEqual(json(blobs).detail[0].loc, ['path']);

    const netiks = await send('/api/v1/assets/%E0%A4%A/', { headers });
    assert.equal(netiks.status, 400, netiks.text);
    assert.equal(json(netiks).code, 'validation_failed');

    const tus = await send('/v1/tus/%E0%A4%A', { method: 'HEAD', headers });
    assert.equal(tus.status, 400);
    assert.equal(tus.headers.get('tus-resumable'), '1.0.0');

    for (const answer of [inspect, blobs, netiks]) assert.ok(!answer.text.includes('%E0'), answer.text);
  });

  test('the storage endpoint answers a long or broken key with an S3 error document', {
    skip: storesOnS3 && "Wharf's own storage endpoint; this server stores on S3 and has none",
  }, async () => {
    for (const path of [`/s3/wharf/${long}/${long}`, '/s3/wharf/default/%E0%A4%A']) {
      const answer = await send(path, { method: 'PUT', body: 'abc' });
      assert.ok(answer.status >= 400 && answer.status < 500, `${answer.status} ${answer.text}`);
      assert.match(answer.text, /^<\?xml[^>]*>\s*<Error><Code>\w+<\/Code>/);
    }
  });
});

describe('a path or method a seed API does not have', () => {
  test('is 404 in that API’s own error shape, as every other refusal of it', async () => {
    const headers = { 'x-api-key': w.key };
    const netiks = await send('/api/v1/assets/developer-upload-file/', { method: 'PUT', headers });
    assert.equal(netiks.status, 404, netiks.text);
    assert.deepEqual(Object.keys(json(netiks)).sort(), ['code', 'detail']);
    assert.equal(json(netiks).code, 'not_found');
    for (const path of ['/api/v1/upload/direct', '/rails/active_storage/x']) {
      const answer = await send(path, { headers });
      assert.equal(answer.status, 404, answer.text);
      assert.deepEqual(Object.keys(json(answer)).sort(), ['detail', 'error', 'error_code'], path);
      assert.equal(json(answer).error_code, 'NOT_FOUND', path);
    }
    const filespin = await send('/api/v1/assets/new/content_storage_url', {
      method: 'POST',
      headers: { 'x-filespin-api-key': w.key },
    });
    assert.equal(filespin.status, 404, filespin.text);
    assert.deepEqual(Object.keys(json(filespin)).sort(), ['error', 'message']);
    // The native API keeps its own.
    const native = await send('/v1/nothing', { headers });
    assert.equal(json(native).error.code, 'NOT_FOUND');
  });
});

describe('an unparseable Content-Type on the storage endpoint', () => {
  test('is 415 with an S3 error document, stores nothing, and the real PUT still works', {
    skip: storesOnS3 && "Wharf's own storage endpoint; this server stores on S3 and has none",
  }, async () => {
    const bytes = 'abc';
    const objects = await objectFiles(w);
    const intent = await declare(w, w.key, { name: 'typed.bin', size: bytes.length });
    const u = new URL(intent.url);
    const attempts: Array<[string, string, string]> = [
      ['PUT the presigned URL', 'PUT', intent.url],
      ['POST a form to the bucket', 'POST', `${u.origin}/s3/wharf`],
      ['create a multipart upload', 'POST', `${u.origin}${u.pathname}?uploads`],
      ['complete a multipart upload', 'POST', `${u.origin}${u.pathname}?uploadId=x`],
    ];
    for (const type of ['a b', ';;;', 'text/plain; charset', '/']) {
      for (const [label, method, url] of attempts) {
        const res = await fetch(url, {
          method,
          headers: { ...intent.headers, 'content-type': type },
          body: bytes,
        });
        const text = await res.text();
        assert.equal(res.status, 415, `${label}, ${JSON.stringify(type)}: ${text}`);
        assert.match(
          text,
          /^<\?xml[^>]*>\s*<Error><Code>InvalidArgument<\/Code><Message>The Content-Type header/,
        );
      }
    }
    assert.deepEqual(await objectFiles(w), objects);
    assert.deepEqual(await tmpFiles(w), []);
    assert.equal((await putPresigned(intent, bytes)).status, 200);
    assert.equal((await complete(w, w.key, intent.id)).status, 200);
  });
});

describe('an unparseable Content-Type elsewhere', () => {
  test('is a 4xx in each API’s own shape, never a 500', async () => {
    const routes: Array<[string, string]> = [
      ['POST', '/v1/uploads'],
      ['POST', '/v1/assets?name=a.bin'],
      ['PUT', '/v1/files/docs/a.txt'],
      ['POST', '/api/inspect/v1/file/upload/presigned'],
      ['POST', '/api/v1/upload/direct'],
      ['POST', '/api/v1/assets/developer-upload-file/'],
      ['POST', '/api/v1/assets/new/register_asset'],
      ['POST', '/api_gateway/file-service/rewards/a.png'],
      ['POST', '/v1/tus/'],
    ];
    for (const [method, path] of routes) {
      const answer = await send(path, {
        method,
        headers: {
          'x-api-key': w.key,
          authorization: `Bearer ${w.key}`,
          'tus-resumable': '1.0.0',
          'upload-length': '3',
          'content-type': 'a b',
        },
        body: 'abc',
      });
      assert.ok(
        answer.status >= 400 && answer.status < 500,
        `${method} ${path}: ${answer.status} ${answer.text}`,
      );
      json(answer);
    }
  });
});

describe('a deeply nested JSON body', () => {
  const depth = 100_000;
  const arrays = `${'['.repeat(depth)}${']'.repeat(depth)}`;
  const objects = `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

  test('is a 4xx on every JSON route, never a 500, and never echoed', async () => {
    const routes: Array<[string, string]> = [
      ['POST', '/v1/uploads'],
      ['POST', '/v1/multipart'],
      ['POST', '/v1/s3/sign'],
      ['POST', '/v1/keys'],
      ['POST', '/api/inspect/v1/file/upload/presigned'],
      ['POST', '/api/inspect/v1/file/upload/complete'],
      ['POST', '/api/v1/assets/developer-generate-presigned-url/'],
      ['POST', '/api/v1/assets/new/register_asset'],
      ['POST', '/api/v1/upload/direct'],
    ];
    for (const [method, path] of routes) {
      for (const [label, nested] of [
        ['arrays', arrays],
        ['objects', objects],
      ]) {
        for (const body of [nested, `{"name": ${nested}}`]) {
          const answer = await send(path, {
            method,
            headers: {
              'x-api-key': w.key,
              authorization: `Bearer ${w.key}`,
              'content-type': 'application/json',
            },
            body,
          });
          assert.ok(
            answer.status >= 400 && answer.status < 500,
            `${path} (${label}): ${answer.status} ${answer.text}`,
          );
          assert.ok(answer.text.length < 2000, `${path} (${label}): ${answer.text.length} characters`);
        }
      }
    }
  });
});

describe('a hostile CompleteMultipartUpload document', () => {
  test('very deep, or with elements named __proto__, constructor or prototype: MalformedXML, and the upload still completes', {
    skip: storesOnS3 && "Wharf's own storage endpoint; on S3 the bucket reads Complete's XML",
  }, async () => {
    const sign = async (body: Record<string, unknown>) => {
      const res = await api(w.url, w.key, 'POST', '/v1/s3/sign', body);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body as { url: string; method: string; key: string; headers: Record<string, string> };
    };
    const send = (signed: { url: string; method: string; headers: Record<string, string> }, body?: string) =>
      fetch(signed.url, { method: signed.method, headers: signed.headers, body });
    const created = await (await send(await sign({ method: 'POST', key: 'deep.bin' }))).text();
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created)?.[1];
    const key = /<Key>([^<]+)<\/Key>/.exec(created)?.[1];
    assert.ok(uploadId && key, created);
    const part = await send(await sign({ method: 'PUT', key, uploadId, partNumber: 1 }), 'the bytes');
    assert.equal(part.status, 200);
    const etag = part.headers.get('etag')!;
    const partXml = `<Part><PartNumber>1</PartNumber><ETag>${etag.replaceAll('"', '&quot;')}</ETag></Part>`;
    const wrap = (inner: string) => `<CompleteMultipartUpload>${inner}</CompleteMultipartUpload>`;
    const deep = 200_000;
    const bodies: Record<string, string> = {
      'nested 200,000 deep': wrap(`${'<a>'.repeat(deep)}${'</a>'.repeat(deep)}${partXml}`),
      'nested inside a part': wrap(
        `<Part><PartNumber>1</PartNumber><ETag>x</ETag>${'<b>'.repeat(deep)}${'</b>'.repeat(deep)}</Part>`,
      ),
      '__proto__ at the top': `<__proto__>${partXml}</__proto__>`,
      '__proto__ in the list': wrap(`<__proto__><Part>1</Part></__proto__>${partXml}`),
      '__proto__ in a part': wrap(
        `<Part><__proto__><PartNumber>2</PartNumber></__proto__><PartNumber>1</PartNumber><ETag>x</ETag></Part>`,
      ),
      'constructor in the list': wrap(`<constructor><prototype>1</prototype></constructor>${partXml}`),
      'constructor in a part': wrap(`<Part><constructor>1</constructor><PartNumber>1</PartNumber></Part>`),
      'prototype in the list': wrap(`<prototype>1</prototype>${partXml}`),
    };
    const complete = await sign({ method: 'POST', key, uploadId });
    for (const [label, body] of Object.entries(bodies)) {
      const res = await send(complete, body);
      const text = await res.text();
      assert.equal(res.status, 400, `${label}: ${text}`);
      assert.match(text, /<Code>MalformedXML<\/Code>/, label);
    }
    assert.equal(({} as Record<string, unknown>).PartNumber, undefined, 'no prototype was touched');
    const done = await send(complete, wrap(partXml));
    assert.equal(done.status, 200, await done.text());
  });
});
