import type { Selectable, Transaction } from 'kysely';
import { matchesEventType, type NewEvent } from '../../core/events.js';
import type { DeliverySettlement, WebhookStore } from '../../core/ports.js';
import {
  type Delivery,
  type DeliveryAttempt,
  type DeliveryPage,
  type DeliveryQuery,
  type DeliveryStatus,
  deliveryJob,
  type Webhook,
  type WebhookChanges,
  type WebhookSecrets,
} from '../../core/webhooks.js';
import type { Database, WebhookAttemptsTable, WebhookDeliveriesTable, WebhooksTable } from '../schema.js';
import { INSERT_CHUNK, type SqlContext } from './context.js';
import { appendEvents } from './events.js';
import { fromJob } from './rows.js';

/** Rows per page when a replay walks through deliveries or events. */
const REPLAY_PAGE = 500;

function toWebhook(row: Selectable<WebhooksTable>): Webhook {
  return {
    id: row.id,
    accountId: row.account_id,
    url: row.url,
    description: row.description,
    eventTypes: JSON.parse(row.event_types) as string[],
    enabled: Number(row.enabled) === 1,
    disabledReason: row.disabled_reason,
    failingSince: row.failing_since === null ? null : Number(row.failing_since),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

type DeliveryRow = Selectable<WebhookDeliveriesTable> & { event_id: string | null };

function toDelivery(row: DeliveryRow): Delivery {
  const num = (v: number | null) => (v === null ? null : Number(v));
  return {
    id: row.id,
    webhookId: row.webhook_id,
    accountId: row.account_id,
    eventSeq: Number(row.event_seq),
    eventId: row.event_id,
    eventType: row.event_type,
    status: row.status as DeliveryStatus,
    attempts: Number(row.attempts),
    nextAttemptAt: num(row.next_attempt_at),
    lastAttemptAt: num(row.last_attempt_at),
    responseStatus: num(row.response_status),
    responseBody: row.response_body,
    latencyMs: num(row.latency_ms),
    lastError: row.last_error,
    jobId: row.job_id,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function toAttempt(r: Selectable<WebhookAttemptsTable>): DeliveryAttempt {
  return {
    id: r.id,
    deliveryId: r.delivery_id,
    webhookId: r.webhook_id,
    jobId: r.job_id,
    at: Number(r.attempted_at),
    outcome: r.outcome as DeliveryAttempt['outcome'],
    responseStatus: r.response_status === null ? null : Number(r.response_status),
    responseBody: r.response_body,
    latencyMs: r.latency_ms === null ? null : Number(r.latency_ms),
    error: r.error,
  };
}

export function webhookQueries({ db, ids }: SqlContext): WebhookStore {
  /** Deliveries with the id of their event (the webhook-id), while the event is kept. */
  const deliveries = (from: Transaction<Database> | typeof db = db) =>
    from
      .selectFrom('webhook_deliveries as d')
      .leftJoin('events as e', 'e.seq', 'd.event_seq')
      .selectAll('d')
      .select('e.id as event_id');

  async function cancelPending(trx: Transaction<Database>, webhookId: string, reason: string, at: number) {
    await trx
      .updateTable('webhook_deliveries')
      .set({ status: 'cancelled', next_attempt_at: null, last_error: reason, updated_at: at })
      .where('webhook_id', '=', webhookId)
      .where('status', '=', 'pending')
      .execute();
  }

  /** New jobs for `deliveryIds`, each recorded as its delivery's job, which is pending again. */
  async function requeue(trx: Transaction<Database>, deliveryIds: string[], at: number): Promise<void> {
    for (const id of deliveryIds) {
      const jobId = ids.id();
      const requeued = await trx
        .updateTable('webhook_deliveries')
        .set({ status: 'pending', job_id: jobId, next_attempt_at: at, updated_at: at })
        .where('id', '=', id)
        .returning(['webhook_id', 'account_id'])
        .executeTakeFirst();
      if (!requeued) continue;
      await trx
        .insertInto('jobs')
        .values(
          fromJob(deliveryJob(jobId, id, { id: requeued.webhook_id, accountId: requeued.account_id }, at)),
        )
        .execute();
    }
  }

  const store: WebhookStore = {
    async insertWebhook(webhook: Webhook, sealedSecret: string, maxPerAccount: number): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        // The account row first, as the upload reservations lock it: a no-op update locks it on
        // PostgreSQL, and on SQLite the write takes the database's write lock before the count
        // is read. Creations for one account then count one after another, each seeing what
        // the one before it inserted, so parallel ones cannot all find room (on any node).
        await trx
          .updateTable('accounts')
          .set((eb) => ({ disabled: eb.ref('disabled') }))
          .where('id', '=', webhook.accountId)
          .execute();
        const row = await trx
          .selectFrom('webhooks')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('account_id', '=', webhook.accountId)
          .executeTakeFirstOrThrow();
        if (Number(row.n) >= maxPerAccount) return false;
        await trx
          .insertInto('webhooks')
          .values({
            id: webhook.id,
            account_id: webhook.accountId,
            url: webhook.url,
            description: webhook.description,
            event_types: JSON.stringify(webhook.eventTypes),
            enabled: webhook.enabled ? 1 : 0,
            secret: sealedSecret,
            disabled_reason: webhook.disabledReason,
            failing_since: null,
            previous_secret: null,
            previous_secret_expires_at: null,
            created_at: webhook.createdAt,
            updated_at: webhook.updatedAt,
          })
          .execute();
        return true;
      });
    },

    async getWebhook(id: string, accountId?: string): Promise<Webhook | undefined> {
      let select = db.selectFrom('webhooks').selectAll().where('id', '=', id);
      if (accountId !== undefined) select = select.where('account_id', '=', accountId);
      const row = await select.executeTakeFirst();
      return row && toWebhook(row);
    },

    async getWebhookSecrets(id: string): Promise<WebhookSecrets | undefined> {
      const row = await db
        .selectFrom('webhooks')
        .select(['secret', 'previous_secret', 'previous_secret_expires_at'])
        .where('id', '=', id)
        .executeTakeFirst();
      return (
        row && {
          current: row.secret,
          previous: row.previous_secret,
          previousExpiresAt:
            row.previous_secret_expires_at === null ? null : Number(row.previous_secret_expires_at),
        }
      );
    },

    async listAllWebhookSecrets() {
      const rows = await db
        .selectFrom('webhooks')
        .select(['id', 'secret', 'previous_secret'])
        .orderBy('id')
        .execute();
      return rows.map((r) => ({ id: r.id, current: r.secret, previous: r.previous_secret }));
    },

    async resealWebhookSecrets(id, from, to) {
      const result = await db
        .updateTable('webhooks')
        .set({ secret: to.current, previous_secret: to.previous })
        .where('id', '=', id)
        .where('secret', '=', from.current)
        .where((eb) =>
          from.previous === null
            ? eb('previous_secret', 'is', null)
            : eb('previous_secret', '=', from.previous),
        )
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },

    async listWebhooks(accountId: string): Promise<Webhook[]> {
      const rows = await db
        .selectFrom('webhooks')
        .selectAll()
        .where('account_id', '=', accountId)
        .orderBy('id')
        .execute();
      return rows.map(toWebhook);
    },

    async updateWebhook(
      accountId: string,
      id: string,
      changes: WebhookChanges,
      at: number,
    ): Promise<Webhook | undefined> {
      return db.transaction().execute(async (trx) => {
        const row = await trx
          .updateTable('webhooks')
          .set({
            updated_at: at,
            ...(changes.url !== undefined && { url: changes.url }),
            ...(changes.description !== undefined && { description: changes.description }),
            ...(changes.eventTypes !== undefined && { event_types: JSON.stringify(changes.eventTypes) }),
            ...(changes.enabled === true && { enabled: 1, disabled_reason: null, failing_since: null }),
            ...(changes.enabled === false && { enabled: 0 }),
          })
          .where('id', '=', id)
          .where('account_id', '=', accountId)
          .returningAll()
          .executeTakeFirst();
        if (!row) return undefined;
        if (changes.enabled === false) await cancelPending(trx, id, 'The endpoint was disabled.', at);
        return toWebhook(row);
      });
    },

    async rotateWebhookSecret(
      accountId: string,
      id: string,
      sealedSecret: string,
      previousExpiresAt: number | null,
      at: number,
    ): Promise<Webhook | undefined> {
      const row = await db
        .updateTable('webhooks')
        .set((eb) => ({
          secret: sealedSecret,
          // The secret as it is when this statement runs (SET reads the row's old values):
          // two rotations at once keep each other's, as if one had followed the other, never
          // one that another rotation had replaced already.
          previous_secret: previousExpiresAt === null ? null : eb.ref('secret'),
          previous_secret_expires_at: previousExpiresAt,
          updated_at: at,
        }))
        .where('id', '=', id)
        .where('account_id', '=', accountId)
        .returningAll()
        .executeTakeFirst();
      return row && toWebhook(row);
    },

    async deleteWebhook(accountId: string, id: string, at: number): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        const deleted = await trx
          .deleteFrom('webhooks')
          .where('id', '=', id)
          .where('account_id', '=', accountId)
          .executeTakeFirst();
        if (Number(deleted.numDeletedRows) === 0) return false;
        await cancelPending(trx, id, 'The endpoint was deleted.', at);
        return true;
      });
    },

    async disableWebhook(
      id: string,
      reason: string,
      at: number,
      event: NewEvent,
      unlessSucceededAfter?: string,
    ): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        let update = trx
          .updateTable('webhooks')
          .set({ enabled: 0, disabled_reason: reason, updated_at: at })
          .where('id', '=', id)
          .where('enabled', '=', 1);
        if (unlessSucceededAfter !== undefined) {
          // Attempt ids are time-ordered, so "after" holds even within one millisecond.
          update = update.where(({ not, exists, selectFrom }) =>
            not(
              exists(
                selectFrom('webhook_attempts as a')
                  .select('a.id')
                  .where('a.webhook_id', '=', id)
                  .where('a.outcome', '=', 'succeeded')
                  .where('a.id', '>', unlessSucceededAfter),
              ),
            ),
          );
        }
        const changed = await update.executeTakeFirst();
        if (Number(changed.numUpdatedRows) === 0) return false;
        await cancelPending(trx, id, `The endpoint was disabled: ${reason}`, at);
        // Last in the transaction: appendEvents takes the events counter's lock.
        await appendEvents(trx, ids, [event]);
        return true;
      });
    },

    async getDelivery(id: string): Promise<Delivery | undefined> {
      const row = await deliveries().where('d.id', '=', id).executeTakeFirst();
      return row && toDelivery(row);
    },

    async findDelivery(accountId: string, webhookId: string, id: string): Promise<Delivery | undefined> {
      const row = await deliveries()
        .where('d.id', '=', id)
        .where('d.webhook_id', '=', webhookId)
        .where('d.account_id', '=', accountId)
        .executeTakeFirst();
      return row && toDelivery(row);
    },

    async listDeliveries(accountId: string, webhookId: string, query: DeliveryQuery): Promise<DeliveryPage> {
      let select = deliveries().where('d.webhook_id', '=', webhookId).where('d.account_id', '=', accountId);
      if (query.status !== undefined) select = select.where('d.status', '=', query.status);
      if (query.cursor !== undefined) select = select.where('d.id', '<', query.cursor);
      const rows = await select
        .orderBy('d.id', 'desc')
        .limit(query.limit + 1)
        .execute();
      const page = rows.slice(0, query.limit).map(toDelivery);
      return { deliveries: page, nextCursor: rows.length > query.limit ? page.at(-1)!.id : null };
    },

    async listDeliveryAttempts(deliveryId: string): Promise<DeliveryAttempt[]> {
      const rows = await db
        .selectFrom('webhook_attempts')
        .selectAll()
        .where('delivery_id', '=', deliveryId)
        .orderBy('id')
        .execute();
      return rows.map(toAttempt);
    },

    async firstAttempt(deliveryId: string, jobId: string): Promise<DeliveryAttempt | undefined> {
      const row = await db
        .selectFrom('webhook_attempts')
        .selectAll()
        .where('delivery_id', '=', deliveryId)
        .where('job_id', '=', jobId)
        .orderBy('id')
        .limit(1)
        .executeTakeFirst();
      return row && toAttempt(row);
    },

    async countAttempts(deliveryId: string, jobId: string): Promise<number> {
      const row = await db
        .selectFrom('webhook_attempts')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('delivery_id', '=', deliveryId)
        .where('job_id', '=', jobId)
        .executeTakeFirst();
      return Number(row?.n ?? 0);
    },

    async recordDeliveryAttempt(attempt: DeliveryAttempt, settlement: DeliverySettlement): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        await trx
          .insertInto('webhook_attempts')
          .values({
            id: attempt.id,
            delivery_id: attempt.deliveryId,
            webhook_id: attempt.webhookId,
            job_id: attempt.jobId,
            attempted_at: attempt.at,
            outcome: attempt.outcome,
            response_status: attempt.responseStatus,
            response_body: attempt.responseBody,
            latency_ms: attempt.latencyMs,
            error: attempt.error,
          })
          .execute();
        const updated = await trx
          .updateTable('webhook_deliveries')
          .set((eb) => ({
            attempts: eb('attempts', '+', 1),
            last_attempt_at: attempt.at,
            response_status: attempt.responseStatus,
            response_body: attempt.responseBody,
            latency_ms: attempt.latencyMs,
            last_error: attempt.error,
            updated_at: attempt.at,
          }))
          .where('id', '=', attempt.deliveryId)
          .returning(['webhook_id', 'job_id'])
          .executeTakeFirst();
        if (!updated) return false;
        // The endpoint's failure streak: what the "failing for days" rule reads.
        await trx
          .updateTable('webhooks')
          .set((eb) => ({
            failing_since:
              attempt.outcome === 'succeeded' ? null : eb.fn.coalesce('failing_since', eb.val(attempt.at)),
          }))
          .where('id', '=', updated.webhook_id)
          .execute();
        if (updated.job_id !== null && updated.job_id !== attempt.jobId) return false;
        // Only a delivery still waiting is settled by its attempt: one cancelled meanwhile
        // (its endpoint disabled or deleted while the attempt ran) stays cancelled, else a
        // retry would bring it back and re-enabling would send it again, unasked. Unless the
        // attempt delivered it: then it arrived, and says so (a replay of what did not arrive
        // would otherwise send it twice).
        const settled = await trx
          .updateTable('webhook_deliveries')
          .set({ status: settlement.status, next_attempt_at: settlement.nextAttemptAt })
          .where('id', '=', attempt.deliveryId)
          .where('status', 'in', settlement.status === 'succeeded' ? ['pending', 'cancelled'] : ['pending'])
          .executeTakeFirst();
        return Number(settled.numUpdatedRows) > 0;
      });
    },

    async cancelDelivery(id: string, reason: string, at: number): Promise<void> {
      await db
        .updateTable('webhook_deliveries')
        .set({ status: 'cancelled', next_attempt_at: null, last_error: reason, updated_at: at })
        .where('id', '=', id)
        .where('status', '=', 'pending')
        .execute();
    },

    async replayDelivery(id: string, at: number): Promise<Delivery | undefined> {
      await db.transaction().execute((trx) => requeue(trx, [id], at));
      return store.getDelivery(id);
    },

    async replayDeliveriesSince(
      webhook: Webhook,
      since: number,
      includeSucceeded: boolean,
      at: number,
    ): Promise<{ requeued: number; created: number }> {
      let requeued = 0;
      let after: string | undefined;
      for (;;) {
        // Only deliveries whose event is still kept can be sent again.
        let select = db
          .selectFrom('webhook_deliveries as d')
          .innerJoin('events as e', 'e.seq', 'd.event_seq')
          .select('d.id')
          .where('d.webhook_id', '=', webhook.id)
          .where('d.created_at', '>=', since);
        if (!includeSucceeded) select = select.where('d.status', '!=', 'succeeded');
        if (after !== undefined) select = select.where('d.id', '>', after);
        const page = (await select.orderBy('d.id').limit(REPLAY_PAGE).execute()).map((r) => r.id);
        if (page.length === 0) break;
        await db.transaction().execute((trx) => requeue(trx, page, at));
        requeued += page.length;
        after = page.at(-1);
        if (page.length < REPLAY_PAGE) break;
      }

      let created = 0;
      // Paged by the account's own order, which events_account_cursor serves.
      let afterCursor = -1;
      for (;;) {
        const events = await db
          .selectFrom('events as e')
          .select(['e.seq', 'e.account_seq', 'e.type', 'e.created_at'])
          .where('e.account_id', '=', webhook.accountId)
          .where('e.created_at', '>=', since)
          .where('e.account_seq', '>', afterCursor)
          .where(({ not, exists, selectFrom }) =>
            not(
              exists(
                selectFrom('webhook_deliveries as d')
                  .select('d.id')
                  .whereRef('d.event_seq', '=', 'e.seq')
                  .where('d.webhook_id', '=', webhook.id),
              ),
            ),
          )
          .orderBy('e.account_seq')
          .limit(REPLAY_PAGE)
          .execute();
        if (events.length === 0) break;
        afterCursor = Number(events.at(-1)!.account_seq);
        const wanted = events.filter((e) => matchesEventType(webhook.eventTypes, e.type));
        for (let i = 0; i < wanted.length; i += INSERT_CHUNK) {
          const chunk = wanted.slice(i, i + INSERT_CHUNK);
          created += await db.transaction().execute(async (trx) => {
            // A delivery made meanwhile by the event's own transaction wins; no second one.
            const inserted = await trx
              .insertInto('webhook_deliveries')
              .values(
                chunk.map((e) => ({
                  id: ids.id(),
                  webhook_id: webhook.id,
                  account_id: webhook.accountId,
                  event_seq: Number(e.seq),
                  event_type: e.type,
                  status: 'pending',
                  next_attempt_at: at,
                  last_attempt_at: null,
                  response_status: null,
                  response_body: null,
                  latency_ms: null,
                  last_error: null,
                  job_id: null,
                  created_at: Number(e.created_at),
                  updated_at: at,
                })),
              )
              .onConflict((oc) => oc.columns(['webhook_id', 'event_seq']).doNothing())
              .returning('id')
              .execute();
            await requeue(
              trx,
              inserted.map((r) => r.id),
              at,
            );
            return inserted.length;
          });
        }
        if (events.length < REPLAY_PAGE) break;
      }
      return { requeued, created };
    },

    async pruneDeliveries(before: number, limit: number): Promise<number> {
      return db.transaction().execute(async (trx) => {
        const doomed = (
          await trx
            .selectFrom('webhook_deliveries')
            .select('id')
            .where('created_at', '<', before)
            .where('status', '!=', 'pending')
            .orderBy('created_at')
            .limit(limit)
            .execute()
        ).map((r) => r.id);
        if (doomed.length === 0) return 0;
        await trx.deleteFrom('webhook_attempts').where('delivery_id', 'in', doomed).execute();
        await trx.deleteFrom('webhook_deliveries').where('id', 'in', doomed).execute();
        return doomed.length;
      });
    },
  };
  return store;
}
