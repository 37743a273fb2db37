import type { Clock } from './clock.js';
import { matchesEventType, type WharfEvent } from './events.js';
import type { IdSource } from './ids.js';
import { PermanentJobError, RetryJobError } from './jobs.js';
import type { Job } from './model.js';
import type { DeliverySettlement, Store } from './ports.js';
import type { Telemetry } from './telemetry.js';
import {
  type AttemptOutcome,
  DELIVERY_MAX_ATTEMPTS,
  DELIVERY_MAX_CLAIMS,
  DELIVERY_RETRY_POLICY,
  type Delivery,
  MAX_RETRY_AFTER_MS,
  openSealed,
  RESPONSE_BODY_LIMIT,
  sign,
  UNREADABLE_SECRET,
  type Webhook,
  type WebhookResponse,
  type WebhookSender,
  webhookDisabled,
} from './webhooks.js';

/** A URL's host (and port), the only part of an endpoint's URL a log line shows. */
function urlHost(url: string): string | undefined {
  try {
    return new URL(url).host;
  } catch {
    // Stored URLs were parsed when they were set; one that is not shows no host.
    return undefined;
  }
}

/**
 * Renders an event as a webhook's body (`{type, timestamp, data}` in the API's JSON). It is
 * the HTTP layer's vocabulary, so it is handed in by the composition root.
 */
export type RenderEvent = (event: WharfEvent) => unknown;

export const WEBHOOK_USER_AGENT = 'Wharf-Webhooks/1.0 (+https://www.standardwebhooks.com)';

export interface DelivererDeps {
  store: Store;
  /** Schedules retries and records when attempts happened. */
  clock: Clock;
  /**
   * The `webhook-timestamp`: receivers compare it with their own clock (5 minutes' tolerance
   * in the reference libraries) to refuse replayed requests, so it is always the real time.
   */
  wallClock: Clock;
  ids: IdSource;
  /**
   * The key signing secrets are sealed under, then those of previous server secrets: a secret
   * not sealed again yet (or sealed again by no node) still signs.
   */
  sealKeys: readonly Buffer[];
  sender: WebhookSender;
  render: RenderEvent;
  timeoutMs: number;
  /** Where each attempt's outcome is counted (metrics). */
  telemetry?: Telemetry | undefined;
}

/**
 * The `deliver-webhook` job: one attempt at sending one delivery, its outcome logged. A 2xx
 * settles it; anything else is retried on the specification's schedule (DELIVERY_DELAYS_MS);
 * 410 Gone disables the endpoint at once; a delivery that used up every attempt while the
 * endpoint never succeeded meanwhile disables it too.
 */
export class WebhookDeliverer {
  constructor(private readonly deps: DelivererDeps) {}

  async run(job: Job): Promise<void> {
    const { store, clock } = this.deps;
    const delivery = await store.getDelivery(String(job.payload.deliveryId));
    // Settled already (a lease ran out after the outcome was recorded), or superseded by a replay.
    if (delivery?.status !== 'pending') return;
    if (delivery.jobId !== null && delivery.jobId !== job.id) return;
    const webhook = await store.getWebhook(delivery.webhookId);
    if (!webhook?.enabled) {
      await store.cancelDelivery(
        delivery.id,
        webhook ? 'The endpoint is disabled.' : 'The endpoint was deleted.',
        clock.now(),
      );
      return;
    }
    // The endpoint as it is now: a PATCH since the event may have narrowed what it wants (its
    // URL and secret are read here too, so a retry goes where and signed as it says now).
    if (!matchesEventType(webhook.eventTypes, delivery.eventType)) {
      await store.cancelDelivery(
        delivery.id,
        `The endpoint no longer subscribes to ${delivery.eventType}.`,
        clock.now(),
      );
      return;
    }
    const event = await store.getEvent(delivery.accountId, delivery.eventSeq);
    if (!event) {
      await store.cancelDelivery(delivery.id, 'The event is no longer kept.', clock.now());
      return;
    }

    const body = JSON.stringify(this.deps.render(event));
    const headers = await this.headers(webhook, event.id, body);
    // Never sent unsigned. Recorded as an attempt that got no answer, so the delivery log says
    // why nothing arrives, and retried on the schedule: it goes out once the operator gives the
    // old server secret (see resealWebhookSecrets) or rotates the endpoint's secret.
    const response: WebhookResponse = headers
      ? await this.deps.sender.send({ url: webhook.url, headers, body, timeoutMs: this.deps.timeoutMs })
      : { ok: false, error: UNREADABLE_SECRET, latencyMs: 0 };
    const at = clock.now();
    const { outcome, error } = judge(response);
    // Which attempt of this job this is, counted from the log rather than from the job's claims:
    // a claim whose node stopped mid-attempt logged nothing, and neither uses up one of the
    // ten nor moves the schedule on (the next real failure still waits 5 s, not 5 min).
    const attempt = (await store.countAttempts(delivery.id, job.id)) + 1;
    const exhausted = attempt >= DELIVERY_MAX_ATTEMPTS || job.attempts >= DELIVERY_MAX_CLAIMS;
    const retryAt = outcome === 'failed' && !exhausted ? this.retryAt(attempt, at, response) : null;
    const settlement: DeliverySettlement =
      outcome === 'succeeded'
        ? { status: 'succeeded', nextAttemptAt: null }
        : { status: retryAt === null ? 'failed' : 'pending', nextAttemptAt: retryAt };
    const settled = await store.recordDeliveryAttempt(
      {
        id: this.deps.ids.id(),
        deliveryId: delivery.id,
        webhookId: webhook.id,
        jobId: job.id,
        at,
        outcome,
        responseStatus: response.ok ? response.status : null,
        responseBody: response.ok ? storable(response.body) : null,
        latencyMs: Math.round(response.latencyMs),
        error,
      },
      settlement,
    );
    this.deps.telemetry?.webhookDelivery(
      outcome === 'succeeded' ? 'delivered' : retryAt !== null ? 'retrying' : 'given_up',
    );
    if (!settled || outcome === 'succeeded') return;
    // The log line of a failed attempt names what the delivery log shows of it: the endpoint
    // (its id and host only: the URL's user info and query string may carry credentials), the
    // delivery, its event and attempt.
    const logFields = {
      webhook: { id: webhook.id, host: urlHost(webhook.url) },
      delivery: { id: delivery.id, event: event.id, attempt },
    };
    if (outcome === 'gone') {
      await this.disable(webhook, 'gone', 'The endpoint answered 410 Gone.', at);
      throw new PermanentJobError(error ?? 'gone', logFields);
    }
    if (retryAt !== null) throw new RetryJobError(error ?? 'failed', retryAt, logFields);
    await this.disableIfFailing(webhook, delivery, job, attempt, at, error);
    throw new PermanentJobError(error ?? 'failed', logFields);
  }

