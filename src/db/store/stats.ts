import { sql } from 'kysely';
import type { JobCount, StatsStore } from '../../core/ports.js';
import { unknownMigrations } from '../migrate.js';
import type { SqlContext } from './context.js';

export function statsQueries({ db }: SqlContext): StatsStore {
  return {
    async countJobs(): Promise<JobCount[]> {
      // Done jobs are left out: they pile up for ever, and the claim index (status, run_at)
      // keeps this a scan of the few rows that are still waiting or were given up.
      const rows = await db
        .selectFrom('jobs')
        .select(['kind', 'status', (eb) => eb.fn.countAll<number>().as('count')])
        .where('status', 'in', ['queued', 'running', 'failed'])
        .groupBy(['kind', 'status'])
        .execute();
      return rows.map((row) => ({
        kind: row.kind,
        status: row.status as JobCount['status'],
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
