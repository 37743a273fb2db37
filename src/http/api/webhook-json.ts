import { Type } from 'typebox';
import type { Delivery, Webhook } from '../../core/webhooks.js';
import { named } from '../openapi/components.js';
import { iso } from './schemas.js';

/** An endpoint as the API (and the `webhook.disabled` event) shows it; never its secret. */
export function webhookJson(webhook: Webhook) {
  return {
    id: webhook.id,
    url: webhook.url,
    description: webhook.description,
    event_types: webhook.eventTypes,
    enabled: webhook.enabled,
    disabled_reason: webhook.disabledReason,
    failing_since: webhook.failingSince === null ? null : iso(webhook.failingSince),
    created_at: iso(webhook.createdAt),
    updated_at: iso(webhook.updatedAt),
  };
}

/** A delivery as the API (and the CLI) shows it. */
export function deliveryJson(d: Delivery) {
  const at = (ms: number | null) => (ms === null ? null : iso(ms));
  return {
    id: d.id,
    webhook_id: d.webhookId,
    event_id: d.eventId,
    event_type: d.eventType,
    status: d.status,
    attempts: d.attempts,
    next_attempt_at: at(d.nextAttemptAt),
    last_attempt_at: at(d.lastAttemptAt),
    response_status: d.responseStatus,
    response_body: d.responseBody,
    latency_ms: d.latencyMs,
    last_error: d.lastError,
    created_at: iso(d.createdAt),
    updated_at: iso(d.updatedAt),
  };
}

export const WebhookSchema = named(
  'Webhook',
  Type.Object(
    {
      id: Type.String(),
      url: Type.String({
        description:
          'As given, user name and password included (sent as Basic authentication); events show them as `***`.',
      }),
      description: Type.String(),
      event_types: Type.Array(Type.String(), { description: 'Type patterns; empty means every type.' }),
      enabled: Type.Boolean(),
      disabled_reason: Type.Union([Type.String(), Type.Null()], {
        description: 'Why Wharf disabled the endpoint (410 Gone, failing for days); null otherwise.',
      }),
      failing_since: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
        description: 'When deliveries began failing, with no success since; null while it answers.',
      }),
      created_at: Type.String({ format: 'date-time' }),
      updated_at: Type.String({ format: 'date-time' }),
    },
    { description: 'An endpoint that receives events, signed as Standard Webhooks says.' },
  ),
);
