import { WharfError } from '../../core/errors.js';
import type { Account, ApiKey } from '../../core/model.js';
import type { ConsoleSession, SessionStore } from '../../core/ports.js';
import type { SqlContext } from './context.js';
import { toAccount, toKey } from './rows.js';

type SessionRow = {
  id_hash: string;
  account_id: string;
  key_id: string;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  ends_at: number;
  revoked_at: number | null;
};

function toSession(row: SessionRow): ConsoleSession {
  return {
    idHash: row.id_hash,
    accountId: row.account_id,
    keyId: row.key_id,
    createdAt: Number(row.created_at),
    lastSeenAt: Number(row.last_seen_at),
    expiresAt: Number(row.expires_at),
    endsAt: Number(row.ends_at),
    revokedAt: row.revoked_at === null ? null : Number(row.revoked_at),
  };
}

/** Web console sessions (migration 007). */
export function sessionQueries({ db, dialect }: SqlContext): SessionStore {
  return {
    async insertSession(session: ConsoleSession): Promise<void> {
      await db.transaction().execute(async (trx) => {
        // Checked with the account row locked (PostgreSQL; SQLite has one writer at a time):
        // a disable that commits first is seen here, and one that commits after revokes this
        // session, so a sign-in racing a disable never leaves a session that outlives it.
        let select = trx.selectFrom('accounts').select('disabled').where('id', '=', session.accountId);
        if (dialect === 'postgres') select = select.forShare();
        else
          await trx
            .updateTable('accounts')
            .set((eb) => ({ disabled: eb.ref('disabled') }))
            .where('id', '=', session.accountId)
            .execute();
        const account = await select.executeTakeFirst();
        if (!account || Number(account.disabled) !== 0) {
          throw new WharfError('ACCOUNT_DISABLED', 'This account is disabled.');
        }
        await trx
          .insertInto('console_sessions')
          .values({
            id_hash: session.idHash,
            account_id: session.accountId,
            key_id: session.keyId,
            created_at: session.createdAt,
            last_seen_at: session.lastSeenAt,
            expires_at: session.expiresAt,
            ends_at: session.endsAt,
            revoked_at: session.revokedAt,
          })
          .execute();
      });
    },

    async findSessionByHash(
      idHash: string,
    ): Promise<{ session: ConsoleSession; key: ApiKey; account: Account } | undefined> {
      // Every console request looks its session up, with the key and the account, in one query:
      // a revoked key or a disabled account ends its sessions at once, on every node.
      const row = await db
        .selectFrom('console_sessions as s')
        .innerJoin('api_keys as k', 'k.id', 's.key_id')
        .innerJoin('accounts as a', 'a.id', 's.account_id')
        .selectAll('k')
        .select([
          's.id_hash',
          's.created_at as session_created_at',
          's.last_seen_at',
          's.expires_at',
          's.ends_at',
          's.revoked_at as session_revoked_at',
          'a.name as account_name',
          'a.max_file_size as account_max_file_size',
          'a.storage_quota as account_storage_quota',
          'a.disabled as account_disabled',
          'a.strip_gps as account_strip_gps',
          'a.created_at as account_created_at',
        ])
        .where('s.id_hash', '=', idHash)
        .executeTakeFirst();
      if (!row) return undefined;
      return {
        session: toSession({
          id_hash: row.id_hash,
          account_id: row.account_id,
          key_id: row.id,
          created_at: row.session_created_at,
          last_seen_at: row.last_seen_at,
          expires_at: row.expires_at,
          ends_at: row.ends_at,
          revoked_at: row.session_revoked_at,
        }),
        key: toKey(row),
        account: toAccount({
          id: row.account_id,
          name: row.account_name,
          max_file_size: row.account_max_file_size,
          storage_quota: row.account_storage_quota,
          disabled: row.account_disabled,
          strip_gps: row.account_strip_gps,
          created_at: row.account_created_at,
        }),
      };
    },

    async touchSession(idHash: string, at: number, expiresAt: number): Promise<void> {
      await db
        .updateTable('console_sessions')
        .set({ last_seen_at: at, expires_at: expiresAt })
        .where('id_hash', '=', idHash)
        .where('revoked_at', 'is', null)
        .execute();
    },

    async revokeSession(idHash: string, at: number): Promise<boolean> {
      const result = await db
        .updateTable('console_sessions')
        .set({ revoked_at: at })
        .where('id_hash', '=', idHash)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },

    async pruneSessions(before: number, limit: number): Promise<number> {
      const doomed = db
        .selectFrom('console_sessions')
        .select('id_hash')
        .where((eb) => eb.or([eb('expires_at', '<', before), eb('revoked_at', '<', before)]))
        .limit(limit);
      const result = await db
        .deleteFrom('console_sessions')
        .where('id_hash', 'in', doomed)
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}
