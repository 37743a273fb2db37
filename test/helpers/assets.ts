import assert from 'node:assert/strict';
import type { Dirent } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { pendingWrites, queryPostgres, storedKeys } from './deployment.js';
import { api, type JsonResponse } from './http.js';
import type { TestWharf } from './wharf.js';

/** Shared steps of the upload flows, each one real HTTP against a started Wharf. */

export interface RawUploadOptions {
  contentType?: string;
  headers?: Record<string, string>;
  /** Extra query parameters (sha256, md5, content_type). */
  query?: Record<string, string>;
}

/** POST /v1/assets with the bytes as the raw body and `?name=`. */
export async function uploadRaw(
  w: TestWharf,
  key: string,
  name: string,
  bytes: Buffer | string,
  options: RawUploadOptions = {},
): Promise<JsonResponse> {
  const query = new URLSearchParams({ name, ...options.query });
  const headers: Record<string, string> = { 'x-api-key': key, ...options.headers };
  if (options.contentType !== undefined) headers['content-type'] = options.contentType;
  return readJson(
    fetch(`${w.url}/v1/assets?${query}`, {
      method: 'POST',
      headers,
      body: new Uint8Array(Buffer.from(bytes)),
    }),
  );
}

/** POST /v1/assets as multipart/form-data, the file in field `file` (what a browser form sends). */
export async function uploadForm(
  w: TestWharf,
  key: string,
  filename: string,
  bytes: Buffer | string,
  type = '',
  path = '/v1/assets',
): Promise<JsonResponse> {
  const form = new FormData();
  form.append('file', new Blob([new Uint8Array(Buffer.from(bytes))], { type }), filename);
  return readJson(fetch(w.url + path, { method: 'POST', headers: { 'x-api-key': key }, body: form }));
}

/**
 * A multipart body built byte by byte, for what FormData would escape or refuse
 * (control characters, raw UTF-8, path separators in the filename).
 */
export function rawMultipart(
  filenameBytes: Buffer,
  content: Buffer | string,
  field = 'file',
): { body: Buffer; contentType: string } {
  const boundary = '----wharf-test-boundary-7d1f';
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="`),
    filenameBytes,
    Buffer.from('"\r\nContent-Type: application/octet-stream\r\n\r\n'),
    Buffer.from(content),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

export async function postRawMultipart(
  w: TestWharf,
  key: string,
  filenameBytes: Buffer,
  content: Buffer | string,
): Promise<JsonResponse> {
  const { body, contentType } = rawMultipart(filenameBytes, content);
  return readJson(
    fetch(`${w.url}/v1/assets`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': contentType },
      body: new Uint8Array(body),
    }),
  );
}

/** An asset as the native API returns it. */
export interface AssetJson {
  id: string;
  name: string;
  content_type: string;
  size: number;
  sha256: string;
  md5: string;
  status: string;
  /** Counts the account's uploads alone (see numberUploads). */
  number: number;
  metadata: Record<string, unknown>;
  created_at: string;
  updated_at: string;
  content_url: string;
}

export interface Intent {
  status: 'pending';
  id: string;
  name: string;
  method: 'PUT';
  url: string;
  headers: Record<string, string>;
  expires_at: string;
}

/** POST /v1/uploads for one file; asserts a pending intent came back. */
export async function declare(w: TestWharf, key: string, file: Record<string, unknown>): Promise<Intent> {
  const res = await api(w.url, key, 'POST', '/v1/uploads', file);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.equal(res.body.status, 'pending');
  return res.body as Intent;
}

/** PUT to a presigned URL with exactly the headers it came with (plus any overrides). */
export function putPresigned(
  intent: { url: string; headers: Record<string, string> },
  bytes: Buffer | string,
  headers: Record<string, string> = {},
  url = intent.url,
): Promise<Response> {
  return fetch(url, {
    method: 'PUT',
    headers: { ...intent.headers, ...headers },
    body: new Uint8Array(Buffer.from(bytes)),
  });
}

export function complete(w: TestWharf, key: string, id: string): Promise<JsonResponse> {
  return api(w.url, key, 'POST', `/v1/uploads/${id}/complete`);
}

/** Declare, PUT and complete: returns the completion response. */
export async function presignedUpload(
  w: TestWharf,
  key: string,
  name: string,
  bytes: Buffer | string,
  contentType = 'application/octet-stream',
): Promise<JsonResponse> {
  const intent = await declare(w, key, { name, content_type: contentType, size: Buffer.byteLength(bytes) });
  const put = await putPresigned(intent, bytes);
  assert.equal(put.status, 200, await put.text());
  return complete(w, key, intent.id);
}

/** Uploads through POST /v1/assets and returns the asset, asserting it was created. */
export async function createAsset(
  w: TestWharf,
  key: string,
  name: string,
  bytes: Buffer | string,
  contentType = 'application/octet-stream',
): Promise<AssetJson> {
  const res = await uploadRaw(w, key, name, bytes, { contentType });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.asset;
}

/** Every file under `dir`, relative to it, sorted; [] when the directory does not exist. */
export async function filesUnder(dir: string): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { recursive: true, withFileTypes: true, encoding: 'utf8' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

/** Keys of the stored objects: files under blobs/objects locally, the bucket's keys on S3. */
export const objectFiles = (w: TestWharf) => storedKeys(w);
/** Writes in progress: temp files locally, open multipart uploads on S3. */
export const tmpFiles = (w: TestWharf) => pendingWrites(w);
/** The local store's metadata sidecars (S3 keeps the same facts on the object itself). */
export const metaFiles = (w: TestWharf) => filesUnder(join(w.dataDir, 'blobs', 'meta'));

/**
 * Reads the server's database through a separate connection (read-only on SQLite): what
 * was really recorded, not what the API chooses to show. Write the SQL both SQLite and
 * PostgreSQL accept, with `?` placeholders.
 */
export function dbQuery<T = Record<string, unknown>>(w: TestWharf, sql: string, ...params: unknown[]): T[] {
  if (/^postgres(ql)?:/.test(w.databaseUrl)) return queryPostgres<T>(w.databaseUrl, sql, params);
  const db = new Database(join(w.dataDir, 'wharf.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

/**
 * The server secret the test server generated and keeps in its database (every node of it
 * reads it there): what signs URLs, for tests that sign one as an older Wharf did.
 */
export function serverSecret(w: TestWharf): string {
  return dbQuery<{ value: string }>(w, 'select value from settings where name = ?', 'server_secret')[0]!
    .value;
}

export function countAssets(w: TestWharf): number {
  return dbQuery<{ n: number }>(w, 'select count(*) as n from assets')[0]!.n;
}

/**
 * Waits for the server to reach a state the client cannot observe directly (the server
 * side of an aborted request). Polls; never asserts how long anything took. By default 500
 * checks 10 ms apart; what waits on the server's own timers (a lease, a periodic sweep) polls
 * less often and for longer (`every`, `tries`).
 */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  what: string,
  { every = 10, tries = 500 }: { every?: number; tries?: number } = {},
): Promise<void> {
  for (let i = 0; i < tries; i += 1) {
    if (await check()) return;
    await sleep(every);
  }
  assert.fail(`never happened: ${what}`);
}

/** Status, headers and the parsed JSON body (or the text when it is not JSON) of a fetch. */
export async function readJson(pending: Response | Promise<Response>): Promise<JsonResponse> {
  const res = await pending;
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON: keep the text.
  }
  return { status: res.status, headers: res.headers, body };
}
