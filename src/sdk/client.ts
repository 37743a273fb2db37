import { WharfApiError, WharfError } from './errors.js';
import { type HasherFactory, paced, portableSha256, sha256Hex } from './hash.js';
import {
  type BodyFactory,
  idempotent,
  type RequestOptions,
  Transport,
  type TransportOptions,
} from './http.js';
import { type ProgressListener, ProgressMeter } from './progress.js';
import { tap } from './sources.js';
import { TusClient } from './tus.js';
import type {
  Access,
  Account,
  Asset,
  AssetFile,
  AssetList,
  AssetResult,
  CreatedKey,
  Delivery,
  DeliveryDetail,
  DeliveryPage,
  DeliveryStatus,
  EventPage,
  ExistingMultipart,
  FileDeclaration,
  FileVersion,
  FileVersionEntry,
  ImageUrlOptions,
  Key,
  KeyList,
  KeyRequest,
  MintedUploadToken,
  MultipartRequest,
  MultipartResult,
  MultipartUpload,
  ReplayResult,
  SignedImageUrl,
  SignedPart,
  SignedUrl,
  StoredPart,
  Upload,
  UploadBatch,
  UploadItem,
  UploadList,
  UploadToken,
  UploadTokenList,
  UploadTokenRequest,
  Webhook,
  WebhookChanges,
  WebhookRequest,
  WebhookWithSecret,
  WharfEvent,
} from './types.js';
import { type UploadInput, type UploadOptions, type UploadResult, uploadWith } from './upload.js';

export interface ClientOptions extends TransportOptions {
  /** The SHA-256 to hash with (default: portable JavaScript; `sdk/node.js` passes node:crypto's). */
  sha256?: HasherFactory;
}

export interface ListAssetsQuery {
  limit?: number;
  cursor?: string;
  /** Only names starting with this. */
  prefix?: string;
  /** An exact type (`image/png`) or a family (`image/*`). */
  content_type?: string;
  /** Only assets created at or after this instant (ISO 8601). */
  created_after?: string;
  /** Only assets created before this instant (ISO 8601). */
  created_before?: string;
}

export interface ListUploadsQuery {
  limit?: number;
  cursor?: string;
  /** `expired`: ended without an asset (expired, cancelled or failed; each upload’s `ended` says which). */
  status?: 'pending' | 'completed' | 'expired';
  /**
   * Look up a file (with `sha256` or `head_sha256`): only the caller's pending tus and Resumable
   * Uploads for HTTP uploads of a file of exactly this size, each with its `offset`.
   */
  size?: number;
  sha256?: string;
  head_sha256?: string;
}

export interface Download {
  /** The bytes; for a whole file, the stream fails at its end if they are not the asset's SHA-256. */
  body: ReadableStream<Uint8Array>;
  status: number;
  size: number | undefined;
  contentType: string | undefined;
  /**
   * Hex SHA-256 a whole body is checked against: `options.sha256`, else the one the answer
   * declares (Repr-Digest or ETag), else the asset's (its record, fetched when the answer
   * came from storage a download was redirected to, which declares none).
   */
  sha256: string | undefined;
}

export interface DownloadOptions {
  /** One byte range, inclusive (`{ start: 0, end: 99 }` is the first 100 bytes). */
  range?: { start: number; end?: number };
  /**
   * The asset's SHA-256 (hex or base64), when the caller holds its record: the whole body is
   * checked against it, and no record is fetched for a redirected download.
   */
  sha256?: string;
  signal?: AbortSignal;
  onProgress?: ProgressListener;
}

type Query = RequestOptions['query'];

/**
 * A client of Wharf's native API.
 *
 * ```ts
 * const wharf = new Wharf({ url: 'https://files.example.com', key: process.env.WHARF_KEY });
 * const { asset } = await wharf.upload(file, { onProgress: (p) => console.log(p.bytes, p.total) });
 * ```
 */
export class Wharf {
  readonly http: Transport;
  readonly sha256: HasherFactory;
  readonly assets: AssetsApi;
  readonly uploads: UploadsApi;
  readonly multipart: MultipartApi;
  readonly tus: TusClient;
  readonly files: FilesApi;
  readonly keys: KeysApi;
  readonly uploadTokens: UploadTokensApi;
  readonly webhooks: WebhooksApi;
  readonly events: EventsApi;
  readonly account: AccountApi;

