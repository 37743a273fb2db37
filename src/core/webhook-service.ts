import type { Clock } from './clock.js';
import { WharfError } from './errors.js';
import { EVENT_TYPES, isEventPattern, type WharfEvent } from './events.js';
import type { IdSource } from './ids.js';
import type { Store } from './ports.js';
import { refusedHost } from './webhook-addresses.js';
import { type ResealReport, resealWebhookSecrets } from './webhook-reseal.js';
import {
  DELIVERY_STATUSES,
  type Delivery,
  type DeliveryAttempt,
  type DeliveryPage,
  type DeliveryStatus,
  newSigningSecret,
  openSealed,
  sealSecret,
  UNREADABLE_SECRET,
  type Webhook,
  type WebhookChanges,
} from './webhooks.js';

export interface WebhookSettings {
  /** How long one attempt may take (WHARF_WEBHOOK_TIMEOUT_MS). */
  timeoutMs: number;
  /**
   * How many attempts one endpoint may have in flight at once, across every node
   * (WHARF_WEBHOOK_CONCURRENCY); 1 when absent: one at a time, in order.
   */
  concurrency?: number | undefined;
  /** Private, loopback, link-local … targets accepted (WHARF_WEBHOOK_ALLOW_PRIVATE). */
  allowPrivate: boolean;
  /** Events, and finished deliveries, older than this are pruned by the sweep. */
  retentionMs: number;
}

export interface NewWebhook {
  url: string;
  eventTypes?: string[] | undefined;
  description?: string | undefined;
  enabled?: boolean | undefined;
}

export interface CreatedWebhook {
  webhook: Webhook;
  /** `whsec_…`: what receivers verify signatures with. */
  secret: string;
}

export interface DeliveryDetail {
  delivery: Delivery;
  attempts: DeliveryAttempt[];
  /** The event it sends, while the event is kept. */
  event: WharfEvent | undefined;
}

export const MAX_WEBHOOKS_PER_ACCOUNT = 50;
export const MAX_URL_LENGTH = 2048;
export const MAX_DESCRIPTION_LENGTH = 500;
export const MAX_EVENT_PATTERNS = 50;
export const MAX_DELIVERIES_PER_PAGE = 200;
/** How long a rotated-out secret keeps signing by default, and at most. */
export const DEFAULT_PREVIOUS_SECRET_TTL_MS = 24 * 3600_000;
export const MAX_PREVIOUS_SECRET_TTL_MS = 7 * 24 * 3600_000;
const PRUNE_BATCH = 1000;

