import type { Selectable } from 'kysely';
import type { Derivative } from '../../core/model.js';
import type { DerivativeStore } from '../../core/ports.js';
import type { DerivativesTable } from '../schema.js';
import type { SqlContext } from './context.js';

function toDerivative(row: Selectable<DerivativesTable>): Derivative {
  return {
    assetId: row.asset_id,
    accountId: row.account_id,
    paramsKey: row.params_key,
    storageKey: row.storage_key,
    size: Number(row.size),
    contentType: row.content_type,
    sha256: row.sha256,
    createdAt: Number(row.created_at),
  };
}

export function derivativeQueries({ db }: SqlContext): DerivativeStore {
  const queries: DerivativeStore = {
    async getDerivative(assetId: string, paramsKey: string): Promise<Derivative | undefined> {
      const row = await db
        .selectFrom('derivatives')
        .selectAll()
        .where('asset_id', '=', assetId)
        .where('params_key', '=', paramsKey)
        .executeTakeFirst();
      return row && toDerivative(row);
    },

    async insertDerivative(d: Derivative): Promise<Derivative | undefined> {
      await db
        .insertInto('derivatives')
        .values({
          asset_id: d.assetId,
          params_key: d.paramsKey,
          account_id: d.accountId,
          storage_key: d.storageKey,
          size: d.size,
          content_type: d.contentType,
          sha256: d.sha256,
          created_at: d.createdAt,
        })
        .onConflict((oc) => oc.columns(['asset_id', 'params_key']).doNothing())
        .execute();
      // Checked after the insert, not before: an asset deleted while its derivative was being
      // rendered has had its derivatives freed, and a row recorded after that is taken back
      // here (the deletion removes any row recorded before it). Only this row: another
      // rendering's, recorded just before, is the deletion's to free with its object, which
      // it could no longer find if its row went here.
      const asset = await db.selectFrom('assets').select('id').where('id', '=', d.assetId).executeTakeFirst();
      if (!asset) {
        await db
          .deleteFrom('derivatives')
          .where('asset_id', '=', d.assetId)
          .where('params_key', '=', d.paramsKey)
          .where('storage_key', '=', d.storageKey)
          .execute();
        return undefined;
      }
      return queries.getDerivative(d.assetId, d.paramsKey);
    },

    async findDerivativeBySha256(assetId: string, sha256: string): Promise<Derivative | undefined> {
      const row = await db
        .selectFrom('derivatives')
        .selectAll()
        .where('asset_id', '=', assetId)
        .where('sha256', '=', sha256)
        .orderBy('params_key')
        .executeTakeFirst();
      return row && toDerivative(row);
    },

    async listDerivatives(assetId: string): Promise<Derivative[]> {
      const rows = await db
        .selectFrom('derivatives')
        .selectAll()
        .where('asset_id', '=', assetId)
        .orderBy('params_key')
        .execute();
      return rows.map(toDerivative);
    },

    async countDerivatives(assetId: string): Promise<number> {
      const row = await db
        .selectFrom('derivatives')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('asset_id', '=', assetId)
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },

    async deleteDerivatives(assetId: string): Promise<void> {
      await db.deleteFrom('derivatives').where('asset_id', '=', assetId).execute();
    },

    async deleteDerivativesStoredAt(assetId: string, storageKey: string): Promise<void> {
      await db
        .deleteFrom('derivatives')
        .where('asset_id', '=', assetId)
        .where('storage_key', '=', storageKey)
        .execute();
    },
  };
  return queries;
}
