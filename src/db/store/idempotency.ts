import { type ExpressionBuilder, type Kysely, sql, type Updateable } from 'kysely';
import type { IdempotencyClaim, IdempotencyScope, IdempotencyStore } from '../../core/ports.js';
import type { Database, IdempotencyRecordsTable } from '../schema.js';
import type { SqlContext } from './context.js';

type Records = ExpressionBuilder<Database, 'idempotency_records'>;

/** The record of this scope's key. */
const ofScope = (scope: IdempotencyScope) => (eb: Records) =>
  eb.and([
    eb('account_id', '=', scope.accountId),
    eb('principal_id', '=', scope.principalId),
    eb('idempotency_key', '=', scope.key),
  ]);

/** … while this claim holds it. */
const heldBy = (scope: IdempotencyScope, holder: string) => (eb: Records) =>
  eb.and([ofScope(scope)(eb), eb('holder', '=', holder), eb('state', '=', 'running')]);

/** Records of creating requests under their clients' idempotency keys (migration 016). */
export function idempotencyQueries({ db }: SqlContext): IdempotencyStore {
  const byScope = (scope: IdempotencyScope) => db.selectFrom('idempotency_records').where(ofScope(scope));

  return {
    async claimIdempotency(scope, fingerprint, holder, at): Promise<IdempotencyClaim> {
      const held = {
        fingerprint,
        state: 'running' as const,
        holder,
        status: null,
        response: null,
        created_at: at.now,
        lease_until: at.leaseUntil,
        expires_at: at.expiresAt,
      };
      // Three statements, none of which needs the others' transaction: each outcome stands on
      // what the row held when it ran. The insert wins for the first request; the conditional
      // update for a key whose record expired, or whose holder died (the same request only);
      // otherwise the row as it is now says which answer to give.
      for (let tries = 0; tries < 3; tries++) {
        const inserted = await db
          .insertInto('idempotency_records')
          .values({
            account_id: scope.accountId,
            principal_id: scope.principalId,
            idempotency_key: scope.key,
            ...held,
          })
          .onConflict((oc) => oc.columns(['account_id', 'principal_id', 'idempotency_key']).doNothing())
          .executeTakeFirst();
        if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 1) return { kind: 'claimed' };
        const taken = await takeOver(db, scope, fingerprint, at.now, held);
        if (taken) return { kind: 'claimed' };
        const row = await byScope(scope)
          .select(['fingerprint', 'state', 'status', 'response'])
          .executeTakeFirst();
        // Gone between the statements (pruned as it expired): try again from the insert.
        if (!row) continue;
        if (row.fingerprint !== fingerprint) return { kind: 'mismatch' };
        if (row.state === 'done' && row.status !== null && row.response !== null) {
          return { kind: 'replay', status: Number(row.status), response: row.response };
        }
        return { kind: 'running' };
      }
      return { kind: 'running' };
    },

    async renewIdempotency(scope, holder, leaseUntil): Promise<boolean> {
      const result = await db
        .updateTable('idempotency_records')
        .set({ lease_until: leaseUntil })
        .where(heldBy(scope, holder))
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },

    async finishIdempotency(scope, holder, answer): Promise<void> {
      await db
        .updateTable('idempotency_records')
        .set({ state: 'done', status: answer.status, response: answer.response })
        .where(heldBy(scope, holder))
        .execute();
    },

    async releaseIdempotency(scope, holder): Promise<void> {
      await db.deleteFrom('idempotency_records').where(heldBy(scope, holder)).execute();
    },

    async pruneIdempotency(before: number, limit: number): Promise<number> {
      const result = await sql`
        delete from idempotency_records
        where (account_id, principal_id, idempotency_key) in (
          select account_id, principal_id, idempotency_key from idempotency_records
          where expires_at < ${before} limit ${limit})`.execute(db);
      return Number(result.numAffectedRows ?? 0);
    },
  };
}

async function takeOver(
  db: Kysely<Database>,
  scope: IdempotencyScope,
  fingerprint: string,
  now: number,
  held: Updateable<IdempotencyRecordsTable>,
): Promise<boolean> {
  const result = await db
    .updateTable('idempotency_records')
    .set(held)
    .where(ofScope(scope))
    .where((eb) =>
      eb.or([
        eb('expires_at', '<=', now),
        eb.and([
          eb('state', '=', 'running'),
          eb('lease_until', '<=', now),
          eb('fingerprint', '=', fingerprint),
        ]),
      ]),
    )
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}
