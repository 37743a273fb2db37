import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Upload as TusUpload } from 'tus-js-client';
import { type Backing, deployment, provision } from '../../test/helpers/deployment.js';
import { baselineUpload, type WharfAsset, wharfUpload } from '../lib/api.js';
import type { ChildServer } from '../lib/children.js';
import { expectJson, type FileBody, send } from '../lib/http-client.js';
import { rawBucket } from '../lib/raw-s3.js';
import { startBareTus, startBaseline, startWharf, type WharfServer } from '../lib/servers.js';

/**
 * One large upload through one flow, each on a fresh server process with an empty data
 * directory: the process's VmHWM then belongs to this upload alone, and no upload can be
 * deduplicated against an earlier round's copy of the same bytes.
 */

export const FLOWS = [
  'baseline',
  's3-raw',
  'direct',
  'multipart',
  'tus',
  'tus-bare',
  'tus-bare-verified',
] as const;
export type Flow = (typeof FLOWS)[number];

/**
 * The deployment Wharf runs on here, chosen as the tests choose it: embedded unless
 * WHARF_TEST_DEPLOYMENT=scaled (source /work/services/scaled.env or scripts/services), when
 * every Wharf server gets a fresh PostgreSQL database and S3 bucket of its own. The
 * reference is then the raw store: the AWS SDK uploading the file straight to a bucket.
 */
export const scaled = deployment === 'scaled';
export const REFERENCE: Flow = scaled ? 's3-raw' : 'baseline';

export interface FlowSettings {
  /** Bytes per multipart part (S3: ≥ 5 MiB except the last). */
  partBytes: number;
  /** Parts in flight at once. */
  partConcurrency: number;
  /** Part numbers per `POST /v1/multipart/{id}/parts` call. */
  signBatch: number;
  /** Bytes per tus PATCH request. */
  tusChunkBytes: number;
}

export interface Source {
  path: string;
  /** SHA-256 (hex) of the source's first `size` bytes. */
  sha256: string;
  size: number;
}

export interface FlowResult {
  seconds: number;
  /** VmHWM right after start-up, and after the upload. */
  idleBytes: number;
  peakBytes: number;
  /** What the server says it stored. */
  sha256: string;
  size: number;
  /** Where the time went, for the log (multipart: sending parts vs completing). */
  detail?: string | undefined;
}

interface Stored {
  sha256: string;
  size: number;
  detail?: string | undefined;
}

/** What a server that reports no digests stored, read back after the timing. */
interface Unverified {
  stored: () => Promise<Stored>;
}

const UPLOAD_TIMEOUT_MS = 1_800_000;

