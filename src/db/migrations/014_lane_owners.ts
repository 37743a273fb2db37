import { type Kysely, sql } from 'kysely';

// Lanes (migration 011) limit one webhook endpoint, but an account may have fifty: two of its
// endpoints that never answer held every worker deliveries may take, and another account's
// deliveries waited behind the whole backlog, minutes to hours, as the claim took the oldest
// due job first. A job's lane owner (the endpoint's account) lets the claim serve owners with
// nothing in flight first (see claimJob). The partial index holds only running jobs, the ones
// that question asks about. Deliveries already waiting get their endpoint's account, so a
// backlog queued before the upgrade is shared too.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table jobs add column lane_owner text`.execute(db);
  await sql`create index jobs_lane_owner_running on jobs (lane_owner) where status = 'running'`.execute(db);
  await sql`update jobs set lane_owner = w.account_id from webhooks w
    where w.id = jobs.lane and jobs.status in ('queued', 'running')`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index jobs_lane_owner_running`.execute(db);
  await sql`alter table jobs drop column lane_owner`.execute(db);
}
