import { CompiledQuery, type InferResult, type Kysely, type Selectable } from 'kysely';
import { WharfError } from '../core/errors.js';
import type { Account, ApiKey, Asset, Role, Upload, UploadKind, UploadStatus } from '../core/model.js';
import type { AssetPage, AssetQuery, FinishResult, Store } from '../core/ports.js';
import type { Connection, Dialect } from './connect.js';
import type { AccountsTable, ApiKeysTable, AssetsTable, Database, UploadsTable } from './schema.js';

const INSERT_CHUNK = 100;

/** The core's Store on Kysely: one implementation for SQLite and PostgreSQL. */
export class SqlStore implements Store {
  private readonly db: Kysely<Database>;
  private readonly dialect: Dialect;

  // Runs on every request. Building a Kysely query costs more than SQLite takes to run it,
  // so this one is compiled once and re-run with each new parameter.
  private readonly keyLookup: ReturnType<typeof compileKeyLookup>;

  constructor(connection: Connection) {
    this.db = connection.db;
    this.dialect = connection.dialect;
    this.keyLookup = compileKeyLookup(this.db);
  }

  async settingOrInit(name: string, value: string): Promise<string> {
    await this.db
      .insertInto('settings')
      .values({ name, value })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    const row = await this.db
      .selectFrom('settings')
      .select('value')
      .where('name', '=', name)
      .executeTakeFirstOrThrow();
    return row.value;
  }

  async ensureAccount(account: Account): Promise<Account> {
    await this.db
      .insertInto('accounts')
      .values({
        id: account.id,
        name: account.name,
        max_file_size: account.maxFileSize,
        disabled: account.disabled ? 1 : 0,
        created_at: account.createdAt,
      })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
    return (await this.getAccount(account.id))!;
  }

  async getAccount(id: string): Promise<Account | undefined> {
    const row = await this.db.selectFrom('accounts').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toAccount(row);
  }

  async listAccounts(): Promise<Account[]> {
    return (await this.db.selectFrom('accounts').selectAll().orderBy('created_at').execute()).map(toAccount);
  }

  async insertKey(key: ApiKey, secretHash: string): Promise<void> {
    await this.db.insertInto('api_keys').values(fromKey(key, secretHash)).execute();
  }

  async ensureKey(key: ApiKey, secretHash: string): Promise<ApiKey> {
    await this.db
      .insertInto('api_keys')
      .values(fromKey(key, secretHash))
      .onConflict((oc) => oc.column('secret_hash').doNothing())
      .execute();
    return (await this.findKeyByHash(secretHash))!.key;
  }

  async findKeyByHash(secretHash: string): Promise<{ key: ApiKey; account: Account } | undefined> {
    const { rows } = await this.db.executeQuery(CompiledQuery.raw(this.keyLookup.sql, [secretHash]));
    const row = rows[0] as KeyLookupRow | undefined;
    if (!row) return undefined;
    return {
      key: toKey(row),
      account: toAccount({
        id: row.account_id,
        name: row.account_name,
        max_file_size: row.account_max_file_size,
        disabled: row.account_disabled,
        created_at: row.account_created_at,
      }),
    };
  }

  async listKeys(accountId?: string): Promise<ApiKey[]> {
    let query = this.db.selectFrom('api_keys').selectAll().orderBy('created_at').orderBy('id');
    if (accountId !== undefined) query = query.where('account_id', '=', accountId);
    return (await query.execute()).map(toKey);
  }

