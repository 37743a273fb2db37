import { type ExpressionBuilder, type SelectQueryBuilder, sql, type Transaction } from 'kysely';
import type { Job } from '../../core/model.js';
import type { ClaimOptions, JobStore, NewJob } from '../../core/ports.js';
import type { Database } from '../schema.js';
import type { SqlContext } from './context.js';
import { fromJob, toJob } from './rows.js';

/** How many lanes a PostgreSQL claim passes over, taken by other nodes meanwhile, before it gives up. */
const LANE_TRIES = 8;
/** The first key of the advisory locks on lanes (PostgreSQL), so they meet no other lock. */
const LANE_LOCK_CLASS = 0x6c616e65; // 'lane'

type Candidates<O> = SelectQueryBuilder<Database & { c: Database['jobs'] }, 'c', O>;

/** How many due jobs of no lane the claim looks at: on PostgreSQL other nodes may hold the first. */
const UNLANED_HEADS = 16;

/**
 * The ids of the jobs a claim may choose from, a few whatever the backlog: each lane's first
 * queued job due now, the first few due jobs of no lane (not of a kind in `skipKinds`), and the
 * running jobs whose lease ran out (as many as jobs were running, a few). A job a claim may take
 * is one of them: a lane's jobs all meet the same count and owner (see dueJobs), so its first
 * due job is the one to take. Read from jobs_lane_queued, a step for each lane with jobs queued
 * (the lanes by a skip over the index), so a full lane's backlog costs nothing: reading every
 * due job in due order instead, each claim read the whole backlog of an endpoint whose lane was
 * full, and idle workers polling did so again and again. A lane's first job is taken whatever
 * its kind (a lane's jobs are of one kind, a webhook endpoint's deliveries), so a skipped kind
 * costs nothing either; the claim leaves it out after.
 */
function heads(dialect: SqlContext['dialect'], now: number, skipKinds: readonly string[]) {
  // Named on SQLite: without statistics its planner takes jobs_claim for status = 'queued' and
  // sorts every queued job. (Literal statuses, so the partial index applies at all.)
  const queued = (as: string) =>
    sql`jobs ${sql.raw(as)}${dialect === 'sqlite' ? sql` indexed by jobs_lane_queued` : sql``}`;
  const kinds = skipKinds.length > 0 ? sql`and kind not in (${sql.join(skipKinds)})` : sql``;
  return sql<string>`(
    with recursive lanes(lane) as (
      select (select lane from ${queued('l')} where status = 'queued' and lane is not null order by lane limit 1)
      union all
      select (
        select q.lane from ${queued('q')} where q.status = 'queued' and q.lane > lanes.lane order by q.lane limit 1
      ) from lanes where lanes.lane is not null
    )
    select (
      select h.id from ${queued('h')} where h.status = 'queued' and h.lane = lanes.lane and h.run_at <= ${now}
      order by h.run_at, h.id limit 1
    ) from lanes where lanes.lane is not null
    union all
    select u.id from (
      select id from ${queued('u')} where status = 'queued' and lane is null and run_at <= ${now} ${kinds}
      order by run_at, id limit ${sql.lit(UNLANED_HEADS)}
    ) u
    union all
    select id from jobs where status = 'running' and lease_until < ${now}
  )`;
}

/**
 * The jobs that may be claimed now, first first: queued and due, or running on a lease that
 * ran out; not of a kind in `skipKinds`; and not in a lane that has `laneLimit` jobs running
 * (on a lease still good). A job of no lane meets no running job of its lane (null equals
 * nothing), so the count never holds it back. With `idleOwners`, only jobs whose lane owner
 * has no job running (jobs of no owner, likewise, always).
 */
