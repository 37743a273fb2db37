/**
 * The counters that make limits exact under concurrency, kept inside the transactions that
 * change an upload's status:
 *
 * - an account's `bytes_used` (its assets' sizes) and `bytes_reserved` (held by its pending
 *   uploads), against its storage quota;
 * - a key's `open_uploads` (pending uploads made with the key itself);
 * - a token's `files_used`/`bytes_used`, `files_reserved`/`bytes_reserved` and `open_uploads`.
 *
 * The invariant is simple: an upload holds its reservations exactly while it is `pending`.
 * They are taken when its row is inserted (`reserveUploads`), changed only while it is pending
 * (`settleArrived`: the bytes of a file of unknown size arrived), and given back when its status
 * leaves `pending` (`settleFinished`, `settleExpired`), in the statement that guards the
 * change with `status = 'pending'`, so each happens once however many nodes race.
 *
 * Rows are locked in one order everywhere (the upload or asset row first, then accounts, then
 * keys, then tokens), so these transactions queue behind one another and never deadlock.
 */
import { type Selectable, sql, type Transaction } from 'kysely';
import { WharfError } from '../../core/errors.js';
import { TOKEN_REVOKED_ENDING } from '../../core/events.js';
import type { UploadLimits, UploadToRecord } from '../../core/ports.js';
import type { Database, UploadsTable } from '../schema.js';
import { runReused } from './context.js';

/** One caller's uploads of a group commit: all of them are reserved, or none is. */
export interface ReservationEntry {
  uploads: UploadToRecord[];
  limits: UploadLimits;
}

interface AccountCounters {
  quota: number | null;
  used: number;
  reserved: number;
}

interface TokenCounters {
  revoked: boolean;
  expiresAt: number;
  maxFiles: number | null;
  maxBytes: number | null;
  filesUsed: number;
  filesReserved: number;
  bytesUsed: number;
  bytesReserved: number;
  open: number;
}

interface Counters {
  accounts: Map<string, AccountCounters>;
  keys: Map<string, { open: number }>;
  tokens: Map<string, TokenCounters>;
}

const n = (value: unknown): number => Number(value);
const nullable = (value: unknown): number | null => (value === null ? null : Number(value));
const sorted = (values: Iterable<string>): string[] => [...new Set(values)].sort();

/**
 * Within the transaction that inserts the uploads: locks and reads the counters they draw on,
 * decides each entry in turn (all its uploads fit, or it is refused and holds nothing), sets
 * each accepted upload's `reserved`, and writes the counters back. Returns each entry's refusal.
 */
export async function reserveUploads(
  trx: Transaction<Database>,
  entries: ReservationEntry[],
): Promise<(WharfError | undefined)[]> {
  const all = entries.flatMap((entry) => entry.uploads.map((u) => u.upload));
  const counters = await lockCounters(trx, all);
  const refusals: (WharfError | undefined)[] = [];
  for (const entry of entries) {
    const attempt = cloneCounters(counters);
    try {
      const reserved = entry.uploads.map((item) => reserveOne(attempt, item, entry.limits));
      entry.uploads.forEach((item, i) => {
        item.upload.reserved = reserved[i]!;
      });
      Object.assign(counters, attempt);
      refusals.push(undefined);
    } catch (err) {
      if (!(err instanceof WharfError)) throw err;
      refusals.push(err);
    }
  }
  await writeCounters(trx, counters);
  return refusals;
}

/**
 * Takes the write locks (a no-op update on PostgreSQL locks the rows; on SQLite the first
 * write takes the database's write lock before anything is read) and reads the counters.
 */
