import SQLite from 'better-sqlite3';

/**
 * Grows a stopped Wharf's SQLite database by `count` assets, each as Wharf itself records one:
 * its asset row, its completed upload row, its events and its finished jobs, cloned from the
 * rows of one real upload (`templateAssetId`) with fresh ids, digests and sequence numbers, all
 * older than anything written afterwards (ids are time-ordered, as Wharf's own). A few seconds
 * for 100,000 assets, where going through the API would take minutes.
 */
export function seedAssets(dbPath: string, templateAssetId: string, count: number): void {
  const db = new SQLite(dbPath);
  try {
    db.pragma('journal_mode = WAL');
    const columns = (table: string) =>
      (db.pragma(`table_info(${table})`) as { name: string }[]).map((c) => c.name);
    const template = db.prepare('select * from uploads where asset_id = ?').get(templateAssetId) as
      | { id: string; created_at: number }
      | undefined;
    if (!template) throw new Error(`no upload made asset ${templateAssetId}`);
    const base = Math.floor(Number(template.created_at)) - count - 1000;
    // A uuid v7 whose time is `base + i` ms and whose tail is `i` (and which table it is for).
    const id = (tag: number) =>
      `printf('%08x-%04x-7%03x-8%03x-%012x', (${base} + n.i) >> 16, (${base} + n.i) & 65535, ${tag}, 0, n.i)`;
    const clone = (table: string, where: string, overrides: Record<string, string>) => {
      const names = columns(table);
      const select = names.map((c) => overrides[c] ?? `t.${c}`).join(', ');
      db.prepare(
        `with recursive n(i) as (select 1 union all select i + 1 from n where i < ${count})
         insert into ${table} (${names.join(', ')}) select ${select} from n, ${table} t where ${where}`,
      ).run();
    };
    const maxSeq = (
      db.prepare("select coalesce(max(value), 0) as v from counters where name = 'seq'").get() as {
        v: number;
      }
    ).v;
    const maxEvent = (db.prepare('select coalesce(max(seq), 0) as v from events').get() as { v: number }).v;
    const perAsset = (
      db.prepare('select count(*) as n from events where data like ?').get(`%${templateAssetId}%`) as {
        n: number;
      }
    ).n;
    const seeded = db.transaction(() => {
      clone('assets', `t.id = '${templateAssetId}'`, {
        id: id(1),
        sha256: "printf('%064x', n.i)",
        md5: "printf('%032x', n.i)",
        seq: `${maxSeq} + n.i`,
        created_at: `${base} + n.i`,
        updated_at: `${base} + n.i`,
      });
      clone('uploads', `t.id = '${template.id}'`, {
        id: id(2),
        asset_id: id(1),
        seq: `${maxSeq} + n.i`,
        created_at: `${base} + n.i`,
        completed_at: `${base} + n.i`,
        expires_at: `${base} + n.i + 86400000`,
      });
      // The template's events (upload.created, upload.completed, asset.processed), renumbered
      // after every existing event, in the order of the assets they describe.
      clone('events', `t.data like '%${templateAssetId}%'`, {
        seq: `${maxEvent} + (n.i - 1) * ${perAsset} + (select count(*) from events e where e.data like '%${templateAssetId}%' and e.seq <= t.seq)`,
        id: `printf('%08x-%04x-7%03x-9%03x-%012x', (${base} + n.i) >> 16, (${base} + n.i) & 65535, 3, t.seq % 4096, n.i)`,
        created_at: `${base} + n.i`,
      });
      clone('jobs', `t.payload like '%${templateAssetId}%'`, {
        id: `printf('%08x-%04x-7%03x-a%03x-%012x', (${base} + n.i) >> 16, (${base} + n.i) & 65535, 4, 0, n.i)`,
        created_at: `${base} + n.i`,
        updated_at: `${base} + n.i`,
        run_at: `${base} + n.i`,
        // Finished, whatever the template's was when the server stopped: nothing to run.
        status: "'done'",
        lease_until: 'null',
        worker: 'null',
      });
      db.prepare("update counters set value = value + ? where name = 'seq'").run(count);
      db.prepare("update counters set value = (select max(seq) from events) where name = 'events'").run();
      db.prepare(
        'update accounts set bytes_used = bytes_used + ? * (select size from assets where id = ?)',
      ).run(count, templateAssetId);
    });
    seeded();
    // No ANALYZE: Wharf never runs one, so the planner sees what it sees in production.
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
}

/** EXPLAIN QUERY PLAN of `sql` on the database at `dbPath`, one line per step. */
export function queryPlan(dbPath: string, sql: string, ...params: unknown[]): string[] {
  const db = new SQLite(dbPath, { readonly: true });
  try {
    return (db.prepare(`explain query plan ${sql}`).all(...params) as { detail: string }[]).map(
      (r) => r.detail,
    );
  } finally {
    db.close();
  }
}
