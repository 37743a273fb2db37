import { type Kysely, sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';

/** Assets queued per statement: well under either database's limit of bound parameters. */
const PAGE = 500;

// What 002_files_jobs_processing left undone for the rows that existed before it. It added
// `assets.seq` defaulting to 0 and `uploads.seq` as NULL, so every asset stored before it (and
// every one completed afterwards from an upload declared before it) has the number 0, which is
// also its ActiveStorage blob id; and `processing` defaulting to 'done' with an empty analysis,
// so those assets were never processed: no type, size or placeholder, transforms refuse them,
// and since re-uploading deduplicates onto them and `placeholders backfill` looks for images by
// their analysis, nothing repaired them. Numbers come from the counter (001 never gave 0), so
// `seq = 0` is exactly the mark of those rows.
export async function up(db: Kysely<unknown>): Promise<void> {
  // First processing, then numbers: numbering removes the mark. Pending migrations run in one
  // transaction on both databases (see db/connect.ts), so a crash in between undoes both; run
  // again regardless, it would queue a page twice at most, which costs time but changes nothing
  // (as a second `placeholders backfill` would).
  const now = Date.now();
  let after = '';
  for (;;) {
    // Only those never analysed: an asset completed after 002 from an older upload was processed.
    const { rows } = await sql<{ id: string }>`
      select id from assets
      where seq = 0 and status = 'ready' and processing = 'done' and analysis = '{}' and id > ${after}
      order by id limit ${sql.lit(PAGE)}`.execute(db);
    if (rows.length === 0) break;
    const ids = rows.map((r) => r.id);
    // The same rows the job runner's `process-asset` reads (src/db/store/rows.ts, fromJob).
    const jobs = ids.map(
      (id) =>
        sql`(${uuidv7()}, 'process-asset', ${JSON.stringify({ assetId: id })}, 'queued', 0, ${now}, ${now}, ${now})`,
    );
    await sql`insert into jobs (id, kind, payload, status, attempts, run_at, created_at, updated_at)
      values ${sql.join(jobs)}`.execute(db);
    // Pending, as a new asset is until its job ran: transforms sniff its type meanwhile.
    await sql`update assets set processing = 'pending' where id in (${sql.join(ids)})`.execute(db);
    after = ids.at(-1)!;
  }

  await number(db, 'assets', 'seq = 0');
  // An upload that made an asset has that asset's number (as one recorded after 002 has).
  await sql`update uploads set seq = (select a.seq from assets a where a.id = uploads.asset_id)
    where seq is null and deduplicated = 0 and asset_id is not null
      and exists (select 1 from assets a where a.id = uploads.asset_id)`.execute(db);
  // The others, pending ones above all: the asset their completion makes takes their number.
  await number(db, 'uploads', 'seq is null');
}

/** Numbers the rows of `table` that `where` selects from the counter, in the order they were made. */
async function number(db: Kysely<unknown>, table: 'assets' | 'uploads', where: string): Promise<void> {
  const condition = sql.raw(where);
  const { rows } = await sql<{ n: number | string }>`
    select count(*) as n from ${sql.table(table)} where ${condition}`.execute(db);
  const n = Number(rows[0]!.n);
  if (n === 0) return;
  // Taken from the counter first, as new uploads take theirs (the counter's row lock keeps a
  // running node of the older version from handing out the same numbers meanwhile).
  const bumped = await sql<{ value: number | string }>`
    insert into counters (name, value) values ('seq', ${sql.lit(n)})
    on conflict (name) do update set value = counters.value + ${sql.lit(n)}
    returning value`.execute(db);
  const first = Number(bumped.rows[0]!.value) - n;
  await sql`update ${sql.table(table)} set seq = ${sql.lit(first)} + numbered.n
    from (select id, row_number() over (order by created_at, id) as n
          from ${sql.table(table)} where ${condition}) as numbered
    where ${sql.table(table)}.id = numbered.id`.execute(db);
}

export async function down(): Promise<void> {
  // Nothing to undo: the numbers and the processing stay valid under 009.
}
