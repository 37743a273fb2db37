import { sql, type Transaction } from 'kysely';
import { type EventQuery, matchesEventType, type NewEvent, type WharfEvent } from '../../core/events.js';
import type { IdSource } from '../../core/ids.js';
import type { EventCursors, EventStore } from '../../core/ports.js';
import { deliveryJob } from '../../core/webhooks.js';
import type { Database, EventsTable } from '../schema.js';
import { bumpCounters, INSERT_CHUNK, insertRows, runReused, type SqlContext } from './context.js';
import { fromJob } from './rows.js';

/**
 * Records `events` inside the transaction that makes the change they describe, and a pending
 * delivery (plus the job that sends it) for every enabled webhook of the account that wants
 * each one. Call it LAST in a transaction: it takes the row locks of the `events` counter and of
 * each account's `events:<account>` counter, in that order (see bumpCounters), which order
 * events by commit; a lock taken after them could deadlock with another writer.
 *
 * An event has two numbers. `seq`, from `events`, is internal and installation-wide (the primary
 * key, what deliveries name). `account_seq`, from its account's counter, is the `cursor` the
 * account pages with: one counter for all would tell a tenant, from two of its own cursors, how
 * much the others did in between. The account counter's lock makes each account's events commit
 * in `account_seq` order, so a reader paging with `after=` never skips an event that commits
 * late; `events`' lock, taken first by every writer, does the same for `seq`.
 */
export async function appendEvents(
  trx: Transaction<Database>,
  ids: IdSource,
  events: readonly NewEvent[],
): Promise<WharfEvent[]> {
  if (events.length === 0) return [];
  const counts = new Map<string, number>();
  for (const { accountId } of events) counts.set(accountId, (counts.get(accountId) ?? 0) + 1);
  const bumps = new Map([...counts].map(([account, n]) => [`events:${account}`, n]));
  bumps.set('events', events.length);
  const last = await bumpCounters(trx, bumps);
  const first = last.get('events')! - events.length + 1;
  const next = new Map([...counts].map(([account, n]) => [account, last.get(`events:${account}`)! - n + 1]));
  const recorded = events.map((event, i) => {
    const cursor = next.get(event.accountId)!;
    next.set(event.accountId, cursor + 1);
    return { ...event, id: ids.id(), seq: first + i, cursor };
  });
  const rows: EventsTable[] = recorded.map((e) => ({
    seq: e.seq,
    account_seq: e.cursor,
    id: e.id,
    account_id: e.accountId,
    type: e.type,
    data: JSON.stringify(e.data),
    created_at: e.at,
  }));
  await insertRows(trx, 'events', rows);
  await fanOut(trx, ids, recorded);
  return recorded;
}

async function fanOut(
  trx: Transaction<Database>,
  ids: IdSource,
  events: readonly WharfEvent[],
): Promise<void> {
  const accounts = [...new Set(events.map((e) => e.accountId))];
  const hooks = await runReused<{ id: string; account_id: string; event_types: string }>(
    trx,
    `account-webhooks:${accounts.length}`,
    [...accounts, 1],
    () =>
      trx
        .selectFrom('webhooks')
        .select(['id', 'account_id', 'event_types'])
        .where('account_id', 'in', accounts)
        .where('enabled', '=', 1),
  );
  if (hooks.length === 0) return;
  const deliveries = [];
  for (const event of events) {
    for (const hook of hooks) {
      if (hook.account_id !== event.accountId) continue;
      if (!matchesEventType(JSON.parse(hook.event_types) as string[], event.type)) continue;
      deliveries.push({
        id: ids.id(),
        // The job that sends it, made below: only that job may settle it (see webhooks' replay).
        job_id: ids.id(),
        webhook_id: hook.id,
        account_id: event.accountId,
        event_seq: event.seq,
        event_type: event.type,
        status: 'pending',
        next_attempt_at: event.at,
        last_attempt_at: null,
        response_status: null,
        response_body: null,
        latency_ms: null,
        last_error: null,
        created_at: event.at,
        updated_at: event.at,
      });
    }
  }
  for (let i = 0; i < deliveries.length; i += INSERT_CHUNK) {
    const chunk = deliveries.slice(i, i + INSERT_CHUNK);
    await trx.insertInto('webhook_deliveries').values(chunk).execute();
    await trx
      .insertInto('jobs')
      .values(
        chunk.map((d) =>
          fromJob(deliveryJob(d.job_id, d.id, { id: d.webhook_id, accountId: d.account_id }, d.created_at)),
        ),
      )
      .execute();
  }
}

