import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { createAsset, dbQuery, readJson, uploadRaw } from '../helpers/assets.js';
import { api, b64, type JsonResponse, md5Hex, sha256Hex } from '../helpers/http.js';
import { startWharf, type TestWharf } from '../helpers/wharf.js';

// Scoped keys over real HTTP: what each scope may do, confinement to a name prefix or a
// namespace, refusals with stable codes on the native API and on the seed APIs.

let w: TestWharf;
before(async () => {
  w = await startWharf();
});
after(async () => {
  await w?.close();
});

async function key(body: Record<string, unknown>, admin = w.key): Promise<{ id: string; secret: string }> {
  const res = await api(w.url, admin, 'POST', '/v1/keys', { name: 'scoped', ...body });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return { id: res.body.key.id, secret: res.body.secret };
}

function refused(res: JsonResponse, code: string, label: string, status = 403): void {
  assert.equal(res.status, status, `${label}: ${JSON.stringify(res.body)}`);
  assert.equal(res.body?.error?.code, code, `${label}: ${JSON.stringify(res.body)}`);
}

function putFile(secret: string, path: string, body: string, query = ''): Promise<JsonResponse> {
  return readJson(
    fetch(`${w.url}/v1/files/${path}${query}`, {
      method: 'PUT',
      headers: { 'x-api-key': secret, 'content-type': 'text/plain' },
      body,
    }),
  );
}

function tusCreate(secret: string, name: string, size: number): Promise<Response> {
  return fetch(`${w.url}/v1/tus/`, {
    method: 'POST',
    headers: {
      'Tus-Resumable': '1.0.0',
      Authorization: `Bearer ${secret}`,
      'Upload-Length': String(size),
      'Upload-Metadata': `filename ${Buffer.from(name).toString('base64')}`,
    },
  });
}

