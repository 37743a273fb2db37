import { sql } from 'kysely';
import type { JobCount, StatsStore } from '../../core/ports.js';
import { unknownMigrations } from '../migrate.js';
import type { SqlContext } from './context.js';

export function statsQueries({ db }: SqlContext): StatsStore {
  return {
    async countJobs(now: number): Promise<JobCount[]> {
      // Done jobs are left out: they pile up for ever, and the claim index (status, run_at)
      // keeps this a scan of the few rows that are still waiting or were given up. A queued job
      // not due yet is told apart, as a first run (scheduled: the back-stops that normal uploads
      // queue for later) or a retry; only those due now are the backlog of `queued`.
      const jobs = db
        .selectFrom('jobs')
        .select((eb) => [
          'kind',
          eb
            .case()
            .when(eb.and([eb('status', '=', 'queued'), eb('run_at', '>', now), eb('attempts', '=', 0)]))
            .then('scheduled')
            .when(eb.and([eb('status', '=', 'queued'), eb('run_at', '>', now)]))
            .then('retrying')
            .else(eb.ref('status'))
            .end()
            .as('state'),
        ])
        .where('status', 'in', ['queued', 'running', 'failed'])
        .as('j');
      // Grouped outside: PostgreSQL would not take the CASE, whose bound `now` is a parameter of
      // its own in each place, as the same expression in the select and the group by.
      const rows = await db
        .selectFrom(jobs)
        .select(['j.kind', 'j.state', (eb) => eb.fn.countAll<number>().as('count')])
        .groupBy(['j.kind', 'j.state'])
        .execute();
      return rows.map((row) => ({
        kind: row.kind,
        status: row.state as JobCount['status'],
        count: Number(row.count),
      }));
    },

    async ping(): Promise<void> {
      await sql`select 1`.execute(db);
    },

    async newerMigrations(): Promise<string[]> {
      const { rows } = await sql<{ name: string }>`select name from wharf_migrations`.execute(db);
      return unknownMigrations(rows.map((r) => r.name));
    },
  };
}