async function lockCounters(
  trx: Transaction<Database>,
  uploads: UploadToRecord['upload'][],
): Promise<Counters> {
  const counters: Counters = { accounts: new Map(), keys: new Map(), tokens: new Map() };
  const accountIds = sorted(uploads.map((u) => u.accountId));
  const keyIds = sorted(uploads.filter((u) => u.tokenId === null).map((u) => u.keyId));
  const tokenIds = sorted(uploads.flatMap((u) => (u.tokenId === null ? [] : [u.tokenId])));
  if (accountIds.length > 0) {
    const rows = await runReused<{
      id: string;
      storage_quota: number | null;
      bytes_used: number;
      bytes_reserved: number;
    }>(trx, `lock-accounts:${accountIds.length}`, accountIds, () =>
      trx
        .updateTable('accounts')
        .set((eb) => ({ bytes_reserved: eb.ref('bytes_reserved') }))
        .where('id', 'in', accountIds)
        .returning(['id', 'storage_quota', 'bytes_used', 'bytes_reserved']),
    );
    for (const row of rows) {
      counters.accounts.set(row.id, {
        quota: nullable(row.storage_quota),
        used: n(row.bytes_used),
        reserved: n(row.bytes_reserved),
      });
    }
  }
  if (keyIds.length > 0) {
    const rows = await runReused<{ id: string; open_uploads: number }>(
      trx,
      `lock-keys:${keyIds.length}`,
      keyIds,
      () =>
        trx
          .updateTable('api_keys')
          .set((eb) => ({ open_uploads: eb.ref('open_uploads') }))
          .where('id', 'in', keyIds)
          .returning(['id', 'open_uploads']),
    );
    for (const row of rows) counters.keys.set(row.id, { open: n(row.open_uploads) });
  }
  if (tokenIds.length > 0) {
    const rows = await trx
      .updateTable('upload_tokens')
      .set((eb) => ({ open_uploads: eb.ref('open_uploads') }))
      .where('id', 'in', tokenIds)
      .returningAll()
      .execute();
    for (const row of rows) {
      counters.tokens.set(row.id, {
        revoked: row.revoked_at !== null,
        expiresAt: n(row.expires_at),
        maxFiles: nullable(row.max_files),
        maxBytes: nullable(row.max_bytes),
        filesUsed: n(row.files_used),
        filesReserved: n(row.files_reserved),
        bytesUsed: n(row.bytes_used),
        bytesReserved: n(row.bytes_reserved),
        open: n(row.open_uploads),
      });
    }
  }
  return counters;
}

function cloneCounters(counters: Counters): Counters {
  const copy = <T extends object>(map: Map<string, T>) => new Map([...map].map(([k, v]) => [k, { ...v }]));
  return { accounts: copy(counters.accounts), keys: copy(counters.keys), tokens: copy(counters.tokens) };
}

/** What one upload holds, taken from the (tentative) counters; throws the refusal. */
function reserveOne(
  counters: Counters,
  { upload, reserve }: UploadToRecord,
  limits: UploadLimits,
): { quota: number; token: number } {
  const account = counters.accounts.get(upload.accountId);
  if (!account) throw new WharfError('NOT_FOUND', 'The account of this upload does not exist.');
  const quotaLeft =
    account.quota === null ? Number.POSITIVE_INFINITY : account.quota - account.used - account.reserved;
  const quotaRefusal = () =>
    new WharfError('QUOTA_EXCEEDED', 'The account has reached its upload limit.', {
      quota: account.quota,
      used: account.used,
      reserved: account.reserved,
    });
  let quota: number;
  if (reserve.quota === null) {
    // Unknown size: nothing is held until the bytes are known (see UploadToRecord). Holding as
    // much as the file may be let a few forms nobody used (each valid a day) take the whole
    // quota. Only a quota lowered below what is already stored refuses one outright.
    if (quotaLeft < 0) throw quotaRefusal();
    quota = 0;
  } else {
    quota = reserve.quota;
    if (quota > quotaLeft) throw quotaRefusal();
  }
  account.reserved += quota;

  if (upload.tokenId === null) {
    const key = counters.keys.get(upload.keyId);
    if (key) {
      if (key.open + 1 > limits.maxOpenUploads) throw tooManyOpen(limits);
      key.open += 1;
    }
    return { quota, token: 0 };
  }

  const token = counters.tokens.get(upload.tokenId);
  if (!token || token.revoked)
    throw new WharfError('UNAUTHORIZED', 'The upload token is invalid or revoked.');
  if (upload.createdAt >= token.expiresAt) {
    throw new WharfError('TOKEN_EXPIRED', 'The upload token has expired; ask for a new one.');
  }
  if (token.maxFiles !== null && token.filesUsed + token.filesReserved + 1 > token.maxFiles) {
    throw filesRefusal(token.maxFiles, token.filesUsed, token.filesReserved);
  }
  if (token.open + 1 > limits.maxOpenUploads) throw tooManyOpen(limits);
  const bytesLeft =
    token.maxBytes === null
      ? Number.POSITIVE_INFINITY
      : token.maxBytes - token.bytesUsed - token.bytesReserved;
  const bytesRefusal = () =>
    new WharfError('TOKEN_BYTES_EXHAUSTED', `This upload token may upload ${token.maxBytes} bytes in all.`, {
      max_bytes: token.maxBytes,
      used: token.bytesUsed,
      reserved: token.bytesReserved,
    });
  let bytes: number;
  if (reserve.token === null) {
    // Unknown size, as for the quota. Nothing left: only an empty file could still fit, which
    // is not worth an open upload.
    if (bytesLeft <= 0 && limits.maxFileSize > 0) throw bytesRefusal();
    bytes = 0;
  } else {
    bytes = reserve.token;
    if (bytes > bytesLeft) throw bytesRefusal();
  }
  token.filesReserved += 1;
  token.bytesReserved += bytes;
  token.open += 1;
  return { quota, token: bytes };
}

