import { Type } from 'typebox';
import { MAX_EVENTS_PER_PAGE } from '../../core/events.js';
import { named } from '../openapi/components.js';
import type { ApiContext, App } from './context.js';
import { EventSchema, eventJson } from './event-json.js';
import { ErrorSchema, errorResponses } from './schemas.js';

const EventsQuery = Type.Object(
  {
    after: Type.Optional(
      Type.String({
        pattern: '^[0-9]{1,15}$',
        description: 'A `cursor` from an earlier answer: only events after it. Absent: from the oldest kept.',
      }),
    ),
    type: Type.Optional(
      Type.String({
        maxLength: 1000,
        description: 'Comma-separated types or families (`upload.completed,asset.*`).',
      }),
    ),
    limit: Type.Integer({ minimum: 1, maximum: MAX_EVENTS_PER_PAGE, default: 100 }),
  },
  { additionalProperties: false },
);

const EventPage = named(
  'EventPage',
  Type.Object(
    {
      data: Type.Array(EventSchema),
      cursor: Type.String({
        description:
          'Where to continue: the last event listed, or, when no more are waiting, the latest cursor of ' +
          'the account (past events of other types, which the page passed over).',
      }),
      has_more: Type.Boolean({ description: 'More events are waiting: ask again at once.' }),
    },
    { description: 'A page of events.' },
  ),
);

/** The events outbox, oldest first, for apps that poll rather than receive webhooks. */
export async function eventRoutes(app: App, { core, publicUrl }: ApiContext): Promise<void> {
  app.get(
    '/v1/events',
    {
      schema: {
        operationId: 'listEvents',
        summary: 'List events in the order they happened',
        description:
          'Every change (upload created, completed, failed, expired, cancelled; asset created, updated, ' +
          'processed, rejected, deleted; token created, revoked) is recorded in the same transaction as the ' +
          'change. Poll with `after` set to the last `cursor` you processed.',
        tags: ['events'],
        querystring: EventsQuery,
        // 409 CURSOR_AHEAD, 410 CURSOR_EXPIRED: a cursor this account was never handed, or one
        // after which retention removed events.
        response: { 200: EventPage, ...errorResponses, 409: ErrorSchema, 410: ErrorSchema },
      },
    },
    async (request) => {
      const { after, type, limit } = request.query;
      const types = type
        ?.split(',')
        .map((t) => t.trim())
        .filter((t) => t !== '');
      const { events, hasMore, cursor } = await core.events.list(request.principal!, {
        after: after === undefined ? undefined : Number(after),
        types,
        limit,
      });
      return {
        data: events.map((e) => eventJson(e, publicUrl)),
        cursor: String(cursor),
        has_more: hasMore,
      };
    },
  );
}
