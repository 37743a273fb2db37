/**
 * `wharf data backup DIR` on the embedded default (a SQLite database and a local store): DIR
 * becomes a data directory of its own, `wharf.db` and `blobs/`, that a server started with
 * `WHARF_DATA_DIR=<a copy of DIR>` runs on. It is taken while the server runs.
 *
 * The database is copied first, as one moment sees it, then every object that copy refers to
 * (assets' bytes, renderings'), each hashed as it is copied and checked against its record.
 * The server may delete an asset, and then its bytes, after that moment: the object is then
 * missing when its turn comes, so the database is copied again and what is still missing is
 * copied, until a copy finds all it refers to. Objects already in DIR from an earlier backup
 * (same key, and the size and SHA-256 its record says) are kept, so a nightly backup copies
 * what is new; objects the new copy no longer refers to are removed from DIR last.
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { access, lstat, readdir, realpath, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { fsyncPath } from '../blobs/fs-multipart.js';
import { FsBlobStore, type PutPresigner } from '../blobs/fs-store.js';
import { RunningDigest } from '../blobs/running-digest.js';
import type { Digests } from '../core/model.js';
import { ObjectMissing } from '../core/ports.js';
import { createDatabaseFile } from '../db/file-mode.js';
import { missingDatabase } from '../db/missing.js';
import { makeDirectory } from '../make-directory.js';
import { eachAtOnce } from './at-once.js';
import {
  hasWharfSchema,
  holdLock,
  type ReferencedObject,
  referencedObjects,
  snapshotDatabase,
  stillReferenced,
} from './sqlite.js';

/** How often the database is copied again because objects went away meanwhile. */
const MAX_SNAPSHOTS = 5;
/** Objects copied at once: enough to keep a disk busy, few enough to leave the server its share. */
const COPIES_AT_ONCE = 4;

export interface BackupProblem {
  kind: 'missing' | 'size_mismatch' | 'checksum_mismatch';
  object: ReferencedObject;
  /** What storage held instead (none when missing). */
  found?: Digests;
}

export interface BackupReport {
  /** How many times the database was copied (more than 1 when objects were deleted meanwhile). */
  snapshots: number;
  assets: number;
  renderings: number;
  copied: number;
  copiedBytes: number;
  /** Objects already in the target from an earlier backup, unchanged. */
  kept: number;
  /** Objects of an earlier backup that the new database no longer refers to. */
  removed: number;
  /** With `verify`: objects of an earlier backup whose bytes no longer matched, copied again. */
  repaired: number;
  /** Renderings whose bytes the server no longer held: left out, made again when asked for. */
  renderingsLeftOut: number;
  /** Assets whose bytes the server's storage lost or changed: their records are in the backup, their bytes are not. */
  problems: BackupProblem[];
}

export class BackupRefused extends Error {}

/** The database is there but no Wharf has run on it (e.g. an empty `wharf.db`): nothing to back up. */
export class NoWharfSchema extends BackupRefused {
  constructor(path: string) {
    super(`The database at ${path} has no Wharf schema: no server has run on it yet.`);
  }
}

export interface BackupOptions {
  /** The live SQLite database file. */
  database: string;
  /** The setting that chose `database` (see databaseSetting), which a refusal names. */
  databaseSetting: string;
  /** The live local store's root (`<WHARF_DATA_DIR>/blobs`). */
  blobs: string;
  /** The live data directory, which the target must be outside of. */
  dataDir: string;
  target: string;
  /**
   * Re-read and hash the objects an earlier backup already holds, copying again any that no
   * longer match. Without it they are kept on the facts recorded when they were written (size,
   * SHA-256), so a nightly backup reads only what is new.
   */
  verify?: boolean;
}

/** A backup's store signs nothing: no client ever uploads to it. */
const NO_PRESIGNING: PutPresigner = {
  presignPut: () => Promise.reject(new Error('a backup signs no URL')),
  presignPost: () => Promise.reject(new Error('a backup signs no URL')),
  presignOperation: () => Promise.reject(new Error('a backup signs no URL')),
};