function dueJobs<O>(
  dialect: SqlContext['dialect'],
  select: Candidates<O>,
  now: number,
  skipKinds: readonly string[],
  laneLimit: number,
  idleOwners = false,
): Candidates<O> {
  // On PostgreSQL an array, which its planner reads by the primary key whatever it guesses of
  // the table: given `in`, without statistics (a queue that just grew) it read every due job.
  const candidates = heads(dialect, now, skipKinds);
  let due = select.where(
    dialect === 'postgres'
      ? sql<boolean>`c.id = any(array${candidates})`
      : sql<boolean>`c.id in ${candidates}`,
  );
  // The heads are due; asked again for PostgreSQL, which checks a row it locks against these
  // conditions once more (another node may have claimed it since the heads were read). On
  // SQLite, under the write lock, nothing changes meanwhile, and with them there its planner
  // reads the jobs by status instead of by id.
  if (dialect === 'postgres') {
    due = due.where((eb) =>
      eb.or([
        eb.and([eb('c.status', '=', 'queued'), eb('c.run_at', '<=', now)]),
        eb.and([eb('c.status', '=', 'running'), eb('c.lease_until', '<', now)]),
      ]),
    );
  }
  due = due.where((eb) =>
    eb(
      eb
        .selectFrom('jobs as r')
        .select(eb.fn.countAll<number>().as('running'))
        .whereRef('r.lane', '=', 'c.lane')
        // A literal, so SQLite uses the partial index of running jobs (jobs_lane_running).
        .where('r.status', '=', sql.lit('running'))
        .where('r.lease_until', '>=', now),
      '<',
      laneLimit,
    ),
  );
  if (idleOwners) {
    due = due.where((eb) =>
      eb.not(
        eb.exists(
          eb
            .selectFrom('jobs as o')
            .select(sql.lit(1).as('one'))
            .whereRef('o.lane_owner', '=', 'c.lane_owner')
            // A literal, so SQLite uses the partial index of running jobs (jobs_lane_owner_running).
            .where('o.status', '=', sql.lit('running'))
            .where('o.lease_until', '>=', now),
        ),
      ),
    );
  }
  if (skipKinds.length > 0) due = due.where('c.kind', 'not in', skipKinds);
  // Jobs due at the same moment run in the order they were made (ids are time-ordered): an
  // account's webhooks then leave in the order of its events.
  return due.orderBy('c.run_at').orderBy('c.id');
}

/**
 * Whether this claim may run `row`, a job of `lane` (PostgreSQL): no other claim of the lane is
 * under way (the lock, held to the end of this transaction) and, counted after taking it, the
 * lane has fewer than `laneLimit` jobs running. The count is exact: a claim of the lane that
 * committed meanwhile is seen (each statement reads what was committed before it began), and
 * none can commit while this one holds the lock.
 *
 * At a limit of 1 the lane runs in order, so `row` must also be the lane's first due job. The
 * claim's select skips rows other claims hold locked, and a claim that is passing over this
 * lane (it lost the lock) may hold the first one for a moment: then this claim passes over it
 * too, and a later one takes the first, rather than starting the second before it.
 */
async function takeLane(
  trx: Transaction<Database>,
  row: { id: string; lane: string },
  now: number,
  skipKinds: readonly string[],
  laneLimit: number,
): Promise<boolean> {
  const { rows } = await sql<{ taken: boolean }>`
    select pg_try_advisory_xact_lock(${sql.lit(LANE_LOCK_CLASS)}, hashtext(${row.lane})) as taken`.execute(
    trx,
  );
  if (!rows[0]?.taken) return false;
  const running = await trx
    .selectFrom('jobs')
    .select((eb) => eb.fn.countAll<string | number>().as('n'))
    .where('lane', '=', row.lane)
    .where('status', '=', sql.lit('running'))
    .where('lease_until', '>=', now)
    .executeTakeFirstOrThrow();
  if (Number(running.n) >= laneLimit) return false;
  if (laneLimit > 1) return true;
  // Not locked, so not skipped: the first due job whoever holds it.
  const first = await dueJobs('postgres', trx.selectFrom('jobs as c'), now, skipKinds, laneLimit)
    .select('c.id')
    .where('c.lane', '=', row.lane)
    .limit(1)
    .executeTakeFirst();
  return first?.id === row.id;
}

