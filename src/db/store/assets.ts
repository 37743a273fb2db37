import type { Kysely } from 'kysely';
import { assetChanged } from '../../core/events.js';
import type { Access, Asset, AssetAnalysis, ProcessingStatus } from '../../core/model.js';
import type { AssetPage, AssetQuery, AssetStore, NewJob } from '../../core/ports.js';
import type { Database } from '../schema.js';
import type { SqlContext } from './context.js';
import { appendEvents } from './events.js';
import { settleDeleted } from './reservations.js';
import { fromJob, toAsset } from './rows.js';

/** One account's asset, read by the store itself or inside a transaction it holds. */
async function readAsset(q: Kysely<Database>, accountId: string, id: string): Promise<Asset | undefined> {
  const row = await q
    .selectFrom('assets')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .executeTakeFirst();
  return row && toAsset(row);
}

export function assetQueries({ db, dialect, ids }: SqlContext): AssetStore {
  return {
    getAsset(accountId: string, id: string): Promise<Asset | undefined> {
      return readAsset(db, accountId, id);
    },

    async getAssetById(id: string): Promise<Asset | undefined> {
      const row = await db.selectFrom('assets').selectAll().where('id', '=', id).executeTakeFirst();
      return row && toAsset(row);
    },

    async findAssetBySha256(accountId: string, sha256: string): Promise<Asset | undefined> {
      return (await this.findAssetsBySha256(accountId, [sha256]))[0];
    },

    async findAssetsBySha256(accountId: string, sha256s: string[]): Promise<Asset[]> {
      const found: Asset[] = [];
      for (let i = 0; i < sha256s.length; i += 500) {
        const rows = await db
          .selectFrom('assets')
          .selectAll()
          .where('account_id', '=', accountId)
          .where('sha256', 'in', sha256s.slice(i, i + 500))
          .execute();
        found.push(...rows.map(toAsset));
      }
      return found;
    },

    async listAssets(accountId: string, query: AssetQuery): Promise<AssetPage> {
      let select = db.selectFrom('assets').selectAll().where('account_id', '=', accountId);
      if (query.cursor) select = select.where('id', '<', query.cursor);
      if (query.createdAfter !== undefined) select = select.where('created_at', '>=', query.createdAfter);
      if (query.createdBefore !== undefined) select = select.where('created_at', '<', query.createdBefore);
      if (query.namePrefix) {
        const prefix = query.namePrefix;
        // substr() rather than LIKE: LIKE has wildcards to escape and folds case in SQLite.
        // substr() counts characters (code points), not UTF-16 units as .length does.
        const chars = [...prefix].length;
        select = select.where((eb) => eb(eb.fn('substr', ['name', eb.val(1), eb.val(chars)]), '=', prefix));
      }
      if (query.namespace !== undefined) {
        const namespace = query.namespace;
        select = select.where((eb) =>
          eb.exists(
            eb
              .selectFrom('file_versions as fv')
              .select('fv.asset_id')
              .whereRef('fv.asset_id', '=', 'assets.id')
              .where('fv.account_id', '=', accountId)
              .where('fv.namespace', '=', namespace),
          ),
        );
      }
      if (query.contentType) {
        if (query.contentType.endsWith('/*')) {
          const top = query.contentType.slice(0, -1);
          select = select.where((eb) =>
            eb(eb.fn('substr', ['content_type', eb.val(1), eb.val(top.length)]), '=', top),
          );
        } else {
          // The type with or without parameters: `text/csv` is also `text/csv; charset=utf-8`.
          // Stored types are lower case and trimmed, and parameters follow the subtype after
          // optional spaces or tabs and a ";" (validateContentType), so the character after the
          // type, if any, is one of those three. substr() as for prefixes: no LIKE wildcards.
          const type = query.contentType;
          select = select.where((eb) =>
            eb(eb.fn('substr', ['content_type', eb.val(1), eb.val(type.length + 1)]), 'in', [
              type,
              `${type};`,
              `${type} `,
              `${type}\t`,
            ]),
          );
        }
      }
      const rows = await select
        .orderBy('id', 'desc')
        .limit(query.limit + 1)
        .execute();
      const page = rows.slice(0, query.limit).map(toAsset);
      return { assets: page, nextCursor: rows.length > query.limit ? (page.at(-1)?.id ?? null) : null };
    },

    async deleteAsset(
      accountId: string,
      id: string,
      at: number,
      reason: 'deleted' | 'rejected',
      jobs: NewJob[],
    ): Promise<Asset | undefined> {
      return db.transaction().execute(async (trx) => {
        let select = trx
          .selectFrom('assets')
          .selectAll()
          .where('account_id', '=', accountId)
          .where('id', '=', id);
        // Locked before its versions are removed (PostgreSQL; SQLite has one writer at a time):
        // a completion deduplicated onto this asset holds it (KEY SHARE, see takeAsset in
        // uploads.ts) until it commits, and the version it adds is then seen and removed below;
        // a completion that comes after this lock waits, and finds the asset gone.
        if (dialect === 'postgres') select = select.forUpdate();
        const row = await select.executeTakeFirst();
        if (!row) return undefined;
        await trx.deleteFrom('file_versions').where('asset_id', '=', id).execute();
        // Only the transaction whose DELETE removed the row goes on. The lock above makes a
        // second delete of the asset on PostgreSQL find no row once the first commits; the
        // check stays as the guard that each deletion gives its size back once.
        const deleted = await trx.deleteFrom('assets').where('id', '=', id).executeTakeFirst();
        if (Number(deleted.numDeletedRows) === 0) return undefined;
        await settleDeleted(trx, accountId, Number(row.size));
        if (jobs.length > 0) await trx.insertInto('jobs').values(jobs.map(fromJob)).execute();
        const asset = toAsset(row);
        // Last: appendEvents takes the events lock (see there).
        await appendEvents(trx, ids, [
          assetChanged(reason === 'rejected' ? 'asset.rejected' : 'asset.deleted', asset, at),
        ]);
        return asset;
      });
    },

    async countAssetsWithStorageKey(storageKey: string): Promise<number> {
      const row = await db
        .selectFrom('assets')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('storage_key', '=', storageKey)
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },

    async setAssetAccess(
      accountId: string,
      id: string,
      access: Access,
      at: number,
    ): Promise<Asset | undefined> {
      return db.transaction().execute(async (trx) => {
        const row = await trx
          .updateTable('assets')
          .set({ access, updated_at: at })
          .where('account_id', '=', accountId)
          .where('id', '=', id)
          .where('access', '!=', access)
          .returningAll()
          .executeTakeFirst();
        if (!row) {
          // It has that access already (or does not exist): nothing changed, so no
          // asset.updated ("its access level changed") and the same updated_at.
          return readAsset(trx, accountId, id);
        }
        const asset = toAsset(row);
        await appendEvents(trx, ids, [assetChanged('asset.updated', asset, at)]);
        return asset;
      });
    },

    async recordAnalysis(
      id: string,
      processing: ProcessingStatus,
      analysis: AssetAnalysis,
      at: number,
    ): Promise<void> {
      await db.transaction().execute(async (trx) => {
        const row = await trx
          .updateTable('assets')
          .set({ processing, analysis: JSON.stringify(analysis), updated_at: at })
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirst();
        if (row) await appendEvents(trx, ids, [assetChanged('asset.processed', toAsset(row), at)]);
      });
    },

    async markAssetVerified(id: string, md5: string, at: number): Promise<boolean> {
      const result = await db
        .updateTable('assets')
        .set({ status: 'ready', md5, updated_at: at })
        .where('id', '=', id)
        .where('status', '=', 'verifying')
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
  };
}
