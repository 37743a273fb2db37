import { CompiledQuery, type InferResult, type Kysely, type Selectable, type Transaction } from 'kysely';
import { type NewEvent, tokenChanged, tokenRevokedWithKey } from '../../core/events.js';
import type { Account, UploadToken } from '../../core/model.js';
import type { TokenStore } from '../../core/ports.js';
import type { Database, UploadTokensTable } from '../schema.js';
import type { SqlContext } from './context.js';
import { appendEvents } from './events.js';
import { fromToken, toAccount, toToken } from './rows.js';

// Runs on every request made with a token: compiled once, re-run with each hash (as keys.ts).
function compileTokenLookup(db: Kysely<Database>) {
  return db
    .selectFrom('upload_tokens as t')
    .innerJoin('accounts as a', 'a.id', 't.account_id')
    .innerJoin('api_keys as k', 'k.id', 't.key_id')
    .selectAll('t')
    .select([
      'a.name as account_name',
      'a.max_file_size as account_max_file_size',
      'a.storage_quota as account_storage_quota',
      'a.disabled as account_disabled',
      'a.strip_gps as account_strip_gps',
      'a.created_at as account_created_at',
      'k.revoked_at as key_revoked_at',
    ])
    .where('t.secret_hash', '=', '')
    .compile();
}

type TokenLookupRow = InferResult<ReturnType<typeof compileTokenLookup>>[number];

/** Tokens as the API shows them: with when the key that minted them was revoked. */
function withMinter(db: Kysely<Database>) {
  return db
    .selectFrom('upload_tokens as t')
    .leftJoin('api_keys as k', 'k.id', 't.key_id')
    .selectAll('t')
    .select('k.revoked_at as key_revoked_at');
}

/**
 * Revoking a key stops the tokens it minted (authenticate refuses them). Those still live then
 * are revoked with it (see revokeTokensOfKey); those expired already keep their rows as they
 * were, as do tokens of keys revoked before that was done, so a token shows as revoked from
 * whichever came first: its own revocation or its key's.
 */
function toShownToken(row: Selectable<UploadTokensTable> & { key_revoked_at: number | null }): UploadToken {
  const token = toToken(row);
  const keyRevokedAt = row.key_revoked_at === null ? null : Number(row.key_revoked_at);
  if (keyRevokedAt !== null && (token.revokedAt === null || keyRevokedAt < token.revokedAt)) {
    return { ...token, revokedAt: keyRevokedAt };
  }
  return token;
}

/**
 * Revokes, in the transaction revoking key `keyId` at `at`, the tokens it minted that are still
 * live (neither revoked nor expired), and returns their token.revoked events for the caller to
 * append last (see appendEvents). Writing their rows, not only the key's, makes each event
 * recorded once: a DELETE of one of them racing this waits for the row this locks, then finds it
 * revoked (and this one, for a row the DELETE locked first, finds it revoked the same way).
 * Locks the key's row before its tokens', as recording an upload does (see reservations.ts).
 */
export async function revokeTokensOfKey(
  trx: Transaction<Database>,
  keyId: string,
  at: number,
): Promise<NewEvent[]> {
  const rows = await trx
    .updateTable('upload_tokens')
    .set({ revoked_at: at })
    .where('key_id', '=', keyId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', at)
    .returningAll()
    .execute();
  return rows.map((row) => tokenRevokedWithKey(toToken(row), at));
}

export function tokenQueries({ db, ids }: SqlContext): TokenStore {
  const lookup = compileTokenLookup(db);
  return {
    async insertToken(token: UploadToken, secretHash: string): Promise<void> {
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('upload_tokens').values(fromToken(token, secretHash)).execute();
        await appendEvents(trx, ids, [tokenChanged('token.created', token, token.createdAt)]);
      });
    },

    async findTokenByHash(
      secretHash: string,
    ): Promise<{ token: UploadToken; account: Account; keyRevoked: boolean } | undefined> {
      const { rows } = await db.executeQuery(CompiledQuery.raw(lookup.sql, [secretHash]));
      const row = rows[0] as TokenLookupRow | undefined;
      if (!row) return undefined;
      return {
        token: toToken(row),
        account: toAccount({
          id: row.account_id,
          name: row.account_name,
          max_file_size: row.account_max_file_size,
          storage_quota: row.account_storage_quota,
          disabled: row.account_disabled,
          strip_gps: row.account_strip_gps,
          created_at: row.account_created_at,
        }),
        keyRevoked: row.key_revoked_at !== null,
      };
    },

    async getToken(accountId: string, id: string, keyId?: string): Promise<UploadToken | undefined> {
      let query = withMinter(db).where('t.account_id', '=', accountId).where('t.id', '=', id);
      if (keyId !== undefined) query = query.where('t.key_id', '=', keyId);
      const row = await query.executeTakeFirst();
      return row && toShownToken(row);
    },

    async listTokens(
      accountId: string,
      { limit, cursor, keyId }: { limit: number; cursor?: string | undefined; keyId?: string | undefined },
    ): Promise<{ tokens: UploadToken[]; nextCursor: string | null }> {
      let query = withMinter(db).where('t.account_id', '=', accountId);
      if (keyId !== undefined) query = query.where('t.key_id', '=', keyId);
      if (cursor !== undefined) query = query.where('t.id', '<', cursor);
      const rows = await query
        .orderBy('t.id', 'desc')
        .limit(limit + 1)
        .execute();
      const tokens = rows.slice(0, limit).map(toShownToken);
      return { tokens, nextCursor: rows.length > limit ? (tokens.at(-1)?.id ?? null) : null };
    },

    async revokeToken(accountId: string, id: string, at: number, keyId?: string): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        let query = trx
          .updateTable('upload_tokens')
          .set({ revoked_at: at })
          .where('account_id', '=', accountId)
          .where('id', '=', id)
          .where('revoked_at', 'is', null)
          // Revoked already, with the key that minted it (as it is shown): nothing left to revoke.
          .where(({ not, exists, selectFrom }) =>
            not(
              exists(
                selectFrom('api_keys')
                  .select('api_keys.id')
                  .whereRef('api_keys.id', '=', 'upload_tokens.key_id')
                  .where('api_keys.revoked_at', 'is not', null),
              ),
            ),
          );
        if (keyId !== undefined) query = query.where('key_id', '=', keyId);
        const row = await query.returningAll().executeTakeFirst();
        if (!row) return false;
        await appendEvents(trx, ids, [tokenChanged('token.revoked', toToken(row), at)]);
        return true;
      });
    },
  };
}
