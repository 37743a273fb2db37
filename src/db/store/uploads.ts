import { WharfError } from '../../core/errors.js';
import { type UploadEnding, uploadCompleted, uploadCreated, uploadEnded } from '../../core/events.js';
import type { Asset, Upload } from '../../core/model.js';
import type { FinishResult, NewJob, UploadStore } from '../../core/ports.js';
import type { SqlContext } from './context.js';
import { bumpCounter, INSERT_CHUNK, isUniqueViolation } from './context.js';
import { appendEvents } from './events.js';
import { addFileVersion } from './files.js';
import { fromAsset, fromJob, fromUpload, parseIntent, toAsset, toUpload } from './rows.js';

export function uploadQueries({ db, dialect, ids }: SqlContext): UploadStore {
  // Group commit: intents created by concurrent requests are written in one transaction,
  // so one fsync serves them all instead of one each. Each caller still resolves only
  // once its rows are durable.
  let queued: { uploads: Upload[]; resolve: () => void; reject: (err: unknown) => void }[] = [];
  let flushing = false;

  async function flushUploads(): Promise<void> {
    const batch = queued;
    queued = [];
    try {
      await writeUploads(batch.flatMap((entry) => entry.uploads));
      for (const entry of batch) entry.resolve();
    } catch {
      // One caller's bad rows must not fail the others: retry each on its own.
      for (const entry of batch) {
        await writeUploads(entry.uploads).then(entry.resolve, (err: unknown) =>
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

  async function writeUploads(uploads: Upload[]): Promise<void> {
    // Fixed-size chunks: group commit merges calls into any number of rows, and a fixed
    // chunk keeps the SQL text the same, so its prepared statement is reused (and the
    // statement stays well under SQLite's bound-parameter limit).
    await db.transaction().execute(async (trx) => {
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
      await appendEvents(trx, ids, uploads.map(uploadCreated));
    });
  }

  return {
    insertUploads(uploads: Upload[]): Promise<void> {
      return new Promise((resolve, reject) => {
        queued.push({ uploads, resolve, reject });
        if (!flushing) {
          flushing = true;
          setImmediate(() => void flushUploads());
        }
      });
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

    async listAutoCompletable(limit: number, after?: Upload): Promise<Upload[]> {
      let query = db
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
    },

    async listAutoCompletableByDigest(
      accountId: string,
      digest: { sha256: string } | { md5: string },
      size: number,
      limit: number,
    ): Promise<Upload[]> {
      // uploads_auto_complete narrows to pending self-completing uploads, which are few
      // (they complete within minutes); the rest is filtered among them.
      let query = db
        .selectFrom('uploads')
        .selectAll()
        .where('auto_complete', '=', 1)
        .where('status', '=', 'pending')
        .where('account_id', '=', accountId)
        .where('size', '=', size);
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
          ? await addFileVersion(
              trx,
              upload.account_id,
              intent.file.namespace,
              intent.file.name,
              stored.id,
              at,
            )
          : undefined;
        if (!deduplicated && jobs.length > 0)
          await trx.insertInto('jobs').values(jobs.map(fromJob)).execute();
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

    async listStaleUploads(before: number, limit: number): Promise<Upload[]> {
      const rows = await db
        .selectFrom('uploads')
        .selectAll()
        .where('status', '=', 'pending')
        .where('expires_at', '<', before)
        .orderBy('expires_at')
        .limit(limit)
        .execute();
      return rows.map(toUpload);
    },

    async expireUpload(
      id: string,
      at: number,
      ending: UploadEnding = { reason: 'expired' },
    ): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        const row = await trx
          .updateTable('uploads')
          .set({ status: 'expired' })
          .where('id', '=', id)
          .where('status', '=', 'pending')
          .returningAll()
          .executeTakeFirst();
        if (!row) return false;
        await appendEvents(trx, ids, [uploadEnded(toUpload(row), ending, at)]);
        return true;
      });
    },

    async setUploadMultipartId(id: string, multipartId: string): Promise<void> {
      await db
        .updateTable('uploads')
        .set({ multipart_id: multipartId })
        .where('id', '=', id)
        .where('status', '=', 'pending')
        .execute();
    },
  };
}