  async countKeys(): Promise<number> {
    const row = await this.db
      .selectFrom('api_keys')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async revokeKey(keyId: string, at: number, accountId?: string): Promise<boolean> {
    let query = this.db
      .updateTable('api_keys')
      .set({ revoked_at: at })
      .where('id', '=', keyId)
      .where('revoked_at', 'is', null);
    if (accountId !== undefined) query = query.where('account_id', '=', accountId);
    const result = await query.executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async touchKey(keyId: string, at: number): Promise<void> {
    await this.db.updateTable('api_keys').set({ last_used_at: at }).where('id', '=', keyId).execute();
  }

  /**
   * Group commit: intents created by concurrent requests are written in one transaction,
   * so one fsync serves them all instead of one each. Each caller still resolves only
   * once its rows are durable.
   */
  insertUploads(uploads: Upload[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queuedUploads.push({ rows: uploads.map(fromUpload), resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flushUploads());
      }
    });
  }

  private queuedUploads: { rows: UploadRow[]; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private flushing = false;

  private async flushUploads(): Promise<void> {
    const batch = this.queuedUploads;
    this.queuedUploads = [];
    try {
      await this.writeUploads(batch.flatMap((entry) => entry.rows));
      for (const entry of batch) entry.resolve();
    } catch {
      // One caller's bad rows must not fail the others: retry each on its own.
      for (const entry of batch) await this.writeUploads(entry.rows).then(entry.resolve, entry.reject);
    } finally {
      if (this.queuedUploads.length > 0) setImmediate(() => void this.flushUploads());
      else this.flushing = false;
    }
  }

  private async writeUploads(rows: UploadRow[]): Promise<void> {
    // Fixed-size chunks: group commit merges calls into any number of rows, and a fixed
    // chunk keeps the SQL text the same, so its prepared statement is reused (and the
    // statement stays well under SQLite's bound-parameter limit).
    await this.db.transaction().execute(async (trx) => {
      for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
        await trx
          .insertInto('uploads')
          .values(rows.slice(i, i + INSERT_CHUNK))
          .execute();
      }
    });
  }

  async getUpload(id: string): Promise<Upload | undefined> {
    const row = await this.db.selectFrom('uploads').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toUpload(row);
  }

  async finishUpload(uploadId: string, candidate: Asset, at: number): Promise<FinishResult> {
    return this.db.transaction().execute(async (trx) => {
      let select = trx.selectFrom('uploads').selectAll().where('id', '=', uploadId);
      // Row lock on PostgreSQL so two nodes completing the same upload serialise here.
      if (this.dialect === 'postgres') select = select.forUpdate();
      const upload = await select.executeTakeFirst();
      if (!upload) throw new WharfError('NOT_FOUND', 'No such upload.');
      if (upload.status === 'completed') {
        const asset = await trx
          .selectFrom('assets')
          .selectAll()
          .where('id', '=', upload.asset_id ?? '')
          .executeTakeFirst();
        if (!asset) throw new WharfError('NOT_FOUND', 'The asset of this upload has since been deleted.');
        return { asset: toAsset(asset), deduplicated: upload.deduplicated === 1, completedNow: false };
      }
      if (upload.status !== 'pending') throw new WharfError('UPLOAD_EXPIRED', 'This upload has expired.');

      await trx
        .insertInto('assets')
        .values(fromAsset(candidate))
        .onConflict((oc) => oc.columns(['account_id', 'sha256']).doNothing())
        .execute();
      const stored = await trx
        .selectFrom('assets')
        .selectAll()
        .where('account_id', '=', candidate.accountId)
        .where('sha256', '=', candidate.sha256)
        .executeTakeFirstOrThrow();
      const deduplicated = stored.id !== candidate.id;
      await trx
        .updateTable('uploads')
        .set({
          status: 'completed',
          asset_id: stored.id,
          deduplicated: deduplicated ? 1 : 0,
          completed_at: at,
        })
        .where('id', '=', uploadId)
        .execute();
      return { asset: toAsset(stored), deduplicated, completedNow: true };
    });
  }

  async listStaleUploads(before: number, limit: number): Promise<Upload[]> {
    const rows = await this.db
      .selectFrom('uploads')
      .selectAll()
      .where('status', '=', 'pending')
      .where('expires_at', '<', before)
      .orderBy('expires_at')
      .limit(limit)
      .execute();
    return rows.map(toUpload);
  }

  async expireUpload(id: string): Promise<boolean> {
    const result = await this.db
      .updateTable('uploads')
      .set({ status: 'expired' })
      .where('id', '=', id)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async getAsset(accountId: string, id: string): Promise<Asset | undefined> {
    const row = await this.db
      .selectFrom('assets')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toAsset(row);
  }

  async getAssetById(id: string): Promise<Asset | undefined> {
    const row = await this.db.selectFrom('assets').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toAsset(row);
  }

  async findAssetBySha256(accountId: string, sha256: string): Promise<Asset | undefined> {
    return (await this.findAssetsBySha256(accountId, [sha256]))[0];
  }

  async findAssetsBySha256(accountId: string, sha256s: string[]): Promise<Asset[]> {
    const found: Asset[] = [];
    for (let i = 0; i < sha256s.length; i += 500) {
      const rows = await this.db
        .selectFrom('assets')
        .selectAll()
        .where('account_id', '=', accountId)
        .where('sha256', 'in', sha256s.slice(i, i + 500))
        .execute();
      found.push(...rows.map(toAsset));
    }
    return found;
  }

  async listAssets(accountId: string, query: AssetQuery): Promise<AssetPage> {
    let select = this.db.selectFrom('assets').selectAll().where('account_id', '=', accountId);
    if (query.cursor) select = select.where('id', '<', query.cursor);
    if (query.namePrefix) {
      const prefix = query.namePrefix;
      // substr() rather than LIKE: LIKE has wildcards to escape and folds case in SQLite.
      // substr() counts characters (code points), not UTF-16 units as .length does.
      const chars = [...prefix].length;
      select = select.where((eb) => eb(eb.fn('substr', ['name', eb.val(1), eb.val(chars)]), '=', prefix));
    }
    if (query.contentType) {
      if (query.contentType.endsWith('/*')) {
        const top = query.contentType.slice(0, -1);
        select = select.where((eb) =>
          eb(eb.fn('substr', ['content_type', eb.val(1), eb.val(top.length)]), '=', top),
        );
      } else {
        select = select.where('content_type', '=', query.contentType);
      }
    }
    const rows = await select
      .orderBy('id', 'desc')
      .limit(query.limit + 1)
      .execute();
    const page = rows.slice(0, query.limit).map(toAsset);
    return { assets: page, nextCursor: rows.length > query.limit ? (page.at(-1)?.id ?? null) : null };
  }

  async deleteAsset(accountId: string, id: string): Promise<Asset | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom('assets')
        .selectAll()
        .where('account_id', '=', accountId)
        .where('id', '=', id)
        .executeTakeFirst();
      if (!row) return undefined;
      await trx.deleteFrom('assets').where('id', '=', id).execute();
      return toAsset(row);
    });
  }

  async countAssetsWithStorageKey(storageKey: string): Promise<number> {
    const row = await this.db
      .selectFrom('assets')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('storage_key', '=', storageKey)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}

