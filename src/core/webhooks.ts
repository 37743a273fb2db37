/**
 * Webhooks: per-account endpoints that receive events, signed as the Standard Webhooks
 * specification says. A delivery row is made for every matching endpoint in the transaction
 * that records the event (see the store's event append), and one job per delivery sends it.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import type { NewEvent } from './events.js';
import type { NewJob } from './ports.js';

/** The job that sends one delivery (payload: `{ deliveryId }`). */
export const DELIVER_WEBHOOK_JOB = 'deliver-webhook';

/**
 * The job that sends a delivery. An endpoint's deliveries share a lane (its id), so at most
 * WHARF_WEBHOOK_CONCURRENCY of them are in flight at once: an endpoint that takes its whole
 * timeout holds that many workers, and the others serve other endpoints and other jobs. The
 * lane's owner is the endpoint's account: a worker that frees up serves an account with no
 * delivery in flight before one with some, so an account whose many endpoints hang (each
 * within its lane's limit, together every worker) delays another's deliveries by about one
 * timeout, not by its whole backlog.
 */
export function deliveryJob(
  jobId: string,
  deliveryId: string,
  webhook: { id: string; accountId: string },
  runAt: number,
): NewJob {
  return {
    id: jobId,
    kind: DELIVER_WEBHOOK_JOB,
    payload: { deliveryId },
    runAt,
    lane: webhook.id,
    laneOwner: webhook.accountId,
  };
}

/** An endpoint as the API shows it (its secret is kept apart, see WebhookSecrets). */
export interface Webhook {
  id: string;
  accountId: string;
  url: string;
  description: string;
  /** Type patterns (`upload.completed`, `asset.*`, `*`); empty means every type. */
  eventTypes: string[];
  enabled: boolean;
  /** Why Wharf disabled it (410 Gone, failing for days); null while enabled or when disabled by hand. */
  disabledReason: string | null;
  /** When the first failure since the last success happened; null while it answers. */
  failingSince: number | null;
  createdAt: number;
  updatedAt: number;
}

/** An endpoint's signing secrets, sealed (see sealSecret). */
export interface WebhookSecrets {
  current: string;
  /** The secret before the last rotation, still signing until `previousExpiresAt`. */
  previous: string | null;
  previousExpiresAt: number | null;
}

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed' | 'cancelled';
export const DELIVERY_STATUSES: readonly DeliveryStatus[] = ['pending', 'succeeded', 'failed', 'cancelled'];

/** One event on its way to one endpoint. */
export interface Delivery {
  id: string;
  webhookId: string;
  accountId: string;
  eventSeq: number;
  /** The event's id: the `webhook-id` of every attempt. Null once the event was pruned. */
  eventId: string | null;
  eventType: string;
  status: DeliveryStatus;
  /** Attempts made so far, replays included. */
  attempts: number;
  nextAttemptAt: number | null;
  lastAttemptAt: number | null;
  responseStatus: number | null;
  /** The first 1 KiB of the last response's body. */
  responseBody: string | null;
  latencyMs: number | null;
  lastError: string | null;
  /** The job that may settle this delivery; a replay replaces it. */
  jobId: string | null;
  createdAt: number;
  updatedAt: number;
}

export type AttemptOutcome = 'succeeded' | 'failed' | 'gone';

/** One try at sending a delivery. */
export interface DeliveryAttempt {
  /** Time-ordered: a later attempt has a greater id, even within one millisecond. */
  id: string;
  deliveryId: string;
  webhookId: string;
  jobId: string;
  at: number;
  outcome: AttemptOutcome;
  responseStatus: number | null;
  responseBody: string | null;
  latencyMs: number | null;
  error: string | null;
}

export interface DeliveryQuery {
  limit: number;
  /** `nextCursor` of the previous page. */
  cursor?: string | undefined;
  status?: DeliveryStatus | undefined;
}

export interface DeliveryPage {
  deliveries: Delivery[];
  nextCursor: string | null;
}

export interface WebhookChanges {
  url?: string;
  description?: string;
  eventTypes?: string[];
  enabled?: boolean;
}

/** What the sender is asked to POST. */
export interface WebhookRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
}

/** How an attempt ended on the wire: an HTTP answer, or why there was none. */
export type WebhookResponse =
  | {
      ok: true;
      status: number;
      /** At most RESPONSE_BODY_LIMIT bytes of the body, as text. */
      body: string;
      /** Where a 3xx pointed (never followed). */
      location: string | undefined;
      retryAfter: string | undefined;
      latencyMs: number;
    }
  | { ok: false; error: string; latencyMs: number };

/** Sends one signed request (the outbound HTTP adapter, which also refuses private addresses). */
export interface WebhookSender {
  send(request: WebhookRequest): Promise<WebhookResponse>;
}

/** How much of a receiver's answer is kept in the delivery log. */
export const RESPONSE_BODY_LIMIT = 1024;

/**
 * The retry schedule the Standard Webhooks specification recommends: an attempt at once, then
 * after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h: ten attempts over 75½ hours,
 * about three days. Each wait gets up to 10% random jitter (the specification recommends some),
 * so endpoints that failed together are not all retried in the same second.
 */
export const DELIVERY_DELAYS_MS = [
  5_000,
  5 * 60_000,
  30 * 60_000,
  2 * 3600_000,
  5 * 3600_000,
  10 * 3600_000,
  14 * 3600_000,
  20 * 3600_000,
  24 * 3600_000,
] as const;
export const DELIVERY_MAX_ATTEMPTS = DELIVERY_DELAYS_MS.length + 1;
/** A receiver's Retry-After is honoured up to this long. */
export const MAX_RETRY_AFTER_MS = 24 * 3600_000;

