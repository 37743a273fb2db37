/**
 * Every call the console makes, in one module. They go to the console's own API: the native
 * API's routes mounted under /console/api/v1, authenticated by the session cookie (which the
 * page cannot read) and, for anything that changes state, the session's CSRF token in a header.
 * The JSON is the native API's, so this module can become a thin wrapper around Wharf's SDK
 * (src/sdk/) pointed at /console/api with the CSRF header added.
 */

export interface Session {
  account: { id: string; name: string };
  key: { id: string; name: string; prefix: string; scopes: string[] };
  expires_at: string;
  ends_at: string;
  csrf_token: string;
}

export interface Asset {
  id: string;
  name: string;
  content_type: string;
  size: number;
  sha256: string;
  md5: string;
  status: string;
  access: 'private' | 'public';
  processing: string;
  analysis: {
    format?: string;
    width?: number;
    height?: number;
    location?: { latitude: number; longitude: number; altitude?: number };
    location_name?: string;
    /** A video's poster or a PDF's first page, stored as a rendering (see docs/images.md). */
    preview?: unknown;
  };
  metadata: Record<string, unknown>;
  subject: string | null;
  created_at: string;
  updated_at: string;
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

export interface AssetFile {
  namespace: string;
  name: string;
  version: number;
  latest_version: number;
  versions: { version: number; asset_id: string; created_at: string }[];
}

export interface ApiKey {
  id: string;
  name: string;
  scopes: string[];
  name_prefix: string | null;
  namespace: string | null;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface UploadToken {
  id: string;
  key_id: string;
  prefix: string;
  status: 'active' | 'expired' | 'revoked';
  subject: string | null;
  max_files: number | null;
  max_bytes: number | null;
  usage: { files_used: number; bytes_used: number; files_reserved: number; bytes_reserved: number };
  created_at: string;
  expires_at: string;
}

export interface Webhook {
  id: string;
  url: string;
  description: string;
  event_types: string[];
  enabled: boolean;
  disabled_reason: string | null;
  created_at: string;
}

export interface Delivery {
  id: string;
  event_id: string | null;
  event_type: string;
  status: 'pending' | 'succeeded' | 'failed' | 'cancelled';
  attempts: number;
  response_status: number | null;
  last_error: string | null;
  latency_ms: number | null;
  last_attempt_at: string | null;
  created_at: string;
}

export interface Account {
  id: string;
  name: string;
  max_file_size: number | null;
  storage_quota: number | null;
  usage: {
    bytes_used: number;
    bytes_reserved: number;
    bytes_free: number | null;
    assets: number;
    pending_uploads: number;
  };
}

export interface UploadState {
  id: string;
  status: string;
  name: string;
  kind: string;
  content_type: string;
  size: number | null;
  created_at: string;
  expires_at: string;
}

export interface WharfEvent {
  id: string;
  type: string;
  timestamp: string;
  data: { upload?: { id: string; name: string; kind: string }; error?: { code: string; message: string } };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const BASE = '/console/api';
let csrfToken = '';
let onSignedOut: () => void = () => {};

/** Called when any answer says the session is over (expired, revoked, signed out elsewhere). */
export function whenSignedOut(handler: () => void): void {
  onSignedOut = handler;
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-csrf-token'] = csrfToken;
  const res = await fetch(BASE + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  if (res.status === 204) return undefined as T;
  const json = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!res.ok) {
    const error = json.error ?? { code: 'HTTP_' + res.status, message: res.statusText };
    if (res.status === 401 && path !== '/session') onSignedOut();
    throw new ApiError(res.status, error.code, error.message);
  }
  return json as T;
}

function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params))
    if (value !== undefined && value !== '') q.set(name, String(value));
  const text = q.toString();
  return text === '' ? '' : '?' + text;
}

const v1 = '/v1';
const id = encodeURIComponent;

