import { type Kysely, sql } from 'kysely';
import type { IdempotencyClaim, IdempotencyScope, IdempotencyStore } from '../../core/ports.js';
import type { Database } from '../schema.js';
import type { SqlContext } from './context.js';

/** Records of creating requests under their clients' idempotency keys (migration 016). */
export function idempotencyQueries({ db }: SqlContext): IdempotencyStore {
  const byScope = (scope: IdempotencyScope) =>
    db
      .selectFrom('idempotency_records')
      .where('account_id', '=', scope.accountId)
      .where('principal_id', '=', scope.principalId)
      .where('idempotency_key', '=', scope.key);

  return {
    async claimIdempotency(scope, fingerprint, at): Promise<IdempotencyClaim> {
      const held = {
        fingerprint,
        state: 'running' as const,
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

    async finishIdempotency(scope, fingerprint, answer): Promise<void> {
      await db
        .updateTable('idempotency_records')
        .set({ state: 'done', status: answer.status, response: answer.response })
        .where('account_id', '=', scope.accountId)
        .where('principal_id', '=', scope.principalId)
        .where('idempotency_key', '=', scope.key)
        .where('fingerprint', '=', fingerprint)
        .where('state', '=', 'running')
        .execute();
    },

    async releaseIdempotency(scope, fingerprint): Promise<void> {
      await db
        .deleteFrom('idempotency_records')
        .where('account_id', '=', scope.accountId)
        .where('principal_id', '=', scope.principalId)
        .where('idempotency_key', '=', scope.key)
        .where('fingerprint', '=', fingerprint)
        .where('state', '=', 'running')
        .execute();
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
  held: Record<string, unknown>,
): Promise<boolean> {
  const result = await db
    .updateTable('idempotency_records')
    .set(held)
    .where('account_id', '=', scope.accountId)
    .where('principal_id', '=', scope.principalId)
    .where('idempotency_key', '=', scope.key)
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
