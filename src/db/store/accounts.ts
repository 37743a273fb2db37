import type { Updateable } from 'kysely';
import type { Account } from '../../core/model.js';
import type { AccountChanges, AccountStore } from '../../core/ports.js';
import type { AccountsTable } from '../schema.js';
import type { SqlContext } from './context.js';
import { toAccount } from './rows.js';

export function accountQueries({ db }: SqlContext): AccountStore {
  return {
    async ensureAccount(account: Account): Promise<Account> {
      await db
        .insertInto('accounts')
        .values({
          id: account.id,
          name: account.name,
          max_file_size: account.maxFileSize,
          storage_quota: account.storageQuota,
          disabled: account.disabled ? 1 : 0,
          strip_gps: account.stripGps ? 1 : 0,
          created_at: account.createdAt,
        })
        .onConflict((oc) => oc.column('id').doNothing())
        .execute();
      return (await this.getAccount(account.id))!;
    },

    async getAccount(id: string): Promise<Account | undefined> {
      const row = await db.selectFrom('accounts').selectAll().where('id', '=', id).executeTakeFirst();
      return row && toAccount(row);
    },

    async listAccounts(): Promise<Account[]> {
      return (await db.selectFrom('accounts').selectAll().orderBy('created_at').execute()).map(toAccount);
    },

    async updateAccount(id: string, changes: AccountChanges, at: number): Promise<Account | undefined> {
      const set: Updateable<AccountsTable> = {};
      if (changes.disabled !== undefined) set.disabled = changes.disabled ? 1 : 0;
      if (changes.maxFileSize !== undefined) set.max_file_size = changes.maxFileSize;
      if (changes.storageQuota !== undefined) set.storage_quota = changes.storageQuota;
      if (changes.stripGps !== undefined) set.strip_gps = changes.stripGps ? 1 : 0;
      if (Object.keys(set).length > 0) {
        await db.transaction().execute(async (trx) => {
          await trx.updateTable('accounts').set(set).where('id', '=', id).execute();
          // Disabling ends the account's console sessions for good: enabled again, it signs in anew.
          if (changes.disabled === true) {
            await trx
              .updateTable('console_sessions')
              .set({ revoked_at: at })
              .where('account_id', '=', id)
              .where('revoked_at', 'is', null)
              .execute();
          }
        });
      }
      return this.getAccount(id);
    },
  };
}
