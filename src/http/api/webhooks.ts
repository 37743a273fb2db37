import { Type } from 'typebox';
import { requireScope } from '../../core/authorization.js';
import { EVENT_TYPES } from '../../core/events.js';
import {
  DEFAULT_PREVIOUS_SECRET_TTL_MS,
  type DeliveryDetail,
  MAX_DELIVERIES_PER_PAGE,
  MAX_DESCRIPTION_LENGTH,
  MAX_EVENT_PATTERNS,
  MAX_PREVIOUS_SECRET_TTL_MS,
  MAX_URL_LENGTH,
} from '../../core/webhook-service.js';
import { named } from '../openapi/components.js';
import type { ApiContext, App } from './context.js';
import { webhookPayload } from './event-json.js';
import { IdempotencyHeaders, idempotencyRefusals } from './idempotency.js';
import { ErrorSchema, errorResponses, Id, IdParams, iso, NoQuery, PageCursor, parseTime } from './schemas.js';
import { deliveryJson, WebhookSchema, webhookJson } from './webhook-json.js';

// Endpoint settings are small; a megabyte of JSON here is a mistake or an attack.
const BODY_LIMIT = 64 * 1024;

const EventTypesSchema = Type.Array(Type.String({ maxLength: 100 }), {
  maxItems: MAX_EVENT_PATTERNS,
  description: `Types (\`upload.completed\`), families (\`asset.*\`) or \`*\`; empty or absent: every type. Types: ${EVENT_TYPES.join(', ')}.`,
});

const NewWebhookBody = named(
  'WebhookRequest',
  Type.Object(
    {
      url: Type.String({
        minLength: 1,
        maxLength: MAX_URL_LENGTH,
        description:
          'Where events are POSTed (https recommended). Private addresses are refused unless allowed.',
      }),
      event_types: Type.Optional(EventTypesSchema),
      description: Type.Optional(Type.String({ maxLength: MAX_DESCRIPTION_LENGTH })),
      enabled: Type.Optional(Type.Boolean({ default: true })),
    },
    { additionalProperties: false, description: 'A new endpoint.' },
  ),
);

const WebhookChangesBody = named(
  'WebhookChanges',
  Type.Object(
    {
      url: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_URL_LENGTH })),
      event_types: Type.Optional(EventTypesSchema),
      description: Type.Optional(Type.String({ maxLength: MAX_DESCRIPTION_LENGTH })),
      enabled: Type.Optional(
        Type.Boolean({
          description: 'Re-enabling clears the disabled reason; disabling cancels pending deliveries.',
        }),
      ),
    },
    { additionalProperties: false, minProperties: 1, description: 'What to change.' },
  ),
);

const WebhookWithSecret = named(
  'WebhookWithSecret',
  Type.Object(
    {
      webhook: WebhookSchema,
      secret: Type.String({ description: 'The signing secret, `whsec_…` (base64 after the prefix).' }),
    },
    { description: 'An endpoint and its signing secret.' },
  ),
);

const WebhookList = named(
  'WebhookList',
  Type.Object({ data: Type.Array(WebhookSchema) }, { description: 'The account’s endpoints.' }),
);

const SecretSchema = named(
  'WebhookSecret',
  Type.Object(
    { secret: Type.String({ description: 'The current signing secret, `whsec_…`.' }) },
    { description: 'A signing secret.' },
  ),
);

const RotateBody = named(
  'RotateSecretRequest',
  Type.Object(
    {
      keep_previous_for: Type.Optional(
        Type.Integer({
          minimum: 0,
          maximum: MAX_PREVIOUS_SECRET_TTL_MS / 1000,
          default: DEFAULT_PREVIOUS_SECRET_TTL_MS / 1000,
          description: 'Seconds the old secret keeps signing too (a second signature); 0 drops it at once.',
        }),
      ),
    },
    { additionalProperties: false, description: 'How to rotate.' },
  ),
);

