import { type Kysely, sql } from 'kysely';

// Jobs of one lane run one at a time, whichever node claims them (see claimJob): a webhook
// endpoint's deliveries are one lane, so an endpoint that never answers holds one worker, not
// every worker of the installation. The partial index holds only running jobs, the ones the
// claim asks about. Deliveries already waiting are put in their endpoint's lane, so a backlog
// queued before the upgrade is limited too.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table jobs add column lane text`.execute(db);
  await sql`create index jobs_lane_running on jobs (lane) where status = 'running'`.execute(db);
  await sql`update jobs set lane = d.webhook_id from webhook_deliveries d
    where d.job_id = jobs.id and d.status = 'pending' and jobs.status in ('queued', 'running')`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index jobs_lane_running`.execute(db);
  await sql`alter table jobs drop column lane`.execute(db);
}