/** Starts a fresh server for `flow` under `dir`, uploads `source` once, stops it, deletes `dir`. */
export async function runFlow(
  flow: Flow,
  source: Source,
  dir: string,
  settings: FlowSettings,
): Promise<FlowResult> {
  await mkdir(dir, { recursive: true });
  let server: ChildServer | undefined;
  let backing: Backing | undefined;
  try {
    if (flow === 'baseline') {
      const baseline = await startBaseline({ dataDir: dir, name: 'baseline (large)' });
      server = baseline;
      return await measured(baseline, source, async () => {
        const stored = await baselineUpload(baseline, wholeFile(source));
        return { sha256: stored.sha256, size: stored.size };
      });
    }
    if (flow === 'tus-bare' || flow === 'tus-bare-verified') {
      const verify = flow === 'tus-bare-verified';
      const bare = await startBareTus({ dataDir: dir, name: `${flow} (large)`, verify });
      server = bare;
      return await measured(bare, source, async () => {
        const url = await tusClientUpload(`${bare.url}/files/`, {}, source, settings);
        const path = join(dir, url.slice(url.lastIndexOf('/') + 1));
        if (verify) return { stored: () => reportedDigest(path) };
        // The plain reference hashes nothing: its file is read back and hashed after the timing.
        return { stored: () => hashFile(path) };
      });
    }
    if (flow === 's3-raw') return await rawS3Upload(source, settings);
    backing = await provision();
    const wharf = await startWharf({ dataDir: dir, name: `wharf (large, ${flow})`, env: backing.env });
    server = wharf;
    const upload = { direct: directUpload, multipart: multipartUpload, tus: tusUpload }[flow as 'tus'];
    return await measured(wharf, source, () => upload(wharf, source, settings));
  } catch (err) {
    // A 500 says nothing by itself; the server's log says why.
    const output = server?.output().trim();
    if (err instanceof Error && output)
      err.message += `\n--- ${server!.name} output (tail) ---\n${output.slice(-2000)}`;
    throw err;
  } finally {
    await server?.stop();
    await backing?.release();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The scaled reference: the AWS SDK's managed upload (lib-storage) sending the file straight
 * to a fresh bucket, with the multipart flow's part size and concurrency, then the object read
 * back and hashed after the timing. No server process of ours: no peak RSS.
 */
async function rawS3Upload(source: Source, settings: FlowSettings): Promise<FlowResult> {
  const { GetObjectCommand } = await import('@aws-sdk/client-s3');
  const { Upload } = await import('@aws-sdk/lib-storage');
  const { s3, bucket, drop } = await rawBucket();
  try {
    const start = performance.now();
    await new Upload({
      client: s3,
      params: {
        Bucket: bucket,
        Key: 'large.bin',
        Body: createReadStream(source.path, { start: 0, end: source.size - 1, highWaterMark: 1 << 20 }),
        ContentType: 'application/octet-stream',
      },
      partSize: settings.partBytes,
      queueSize: settings.partConcurrency,
    }).done();
    const seconds = (performance.now() - start) / 1000;
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'large.bin' }));
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of got.Body as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
    }
    const sha256 = hash.digest('hex');
    if (size !== source.size || sha256 !== source.sha256) {
      throw new Error(
        `s3-raw stored ${size} bytes with SHA-256 ${sha256}; sent ${source.size} (${source.sha256})`,
      );
    }
    return { seconds, idleBytes: 0, peakBytes: 0, sha256, size };
  } finally {
    await drop();
  }
}

async function measured(
  server: ChildServer,
  source: Source,
  upload: () => Promise<Stored | Unverified>,
): Promise<FlowResult> {
  const idleBytes = (await server.memory()).peakBytes;
  const start = performance.now();
  const result = await upload();
  const seconds = (performance.now() - start) / 1000;
  const peakBytes = (await server.memory()).peakBytes;
  const stored = 'stored' in result ? await result.stored() : result;
  if (stored.size !== source.size || stored.sha256 !== source.sha256) {
    throw new Error(
      `${server.name} stored ${stored.size} bytes with SHA-256 ${stored.sha256}; ` +
        `sent ${source.size} bytes with SHA-256 ${source.sha256}`,
    );
  }
  return { seconds, idleBytes, peakBytes, sha256: stored.sha256, size: stored.size, detail: stored.detail };
}

/** The source's first `size` bytes as one streamed body; no prefix: every server here starts empty. */
function wholeFile(source: Source): FileBody {
  return range(source, 0, source.size);
}

function range(source: Source, offset: number, length: number): FileBody {
  return { prefix: Buffer.alloc(0), file: source.path, fileSize: source.size, offset, length };
}

// ---- (1) Direct: the raw body of one POST /v1/assets ----

async function directUpload(wharf: WharfServer, source: Source): Promise<{ sha256: string; size: number }> {
  return wharfUpload(wharf, 'large.bin', wholeFile(source));
}

// ---- (2) Multipart: create → sign parts in batches → PUT parts concurrently → complete ----

interface SignedPartUrl {
  partNumber: number;
  url: string;
  headers: Record<string, string>;
}