describe('keys with scopes', () => {
  test('POST /v1/keys takes scopes and confinement; the key JSON shows them (role stays)', async () => {
    const res = await api(w.url, w.key, 'POST', '/v1/keys', {
      name: 'inbox writer',
      scopes: ['upload', 'read'],
      name_prefix: 'inbox-',
      namespace: 'inbox',
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.deepEqual(
      {
        role: res.body.key.role,
        scopes: res.body.key.scopes,
        name_prefix: res.body.key.name_prefix,
        namespace: res.body.key.namespace,
      },
      { role: 'member', scopes: ['read', 'upload'], name_prefix: 'inbox-', namespace: 'inbox' },
    );
    const listed = await api(w.url, w.key, 'GET', '/v1/keys');
    assert.deepEqual(
      listed.body.data.find((k: { id: string }) => k.id === res.body.key.id),
      res.body.key,
    );
    // The older role still works, and means what it always meant.
    const member = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'm', role: 'member' });
    assert.deepEqual(member.body.key.scopes, ['read', 'upload', 'write']);
    const admin = await api(w.url, w.key, 'POST', '/v1/keys', { name: 'a', role: 'admin' });
    assert.deepEqual(admin.body.key.scopes, ['admin']);
    assert.equal(admin.body.key.role, 'admin');
  });

  test('invalid scope requests are 400 VALIDATION_FAILED, and create nothing', async () => {
    const before = (await api(w.url, w.key, 'GET', '/v1/keys')).body.data.length;
    for (const body of [
      { name: 'k', scopes: [] },
      { name: 'k', scopes: ['owner'] },
      { name: 'k', scopes: 'read' },
      { name: 'k', role: 'member', scopes: ['read'] },
      { name: 'k', scopes: ['admin'], name_prefix: 'x' },
      { name: 'k', scopes: ['read'], name_prefix: 'a/b' },
      { name: 'k', scopes: ['read'], name_prefix: '' },
      { name: 'k', scopes: ['read'], namespace: '../etc' },
    ]) {
      const res = await api(w.url, w.key, 'POST', '/v1/keys', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.match(res.body.error.code, /^(VALIDATION_FAILED|INVALID_NAME)$/, JSON.stringify(res.body));
    }
    assert.equal((await api(w.url, w.key, 'GET', '/v1/keys')).body.data.length, before);
  });

  test('a read key lists, gets, downloads and signs, and is refused every upload with SCOPE_DENIED', async () => {
    const asset = await createAsset(w, w.key, 'readable.txt', 'for readers', 'text/plain');
    const reader = await key({ scopes: ['read'] });
    assert.equal((await api(w.url, reader.secret, 'GET', '/v1/assets')).status, 200);
    assert.equal((await api(w.url, reader.secret, 'GET', `/v1/assets/${asset.id}`)).status, 200);
    const content = await fetch(`${w.url}/v1/assets/${asset.id}/content`, {
      headers: { 'x-api-key': reader.secret },
    });
    assert.equal(await content.text(), 'for readers');
    const signed = await api(w.url, reader.secret, 'POST', `/v1/assets/${asset.id}/signed-url`, {});
    assert.equal(signed.status, 200);

    const uploads: Array<[string, () => Promise<JsonResponse>]> = [
      ['direct', () => uploadRaw(w, reader.secret, 'x.txt', 'x')],
      ['presigned', () => api(w.url, reader.secret, 'POST', '/v1/uploads', { name: 'x.txt', size: 1 })],
      ['multipart', () => api(w.url, reader.secret, 'POST', '/v1/multipart', { name: 'x.bin', size: 1 })],
      ['s3/sign', () => api(w.url, reader.secret, 'POST', '/v1/s3/sign', { method: 'PUT', key: 'x.bin' })],
      ['named file', () => putFile(reader.secret, 'docs/x.txt', 'x')],
      ['tus', async () => readJson(tusCreate(reader.secret, 'x.bin', 1))],
      ['upload token', () => api(w.url, reader.secret, 'POST', '/v1/upload-tokens', {})],
    ];
    for (const [label, send] of uploads) {
      const res = await send();
      refused(res, 'SCOPE_DENIED', label);
      assert.equal(res.body.error.details.required, 'upload', label);
    }
    refused(await api(w.url, reader.secret, 'DELETE', `/v1/assets/${asset.id}`), 'SCOPE_DENIED', 'delete');
    refused(
      await api(w.url, reader.secret, 'PATCH', `/v1/assets/${asset.id}`, { access: 'public' }),
      'SCOPE_DENIED',
      'patch',
    );
    refused(await api(w.url, reader.secret, 'GET', '/v1/keys'), 'FORBIDDEN', 'keys');
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${asset.id}`)).body.access, 'private');
    assert.equal(dbQuery(w, "select id from uploads where name = 'x.txt' or name = 'x.bin'").length, 0);
  });

  test('an upload key uploads on every flow, reads only what it uploaded, and cannot list or delete', async () => {
    const theirs = await createAsset(w, w.key, 'someone-elses.txt', randomBytes(20), 'text/plain');
    const uploader = await key({ scopes: ['upload'] });
    const mine = (
      await uploadRaw(w, uploader.secret, 'mine.txt', 'uploaded by me', { contentType: 'text/plain' })
    ).body.asset;
    assert.equal(mine.name, 'mine.txt');
    assert.equal((await api(w.url, uploader.secret, 'GET', `/v1/assets/${mine.id}`)).status, 200);
    const content = await fetch(`${w.url}/v1/assets/${mine.id}/content`, {
      headers: { 'x-api-key': uploader.secret },
    });
    assert.equal(await content.text(), 'uploaded by me');
    const intent = await api(w.url, uploader.secret, 'POST', '/v1/uploads', { name: 'p.bin', size: 3 });
    assert.equal(intent.status, 201);
    assert.equal((await api(w.url, uploader.secret, 'GET', `/v1/uploads/${intent.body.id}`)).status, 200);
    assert.equal((await tusCreate(uploader.secret, 't.bin', 3)).status, 201);

    // Others' assets and uploads do not exist for it.
    refused(await api(w.url, uploader.secret, 'GET', `/v1/assets/${theirs.id}`), 'NOT_FOUND', 'get', 404);
    const other = await api(w.url, w.key, 'POST', '/v1/uploads', { name: 'o.bin', size: 3 });
    refused(
      await api(w.url, uploader.secret, 'GET', `/v1/uploads/${other.body.id}`),
      'NOT_FOUND',
      'state',
      404,
    );
    refused(
      await api(w.url, uploader.secret, 'POST', `/v1/uploads/${other.body.id}/complete`),
      'NOT_FOUND',
      'complete',
      404,
    );
    refused(await api(w.url, uploader.secret, 'GET', '/v1/assets'), 'SCOPE_DENIED', 'list');
    refused(await api(w.url, uploader.secret, 'DELETE', `/v1/assets/${mine.id}`), 'SCOPE_DENIED', 'delete');
    refused(await api(w.url, uploader.secret, 'GET', '/v1/files/docs/x.txt'), 'SCOPE_DENIED', 'named file');
    // Making a file public is changing access (write), not uploading.
    const open = await putFile(uploader.secret, 'site/page.txt', 'x', '?access=public');
    refused(open, 'SCOPE_DENIED', 'public named file');
    assert.equal(open.body.error.details.required, 'write');
    assert.equal((await putFile(uploader.secret, 'site/page.txt', 'x')).status, 201);
  });

  test('an upload key that sends content the account holds sees only what it declared itself', async () => {
    const bytes = randomBytes(300);
    const original = await uploadRaw(w, w.key, 'board-minutes.pdf', bytes, {
      contentType: 'application/pdf',
    });
    assert.equal(original.status, 201);
    const uploader = await key({ scopes: ['upload'] });
    const res = await uploadRaw(w, uploader.secret, 'my-copy.pdf', bytes, { contentType: 'application/pdf' });
    // Not "exists": that would tell it what the account holds.
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.status, 'created');
    assert.equal(res.body.asset.id, original.body.asset.id, 'stored once');
    assert.equal(res.body.asset.name, 'my-copy.pdf');
    const seen = await api(w.url, uploader.secret, 'GET', `/v1/assets/${res.body.asset.id}`);
    assert.equal(seen.body.name, 'my-copy.pdf');
    assert.ok(!JSON.stringify(seen.body).includes('board-minutes'));
    // Declaring the SHA-256 up front does not reveal it either.
    const declared = await api(w.url, uploader.secret, 'POST', '/v1/uploads', {
      name: 'again.pdf',
      size: bytes.length,
      sha256: sha256Hex(bytes),
    });
    assert.equal(declared.status, 201);
    assert.equal(declared.body.status, 'pending');
    // The account's own view is unchanged.
    assert.equal(
      (await api(w.url, w.key, 'GET', `/v1/assets/${res.body.asset.id}`)).body.name,
      'board-minutes.pdf',
    );
  });

  test("a user's upload of content stored first under another type shows and serves the type the user sent (h89)", async () => {
    const backend = await key({ scopes: ['upload'] });
    const reader = await key({ scopes: ['read'] });
    const photo = await sharp({
      create: { width: 12, height: 9, channels: 3, background: { r: 10, g: 160, b: 90 } },
    })
      .png()
      .toBuffer();
    // Someone's client stored the bytes first as an untyped blob.
    const first = await uploadRaw(w, w.key, 'export.bin', photo, { contentType: 'application/octet-stream' });
    assert.equal(first.status, 201);
    const minted = await api(w.url, backend.secret, 'POST', '/v1/upload-tokens', { subject: 'erin' });
    const token = minted.body.secret as string;
    const mine = await uploadRaw(w, token, 'erin-avatar.png', photo, { contentType: 'image/png' });
    assert.equal(mine.body.asset.id, first.body.asset.id, 'stored once');
    assert.equal(mine.body.asset.content_type, 'image/png', 'the upload answer');
    const id = first.body.asset.id as string;
    assert.equal((await api(w.url, token, 'GET', `/v1/assets/${id}`)).body.content_type, 'image/png');
    // The account's own record is the first upload's.
    assert.equal(
      (await api(w.url, w.key, 'GET', `/v1/assets/${id}`)).body.content_type,
      'application/octet-stream',
    );

    const uploadId = (await api(w.url, token, 'GET', '/v1/uploads?limit=10')).body.data[0].id as string;
    for (const [signer, body] of [
      [token, {}],
      [reader.secret, { upload_id: uploadId }],
    ] as const) {
      const signed = await api(w.url, signer, 'POST', `/v1/assets/${id}/signed-url`, body);
      assert.equal(signed.status, 200, JSON.stringify(signed.body));
      const served = await fetch(signed.body.url);
      assert.deepEqual(Buffer.from(await served.arrayBuffer()), photo);
      assert.equal(served.headers.get('content-type'), 'image/png');
      assert.match(served.headers.get('content-disposition') ?? '', /^inline; filename="erin-avatar\.png"/);
    }
    // The reader's link without the upload: the record, as before.
    const plain = await api(w.url, reader.secret, 'POST', `/v1/assets/${id}/signed-url`, {});
    const served = await fetch(plain.body.url);
    await served.arrayBuffer();
    assert.equal(served.headers.get('content-type'), 'application/octet-stream');
  });

  test("a back end signs a user's links as that user's upload of shared content shows it (upload_id), never the first uploader's name", async () => {
    const backend = await key({ scopes: ['upload'] });
    const reader = await key({ scopes: ['read'] });
    const mint = async (subject: string) => {
      const res = await api(w.url, backend.secret, 'POST', '/v1/upload-tokens', { subject });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.secret as string;
    };
    const photo = await sharp({
      create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 40, b: 90 } },
    })
      .png()
      .toBuffer();
    const carolToken = await mint('carol');
    const carol = await uploadRaw(w, carolToken, 'carol-divorce.png', photo, {
      contentType: 'image/png',
    });
    const dave = await uploadRaw(w, await mint('dave'), 'dave-cat.png', photo, { contentType: 'image/png' });
    assert.equal(dave.body.asset.id, carol.body.asset.id, 'stored once');
    const assetId = carol.body.asset.id as string;
    const listed = await api(w.url, reader.secret, 'GET', '/v1/uploads?limit=1000');
    const uploadOf = (name: string) =>
      listed.body.data.find((u: { name: string }) => u.name === name).id as string;

    const disposition = async (signer: string, body: Record<string, unknown>, route = 'signed-url') => {
      const signed = await api(w.url, signer, 'POST', `/v1/assets/${assetId}/${route}`, body);
      assert.equal(signed.status, 200, JSON.stringify(signed.body));
      const served = await fetch(signed.body.url);
      await served.arrayBuffer();
      assert.equal(served.status, 200);
      return served.headers.get('content-disposition');
    };
    // Without it, the asset's own view: the first uploader's name, whoever the link is for.
    assert.match((await disposition(reader.secret, { disposition: 'attachment' }))!, /carol-divorce/);
    // With dave's upload: his name, on a download and on a rendering, by either back-end key.
    for (const signer of [reader.secret, backend.secret]) {
      const attached = await disposition(signer, {
        disposition: 'attachment',
        upload_id: uploadOf('dave-cat.png'),
      });
      assert.match(attached!, /filename="dave-cat\.png"/);
      assert.ok(!attached!.includes('carol'));
      const rendered = await disposition(signer, { w: 20, upload_id: uploadOf('dave-cat.png') }, 'image-url');
      assert.match(rendered!, /dave-cat/);
      assert.ok(!rendered!.includes('carol'));
    }
    // Carol's own upload (the one that made the asset) shows her name, as the asset does.
    assert.match(
      (await disposition(reader.secret, {
        disposition: 'attachment',
        upload_id: uploadOf('carol-divorce.png'),
      }))!,
      /carol-divorce/,
    );

    // An upload of another asset, one the caller may not see, or none: 404, and no URL.
    const other = await uploadRaw(w, w.key, 'other.bin', randomBytes(50));
    const otherUpload = (await api(w.url, w.key, 'GET', '/v1/uploads?limit=1000')).body.data.find(
      (u: { name: string }) => u.name === 'other.bin',
    ).id;
    assert.equal(other.status, 201);
    for (const [signer, uploadId, label] of [
      [reader.secret, otherUpload, 'an upload of another asset'],
      // Carol's token sees the asset (through her upload), not Dave's upload of it.
      [carolToken, uploadOf('dave-cat.png'), 'an upload the caller cannot see'],
      [reader.secret, '00000000-0000-4000-8000-000000000000', 'no such upload'],
    ] as const) {
      for (const route of ['signed-url', 'image-url']) {
        const res = await api(w.url, signer, 'POST', `/v1/assets/${assetId}/${route}`, {
          upload_id: uploadId,
        });
        refused(res, 'NOT_FOUND', `${label} (${route})`, 404);
      }
    }

    // A key confined to a name prefix signs for an upload it may see of content first sent
    // outside its prefix (h77): shown through that upload, the asset is within its confinement.
    const confinedUploader = await key({ scopes: ['upload'], name_prefix: 'alice-' });
    const confinedReader = await key({ scopes: ['read'], name_prefix: 'alice-' });
    const alice = await uploadRaw(w, confinedUploader.secret, 'alice-cat.png', photo, {
      contentType: 'image/png',
    });
    assert.equal(alice.body.asset.id, assetId);
    const aliceUpload = (await api(w.url, w.key, 'GET', '/v1/uploads?limit=1000')).body.data.find(
      (u: { name: string }) => u.name === 'alice-cat.png',
    ).id as string;
    assert.equal((await api(w.url, confinedReader.secret, 'GET', `/v1/uploads/${aliceUpload}`)).status, 200);
    refused(
      await api(w.url, confinedReader.secret, 'POST', `/v1/assets/${assetId}/signed-url`, {}),
      'NOT_FOUND',
      'the asset itself, outside the prefix',
      404,
    );
    const aliceLink = await disposition(confinedReader.secret, {
      disposition: 'attachment',
      upload_id: aliceUpload,
    });
    assert.match(aliceLink!, /filename="alice-cat\.png"/);
    // Dave's upload is outside its prefix: not one it may see.
    refused(
      await api(w.url, confinedReader.secret, 'POST', `/v1/assets/${assetId}/signed-url`, {
        upload_id: uploadOf('dave-cat.png'),
      }),
      'NOT_FOUND',
      'an upload outside the prefix',
      404,
    );
  });

  test('a change of access answers the asset as GET shows it to the caller, and nothing to one that may not read it', async () => {
    const bytes = randomBytes(200);
    const original = await uploadRaw(w, w.key, 'payroll-2026.pdf', bytes, { contentType: 'application/pdf' });
    assert.equal(original.status, 201);
    const id = original.body.asset.id as string;
    const patch = (secret: string, access: string) =>
      api(w.url, secret, 'PATCH', `/v1/assets/${id}`, { access });

    // With read: the asset as recorded, as GET shows it.
    const member = await key({ scopes: ['read', 'write'] });
    const byMember = await patch(member.secret, 'public');
    assert.equal(byMember.status, 200, JSON.stringify(byMember.body));
    assert.equal(byMember.body.access, 'public');
    assert.deepEqual(byMember.body, (await api(w.url, member.secret, 'GET', `/v1/assets/${id}`)).body);

    // Without read, through its own upload of the content: as that upload declared it.
    const uploader = await key({ scopes: ['upload', 'write'] });
    const copy = await uploadRaw(w, uploader.secret, 'my-copy.pdf', bytes, {
      contentType: 'application/pdf',
    });
    assert.equal(copy.body.asset.id, id, 'stored once');
    const byUploader = await patch(uploader.secret, 'private');
    assert.equal(byUploader.status, 200, JSON.stringify(byUploader.body));
    assert.equal(byUploader.body.name, 'my-copy.pdf');
    assert.equal(byUploader.body.access, 'private');
    assert.ok(!JSON.stringify(byUploader.body).includes('payroll'), JSON.stringify(byUploader.body));
    assert.deepEqual(byUploader.body, (await api(w.url, uploader.secret, 'GET', `/v1/assets/${id}`)).body);

    // Without read and no upload of its own: changed, and nothing of the asset in the answer.
    const other = await key({ scopes: ['upload', 'write'] });
    refused(await api(w.url, other.secret, 'GET', `/v1/assets/${id}`), 'NOT_FOUND', 'get', 404);
    const byOther = await patch(other.secret, 'public');
    assert.equal(byOther.status, 204, JSON.stringify(byOther.body));
    assert.equal(byOther.body, undefined);
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${id}`)).body.access, 'public');
  });

  test('a write key deletes and changes access but does not read or upload; keys need admin', async () => {
    const writer = await key({ scopes: ['write'] });
    const asset = await createAsset(w, w.key, 'to-delete.txt', randomBytes(10), 'text/plain');
    refused(await api(w.url, writer.secret, 'GET', `/v1/assets/${asset.id}`), 'SCOPE_DENIED', 'get');
    refused(await uploadRaw(w, writer.secret, 'w.txt', 'w'), 'SCOPE_DENIED', 'upload');
    const patched = await api(w.url, writer.secret, 'PATCH', `/v1/assets/${asset.id}`, { access: 'public' });
    // Changed, but not read: no asset in the answer (see the next test).
    assert.equal(patched.status, 204, JSON.stringify(patched.body));
    assert.equal(patched.body, undefined);
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${asset.id}`)).body.access, 'public');
    assert.equal((await api(w.url, writer.secret, 'DELETE', `/v1/assets/${asset.id}`)).status, 204);
    refused(await api(w.url, writer.secret, 'POST', '/v1/keys', { name: 'x' }), 'FORBIDDEN', 'create key');
    refused(await api(w.url, writer.secret, 'GET', '/v1/upload-tokens'), 'SCOPE_DENIED', 'tokens');
    // Admin does everything.
    const admin = await key({ scopes: ['admin'] });
    assert.equal((await api(w.url, admin.secret, 'GET', '/v1/keys')).status, 200);
    assert.equal((await uploadRaw(w, admin.secret, 'by-admin.txt', 'a')).status, 201);
  });
});

describe('confinement', () => {
  test('a name prefix: uploads must use it; lists are filtered; others’ assets are 404', async () => {
    const outside = await createAsset(w, w.key, 'team-b-plan.txt', randomBytes(30), 'text/plain');
    const confined = await key({ scopes: ['read', 'upload', 'write'], name_prefix: 'team-a-' });
    const denied = await uploadRaw(w, confined.secret, 'team-b-notes.txt', 'x');
    refused(denied, 'NAME_PREFIX_DENIED', 'upload outside the prefix');
    assert.equal(denied.body.error.details.name_prefix, 'team-a-');
    refused(
      await api(w.url, confined.secret, 'POST', '/v1/uploads', {
        files: [
          { name: 'team-a-1.bin', size: 1 },
          { name: 'other.bin', size: 1 },
        ],
      }),
      'NAME_PREFIX_DENIED',
      'a batch with one name outside',
    );
    const inside = await uploadRaw(w, confined.secret, 'team-a-notes.txt', randomBytes(12));
    assert.equal(inside.status, 201);

    const names = async (query = '') =>
      (await api(w.url, confined.secret, 'GET', `/v1/assets?limit=1000${query}`)).body.data.map(
        (a: { name: string }) => a.name,
      );
    assert.deepEqual(await names(), ['team-a-notes.txt']);
    assert.deepEqual(await names('&prefix=team-a-n'), ['team-a-notes.txt']);
    assert.deepEqual(await names('&prefix=team'), ['team-a-notes.txt']);
    assert.deepEqual(await names('&prefix=team-b'), []);
    refused(await api(w.url, confined.secret, 'GET', `/v1/assets/${outside.id}`), 'NOT_FOUND', 'get', 404);
    refused(
      await api(w.url, confined.secret, 'DELETE', `/v1/assets/${outside.id}`),
      'NOT_FOUND',
      'delete',
      404,
    );
    const content = await fetch(`${w.url}/v1/assets/${outside.id}/content`, {
      headers: { 'x-api-key': confined.secret },
    });
    assert.equal(content.status, 404);
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${outside.id}`)).status, 200, 'not deleted');
  });

  test('a namespace: uploads are filed in it; other namespaces are refused or missing', async () => {
    await putFile(w.key, 'docs/readme.txt', 'the docs');
    const plain = await createAsset(w, w.key, 'loose.txt', randomBytes(9), 'text/plain');
    const confined = await key({ scopes: ['read', 'upload'], namespace: 'avatars' });
    const elsewhere = await putFile(confined.secret, 'docs/readme.txt', 'overwrite?');
    refused(elsewhere, 'NAMESPACE_DENIED', 'named file in another namespace');
    assert.equal(elsewhere.body.error.details.namespace, 'avatars');
    assert.equal((await putFile(confined.secret, 'avatars/me.txt', 'v1')).status, 201);
    // A plain upload becomes the next version of that name in its namespace.
    const plainUpload = await uploadRaw(w, confined.secret, 'me.txt', 'v2', { contentType: 'text/plain' });
    assert.equal(plainUpload.status, 201);
    const file = await api(w.url, w.key, 'GET', '/v1/files/avatars/me.txt');
    assert.equal(file.body.version, 2);
    assert.equal(file.body.asset.id, plainUpload.body.asset.id);

    const listed = await api(w.url, confined.secret, 'GET', '/v1/assets?limit=1000');
    assert.deepEqual(listed.body.data.map((a: { name: string }) => a.name).sort(), ['me.txt', 'me.txt']);
    refused(await api(w.url, confined.secret, 'GET', '/v1/files/docs/readme.txt'), 'NOT_FOUND', 'file', 404);
    refused(await api(w.url, confined.secret, 'GET', `/v1/assets/${plain.id}`), 'NOT_FOUND', 'asset', 404);
    assert.equal((await api(w.url, confined.secret, 'GET', '/v1/files/avatars/me.txt')).status, 200);
    assert.equal((await api(w.url, w.key, 'GET', '/v1/files/docs/readme.txt')).body.version, 1);
  });

  test('a name-prefix key with write deletes only assets nobody uploaded under another name', async () => {
    const confined = await key({ scopes: ['read', 'upload', 'write'], name_prefix: 'team-c-' });
    const bytes = randomBytes(40);
    const own = await uploadRaw(w, confined.secret, 'team-c-draft.bin', bytes);
    assert.equal(own.status, 201);
    // The admin uploads the same bytes under its own name: one asset, now the admin's too.
    const theirs = await uploadRaw(w, w.key, 'published.bin', bytes);
    assert.equal(theirs.body.asset.id, own.body.asset.id);
    const denied = await api(w.url, confined.secret, 'DELETE', `/v1/assets/${own.body.asset.id}`);
    refused(denied, 'NAME_PREFIX_DENIED', 'shared');
    assert.equal(denied.body.error.details.name_prefix, 'team-c-');
    refused(
      await api(w.url, confined.secret, 'PATCH', `/v1/assets/${own.body.asset.id}`, { access: 'public' }),
      'NAME_PREFIX_DENIED',
      'access of a shared one',
    );
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${own.body.asset.id}`)).status, 200, 'kept');
    // Uploaded again within the prefix: still its own.
    const mine = randomBytes(16);
    const alone = await uploadRaw(w, confined.secret, 'team-c-alone.bin', mine);
    const again = await uploadRaw(w, confined.secret, 'team-c-alone-again.bin', mine);
    assert.equal(again.body.asset.id, alone.body.asset.id);
    assert.equal(
      (await api(w.url, confined.secret, 'DELETE', `/v1/assets/${alone.body.asset.id}`)).status,
      204,
    );
  });

  test('a name-prefix key is refused 403, not 404, changing an asset it reads through its own upload', async () => {
    const confined = await key({ scopes: ['read', 'upload', 'write'], name_prefix: 'team-d-' });
    const bytes = randomBytes(40);
    // The admin uploads first, so the asset is named outside the prefix; the key's upload of
    // the same content is the same asset, which it reads through that upload.
    const theirs = await uploadRaw(w, w.key, 'admin-name.txt', bytes);
    const own = await uploadRaw(w, confined.secret, 'team-d-mine.txt', bytes);
    assert.equal(own.body.asset.id, theirs.body.asset.id);
    const id = own.body.asset.id;
    assert.equal((await api(w.url, confined.secret, 'GET', `/v1/assets/${id}`)).status, 200);
    const denied = await api(w.url, confined.secret, 'DELETE', `/v1/assets/${id}`);
    refused(denied, 'NAME_PREFIX_DENIED', 'delete of a shared one');
    assert.equal(denied.body.error.details.name_prefix, 'team-d-');
    refused(
      await api(w.url, confined.secret, 'PATCH', `/v1/assets/${id}`, { access: 'public' }),
      'NAME_PREFIX_DENIED',
      'access of a shared one',
    );
    assert.equal((await api(w.url, w.key, 'GET', `/v1/assets/${id}`)).status, 200, 'kept');
    // An asset it has no upload of stays missing to it.
    const other = await uploadRaw(w, w.key, 'admin-only.txt', randomBytes(40));
    refused(
      await api(w.url, confined.secret, 'DELETE', `/v1/assets/${other.body.asset.id}`),
      'NOT_FOUND',
      'other',
      404,
    );
  });

  test('a namespace key with write deletes only assets filed nowhere else', async () => {
    const confined = await key({ scopes: ['read', 'upload', 'write'], namespace: 'drafts' });
    const bytes = randomBytes(40);
    const own = await putFile(confined.secret, 'drafts/a.txt', bytes.toString('hex'));
    const shared = await putFile(w.key, 'published/a.txt', bytes.toString('hex'));
    assert.equal(shared.body.asset.id, own.body.asset.id, 'one asset, filed in two namespaces');
    refused(
      await api(w.url, confined.secret, 'DELETE', `/v1/assets/${own.body.asset.id}`),
      'NAMESPACE_DENIED',
      'shared',
    );
    const alone = await putFile(confined.secret, 'drafts/b.txt', randomBytes(16).toString('hex'));
    assert.equal(
      (await api(w.url, confined.secret, 'DELETE', `/v1/assets/${alone.body.asset.id}`)).status,
      204,
    );
  });
  test('a namespace key that uploads content already stored elsewhere sees only its own upload of it, and cannot change it', async () => {
    // Someone outside the namespace stored these bytes, with a name, a subject and metadata.
    const bytes = randomBytes(48);
    const token = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {
      subject: 'alice@corp',
      metadata: { ssn: '123-45-6789' },
    });
    assert.equal(token.status, 201, JSON.stringify(token.body));
    const theirs = await uploadRaw(w, token.body.secret, 'alice-passport.txt', bytes);
    assert.equal(theirs.status, 201, JSON.stringify(theirs.body));
    const id = theirs.body.asset.id;
    const confined = await key({ scopes: ['read', 'upload', 'write'], namespace: 'guesses' });
    assert.equal((await api(w.url, confined.secret, 'GET', `/v1/assets/${id}`)).status, 404);
    // The confined key uploads the same bytes: the one asset is now filed in its namespace too.
    const mine = await uploadRaw(w, confined.secret, 'guess.txt', bytes);
    assert.equal(mine.status, 201, JSON.stringify(mine.body));
    assert.equal(mine.body.asset.id, id);
    const seen = await api(w.url, confined.secret, 'GET', `/v1/assets/${id}`);
    assert.equal(seen.status, 200);
    const listed = await api(w.url, confined.secret, 'GET', '/v1/assets?limit=1000');
    const inList = listed.body.data.find((a: { id: string }) => a.id === id);
    for (const view of [seen.body, inList]) {
      assert.equal(view.name, 'guess.txt');
      assert.equal(view.subject, null);
      assert.deepEqual(view.metadata, {});
    }
    // Not its alone to change or delete.
    refused(
      await api(w.url, confined.secret, 'PATCH', `/v1/assets/${id}`, { access: 'public' }),
      'NAMESPACE_DENIED',
      'shared with an upload outside',
    );
    refused(await api(w.url, confined.secret, 'DELETE', `/v1/assets/${id}`), 'NAMESPACE_DENIED', 'shared');
    const kept = await api(w.url, w.key, 'GET', `/v1/assets/${id}`);
    assert.equal(kept.body.name, 'alice-passport.txt');
    assert.equal(kept.body.access, 'private');
  });
  test('a named file shows a confined key its asset as GET /v1/assets/{id} does, never the first uploader’s record (native and file service)', async () => {
    // A user's token stores the bytes first, with its name, subject and metadata; the admin
    // then files the same bytes where a confined key reads named files.
    const secretUpload = async (name: string, bytes: Buffer) => {
      const token = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {
        subject: 'hr-user-8',
        metadata: { dept: 'HR' },
      });
      assert.equal(token.status, 201, JSON.stringify(token.body));
      const stored = await uploadRaw(w, token.body.secret, name, bytes, { contentType: 'text/plain' });
      assert.equal(stored.status, 201, JSON.stringify(stored.body));
      return stored.body.asset.id as string;
    };
    const fileService = (secret: string, path: string) =>
      fetch(`${w.url}/api_gateway/file-service/${path}`, {
        headers: { authorization: `Bearer ${secret}` },
        redirect: 'manual',
      });

    // A namespace key: the namespace's own upload of the bytes, wherever it reads the asset.
    const text = `n-view ${randomBytes(8).toString('hex')}`;
    const id = await secretUpload('hidden.txt', Buffer.from(text));
    const filed = await putFile(w.key, 'n-view/vis.txt', text);
    assert.equal(filed.body.asset.id, id);
    const inNamespace = await key({ scopes: ['read', 'upload'], namespace: 'n-view' });
    const asAsset = await api(w.url, inNamespace.secret, 'GET', `/v1/assets/${id}`);
    assert.equal(asAsset.status, 200, JSON.stringify(asAsset.body));
    assert.deepEqual([asAsset.body.name, asAsset.body.subject, asAsset.body.metadata], ['vis.txt', null, {}]);
    for (const query of ['', '?version=1']) {
      const file = await api(w.url, inNamespace.secret, 'GET', `/v1/files/n-view/vis.txt${query}`);
      assert.equal(file.status, 200, JSON.stringify(file.body));
      assert.deepEqual(file.body.asset, asAsset.body, `the named file${query}`);
    }
    const seed = await fileService(inNamespace.secret, 'n-view/vis.txt');
    assert.equal(seed.status, 200);
    const secure = await fetch(((await seed.json()) as { secureFilePath: string }).secureFilePath);
    assert.equal(await secure.text(), text);
    assert.match(secure.headers.get('content-disposition') ?? '', /vis\.txt/);
    // The account's own view is the record, as before.
    const admin = await api(w.url, w.key, 'GET', '/v1/files/n-view/vis.txt');
    assert.deepEqual([admin.body.asset.name, admin.body.asset.subject], ['hidden.txt', 'hr-user-8']);

    // A name-prefix key: the asset is named outside its prefix, so it is missing to it, and so
    // is the named file within its prefix that holds it, through either API.
    const payroll = `payroll ${randomBytes(8).toString('hex')}`;
    const hidden = await secretUpload('ceo-salary.txt', Buffer.from(payroll));
    assert.equal((await putFile(w.key, 'docs/pub-report.txt', payroll)).body.asset.id, hidden);
    const prefixed = await key({ scopes: ['read', 'upload'], name_prefix: 'pub-' });
    refused(await api(w.url, prefixed.secret, 'GET', `/v1/assets/${hidden}`), 'NOT_FOUND', 'asset', 404);
    for (const query of ['', '?version=1']) {
      const file = await api(w.url, prefixed.secret, 'GET', `/v1/files/docs/pub-report.txt${query}`);
      refused(file, 'NOT_FOUND', `the named file${query}`, 404);
      assert.ok(!JSON.stringify(file.body).includes('ceo-salary'));
    }
    assert.equal((await fileService(prefixed.secret, 'docs/pub-report.txt')).status, 404);
    assert.equal((await fileService(prefixed.secret, 'docs/pub-report.txt/content')).status, 404);
    // Its version list only numbers the versions (documented): no asset record in it.
    const versions = await api(w.url, prefixed.secret, 'GET', '/v1/files/docs/pub-report.txt/versions');
    assert.deepEqual(
      versions.body.data.map((v: { version: number; asset_id: string }) => [v.version, v.asset_id]),
      [[1, hidden]],
    );
  });

  test('GET /v1/assets/{id}/files shows a caller who reads the asset through its own upload no named files of others', async () => {
    const text = `layoffs ${randomBytes(8).toString('hex')}`;
    const first = await putFile(w.key, 'board/layoffs.txt', text);
    assert.equal(first.status, 201, JSON.stringify(first.body));
    await putFile(w.key, 'board/layoffs.txt', `${text} v2`);
    const id = first.body.asset.id;
    const token = await api(w.url, w.key, 'POST', '/v1/upload-tokens', {});
    const prefixed = await key({ scopes: ['read', 'upload'], name_prefix: 'u1-' });
    for (const [who, secret, name] of [
      ['a token', token.body.secret, 'mine.txt'],
      ['a name-prefix key', prefixed.secret, 'u1-mine.txt'],
    ] as const) {
      const mine = await uploadRaw(w, secret, name, Buffer.from(text));
      assert.equal(mine.body.asset.id, id, who);
      const files = await api(w.url, secret, 'GET', `/v1/assets/${id}/files`);
      assert.equal(files.status, 200, who);
      assert.deepEqual(files.body.data, [], who);
    }
    const admin = await api(w.url, w.key, 'GET', `/v1/assets/${id}/files`);
    assert.deepEqual(
      admin.body.data.map((f: { namespace: string; name: string }) => `${f.namespace}/${f.name}`),
      ['board/layoffs.txt'],
    );
  });
});

describe('the seed APIs refuse out-of-scope keys in their own shapes', () => {
  let reader: { id: string; secret: string };
  let writer: { id: string; secret: string };
  before(async () => {
    reader = await key({ scopes: ['read'] });
    writer = await key({ scopes: ['write'] });
  });

  test('netiks: {"detail", "code": "scope_denied"}', async () => {
    const form = new FormData();
    form.append('file', new Blob(['x']), 'x.txt');
    const upload = await readJson(
      fetch(`${w.url}/api/v1/assets/developer-upload-file/`, {
        method: 'POST',
        headers: { 'x-api-key': reader.secret },
        body: form,
      }),
    );
    assert.equal(upload.status, 403, JSON.stringify(upload.body));
    assert.equal(upload.body.code, 'scope_denied');
    const asset = await createAsset(w, w.key, 'netiks.txt', 'n', 'text/plain');
    const read = await api(w.url, writer.secret, 'GET', `/api/v1/assets/${asset.id}/`);
    assert.equal(read.status, 403);
    assert.equal(read.body.code, 'scope_denied');
    assert.equal((await api(w.url, reader.secret, 'GET', `/api/v1/assets/${asset.id}/`)).status, 200);
  });

  test('netiks: confirming an upload needs the upload scope too, as the native complete does', async () => {
    const generated = await api(w.url, w.key, 'POST', '/api/v1/assets/developer-generate-presigned-url/', {
      files: [{ name: 'confirm-me.txt', type: 'text/plain', size: 4 }],
    });
    assert.equal(generated.status, 200, JSON.stringify(generated.body));
    const [p] = generated.body.presigned_urls;
    const put = await fetch(p.presigned_url, {
      method: 'PUT',
      headers: { 'content-type': p.content_type },
      body: 'abcd',
    });
    assert.equal(put.status, 200);
    const { id } = dbQuery<{ id: string }>(w, 'select id from uploads where storage_key = ?', p.s3_path)[0]!;
    refused(await api(w.url, reader.secret, 'POST', `/v1/uploads/${id}/complete`), 'SCOPE_DENIED', 'native');
    const confirm = (secret: string) =>
      api(w.url, secret, 'POST', '/api/v1/assets/developer-upload-file', {
        is_presigned: true,
        storage_url: p.storage_url,
        file_name: p.file_name,
        s3_path: p.s3_path,
        content_type: p.content_type,
      });
    const read = await confirm(reader.secret);
    assert.equal(read.status, 403, JSON.stringify(read.body));
    assert.equal(read.body.code, 'scope_denied');
    // A key that may upload, confined away from the file, does not see the upload at all.
    const elsewhere = await key({ scopes: ['read', 'upload'], name_prefix: 'inbox-' });
    const confined = await confirm(elsewhere.secret);
    assert.equal(confined.status, 404, JSON.stringify(confined.body));
    assert.equal(confined.body.code, 'not_found');
    assert.equal((await api(w.url, w.key, 'GET', `/v1/uploads/${id}`)).body.status, 'pending');
    assert.equal((await confirm(w.key)).status, 201);
  });

  test('Inspect: {"error": "Forbidden", "errorDescription"}', async () => {
    const res = await api(w.url, reader.secret, 'POST', '/api/inspect/v1/file/upload/presigned', {
      entityId: 'e1',
      contentType: 'text/plain',
      hash: sha256Hex('x'),
      name: 'x.txt',
      size: 1,
    });
    assert.equal(res.status, 403, JSON.stringify(res.body));
    assert.equal(res.body.error, 'Forbidden');
    assert.equal(typeof res.body.errorDescription, 'string');
  });

  test('ActiveStorage: {"detail", "error", "error_code": "SCOPE_DENIED"}', async () => {
    const res = await api(w.url, reader.secret, 'POST', '/api/v1/upload/direct', {
      blob: {
        filename: 'x.txt',
        content_type: 'text/plain',
        byte_size: 1,
        checksum: b64(md5Hex('x')),
      },
    });
    assert.equal(res.status, 403, JSON.stringify(res.body));
    assert.equal(res.body.error_code, 'SCOPE_DENIED');
  });

  test('file service: {"code": 403, "status": "false", "error_code"}; its namespace confinement too', async () => {
    const res = await readJson(
      fetch(`${w.url}/api_gateway/file-service/docs/x.txt`, {
        method: 'POST',
        headers: { authorization: `Bearer ${reader.secret}`, 'content-type': 'text/plain' },
        body: 'x',
      }),
    );
    assert.equal(res.status, 403, JSON.stringify(res.body));
    assert.deepEqual([res.body.code, res.body.status, res.body.error_code], [403, 'false', 'SCOPE_DENIED']);
    const confined = await key({ scopes: ['upload', 'read'], namespace: 'mine' });
    const other = await readJson(
      fetch(`${w.url}/api_gateway/file-service/theirs/x.txt`, {
        method: 'POST',
        headers: { authorization: `Bearer ${confined.secret}`, 'content-type': 'text/plain' },
        body: 'x',
      }),
    );
    assert.equal(other.status, 403);
    assert.equal(other.body.error_code, 'NAMESPACE_DENIED');
  });

  test('FileSpin: {"error": "SCOPE_DENIED"}', async () => {
    const res = await api(
      w.url,
      undefined,
      'GET',
      '/api/v1/assets/new/content_storage_url?filename=x.txt',
      undefined,
      { 'x-filespin-api-key': reader.secret },
    );
    assert.equal(res.status, 403, JSON.stringify(res.body));
    assert.equal(res.body.error, 'SCOPE_DENIED');
  });
});
