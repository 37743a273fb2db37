import { type Kysely, sql } from 'kysely';

// Asset numbers (`number`, the ActiveStorage blob id) and event cursors were counted across all
// accounts (the counters `seq` and `events`), so a tenant could tell from two of its own numbers
// how much every other tenant did in between. From here each account counts its own:
// `seq:<account>` numbers its uploads and assets, `events:<account>` the new `account_seq` of its
// events, the API's `cursor` (`seq` stays the events' installation-wide key, which deliveries
// name). Numbers already handed out stay as they are, since an app keeps blob ids in its own
// database and a reader its last cursor: old events keep their seq as their cursor, and every
// account's counters start where the installation-wide ones are, so its next numbers are above
// every number given before. An account made later starts at 1: it holds no older numbers, and
// starting it at the installation-wide value would tell it how much had been done before it.
// Accounts are never deleted, so every row's account is in `accounts`.
export async function up(db: Kysely<unknown>): Promise<void> {
  for (const [own, shared] of [
    ['seq:', 'seq'],
    ['events:', 'events'],
  ] as const) {
    await sql`insert into counters (name, value)
      select ${sql.lit(own)} || a.id, c.value from accounts a, counters c where c.name = ${sql.lit(shared)}
      on conflict (name) do nothing`.execute(db);
  }
  await sql`alter table events add column account_seq bigint not null default 0`.execute(db);
  await sql`update events set account_seq = seq`.execute(db);
  // Readers page one account by its own order now; nothing reads (account_id, seq) any more.
  await sql`drop index events_account_seq`.execute(db);
  await sql`create index events_account_cursor on events (account_id, account_seq)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index events_account_cursor`.execute(db);
  await sql`create index events_account_seq on events (account_id, seq)`.execute(db);
  // A cursor handed out since is an account_seq, never above its event's seq (every event bumps
  // both counters, and the accounts' started at `events`): paged by seq, a reader may see events
  // again, never miss one.
  await sql`alter table events drop column account_seq`.execute(db);
  // Numbers given since came from the accounts' counters: the installation-wide ones go on above
  // the highest of them, so no account is given a number twice.
  for (const [own, shared] of [
    ['seq:', 'seq'],
    ['events:', 'events'],
  ] as const) {
    await sql`update counters set value = (select max(value) from counters
        where name = ${sql.lit(shared)} or substr(name, 1, ${sql.lit(own.length)}) = ${sql.lit(own)})
      where name = ${sql.lit(shared)}`.execute(db);
    await sql`delete from counters where substr(name, 1, ${sql.lit(own.length)}) = ${sql.lit(own)}`.execute(
      db,
    );
  }
}