export function toEvent(row: EventsTable): WharfEvent {
  return {
    seq: Number(row.seq),
    cursor: Number(row.account_seq),
    id: row.id,
    accountId: row.account_id,
    type: row.type as WharfEvent['type'],
    data: JSON.parse(row.data) as WharfEvent['data'],
    at: Number(row.created_at),
  };
}

export function eventQueries({ db }: SqlContext): EventStore {
  return {
    async listEvents(accountId: string, query: EventQuery): Promise<WharfEvent[]> {
      let select = db.selectFrom('events').selectAll().where('account_id', '=', accountId);
      if (query.after !== undefined) select = select.where('account_seq', '>', query.after);
      const patterns = query.types ?? [];
      if (patterns.length > 0 && !patterns.includes('*')) {
        const exact = patterns.filter((p) => !p.endsWith('.*'));
        const families = patterns.filter((p) => p.endsWith('.*')).map((p) => p.slice(0, -1));
        select = select.where((eb) =>
          eb.or([
            ...(exact.length > 0 ? [eb('type', 'in', exact)] : []),
            // substr() rather than LIKE: no wildcards to escape (see assets' name prefix).
            ...families.map((f) => eb(eb.fn('substr', ['type', eb.val(1), eb.val(f.length)]), '=', f)),
          ]),
        );
      }
      const rows = await select.orderBy('account_seq').limit(query.limit).execute();
      return rows.map(toEvent);
    },

    async getEvent(accountId: string, seq: number): Promise<WharfEvent | undefined> {
      const row = await db
        .selectFrom('events')
        .selectAll()
        .where('account_id', '=', accountId)
        .where('seq', '=', seq)
        .executeTakeFirst();
      return row && toEvent(row);
    },

    async eventCursors(accountId: string): Promise<EventCursors> {
      const rows = await db
        .selectFrom('counters')
        .select(['name', 'value'])
        .where('name', 'in', [`events:${accountId}`, `${PRUNED}${accountId}`])
        .execute();
      const value = (name: string) => Number(rows.find((r) => r.name === name)?.value ?? 0);
      return { latest: value(`events:${accountId}`), pruned: value(`${PRUNED}${accountId}`) };
    },

    async pruneEvents(before: number, limit: number): Promise<number> {
      return db.transaction().execute(async (trx) => {
        const gone = await deleteOldEvents(trx, before, limit);
        // Each account's highest pruned cursor, kept so that a reader whose cursor is below it
        // is told it missed events (410) rather than handed the next page as if nothing were gone.
        const highest = new Map<string, number>();
        for (const { account_id, account_seq } of gone) {
          const cursor = Number(account_seq);
          if (cursor > (highest.get(account_id) ?? 0)) highest.set(account_id, cursor);
        }
        if (highest.size > 0) {
          const rows = [...highest]
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
            .map(([account, value]) => ({ name: `${PRUNED}${account}`, value }));
          await trx
            .insertInto('counters')
            .values(rows)
            .onConflict((oc) =>
              oc.column('name').doUpdateSet({
                // Never lowered: an event a pending delivery kept is pruned later than newer ones.
                value: sql<number>`case when excluded.value > counters.value then excluded.value else counters.value end`,
              }),
            )
            .execute();
        }
        return gone.length;
      });
    },
  };
}

/** The counter of an account's highest pruned event cursor: `pruned-events:<account>`. */
const PRUNED = 'pruned-events:';

async function deleteOldEvents(
  trx: Transaction<Database>,
  before: number,
  limit: number,
): Promise<{ account_id: string; account_seq: number | string }[]> {
  // Keep what a pending delivery still needs to send.
  return trx
    .deleteFrom('events')
    .where('seq', 'in', (eb) =>
      eb
        .selectFrom('events as e')
        .select('e.seq')
        .where('e.created_at', '<', before)
        .where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom('webhook_deliveries as d')
                .select('d.id')
                .whereRef('d.event_seq', '=', 'e.seq')
                .where('d.status', '=', 'pending'),
            ),
          ),
        )
        // Oldest first by time, not by seq: ordered by seq, SQLite walks the whole seq index
        // to find rows old enough (0.8 s at 1.2 M events with none to prune, on the writer,
        // every sweep); by created_at, the index that finds them also orders them.
        .orderBy('e.created_at')
        .orderBy('e.seq')
        .limit(limit),
    )
    .returning(['account_id', 'account_seq'])
    .execute();
}
