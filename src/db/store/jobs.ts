import { sql } from 'kysely';
import type { Job } from '../../core/model.js';
import type { JobStore, NewJob } from '../../core/ports.js';
import type { SqlContext } from './context.js';
import { fromJob, toJob } from './rows.js';

export function jobQueries({ db, dialect }: SqlContext): JobStore {
  return {
    async enqueueJobs(jobs: NewJob[]): Promise<void> {
      if (jobs.length > 0) await db.insertInto('jobs').values(jobs.map(fromJob)).execute();
    },

    async claimJob(worker: string, now: number, leaseUntil: number): Promise<Job | undefined> {
      if (dialect === 'sqlite') {
        // One statement: it takes the write lock before it reads. A read-then-update
        // transaction would meet another connection's claim with SQLITE_BUSY instead.
        const row = await db
          .updateTable('jobs')
          .set({
            status: 'running',
            worker,
            lease_until: leaseUntil,
            attempts: sql<number>`attempts + 1`,
            updated_at: now,
          })
          .where('id', '=', (eb) =>
            eb
              .selectFrom('jobs')
              .select('id')
              .where((w) =>
                w.or([
                  w.and([w('status', '=', 'queued'), w('run_at', '<=', now)]),
                  w.and([w('status', '=', 'running'), w('lease_until', '<', now)]),
                ]),
              )
              .orderBy('run_at')
              // Jobs due at the same moment run in the order they were made (ids are
              // time-ordered): an account's webhooks then leave in the order of its events.
              .orderBy('id')
              .limit(1),
          )
          .returningAll()
          .executeTakeFirst();
        return row && toJob(row);
      }
      return db.transaction().execute(async (trx) => {
        let select = trx
          .selectFrom('jobs')
          .selectAll()
          .where((eb) =>
            eb.or([
              eb.and([eb('status', '=', 'queued'), eb('run_at', '<=', now)]),
              eb.and([eb('status', '=', 'running'), eb('lease_until', '<', now)]),
            ]),
          )
          .orderBy('run_at')
          .orderBy('id')
          .limit(1);
        // Other nodes skip the row this one is claiming instead of queueing behind it.
        if (dialect === 'postgres') select = select.forUpdate().skipLocked();
        const row = await select.executeTakeFirst();
        if (!row) return undefined;
        const attempts = Number(row.attempts) + 1;
        await trx
          .updateTable('jobs')
          .set({ status: 'running', worker, lease_until: leaseUntil, attempts, updated_at: now })
          .where('id', '=', row.id)
          .execute();
        return toJob({ ...row, status: 'running', attempts });
      });
    },

    async finishJob(id: string, worker: string, at: number): Promise<void> {
      await db
        .updateTable('jobs')
        .set({ status: 'done', lease_until: null, updated_at: at })
        .where('id', '=', id)
        .where('worker', '=', worker)
        .execute();
    },

    async failJob(
      id: string,
      worker: string,
      error: string,
      retryAt: number | null,
      at: number,
    ): Promise<void> {
      await db
        .updateTable('jobs')
        .set({
          status: retryAt === null ? 'failed' : 'queued',
          run_at: retryAt ?? at,
          lease_until: null,
          last_error: error.slice(0, 2000),
          updated_at: at,
        })
        .where('id', '=', id)
        .where('worker', '=', worker)
        .execute();
    },

    async getJob(id: string): Promise<Job | undefined> {
      const row = await db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
      return row && toJob(row);
    },
  };
}