/**
 * The refusal of a file over an upload token's `max_files`, with the figures the byte budget's
 * refusal has: a token that completed nothing is full when pending uploads (declared and never
 * sent, a PUT storage refused, a page closed mid-PUT) hold its slots, and the message says so.
 */
function filesRefusal(maxFiles: number, used: number, reserved: number): WharfError {
  const held =
    reserved === 0
      ? '.'
      : `: ${used} completed, ${reserved} pending. A pending upload holds its slot until it ` +
        'completes, is cancelled (DELETE /v1/uploads/{id}) or expires.';
  return new WharfError('TOKEN_FILES_EXHAUSTED', `This upload token may upload ${maxFiles} files${held}`, {
    max_files: maxFiles,
    used,
    reserved,
  });
}

function tooManyOpen(limits: UploadLimits): WharfError {
  return new WharfError(
    'TOO_MANY_OPEN_UPLOADS',
    `At most ${limits.maxOpenUploads} uploads may be open at once; finish or abort some first.`,
    { limit: limits.maxOpenUploads },
  );
}

async function writeCounters(trx: Transaction<Database>, counters: Counters): Promise<void> {
  // Every group commit writes these: their SQL is reused (see runReused).
  for (const [id, account] of counters.accounts) {
    await runReused(trx, 'write-account-reserved', [account.reserved, id], () =>
      trx.updateTable('accounts').set({ bytes_reserved: account.reserved }).where('id', '=', id),
    );
  }
  for (const [id, key] of counters.keys) {
    await runReused(trx, 'write-key-open', [key.open, id], () =>
      trx.updateTable('api_keys').set({ open_uploads: key.open }).where('id', '=', id),
    );
  }
  for (const [id, token] of counters.tokens) {
    await trx
      .updateTable('upload_tokens')
      .set({
        files_reserved: token.filesReserved,
        bytes_reserved: token.bytesReserved,
        open_uploads: token.open,
      })
      .where('id', '=', id)
      .execute();
  }
}

/**
 * An upload completes (in finishUpload's transaction, its row locked and still pending): what
 * it held is given back; the account stores `newBytes` more (0 when the content was already
 * there) unless that passes its quota or `size` its file size limit (FILE_TOO_LARGE), and its token has uploaded one more file of `size`
 * bytes unless that passes its byte budget. A refusal throws, and the caller's transaction
 * rolls back with nothing changed.
 */