  constructor(options: ClientOptions) {
    this.http = new Transport(options);
    this.sha256 = options.sha256 ?? portableSha256;
    this.assets = new AssetsApi(this.http, this.sha256);
    this.uploads = new UploadsApi(this.http);
    this.multipart = new MultipartApi(this.http);
    this.tus = new TusClient(this.http);
    this.files = new FilesApi(this.http);
    this.keys = new KeysApi(this.http);
    this.uploadTokens = new UploadTokensApi(this.http);
    this.webhooks = new WebhooksApi(this.http);
    this.events = new EventsApi(this.http);
    this.account = new AccountApi(this.http);
  }

  get url(): string {
    return this.http.baseUrl;
  }

  /**
   * Uploads a file the best way for its size: directly through Wharf, presigned to storage, or
   * in parts (resumable); see UploadOptions for the thresholds. Content the account already
   * holds is not sent again (its SHA-256 is declared first).
   */
  upload(input: UploadInput, options: UploadOptions = {}): Promise<UploadResult> {
    return uploadWith(this, input, options);
  }
}

function path(strings: TemplateStringsArray, ...values: string[]): string {
  return strings.reduce(
    (out, s, i) => out + s + (i < values.length ? encodeURIComponent(values[i]!) : ''),
    '',
  );
}

export class AssetsApi {
  constructor(
    private readonly http: Transport,
    private readonly sha256: HasherFactory,
  ) {}

  list(query: ListAssetsQuery = {}, signal?: AbortSignal): Promise<AssetList> {
    return this.http.json('GET', '/v1/assets', { query: query as Query, signal });
  }