async function multipartUpload(wharf: WharfServer, source: Source, settings: FlowSettings): Promise<Stored> {
  const started = performance.now();
  const auth = { 'x-api-key': wharf.apiKey };
  const json = { ...auth, 'content-type': 'application/json' };
  const created = await send('POST', `${wharf.url}/v1/multipart`, {
    headers: json,
    body: jsonBody({ name: 'large.bin', content_type: 'application/octet-stream', size: source.size }),
  });
  const { id } = expectJson<{ id: string }>(created, 'create multipart upload', 200, 201);

  const partCount = Math.max(1, Math.ceil(source.size / settings.partBytes));
  // Signed a batch at a time, as a client that signs ahead of its workers would.
  const batches = new Map<number, Promise<Map<number, SignedPartUrl>>>();
  const signed = (partNumber: number): Promise<SignedPartUrl> => {
    const batch = Math.floor((partNumber - 1) / settings.signBatch);
    let pending = batches.get(batch);
    if (!pending) {
      const first = batch * settings.signBatch + 1;
      const numbers = Array.from(
        { length: Math.min(settings.signBatch, partCount - first + 1) },
        (_, i) => first + i,
      );
      pending = signParts(wharf, id, numbers);
      batches.set(batch, pending);
    }
    return pending.then((urls) => {
      const url = urls.get(partNumber);
      if (!url) throw new Error(`multipart ${id}: part ${partNumber} was not signed`);
      return url;
    });
  };

  const etags: string[] = new Array(partCount);
  let next = 1;
  let failure: unknown;
  const worker = async () => {
    while (failure === undefined && next <= partCount) {
      const partNumber = next++;
      try {
        const part = await signed(partNumber);
        const offset = (partNumber - 1) * settings.partBytes;
        const length = Math.min(settings.partBytes, source.size - offset);
        const sent = await send('PUT', part.url, {
          headers: part.headers,
          body: range(source, offset, length),
          timeoutMs: UPLOAD_TIMEOUT_MS,
        });
        const etag = sent.headers.etag;
        if (sent.status !== 200 || typeof etag !== 'string') {
          throw new Error(
            `PUT part ${partNumber}: HTTP ${sent.status} ${sent.body.toString().slice(0, 300)}`,
          );
        }
        etags[partNumber - 1] = etag;
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(settings.partConcurrency, partCount) }, worker));
  if (failure !== undefined) throw failure;

  const partsDone = performance.now();
  const completed = await send('POST', `${wharf.url}/v1/multipart/${id}/complete`, {
    headers: json,
    body: jsonBody({ parts: etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })) }),
    timeoutMs: UPLOAD_TIMEOUT_MS,
  });
  const asset = assetOf(expectJson<unknown>(completed, `complete multipart ${id}`, 200, 201));
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const detail = `${partCount} parts ${s(partsDone - started)}, complete ${s(performance.now() - partsDone)}`;
  return { sha256: asset.sha256, size: asset.size, detail };
}

async function signParts(
  wharf: WharfServer,
  id: string,
  partNumbers: number[],
): Promise<Map<number, SignedPartUrl>> {
  const sent = await send('POST', `${wharf.url}/v1/multipart/${id}/parts`, {
    headers: { 'x-api-key': wharf.apiKey, 'content-type': 'application/json' },
    body: jsonBody({ partNumbers }),
  });
  const answer = expectJson<unknown>(sent, `sign parts ${partNumbers.join(',')}`, 200, 201);
  const parts = readSignedParts(answer);
  return new Map(parts.map((p) => [p.partNumber, p]));
}

/**
 * The contract names "a URL (and headers) per part"; this reads `{parts: [...]}` or a bare
 * array of `{partNumber | PartNumber, url, headers?}`.
 */
function readSignedParts(answer: unknown): SignedPartUrl[] {
  const list = Array.isArray(answer) ? answer : (answer as { parts?: unknown }).parts;
  if (!Array.isArray(list)) throw new Error(`sign parts: unexpected answer ${JSON.stringify(answer)}`);
  return list.map((item: Record<string, unknown>) => {
    const partNumber = Number(item.partNumber ?? item.PartNumber);
    const url = item.url;
    if (!Number.isInteger(partNumber) || typeof url !== 'string') {
      throw new Error(`sign parts: unexpected part ${JSON.stringify(item)}`);
    }
    return { partNumber, url, headers: (item.headers as Record<string, string> | undefined) ?? {} };
  });
}