export async function settleFinished(
  trx: Transaction<Database>,
  upload: Selectable<UploadsTable>,
  size: number,
  newBytes: number,
): Promise<void> {
  const held = n(upload.quota_reserved);
  let account = trx
    .updateTable('accounts')
    .set({
      bytes_reserved: sql<number>`bytes_reserved - ${held}`,
      bytes_used: sql<number>`bytes_used + ${newBytes}`,
    })
    .where('id', '=', upload.account_id)
    // The account's file size limit as it is now, as its quota: lowered since the upload was
    // declared, it applies to what completes from then on (null: the server's, which a
    // running process does not change).
    .where(sql<boolean>`(max_file_size is null or ${size} <= max_file_size)`);
  if (newBytes > 0) {
    // Room is what neither stored assets nor other pending uploads hold.
    account = account.where(
      sql<boolean>`(storage_quota is null or bytes_used + bytes_reserved - ${held} + ${newBytes} <= storage_quota)`,
    );
  }
  if (Number((await account.executeTakeFirst()).numUpdatedRows) === 0) {
    throw (
      (await fileSizeRefusal(trx, upload.account_id, size)) ??
      (await quotaRefusal(trx, upload.account_id, held))
    );
  }

  if (upload.token_id === null) {
    await releaseKey(trx, upload.key_id);
    return;
  }
  // Revoked (the token, or the key that minted it) before this upload is recorded: refused,
  // however long ago its request began, so a revocation also stops what the token is still
  // sending. Read on the rows a revocation writes, as this transaction locks them (the key's,
  // then the token's, in the order above): a revocation committed before is seen, and a later
  // one waits for this commit, so no asset is recorded after a revocation was answered.
  const key = await trx
    .updateTable('api_keys')
    .set((eb) => ({ open_uploads: eb.ref('open_uploads') }))
    .where('id', '=', upload.key_id)
    .returning('revoked_at')
    .executeTakeFirst();
  if (key && key.revoked_at !== null) throw revokedRefusal();
  const heldByToken = n(upload.token_reserved);
  const token = await trx
    .updateTable('upload_tokens')
    .set({
      files_reserved: sql<number>`files_reserved - 1`,
      files_used: sql<number>`files_used + 1`,
      bytes_reserved: sql<number>`bytes_reserved - ${heldByToken}`,
      bytes_used: sql<number>`bytes_used + ${size}`,
      open_uploads: sql<number>`open_uploads - 1`,
    })
    .where('id', '=', upload.token_id)
    .where('revoked_at', 'is', null)
    .where(
      sql<boolean>`(max_bytes is null or bytes_used + bytes_reserved - ${heldByToken} + ${size} <= max_bytes)`,
    )
    .executeTakeFirst();
  if (Number(token.numUpdatedRows) === 0) {
    // Revoked, or the file does not fit in its byte budget.
    const revoked = await trx
      .selectFrom('upload_tokens')
      .select('id')
      .where('id', '=', upload.token_id)
      .where('revoked_at', 'is not', null)
      .executeTakeFirst();
    if (revoked) throw revokedRefusal();
    const refusal = await tokenBytesRefusal(trx, upload.token_id, heldByToken);
    if (refusal) throw refusal;
  }
}

/**
 * The refusal of an upload whose token was revoked before it was recorded: what a request with
 * the revoked token is told (see TokenService.authenticate), whoever completes the upload.
 */
export function revokedRefusal(): WharfError {
  return new WharfError('UNAUTHORIZED', TOKEN_REVOKED_ENDING.message);
}

/**
 * The bytes of a pending upload of unknown size arrived (in the transaction that locked its row,
 * still pending): it holds `hold` in place of what it held, unless the account's quota or the
 * token's byte budget cannot take that beside what is stored and what other uploads hold. A
 * refusal (QUOTA_EXCEEDED, TOKEN_BYTES_EXHAUSTED) throws, and the caller's transaction rolls
 * back with nothing changed.
 */
export async function settleArrived(
  trx: Transaction<Database>,
  upload: Selectable<UploadsTable>,
  hold: { quota: number; token: number },
): Promise<void> {
  const held = n(upload.quota_reserved);
  if (!(await holdMore(trx, 'accounts', upload.account_id, hold.quota - held))) {
    throw await quotaRefusal(trx, upload.account_id, held);
  }
  if (upload.token_id === null) return;
  const heldByToken = n(upload.token_reserved);
  if (!(await holdMore(trx, 'upload_tokens', upload.token_id, hold.token - heldByToken))) {
    const refusal = await tokenBytesRefusal(trx, upload.token_id, heldByToken);
    if (refusal) throw refusal;
  }
}

/** The refusal of a file over its account's own file size limit; undefined when it fits. */
async function fileSizeRefusal(
  trx: Transaction<Database>,
  accountId: string,
  size: number,
): Promise<WharfError | undefined> {
  const row = await trx
    .selectFrom('accounts')
    .select('max_file_size')
    .where('id', '=', accountId)
    .executeTakeFirst();
  const limit = nullable(row?.max_file_size ?? null);
  if (limit === null || size <= limit) return undefined;
  return new WharfError('FILE_TOO_LARGE', `The file is larger than the limit of ${limit} bytes.`, { limit });
}

