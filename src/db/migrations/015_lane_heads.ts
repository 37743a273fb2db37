import { type Kysely, sql } from 'kysely';

// The claim took the first due job whose lane had room by reading every due job in due order
// and counting each one's lane: with a webhook endpoint's lane full (always, under load) each
// claim read its whole backlog, so a backlog slowed its own draining. It now asks each lane for
// its first due job (see claimJob). This index holds the queued jobs by lane, then in due order:
// the lanes that have any, each one's first job, and the first job of no lane, each a step of
// the index instead of a pass over the backlog.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create index jobs_lane_queued on jobs (lane, run_at, id) where status = 'queued'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index jobs_lane_queued`.execute(db);
}
