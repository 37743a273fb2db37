import { type Selectable, sql, type Transaction } from 'kysely';
import { WharfError } from '../../core/errors.js';
import { type UploadEnding, uploadCompleted, uploadCreated, uploadEnded } from '../../core/events.js';
import type { Asset, Upload, UploadIntent } from '../../core/model.js';
import type {
  FinishResult,
  NewJob,
  RecordedUpload,
  UploadLimits,
  UploadStore,
  UploadToRecord,
} from '../../core/ports.js';
import type { Dialect } from '../connect.js';
import type { AssetsTable, Database } from '../schema.js';
import type { SqlContext } from './context.js';
import { bumpCounters, insertRows, isUniqueViolation } from './context.js';
import { appendEvents } from './events.js';
import { addFileVersion } from './files.js';
import {
  type ReservationEntry,
  reserveUploads,
  revokedRefusal,
  settleArrived,
  settleExpired,
  settleFinished,
} from './reservations.js';
import { endingColumns, fromAsset, fromJob, fromUpload, parseIntent, toAsset, toUpload } from './rows.js';

// The conditions of the partial indexes over pending uploads (migration 009), as literals.
const PENDING = sql.lit('pending');
const AUTO_COMPLETE = sql.lit(1);
const DIRECT = sql.lit('direct');
/** Direct uploads one renewal statement names at most (see renewUploads). */
const RENEW_CHUNK = 500;