  /**
   * Standard Webhooks' headers; a secret rotated out recently signs too (zero-downtime rotation).
   * Undefined when the endpoint's secret opens under no key this server has.
   */
  private async headers(
    webhook: Webhook,
    msgId: string,
    body: string,
  ): Promise<Record<string, string> | undefined> {
    const { store, sealKeys, wallClock, clock } = this.deps;
    const secrets = await store.getWebhookSecrets(webhook.id);
    if (!secrets) throw new PermanentJobError('The endpoint was deleted.');
    const timestamp = Math.floor(wallClock.now() / 1000);
    const current = openSealed(sealKeys, webhook.id, secrets.current);
    if (current === undefined) return undefined;
    const signatures = [sign(current, msgId, timestamp, body)];
    const previous =
      secrets.previous !== null &&
      secrets.previousExpiresAt !== null &&
      secrets.previousExpiresAt > clock.now()
        ? openSealed(sealKeys, webhook.id, secrets.previous)
        : undefined;
    // A rotated-out secret no key opens only loses its second signature.
    if (previous !== undefined) signatures.push(sign(previous, msgId, timestamp, body));
    return {
      'content-type': 'application/json',
      'user-agent': WEBHOOK_USER_AGENT,
      'webhook-id': msgId,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signatures.join(' '),
    };
  }

  /** The schedule's next wait plus up to 10% jitter, or the receiver's Retry-After if longer (capped). */
  private retryAt(attempts: number, at: number, response: WebhookResponse): number {
    let delay = DELIVERY_RETRY_POLICY.delayMs(attempts) * (1 + Math.random() * 0.1);
    if (response.ok && response.retryAfter !== undefined) {
      const asked = retryAfterMs(response.retryAfter, this.deps.wallClock.now());
      if (asked !== undefined) delay = Math.max(delay, Math.min(asked, MAX_RETRY_AFTER_MS));
    }
    return Math.round(at + delay);
  }

  private async disable(webhook: Webhook, reason: 'gone' | 'failing', message: string, at: number) {
    return this.deps.store.disableWebhook(
      webhook.id,
      message,
      at,
      webhookDisabled(webhook, reason, message, at),
    );
  }

  /** Every attempt of this delivery failed; if nothing else succeeded since its first, turn it off. */
  private async disableIfFailing(
    webhook: Webhook,
    delivery: Delivery,
    job: Job,
    attempts: number,
    at: number,
    error: string | null,
  ) {
    const { store } = this.deps;
    const first = await store.firstAttempt(delivery.id, job.id);
    if (!first) return;
    const days = ((at - first.at) / (24 * 3600_000)).toFixed(1);
    const message =
      `Every attempt to deliver event ${delivery.eventId ?? delivery.eventSeq} failed for ${days} days ` +
      `(${attempts} attempts) and nothing succeeded meanwhile; last error: ${error ?? 'unknown'}.`;
    await store.disableWebhook(
      webhook.id,
      message,
      at,
      webhookDisabled(webhook, 'failing', message, at),
      first.id,
    );
  }
}

/** 2xx delivered; 410 asks to stop; every other answer, and no answer, failed. */
function judge(response: WebhookResponse): { outcome: AttemptOutcome; error: string | null } {
  if (!response.ok) return { outcome: 'failed', error: response.error };
  const { status } = response;
  if (status >= 200 && status < 300) return { outcome: 'succeeded', error: null };
  if (status === 410)
    return { outcome: 'gone', error: 'HTTP 410 Gone: the endpoint asked not to be sent more.' };
  if (status >= 300 && status < 400) {
    return {
      outcome: 'failed',
      error:
        `HTTP ${status}: redirects are not followed${response.location ? ` (to ${response.location})` : ''}; ` +
        "set the endpoint's URL to where it should go.",
    };
  }
  return { outcome: 'failed', error: `HTTP ${status}` };
}

/** Retry-After as seconds or an HTTP date, in ms from now; undefined when unreadable. */
function retryAfterMs(value: string, now: number): number | undefined {
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** A receiver's answer as the log keeps it: bounded, and without NUL (PostgreSQL text refuses it). */
function storable(body: string): string {
  return body.slice(0, RESPONSE_BODY_LIMIT).replaceAll('\u0000', '\uFFFD');
}