// ---- (3) tus: tus-js-client from Node, the file read by path in large PATCH chunks ----

async function tusUpload(
  wharf: WharfServer,
  source: Source,
  settings: FlowSettings,
): Promise<{ sha256: string; size: number }> {
  let last: TusResponse | undefined;
  await tusClientUpload(`${wharf.url}/v1/tus/`, { 'x-api-key': wharf.apiKey }, source, settings, (r) => {
    last = r;
  });
  return tusAsset(wharf, last!);
}

type TusResponse = { getHeader(name: string): string | undefined; getBody(): string };

/** One upload by tus-js-client, the file read by path; resolves with the upload's URL. */
function tusClientUpload(
  endpoint: string,
  headers: Record<string, string>,
  source: Source,
  settings: FlowSettings,
  onLast?: (response: TusResponse) => void,
): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const upload = new TusUpload(createReadStream(source.path, { start: 0, end: source.size - 1 }), {
      endpoint,
      headers,
      metadata: { filename: 'large.bin', filetype: 'application/octet-stream' },
      chunkSize: settings.tusChunkBytes,
      // A failure is a failed measurement, not something to retry into a slower figure.
      retryDelays: [],
      storeFingerprintForResuming: false,
      onSuccess: ({ lastResponse }) => {
        onLast?.(lastResponse);
        resolve(upload.url!);
      },
      onError: reject,
    });
    upload.start();
  });
}

/** Size and SHA-256 of a file, read once. */
async function hashFile(path: string): Promise<Stored> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** The hashing reference's file, whose SHA-256 must be the one it computed as bytes arrived. */
async function reportedDigest(path: string): Promise<Stored> {
  const reported = JSON.parse(await readFile(`${path}.digests`, 'utf8')) as { sha256: string };
  const stored = await hashFile(path);
  if (reported.sha256 !== stored.sha256) {
    throw new Error(
      `the hashing tus reference reported SHA-256 ${reported.sha256}, its file has ${stored.sha256}`,
    );
  }
  return stored;
}

/**
 * The asset a finished tus upload became: named by the last PATCH response when the server
 * says so there, otherwise the account's only asset (every server here starts empty).
 */
async function tusAsset(
  wharf: WharfServer,
  last: { getHeader(name: string): string | undefined; getBody(): string },
): Promise<{ sha256: string; size: number }> {
  const body = last.getBody();
  if (body) {
    try {
      return assetOf(JSON.parse(body));
    } catch {
      // Not an asset: look it up below.
    }
  }
  const assetId = last.getHeader('wharf-asset-id') ?? last.getHeader('x-asset-id');
  const sent = assetId
    ? await send('GET', `${wharf.url}/v1/assets/${assetId}`, { headers: { 'x-api-key': wharf.apiKey } })
    : await send('GET', `${wharf.url}/v1/assets`, { headers: { 'x-api-key': wharf.apiKey } });
  const answer = expectJson<unknown>(sent, 'find the tus asset', 200);
  const list = (answer as { data?: unknown }).data;
  if (Array.isArray(list)) {
    if (list.length !== 1) throw new Error(`tus: expected one asset, the account holds ${list.length}`);
    return assetOf(list[0]);
  }
  return assetOf(answer);
}

function assetOf(answer: unknown): WharfAsset {
  const candidate = (answer as { asset?: unknown }).asset ?? answer;
  const asset = candidate as Partial<WharfAsset>;
  if (typeof asset.sha256 !== 'string' || typeof asset.size !== 'number') {
    throw new Error(`expected an asset, got ${JSON.stringify(answer).slice(0, 300)}`);
  }
  return asset as WharfAsset;
}

function jsonBody(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}