  /** Every asset matching `query`, page after page (newest first). */
  async *iterate(query: Omit<ListAssetsQuery, 'cursor'> = {}, signal?: AbortSignal): AsyncGenerator<Asset> {
    let cursor: string | undefined;
    do {
      const page = await this.list({ ...query, ...(cursor && { cursor }) }, signal);
      yield* page.data;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  get(id: string, signal?: AbortSignal): Promise<Asset> {
    return this.http.json('GET', path`/v1/assets/${id}`, { signal });
  }

  /** The named files the asset is a version of, each with its versions. */
  async files(id: string, signal?: AbortSignal): Promise<AssetFile[]> {
    return (await this.http.json<{ data: AssetFile[] }>('GET', path`/v1/assets/${id}/files`, { signal }))
      .data;
  }

  /**
   * Changes the asset's access; resolves to the asset as `get` shows it to this key, or to
   * undefined when the key may not read it (`write` without `read`, and no upload of its own).
   */
  setAccess(id: string, access: Access): Promise<Asset | undefined> {
    return this.http.json('PATCH', path`/v1/assets/${id}`, { json: { access } });
  }

  async delete(id: string): Promise<void> {
    await this.http.request('DELETE', path`/v1/assets/${id}`);
  }

  /**
   * A URL that downloads the asset without a key: for `expires_in` seconds (default 3600), or
   * until `expires_at` (RFC 3339; not both), which gives the same URL every time it is asked.
   */
  signedUrl(
    id: string,
    options: {
      expires_in?: number;
      expires_at?: string;
      disposition?: 'inline' | 'attachment';
      /** Show the asset as this upload of it does: its file name and type (docs/integration.md). */
      upload_id?: string;
    } = {},
  ) {
    return this.http.json<SignedUrl>('POST', path`/v1/assets/${id}/signed-url`, { json: options });
  }

  /**
   * A signed URL of a rendering (an `<img>`'s `src`, a CDN's origin) that works without a key:
   * `POST /v1/assets/{id}/image-url` (docs/images.md). Give `expires_at` rounded (the end of the
   * hour or day) for the same URL on every render, so caches work.
   */
  imageUrl(id: string, options: ImageUrlOptions = {}) {
    return this.http.json<SignedImageUrl>('POST', path`/v1/assets/${id}/image-url`, { json: options });
  }

  /**
   * Uploads bytes straight through Wharf (`POST /v1/assets`, a raw body) with no hashing first.
   * `sha256` (hex or base64), when given, is declared and verified by Wharf.
   */
  uploadRaw(
    body: BodyFactory,
    options: { name: string; contentType?: string; size?: number; sha256?: string; signal?: AbortSignal },
  ): Promise<AssetResult> {
    return this.http.json('POST', '/v1/assets', {
      query: { name: options.name, sha256: options.sha256 },
      headers: {
        'content-type': options.contentType || 'application/octet-stream',
        ...(options.size !== undefined && { 'content-length': String(options.size) }),
        // Its retries (a lost answer) get the first answer, not a second upload.
        ...idempotent(),
      },
      body,
      signal: options.signal,
    });
  }

  /**
   * The content as a stream. Redirects (S3 downloads) are followed without the key: a
   * presigned URL needs none, and the key must not travel to another host.
   */
  async download(id: string, options: DownloadOptions = {}): Promise<Download> {
    const { range, signal } = options;
    const headers: Record<string, string> = range ? { range: `bytes=${range.start}-${range.end ?? ''}` } : {};
    let response = await this.http.request('GET', path`/v1/assets/${id}/content`, {
      headers,
      signal,
      redirect: 'manual',
    });
    if (response.type === 'opaqueredirect') {
      // A browser hides the Location of a manual redirect: ask for a signed URL instead.
      const signed = await this.signedUrl(id, { expires_in: 300 });
      response = await this.http.request('GET', signed.url, { headers, signal, auth: false });
    } else if (response.status >= 300 && response.status < 400) {
      const location = response.headers.get('location');
      if (!location) throw new WharfError('UNEXPECTED_RESPONSE', 'A redirect without a Location.');
      await response.body?.cancel();
      response = await this.http.request('GET', new URL(location, this.http.baseUrl).toString(), {
        headers,
        signal,
        auth: false,
      });
    }
    // A whole download is only the asset when it is exactly 200: a 206 (a proxy's cached
    // range), a 203 or a redirect left unfollowed carries other bytes, and passing it on as the
    // asset skipped the check below. A range may come whole (200, checked) or as asked (206).
    const whole = response.status === 200;
    if (!whole && !(range && response.status === 206)) {
      await response.body?.cancel();
      throw new WharfError(
        'UNEXPECTED_RESPONSE',
        `The download answered ${response.status}, not ${range ? '200 or 206' : '200'}: its bytes are not the asset.`,
      );
    }
    const length = response.headers.get('content-length');
    const size = length === null ? undefined : Number(length);
    let sha256 = options.sha256 === undefined ? declaredSha256(response.headers) : sha256Hex(options.sha256);
    if (options.sha256 !== undefined && sha256 === undefined) {
      await response.body?.cancel();
      throw new WharfError('INVALID_DIGEST', 'sha256 must be 64 hex digits or base64.');
    }
    if (whole && sha256 === undefined) {
      // Storage a download is redirected to (S3) declares no SHA-256 (its ETag is an MD5, or a
      // multipart one): the bytes are checked against the asset's record all the same, or
      // whatever the bucket answered would be taken as the asset.
      try {
        const recorded: unknown = (await this.get(id, signal)).sha256;
        sha256 = typeof recorded === 'string' ? sha256Hex(recorded) : undefined;
        // Never a whole download left unchecked.
        if (sha256 === undefined) {
          throw new WharfError(
            'UNEXPECTED_RESPONSE',
            'The asset record has no SHA-256 to check the download by.',
          );
        }
      } catch (err) {
        await response.body?.cancel();
        throw err;
      }
    }
    const meter = new ProgressMeter(size, options.onProgress);
    meter.start('downloading');
    let body: ReadableStream<Uint8Array> =
      response.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    if (whole && sha256 !== undefined) {
      body = body.pipeThrough(verifying(sha256, this.sha256));
    }
    // Ended whole (and verified, for a whole download): the final count, then `done`.
    body = tap(
      body,
      (chunk) => meter.add(chunk.byteLength),
      () => meter.start('done'),
    );
    return {
      body,
      status: response.status,
      size,
      contentType: response.headers.get('content-type') ?? undefined,
      sha256,
    };
  }
}

/** The bytes in a body fetch reads itself, when they can be told without reading it. */
function bodySize(body: BodyInit): number | undefined {
  if (typeof Blob !== 'undefined' && body instanceof Blob) return body.size;
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return body.byteLength;
  if (typeof body === 'string') return new TextEncoder().encode(body).byteLength;
  return undefined;
}

/** The SHA-256 an answer declares: Repr-Digest (sha-256), else a quoted hex ETag. */
function declaredSha256(headers: Headers): string | undefined {
  const repr = /sha-256=:([A-Za-z0-9+/=]+):/.exec(headers.get('repr-digest') ?? '')?.[1];
  if (repr) return sha256Hex(repr);
  const etag = /^"([0-9a-f]{64})"$/.exec(headers.get('etag') ?? '')?.[1];
  return etag;
}

/** Passes the bytes on and fails the stream at its end if their SHA-256 is not `expected`. */
function verifying(expected: string, factory: HasherFactory): TransformStream<Uint8Array, Uint8Array> {
  const hasher = factory();
  // Paced as an upload's hashing is: a fast download's chunks, queued, come without a task between.
  const update = paced(hasher);
  return new TransformStream({
    async transform(chunk, controller) {
      await update(chunk);
      controller.enqueue(chunk);
    },
    flush(controller) {
      const actual = hasher.hex();
      if (actual !== expected) {
        controller.error(
          new WharfError('INTEGRITY_ERROR', `The downloaded bytes hash to ${actual}, not ${expected}.`),
        );
      }
    },
  });
}

export class UploadsApi {
  constructor(private readonly http: Transport) {}

  /**
   * Declares one file: a presigned PUT to make, or the asset that already holds its content.
   * Sent with an Idempotency-Key of its own, kept across its retries: a retry after a lost
   * answer gets that answer, not a second upload.
   */
  create(file: FileDeclaration, signal?: AbortSignal): Promise<UploadItem> {
    return this.http.json('POST', '/v1/uploads', { json: file, signal, headers: idempotent() });
  }

  /** Declares up to WHARF_MAX_FILES_PER_REQUEST files at once; the answer keeps their order. */
  createBatch(files: FileDeclaration[], signal?: AbortSignal): Promise<UploadBatch> {
    return this.http.json('POST', '/v1/uploads', { json: { files }, signal, headers: idempotent() });
  }

  get(id: string): Promise<Upload> {
    return this.http.json('GET', path`/v1/uploads/${id}`);
  }

  /** Uploads newest first (a page), or, with `size`, the caller's unfinished uploads of a file. */
  list(query: ListUploadsQuery = {}, signal?: AbortSignal): Promise<UploadList> {
    return this.http.json('GET', '/v1/uploads', { query: query as Query, signal });
  }

  complete(id: string, signal?: AbortSignal): Promise<AssetResult> {
    return this.http.json('POST', path`/v1/uploads/${id}/complete`, { signal });
  }

  /**
   * Cancels a pending upload of any kind (one you will not send): it ends at once and what it
   * reserved (quota, a token's bytes and files) is given back. Cancelling an upload that already
   * ended resolves again; a completed one is refused (`UPLOAD_NOT_PENDING`).
   */
  async cancel(id: string, signal?: AbortSignal): Promise<void> {
    await this.http.request('DELETE', path`/v1/uploads/${id}`, { signal });
  }

  /**
   * PUTs the bytes to a presigned upload's URL with exactly its headers (no key: the URL is the
   * credential). Returns the storage's ETag.
   */
  async put(
    item: { url: string; headers: Record<string, string> },
    body: BodyFactory,
    options: { size?: number; signal?: AbortSignal; onRetry?: () => void } = {},
  ): Promise<string | undefined> {
    const response = await this.http
      .request('PUT', item.url, {
        // Storage needs the length up front (a stream body would otherwise go chunked).
        headers: {
          ...item.headers,
          ...(options.size !== undefined && { 'content-length': String(options.size) }),
        },
        body,
        auth: false,
        signal: options.signal,
        onRetry: options.onRetry,
      })
      .catch((err) => {
        throw withAlgorithm(err, item.headers);
      });
    await response.body?.cancel();
    return response.headers.get('etag') ?? undefined;
  }
}

/**
 * A storage CHECKSUM_MISMATCH (S3's BadDigest, see s3-errors.ts) whose message did not say
 * which digest failed: the one the PUT declared, when it declared only one.
 */
function withAlgorithm(err: unknown, headers: Record<string, string>): unknown {
  if (!(err instanceof WharfApiError) || err.code !== 'CHECKSUM_MISMATCH' || err.details.algorithm)
    return err;
  const names = Object.keys(headers).map((name) => name.toLowerCase());
  const declared = [
    ...(names.includes('content-md5') ? ['md5'] : []),
    ...(names.includes('x-amz-checksum-sha256') ? ['sha256'] : []),
  ];
  if (declared.length !== 1) return err;
  return new WharfApiError(
    err.status,
    err.code,
    err.message,
    { ...err.details, algorithm: declared[0] },
    err.retryAfter,
  );
}

export class MultipartApi {
  constructor(private readonly http: Transport) {}

  /** Starts a multipart upload, with an Idempotency-Key kept across its retries (as UploadsApi.create). */
  create(request: MultipartRequest, signal?: AbortSignal): Promise<MultipartUpload | ExistingMultipart> {
    return this.http.json('POST', '/v1/multipart', { json: request, signal, headers: idempotent() });
  }

  async signParts(id: string, partNumbers: number[], signal?: AbortSignal): Promise<SignedPart[]> {
    const answer = await this.http.json<{ parts: SignedPart[] }>('POST', path`/v1/multipart/${id}/parts`, {
      json: { partNumbers },
      signal,
    });
    return answer.parts;
  }

  listParts(id: string, signal?: AbortSignal): Promise<StoredPart[]> {
    return this.http.json('GET', path`/v1/multipart/${id}/parts`, { signal });
  }

  complete(
    id: string,
    parts: Array<{ PartNumber: number; ETag: string }>,
    signal?: AbortSignal,
  ): Promise<MultipartResult> {
    return this.http.json('POST', path`/v1/multipart/${id}/complete`, { json: { parts }, signal });
  }

  async abort(id: string, signal?: AbortSignal): Promise<void> {
    await this.http.request('DELETE', path`/v1/multipart/${id}`, { signal });
  }
}

export class FilesApi {
  constructor(private readonly http: Transport) {}

  /**
   * Uploads the next version of `namespace/name` (the bytes go through Wharf). `sha256` (hex or
   * base64), when given, is declared and verified by Wharf: a mismatch records no version. Sent
   * with an Idempotency-Key kept across its retries: a lost answer makes no second version.
   */
  async put(
    namespace: string,
    name: string,
    body: BodyFactory,
    options: {
      contentType?: string;
      size?: number;
      access?: Access;
      sha256?: string;
      signal?: AbortSignal;
      onProgress?: ProgressListener;
    } = {},
  ): Promise<FileVersion> {
    const meter = new ProgressMeter(options.size, options.onProgress);
    meter.start('uploading', 'direct');
    let sentThisAttempt = 0;
    const version = await this.http.json<FileVersion>('PUT', path`/v1/files/${namespace}/${name}`, {
      query: { access: options.access, sha256: options.sha256 },
      headers: {
        'content-type': options.contentType || 'application/octet-stream',
        ...(options.size !== undefined && { 'content-length': String(options.size) }),
        // Its retries (a lost answer) get the first answer, not a second version.
        ...idempotent(),
      },
      body: () => {
        sentThisAttempt = 0;
        const made = body();
        if (made instanceof ReadableStream) {
          return tap(made, (chunk) => {
            sentThisAttempt += chunk.byteLength;
            meter.add(chunk.byteLength);
          });
        }
        // Bytes or a Blob, which fetch reads itself: they count when the request starts, as the
        // upload flows count a browser's Blob bodies.
        sentThisAttempt = bodySize(made) ?? options.size ?? 0;
        meter.add(sentThisAttempt);
        return made;
      },
      signal: options.signal,
      onRetry: () => meter.subtract(sentThisAttempt),
    });
    meter.start('done');
    return version;
  }

  /** The latest version (or `version`), with its asset. */
  get(namespace: string, name: string, version?: number, signal?: AbortSignal): Promise<FileVersion> {
    return this.http.json('GET', path`/v1/files/${namespace}/${name}`, { query: { version }, signal });
  }

  async versions(namespace: string, name: string): Promise<FileVersionEntry[]> {
    return (
      await this.http.json<{ data: FileVersionEntry[] }>('GET', path`/v1/files/${namespace}/${name}/versions`)
    ).data;
  }
}

export class KeysApi {
  constructor(private readonly http: Transport) {}

  /** Every key of the account, revoked ones included, oldest first (page after page). */
  async list(): Promise<Key[]> {
    const keys: Key[] = [];
    for await (const key of this.iterate({ limit: 1000 })) keys.push(key);
    return keys;
  }

  /** One page of keys, oldest first: `limit` (1–1000, default 100) after `cursor`. */
  page(query: { limit?: number; cursor?: string } = {}): Promise<KeyList> {
    return this.http.json('GET', '/v1/keys', { query });
  }

  /** Every key, oldest first, fetched `limit` at a time. */
  async *iterate(query: { limit?: number } = {}): AsyncGenerator<Key> {
    let cursor: string | undefined;
    do {
      const page = await this.page({ ...query, ...(cursor && { cursor }) });
      yield* page.data;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  create(request: KeyRequest): Promise<CreatedKey> {
    return this.http.json('POST', '/v1/keys', { json: request });
  }

  async revoke(id: string): Promise<void> {
    await this.http.request('DELETE', path`/v1/keys/${id}`);
  }
}

export class UploadTokensApi {
  constructor(private readonly http: Transport) {}

  create(request: UploadTokenRequest = {}): Promise<MintedUploadToken> {
    return this.http.json('POST', '/v1/upload-tokens', { json: request });
  }

  list(query: { limit?: number; cursor?: string } = {}): Promise<UploadTokenList> {
    return this.http.json('GET', '/v1/upload-tokens', { query });
  }

  get(id: string): Promise<UploadToken> {
    return this.http.json('GET', path`/v1/upload-tokens/${id}`);
  }

  async revoke(id: string): Promise<void> {
    await this.http.request('DELETE', path`/v1/upload-tokens/${id}`);
  }
}

export class WebhooksApi {
  constructor(private readonly http: Transport) {}

  /**
   * Sent with an Idempotency-Key of its own, kept across its retries: a retry after a lost
   * answer gets the endpoint the first made, not a second endpoint sent every event.
   */
  create(request: WebhookRequest): Promise<WebhookWithSecret> {
    return this.http.json('POST', '/v1/webhooks', { json: request, headers: idempotent() });
  }

  async list(): Promise<Webhook[]> {
    return (await this.http.json<{ data: Webhook[] }>('GET', '/v1/webhooks')).data;
  }

  get(id: string): Promise<Webhook> {
    return this.http.json('GET', path`/v1/webhooks/${id}`);
  }

  update(id: string, changes: WebhookChanges): Promise<Webhook> {
    return this.http.json('PATCH', path`/v1/webhooks/${id}`, { json: changes });
  }

  async delete(id: string): Promise<void> {
    await this.http.request('DELETE', path`/v1/webhooks/${id}`);
  }

  async secret(id: string): Promise<string> {
    return (await this.http.json<{ secret: string }>('GET', path`/v1/webhooks/${id}/secret`)).secret;
  }

  /** A new signing secret; the old one keeps signing for `keepPreviousFor` seconds (default a day). */
  rotateSecret(id: string, keepPreviousFor?: number): Promise<WebhookWithSecret> {
    return this.http.json('POST', path`/v1/webhooks/${id}/rotate-secret`, {
      json: keepPreviousFor === undefined ? {} : { keep_previous_for: keepPreviousFor },
    });
  }

  deliveries(id: string, query: { limit?: number; cursor?: string; status?: DeliveryStatus } = {}) {
    return this.http.json<DeliveryPage>('GET', path`/v1/webhooks/${id}/deliveries`, { query });
  }

  delivery(id: string, deliveryId: string): Promise<DeliveryDetail> {
    return this.http.json('GET', path`/v1/webhooks/${id}/deliveries/${deliveryId}`);
  }

  replayDelivery(id: string, deliveryId: string): Promise<Delivery> {
    return this.http.json('POST', path`/v1/webhooks/${id}/deliveries/${deliveryId}/replay`);
  }

  replay(id: string, since: Date | string, includeSucceeded = false): Promise<ReplayResult> {
    return this.http.json('POST', path`/v1/webhooks/${id}/replay`, {
      json: {
        since: typeof since === 'string' ? since : since.toISOString(),
        include_succeeded: includeSucceeded,
      },
    });
  }
}

export class EventsApi {
  constructor(private readonly http: Transport) {}

  /** Events oldest first, after `after` (a `cursor` of an earlier answer). */
  list(query: { after?: string; type?: string | string[]; limit?: number } = {}): Promise<EventPage> {
    const type = Array.isArray(query.type) ? query.type.join(',') : query.type;
    return this.http.json('GET', '/v1/events', { query: { ...query, type } });
  }

  /** Every event after `after`, page after page, until none is waiting. */
  async *iterate(query: { after?: string; type?: string | string[] } = {}): AsyncGenerator<WharfEvent> {
    let after = query.after;
    for (;;) {
      const page = await this.list({ ...query, ...(after !== undefined && { after }), limit: 1000 });
      yield* page.data;
      after = page.cursor;
      if (!page.has_more) return;
    }
  }
}

export class AccountApi {
  constructor(private readonly http: Transport) {}

  /** The caller's account: its limits, and what it stores against its quota. */
  get(signal?: AbortSignal): Promise<Account> {
    return this.http.json('GET', '/v1/account', { signal });
  }
}