/** The refusal of bytes over the account's quota, with the figures beside what `held` already held. */
async function quotaRefusal(
  trx: Transaction<Database>,
  accountId: string,
  held: number,
): Promise<WharfError> {
  const row = await trx
    .selectFrom('accounts')
    .select(['storage_quota', 'bytes_used', 'bytes_reserved'])
    .where('id', '=', accountId)
    .executeTakeFirst();
  return new WharfError('QUOTA_EXCEEDED', 'The account has reached its upload limit.', {
    quota: nullable(row?.storage_quota ?? null),
    used: n(row?.bytes_used ?? 0),
    reserved: n(row?.bytes_reserved ?? 0) - held,
  });
}

/**
 * The refusal of bytes over an upload token's `max_bytes`, beside what `heldByToken` already held;
 * undefined if the token row is gone (tokens are revoked, never deleted: be exact all the same).
 */
async function tokenBytesRefusal(
  trx: Transaction<Database>,
  tokenId: string,
  heldByToken: number,
): Promise<WharfError | undefined> {
  const row = await trx
    .selectFrom('upload_tokens')
    .select(['max_bytes', 'bytes_used', 'bytes_reserved'])
    .where('id', '=', tokenId)
    .executeTakeFirst();
  if (!row) return undefined;
  return new WharfError(
    'TOKEN_BYTES_EXHAUSTED',
    `This upload token may upload ${nullable(row.max_bytes)} bytes in all.`,
    {
      max_bytes: nullable(row.max_bytes),
      used: n(row.bytes_used),
      reserved: n(row.bytes_reserved) - heldByToken,
    },
  );
}

/**
 * Adds `more` bytes (negative: gives them back) to the reservation of an account or a token, in
 * one conditional update: growing it must stay within the account's `storage_quota` or the
 * token's `max_bytes` beside what is stored and held. False when it would not (nothing changed).
 */
async function holdMore(
  trx: Transaction<Database>,
  table: 'accounts' | 'upload_tokens',
  id: string,
  more: number,
): Promise<boolean> {
  if (more === 0) return true;
  const limit = table === 'accounts' ? sql.ref('storage_quota') : sql.ref('max_bytes');
  let update = trx
    .updateTable(table)
    .set({ bytes_reserved: sql<number>`bytes_reserved + ${more}` })
    .where('id', '=', id);
  if (more > 0) {
    update = update.where(
      sql<boolean>`(${limit} is null or bytes_used + bytes_reserved + ${more} <= ${limit})`,
    );
  }
  return Number((await update.executeTakeFirst()).numUpdatedRows) > 0;
}

/** A pending upload expired or was refused (its status just left `pending`): it holds nothing now. */
export async function settleExpired(
  trx: Transaction<Database>,
  upload: Selectable<UploadsTable>,
): Promise<void> {
  await trx
    .updateTable('accounts')
    .set({ bytes_reserved: sql<number>`bytes_reserved - ${n(upload.quota_reserved)}` })
    .where('id', '=', upload.account_id)
    .execute();
  if (upload.token_id === null) {
    await releaseKey(trx, upload.key_id);
    return;
  }
  await trx
    .updateTable('upload_tokens')
    .set({
      files_reserved: sql<number>`files_reserved - 1`,
      bytes_reserved: sql<number>`bytes_reserved - ${n(upload.token_reserved)}`,
      open_uploads: sql<number>`open_uploads - 1`,
    })
    .where('id', '=', upload.token_id)
    .execute();
}

async function releaseKey(trx: Transaction<Database>, keyId: string): Promise<void> {
  await trx
    .updateTable('api_keys')
    .set({ open_uploads: sql<number>`open_uploads - 1` })
    .where('id', '=', keyId)
    .execute();
}

/** An asset was deleted (in its transaction): the account stores that many bytes fewer. */
export async function settleDeleted(
  trx: Transaction<Database>,
  accountId: string,
  size: number,
): Promise<void> {
  await trx
    .updateTable('accounts')
    .set({ bytes_used: sql<number>`bytes_used - ${size}` })
    .where('id', '=', accountId)
    .execute();
}
