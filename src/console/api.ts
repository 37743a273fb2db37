/**
 * Every call the console makes, in one module. The native API's routes are mounted under
 * /console/api/v1 and reached through Wharf's SDK (src/sdk/), with no key: the session cookie
 * (which the page cannot read) authenticates, and for anything that changes state the session's
 * CSRF token goes in a header, added by the fetch the SDK is given. The console's own routes
 * (/console/api/session, /console/api/upload-token) are not native API routes: `call()` below.
 */
import { type Scope, Wharf, WharfApiError, WharfError } from '../sdk/index.js';
import type { Account, Asset, AssetFile, Delivery, Key, UploadToken, Webhook } from '../sdk/types.js';

// The console shows the native API's JSON as the SDK types it.
export type { Account, Asset, AssetFile, Delivery, UploadToken, Webhook };
export type ApiKey = Key;

export interface Session {
  account: { id: string; name: string };
  key: { id: string; name: string; prefix: string; scopes: string[] };
  expires_at: string;
  ends_at: string;
  csrf_token: string;
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
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
let onSignedOut: (why?: string) => void = () => {};

/**
 * Called when any answer says the session is over (expired, revoked, signed out elsewhere),
 * with the server's reason when the person must do something else than sign in again.
 */
export function whenSignedOut(handler: (why?: string) => void): void {
  onSignedOut = handler;
}

/**
 * The reason to show for a 401: the server's own message when the browser sent several session
 * cookies (signing in again does not help until they are cleared), none otherwise.
 */
export function signedOutReason(error: { code?: string; message?: string } | undefined): string | undefined {
  return error?.code === 'AMBIGUOUS_SESSION' ? error.message : undefined;
}

/** The console's own session routes (not native API routes, so not the SDK's). */
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
    if (res.status === 401 && path !== '/session') onSignedOut(signedOutReason(error));
    throw new ApiError(res.status, error.code, error.message);
  }
  return json as T;
}

/** The session's fetch for the SDK: the cookie, the CSRF token on writes, a 401 signs out. */
const sessionFetch: typeof fetch = async (input, init) => {
  const headers = new Headers(init?.headers);
  const method = (init?.method ?? 'GET').toUpperCase();
  if (method !== 'GET' && method !== 'HEAD') headers.set('x-csrf-token', csrfToken);
  const res = await fetch(input, { ...init, headers, credentials: 'same-origin' });
  if (res.status === 401) {
    const body = (await res
      .clone()
      .json()
      .catch(() => undefined)) as { error?: { code: string; message: string } } | undefined;
    onSignedOut(signedOutReason(body?.error));
  }
  return res;
};

// The SDK wants an absolute URL. No retries: the console did none before, and a failed action
// is shown to the person, who can try again (a retried POST could make a second key).
let client: Wharf | undefined;
function wharf(): Wharf {
  client ??= new Wharf({ url: location.origin + BASE, fetch: sessionFetch, retry: { retries: 0 } });
  return client;
}

/** One SDK call, its failure as the console's ApiError (status 0: no answer from the server). */
async function sdk<T>(run: (client: Wharf) => Promise<T>): Promise<T> {
  try {
    return await run(wharf());
  } catch (err) {
    if (err instanceof WharfApiError) throw new ApiError(err.status, err.code, err.message);
    if (err instanceof WharfError) throw new ApiError(0, err.code, err.message);
    throw err;
  }
}