export async function backup(options: BackupOptions): Promise<BackupReport> {
  const target = resolve(options.target);
  // Compared as the filesystem resolves them: a symlink to a folder inside the data directory
  // (which the server may empty at its next start) is inside it.
  const realTarget = await resolvedPath(target);
  const dataDir = await resolvedPath(resolve(options.dataDir));
  if (realTarget === dataDir || isInside(dataDir, realTarget) || isInside(realTarget, dataDir)) {
    throw new BackupRefused(
      `The backup must go outside the data directory (${dataDir}) and not contain it: choose another directory.`,
    );
  }
  const missing = missingDatabase(
    { dialect: 'sqlite', path: options.database },
    'nothing to back up',
    options.databaseSetting,
  );
  if (missing) throw new BackupRefused(missing);
  // Rather than SQLite's "no such table" once the copy is read.
  if (!hasWharfSchema(options.database)) throw new NoWharfSchema(options.database);
  await ensureBackupTarget(target);
  const lock = holdLock(join(target, '.wharf-backup.lock'));
  if (!lock) throw new BackupRefused(`Another backup is writing into ${target}; wait for it to end.`);
  const live = new FsBlobStore(options.blobs, NO_PRESIGNING);
  const into = new FsBlobStore(join(target, 'blobs'), NO_PRESIGNING);
  const snapshot = join(target, `.wharf-backup-${randomUUID()}.db`);
  // Every step runs, and the lock is let go, whatever fails; a cleanup's failure is thrown only
  // when nothing failed before it: it must not hide why the backup failed.
  const cleanUp = async (): Promise<unknown> => {
    let failure: unknown;
    for (const step of [() => rm(snapshot, { force: true }), () => into.close(), () => live.close()]) {
      await step().catch((err: unknown) => {
        failure ??= err;
      });
    }
    lock.release();
    return failure;
  };
  let report: BackupReport;
  try {
    // Only this backup writes into the target (the lock): what is in its tmp/ is a crash's, and
    // so is a database copy a killed backup left (as large as the database).
    await into.init({ recover: true });
    for (const entry of await readdir(target)) {
      if (/^\.wharf-backup-[0-9a-f-]+\.db(-journal)?$/.test(entry))
        await rm(join(target, entry), { force: true });
    }
    report = {
      snapshots: 0,
      assets: 0,
      renderings: 0,
      copied: 0,
      copiedBytes: 0,
      kept: 0,
      removed: 0,
      repaired: 0,
      renderingsLeftOut: 0,
      problems: [],
    };
    let objects: Map<string, ReferencedObject>;
    let lost: ReferencedObject[];
    // Counted once per object over the run, however many times the database was copied.
    const copiedNow = new Set<string>();
    const keptFromBefore = new Set<string>();
    for (;;) {
      await rm(snapshot, { force: true });
      // As private as the live database (it holds the server secret too): SQLite's VACUUM INTO
      // would make it 0644; it fills an empty file, and keeps that file's mode.
      createDatabaseFile(snapshot);
      snapshotDatabase(options.database, snapshot);
      report.snapshots += 1;
      objects = referencedObjects(snapshot);
      report.problems = [];
      const missing: ReferencedObject[] = [];
      await eachAtOnce([...objects.values()], COPIES_AT_ONCE, async (object) => {
        // Copied (and checked) by this run's earlier pass: nothing to do again.
        if (copiedNow.has(object.key)) return;
        const outcome = await copyObject(
          live,
          into,
          object,
          options.verify === true && !keptFromBefore.has(object.key),
        );
        if (outcome === 'kept') keptFromBefore.add(object.key);
        else if (outcome === 'missing') missing.push(object);
        else if ('problem' in outcome) report.problems.push(outcome.problem);
        else {
          copiedNow.add(object.key);
          report.copiedBytes += outcome.bytes;
          if (outcome.repaired) report.repaired += 1;
        }
      });
      // Gone because the server deleted them after the copy was taken, or lost by storage.
      const referenced = stillReferenced(
        options.database,
        missing.map((m) => m.key),
      );
      lost = missing.filter((m) => referenced.has(m.key));
      if (lost.length === missing.length || report.snapshots === MAX_SNAPSHOTS) break;
    }
    // A rendering's record without its bytes is what the server itself meets when storage
    // loses one: it renders it again on the next request.
    const lostRenderings = lost.filter((m) => m.what === 'rendering');
    for (const m of lostRenderings) objects.delete(m.key);
    report.renderingsLeftOut = lostRenderings.length;
    for (const m of lost) if (m.what === 'asset') report.problems.push({ kind: 'missing', object: m });
    for (const object of objects.values()) {
      if (object.what === 'asset') report.assets += 1;
      else report.renderings += 1;
    }
    report.copied = copiedNow.size;
    report.kept = [...keptFromBefore].filter((key) => objects.has(key)).length;
    // The database replaces the previous backup's only once every object it refers to is in place.
    await fsyncPath(snapshot);
    await rename(snapshot, join(target, 'wharf.db'));
    await fsyncPath(target);
    report.removed = await removeUnreferenced(into, join(target, 'blobs', 'objects'), objects);
  } catch (err) {
    await cleanUp();
    throw (isTargetFull(err) && unwritable(target, err)) || err;
  }
  const failure = await cleanUp();
  if (failure !== undefined) throw failure;
  return report;
}

type CopyOutcome = 'kept' | 'missing' | { bytes: number; repaired: boolean } | { problem: BackupProblem };

class Mismatch extends Error {
  constructor(readonly problem: BackupProblem) {
    super(problem.kind);
  }
}