/**
 * How many times the queue may hand one delivery's job out. Only attempts that were made count
 * towards the ten (a node that stopped mid-attempt made none it could log), so a job is claimed
 * more often than it attempts when nodes crash; this bounds a delivery that crashes its node
 * every time.
 */
export const DELIVERY_MAX_CLAIMS = 2 * DELIVERY_MAX_ATTEMPTS;

export const DELIVERY_RETRY_POLICY = {
  maxAttempts: DELIVERY_MAX_CLAIMS,
  delayMs: (attempts: number) => DELIVERY_DELAYS_MS[Math.min(attempts, DELIVERY_DELAYS_MS.length) - 1]!,
};

const SECRET_PREFIX = 'whsec_';

/** A new signing secret: 32 random bytes, base64, prefixed `whsec_` (the specification's form). */
export function newSigningSecret(random: Buffer): string {
  return SECRET_PREFIX + random.toString('base64');
}

/**
 * The `webhook-signature` value for one secret: `v1,` and the base64 HMAC-SHA256, keyed by the
 * secret's decoded bytes, of `{id}.{timestamp}.{body}`.
 */
export function sign(secret: string, msgId: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
  return `v1,${createHmac('sha256', key).update(`${msgId}.${timestamp}.${body}`).digest('base64')}`;
}

/**
 * Signing secrets must be usable to sign, so they cannot be stored hashed: they are sealed with
 * AES-256-GCM under a key derived from the server secret, the endpoint's id as associated data
 * (a sealed secret copied onto another row does not open). Layout: `v1.` + base64url of
 * iv (12) | tag (16) | ciphertext.
 */
export function sealSecret(key: Buffer, webhookId: string, secret: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(webhookId));
  const sealed = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
  return `v1.${Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64url')}`;
}

export function openSecret(key: Buffer, webhookId: string, sealed: string): string {
  if (!sealed.startsWith('v1.')) throw new Error('Unknown sealed secret format.');
  const raw = Buffer.from(sealed.slice(3), 'base64url');
  const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
  decipher.setAAD(Buffer.from(webhookId));
  decipher.setAuthTag(raw.subarray(12, 28));
  return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
}

/**
 * Why an endpoint cannot be signed for: its secret was sealed under a server secret this server
 * was not given (WHARF_SECRET changed without WHARF_SECRET_PREVIOUS, or this node still runs the
 * old one while another, on the new one, sealed it again).
 */
export const UNREADABLE_SECRET =
  "The endpoint's signing secret is sealed under another server secret: start Wharf once with " +
  'WHARF_SECRET_PREVIOUS set to that secret (or, on a node still running an old WHARF_SECRET, ' +
  "restart it with the new one), or rotate the endpoint's secret.";

/** The secret, or undefined when `key` is not the one it was sealed under. */
export function tryOpenSecret(key: Buffer, id: string, sealed: string): string | undefined {
  try {
    return openSecret(key, id, sealed);
  } catch {
    // AES-GCM's tag check failed (another key) or the format is unknown.
    return undefined;
  }
}

/**
 * The secret, opened under the first of `keys` it was sealed under, or undefined when none is.
 * `keys` is the current seal key, then those of the server secrets used before it: a secret
 * still sealed under a previous one opens whether or not it has been sealed again (that happens
 * only once a server listens, see Wharf.listen), and whichever node sealed it again first.
 */
export function openSealed(keys: readonly Buffer[], id: string, sealed: string): string | undefined {
  for (const key of keys) {
    const secret = tryOpenSecret(key, id, sealed);
    if (secret !== undefined) return secret;
  }
  return undefined;
}

/**
 * An endpoint's URL as it may be shown outside the endpoint API itself (events, which a read key
 * lists and other endpoints receive): its scheme and host, any userinfo replaced by `***` and
 * any path or query by `/…`. Wharf sends `user:password@` as `Authorization: Basic`, so it is a
 * credential like the signing secret (and a token given as the user name alone is one too);
 * and many receivers take their secret in the path (`/services/T0/B0/<secret>`) or the query
 * (`?token=`). The webhook's id names the endpoint. The endpoint API, for admins only, keeps
 * showing the URL as given, as it shows the secret.
 */
export function redactedUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Stored URLs were parsed when they were set; one that is not says nothing but its text.
    return '***';
  }
  const userinfo = parsed.username !== '' || parsed.password !== '' ? '***@' : '';
  const rest = parsed.pathname === '/' && parsed.search === '' ? '/' : '/…';
  return `${parsed.protocol}//${userinfo}${parsed.host}${rest}`;
}

/** Wharf turned an endpoint off (it answered 410 Gone, or failed for days). */
export function webhookDisabled(
  webhook: Webhook,
  reason: 'gone' | 'failing',
  message: string,
  at: number,
): NewEvent {
  return {
    accountId: webhook.accountId,
    type: 'webhook.disabled',
    data: {
      // Recorded without the URL's credentials: every read key of the account lists this event.
      webhook: {
        ...webhook,
        url: redactedUrl(webhook.url),
        enabled: false,
        disabledReason: message,
        // The object was read before the attempt that disabled it: a first failure (a 410 on an
        // endpoint that had never failed) is recorded as the streak's start by that attempt.
        failingSince: webhook.failingSince ?? at,
        updatedAt: at,
      },
      reason,
      message,
    },
    at,
  };
}