function compileKeyLookup(db: Kysely<Database>) {
  return db
    .selectFrom('api_keys as k')
    .innerJoin('accounts as a', 'a.id', 'k.account_id')
    .selectAll('k')
    .select([
      'a.name as account_name',
      'a.max_file_size as account_max_file_size',
      'a.disabled as account_disabled',
      'a.created_at as account_created_at',
    ])
    .where('k.secret_hash', '=', '')
    .compile();
}

type KeyLookupRow = InferResult<ReturnType<typeof compileKeyLookup>>[number];

function toAccount(row: Selectable<AccountsTable>): Account {
  return {
    id: row.id,
    name: row.name,
    maxFileSize: row.max_file_size === null ? null : Number(row.max_file_size),
    disabled: Number(row.disabled) === 1,
    createdAt: Number(row.created_at),
  };
}

function fromKey(key: ApiKey, secretHash: string): ApiKeysTable {
  return {
    id: key.id,
    account_id: key.accountId,
    name: key.name,
    role: key.role,
    prefix: key.prefix,
    secret_hash: secretHash,
    created_at: key.createdAt,
    last_used_at: key.lastUsedAt,
    revoked_at: key.revokedAt,
  };
}

function toKey(row: Selectable<ApiKeysTable>): ApiKey {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    role: row.role as Role,
    prefix: row.prefix,
    createdAt: Number(row.created_at),
    lastUsedAt: row.last_used_at === null ? null : Number(row.last_used_at),
    revokedAt: row.revoked_at === null ? null : Number(row.revoked_at),
  };
}

type UploadRow = ReturnType<typeof fromUpload>;

function fromUpload(u: Upload) {
  return {
    id: u.id,
    account_id: u.accountId,
    key_id: u.keyId,
    kind: u.kind,
    name: u.name,
    content_type: u.contentType,
    size: u.size,
    sha256: u.sha256,
    md5: u.md5,
    storage_key: u.storageKey,
    status: u.status,
    asset_id: u.assetId,
    deduplicated: u.deduplicated ? 1 : 0,
    created_at: u.createdAt,
    expires_at: u.expiresAt,
    completed_at: u.completedAt,
  };
}

function toUpload(row: Selectable<UploadsTable>): Upload {
  return {
    id: row.id,
    accountId: row.account_id,
    keyId: row.key_id,
    kind: row.kind as UploadKind,
    name: row.name,
    contentType: row.content_type,
    size: row.size === null ? null : Number(row.size),
    sha256: row.sha256,
    md5: row.md5,
    storageKey: row.storage_key,
    status: row.status as UploadStatus,
    assetId: row.asset_id,
    deduplicated: Number(row.deduplicated) === 1,
    createdAt: Number(row.created_at),
    expiresAt: Number(row.expires_at),
    completedAt: row.completed_at === null ? null : Number(row.completed_at),
  };
}

function fromAsset(a: Asset): AssetsTable {
  return {
    id: a.id,
    account_id: a.accountId,
    name: a.name,
    content_type: a.contentType,
    size: a.size,
    sha256: a.sha256,
    md5: a.md5,
    storage_key: a.storageKey,
    status: a.status,
    metadata: JSON.stringify(a.metadata),
    created_at: a.createdAt,
    updated_at: a.updatedAt,
  };
}

function toAsset(row: Selectable<AssetsTable>): Asset {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    contentType: row.content_type,
    size: Number(row.size),
    sha256: row.sha256,
    md5: row.md5,
    storageKey: row.storage_key,
    status: row.status as Asset['status'],
    metadata: JSON.parse(row.metadata) as Record<string, unknown>,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}