/** The console's forms leave fields empty; the API wants them absent. */
function given<T extends Record<string, string | number | undefined>>(params: T): T {
  const kept: Record<string, string | number> = {};
  for (const [name, value] of Object.entries(params))
    if (value !== undefined && value !== '') kept[name] = value;
  return kept as T;
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
  }): Promise<Page<Asset>> => sdk((w) => w.assets.list(given(q))),
  getAsset: (assetId: string): Promise<Asset> => sdk((w) => w.assets.get(assetId)),
  assetFiles: (assetId: string): Promise<{ data: AssetFile[] }> =>
    sdk(async (w) => ({ data: await w.assets.files(assetId) })),
  /** The asset as the key sees it, or undefined when the key may change it but not read it. */
  setAccess: (assetId: string, access: 'private' | 'public'): Promise<Asset | undefined> =>
    sdk((w) => w.assets.setAccess(assetId, access)),
  deleteAsset: (assetId: string): Promise<void> => sdk((w) => w.assets.delete(assetId)),
  signedUrl: (assetId: string, expiresIn: number): Promise<{ url: string; expires_at: string }> =>
    sdk((w) => w.assets.signedUrl(assetId, { expires_in: expiresIn, disposition: 'attachment' })),
  /** A small rendering made by the transform endpoint (a raster image, or a video's or PDF's preview). */
  thumbnailUrl: (assetId: string) =>
    `${BASE}${v1}/assets/${id(assetId)}/image?w=320&h=320&fit=cover&format=auto`,
  /** The bytes, through the session; `download` asks for an attachment. */
  contentUrl: (assetId: string, download = false) =>
    `${BASE}${v1}/assets/${id(assetId)}/content${download ? '?download=true' : ''}`,

  listKeys: (cursor?: string): Promise<Page<ApiKey>> => sdk((w) => w.keys.page(given({ cursor, limit: 50 }))),
  // The scopes come from the form's checkboxes; the server validates them.
  createKey: (body: {
    name: string;
    scopes: string[];
    name_prefix?: string;
    namespace?: string;
  }): Promise<{ key: ApiKey; secret: string }> =>
    sdk((w) => w.keys.create({ ...body, scopes: body.scopes as Scope[] })),
  revokeKey: (keyId: string): Promise<void> => sdk((w) => w.keys.revoke(keyId)),

  listTokens: (cursor?: string): Promise<Page<UploadToken>> =>
    sdk((w) => w.uploadTokens.list(given({ cursor, limit: 50 }))),
  revokeToken: (tokenId: string): Promise<void> => sdk((w) => w.uploadTokens.revoke(tokenId)),

  listWebhooks: (): Promise<{ data: Webhook[] }> => sdk(async (w) => ({ data: await w.webhooks.list() })),
  createWebhook: (body: {
    url: string;
    event_types?: string[];
    description?: string;
  }): Promise<{ webhook: Webhook; secret: string }> => sdk((w) => w.webhooks.create(body)),
  updateWebhook: (webhookId: string, changes: { enabled?: boolean }): Promise<Webhook> =>
    sdk((w) => w.webhooks.update(webhookId, changes)),
  listDeliveries: (webhookId: string, cursor?: string): Promise<Page<Delivery>> =>
    sdk((w) => w.webhooks.deliveries(webhookId, given({ cursor, limit: 50 }))),
  replayDelivery: (webhookId: string, deliveryId: string): Promise<unknown> =>
    sdk((w) => w.webhooks.replayDelivery(webhookId, deliveryId)),

  account: (): Promise<Account> => sdk((w) => w.account.get()),
  listUploads: (status: 'pending' | 'expired', cursor?: string): Promise<Page<UploadState>> =>
    sdk((w) => w.uploads.list(given({ status, cursor, limit: 50 }))),
  /** Ends a pending upload now, giving back what it holds against the quota (DELETE /v1/uploads/{id}). */
  cancelUpload: (uploadId: string): Promise<void> => sdk((w) => w.uploads.cancel(uploadId)),
  /**
   * Uploads that failed, from the events (oldest first there): the last `limit` of them. The
   * events are read to their end, at most ten pages of a thousand.
   */
  async failedUploads(limit = 50): Promise<WharfEvent[]> {
    let after: string | undefined;
    let kept: WharfEvent[] = [];
    for (let page = 0; page < 10; page++) {
      const res = await sdk((w) => w.events.list(given({ type: 'upload.failed', after, limit: 1000 })));
      // The SDK types an event's data loosely (it depends on the type); an upload.failed
      // event's is an upload and an error.
      kept = [...kept, ...(res.data as WharfEvent[])].slice(-limit);
      if (!res.has_more) break;
      after = res.cursor;
    }
    return kept.reverse();
  },
};