export function uploadQueries({ db, dialect, ids }: SqlContext): UploadStore {
  // Group commit: intents created by concurrent requests are written in one transaction,
  // so one fsync serves them all instead of one each. Each caller still resolves only
  // once its rows are durable. A caller whose reservations do not fit is refused on its own.
  type Queued = ReservationEntry & {
    resolve: (recorded: RecordedUpload[]) => void;
    reject: (err: unknown) => void;
  };
  let queued: Queued[] = [];
  let flushing = false;

  // What the store gave each upload (on copies of its own: the caller's objects are not written).
  const settle = (entry: Queued, refusal: WharfError | undefined): void => {
    if (refusal) entry.reject(refusal);
    else entry.resolve(entry.uploads.map(({ upload }) => ({ seq: upload.seq!, reserved: upload.reserved })));
  };

  async function flushUploads(): Promise<void> {
    const batch = queued;
    queued = [];
    try {
      const refusals = await writeUploads(batch);
      for (const [i, entry] of batch.entries()) settle(entry, refusals[i]);
    } catch {
      // One caller's bad rows must not fail the others: retry each on its own.
      for (const entry of batch) {
        await writeUploads([entry]).then(
          ([refusal]) => settle(entry, refusal),
          (err: unknown) =>
            entry.reject(
              isUniqueViolation(err)
                ? new WharfError('ID_EXISTS', 'An upload with this id already exists.')
                : err,
            ),
        );
      }
    } finally {
      if (queued.length > 0) setImmediate(() => void flushUploads());
      else flushing = false;
    }
  }

  async function writeUploads(entries: ReservationEntry[]): Promise<(WharfError | undefined)[]> {
    // Fixed-size chunks: group commit merges calls into any number of rows, and a fixed
    // chunk keeps the SQL text the same, so its prepared statement is reused (and the
    // statement stays well under SQLite's bound-parameter limit).
    return db.transaction().execute(async (trx) => {
      // What the uploads hold is reserved in the transaction that records them.
      const refusals = await reserveUploads(trx, entries);
      const uploads = entries.flatMap((entry, i) => (refusals[i] ? [] : entry.uploads.map((u) => u.upload)));
      if (uploads.length === 0) return refusals;
      // Numbers are taken in the same transaction as the rows: a rolled-back batch gives
      // its numbers back, so every number belongs to a recorded upload.
      await numberUploads(trx, uploads);
      await insertRows(trx, 'uploads', uploads.map(fromUpload));
      // Last: appendEvents takes the events lock (see there).
      await appendEvents(trx, ids, uploads.map(uploadCreated));
      return refusals;
    });
  }

  return {
    insertUploads(uploads: UploadToRecord[], limits: UploadLimits): Promise<RecordedUpload[]> {
      // Copies: the store sets seq and reserved on them while recording (see settle).
      const own = uploads.map((item) => ({ ...item, upload: { ...item.upload } }));
      return new Promise((resolve, reject) => {
        queued.push({ uploads: own, limits, resolve, reject });
        if (!flushing) {
          flushing = true;
          setImmediate(() => void flushUploads());
        }
      });
    },

    async findOwnUpload(
      accountId: string,
      assetId: string,
      owner: { keyId: string; tokenId: string | null },
    ): Promise<Upload | undefined> {
      const row = await db
        .selectFrom('uploads')
        .selectAll()
        .where('asset_id', '=', assetId)
        .where('account_id', '=', accountId)
        .where('status', '=', 'completed')
        .where(owner.tokenId === null ? 'key_id' : 'token_id', '=', owner.tokenId ?? owner.keyId)
        .orderBy('deduplicated')
        .orderBy('completed_at', 'desc')
        .limit(1)
        .executeTakeFirst();
      return row && toUpload(row);
    },

    async getUpload(id: string): Promise<Upload | undefined> {
      const row = await db.selectFrom('uploads').selectAll().where('id', '=', id).executeTakeFirst();
      return row && toUpload(row);
    },

    async getUploadByExternalId(accountId: string, externalId: string): Promise<Upload | undefined> {
      const row = await db
        .selectFrom('uploads')
        .selectAll()
        .where('account_id', '=', accountId)
        .where('external_id', '=', externalId)
        .executeTakeFirst();
      return row && toUpload(row);
    },

    async uploadsOfAsset(accountId: string, assetId: string): Promise<Upload[]> {
      const rows = await db
        .selectFrom('uploads')
        .selectAll()
        .where('asset_id', '=', assetId)
        .where('account_id', '=', accountId)
        .where('status', '=', 'completed')
        .orderBy('completed_at')
        .orderBy('id')
        .execute();
      return rows.map(toUpload);
    },

    async listAutoCompletable(limit: number, after?: Upload): Promise<Upload[]> {
      // Literals, so the partial index uploads_auto_complete serves it (see migration 009).
      let query = db
        .selectFrom('uploads')
        .selectAll()
        .where('status', '=', PENDING)
        .where('auto_complete', '=', AUTO_COMPLETE);
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
    },

    async listAutoCompletableByDigest(
      accountId: string,
      digest: { sha256: string } | { md5: string },
      size: number,
      limit: number,
      owner?: { keyId: string; tokenId: string | null },
    ): Promise<Upload[]> {
      // uploads_auto_complete narrows to pending self-completing uploads, which are few
      // (they complete within minutes); the rest is filtered among them.
      let query = db
        .selectFrom('uploads')
        .selectAll()
        .where('auto_complete', '=', AUTO_COMPLETE)
        .where('status', '=', PENDING)
        .where('account_id', '=', accountId)
        .where('size', '=', size);
      if (owner) {
        query = query.where(
          owner.tokenId === null ? 'key_id' : 'token_id',
          '=',
          owner.tokenId ?? owner.keyId,
        );
      }
      query =
        'sha256' in digest ? query.where('sha256', '=', digest.sha256) : query.where('md5', '=', digest.md5);
      const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
      return rows.map(toUpload);
    },

    async finishUpload(
      uploadId: string,
      candidate: Asset,
      at: number,
      jobs: NewJob[],
      ifDeduplicated: NewJob[],
    ): Promise<FinishResult> {
      return db.transaction().execute(async (trx) => {
        let select = trx.selectFrom('uploads').selectAll().where('id', '=', uploadId);
        // Row lock on PostgreSQL so two nodes completing the same upload serialise here.
        if (dialect === 'postgres') select = select.forUpdate();
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
        // Ended by its token's revocation (see endPendingUploads): refused as its completion
        // would have been had it come first, whoever completes it.
        if (upload.status !== 'pending' && upload.token_id !== null && upload.ended_code === 'UNAUTHORIZED') {
          throw revokedRefusal();
        }
        if (upload.status !== 'pending') throw new WharfError('UPLOAD_EXPIRED', 'This upload has expired.');

        const stored = await takeAsset(trx, dialect, { ...candidate, seq: Number(upload.seq ?? 0) });
        const deduplicated = stored.id !== candidate.id;
        if (deduplicated && (candidate.status === 'verifying' || stored.status === 'verifying')) {
          // The insert did nothing (the conflict), and nothing else was written yet.
          return { asset: toAsset(stored), deduplicated, completedNow: false, unverified: true };
        }
        // Throws (rolling all of this back) when the quota or the token's budget cannot take it.
        await settleFinished(trx, upload, candidate.size, deduplicated ? 0 : candidate.size);
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
          ? await addFileVersion(
              trx,
              upload.account_id,
              intent.file.namespace,
              intent.file.name,
              stored.id,
              at,
            )
          : undefined;
        const queued = deduplicated ? ifDeduplicated : jobs;
        if (queued.length > 0) await trx.insertInto('jobs').values(queued.map(fromJob)).execute();
        const asset = toAsset(stored);
        const completed: Upload = {
          ...toUpload(upload),
          status: 'completed',
          assetId: asset.id,
          deduplicated,
          completedAt: at,
        };
        await appendEvents(
          trx,
          ids,
          uploadCompleted(
            completed,
            asset,
            deduplicated,
            version && { namespace: version.namespace, name: version.name, version: version.version },
            at,
          ),
        );
        return { asset, deduplicated, completedNow: true, version };
      });
    },

    async listStaleUploads(before: number, limit: number, leasedBefore?: number): Promise<Upload[]> {
      // Literals, so the partial index uploads_pending_expiry serves it (see migration 009): one
      // range of it, up to the later bound, the direct uploads' own bound filtered within.
      let query = db.selectFrom('uploads').selectAll().where('status', '=', PENDING);
      if (leasedBefore === undefined || leasedBefore <= before) {
        query = query.where('expires_at', '<', before);
      } else {
        query = query
          .where('expires_at', '<', leasedBefore)
          .where((eb) => eb.or([eb('expires_at', '<', before), eb('kind', '=', DIRECT)]));
      }
      const rows = await query.orderBy('expires_at').limit(limit).execute();
      return rows.map(toUpload);
    },

    async renewUploads(ids: string[], until: number): Promise<number> {
      let renewed = 0;
      // Chunks well under SQLite's bound-parameter limit; a process streams far fewer at once.
      for (let at = 0; at < ids.length; at += RENEW_CHUNK) {
        const result = await db
          .updateTable('uploads')
          .set({ expires_at: until })
          .where('id', 'in', ids.slice(at, at + RENEW_CHUNK))
          .where('status', '=', PENDING)
          .where('kind', '=', DIRECT)
          // Never back: a renewal that waited on the database past a later one changes nothing.
          .where('expires_at', '<', until)
          .executeTakeFirst();
        renewed += Number(result.numUpdatedRows);
      }
      return renewed;
    },

    async expireUpload(
      id: string,
      at: number,
      ending: UploadEnding = { reason: 'expired' },
    ): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        const row = await trx
          .updateTable('uploads')
          // Why, kept with it: a client polling the upload learns what its event says.
          .set({ status: 'expired', ...endingColumns(ending) })
          .where('id', '=', id)
          .where('status', '=', 'pending')
          .returningAll()
          .executeTakeFirst();
        if (!row) return false;
        await settleExpired(trx, row);
        await appendEvents(trx, ids, [uploadEnded(toUpload(row), ending, at)]);
        return true;
      });
    },

    async holdArrived(id: string, hold: { quota: number; token: number }): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        // The upload row first, as every transaction that changes reservations locks it (a
        // no-op update locks it on PostgreSQL; on SQLite the write takes the database's lock).
        const row = await trx
          .updateTable('uploads')
          .set((eb) => ({ quota_reserved: eb.ref('quota_reserved') }))
          .where('id', '=', id)
          .where('status', '=', 'pending')
          .returningAll()
          .executeTakeFirst();
        if (!row) return false;
        await settleArrived(trx, row, hold);
        await trx
          .updateTable('uploads')
          .set({ quota_reserved: hold.quota, token_reserved: hold.token })
          .where('id', '=', id)
          .execute();
        return true;
      });
    },

    async listPendingBySize(
      accountId: string,
      kinds: Upload['kind'][],
      size: number,
      limit: number,
    ): Promise<Upload[]> {
      if (kinds.length === 0) return [];
      // Like listAutoCompletableByDigest: resumable uploads complete by themselves, so
      // uploads_auto_complete narrows to the few pending ones; the rest is filtered among them.
      // Literals, so the partial index serves it (see migration 009).
      const rows = await db
        .selectFrom('uploads')
        .selectAll()
        .where('auto_complete', '=', AUTO_COMPLETE)
        .where('status', '=', PENDING)
        .where('account_id', '=', accountId)
        .where('size', '=', size)
        .where('kind', 'in', kinds)
        .orderBy('created_at', 'desc')
        .orderBy('id', 'desc')
        .limit(limit)
        .execute();
      return rows.map(toUpload);
    },

    async setUploadIntent(id: string, intent: UploadIntent): Promise<void> {
      await db
        .updateTable('uploads')
        .set({ intent: JSON.stringify(intent) })
        .where('id', '=', id)
        .where('status', '=', 'pending')
        .execute();
    },

    async setUploadMultipartId(id: string, multipartId: string): Promise<void> {
      await db
        .updateTable('uploads')
        .set({ multipart_id: multipartId })
        .where('id', '=', id)
        .where('status', '=', 'pending')
        .execute();
    },

    async claimUploadMultipartId(id: string, multipartId: string): Promise<boolean> {
      await db
        .updateTable('uploads')
        .set({ multipart_id: multipartId })
        .where('id', '=', id)
        .where('status', '=', 'pending')
        .where('multipart_id', 'is', null)
        .execute();
      const row = await db
        .selectFrom('uploads')
        .select('multipart_id')
        .where('id', '=', id)
        .executeTakeFirst();
      return row?.multipart_id === multipartId;
    },
  };
}

