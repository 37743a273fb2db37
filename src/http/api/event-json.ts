import { Type } from 'typebox';
import { EVENT_TYPES, type EventData, type WharfEvent } from '../../core/events.js';
import type { Upload } from '../../core/model.js';
import { redactedUrl } from '../../core/webhooks.js';
import { named } from '../openapi/components.js';
import { assetJson, iso } from './schemas.js';
import { tokenJson } from './tokens.js';
import { webhookJson } from './webhook-json.js';

/** An upload as events describe it: enough for an app to match it with what it started. */
export function uploadEventJson(upload: Upload) {
  return {
    id: upload.id,
    kind: upload.kind,
    status: upload.status,
    name: upload.name,
    content_type: upload.contentType,
    size: upload.size,
    sha256: upload.sha256,
    external_id: upload.externalId,
    // Whose upload it is: with content the account already held, `asset` is that asset, as its
    // first uploader made it, so only these say which user (token) uploaded this time.
    token_id: upload.tokenId,
    subject: upload.intent.subject ?? null,
    metadata: upload.intent.metadata ?? {},
    asset_id: upload.assetId,
    deduplicated: upload.deduplicated,
    created_at: iso(upload.createdAt),
    expires_at: iso(upload.expiresAt),
    completed_at: upload.completedAt === null ? null : iso(upload.completedAt),
  };
}

/** An event's data in the native API's vocabulary (the same asset JSON as every response). */
export function eventDataJson(data: EventData, publicUrl: string, at: number): Record<string, unknown> {
  const { upload, asset, token, webhook, ...rest } = data;
  return {
    ...(upload && { upload: uploadEventJson(upload) }),
    ...(asset && { asset: assetJson(asset, publicUrl) }),
    // As it was at the change: a token's status is judged at the event's time.
    ...(token && { token: tokenJson(token, at) }),
    // Redacted again here for events recorded before their URL was redacted at recording.
    ...(webhook && { webhook: webhookJson({ ...webhook, url: redactedUrl(webhook.url) }) }),
    ...rest,
  };
}

/** A webhook's body (Standard Webhooks' `{type, timestamp, data}`): the event as listed, less id and cursor. */
export function webhookPayload(event: WharfEvent, publicUrl: string) {
  return { type: event.type, timestamp: iso(event.at), data: eventDataJson(event.data, publicUrl, event.at) };
}

/** One event as `/v1/events` lists it; webhooks send `{type, timestamp, data}` of the same. */
export function eventJson(event: WharfEvent, publicUrl: string) {
  return {
    id: event.id,
    cursor: String(event.cursor),
    type: event.type,
    timestamp: iso(event.at),
    data: eventDataJson(event.data, publicUrl, event.at),
  };
}

export const EventSchema = named(
  'Event',
  Type.Object(
    {
      id: Type.String({ description: 'Unique; also the `webhook-id` of its webhook deliveries.' }),
      cursor: Type.String({
        description: 'Pass as `after` to list what follows this event. Counts this account’s events alone.',
      }),
      type: Type.String({ description: `One of: ${EVENT_TYPES.join(', ')}.` }),
      timestamp: Type.String({ format: 'date-time' }),
      data: Type.Record(Type.String(), Type.Unknown(), {
        description:
          '`asset` as the API shows it; `upload` as events describe it (not `Upload`: `id`, `kind`, `status`, ' +
          '`name`, `content_type`, `size`, `sha256`, `external_id`, `token_id`, `subject`, `metadata`, ' +
          '`asset_id`, `deduplicated`, `created_at`, `expires_at`, `completed_at`); and facts of the change.',
      }),
    },
    { description: 'A recorded state change.' },
  ),
);
