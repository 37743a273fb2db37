import type { FileVersion, Upload } from '../../core/model.js';
import type { AccountUsage, ListingStore, UploadQuery } from '../../core/ports.js';
import { RESUMABLE_KINDS } from '../../core/resumable.js';
import type { SqlContext } from './context.js';
import { latestExisting } from './files.js';
import { toFileVersion, toUpload } from './rows.js';

/** Read-only listings: an account's uploads, its usage, the named files an asset is a version of. */
export function listingQueries({ db }: SqlContext): ListingStore {
  return {
    async listUploads(
      accountId: string,
      {
        limit,
        cursor,
        status,
        keyId,
        tokenId,
        resumableExpiredBefore: lapsed,
        expiredBefore: ended,
      }: UploadQuery,
    ): Promise<{ uploads: Upload[]; nextCursor: string | null }> {
      let query = db.selectFrom('uploads').selectAll().where('account_id', '=', accountId);
      const resumable = [...RESUMABLE_KINDS];
      if (status === 'completed' || (status !== undefined && lapsed === undefined)) {
        query = query.where('status', '=', status);
      } else if (status === 'pending') {
        // A resumable upload past its expiry reads as expired, one that waits for its confirm past the
        // grace (see asOf).
        query = query
          .where('status', '=', 'pending')
          .where((eb) => eb.or([eb('kind', 'not in', resumable), eb('expires_at', '>=', lapsed!)]));
        if (ended !== undefined) {
          query = query.where((eb) => eb.or([eb('auto_complete', '=', 1), eb('expires_at', '>=', ended)]));
        }
      } else if (status === 'expired') {
        query = query.where((eb) => {
          const pending = eb('status', '=', 'pending');
          const byTime = [eb.and([pending, eb('kind', 'in', resumable), eb('expires_at', '<', lapsed!)])];
          if (ended !== undefined) {
            byTime.push(eb.and([pending, eb('auto_complete', '=', 0), eb('expires_at', '<', ended)]));
          }
          return eb.or([eb('status', '=', 'expired'), ...byTime]);
        });
      }
      if (tokenId !== undefined) query = query.where('token_id', '=', tokenId);
      else if (keyId !== undefined) query = query.where('key_id', '=', keyId).where('token_id', 'is', null);
      // Upload ids are time-ordered (UUID v7): newest first by id, a page continues below the cursor.
      if (cursor !== undefined) query = query.where('id', '<', cursor);
      const rows = await query
        .orderBy('id', 'desc')
        .limit(limit + 1)
        .execute();
      const uploads = rows.slice(0, limit).map(toUpload);
      return { uploads, nextCursor: rows.length > limit ? (uploads.at(-1)?.id ?? null) : null };
    },

    async accountUsage(accountId: string): Promise<AccountUsage> {
      const account = await db
        .selectFrom('accounts')
        .select(['bytes_used', 'bytes_reserved'])
        .where('id', '=', accountId)
        .executeTakeFirst();
      const assets = await db
        .selectFrom('assets')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('account_id', '=', accountId)
        .executeTakeFirst();
      const pending = await db
        .selectFrom('uploads')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('account_id', '=', accountId)
        .where('status', '=', 'pending')
        .executeTakeFirst();
      return {
        bytesUsed: Number(account?.bytes_used ?? 0),
        bytesReserved: Number(account?.bytes_reserved ?? 0),
        assets: Number(assets?.n ?? 0),
        pendingUploads: Number(pending?.n ?? 0),
      };
    },

    async fileVersionsOfAsset(accountId: string, assetId: string): Promise<FileVersion[]> {
      const rows = await db
        .selectFrom('file_versions as v')
        .selectAll('v')
        .select(latestExisting)
        .where('v.account_id', '=', accountId)
        .where('v.asset_id', '=', assetId)
        .orderBy('v.namespace')
        .orderBy('v.name')
        .orderBy('v.version')
        .execute();
      return rows.map((row) => toFileVersion(row, Number(row.latest_version)));
    },
  };
}