export const api = {
  /** The key goes to the server once and is not kept anywhere (the caller clears its field). */
  async signIn(key: string): Promise<Session> {
    const session = await call<Session>('POST', '/session', { key });
    csrfToken = session.csrf_token;
    return session;
  },
  async session(): Promise<Session> {
    const session = await call<Session>('GET', '/session');
    csrfToken = session.csrf_token;
    return session;
  },
  async signOut(): Promise<void> {
    await call('DELETE', '/session');
    csrfToken = '';
  },
  /** A short-lived upload token the page uploads with over tus. */
  uploadToken: () => call<{ secret: string; token: UploadToken }>('POST', '/upload-token'),

  listAssets: (q: {
    limit?: number;
    cursor?: string;
    prefix?: string;
    content_type?: string;
    created_after?: string;
    created_before?: string;
  }) => call<Page<Asset>>('GET', `${v1}/assets${query(q)}`),
  getAsset: (assetId: string) => call<Asset>('GET', `${v1}/assets/${id(assetId)}`),
  assetFiles: (assetId: string) => call<{ data: AssetFile[] }>('GET', `${v1}/assets/${id(assetId)}/files`),
  setAccess: (assetId: string, access: 'private' | 'public') =>
    call<Asset>('PATCH', `${v1}/assets/${id(assetId)}`, { access }),
  deleteAsset: (assetId: string) => call<void>('DELETE', `${v1}/assets/${id(assetId)}`),
  signedUrl: (assetId: string, expiresIn: number) =>
    call<{ url: string; expires_at: string }>('POST', `${v1}/assets/${id(assetId)}/signed-url`, {
      expires_in: expiresIn,
      disposition: 'attachment',
    }),
  /** A small rendering made by the transform endpoint (a raster image, or a video's or PDF's preview). */
  thumbnailUrl: (assetId: string) =>
    `${BASE}${v1}/assets/${id(assetId)}/image?w=320&h=320&fit=cover&format=auto`,
  /** The bytes, through the session; `download` asks for an attachment. */
  contentUrl: (assetId: string, download = false) =>
    `${BASE}${v1}/assets/${id(assetId)}/content${download ? '?download=true' : ''}`,

  listKeys: () => call<{ data: ApiKey[] }>('GET', `${v1}/keys`),
  createKey: (body: { name: string; scopes: string[]; name_prefix?: string; namespace?: string }) =>
    call<{ key: ApiKey; secret: string }>('POST', `${v1}/keys`, body),
  revokeKey: (keyId: string) => call<void>('DELETE', `${v1}/keys/${id(keyId)}`),

  listTokens: (cursor?: string) =>
    call<Page<UploadToken>>('GET', `${v1}/upload-tokens${query({ cursor, limit: 50 })}`),
  revokeToken: (tokenId: string) => call<void>('DELETE', `${v1}/upload-tokens/${id(tokenId)}`),

  listWebhooks: () => call<{ data: Webhook[] }>('GET', `${v1}/webhooks`),
  createWebhook: (body: { url: string; event_types?: string[]; description?: string }) =>
    call<{ webhook: Webhook; secret: string }>('POST', `${v1}/webhooks`, body),
  updateWebhook: (webhookId: string, changes: { enabled?: boolean }) =>
    call<Webhook>('PATCH', `${v1}/webhooks/${id(webhookId)}`, changes),
  listDeliveries: (webhookId: string, cursor?: string) =>
    call<Page<Delivery>>('GET', `${v1}/webhooks/${id(webhookId)}/deliveries${query({ cursor, limit: 50 })}`),
  replayDelivery: (webhookId: string, deliveryId: string) =>
    call<unknown>('POST', `${v1}/webhooks/${id(webhookId)}/deliveries/${id(deliveryId)}/replay`),

  account: () => call<Account>('GET', `${v1}/account`),
  listUploads: (status: 'pending' | 'expired', cursor?: string) =>
    call<Page<UploadState>>('GET', `${v1}/uploads${query({ status, cursor, limit: 50 })}`),
  /**
   * Uploads that failed, from the events (oldest first there): the last `limit` of them. The
   * events are read to their end, at most ten pages of a thousand.
   */
  async failedUploads(limit = 50): Promise<WharfEvent[]> {
    let after: string | undefined;
    let kept: WharfEvent[] = [];
    for (let page = 0; page < 10; page++) {
      const res = await call<{ data: WharfEvent[]; cursor: string; has_more: boolean }>(
        'GET',
        `${v1}/events${query({ type: 'upload.failed', after, limit: 1000 })}`,
      );
      kept = [...kept, ...res.data].slice(-limit);
      if (!res.has_more) break;
      after = res.cursor;
    }
    return kept.reverse();
  },
};
