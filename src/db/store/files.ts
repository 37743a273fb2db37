import type { ExpressionBuilder, Transaction } from 'kysely';
import type { FileVersion } from '../../core/model.js';
import type { FileStore } from '../../core/ports.js';
import type { Database } from '../schema.js';
import type { SqlContext } from './context.js';
import { toFileVersion } from './rows.js';

export function fileQueries({ db }: SqlContext): FileStore {
  function versionsOf(accountId: string, namespace: string, name: string) {
    return db
      .selectFrom('file_versions as v')
      .selectAll('v')
      .select(latestExisting)
      .where('v.account_id', '=', accountId)
      .where('v.namespace', '=', namespace)
      .where('v.name', '=', name);
  }

  return {
    async getFileVersion(
      accountId: string,
      namespace: string,
      name: string,
      version?: number,
    ): Promise<FileVersion | undefined> {
      let query = versionsOf(accountId, namespace, name);
      query =
        version === undefined
          ? query.orderBy('v.version', 'desc').limit(1)
          : query.where('v.version', '=', version);
      const row = await query.executeTakeFirst();
      return row && toFileVersion(row, Number(row.latest_version));
    },

    async listFileVersions(accountId: string, namespace: string, name: string): Promise<FileVersion[]> {
      const rows = await versionsOf(accountId, namespace, name).orderBy('v.version').execute();
      return rows.map((row) => toFileVersion(row, Number(row.latest_version)));
    },

    async namespacesOfAsset(accountId: string, assetId: string): Promise<string[]> {
      const rows = await db
        .selectFrom('file_versions')
        .select('namespace')
        .distinct()
        .where('asset_id', '=', assetId)
        .where('account_id', '=', accountId)
        .orderBy('namespace')
        .execute();
      return rows.map((row) => row.namespace);
    },
  };
}

/**
 * A version row's file's latest version that still exists, as `latest_version`. Not the file's
 * `latest_version` column: that counts up only (it numbers the next upload, so a number is never
 * given twice), while deleting an asset deletes the versions that held it; reported as is, it
 * named a version that was gone (`?version=` of it was 404, and the latest served was another).
 */
export function latestExisting(eb: ExpressionBuilder<Database & { v: Database['file_versions'] }, 'v'>) {
  return eb
    .selectFrom('file_versions as l')
    .select((e) => e.fn.max('l.version').as('version'))
    .whereRef('l.account_id', '=', 'v.account_id')
    .whereRef('l.namespace', '=', 'v.namespace')
    .whereRef('l.name', '=', 'v.name')
    .as('latest_version');
}

export async function addFileVersion(
  trx: Transaction<Database>,
  accountId: string,
  namespace: string,
  name: string,
  assetId: string,
  at: number,
): Promise<FileVersion> {
  // The upsert locks the file's head row, so concurrent uploads of one name (on any node)
  // are numbered one after another.
  const head = await trx
    .insertInto('files')
    .values({ account_id: accountId, namespace, name, latest_version: 1 })
    .onConflict((oc) =>
      oc
        .columns(['account_id', 'namespace', 'name'])
        .doUpdateSet((eb) => ({ latest_version: eb('files.latest_version', '+', 1) })),
    )
    .returning('latest_version')
    .executeTakeFirstOrThrow();
  const version = Number(head.latest_version);
  // `at` was taken before the lock above was waited for (and on another node's clock): a later
  // version could be dated before an earlier one, and the versions list, oldest first, would
  // run backwards in time. Under the lock, no version is dated before the one before it.
  const previous = await trx
    .selectFrom('file_versions')
    .select((eb) => eb.fn.max('created_at').as('at'))
    .where('account_id', '=', accountId)
    .where('namespace', '=', namespace)
    .where('name', '=', name)
    .executeTakeFirst();
  const createdAt = Math.max(at, Number(previous?.at ?? 0));
  await trx
    .insertInto('file_versions')
    .values({ account_id: accountId, namespace, name, version, asset_id: assetId, created_at: createdAt })
    .execute();
  return { accountId, namespace, name, version, latestVersion: version, assetId, createdAt };
}
