import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { createAsset, declare, putPresigned, readJson } from '../helpers/assets.js';
import { api, type JsonResponse, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

let w: TestWharf;
// biome-ignore lint/suspicious/noExplicitAny: an OpenAPI document is walked dynamically
type Json = any;
let doc: Json;
before(async () => {
  w = await startWharf();
  const res = await fetch(`${w.url}/openapi.json`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  doc = await res.json();
});
after(async () => {
  await w?.close();
});

const ROUTES: Record<string, string[]> = {
  '/healthz': ['get'],
  '/readyz': ['get'],
  '/v1/assets': ['get', 'post'],
  '/v1/assets/{id}': ['delete', 'get', 'patch'],
  '/v1/assets/{id}/content': ['get', 'head'],
  '/v1/assets/{id}/signed-url': ['post'],
  '/v1/assets/{id}/files': ['get'],
  '/v1/account': ['get'],
  '/v1/uploads': ['get', 'post'],
  '/v1/uploads/{id}': ['delete', 'get'],
  '/v1/uploads/{id}/complete': ['post'],
  '/v1/keys': ['get', 'post'],
  '/v1/keys/{id}': ['delete'],
  '/v1/multipart': ['post'],
  '/v1/multipart/{id}': ['delete'],
  '/v1/multipart/{id}/parts': ['get', 'post'],
  '/v1/multipart/{id}/complete': ['post'],
  '/v1/s3/sign': ['post'],
  '/v1/upload-tokens': ['get', 'post'],
  '/v1/upload-tokens/{id}': ['delete', 'get'],
  '/v1/files/{namespace}/{name}': ['get', 'put'],
  '/v1/files/{namespace}/{name}/versions': ['get'],
  '/v1/events': ['get'],
  '/v1/webhooks': ['get', 'post'],
  '/v1/webhooks/{id}': ['delete', 'get', 'patch'],
  '/v1/webhooks/{id}/secret': ['get'],
  '/v1/webhooks/{id}/rotate-secret': ['post'],
  '/v1/webhooks/{id}/deliveries': ['get'],
  '/v1/webhooks/{id}/deliveries/{delivery_id}': ['get'],
  '/v1/webhooks/{id}/deliveries/{delivery_id}/replay': ['post'],
  '/v1/webhooks/{id}/replay': ['post'],
  '/v1/assets/{id}/image': ['get', 'head'],
  '/v1/assets/{id}/image-url': ['post'],
  '/v1/assets/{id}/derivatives': ['get'],
  '/v1/image-presets': ['get'],
  '/v1/image-presets/{name}': ['delete', 'get', 'put'],
  '/v1/account/settings': ['get', 'patch'],
  '/v1/tus/': ['options', 'post'],
  // tus clients configured without the slash are served the same endpoint.
  '/v1/tus': ['options', 'post'],
  // POST stands for HEAD, PATCH or DELETE with X-HTTP-Method-Override.
  '/v1/tus/{id}': ['delete', 'head', 'patch', 'post'],
  '/v1/resumable/': ['options', 'post'],
  '/v1/resumable/{id}': ['delete', 'get', 'head', 'options', 'patch'],
};

/** The embedded deployment's storage endpoint, where its presigned URLs point (S3 storage has none). */
const STORAGE_ROUTES: Record<string, string[]> = {
  '/s3/wharf': ['post'],
  '/s3/wharf/': ['post'],
  '/s3/wharf/{key}': ['delete', 'get', 'post', 'put'],
};
const STORAGE_PREFIX = '/s3/';

/** The names every client sees: each is a component, referenced wherever it is used. */
const COMPONENTS = [
  'Access',
  'Account',
  'AccountSettings',
  'AccountSettingsChanges',
  'Asset',
  'AssetUploadForm',
  'AssetFile',
  'AssetFileList',
  'AssetList',
  'AssetResult',
  'CreatedKey',
  'Delivery',
  'Derivative',
  'DerivativeList',
  'Error',
  'Event',
  'EventPage',
  'FileDeclaration',
  'FileVersion',
  'ImagePreset',
  'ImagePresetList',
  'Key',
  'ListedUpload',
  'Liveness',
  'MintedUploadToken',
  'MultipartUpload',
  'PendingUpload',
  'ResumableUpload',
  'SignedImageUrl',
  'SignedUrl',
  'Upload',
  'UploadItem',
  'UploadList',
  'UploadProblem',
  'UploadToken',
  'Webhook',
];

/** A schema with its `$ref` to a component replaced by that component (one level). */
function deref(schema: Json): Json {
  const ref: string | undefined = schema?.$ref;
  if (!ref) return schema;
  assert.ok(ref.startsWith('#/components/schemas/'), `a reference to a component: ${ref}`);
  const target = doc.components.schemas[ref.slice('#/components/schemas/'.length)];
  assert.ok(target, `${ref} exists`);
  return deref(target);
}

/**
 * The object a JSON body's schema describes: its component, or with a JSON null accepted too
 * (`anyOf` [component, null]) that component.
 */
function bodyObject(schema: Json): Json {
  const variants = schema.anyOf?.filter((variant: Json) => variant.type !== 'null');
  return deref(variants?.length === 1 ? variants[0] : schema);
}

/** tus's paths: the endpoint with and without its slash, and the uploads under it. */
const isTus = (path: string) => path === '/v1/tus' || path.startsWith('/v1/tus/');

/** Every operation of the document, with its path and method. */
function operations(): Array<[string, string, Json]> {
  return Object.entries<Record<string, Json>>(doc.paths).flatMap(([path, ops]) =>
    Object.entries<Json>(ops).map(([method, op]) => [path, method, op] as [string, string, Json]),
  );
}

/** Seed APIs are documented too, under their own paths; this test is about the native ones. */
const SEED_PREFIXES = ['/api/', '/api_gateway/', '/rails/'];

describe('the OpenAPI document', () => {
  test('is OpenAPI 3.1 describing this server', () => {
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(doc.info.title, 'Wharf');
    assert.equal(typeof doc.info.version, 'string');
    assert.deepEqual(
      doc.servers.map((s: { url: string }) => s.url),
      [w.url],
    );
  });

  test('lists exactly the native API routes, tus, and the storage endpoint where it is served (not the docs themselves)', () => {
    const documented = Object.fromEntries(
      Object.entries(doc.paths)
        .filter(([path]) => !SEED_PREFIXES.some((prefix) => path.startsWith(prefix)))
        .map(([path, ops]) => [path, Object.keys(ops as object).sort()]),
    );
    const storage = w.wharf.core.endpoint === undefined ? {} : STORAGE_ROUTES;
    assert.deepEqual(documented, { ...ROUTES, ...storage });
  });

  test('every operation, the seed APIs’ too, has a unique operationId, a summary, a tag and its path parameters', () => {
    const ids = new Map<string, string>();
    for (const [path, method, op] of operations()) {
      assert.match(op.operationId ?? '', /^[a-z][A-Za-z0-9]+$/, `${method} ${path} has an operationId`);
      assert.ok(
        !ids.has(op.operationId),
        `${op.operationId} names both ${ids.get(op.operationId)} and ${method} ${path}`,
      );
      ids.set(op.operationId, `${method} ${path}`);
      for (const [, name] of path.matchAll(/\{([^}]+)\}/g)) {
        const param = op.parameters?.find((p: Json) => p.in === 'path' && p.name === name);
        assert.ok(param?.required, `${method} ${path} documents {${name}}`);
      }
    }
    assert.ok(ids.size >= 60, `only ${ids.size} operations`);
    for (const [path, ops] of Object.entries<Record<string, Json>>(doc.paths)) {
      for (const [method, op] of Object.entries<Json>(ops)) {
        assert.ok(op.summary, `${method} ${path} has a summary`);
        assert.ok(op.tags?.length, `${method} ${path} has a tag`);
        if (path.includes('{id}')) {
          const param = op.parameters?.find(
            (p: { in: string; name: string }) => p.in === 'path' && p.name === 'id',
          );
          assert.ok(param?.required, `${method} ${path} documents {id}`);
        }
      }
    }
  });

  test('declares both ways to present a key, and that public routes need none', () => {
    assert.deepEqual(doc.components.securitySchemes.apiKey, {
      type: 'apiKey',
      in: 'header',
      name: 'x-api-key',
    });
    assert.deepEqual(doc.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer' });
    assert.deepEqual(doc.security, [{ apiKey: [] }, { bearer: [] }]);
    assert.deepEqual(doc.paths['/healthz'].get.security, [], '/healthz is public');
    assert.deepEqual(doc.paths['/readyz'].get.security, [], '/readyz is public');
    const content = doc.paths['/v1/assets/{id}/content'].get.security;
    assert.ok(
      content?.some((s: object) => Object.keys(s).length === 0),
      'content is readable without a key (signed URL)',
    );
    // The seed APIs' own credentials: the file service's Basic, FileSpin's key header.
    assert.deepEqual(doc.components.securitySchemes.basic, { type: 'http', scheme: 'basic' });
    assert.deepEqual(doc.components.securitySchemes.fileSpinApiKey, {
      type: 'apiKey',
      in: 'header',
      name: 'X-FileSpin-Api-Key',
    });
    for (const [path, ops] of Object.entries<Record<string, Json>>(doc.paths)) {
      for (const [method, op] of Object.entries<Json>(ops)) {
        if (path.startsWith('/api_gateway/file-service/')) {
          assert.ok(
            op.security?.some((s: object) => 'basic' in s),
            `${method} ${path}: Basic`,
          );
        }
        if (path.startsWith('/api/v1/assets/new/')) {
          assert.ok(
            op.security?.some((s: object) => 'fileSpinApiKey' in s),
            `${method} ${path}: X-FileSpin-Api-Key`,
          );
        }
      }
    }
  });

  test('downloads document their HEAD: the same answers without bodies', () => {
    for (const path of ['/v1/assets/{id}/content', '/v1/assets/{id}/image']) {
      const { get, head } = doc.paths[path];
      assert.ok(head, `HEAD ${path}`);
      assert.match(head.operationId, /^[a-z][A-Za-z]*Head$/, 'camelCase, as every operationId');
      assert.deepEqual(Object.keys(head.responses), Object.keys(get.responses));
      for (const response of Object.values<Json>(head.responses)) assert.equal(response.content, undefined);
    }
  });

  test('request bodies are documented as strict (no unknown fields)', () => {
    const uploads = doc.paths['/v1/uploads'].post.requestBody.content['application/json'].schema;
    assert.equal(uploads.anyOf.length, 2);
    for (const variant of uploads.anyOf) assert.equal(deref(variant).additionalProperties, false);
    const batch = uploads.anyOf.map(deref).find((v: Json) => v.properties.files);
    const file = deref(batch.properties.files.items);
    assert.equal(file.additionalProperties, false);
    assert.deepEqual(file.required.sort(), ['name', 'size']);
    assert.equal(file.properties.size.type, 'integer');
    const keys = deref(doc.paths['/v1/keys'].post.requestBody.content['application/json'].schema);
    assert.equal(keys.additionalProperties, false);
    const signedUrl = doc.paths['/v1/assets/{id}/signed-url'].post.requestBody;
    assert.equal(bodyObject(signedUrl.content['application/json'].schema).additionalProperties, false);
    assert.equal(signedUrl.required, false, 'no body means the defaults');
    assert.equal(doc.paths['/v1/webhooks/{id}/rotate-secret'].post.requestBody.required, false);
    assert.equal(doc.paths['/v1/keys'].post.requestBody.required, true);
  });

  test('the refusals no route names itself are listed: 415 for a JSON body of another type, 414 for an overlong id', () => {
    assert.ok(doc.paths['/v1/keys'].post.responses['415'], 'POST /v1/keys lists 415');
    assert.equal(doc.paths['/v1/keys'].get.responses['415'], undefined, 'a GET takes no body');
    assert.ok(doc.paths['/v1/assets/{id}'].get.responses['414'], 'GET /v1/assets/{id} lists 414');
    // Resumable HTTP's own: a finished upload is not cancelled; an append of another type or past the end.
    assert.ok(doc.paths['/v1/resumable/{id}'].delete.responses['409']);
    assert.ok(doc.paths['/v1/resumable/{id}'].patch.responses['413']);
    assert.ok(doc.paths['/v1/resumable/{id}'].patch.responses['415']);
    assert.equal(doc.paths['/v1/assets'].get.responses['414'], undefined, 'no path parameter');
  });

  test('refusals a hunt saw answered and not declared are declared: 422, 429, 409 and 500 where they occur', () => {
    const declared = (path: string, method: string) => Object.keys(doc.paths[path][method].responses);
    for (const [path, method] of [
      ['/v1/assets', 'post'],
      ['/v1/uploads/{id}/complete', 'post'],
      ['/v1/multipart/{id}/complete', 'post'],
      ['/v1/tus/', 'post'],
      ['/v1/tus/{id}', 'patch'],
      ['/v1/resumable/', 'post'],
      ['/v1/resumable/{id}', 'patch'],
      ['/v1/files/{namespace}/{name}', 'put'],
    ] as const) {
      assert.ok(declared(path, method).includes('422'), `${method} ${path}: LOCATION_NOT_REMOVABLE`);
    }
    assert.ok(
      declared('/v1/multipart/{id}/parts', 'post').includes('409'),
      'signing parts of a completed upload',
    );
    for (const method of ['get', 'head']) {
      assert.ok(declared('/v1/assets/{id}/image', method).includes('500'), `${method} image: BYTES_MISSING`);
    }
    assert.ok(declared('/v1/tus/', 'post').includes('429'), 'TOO_MANY_OPEN_UPLOADS');
    assert.ok(declared('/v1/resumable/', 'post').includes('429'), 'TOO_MANY_OPEN_UPLOADS');
    const content = declared('/v1/assets/{id}/content', 'get');
    assert.ok(content.includes('409') && content.includes('500'), 'ASSET_VERIFYING, BYTES_MISSING');
    const events = declared('/v1/events', 'get');
    assert.ok(events.includes('409') && events.includes('410'), 'CURSOR_AHEAD, CURSOR_EXPIRED');
  });

  test('refusals that come from how a route is registered are declared on every route they apply to', () => {
    const declared = (op: Json) => Object.keys(op.responses);
    for (const [path, method, op] of operations()) {
      if (path.startsWith(STORAGE_PREFIX)) continue; // S3's own XML refusals
      // An id longer than any is refused before routing: 414 in the path's API's shape, which
      // Inspect answers as its 400. (tus answers an over-long id its own way.)
      if (path.includes('{') && !isTus(path)) {
        const status = path.startsWith('/api/inspect/') ? '400' : '414';
        assert.ok(declared(op).includes(status), `${method} ${path} declares ${status}`);
      }
      // A native route that reads JSON: 413 over its limit, 415 for another type.
      const media = Object.keys(op.requestBody?.content ?? { 'application/json': {} });
      const native = path.startsWith('/v1/') && !isTus(path) && !path.startsWith('/v1/resumable/');
      // A DELETE parses a body too when one is sent (h92 saw both answered undeclared).
      if (
        native &&
        ['post', 'put', 'patch', 'delete'].includes(method) &&
        media.includes('application/json')
      ) {
        assert.ok(declared(op).includes('413'), `${method} ${path} declares 413`);
        assert.ok(declared(op).includes('415'), `${method} ${path} declares 415`);
      }
    }
    // A file body sent in a Content-Encoding, and what one operation's own state gives.
    assert.ok(doc.paths['/v1/assets'].post.responses['415'], 'POST /v1/assets: Content-Encoding');
    assert.ok(doc.paths['/v1/tus/'].post.responses['415'], 'tus creation: Content-Encoding');
    assert.ok(doc.paths['/v1/resumable/'].post.responses['415'], 'RUFH creation: Content-Encoding');
    assert.ok(
      doc.paths['/v1/files/{namespace}/{name}'].put.responses['415'],
      'PUT /v1/files: Content-Encoding',
    );
    assert.ok(
      doc.paths['/v1/assets'].post.responses['411'],
      'POST /v1/assets: a resumable upload with no length',
    );
    assert.ok(doc.paths['/v1/multipart/{id}/parts'].get.responses['409'], 'the parts of a completed upload');
    // Every seed route that opens an upload: TOO_MANY_OPEN_UPLOADS, in that API's shape.
    for (const [path, method] of [
      ['/api/v1/assets/developer-upload-file/', 'post'],
      ['/api/v1/assets/developer-upload-file', 'post'],
      ['/api/v1/assets/developer-generate-presigned-url/', 'post'],
      ['/api/v1/assets/developer-generate-presigned-url', 'post'],
      ['/api/inspect/v1/file/upload/presigned', 'post'],
      ['/api/v1/upload/direct', 'post'],
      ['/api_gateway/file-service/{namespace}/{name}', 'post'],
      ['/api/v1/assets/new/content_storage_url', 'get'],
    ] as const) {
      assert.ok(declared(doc.paths[path][method]).includes('429'), `${method} ${path} declares 429`);
    }
  });

  test('every native operation declares 503 (a dependency away), and every one that writes 507 (storage full)', () => {
    const declared = (op: Json) => Object.keys(op.responses);
    // Reads that write: a rendering is stored on first request; HEAD and GET of a resumable
    // upload complete one whose every byte arrived.
    const readsThatWrite = new Set([
      'getAssetImage',
      'getAssetImageHead',
      'tusGetOffset',
      'rufhGetOffset',
      'rufhGetOffsetWithGet',
    ]);
    for (const [path, method, op] of operations()) {
      if (!path.startsWith('/v1/')) continue;
      assert.ok(declared(op).includes('503'), `${method} ${path} declares 503`);
      const writes = !['get', 'head', 'options'].includes(method) || readsThatWrite.has(op.operationId);
      assert.equal(
        declared(op).includes('507'),
        writes,
        `${method} ${path} ${writes ? 'declares' : 'does not declare'} 507`,
      );
      if (method === 'head') {
        for (const status of ['503', '507'])
          assert.equal(op.responses[status]?.content, undefined, `HEAD ${path}`);
      }
    }
    for (const path of ['/healthz', '/readyz']) {
      assert.equal(declared(doc.paths[path].get).includes('507'), false, path);
    }
    const unavailable = doc.paths['/v1/keys'].post.responses['503'];
    assert.match(unavailable.description, /SERVICE_UNAVAILABLE/);
    assert.deepEqual(unavailable.content['application/json'].schema.$ref, '#/components/schemas/Error');
    assert.match(doc.paths['/v1/keys'].post.responses['507'].description, /STORAGE_FULL/);
    assert.match(
      doc.paths['/v1/tus/{id}'].patch.responses['503'].description,
      /TOO_MANY_UPLOAD_STREAMS.*SERVICE_UNAVAILABLE/,
    );
  });

  test('every operation that reads or writes stored bytes declares 500 STORAGE_DENIED (docs/reliability.md)', () => {
    const storing = new Set([
      'uploadAsset',
      'putFile',
      'deleteAsset',
      'completeUpload',
      'cancelUpload',
      'createMultipartUpload',
      'listMultipartParts',
      'completeMultipartUpload',
      'abortMultipartUpload',
      'downloadAsset',
      'downloadAssetHead',
      'getAssetImage',
      'getAssetImageHead',
      'tusCreateUpload',
      'tusCreateUploadWithoutSlash',
      'tusGetOffset',
      'tusAppend',
      'tusMethodOverride',
      'tusTerminate',
      'rufhCreateUpload',
      'rufhGetOffset',
      'rufhGetOffsetWithGet',
      'rufhAppend',
      'rufhCancel',
    ]);
    const found = new Set<string>();
    for (const [path, method, op] of operations()) {
      if (!storing.has(op.operationId)) continue;
      found.add(op.operationId);
      const denied = op.responses['500'];
      assert.ok(denied, `${method} ${path} declares 500`);
      assert.match(denied.description, /STORAGE_DENIED/, `${method} ${path}`);
      if (method !== 'head') {
        assert.equal(deref(denied.content['application/json'].schema).properties.error.required.length, 2);
      }
    }
    assert.deepEqual([...found].sort(), [...storing].sort());
    assert.match(doc.paths['/v1/assets/{id}/content'].get.responses['500'].description, /BYTES_MISSING/);
    // The storage endpoint answers it as S3's InternalError (docs/reference.md).
    if (w.wharf.core.endpoint !== undefined) {
      for (const [method, op] of Object.entries<Json>(doc.paths['/s3/wharf/{key}'])) {
        assert.match(op.responses['500']?.description ?? '', /InternalError.*STORAGE_DENIED/, method);
        assert.ok(op.responses['500'].content['application/xml'], method);
      }
    }
  });

  test('the response headers the docs promise are declared', () => {
    const headers = (path: string, method: string, status: string) =>
      Object.keys(doc.paths[path][method].responses[status]?.headers ?? {});
    const has = (path: string, method: string, status: string, names: string[]) => {
      for (const name of names) {
        assert.ok(headers(path, method, status).includes(name), `${method} ${path} ${status}: ${name}`);
      }
    };
    for (const path of ['/v1/assets/{id}/content', '/v1/assets/{id}/image']) {
      for (const method of ['get', 'head']) {
        has(path, method, '200', ['ETag', 'Last-Modified', 'Accept-Ranges']);
        has(path, method, '206', ['ETag', 'Last-Modified', 'Accept-Ranges', 'Content-Range']);
        has(path, method, '304', ['ETag', 'Last-Modified']);
        has(path, method, '416', ['Content-Range']);
      }
    }
    for (const [path, created] of [
      ['/v1/uploads', '201'],
      ['/v1/multipart', '201'],
      ['/v1/assets', '201'],
      ['/v1/webhooks', '201'],
    ] as const) {
      has(path, 'post', created, ['Idempotent-Replayed']);
      has(path, 'post', '409', ['Retry-After']);
    }
    has('/v1/files/{namespace}/{name}', 'put', '201', ['Idempotent-Replayed']);
    has('/v1/files/{namespace}/{name}', 'put', '409', ['Retry-After']);
    has('/v1/assets', 'post', '201', ['Location', 'Upload-Offset']);
    // The tus creation takes the key too (its handler claims it: see src/http/tus/idempotency.ts).
    for (const path of ['/v1/tus/', '/v1/tus']) {
      has(path, 'post', '201', ['Idempotent-Replayed']);
      has(path, 'post', '409', ['Retry-After']);
      const names = doc.paths[path].post.parameters.map((p: Json) => p.name);
      assert.ok(names.includes('Idempotency-Key'), `POST ${path}: Idempotency-Key`);
    }
    for (const [path, method, op] of operations()) {
      if (!path.startsWith('/v1/')) continue;
      const protocol = isTus(path) || path.startsWith('/v1/resumable/');
      // Every 503 says when to retry, the protocols' too; their 429s are the native ones' only.
      for (const status of protocol ? ['503'] : ['429', '503']) {
        if (op.responses[status]) has(path, method, status, ['Retry-After']);
      }
    }
  });

  test('docs/reference.md gives CHECKSUM_MISMATCH every status the document does (tus’s 460 too)', async () => {
    const reference = await readFile(join(REPO, 'docs', 'reference.md'), 'utf8');
    const row = reference.split('\n').find((line) => line.startsWith('| `CHECKSUM_MISMATCH` |'));
    const [, , status = '', meaning = ''] = row?.split('|') ?? [];
    for (const [path, method] of [
      ['/v1/tus/{id}', 'patch'],
      ['/v1/tus/', 'post'],
    ] as const) {
      assert.ok(doc.paths[path][method].responses['460'], `${method} ${path} declares 460`);
    }
    assert.match(status, /\b400\b/);
    assert.match(meaning, /\b460\b/, 'the table gives the 460 a tus PATCH answers');
  });

  test('closed sets are enums and times are date-times, as the docs give them', () => {
    // @fastify/swagger writes each literal's `const` as a one-value `enum`.
    const values = (schema: Json) =>
      schema.anyOf.flatMap((variant: Json) => variant.enum ?? [variant.const]).sort();
    const upload = doc.components.schemas.Upload.properties;
    assert.deepEqual(values(upload.status), ['completed', 'expired', 'pending']);
    assert.deepEqual(values(upload.kind), ['direct', 'multipart', 'post', 'presigned', 'rufh', 'tus']);
    const key = doc.components.schemas.Key.properties;
    assert.equal(key.created_at.format, 'date-time');
    for (const field of ['last_used_at', 'revoked_at']) {
      assert.equal(
        key[field].anyOf.find((variant: Json) => variant.type === 'string').format,
        'date-time',
        field,
      );
    }
  });

  test('what has a default may be left out: not required in bodies or query parameters', () => {
    const signed = bodyObject(
      doc.paths['/v1/assets/{id}/signed-url'].post.requestBody.content['application/json'].schema,
    );
    assert.equal(signed.properties.expires_in.default, 3600);
    assert.deepEqual(signed.required ?? [], []);
    for (const path of ['/v1/assets', '/v1/events', '/v1/uploads', '/v1/upload-tokens', '/v1/keys']) {
      const limit = doc.paths[path].get.parameters.find((p: Json) => p.name === 'limit');
      assert.ok(limit, `${path} documents limit`);
      assert.notEqual(limit.required, true, `${path}: limit has a default`);
    }
  });

  test('both signing routes document expires_at, a date-time, beside expires_in', () => {
    for (const path of ['/v1/assets/{id}/signed-url', '/v1/assets/{id}/image-url']) {
      const body = bodyObject(doc.paths[path].post.requestBody.content['application/json'].schema);
      assert.equal(body.properties.expires_at?.format, 'date-time', path);
      assert.ok(body.properties.expires_in, path);
      assert.ok(!(body.required ?? []).includes('expires_at'), path);
    }
  });

  test('named schemas are components, referenced with $ref rather than inlined', () => {
    for (const name of COMPONENTS) assert.ok(doc.components.schemas[name], `component ${name}`);
    const schemaOf = (path: string, method: string, status: string) =>
      doc.paths[path][method].responses[status].content['application/json'].schema;
    assert.deepEqual(schemaOf('/v1/assets/{id}', 'get', '200'), { $ref: '#/components/schemas/Asset' });
    assert.deepEqual(schemaOf('/v1/assets/{id}', 'get', '404'), { $ref: '#/components/schemas/Error' });
    assert.deepEqual(schemaOf('/v1/uploads/{id}', 'get', '200'), { $ref: '#/components/schemas/Upload' });
    assert.deepEqual(schemaOf('/v1/events', 'get', '200'), { $ref: '#/components/schemas/EventPage' });
    const bodyOf = (path: string, method: string) =>
      doc.paths[path][method].requestBody.content['application/json'].schema;
    // No body, or a JSON null, is the defaults (as for rotate-secret): said beside the component.
    for (const [path, name] of [
      ['/v1/assets/{id}/image-url', 'ImageUrlRequest'],
      ['/v1/assets/{id}/signed-url', 'SignedUrlRequest'],
      ['/v1/webhooks/{id}/rotate-secret', 'RotateSecretRequest'],
    ] as const) {
      assert.deepEqual(
        bodyOf(path, 'post'),
        { anyOf: [{ $ref: `#/components/schemas/${name}` }, { type: 'null' }] },
        path,
      );
    }
    assert.deepEqual(bodyOf('/v1/image-presets/{name}', 'put'), {
      $ref: '#/components/schemas/ImagePresetRequest',
    });
    assert.deepEqual(doc.components.schemas.EventPage.properties.data.items, {
      $ref: '#/components/schemas/Event',
    });
    assert.deepEqual(doc.components.schemas.AssetList.properties.data.items, {
      $ref: '#/components/schemas/Asset',
    });
    assert.deepEqual(schemaOf('/v1/webhooks/{id}', 'get', '200'), { $ref: '#/components/schemas/Webhook' });
    assert.deepEqual(schemaOf('/v1/upload-tokens/{id}', 'get', '200'), {
      $ref: '#/components/schemas/UploadToken',
    });
    assert.deepEqual(doc.components.schemas.KeyList.properties.data.items, {
      $ref: '#/components/schemas/Key',
    });
    // Each answer a generated client types is a named type, not an anonymous one.
    for (const [path, method, name] of [
      ['/v1/uploads', 'get', 'UploadList'],
      ['/v1/account', 'get', 'Account'],
      ['/v1/image-presets', 'get', 'ImagePresetList'],
      ['/v1/image-presets/{name}', 'get', 'ImagePreset'],
      ['/v1/image-presets/{name}', 'put', 'ImagePreset'],
      ['/v1/account/settings', 'get', 'AccountSettings'],
      ['/v1/account/settings', 'patch', 'AccountSettings'],
      ['/v1/assets/{id}/derivatives', 'get', 'DerivativeList'],
      ['/v1/assets/{id}/image-url', 'post', 'SignedImageUrl'],
      ['/v1/assets/{id}/files', 'get', 'AssetFileList'],
      ['/healthz', 'get', 'Liveness'],
      ['/readyz', 'get', 'Readiness'],
    ] as const) {
      assert.deepEqual(
        schemaOf(path, method, '200'),
        { $ref: `#/components/schemas/${name}` },
        `${method} ${path}`,
      );
    }
    assert.deepEqual(doc.paths['/v1/assets'].post.requestBody.content['multipart/form-data'].schema, {
      $ref: '#/components/schemas/AssetUploadForm',
    });
    // And so every body and every successful answer of the native API (health included) that
    // is not a file's bytes: a component, or a choice of components (and null).
    const isNamed = (schema: Json) =>
      typeof schema.$ref === 'string' ||
      (schema.type === 'string' && schema.format === 'binary') ||
      (Array.isArray(schema.anyOf) &&
        schema.anyOf.every((variant: Json) => typeof variant.$ref === 'string' || variant.type === 'null'));
    const anonymous: string[] = [];
    for (const [path, method, op] of operations()) {
      if (!path.startsWith('/v1/') && !['/healthz', '/readyz'].includes(path)) continue;
      for (const [type, media] of Object.entries<Json>(op.requestBody?.content ?? {})) {
        if (!isNamed(media.schema)) anonymous.push(`${method} ${path} body ${type}`);
      }
      for (const [status, response] of Object.entries<Json>(op.responses)) {
        if (!status.startsWith('2')) continue;
        for (const [type, media] of Object.entries<Json>(response.content ?? {})) {
          if (!isNamed(media.schema)) anonymous.push(`${method} ${path} ${status} ${type}`);
        }
      }
    }
    assert.deepEqual(anonymous, []);
    assert.deepEqual(doc.components.schemas.UploadList.properties.data.items, {
      $ref: '#/components/schemas/ListedUpload',
    });
    assert.deepEqual(doc.components.schemas.ImagePresetList.properties.data.items, {
      $ref: '#/components/schemas/ImagePreset',
    });
    assert.deepEqual(doc.components.schemas.DerivativeList.properties.data.items, {
      $ref: '#/components/schemas/Derivative',
    });
    assert.deepEqual(doc.components.schemas.AssetFileList.properties.data.items, {
      $ref: '#/components/schemas/AssetFile',
    });
    // Nowhere in the native API's operations is an asset or an error spelled out again.
    const inlined: string[] = [];
    const walk = (node: Json, where: string) => {
      if (typeof node !== 'object' || node === null) return;
      const props = node.properties;
      if (props?.sha256 && props?.content_url && props?.processing) inlined.push(`${where}: an Asset`);
      if (props?.error?.properties?.code) inlined.push(`${where}: an Error`);
      for (const [key, value] of Object.entries(node)) walk(value, `${where}/${key}`);
    };
    for (const [path, ops] of Object.entries<Json>(doc.paths)) {
      if (!SEED_PREFIXES.some((prefix) => path.startsWith(prefix))) walk(ops, path);
    }
    assert.deepEqual(inlined, []);
  });

  test('upload bodies: a form with a binary file part, or the raw bytes', () => {
    const upload = doc.paths['/v1/assets'].post.requestBody.content;
    const form = deref(upload['multipart/form-data'].schema);
    assert.deepEqual(form.properties.file, {
      type: 'string',
      format: 'binary',
      description: 'The file (one file part).',
    });
    assert.deepEqual(form.required, ['file']);
    assert.equal(upload['application/octet-stream'].schema.format, 'binary');
    const file = doc.paths['/v1/files/{namespace}/{name}'].put.requestBody.content;
    assert.equal(file['application/octet-stream'].schema.format, 'binary');
    const download = doc.paths['/v1/assets/{id}/content'].get.responses['200'].content['*/*'].schema;
    assert.equal(download.format, 'binary');
  });

  test('tus and the storage endpoint are described: headers, bodies, status codes', () => {
    const create = doc.paths['/v1/tus/'].post;
    const headers = (op: Json) =>
      op.parameters.filter((p: Json) => p.in === 'header').map((p: Json) => p.name);
    assert.deepEqual(headers(create).sort(), [
      'Idempotency-Key',
      'Tus-Resumable',
      'Upload-Checksum',
      'Upload-Length',
      'Upload-Metadata',
      'X-HTTP-Method-Override',
    ]);
    assert.ok(create.responses['201'].headers.Location);
    // tus's X-HTTP-Method-Override: a POST on an upload stands for its HEAD, PATCH or DELETE,
    // and has every answer of theirs; on the endpoint, for discovery.
    const override = doc.paths['/v1/tus/{id}'].post;
    const overrideHeader = override.parameters.find((p: Json) => p.name === 'X-HTTP-Method-Override');
    assert.equal(overrideHeader.required, true);
    assert.deepEqual(overrideHeader.schema.enum, ['PATCH', 'HEAD', 'DELETE']);
    assert.ok(override.requestBody.content['application/offset+octet-stream']);
    assert.equal(override.requestBody.required, false, 'as HEAD or DELETE: no body');
    for (const op of ['head', 'patch', 'delete'].map((m) => doc.paths['/v1/tus/{id}'][m])) {
      for (const status of Object.keys(op.responses)) {
        assert.ok(override.responses[status], `the override answers ${op.operationId}'s ${status}`);
      }
    }
    assert.ok(override.responses['405'], 'a method tus does not have');
    assert.ok(override.responses['200'].headers['Upload-Offset'], 'as HEAD');
    assert.ok(override.responses['204'].headers['Wharf-Asset-Id'], 'as PATCH');
    assert.ok(create.responses['204'], 'discovery by POST');
    // The endpoint without its slash: the same operations.
    for (const method of ['options', 'post']) {
      const [slash, bare] = [doc.paths['/v1/tus/'][method], doc.paths['/v1/tus'][method]];
      assert.equal(bare.operationId, `${slash.operationId}WithoutSlash`);
      assert.deepEqual(bare.responses, slash.responses);
      assert.deepEqual(bare.parameters, slash.parameters);
    }
    assert.ok(create.responses['460'], 'the checksum extension’s status');
    const patch = doc.paths['/v1/tus/{id}'].patch;
    assert.ok(headers(patch).includes('Upload-Offset'));
    assert.ok(patch.requestBody.content['application/offset+octet-stream']);
    assert.ok(patch.responses['204'].headers['Wharf-Asset-Id']);
    assert.ok(doc.paths['/v1/tus/{id}'].head.responses['200'].headers['Upload-Offset']);
    if (w.wharf.core.endpoint !== undefined) {
      const put = doc.paths['/s3/wharf/{key}'].put;
      assert.deepEqual(put.security, [], 'presigned: no API key');
      assert.ok(put.parameters.some((p: Json) => p.in === 'query' && p.name === 'X-Amz-Signature'));
      assert.ok(put.responses['200'].headers.ETag);
      assert.ok(put.responses['403'].content['application/xml']);
      // What it answers beside: a dependency away or busy (503, every operation), a full disk
      // and a Content-Type that is no media type where a request writes (or carries a body).
      // POST Object forms go to the bucket's root (FileSpin's presigned form).
      for (const path of ['/s3/wharf/', '/s3/wharf']) {
        const form = doc.paths[path]?.post;
        assert.ok(form?.requestBody.content['multipart/form-data'].schema.properties.policy, path);
        assert.deepEqual(form.security, [], `${path}: no API key`);
        assert.ok(form.responses['204'].headers.ETag, path);
        assert.ok(form.responses['303'].headers.Location, path);
        assert.ok(form.responses['503'].headers['Retry-After'], path);
      }
      for (const [method, op] of Object.entries<Json>(doc.paths['/s3/wharf/{key}'])) {
        const writes = method !== 'get';
        assert.match(op.responses['503']?.description ?? '', /ServiceUnavailable.*SlowDown/, method);
        assert.ok(op.responses['503'].content['application/xml'], method);
        assert.ok(op.responses['503'].headers['Retry-After'], method);
        assert.equal(/InsufficientStorage/.test(op.responses['507']?.description), writes, method);
        assert.equal(op.responses['415'] !== undefined, writes, method);
      }
    }
  });

  test('Redocly CLI lints the served document with no errors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wharf-openapi-'));
    try {
      const file = join(dir, 'openapi.json');
      await writeFile(file, JSON.stringify(doc));
      const out = await new Promise<string>((resolve, reject) => {
        execFile(
          join(REPO, 'node_modules', '.bin', 'redocly'),
          ['lint', '--config', join(REPO, 'redocly.yaml'), '--format=json', file],
          {
            cwd: dir,
            // Offline: no telemetry, no update check.
            env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
            maxBuffer: 16 * 1024 * 1024,
          },
          // It exits 1 when it finds errors; the JSON report says which.
          (err, stdout) => (stdout ? resolve(stdout) : reject(err ?? new Error('no report'))),
        );
      });
      const report = JSON.parse(out) as {
        totals: { errors: number; warnings: number };
        problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[];
      };
      const errors = report.problems.filter((p) => p.severity === 'error');
      assert.deepEqual(
        errors.map((p) => `${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`),
        [],
      );
      assert.equal(report.totals.errors, 0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('every documented 4xx answer of the native API has the native error shape', () => {
    for (const [path, ops] of Object.entries<Record<string, Json>>(doc.paths)) {
      // Seed APIs answer in their own documents' error shapes (their tests check those), and the
      // storage endpoint in S3's XML.
      if (SEED_PREFIXES.some((prefix) => path.startsWith(prefix)) || path.startsWith(STORAGE_PREFIX))
        continue;
      for (const [method, op] of Object.entries<Json>(ops)) {
        if (method === 'head') continue; // no body at all
        for (const [status, response] of Object.entries<Json>(op.responses)) {
          if (!status.startsWith('4')) continue;
          const schema = deref(response.content?.['application/json']?.schema);
          assert.ok(schema, `${method} ${path} ${status} has a JSON schema`);
          assert.deepEqual(schema.required, ['error'], `${method} ${path} ${status}`);
          assert.deepEqual(schema.properties.error.required.sort(), ['code', 'message']);
        }
      }
    }
  });
});

describe('real responses match the document', () => {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  const seen: Array<[string, string, number]> = [];
  // The components, for the schemas that reference them.
  const DOC_ID = 'wharf-openapi';
  let componentsAdded = false;
  const compile = (schema: Json) => {
    if (!componentsAdded) {
      ajv.addSchema(
        JSON.parse(
          JSON.stringify({ $id: DOC_ID, components: doc.components }).replaceAll(
            '"#/components/',
            `"${DOC_ID}#/components/`,
          ),
        ),
      );
      componentsAdded = true;
    }
    return ajv.compile(
      JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', `"${DOC_ID}#/components/`)),
    );
  };

  /**
   * Checks a response against the document's schema for its operation, status and media type
   * (a JSON one must be declared).
   */
  function conforms(method: string, template: string, res: JsonResponse): void {
    seen.push([method, template, res.status]);
    const op = doc.paths[template]?.[method.toLowerCase()];
    assert.ok(op, `${method} ${template} is documented`);
    const response = op.responses[String(res.status)];
    assert.ok(response, `${method} ${template} documents status ${res.status}`);
    const type = res.headers.get('content-type')?.split(';')[0]?.trim().toLowerCase() ?? 'application/json';
    if (/[/+]json$/.test(type) && response.content) {
      assert.ok(response.content[type], `${method} ${template} ${res.status} declares ${type}`);
    }
    const schema = response.content?.[type]?.schema;
    if (!schema || typeof res.body !== 'object') return;
    const validate = compile(schema);
    assert.ok(
      validate(res.body),
      `${method} ${template} ${res.status}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(res.body)}`,
    );
  }

  test('assets: upload (created and exists), list, get, signed URL, delete, and their errors', async () => {
    const bytes = randomBytes(64);
    const upload = async () =>
      readJson(
        fetch(`${w.url}/v1/assets?name=doc.bin`, {
          method: 'POST',
          headers: { 'x-api-key': w.key, 'content-type': 'application/octet-stream' },
          body: new Uint8Array(bytes),
        }),
      );
    const created = await upload();
    conforms('POST', '/v1/assets', created);
    assert.equal(created.status, 201);
    conforms('POST', '/v1/assets', await upload()); // 200 "exists"
    const id = created.body.asset.id;
    conforms('GET', '/v1/assets', await api(w.url, w.key, 'GET', '/v1/assets?limit=5'));
    conforms('GET', '/v1/assets', await api(w.url, w.key, 'GET', '/v1/assets?limit=0'));
    conforms('GET', '/v1/assets/{id}', await api(w.url, w.key, 'GET', `/v1/assets/${id}`));
    conforms(
      'GET',
      '/v1/assets/{id}',
      await api(w.url, w.key, 'GET', `/v1/assets/${sha256Hex('x').slice(0, 36)}`),
    );
    conforms('GET', '/v1/assets/{id}', await api(w.url, undefined, 'GET', `/v1/assets/${id}`));
    conforms(
      'POST',
      '/v1/assets/{id}/signed-url',
      await api(w.url, w.key, 'POST', `/v1/assets/${id}/signed-url`, {}),
    );
    conforms(
      'POST',
      '/v1/assets/{id}/signed-url',
      await api(w.url, w.key, 'POST', `/v1/assets/${id}/signed-url`, { expires_in: 0 }),
    );
    const small = await startWharf({ env: { WHARF_MAX_FILE_SIZE: '10' } });
    try {
      const tooBig = await readJson(
        fetch(`${small.url}/v1/assets?name=big.bin`, {
          method: 'POST',
          headers: { 'x-api-key': small.key, 'content-type': 'application/octet-stream' },
          body: new Uint8Array(randomBytes(11)),
        }),
      );
      assert.equal(tooBig.status, 413);
      seen.push(['POST', '/v1/assets', 413]);
      const op = doc.paths['/v1/assets'].post;
      assert.ok(compile(op.responses['413'].content['application/json'].schema)(tooBig.body));
    } finally {
      await small.close();
    }
    conforms('DELETE', '/v1/assets/{id}', await api(w.url, w.key, 'DELETE', `/v1/assets/${id}`));
    conforms('DELETE', '/v1/assets/{id}', await api(w.url, w.key, 'DELETE', `/v1/assets/${id}`));
  });

  /** Every field of `body` is one its schema (a component) declares. */
  function declaresEveryField(component: string, body: object): void {
    const declared = Object.keys(doc.components.schemas[component].properties);
    assert.deepEqual(
      Object.keys(body).filter((field) => !declared.includes(field)),
      [],
      `${component}: ${JSON.stringify(body)}`,
    );
  }

  test('resumable uploads: a creation that sends the rest later (on both routes), the draft’s problem documents, the end', async () => {
    const bytes = randomBytes(3000);
    const rufh = (method: string, url: string, headers: Record<string, string>, body?: Buffer) =>
      readJson(
        fetch(url, {
          method,
          headers: { 'x-api-key': w.key, 'upload-draft-interop-version': '6', ...headers },
          ...(body && { body: new Uint8Array(body) }),
        }),
      );
    const start = (path: string) =>
      rufh(
        'POST',
        `${w.url}${path}?name=r.bin`,
        { 'upload-complete': '?0', 'upload-length': '3000', 'content-type': 'application/octet-stream' },
        bytes.subarray(0, 1000),
      );
    let url = '';
    for (const path of ['/v1/assets', '/v1/resumable/']) {
      const created = await start(path);
      assert.equal(created.status, 201, JSON.stringify(created.body));
      conforms('POST', path, created);
      // The upload resource, whole: not an asset, and nothing the serialiser dropped.
      declaresEveryField('ResumableUpload', created.body);
      assert.deepEqual(
        Object.keys(created.body).sort(),
        Object.keys(doc.components.schemas.ResumableUpload.properties).sort(),
      );
      assert.equal(created.body.offset, 1000);
      assert.equal(created.body.url, created.headers.get('location'));
      url = created.body.url;
    }
    // A creation whose lengths disagree is the draft's problem document on either route.
    for (const path of ['/v1/assets', '/v1/resumable/']) {
      const inconsistent = await rufh(
        'POST',
        `${w.url}${path}?name=r.bin`,
        { 'upload-complete': '?1', 'upload-length': '3000', 'content-type': 'application/octet-stream' },
        bytes.subarray(0, 1000),
      );
      assert.equal(inconsistent.status, 400, JSON.stringify(inconsistent.body));
      assert.match(inconsistent.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(inconsistent.body.error.code, 'INCONSISTENT_LENGTH');
      conforms('POST', path, inconsistent);
      declaresEveryField('UploadProblem', inconsistent.body);
    }
    const append = (offset: number, extra: Record<string, string> = {}) =>
      rufh(
        'PATCH',
        url,
        {
          'upload-offset': String(offset),
          'upload-complete': '?1',
          'content-type': 'application/partial-upload',
          ...extra,
        },
        bytes.subarray(offset),
      );
    const wrongOffset = await append(500);
    assert.equal(wrongOffset.status, 409);
    assert.equal(wrongOffset.body.error.code, 'OFFSET_MISMATCH');
    conforms('PATCH', '/v1/resumable/{id}', wrongOffset);
    declaresEveryField('UploadProblem', wrongOffset.body);
    const otherLength = await append(1000, { 'upload-length': '2999' });
    assert.equal(otherLength.status, 400);
    assert.equal(otherLength.body.error.code, 'INCONSISTENT_LENGTH');
    conforms('PATCH', '/v1/resumable/{id}', otherLength);
    declaresEveryField('UploadProblem', otherLength.body);
    const done = await append(1000);
    assert.equal(done.status, 201);
    conforms('PATCH', '/v1/resumable/{id}', done);
    assert.equal(done.body.asset.size, 3000);
    // The same file again: the append that ends it finds the asset the account holds (200).
    url = (await start('/v1/resumable/')).body.url;
    const again = await append(1000);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.status, 'exists');
    conforms('PATCH', '/v1/resumable/{id}', again);
  });

  test('content: full, partial, not modified, unsatisfiable, missing', async () => {
    const asset = await createAsset(w, w.key, 'c.txt', 'content body', 'text/plain');
    const read = (headers: Record<string, string> = {}, id = asset.id) =>
      readJson(fetch(`${w.url}/v1/assets/${id}/content`, { headers: { 'x-api-key': w.key, ...headers } }));
    conforms('GET', '/v1/assets/{id}/content', await read());
    conforms('GET', '/v1/assets/{id}/content', await read({ range: 'bytes=0-3' }));
    conforms('GET', '/v1/assets/{id}/content', await read({ 'if-none-match': `"${asset.sha256}"` }));
    conforms('GET', '/v1/assets/{id}/content', await read({ range: 'bytes=999-' }));
    conforms('GET', '/v1/assets/{id}/content', await read({}, '019b7c2a-1c2d-7e3f-8a4b-5c6d7e8f9a0b'));
    const head = await fetch(`${w.url}/v1/assets/${asset.id}/content`, {
      method: 'HEAD',
      headers: { 'x-api-key': w.key },
    });
    conforms('HEAD', '/v1/assets/{id}/content', {
      status: head.status,
      headers: head.headers,
      body: undefined,
    });
    assert.equal(head.status, 200);
    const signed = await api(w.url, w.key, 'POST', `/v1/assets/${asset.id}/signed-url`, {});
    conforms('GET', '/v1/assets/{id}/content', await readJson(fetch(`${signed.body.url.slice(0, -2)}xx`)));
  });

  test('uploads: single and batch intents, exists, state, completion and its errors', async () => {
    const bytes = randomBytes(20);
    const single = await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'u.bin', size: 20 });
    conforms('POST', '/v1/uploads', single);
    conforms(
      'POST',
      '/v1/uploads',
      await api(w.url, w.key, 'POST', '/v1/uploads', {
        files: [
          { name: 'a', size: 1 },
          { name: 'b', size: 2 },
        ],
      }),
    );
    conforms(
      'POST',
      '/v1/uploads',
      await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'u.bin', size: '20' }),
    );
    conforms(
      'POST',
      '/v1/uploads',
      await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'u.bin', size: 6 * 1024 ** 3 }),
    );
    const state = await api(w.url, w.key, 'GET', `/v1/uploads/${single.body.id}`);
    conforms('GET', '/v1/uploads/{id}', state);
    // As the listing shows it (docs/reference.md): the same fields, the lookup's offset aside.
    const listed = await api(w.url, w.key, 'GET', '/v1/uploads');
    conforms('GET', '/v1/uploads', listed);
    assert.deepEqual(
      listed.body.data.find((u: Json) => u.id === single.body.id),
      state.body,
    );
    const item = deref(
      deref(doc.paths['/v1/uploads'].get.responses['200'].content['application/json'].schema).properties.data
        .items,
    );
    const upload = doc.components.schemas.Upload;
    assert.deepEqual(
      Object.keys(upload.properties).sort(),
      Object.keys(item.properties)
        .filter((field) => field !== 'offset')
        .sort(),
    );
    assert.deepEqual([...upload.required].sort(), [...item.required].sort());
    conforms(
      'POST',
      '/v1/uploads/{id}/complete',
      await api(w.url, w.key, 'POST', `/v1/uploads/${single.body.id}/complete`),
    );
    assert.equal((await putPresigned(single.body, bytes)).status, 200);
    const done = await api(w.url, w.key, 'POST', `/v1/uploads/${single.body.id}/complete`);
    conforms('POST', '/v1/uploads/{id}/complete', done);
    conforms(
      'POST',
      '/v1/uploads',
      await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'again', size: 20, sha256: sha256Hex(bytes) }),
    );
    const expiring = await declare(w, w.key, { name: 'late.bin', size: 1 });
    w.clock.advance(16 * 60_000);
    conforms(
      'POST',
      '/v1/uploads/{id}/complete',
      await api(w.url, w.key, 'POST', `/v1/uploads/${expiring.id}/complete`),
    );
    conforms('GET', '/v1/uploads/{id}', await api(w.url, w.key, 'GET', '/v1/uploads/nope'));

    // Ended without an asset: `ended` says why, cancelled (no error) or failed (with its error).
    const cancelled = await declare(w, w.key, { name: 'cancelled.bin', size: 1 });
    assert.equal((await api(w.url, w.key, 'DELETE', `/v1/uploads/${cancelled.id}`)).status, 204);
    const cancelledState = await api(w.url, w.key, 'GET', `/v1/uploads/${cancelled.id}`);
    conforms('GET', '/v1/uploads/{id}', cancelledState);
    assert.equal(cancelledState.body.ended.reason, 'cancelled');
    const tenant = await w.newAccount();
    const refused = await readJson(
      fetch(`${w.url}/v1/assets?name=bad.bin&sha256=${sha256Hex('other')}`, {
        method: 'POST',
        headers: { 'x-api-key': tenant.key, 'content-type': 'application/octet-stream' },
        body: 'hello',
      }),
    );
    assert.equal(refused.body.error.code, 'CHECKSUM_MISMATCH');
    const failed = await api(w.url, tenant.key, 'GET', '/v1/uploads');
    conforms('GET', '/v1/uploads', failed);
    assert.equal(failed.body.data[0].ended.error.code, 'CHECKSUM_MISMATCH');
    conforms(
      'GET',
      '/v1/uploads/{id}',
      await api(w.url, tenant.key, 'GET', `/v1/uploads/${failed.body.data[0].id}`),
    );
  });

  test('an event’s upload holds exactly the fields docs/webhooks.md lists, which are not the API’s upload JSON', async () => {
    const { key } = await w.newAccount();
    const declared = await declare(w, key, { name: 'event.bin', size: 3 });
    const events = await api(w.url, key, 'GET', '/v1/events?type=upload.created');
    conforms('GET', '/v1/events', events);
    const upload = events.body.data.find((e: Json) => e.data.upload.id === declared.id).data.upload;
    const docs = await readFile(join(REPO, 'docs', 'webhooks.md'), 'utf8');
    const listed = /it holds exactly ([^;]+);/.exec(docs.replace(/\s+/g, ' '))?.[1];
    assert.ok(listed, 'docs/webhooks.md lists an event’s upload fields');
    const fields = listed
      .replace(/\([^)]*\)/g, '')
      .split(/,? and |, /)
      .map((item) => /^\s*`([a-z_0-9]+)`/.exec(item)?.[1]);
    assert.deepEqual([...fields].sort(), Object.keys(upload).sort());
    // Not the API's upload: a client must not expect one from the other.
    const api_ = Object.keys(doc.components.schemas.Upload.properties);
    assert.ok(!fields.includes('resume_url') && api_.includes('resume_url'));
  });

  test('multipart and S3 signing: every step and their errors', async () => {
    const bytes = Buffer.from('one small part is a whole multipart upload');
    const started = await api(w.url, w.key, 'POST', '/v1/multipart', { name: 'mp.bin', size: bytes.length });
    conforms('POST', '/v1/multipart', started);
    const id = started.body.id;
    const signed = await api(w.url, w.key, 'POST', `/v1/multipart/${id}/parts`, { partNumbers: [1] });
    conforms('POST', '/v1/multipart/{id}/parts', signed);
    const part = signed.body.parts[0];
    const put = await fetch(part.url, { method: 'PUT', headers: part.headers, body: new Uint8Array(bytes) });
    assert.equal(put.status, 200);
    conforms('GET', '/v1/multipart/{id}/parts', await api(w.url, w.key, 'GET', `/v1/multipart/${id}/parts`));
    const complete = (etag: string) =>
      api(w.url, w.key, 'POST', `/v1/multipart/${id}/complete`, { parts: [{ PartNumber: 1, ETag: etag }] });
    conforms('POST', '/v1/multipart/{id}/complete', await complete('"nope"'));
    conforms('POST', '/v1/multipart/{id}/complete', await complete(put.headers.get('etag')!));
    const partsOfCompleted = await api(w.url, w.key, 'GET', `/v1/multipart/${id}/parts`);
    assert.equal(partsOfCompleted.status, 409);
    conforms('GET', '/v1/multipart/{id}/parts', partsOfCompleted);
    conforms(
      'POST',
      '/v1/multipart',
      await api(w.url, w.key, 'POST', '/v1/multipart', {
        name: 'mp.bin',
        size: bytes.length,
        sha256: sha256Hex(bytes),
      }),
    );
    conforms(
      'POST',
      '/v1/multipart',
      await api(w.url, w.key, 'POST', '/v1/multipart', { name: 'x', size: 10 ** 15 }),
    );
    conforms('DELETE', '/v1/multipart/{id}', await api(w.url, w.key, 'DELETE', `/v1/multipart/${id}`));
    const other = await api(w.url, w.key, 'POST', '/v1/multipart', { name: 'gone.bin', size: 10 });
    conforms(
      'DELETE',
      '/v1/multipart/{id}',
      await api(w.url, w.key, 'DELETE', `/v1/multipart/${other.body.id}`),
    );
    conforms(
      'POST',
      '/v1/multipart/{id}/parts',
      await api(w.url, w.key, 'POST', `/v1/multipart/${other.body.id}/parts`, { partNumbers: [1] }),
    );
    conforms(
      'POST',
      '/v1/s3/sign',
      await api(w.url, w.key, 'POST', '/v1/s3/sign', { method: 'PUT', key: 'a.txt' }),
    );
    conforms(
      'POST',
      '/v1/s3/sign',
      await api(w.url, w.key, 'POST', '/v1/s3/sign', { method: 'DELETE', key: 'a.txt' }),
    );
  });

  test('keys: list, create, revoke and their errors', async () => {
    conforms('GET', '/v1/keys', await api(w.url, w.key, 'GET', '/v1/keys'));
    const created = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'doc key' });
    conforms('POST', '/v1/keys', created);
    conforms('GET', '/v1/keys', await api(w.url, created.body.secret, 'GET', '/v1/keys'));
    conforms('POST', '/v1/keys', await api(w.url, w.key, 'POST', '/v1/keys', { name: 'x', role: 'root' }));
    conforms('DELETE', '/v1/keys/{id}', await api(w.url, w.key, 'DELETE', `/v1/keys/${created.body.key.id}`));
    conforms('DELETE', '/v1/keys/{id}', await api(w.url, w.key, 'DELETE', `/v1/keys/${created.body.key.id}`));
  });

  test('webhooks: every operation and its errors', async () => {
    // An account of its own, and no event after the endpoint exists: nothing is ever sent.
    const { key } = await w.newAccount();
    const url = 'https://hooks.example.com/wharf';
    const created = await api(w.url, key, 'POST', '/v1/webhooks', { url, event_types: ['upload.*'] });
    conforms('POST', '/v1/webhooks', created);
    const id = created.body.webhook.id;
    conforms(
      'POST',
      '/v1/webhooks',
      await api(w.url, key, 'POST', '/v1/webhooks', { url: 'http://127.0.0.1/' }),
    );
    conforms('GET', '/v1/webhooks', await api(w.url, key, 'GET', '/v1/webhooks'));
    conforms('GET', '/v1/webhooks/{id}', await api(w.url, key, 'GET', `/v1/webhooks/${id}`));
    conforms('GET', '/v1/webhooks/{id}', await api(w.url, key, 'GET', '/v1/webhooks/nope'));
    conforms(
      'PATCH',
      '/v1/webhooks/{id}',
      await api(w.url, key, 'PATCH', `/v1/webhooks/${id}`, { description: 'd' }),
    );
    conforms('GET', '/v1/webhooks/{id}/secret', await api(w.url, key, 'GET', `/v1/webhooks/${id}/secret`));
    conforms(
      'POST',
      '/v1/webhooks/{id}/rotate-secret',
      await api(w.url, key, 'POST', `/v1/webhooks/${id}/rotate-secret`, { keep_previous_for: 60 }),
    );
    conforms(
      'GET',
      '/v1/webhooks/{id}/deliveries',
      await api(w.url, key, 'GET', `/v1/webhooks/${id}/deliveries`),
    );
    conforms(
      'GET',
      '/v1/webhooks/{id}/deliveries/{delivery_id}',
      await api(w.url, key, 'GET', `/v1/webhooks/${id}/deliveries/nope`),
    );
    conforms(
      'POST',
      '/v1/webhooks/{id}/deliveries/{delivery_id}/replay',
      await api(w.url, key, 'POST', `/v1/webhooks/${id}/deliveries/nope/replay`),
    );
    const since = new Date(0).toISOString();
    conforms(
      'POST',
      '/v1/webhooks/{id}/replay',
      await api(w.url, key, 'POST', `/v1/webhooks/${id}/replay`, { since }),
    );
    await api(w.url, key, 'PATCH', `/v1/webhooks/${id}`, { enabled: false });
    conforms(
      'POST',
      '/v1/webhooks/{id}/replay',
      await api(w.url, key, 'POST', `/v1/webhooks/${id}/replay`, { since }),
    );
    conforms('DELETE', '/v1/webhooks/{id}', await api(w.url, key, 'DELETE', `/v1/webhooks/${id}`));
    conforms('DELETE', '/v1/webhooks/{id}', await api(w.url, key, 'DELETE', `/v1/webhooks/${id}`));
  });

  test('images: transforms, signed transform URLs, derivatives, presets, account settings', async () => {
    const text = await readJson(
      fetch(`${w.url}/v1/assets?name=doc.txt`, {
        method: 'POST',
        headers: { 'x-api-key': w.key, 'content-type': 'text/plain' },
        body: `not an image ${randomBytes(4).toString('hex')}`,
      }),
    );
    const id = text.body.asset.id;
    conforms('GET', '/v1/assets/{id}/image', await api(w.url, w.key, 'GET', `/v1/assets/${id}/image?w=10`));
    conforms('GET', '/v1/assets/{id}/image', await api(w.url, w.key, 'GET', `/v1/assets/${id}/image?w=0`));
    conforms('GET', '/v1/assets/{id}/image', await api(w.url, undefined, 'GET', `/v1/assets/${id}/image`));
    conforms(
      'POST',
      '/v1/assets/{id}/image-url',
      await api(w.url, w.key, 'POST', `/v1/assets/${id}/image-url`, { w: 100, format: 'webp' }),
    );
    conforms(
      'POST',
      '/v1/assets/{id}/image-url',
      await api(w.url, w.key, 'POST', `/v1/assets/${id}/image-url`, { w: 100, preset: 'x' }),
    );
    conforms(
      'GET',
      '/v1/assets/{id}/derivatives',
      await api(w.url, w.key, 'GET', `/v1/assets/${id}/derivatives`),
    );
    conforms(
      'PUT',
      '/v1/image-presets/{name}',
      await api(w.url, w.key, 'PUT', '/v1/image-presets/doc', { w: 64, eager: false }),
    );
    conforms(
      'PUT',
      '/v1/image-presets/{name}',
      await api(w.url, w.key, 'PUT', '/v1/image-presets/doc', { w: 0 }),
    );
    conforms('GET', '/v1/image-presets', await api(w.url, w.key, 'GET', '/v1/image-presets'));
    conforms('GET', '/v1/image-presets/{name}', await api(w.url, w.key, 'GET', '/v1/image-presets/doc'));
    conforms(
      'DELETE',
      '/v1/image-presets/{name}',
      await api(w.url, w.key, 'DELETE', '/v1/image-presets/doc'),
    );
    conforms('GET', '/v1/image-presets/{name}', await api(w.url, w.key, 'GET', '/v1/image-presets/doc'));
    conforms('GET', '/v1/account/settings', await api(w.url, w.key, 'GET', '/v1/account/settings'));
    conforms('PATCH', '/v1/account/settings', await api(w.url, w.key, 'PATCH', '/v1/account/settings', {}));
    const member = await w.newKey('member');
    conforms(
      'PATCH',
      '/v1/account/settings',
      await api(w.url, member.key, 'PATCH', '/v1/account/settings', { strip_gps: true }),
    );
  });

  test('refusals of how a route is registered: body limits and types, lengths, over-long ids, open uploads', async () => {
    const expectRefusal = (method: string, template: string, res: JsonResponse, status: number) => {
      assert.equal(res.status, status, `${method} ${template}: ${JSON.stringify(res.body)}`);
      conforms(method, template, res);
    };
    // A JSON body over 1 MiB.
    const big = { name: 'x'.repeat(1100 * 1024) };
    expectRefusal('POST', '/v1/keys', await api(w.url, w.key, 'POST', '/v1/keys', big), 413);
    // A file in a Content-Encoding; a JSON route sent text.
    const gzipped = await readJson(
      fetch(`${w.url}/v1/assets?name=g.bin`, {
        method: 'POST',
        headers: {
          'x-api-key': w.key,
          'content-type': 'application/octet-stream',
          'content-encoding': 'gzip',
        },
        body: 'abc',
      }),
    );
    expectRefusal('POST', '/v1/assets', gzipped, 415);
    const intent = await declare(w, w.key, { name: 'text.bin', size: 3 });
    const text = await readJson(
      fetch(`${w.url}/v1/uploads/${intent.id}/complete`, {
        method: 'POST',
        headers: { 'x-api-key': w.key, 'content-type': 'text/plain' },
        body: 'abc',
      }),
    );
    expectRefusal('POST', '/v1/uploads/{id}/complete', text, 415);
    // A DELETE sent a body: parsed (and refused) as a POST's would be.
    const deleteWithText = await readJson(
      fetch(`${w.url}/v1/keys/nope`, {
        method: 'DELETE',
        headers: { 'x-api-key': w.key, 'content-type': 'text/plain' },
        body: 'abc',
      }),
    );
    expectRefusal('DELETE', '/v1/keys/{id}', deleteWithText, 415);
    const deleteTooBig = await readJson(
      fetch(`${w.url}/v1/keys/nope`, {
        method: 'DELETE',
        headers: { 'x-api-key': w.key, 'content-type': 'application/json' },
        body: JSON.stringify(big),
      }),
    );
    expectRefusal('DELETE', '/v1/keys/{id}', deleteTooBig, 413);
    // A creation whose first bytes come in a Content-Encoding, on tus and Resumable HTTP.
    const encoded = { 'x-api-key': w.key, 'content-encoding': 'gzip' };
    const tusEncoded = await readJson(
      fetch(`${w.url}/v1/tus/`, {
        method: 'POST',
        headers: {
          ...encoded,
          'tus-resumable': '1.0.0',
          'upload-length': '3',
          'upload-metadata': `filename ${Buffer.from('t.bin').toString('base64')}`,
          'content-type': 'application/offset+octet-stream',
        },
        body: 'abc',
      }),
    );
    expectRefusal('POST', '/v1/tus/', tusEncoded, 415);
    const rufhEncoded = await readJson(
      fetch(`${w.url}/v1/resumable/?name=r.bin`, {
        method: 'POST',
        headers: { ...encoded, 'upload-complete': '?1', 'content-type': 'application/octet-stream' },
        body: 'abc',
      }),
    );
    expectRefusal('POST', '/v1/resumable/', rufhEncoded, 415);
    // A resumable upload that says no length.
    const lengthless = await readJson(
      fetch(`${w.url}/v1/assets?name=n.bin`, {
        method: 'POST',
        headers: {
          'x-api-key': w.key,
          'upload-draft-interop-version': '6',
          'upload-complete': '?0',
          'content-type': 'application/octet-stream',
        },
      }),
    );
    expectRefusal('POST', '/v1/assets', lengthless, 411);
    // A path segment longer than any id, native and seed.
    const long = 'a'.repeat(600);
    expectRefusal(
      'DELETE',
      '/v1/resumable/{id}',
      await api(w.url, w.key, 'DELETE', `/v1/resumable/${long}`),
      414,
    );
    expectRefusal(
      'GET',
      '/api/v1/assets/{id}/',
      await api(w.url, w.key, 'GET', `/api/v1/assets/${long}/`),
      414,
    );
    // A token that may hold one open upload, and holds one (minted with a namespace: a token
    // writes named files only when confined).
    const token = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {
      max_open_uploads: 1,
      namespace: 'ns',
    });
    assert.equal(token.status, 201);
    await declare(w, token.body.secret, { name: 'open.bin', size: 5 });
    const tooMany = await readJson(
      fetch(`${w.url}/api_gateway/file-service/ns/c.bin`, {
        method: 'POST',
        headers: { 'x-api-key': token.body.secret, 'content-type': 'application/octet-stream' },
        body: 'ab',
      }),
    );
    expectRefusal('POST', '/api_gateway/file-service/{namespace}/{name}', tooMany, 429);
  });

  test('tus: the endpoint without its slash, and POST standing for another method (X-HTTP-Method-Override)', async () => {
    const tus = { 'x-api-key': w.key, 'tus-resumable': '1.0.0' };
    for (const template of ['/v1/tus', '/v1/tus/']) {
      const discovery = await readJson(fetch(`${w.url}${template}`, { method: 'OPTIONS' }));
      assert.equal(discovery.status, 204);
      conforms('OPTIONS', template, discovery);
    }
    const discoveryByPost = await readJson(
      fetch(`${w.url}/v1/tus/`, { method: 'POST', headers: { ...tus, 'x-http-method-override': 'OPTIONS' } }),
    );
    assert.equal(discoveryByPost.status, 204);
    assert.equal(discoveryByPost.headers.get('tus-version'), '1.0.0');
    conforms('POST', '/v1/tus/', discoveryByPost);
    const bytes = randomBytes(5);
    const created = await readJson(
      fetch(`${w.url}/v1/tus`, {
        method: 'POST',
        headers: {
          ...tus,
          'upload-length': String(bytes.length),
          'upload-metadata': `filename ${Buffer.from('override.bin').toString('base64')}`,
        },
      }),
    );
    assert.equal(created.status, 201, JSON.stringify(created.body));
    conforms('POST', '/v1/tus', created);
    const url = created.headers.get('location')!;
    const as = (method: string | undefined, headers: Record<string, string> = {}, body?: Buffer) =>
      readJson(
        fetch(url, {
          method: 'POST',
          headers: { ...tus, ...(method && { 'x-http-method-override': method }), ...headers },
          ...(body && { body: new Uint8Array(body) }),
        }),
      );
    const append = (offset: number) =>
      as(
        'PATCH',
        { 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
        bytes,
      );
    const expect = async (pending: Promise<JsonResponse>, status: number) => {
      const res = await pending;
      assert.equal(res.status, status, JSON.stringify(res.body));
      conforms('POST', '/v1/tus/{id}', res);
      return res;
    };
    const head = await expect(as('HEAD'), 200);
    assert.equal(head.headers.get('upload-offset'), '0');
    await expect(append(3), 409);
    const done = await expect(append(0), 204);
    assert.ok(done.headers.get('wharf-asset-id'));
    await expect(as('DELETE'), 409);
    await expect(as('GET'), 405);
    await expect(as(undefined), 404);
  });

  test('a JSON null is no body on both signing routes (as on rotate-secret), and the document says so', async () => {
    const asset = await createAsset(w, w.key, 'null.txt', 'signed for a null body', 'text/plain');
    for (const [path, expiresIn] of [
      ['signed-url', 3600],
      ['image-url', 86_400],
    ] as const) {
      const template = `/v1/assets/{id}/${path}`;
      const schema = doc.paths[template].post.requestBody.content['application/json'].schema;
      assert.ok(compile(schema)(null), `${template} documents a null body`);
      for (const body of [null, undefined]) {
        const res = await api(w.url, w.key, 'POST', `/v1/assets/${asset.id}/${path}`, body);
        assert.equal(res.status, 200, `${path} ${body}: ${JSON.stringify(res.body)}`);
        conforms('POST', template, res);
        // The defaults, which a body of its own would have been given.
        const expires = Date.parse(res.body.expires_at) - w.clock.now();
        assert.ok(Math.abs(expires - expiresIn * 1000) < 2000, `${path} ${body}: ${res.body.expires_at}`);
      }
    }
  });

  test('the storage endpoint: a Content-Type that is no media type is 415 where a body is read', async (t) => {
    if (w.wharf.core.endpoint === undefined) return t.skip('S3 storage: no storage endpoint');
    const bad = { 'content-type': 'a/b/c' };
    const intent = await declare(w, w.key, { name: 'typed.bin', size: 3 });
    const put = await readJson(
      fetch(intent.url, { method: 'PUT', headers: { ...intent.headers, ...bad }, body: 'abc' }),
    );
    assert.equal(put.status, 415, put.body);
    conforms('PUT', '/s3/wharf/{key}', put);
    const started = await api(w.url, w.key, 'POST', '/v1/multipart', { name: 'typed.bin', size: 3 });
    for (const method of ['POST', 'DELETE']) {
      const signed = await api(w.url, w.key, 'POST', '/v1/s3/sign', {
        method,
        key: started.body.key,
        uploadId: started.body.uploadId,
      });
      assert.equal(signed.status, 200, JSON.stringify(signed.body));
      const res = await readJson(fetch(signed.body.url, { method, headers: bad, body: 'x' }));
      assert.equal(res.status, 415, res.body);
      conforms(method, '/s3/wharf/{key}', res);
    }
  });

  test('health', async () => {
    const res = await api(w.url, undefined, 'GET', '/healthz');
    assert.deepEqual(res.body, { status: 'ok' });
    conforms('GET', '/healthz', res);
    const ready = await api(w.url, undefined, 'GET', '/readyz');
    assert.equal(ready.body.status, 'ready');
    conforms('GET', '/readyz', ready);
  });

  test('the checks above really exercised a spread of statuses', () => {
    const statuses = new Set(seen.map(([, , s]) => s));
    for (const s of [200, 201, 204, 206, 304, 400, 401, 403, 404, 409, 410, 413, 416]) {
      assert.ok(statuses.has(s), `status ${s} was checked against the document`);
    }
  });
});

describe('/docs', () => {
  test('serves the interactive documentation as HTML, itself served from this server', async () => {
    const res = await fetch(`${w.url}/docs`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    const html = await res.text();
    assert.match(html, /swagger/i);
    const spec = await fetch(`${w.url}/docs/json`);
    assert.equal(spec.status, 200);
    assert.deepEqual(Object.keys((await spec.json()) as object).sort(), Object.keys(doc).sort());
  });

  test('its content security policy lets "Try it out" reach this origin only, over plain http too', async () => {
    const csp = (await fetch(`${w.url}/docs/`)).headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /connect-src/, 'requests fall under default-src: this origin');
    assert.doesNotMatch(csp, /upgrade-insecure-requests/);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /object-src 'none'/);
  });
});