/**
 * Gives each of `uploads` its number, in order, inside the transaction that records them. An
 * upload's number (and the asset's it becomes: its `number`, its ActiveStorage blob id) counts
 * its account's uploads alone, from the counter `seq:<account>`: numbered from one counter for
 * all, a tenant could tell from two of its own numbers how many uploads the others made in
 * between. One statement bumps every account's counter of the batch.
 */
async function numberUploads(trx: Transaction<Database>, uploads: Upload[]): Promise<void> {
  const counts = new Map<string, number>();
  for (const { accountId } of uploads) counts.set(accountId, (counts.get(accountId) ?? 0) + 1);
  const last = await bumpCounters(trx, new Map([...counts].map(([account, n]) => [`seq:${account}`, n])));
  const next = new Map([...counts].map(([account, n]) => [account, last.get(`seq:${account}`)! - n + 1]));
  for (const upload of uploads) {
    const seq = next.get(upload.accountId)!;
    upload.seq = seq;
    next.set(upload.accountId, seq + 1);
  }
}

/**
 * The asset a completion records: its candidate, new, or the account's asset that already
 * holds these bytes (deduplicated), which stays until this transaction commits. On PostgreSQL
 * that asset is read with a KEY SHARE lock, and deleteAsset locks the asset FOR UPDATE before it
 * removes the versions that name it, so a delete on another node waits for this completion and
 * then removes the version it added along with the asset. Unlocked, a delete could remove the
 * asset's versions before this transaction added one, which then named a deleted asset for good.
 * A delete that locked it first has removed the row once it commits (the lock then finds none),
 * and the candidate is inserted after all: the content is stored anew. (SQLite runs one write
 * transaction at a time: no delete can come in between.)
 */
async function takeAsset(
  trx: Transaction<Database>,
  dialect: Dialect,
  candidate: Asset,
): Promise<Selectable<AssetsTable>> {
  for (let attempt = 1; ; attempt++) {
    const inserted = await trx
      .insertInto('assets')
      .values(fromAsset(candidate))
      .onConflict((oc) => oc.columns(['account_id', 'sha256']).doNothing())
      .returningAll()
      .executeTakeFirst();
    if (inserted) return inserted;
    let existing = trx
      .selectFrom('assets')
      .selectAll()
      .where('account_id', '=', candidate.accountId)
      .where('sha256', '=', candidate.sha256);
    // KEY SHARE: it waits for a delete, not for the updates an asset takes (access, analysis).
    if (dialect === 'postgres') existing = existing.forKeyShare();
    const held = await existing.executeTakeFirst();
    if (held) return held;
    // Deleted between the two statements: each such delete has committed, so the next insert
    // goes in unless the content was stored again meanwhile. Only deletes and uploads of the
    // same bytes, over and over, keep this going; the caller may retry.
    if (attempt === 3) {
      throw new WharfError(
        'SERVICE_UNAVAILABLE',
        'A file with this content is being deleted and stored again at the same time; retry shortly.',
      );
    }
  }
}
