import type { ChildServer } from './children.js';
import { expectJson, type FileBody, type Sent, send } from './http-client.js';
import type { WharfServer } from './servers.js';

/** The few Wharf and baseline calls the scenarios make, with their status checks. */

export interface WharfAsset {
  id: string;
  size: number;
  sha256: string;
  md5: string;
}

export interface PendingUpload {
  status: 'pending';
  id: string;
  url: string;
  headers: Record<string, string>;
}

export interface Stored {
  id: string;
  size: number;
  sha256: string;
  md5: string;
  seconds: number;
}

const UPLOAD_TIMEOUT_MS = 600_000;

/** POST /v1/assets with a raw body. Content must be new: a deduplicated upload is an error here. */
export async function wharfUpload(
  wharf: WharfServer,
  name: string,
  body: FileBody | Buffer,
): Promise<Stored> {
  const sent = await send('POST', `${wharf.url}/v1/assets?name=${encodeURIComponent(name)}`, {
    headers: { 'content-type': 'application/octet-stream', 'x-api-key': wharf.apiKey },
    body,
    timeoutMs: UPLOAD_TIMEOUT_MS,
  });
  const { asset } = expectJson<{ asset: WharfAsset }>(sent, `Wharf upload ${name}`, 201);
  if (asset.size !== body.length) throw new Error(`Wharf stored ${asset.size} bytes of ${body.length}`);
  return { ...asset, seconds: sent.seconds };
}

export async function wharfDeleteAsset(wharf: WharfServer, id: string): Promise<void> {
  const sent = await send('DELETE', `${wharf.url}/v1/assets/${id}`, {
    headers: { 'x-api-key': wharf.apiKey },
  });
  if (sent.status !== 204) throw new Error(`Wharf delete ${id}: HTTP ${sent.status} ${sent.body.toString()}`);
}

/** POST /v1/uploads with {"files": [...]}: one presigned PUT per file. */
export async function wharfCreateUploads(
  wharf: WharfServer,
  files: { name: string; size: number; content_type: string }[],
): Promise<PendingUpload[]> {
  const sent = await send('POST', `${wharf.url}/v1/uploads`, {
    headers: { 'content-type': 'application/json', 'x-api-key': wharf.apiKey },
    body: Buffer.from(JSON.stringify({ files })),
  });
  const { uploads } = expectJson<{ uploads: PendingUpload[] }>(sent, 'Wharf create uploads', 201);
  if (uploads.length !== files.length || uploads.some((u) => u.status !== 'pending')) {
    throw new Error('Wharf create uploads: expected one pending upload per file');
  }
  return uploads;
}

/** PUT to a presigned URL with exactly the headers Wharf returned for it. */
export async function wharfPresignedPut(upload: PendingUpload, bytes: Buffer): Promise<Sent> {
  const sent = await send('PUT', upload.url, { headers: upload.headers, body: bytes });
  if (sent.status !== 200) throw new Error(`presigned PUT: HTTP ${sent.status} ${sent.body.toString()}`);
  return sent;
}

export async function wharfComplete(wharf: WharfServer, id: string): Promise<Sent> {
  const sent = await send('POST', `${wharf.url}/v1/uploads/${id}/complete`, {
    headers: { 'x-api-key': wharf.apiKey },
  });
  const result = expectJson<{ status: string }>(sent, `complete ${id}`, 200);
  if (result.status !== 'created') throw new Error(`complete ${id}: status ${result.status}, not created`);
  return sent;
}

export async function baselineUpload(baseline: ChildServer, body: FileBody | Buffer): Promise<Stored> {
  const sent = await send('POST', `${baseline.url}/upload`, {
    headers: { 'content-type': 'application/octet-stream' },
    body,
    timeoutMs: UPLOAD_TIMEOUT_MS,
  });
  const stored = expectJson<Omit<Stored, 'seconds'>>(sent, 'baseline upload', 201);
  if (stored.size !== body.length) throw new Error(`baseline stored ${stored.size} bytes of ${body.length}`);
  return { ...stored, seconds: sent.seconds };
}

export async function baselineDelete(baseline: ChildServer, id: string): Promise<void> {
  const sent = await send('DELETE', `${baseline.url}/files/${id}`);
  if (sent.status !== 204) throw new Error(`baseline delete ${id}: HTTP ${sent.status}`);
}