const StatusSchema = named(
  'DeliveryStatus',
  Type.Union(
    [Type.Literal('pending'), Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('cancelled')],
    {
      description:
        '`failed`: every attempt failed (or 410); `cancelled`: the endpoint was disabled or deleted.',
    },
  ),
);

const Timestamp = Type.Union([Type.String({ format: 'date-time' }), Type.Null()]);

const DeliverySchema = named(
  'Delivery',
  Type.Object(
    {
      id: Type.String(),
      webhook_id: Type.String(),
      event_id: Type.Union([Type.String(), Type.Null()], {
        description: 'The event’s id, sent as `webhook-id` by every attempt; null once the event is pruned.',
      }),
      event_type: Type.String(),
      status: StatusSchema,
      attempts: Type.Integer({ minimum: 0 }),
      next_attempt_at: Timestamp,
      last_attempt_at: Timestamp,
      response_status: Type.Union([Type.Integer(), Type.Null()]),
      response_body: Type.Union([Type.String(), Type.Null()], {
        description: 'The first 1 KiB of the last answer.',
      }),
      latency_ms: Type.Union([Type.Integer(), Type.Null()]),
      last_error: Type.Union([Type.String(), Type.Null()]),
      created_at: Type.String({ format: 'date-time' }),
      updated_at: Type.String({ format: 'date-time' }),
    },
    { description: 'One event on its way to one endpoint.' },
  ),
);

const AttemptSchema = named(
  'DeliveryAttempt',
  Type.Object(
    {
      attempted_at: Type.String({ format: 'date-time' }),
      outcome: Type.Union([Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('gone')]),
      response_status: Type.Union([Type.Integer(), Type.Null()]),
      response_body: Type.Union([Type.String(), Type.Null()]),
      latency_ms: Type.Union([Type.Integer(), Type.Null()]),
      error: Type.Union([Type.String(), Type.Null()]),
    },
    { description: 'One attempt.' },
  ),
);

const DeliveryDetailSchema = named(
  'DeliveryDetail',
  Type.Object(
    {
      ...DeliverySchema.properties,
      attempt_log: Type.Array(AttemptSchema, { description: 'Every attempt, oldest first.' }),
      payload: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()], {
        description: 'The body it sends, `{type, timestamp, data}`; null once the event is pruned.',
      }),
    },
    { description: 'A delivery with its attempts and payload.' },
  ),
);

const DeliveryPageSchema = named(
  'DeliveryPage',
  Type.Object(
    {
      data: Type.Array(DeliverySchema),
      next_cursor: Type.Union([Type.String(), Type.Null()], {
        description: 'Pass as `cursor` for older ones.',
      }),
    },
    { description: 'Deliveries, newest first.' },
  ),
);

const DeliveriesQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: MAX_DELIVERIES_PER_PAGE, default: 50 }),
    cursor: PageCursor,
    status: Type.Optional(StatusSchema),
  },
  { additionalProperties: false },
);

const DeliveryParams = Type.Object({ id: Id(), delivery_id: Id() });

const ReplayBody = named(
  'ReplayRequest',
  Type.Object(
    {
      since: Type.String({ format: 'date-time', description: 'Events from this time on.' }),
      include_succeeded: Type.Optional(
        Type.Boolean({ default: false, description: 'Also send again what was delivered already.' }),
      ),
    },
    { additionalProperties: false, description: 'What to send again.' },
  ),
);

const ReplayResult = named(
  'ReplayResult',
  Type.Object(
    {
      requeued: Type.Integer({ description: 'Existing deliveries queued again.' }),
      created: Type.Integer({ description: 'Deliveries made for events the endpoint never got.' }),
    },
    { description: 'What the replay queued.' },
  ),
);

const withConflict = { ...errorResponses, 409: ErrorSchema, 413: ErrorSchema };

function deliveryDetailJson(detail: DeliveryDetail, publicUrl: string) {
  return {
    ...deliveryJson(detail.delivery),
    attempt_log: detail.attempts.map((a) => ({
      attempted_at: iso(a.at),
      outcome: a.outcome,
      response_status: a.responseStatus,
      response_body: a.responseBody,
      latency_ms: a.latencyMs,
      error: a.error,
    })),
    payload: detail.event ? webhookPayload(detail.event, publicUrl) : null,
  };
}

