import { CompiledQuery, type InferResult, type Kysely, type Selectable, sql, type Transaction } from 'kysely';
import {
  type NewEvent,
  TOKEN_REVOKED_ENDING,
  tokenChanged,
  tokenRevokedWithKey,
  uploadEnded,
} from '../../core/events.js';
import type { IdSource } from '../../core/ids.js';
import type { Account, UploadToken } from '../../core/model.js';
import type { TokenStore } from '../../core/ports.js';
import { FREE_UPLOAD_JOB } from '../../core/upload-types.js';
import type { Dialect } from '../connect.js';
import type { Database, UploadsTable, UploadTokensTable } from '../schema.js';
import type { SqlContext } from './context.js';
import { appendEvents } from './events.js';
import { endingColumns, fromJob, fromToken, toAccount, toToken, toUpload } from './rows.js';

/** Uploads one statement of endPendingUploads names at most (well under SQLite's parameter limit). */
const END_CHUNK = 500;

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
  ended: Selectable<UploadsTable>[],
): Promise<NewEvent[]> {
  await releaseTokenHolds(trx, ended);
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

/**
 * The live tokens key `keyId` minted (neither revoked nor expired at `at`): those its revocation
 * revokes (see revokeTokensOfKey), read before anything is locked (see endPendingUploads).
 */
export async function liveTokensOfKey(
  trx: Transaction<Database>,
  keyId: string,
  at: number,
): Promise<string[]> {
  const rows = await trx
    .selectFrom('upload_tokens')
    .select('id')
    .where('key_id', '=', keyId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', at)
    .execute();
  return rows.map((row) => row.id);
}

/**
 * Ends, in the transaction revoking `tokenIds` at `at`, every upload made with them that is still
 * pending: failed with the refusal its completion would get (TOKEN_REVOKED_ENDING). Why: each held
 * its account's quota and its token's files, bytes and open-upload slots until it expired, up to
 * a day later, though nothing could complete it any more. Gives back what they held of their
 * accounts (their tokens' counters: releaseTokenHolds, once the caller has locked what comes
 * between), queues a `free-upload` job for each (what it wrote to storage goes, as the sweep frees
 * an expired upload's, after this commits: a crash loses none), and returns the ended rows and
 * their upload.failed events for the caller to append last (see appendEvents).
 *
 * Locks the upload rows first, in one order, as a completion does (see reservations.ts): this runs
 * before the transaction locks anything else. An upload a completion holds is waited for: it is
 * then an asset (what the token uploaded before it was revoked stays) and is passed over.
 */
export async function endPendingUploads(
  trx: Transaction<Database>,
  dialect: Dialect,
  ids: IdSource,
  tokenIds: string[],
  at: number,
): Promise<{ ended: Selectable<UploadsTable>[]; events: NewEvent[] }> {
  const ended: Selectable<UploadsTable>[] = [];
  for (let i = 0; i < tokenIds.length; i += END_CHUNK) {
    let pending = trx
      .selectFrom('uploads')
      .select('id')
      .where('token_id', 'in', tokenIds.slice(i, i + END_CHUNK))
      .where('status', '=', 'pending')
      .orderBy('id');
    if (dialect === 'postgres') pending = pending.forUpdate();
    const locked = (await pending.execute()).map((row) => row.id);
    for (let j = 0; j < locked.length; j += END_CHUNK) {
      const rows = await trx
        .updateTable('uploads')
        .set({ status: 'expired', ...endingColumns(TOKEN_REVOKED_ENDING) })
        .where('id', 'in', locked.slice(j, j + END_CHUNK))
        .where('status', '=', 'pending')
        .returningAll()
        .execute();
      ended.push(...rows);
    }
  }
  if (ended.length === 0) return { ended, events: [] };
  const byAccount = new Map<string, number>();
  for (const row of ended) {
    byAccount.set(row.account_id, (byAccount.get(row.account_id) ?? 0) + Number(row.quota_reserved));
  }
  for (const [accountId, held] of [...byAccount].sort(([a], [b]) => (a < b ? -1 : 1))) {
    await trx
      .updateTable('accounts')
      .set({ bytes_reserved: sql<number>`bytes_reserved - ${held}` })
      .where('id', '=', accountId)
      .execute();
  }
  const jobs = ended.map((row) => ({
    id: ids.id(),
    kind: FREE_UPLOAD_JOB,
    payload: { uploadId: row.id },
    runAt: at,
  }));
  for (let i = 0; i < jobs.length; i += END_CHUNK) {
    await trx
      .insertInto('jobs')
      .values(jobs.slice(i, i + END_CHUNK).map(fromJob))
      .execute();
  }
  return { ended, events: ended.map((row) => uploadEnded(toUpload(row), TOKEN_REVOKED_ENDING, at)) };
}

/** What the uploads endPendingUploads ended held of their tokens, given back (tokens locked last). */
export async function releaseTokenHolds(
  trx: Transaction<Database>,
  ended: Selectable<UploadsTable>[],
): Promise<void> {
  const byToken = new Map<string, { files: number; bytes: number }>();
  for (const row of ended) {
    if (row.token_id === null) continue;
    const held = byToken.get(row.token_id) ?? { files: 0, bytes: 0 };
    held.files += 1;
    held.bytes += Number(row.token_reserved);
    byToken.set(row.token_id, held);
  }
  for (const [tokenId, held] of [...byToken].sort(([a], [b]) => (a < b ? -1 : 1))) {
    await trx
      .updateTable('upload_tokens')
      .set({
        files_reserved: sql<number>`files_reserved - ${held.files}`,
        bytes_reserved: sql<number>`bytes_reserved - ${held.bytes}`,
        open_uploads: sql<number>`open_uploads - ${held.files}`,
      })
      .where('id', '=', tokenId)
      .execute();
  }
}

export function tokenQueries({ db, dialect, ids }: SqlContext): TokenStore {
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
        // Its pending uploads end with it, locked first (see endPendingUploads): only if this
        // revokes it, as far as can be read before anything is locked. A revocation racing this
        // one and committed first ends none of them twice (each ends only while pending).
        let revocable = trx
          .selectFrom('upload_tokens as t')
          .innerJoin('api_keys as k', 'k.id', 't.key_id')
          .select('t.id')
          .where('t.account_id', '=', accountId)
          .where('t.id', '=', id)
          .where('t.revoked_at', 'is', null)
          .where('k.revoked_at', 'is', null);
        if (keyId !== undefined) revocable = revocable.where('t.key_id', '=', keyId);
        if (!(await revocable.executeTakeFirst())) return false;
        const { ended, events } = await endPendingUploads(trx, dialect, ids, [id], at);
        await releaseTokenHolds(trx, ended);
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
        if (!row) {
          // Revoked meanwhile (with its key): the uploads ended here are ended all the same.
          await appendEvents(trx, ids, events);
          return false;
        }
        await appendEvents(trx, ids, [...events, tokenChanged('token.revoked', toToken(row), at)]);
        return true;
      });
    },
  };
}