async function copyObject(
  live: FsBlobStore,
  into: FsBlobStore,
  object: ReferencedObject,
  verifyHeld: boolean,
): Promise<CopyOutcome> {
  const held = await into.head(object.key);
  let repaired = false;
  if (held?.size === object.size && held.sha256 === object.sha256) {
    if (!verifyHeld) return 'kept';
    const found = await digestOf(await into.read(object.key));
    if (found.size === object.size && found.sha256 === object.sha256) return 'kept';
    repaired = true;
  }
  let source: Readable;
  try {
    source = await live.read(object.key);
  } catch (err) {
    if (err instanceof ObjectMissing) return 'missing';
    throw err;
  }
  const digest = new RunningDigest();
  const hashed = Readable.from(
    (async function* () {
      for await (const chunk of source) {
        digest.update(chunk as Buffer);
        yield chunk;
      }
    })(),
  );
  try {
    await into.write(object.key, hashed, () => {
      const found = digest.digests();
      const kind =
        found.size !== object.size
          ? 'size_mismatch'
          : found.sha256 !== object.sha256 || (object.md5 !== null && found.md5 !== object.md5)
            ? 'checksum_mismatch'
            : undefined;
      if (kind) throw new Mismatch({ kind, object, found });
      return found;
    });
  } catch (err) {
    if (err instanceof Mismatch) return { problem: err.problem };
    // Deleted while it was being read: as missing as one never found.
    if (err instanceof ObjectMissing || (err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw err;
  }
  return { bytes: object.size, repaired };
}

async function digestOf(bytes: Readable): Promise<Digests> {
  const digest = new RunningDigest();
  for await (const chunk of bytes) digest.update(chunk as Buffer);
  return digest.digests();
}

/**
 * `path` as the filesystem resolves it: its nearest existing ancestor with every symlink
 * followed, then the rest as written. A symlink whose target does not exist is refused (making
 * the directory would follow it somewhere unchecked).
 */
async function resolvedPath(path: string): Promise<string> {
  const rest: string[] = [];
  let at = path;
  for (;;) {
    try {
      return join(await realpath(at), ...rest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw err;
      if ((await lstat(at).catch(() => undefined))?.isSymbolicLink()) {
        throw new BackupRefused(`${at} is a symbolic link to a path that does not exist.`);
      }
      const parent = dirname(at);
      if (parent === at) return path;
      rest.unshift(basename(at));
      at = parent;
    }
  }
}

/** The objects under `root` (the target's `objects/`) that `objects` does not name, removed. */
async function removeUnreferenced(
  into: FsBlobStore,
  root: string,
  objects: Map<string, ReferencedObject>,
): Promise<number> {
  let removed = 0;
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const key = relative(root, join(entry.parentPath, entry.name)).split(sep).join('/');
    if (objects.has(key)) continue;
    await into.delete(key);
    removed += 1;
  }
  return removed;
}

/** The target: made if missing; refused when it holds something other than a backup. */
async function ensureBackupTarget(target: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') {
      throw new BackupRefused(`${target} is a file, not a directory: back up into a directory.`);
    }
    if (code !== 'ENOENT') throw err;
    try {
      await makeDirectory(target, 0o750);
    } catch (err) {
      throw unwritable(target, err) ?? err;
    }
    return;
  }
  // A target that cannot be written into (a read-only file system) failed only at the lock
  // file, as SQLite's "unable to open database file", naming neither the path nor the cause.
  try {
    await access(target, constants.W_OK);
  } catch (err) {
    throw unwritable(target, err) ?? err;
  }
  if (entries.includes('wharf.db-wal')) {
    throw new BackupRefused(
      `${target} has been used as a server's data directory (it has a wharf.db-wal): back up into another directory, and restore from a copy of a backup, never the backup itself.`,
    );
  }
  // The lock (and its journal) and a database copy a killed backup left are a backup's own.
  const foreign = entries.filter((e) => e !== 'wharf.db' && e !== 'blobs' && !e.startsWith('.wharf-backup'));
  if (foreign.length > 0) {
    throw new BackupRefused(
      `${target} holds other files (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', …' : ''}): a backup goes into an empty directory or an earlier backup.`,
    );
  }
}

/** Why a write into the target failed, by the failure's code, for the errors that say why. */
const WRITE_FAILURES: Record<string, string> = {
  EROFS: 'it is on a read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on its device',
  EDQUOT: 'the disk quota is used up',
  SQLITE_FULL: 'no space left on its device',
};

/**
 * A failed write into the target as a refusal naming the target and the cause (Node's own
 * message names the call, "write", not the file); undefined for other failures.
 */
function unwritable(target: string, err: unknown): BackupRefused | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  const why = typeof code === 'string' ? WRITE_FAILURES[code] : undefined;
  return why ? new BackupRefused(`Cannot write the backup into ${target}: ${why} (${code}).`) : undefined;
}

/**
 * Failures that only a write has: the backup's own, into the target (it writes nowhere else).
 * A permission error may be the live side's (reading the store), so it is left as it is.
 */
function isTargetFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}

/** `child` is below `parent` (both resolved). */
function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel !== '' && !rel.startsWith('..');
}