/** Webhook endpoints of the caller's account (admin keys only), their delivery log and replays. */
export async function webhookRoutes(app: App, { core, publicUrl }: ApiContext): Promise<void> {
  const tags = ['webhooks'];

  app.post(
    '/v1/webhooks',
    {
      bodyLimit: BODY_LIMIT,
      // A creation sent again (its answer lost) would make a second endpoint, sent every event
      // under another secret. Kept under the key: the endpoint's id, never its secret (the
      // idempotency record is not sealed); a replay reads both as they are now.
      config: {
        idempotent: {
          replay: async (record, request) => {
            // The key may have lost `admin` since: the secret is an admin's to read.
            requireScope(request.principal!, 'admin');
            const { id } = JSON.parse(record) as { id: string };
            const accountId = request.principal!.accountId;
            const webhook = await core.webhooks.get(accountId, id);
            const secret = await core.webhooks.secret(accountId, id);
            return JSON.stringify({ webhook: webhookJson(webhook), secret });
          },
        },
      },
      schema: {
        operationId: 'createWebhook',
        summary: 'Create a webhook endpoint (its signing secret is returned)',
        tags,
        headers: IdempotencyHeaders,
        body: NewWebhookBody,
        response: { 201: WebhookWithSecret, ...errorResponses, 413: ErrorSchema, ...idempotencyRefusals },
      },
    },
    async (request, reply) => {
      requireScope(request.principal!, 'admin');
      const { url, event_types, description, enabled } = request.body;
      const created = await core.webhooks.create(request.principal!.accountId, {
        url,
        eventTypes: event_types,
        description,
        enabled,
      });
      if (request.idempotencyHold) request.idempotentRecord = JSON.stringify({ id: created.webhook.id });
      reply.status(201);
      return { webhook: webhookJson(created.webhook), secret: created.secret };
    },
  );

  app.get(
    '/v1/webhooks',
    {
      schema: {
        operationId: 'listWebhooks',
        querystring: NoQuery,
        summary: 'List this account’s webhook endpoints',
        tags,
        response: { 200: WebhookList, ...errorResponses },
      },
    },
    async (request) => {
      requireScope(request.principal!, 'admin');
      return { data: (await core.webhooks.list(request.principal!.accountId)).map(webhookJson) };
    },
  );

  app.get(
    '/v1/webhooks/:id',
    {
      schema: {
        operationId: 'getWebhook',
        summary: 'Get a webhook endpoint',
        tags,
        params: IdParams,
        response: { 200: WebhookSchema, ...errorResponses },
      },
    },
    async (request) => {
      requireScope(request.principal!, 'admin');
      return webhookJson(await core.webhooks.get(request.principal!.accountId, request.params.id));
    },
  );

  app.patch(
    '/v1/webhooks/:id',
    {
      bodyLimit: BODY_LIMIT,
      schema: {
        operationId: 'updateWebhook',
        summary: 'Change a webhook endpoint (URL, event types, description, enabled)',
        tags,
        params: IdParams,
        body: WebhookChangesBody,
        response: { 200: WebhookSchema, ...errorResponses, 413: ErrorSchema },
      },
    },
    async (request) => {
      requireScope(request.principal!, 'admin');
      const { url, event_types, description, enabled } = request.body;
      const webhook = await core.webhooks.update(request.principal!.accountId, request.params.id, {
        ...(url !== undefined && { url }),
        ...(event_types !== undefined && { eventTypes: event_types }),
        ...(description !== undefined && { description }),
        ...(enabled !== undefined && { enabled }),
      });
      return webhookJson(webhook);
    },
  );

  app.delete(
    '/v1/webhooks/:id',
    {
      schema: {
        operationId: 'deleteWebhook',
        summary: 'Delete a webhook endpoint (its pending deliveries are cancelled)',
        tags,
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      requireScope(request.principal!, 'admin');
      await core.webhooks.delete(request.principal!.accountId, request.params.id);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/webhooks/:id/secret',
    {
      schema: {
        operationId: 'getWebhookSecret',
        summary: 'Read a webhook endpoint’s signing secret',
        tags,
        params: IdParams,
        response: { 200: SecretSchema, ...errorResponses, 409: ErrorSchema },
      },
    },
    async (request) => {
      requireScope(request.principal!, 'admin');
      return { secret: await core.webhooks.secret(request.principal!.accountId, request.params.id) };
    },
  );

  app.post(
    '/v1/webhooks/:id/rotate-secret',
    {
      bodyLimit: BODY_LIMIT,
      schema: {
        operationId: 'rotateWebhookSecret',
        summary: 'Replace the signing secret (the old one keeps signing for a while)',
        tags,
        params: IdParams,
        // No body at all is the defaults (Fastify validates a missing body as null).
        body: Type.Union([RotateBody, Type.Null()]),
        response: { 200: WebhookWithSecret, ...errorResponses, 413: ErrorSchema },
      },
    },
    async (request) => {
      requireScope(request.principal!, 'admin');
      const keep = request.body?.keep_previous_for;
      const rotated = await core.webhooks.rotateSecret(
        request.principal!.accountId,
        request.params.id,
        keep === undefined ? undefined : keep * 1000,
      );
      return { webhook: webhookJson(rotated.webhook), secret: rotated.secret };
    },
  );

  app.get(
    '/v1/webhooks/:id/deliveries',
    {
      schema: {
        operationId: 'listWebhookDeliveries',
        summary: 'List an endpoint’s deliveries, newest first',
        tags,
        params: IdParams,
        querystring: DeliveriesQuery,
        response: { 200: DeliveryPageSchema, ...errorResponses },
      },
    },
    async (request) => {
      requireScope(request.principal!, 'admin');
      const page = await core.webhooks.deliveries(
        request.principal!.accountId,
        request.params.id,
        request.query,
      );
      return { data: page.deliveries.map(deliveryJson), next_cursor: page.nextCursor };
    },
  );

  app.get(
    '/v1/webhooks/:id/deliveries/:delivery_id',
    {
      schema: {
        operationId: 'getWebhookDelivery',
        summary: 'Get a delivery with every attempt and its payload',
        tags,
        params: DeliveryParams,
        response: { 200: DeliveryDetailSchema, ...errorResponses },
      },
    },
    async (request) => {
      requireScope(request.principal!, 'admin');
      const detail = await core.webhooks.delivery(
        request.principal!.accountId,
        request.params.id,
        request.params.delivery_id,
      );
      return deliveryDetailJson(detail, publicUrl);
    },
  );

  app.post(
    '/v1/webhooks/:id/deliveries/:delivery_id/replay',
    {
      schema: {
        operationId: 'replayWebhookDelivery',
        summary: 'Send a delivery again now, with the same webhook-id',
        tags,
        params: DeliveryParams,
        response: { 202: DeliverySchema, ...withConflict },
      },
    },
    async (request, reply) => {
      requireScope(request.principal!, 'admin');
      const delivery = await core.webhooks.replay(
        request.principal!.accountId,
        request.params.id,
        request.params.delivery_id,
      );
      reply.status(202);
      return deliveryJson(delivery);
    },
  );

  app.post(
    '/v1/webhooks/:id/replay',
    {
      bodyLimit: BODY_LIMIT,
      schema: {
        operationId: 'replayWebhook',
        summary: 'Send again every event since a time (and the ones the endpoint missed)',
        tags,
        params: IdParams,
        body: ReplayBody,
        response: { 202: ReplayResult, ...withConflict },
      },
    },
    async (request, reply) => {
      requireScope(request.principal!, 'admin');
      const result = await core.webhooks.replaySince(
        request.principal!.accountId,
        request.params.id,
        parseTime(request.body.since),
        request.body.include_succeeded ?? false,
      );
      reply.status(202);
      return result;
    },
  );
}
