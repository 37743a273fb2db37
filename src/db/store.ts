import { CompiledQuery, type InferResult, type Kysely, type Selectable, sql, type Transaction } from 'kysely';
import { WharfError } from '../core/errors.js';
import type {
  Access,
  Account,
  ApiKey,
  Asset,
  AssetAnalysis,
  FileVersion,
  Job,
  JobStatus,
  ProcessingStatus,
  Role,
  Upload,
  UploadIntent,
  UploadKind,
  UploadStatus,
} from '../core/model.js';
import type {
  AccountChanges,
  AssetPage,
  AssetQuery,
  FinishResult,
  NewJob,
  Store,
  Usage,
} from '../core/ports.js';
import type { Connection, Dialect } from './connect.js';
import type {
  AccountsTable,
  ApiKeysTable,
  AssetsTable,
  Database,
  FileVersionsTable,
  JobsTable,
  UploadsTable,
} from './schema.js';

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
        storage_quota: account.storageQuota,
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

  async updateAccount(id: string, changes: AccountChanges): Promise<Account | undefined> {
    const set: Partial<AccountsTable> = {};
    if (changes.disabled !== undefined) set.disabled = changes.disabled ? 1 : 0;
    if (changes.maxFileSize !== undefined) set.max_file_size = changes.maxFileSize;
    if (changes.storageQuota !== undefined) set.storage_quota = changes.storageQuota;
    if (Object.keys(set).length > 0) {
      await this.db.updateTable('accounts').set(set).where('id', '=', id).execute();
    }
    return this.getAccount(id);
  }

  async usage(accountId: string): Promise<Usage> {
    const row = await this.db
      .selectFrom('assets')
      .select((eb) => [eb.fn.countAll<number>().as('assets'), eb.fn.sum<number>('size').as('bytes')])
      .where('account_id', '=', accountId)
      .executeTakeFirstOrThrow();
    return { assets: Number(row.assets), bytes: Number(row.bytes ?? 0) };
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
        storage_quota: row.account_storage_quota,
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
      this.queuedUploads.push({ uploads, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flushUploads());
      }
    });
  }

  private queuedUploads: { uploads: Upload[]; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private flushing = false;

  private async flushUploads(): Promise<void> {
    const batch = this.queuedUploads;
    this.queuedUploads = [];
    try {
      await this.writeUploads(batch.flatMap((entry) => entry.uploads));
      for (const entry of batch) entry.resolve();
    } catch {
      // One caller's bad rows must not fail the others: retry each on its own.
      for (const entry of batch) {
        await this.writeUploads(entry.uploads).then(entry.resolve, (err: unknown) =>
          entry.reject(
            isUniqueViolation(err)
              ? new WharfError('ID_EXISTS', 'An upload with this id already exists.')
              : err,
          ),
        );
      }
    } finally {
      if (this.queuedUploads.length > 0) setImmediate(() => void this.flushUploads());
      else this.flushing = false;
    }
  }

  private async writeUploads(uploads: Upload[]): Promise<void> {
    // Fixed-size chunks: group commit merges calls into any number of rows, and a fixed
    // chunk keeps the SQL text the same, so its prepared statement is reused (and the
    // statement stays well under SQLite's bound-parameter limit).
    await this.db.transaction().execute(async (trx) => {
      // Numbers are taken in the same transaction as the rows: a rolled-back batch gives
      // its numbers back, so every number belongs to a recorded upload.
      const last = await bumpCounter(trx, 'seq', uploads.length);
      uploads.forEach((upload, i) => {
        upload.seq = last - uploads.length + 1 + i;
      });
      const rows = uploads.map(fromUpload);
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

  async getUploadByExternalId(accountId: string, externalId: string): Promise<Upload | undefined> {
    const row = await this.db
      .selectFrom('uploads')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('external_id', '=', externalId)
      .executeTakeFirst();
    return row && toUpload(row);
  }

  async listAutoCompletable(limit: number, after?: Upload): Promise<Upload[]> {
    let query = this.db
      .selectFrom('uploads')
      .selectAll()
      .where('status', '=', 'pending')
      .where('auto_complete', '=', 1);
    if (after) {
      query = query.where((eb) =>
        eb.or([
          eb('created_at', '>', after.createdAt),
          eb.and([eb('created_at', '=', after.createdAt), eb('id', '>', after.id)]),
        ]),
      );
    }
    const rows = await query.orderBy('created_at').orderBy('id').limit(limit).execute();
    return rows.map(toUpload);
  }

  async finishUpload(uploadId: string, candidate: Asset, at: number, jobs: NewJob[]): Promise<FinishResult> {
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
        .values(fromAsset({ ...candidate, seq: Number(upload.seq ?? 0) }))
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
      const intent = parseIntent(upload.intent);
      const version = intent.file
        ? await addFileVersion(trx, upload.account_id, intent.file.namespace, intent.file.name, stored.id, at)
        : undefined;
      if (!deduplicated && jobs.length > 0) await trx.insertInto('jobs').values(jobs.map(fromJob)).execute();
      return { asset: toAsset(stored), deduplicated, completedNow: true, version };
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

  async setUploadMultipartId(id: string, multipartId: string): Promise<void> {
    await this.db
      .updateTable('uploads')
      .set({ multipart_id: multipartId })
      .where('id', '=', id)
      .where('status', '=', 'pending')
      .execute();
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

  async findAssetByMd5(accountId: string, md5: string): Promise<Asset | undefined> {
    const row = await this.db
      .selectFrom('assets')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('md5', '=', md5)
      .orderBy('id')
      .executeTakeFirst();
    return row && toAsset(row);
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
      await trx.deleteFrom('file_versions').where('asset_id', '=', id).execute();
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

  async setAssetAccess(accountId: string, id: string, access: Access): Promise<Asset | undefined> {
    await this.db
      .updateTable('assets')
      .set({ access })
      .where('account_id', '=', accountId)
      .where('id', '=', id)
      .execute();
    return this.getAsset(accountId, id);
  }

  async recordAnalysis(
    id: string,
    processing: ProcessingStatus,
    analysis: AssetAnalysis,
    at: number,
  ): Promise<void> {
    await this.db
      .updateTable('assets')
      .set({ processing, analysis: JSON.stringify(analysis), updated_at: at })
      .where('id', '=', id)
      .execute();
  }

  async markAssetVerified(id: string, md5: string, at: number): Promise<void> {
    await this.db
      .updateTable('assets')
      .set({ status: 'ready', md5, updated_at: at })
      .where('id', '=', id)
      .execute();
  }

  async getFileVersion(
    accountId: string,
    namespace: string,
    name: string,
    version?: number,
  ): Promise<FileVersion | undefined> {
    let query = this.versionsOf(accountId, namespace, name);
    query =
      version === undefined
        ? query.orderBy('v.version', 'desc').limit(1)
        : query.where('v.version', '=', version);
    const row = await query.executeTakeFirst();
    return row && toFileVersion(row, Number(row.latest_version));
  }

  async listFileVersions(accountId: string, namespace: string, name: string): Promise<FileVersion[]> {
    const rows = await this.versionsOf(accountId, namespace, name).orderBy('v.version').execute();
    return rows.map((row) => toFileVersion(row, Number(row.latest_version)));
  }

  private versionsOf(accountId: string, namespace: string, name: string) {
    return this.db
      .selectFrom('file_versions as v')
      .innerJoin('files as f', (join) =>
        join
          .onRef('f.account_id', '=', 'v.account_id')
          .onRef('f.namespace', '=', 'v.namespace')
          .onRef('f.name', '=', 'v.name'),
      )
      .selectAll('v')
      .select('f.latest_version')
      .where('v.account_id', '=', accountId)
      .where('v.namespace', '=', namespace)
      .where('v.name', '=', name);
  }

  async enqueueJobs(jobs: NewJob[]): Promise<void> {
    if (jobs.length > 0) await this.db.insertInto('jobs').values(jobs.map(fromJob)).execute();
  }

  async claimJob(worker: string, now: number, leaseUntil: number): Promise<Job | undefined> {
    if (this.dialect === 'sqlite') {
      // One statement: it takes the write lock before it reads. A read-then-update
      // transaction would meet another connection's claim with SQLITE_BUSY instead.
      const row = await this.db
        .updateTable('jobs')
        .set({
          status: 'running',
          worker,
          lease_until: leaseUntil,
          attempts: sql<number>`attempts + 1`,
          updated_at: now,
        })
        .where('id', '=', (eb) =>
          eb
            .selectFrom('jobs')
            .select('id')
            .where((w) =>
              w.or([
                w.and([w('status', '=', 'queued'), w('run_at', '<=', now)]),
                w.and([w('status', '=', 'running'), w('lease_until', '<', now)]),
              ]),
            )
            .orderBy('run_at')
            .limit(1),
        )
        .returningAll()
        .executeTakeFirst();
      return row && toJob(row);
    }
    return this.db.transaction().execute(async (trx) => {
      let select = trx
        .selectFrom('jobs')
        .selectAll()
        .where((eb) =>
          eb.or([
            eb.and([eb('status', '=', 'queued'), eb('run_at', '<=', now)]),
            eb.and([eb('status', '=', 'running'), eb('lease_until', '<', now)]),
          ]),
        )
        .orderBy('run_at')
        .limit(1);
      // Other nodes skip the row this one is claiming instead of queueing behind it.
      if (this.dialect === 'postgres') select = select.forUpdate().skipLocked();
      const row = await select.executeTakeFirst();
      if (!row) return undefined;
      const attempts = Number(row.attempts) + 1;
      await trx
        .updateTable('jobs')
        .set({ status: 'running', worker, lease_until: leaseUntil, attempts, updated_at: now })
        .where('id', '=', row.id)
        .execute();
      return toJob({ ...row, status: 'running', attempts });
    });
  }

  async finishJob(id: string, worker: string, at: number): Promise<void> {
    await this.db
      .updateTable('jobs')
      .set({ status: 'done', lease_until: null, updated_at: at })
      .where('id', '=', id)
      .where('worker', '=', worker)
      .execute();
  }

  async failJob(
    id: string,
    worker: string,
    error: string,
    retryAt: number | null,
    at: number,
  ): Promise<void> {
    await this.db
      .updateTable('jobs')
      .set({
        status: retryAt === null ? 'failed' : 'queued',
        run_at: retryAt ?? at,
        lease_until: null,
        last_error: error.slice(0, 2000),
        updated_at: at,
      })
      .where('id', '=', id)
      .where('worker', '=', worker)
      .execute();
  }

  async getJob(id: string): Promise<Job | undefined> {
    const row = await this.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toJob(row);
  }

  async acquireLock(name: string, owner: string, until: number, now: number): Promise<boolean> {
    // One statement: a free or lapsed lease is taken, the holder's own is renewed, and two
    // nodes racing for it cannot both see themselves as the winner.
    const row = await this.db
      .insertInto('locks')
      .values({ name, owner, expires_at: until, release_requested: 0 })
      .onConflict((oc) =>
        oc
          .column('name')
          .doUpdateSet((eb) => ({
            owner: eb.ref('excluded.owner'),
            expires_at: eb.ref('excluded.expires_at'),
            release_requested: eb
              .case()
              .when('locks.owner', '=', owner)
              .then(eb.ref('locks.release_requested'))
              .else(0)
              .end(),
          }))
          .where((eb) => eb.or([eb('locks.owner', '=', owner), eb('locks.expires_at', '<', now)])),
      )
      .returning('owner')
      .executeTakeFirst();
    return row?.owner === owner;
  }

  async releaseLock(name: string, owner: string): Promise<void> {
    await this.db.deleteFrom('locks').where('name', '=', name).where('owner', '=', owner).execute();
  }

  async requestLockRelease(name: string, now: number): Promise<boolean> {
    const result = await this.db
      .updateTable('locks')
      .set({ release_requested: 1 })
      .where('name', '=', name)
      .where('expires_at', '>=', now)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async lockReleaseRequested(name: string, owner: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('locks')
      .select('release_requested')
      .where('name', '=', name)
      .where('owner', '=', owner)
      .executeTakeFirst();
    return Number(row?.release_requested ?? 0) === 1;
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}

/** Adds `by` to a named counter and returns the new value, inside the caller's transaction. */
async function bumpCounter(trx: Transaction<Database>, name: string, by: number): Promise<number> {
  const row = await trx
    .insertInto('counters')
    .values({ name, value: by })
    .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({ value: eb('counters.value', '+', by) })))
    .returning('value')
    .executeTakeFirstOrThrow();
  return Number(row.value);
}

async function addFileVersion(
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
  await trx
    .insertInto('file_versions')
    .values({ account_id: accountId, namespace, name, version, asset_id: assetId, created_at: at })
    .execute();
  return { accountId, namespace, name, version, latestVersion: version, assetId, createdAt: at };
}

/** SQLite and PostgreSQL report a unique-key clash by code; never by message text. */
function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === '23505';
}

function parseIntent(text: string): UploadIntent {
  return JSON.parse(text) as UploadIntent;
}

function toFileVersion(row: Selectable<FileVersionsTable>, latestVersion: number): FileVersion {
  return {
    accountId: row.account_id,
    namespace: row.namespace,
    name: row.name,
    version: Number(row.version),
    latestVersion,
    assetId: row.asset_id,
    createdAt: Number(row.created_at),
  };
}

function fromJob(job: NewJob): JobsTable {
  return {
    id: job.id,
    kind: job.kind,
    payload: JSON.stringify(job.payload),
    status: 'queued',
    attempts: 0,
    run_at: job.runAt,
    lease_until: null,
    worker: null,
    last_error: null,
    created_at: job.runAt,
    updated_at: job.runAt,
  };
}

function toJob(row: Selectable<JobsTable>): Job {
  return {
    id: row.id,
    kind: row.kind,
    payload: JSON.parse(row.payload) as Record<string, unknown>,
    status: row.status as JobStatus,
    attempts: Number(row.attempts),
    runAt: Number(row.run_at),
  };
}

function compileKeyLookup(db: Kysely<Database>) {
  return db
    .selectFrom('api_keys as k')
    .innerJoin('accounts as a', 'a.id', 'k.account_id')
    .selectAll('k')
    .select([
      'a.name as account_name',
      'a.max_file_size as account_max_file_size',
      'a.storage_quota as account_storage_quota',
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
    storageQuota: row.storage_quota === null ? null : Number(row.storage_quota),
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
    seq: u.seq,
    external_id: u.externalId,
    intent: JSON.stringify(u.intent),
    auto_complete: u.intent.autoComplete ? 1 : 0,
    multipart_id: u.multipartId,
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
    seq: row.seq === null ? null : Number(row.seq),
    externalId: row.external_id,
    intent: parseIntent(row.intent),
    multipartId: row.multipart_id,
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
    seq: a.seq,
    access: a.access,
    processing: a.processing,
    analysis: JSON.stringify(a.analysis),
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
    seq: Number(row.seq),
    access: row.access as Access,
    processing: row.processing as ProcessingStatus,
    analysis: JSON.parse(row.analysis) as AssetAnalysis,
    metadata: JSON.parse(row.metadata) as Record<string, unknown>,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}
