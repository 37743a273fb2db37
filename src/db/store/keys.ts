import { CompiledQuery, type InferResult, type Kysely } from 'kysely';
import type { Account, ApiKey } from '../../core/model.js';
import type { KeyPage, KeyQuery, KeyStore } from '../../core/ports.js';
import type { Database } from '../schema.js';
import type { SqlContext } from './context.js';
import { appendEvents } from './events.js';
import { fromKey, toAccount, toKey } from './rows.js';
import { endPendingUploads, liveTokensOfKey, releaseTokenHolds, revokeTokensOfKey } from './tokens.js';

// Runs on every request. Building a Kysely query costs more than SQLite takes to run it,
// so this one is compiled once and re-run with each new parameter.
export function compileKeyLookup(db: Kysely<Database>) {
  return db
    .selectFrom('api_keys as k')
    .innerJoin('accounts as a', 'a.id', 'k.account_id')
    .selectAll('k')
    .select([
      'a.name as account_name',
      'a.max_file_size as account_max_file_size',
      'a.storage_quota as account_storage_quota',
      'a.disabled as account_disabled',
      'a.strip_gps as account_strip_gps',
      'a.created_at as account_created_at',
    ])
    .where('k.secret_hash', '=', '')
    .compile();
}

export type KeyLookupRow = InferResult<ReturnType<typeof compileKeyLookup>>[number];

// Runs on every redemption of a signed URL (see KeyStore.signerActive): compiled once, as above.
function compileSignerLookups(db: Kysely<Database>) {
  return {
    key: db
      .selectFrom('api_keys')
      .select('id')
      .where('id', '=', '')
      .where('revoked_at', 'is', null)
      .compile(),
    token: db
      .selectFrom('upload_tokens as t')
      .innerJoin('api_keys as k', 'k.id', 't.key_id')
      .select('t.id')
      .where('t.id', '=', '')
      .where('k.id', '=', '')
      .where('t.revoked_at', 'is', null)
      .where('k.revoked_at', 'is', null)
      .compile(),
  };
}

export function keyQueries({ db, dialect, ids }: SqlContext): KeyStore {
  const keyLookup = compileKeyLookup(db);
  const signerLookups = compileSignerLookups(db);
  const queries: KeyStore = {
    async insertKey(key: ApiKey, secretHash: string): Promise<void> {
      await db.insertInto('api_keys').values(fromKey(key, secretHash)).execute();
    },

    async ensureKey(key: ApiKey, secretHash: string): Promise<ApiKey> {
      await db
        .insertInto('api_keys')
        .values(fromKey(key, secretHash))
        // Registered before: kept, but with the prefix it would get now (see KeyService.register).
        .onConflict((oc) => oc.column('secret_hash').doUpdateSet({ prefix: key.prefix }))
        .execute();
      return (await queries.findKeyByHash(secretHash))!.key;
    },

    async findKeyByHash(secretHash: string): Promise<{ key: ApiKey; account: Account } | undefined> {
      const { rows } = await db.executeQuery(CompiledQuery.raw(keyLookup.sql, [secretHash]));
      const row = rows[0] as KeyLookupRow | undefined;
      if (!row) return undefined;
      return {
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

    async listKeys({ accountId, limit, cursor }: KeyQuery): Promise<KeyPage> {
      let query = db.selectFrom('api_keys').selectAll();
      if (accountId !== undefined) query = query.where('account_id', '=', accountId);
      if (cursor !== undefined) query = query.where('id', '>', cursor);
      const rows = await query
        .orderBy('id')
        .limit(limit + 1)
        .execute();
      const keys = rows.slice(0, limit).map(toKey);
      return { keys, nextCursor: rows.length > limit ? (keys.at(-1)?.id ?? null) : null };
    },

    async countKeys(): Promise<number> {
      const row = await db
        .selectFrom('api_keys')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },

    async revokeKey(keyId: string, at: number, accountId?: string): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        let revocable = trx
          .selectFrom('api_keys')
          .select('id')
          .where('id', '=', keyId)
          .where('revoked_at', 'is', null);
        if (accountId !== undefined) revocable = revocable.where('account_id', '=', accountId);
        if (!(await revocable.executeTakeFirst())) return false;
        // The pending uploads of its live tokens end with them, their rows locked first (see
        // endPendingUploads), then the key's, then the tokens'. The key's own pending uploads
        // stay: another key of the account may still complete them.
        const tokenIds = await liveTokensOfKey(trx, keyId, at);
        const { ended, events } = await endPendingUploads(trx, dialect, ids, tokenIds, at);
        let query = trx
          .updateTable('api_keys')
          .set({ revoked_at: at })
          .where('id', '=', keyId)
          .where('revoked_at', 'is', null);
        if (accountId !== undefined) query = query.where('account_id', '=', accountId);
        const result = await query.executeTakeFirst();
        const revoked = Number(result.numUpdatedRows) > 0;
        // Its tokens stop with it: each still live is revoked too, and says so (token.revoked).
        // Revoked meanwhile: the uploads ended here are ended all the same (see revokeToken).
        const tokenEvents = revoked
          ? await revokeTokensOfKey(trx, keyId, at, ended)
          : await releaseTokenHolds(trx, ended).then(() => []);
        await appendEvents(trx, ids, [...events, ...tokenEvents]);
        return revoked;
      });
    },

    async touchKey(keyId: string, at: number): Promise<void> {
      await db.updateTable('api_keys').set({ last_used_at: at }).where('id', '=', keyId).execute();
    },

    async signerActive(keyId: string, tokenId: string | null): Promise<boolean> {
      const { rows } = await db.executeQuery(
        tokenId === null
          ? CompiledQuery.raw(signerLookups.key.sql, [keyId])
          : CompiledQuery.raw(signerLookups.token.sql, [tokenId, keyId]),
      );
      return rows.length > 0;
    },
  };
  return queries;
}