/** Endpoints an account's admin manages, their secrets, their delivery log and replays. */
export class WebhookService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly ids: IdSource,
    /** AES-256-GCM key that seals signing secrets (derived from the server secret). */
    private readonly sealKey: Buffer,
    /** The seal keys of the server secrets used before: what they sealed still opens. */
    private readonly previousSealKeys: readonly Buffer[],
    readonly settings: WebhookSettings,
  ) {}

  async create(accountId: string, input: NewWebhook): Promise<CreatedWebhook> {
    const url = this.checkUrl(input.url);
    const eventTypes = checkPatterns(input.eventTypes ?? []);
    const description = checkDescription(input.description ?? '');
    const now = this.clock.now();
    const webhook: Webhook = {
      id: this.ids.id(),
      accountId,
      url,
      description,
      eventTypes,
      enabled: input.enabled ?? true,
      disabledReason: null,
      failingSince: null,
      createdAt: now,
      updatedAt: now,
    };
    const secret = this.newSecret();
    // The limit is checked by the insert itself: a count read before it would let parallel
    // creations all see room and together go past it.
    const inserted = await this.store.insertWebhook(
      webhook,
      sealSecret(this.sealKey, webhook.id, secret),
      MAX_WEBHOOKS_PER_ACCOUNT,
    );
    if (!inserted) {
      throw new WharfError(
        'VALIDATION_FAILED',
        `An account may have at most ${MAX_WEBHOOKS_PER_ACCOUNT} webhook endpoints.`,
      );
    }
    return { webhook, secret };
  }

  async list(accountId: string): Promise<Webhook[]> {
    return this.store.listWebhooks(accountId);
  }

  async get(accountId: string, id: string): Promise<Webhook> {
    const webhook = await this.store.getWebhook(id, accountId);
    if (!webhook) throw new WharfError('NOT_FOUND', `No webhook endpoint "${id}".`);
    return webhook;
  }

  async update(accountId: string, id: string, changes: WebhookChanges): Promise<Webhook> {
    const checked: WebhookChanges = {
      ...(changes.url !== undefined && { url: this.checkUrl(changes.url) }),
      ...(changes.eventTypes !== undefined && { eventTypes: checkPatterns(changes.eventTypes) }),
      ...(changes.description !== undefined && { description: checkDescription(changes.description) }),
      ...(changes.enabled !== undefined && { enabled: changes.enabled }),
    };
    const webhook = await this.store.updateWebhook(accountId, id, checked, this.clock.now());
    if (!webhook) throw new WharfError('NOT_FOUND', `No webhook endpoint "${id}".`);
    return webhook;
  }

  /** Deletes an endpoint; its pending deliveries are cancelled. */
  async delete(accountId: string, id: string): Promise<void> {
    if (!(await this.store.deleteWebhook(accountId, id, this.clock.now()))) {
      throw new WharfError('NOT_FOUND', `No webhook endpoint "${id}".`);
    }
  }

  /**
   * The current signing secret. Admins may read it again (it is sealed, not hashed, because
   * Wharf signs with it), as Standard Webhooks providers allow: a lost secret should not force
   * a rotation that breaks the receiver.
   */
  async secret(accountId: string, id: string): Promise<string> {
    await this.get(accountId, id);
    const secrets = await this.store.getWebhookSecrets(id);
    if (!secrets) throw new WharfError('NOT_FOUND', `No webhook endpoint "${id}".`);
    const secret = openSealed([this.sealKey, ...this.previousSealKeys], id, secrets.current);
    // An operator's state, not a fault: WHARF_SECRET changed and the old one was not given.
    if (secret === undefined) throw new WharfError('WEBHOOK_SECRET_UNREADABLE', UNREADABLE_SECRET);
    return secret;
  }

  /**
   * Seals again under the current key the signing secrets still sealed under a previous one
   * (see resealWebhookSecrets). Only a server runs it, once it listens (Wharf.listen): a CLI
   * command or a start that fails must not seal them under a secret the running nodes lack.
   */
  resealSecrets(): Promise<ResealReport> {
    return resealWebhookSecrets(this.store, this.sealKey, [...this.previousSealKeys]);
  }

  /**
   * A new secret. The old one keeps signing too (a second signature in `webhook-signature`) for
   * `keepPreviousMs`, so a receiver can switch without rejecting deliveries meanwhile; 0 drops
   * it at once (a leaked secret).
   */
  async rotateSecret(
    accountId: string,
    id: string,
    keepPreviousMs = DEFAULT_PREVIOUS_SECRET_TTL_MS,
  ): Promise<CreatedWebhook> {
    if (
      !Number.isInteger(keepPreviousMs) ||
      keepPreviousMs < 0 ||
      keepPreviousMs > MAX_PREVIOUS_SECRET_TTL_MS
    ) {
      throw new WharfError(
        'VALIDATION_FAILED',
        `The previous secret may be kept 0 to ${MAX_PREVIOUS_SECRET_TTL_MS / 1000} seconds.`,
      );
    }
    await this.get(accountId, id);
    const now = this.clock.now();
    const secret = this.newSecret();
    const webhook = await this.store.rotateWebhookSecret(
      accountId,
      id,
      sealSecret(this.sealKey, id, secret),
      keepPreviousMs > 0 ? now + keepPreviousMs : null,
      now,
    );
    if (!webhook) throw new WharfError('NOT_FOUND', `No webhook endpoint "${id}".`);
    return { webhook, secret };
  }

  async deliveries(
    accountId: string,
    webhookId: string,
    query: { limit?: number | undefined; cursor?: string | undefined; status?: string | undefined },
  ): Promise<DeliveryPage> {
    await this.get(accountId, webhookId);
    const limit = query.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_DELIVERIES_PER_PAGE) {
      throw new WharfError('VALIDATION_FAILED', `limit must be 1 to ${MAX_DELIVERIES_PER_PAGE}.`);
    }
    if (query.status !== undefined && !(DELIVERY_STATUSES as readonly string[]).includes(query.status)) {
      throw new WharfError('VALIDATION_FAILED', `status must be one of ${DELIVERY_STATUSES.join(', ')}.`);
    }
    return this.store.listDeliveries(accountId, webhookId, {
      limit,
      cursor: query.cursor,
      status: query.status as DeliveryStatus | undefined,
    });
  }

  async delivery(accountId: string, webhookId: string, deliveryId: string): Promise<DeliveryDetail> {
    await this.get(accountId, webhookId);
    const delivery = await this.store.findDelivery(accountId, webhookId, deliveryId);
    if (!delivery) throw new WharfError('NOT_FOUND', `No delivery "${deliveryId}" of this endpoint.`);
    const [attempts, event] = await Promise.all([
      this.store.listDeliveryAttempts(delivery.id),
      this.store.getEvent(accountId, delivery.eventSeq),
    ]);
    return { delivery, attempts, event };
  }

  /** Sends one delivery again now, with the same webhook-id, whatever its status. */
  async replay(accountId: string, webhookId: string, deliveryId: string): Promise<Delivery> {
    const webhook = await this.enabledWebhook(accountId, webhookId);
    const delivery = await this.store.findDelivery(accountId, webhook.id, deliveryId);
    if (!delivery) throw new WharfError('NOT_FOUND', `No delivery "${deliveryId}" of this endpoint.`);
    if (delivery.eventId === null) {
      throw new WharfError(
        'NOT_FOUND',
        'The event of this delivery is no longer kept; it cannot be sent again.',
      );
    }
    const replayed = await this.store.replayDelivery(delivery.id, this.clock.now());
    if (!replayed) throw new WharfError('NOT_FOUND', `No delivery "${deliveryId}" of this endpoint.`);
    return replayed;
  }

  /**
   * Recovery after an outage: re-queues the endpoint's deliveries of events since `since`
   * (succeeded ones too when asked), and creates deliveries of the events since then that it
   * wants but never got (made while it was disabled, or before it existed).
   */
  async replaySince(
    accountId: string,
    webhookId: string,
    since: number,
    includeSucceeded = false,
  ): Promise<{ requeued: number; created: number }> {
    const webhook = await this.enabledWebhook(accountId, webhookId);
    const now = this.clock.now();
    if (!Number.isFinite(since) || since > now) {
      throw new WharfError('VALIDATION_FAILED', '`since` must be a time in the past.');
    }
    return this.store.replayDeliveriesSince(webhook, since, includeSucceeded, now);
  }

  /**
   * Retention: events older than the configured time (except those a pending delivery still
   * needs) and finished deliveries as old. Run by the periodic sweep.
   */
  async prune(): Promise<{ events: number; deliveries: number }> {
    const before = this.clock.now() - this.settings.retentionMs;
    let deliveries = 0;
    for (;;) {
      const n = await this.store.pruneDeliveries(before, PRUNE_BATCH);
      deliveries += n;
      if (n < PRUNE_BATCH) break;
    }
    let events = 0;
    for (;;) {
      const n = await this.store.pruneEvents(before, PRUNE_BATCH);
      events += n;
      if (n < PRUNE_BATCH) break;
    }
    return { events, deliveries };
  }

  private async enabledWebhook(accountId: string, id: string): Promise<Webhook> {
    const webhook = await this.get(accountId, id);
    if (!webhook.enabled) {
      throw new WharfError('WEBHOOK_DISABLED', 'The endpoint is disabled; enable it before replaying to it.');
    }
    return webhook;
  }

  private newSecret(): string {
    return newSigningSecret(Buffer.from(this.ids.token(32), 'base64url'));
  }

  /** An http(s) URL whose host is not refused outright (names are checked again at delivery). */
  private checkUrl(raw: string): string {
    if (typeof raw !== 'string' || raw.length === 0 || raw.length > MAX_URL_LENGTH) {
      throw new WharfError('VALIDATION_FAILED', `url must be 1 to ${MAX_URL_LENGTH} characters.`);
    }
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new WharfError('VALIDATION_FAILED', 'url is not a valid absolute URL.');
    }
    // A well-formed URL Wharf will not send to, whatever WHARF_WEBHOOK_ALLOW_PRIVATE says.
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new WharfError('URL_NOT_ALLOWED', 'Webhooks are sent to http and https URLs only.');
    }
    if (url.hostname === '') throw new WharfError('VALIDATION_FAILED', 'url must name a host.');
    if (url.hash !== '') throw new WharfError('VALIDATION_FAILED', 'url must not have a #fragment.');
    // Nothing listens on port 0: every delivery would fail until the endpoint was disabled.
    if (url.port === '0') throw new WharfError('VALIDATION_FAILED', 'url must not name port 0.');
    // What is stored and sent is the normalised URL, which percent-encoding can make longer.
    if (url.href.length > MAX_URL_LENGTH) {
      throw new WharfError(
        'VALIDATION_FAILED',
        `url must be 1 to ${MAX_URL_LENGTH} characters once normalised.`,
      );
    }
    if (!this.settings.allowPrivate) {
      const refused = refusedHost(url.hostname);
      if (refused) {
        throw new WharfError(
          'URL_NOT_ALLOWED',
          `Webhooks are not sent to private, loopback or link-local addresses (${refused}); ` +
            'an operator can allow them with WHARF_WEBHOOK_ALLOW_PRIVATE=true.',
        );
      }
    }
    return url.href;
  }
}

function checkPatterns(patterns: string[]): string[] {
  if (!Array.isArray(patterns) || patterns.length > MAX_EVENT_PATTERNS) {
    throw new WharfError('VALIDATION_FAILED', `event_types may list at most ${MAX_EVENT_PATTERNS} patterns.`);
  }
  const unknown = patterns.filter((p) => typeof p !== 'string' || !isEventPattern(p));
  if (unknown.length > 0) {
    throw new WharfError('VALIDATION_FAILED', `Unknown event type: ${unknown.join(', ')}.`, {
      known: [...EVENT_TYPES],
    });
  }
  return [...new Set(patterns)];
}

function checkDescription(description: string): string {
  if (typeof description !== 'string' || description.length > MAX_DESCRIPTION_LENGTH) {
    throw new WharfError(
      'VALIDATION_FAILED',
      `description may be at most ${MAX_DESCRIPTION_LENGTH} characters.`,
    );
  }
  return description;
}