export function jobQueries({ db, dialect }: SqlContext): JobStore {
  return {
    async enqueueJobs(jobs: NewJob[]): Promise<void> {
      if (jobs.length > 0) await db.insertInto('jobs').values(jobs.map(fromJob)).execute();
    },

    async claimJob(
      worker: string,
      now: number,
      leaseUntil: number,
      { skipKinds = [], laneLimit = 1 }: ClaimOptions = {},
    ): Promise<Job | undefined> {
      const claim = { status: 'running', worker, lease_until: leaseUntil, updated_at: now };
      // Fairness between lane owners (a webhook endpoint's account): the first due job of an
      // owner with nothing running is taken before any other, and only when there is none the
      // first due job at all. Lanes alone cap one endpoint, and an account may have fifty:
      // taking jobs strictly in due order, two of its endpoints that never answer held every
      // worker deliveries may use, and each one that freed up went to the same account's next
      // (older) delivery, so another account's waited behind the whole backlog. Now it waits
      // for the first worker to free up, about one timeout. Preferring, not capping: an owner
      // alone on the installation still gets every worker, and nothing else is held back.
      // On PostgreSQL which owners are idle is read without a lock: two nodes may both serve an
      // idle owner at once (each starting one of its jobs), which costs only a little fairness;
      // the lane limit stays exact. The second query runs only when the first finds nothing
      // (coalesce stops at its first value; PostgreSQL asks in turn), and a lane's jobs all
      // have its owner, so either meets them in the lane's own order.
      if (dialect === 'sqlite') {
        // One statement: it takes the write lock before it reads. A read-then-update
        // transaction would meet another connection's claim with SQLITE_BUSY instead. Under
        // that lock no other claim runs, so a lane's count read here is exact (and which
        // owners are idle, too).
        const idleFirst = (eb: ExpressionBuilder<Database, 'jobs'>) =>
          eb.fn.coalesce(
            dueJobs(dialect, eb.selectFrom('jobs as c'), now, skipKinds, laneLimit, true)
              .select('c.id')
              .limit(1),
            dueJobs(dialect, eb.selectFrom('jobs as c'), now, skipKinds, laneLimit).select('c.id').limit(1),
          );
        const row = await db
          .updateTable('jobs')
          .set({ ...claim, attempts: sql<number>`attempts + 1` })
          .where('id', '=', idleFirst)
          .returningAll()
          .executeTakeFirst();
        return row && toJob(row);
      }
      return db.transaction().execute(async (trx) => {
        // Lanes another claim is taking, or that filled up, while this one looked: their jobs
        // are passed over.
        const taken: string[] = [];
        const candidate = (idleOwners: boolean) => {
          let select = dueJobs('postgres', trx.selectFrom('jobs as c'), now, skipKinds, laneLimit, idleOwners)
            .selectAll('c')
            .limit(1)
            // Other nodes skip the row this one is claiming instead of queueing behind it.
            .forUpdate()
            .skipLocked();
          if (taken.length > 0) {
            select = select.where((eb) => eb.or([eb('c.lane', 'is', null), eb('c.lane', 'not in', taken)]));
          }
          return select.executeTakeFirst();
        };
        for (let tries = 0; tries < LANE_TRIES; tries += 1) {
          // An idle owner's job first, else the first due (see above).
          const row = (await candidate(true)) ?? (await candidate(false));
          if (!row) return undefined;
          const { lane } = row;
          if (lane !== null && !(await takeLane(trx, { id: row.id, lane }, now, skipKinds, laneLimit))) {
            taken.push(lane);
            continue;
          }
          const attempts = Number(row.attempts) + 1;
          await trx
            .updateTable('jobs')
            .set({ ...claim, attempts })
            .where('id', '=', row.id)
            .execute();
          return toJob({ ...row, status: 'running', attempts });
        }
        return undefined;
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

    async renewJob(id: string, worker: string, leaseUntil: number): Promise<boolean> {
      const result = await db
        .updateTable('jobs')
        .set({ lease_until: leaseUntil })
        .where('id', '=', id)
        .where('worker', '=', worker)
        .where('status', '=', 'running')
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
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

    async pruneJobs(before: number, limit: number): Promise<number> {
      // By when they were due, not when they finished: jobs_claim (status, run_at) finds and
      // orders them, a range of the done ones; a done job finished after it was due, so one due
      // before `before` may have finished a little later, which a retention of days ignores.
      const result = await db
        .deleteFrom('jobs')
        .where('id', 'in', (eb) =>
          eb
            .selectFrom('jobs')
            .select('id')
            .where('status', '=', 'done')
            .where('run_at', '<', before)
            .orderBy('run_at')
            .limit(limit),
        )
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}
