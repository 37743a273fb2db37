import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreLocker } from './blobs/db-locker.js';
import { flexibleChecksums } from './blobs/flexible-checksums.js';
import { FsBlobStore } from './blobs/fs-store.js';
import { LocalEndpoint } from './blobs/local-endpoint.js';
import { processTempDir } from './blobs/process-temp.js';
import type { S3Options } from './blobs/s3-client.js';
import type { S3CredentialsRefused } from './blobs/s3-store.js';
import type { TusBackend } from './blobs/tus-storage.js';
import { type Config, ConfigError, MIN_SECRET_LENGTH } from './config.js';
import { type Clock, systemClock } from './core/clock.js';
import { createIdSource, type IdSource, newIdOrder } from './core/ids.js';
import { DEFAULT_ACCOUNT_ID } from './core/keys.js';
import type { BlobStore, PresignVerifier, Store } from './core/ports.js';
import type { Telemetry } from './core/telemetry.js';
import { type Core, createCore, deriveKey } from './core/wharf.js';
import { type Migrated, type OpenedSqlStore, openSqlStore } from './db/store/index.js';
import { openStoreThread } from './db/store-thread.js';
import { parseDatabaseUrl } from './db/url.js';
import { webhookPayload } from './http/api/event-json.js';
import { makeDirectory } from './make-directory.js';
import { HttpWebhookSender } from './net/webhook-sender.js';
import { ImageAnalyzer } from './processing/image-analyzer.js';
import { LocationScrubber } from './processing/location-scrubber.js';
import { MediaTools } from './processing/media-tools.js';
import { Scratch } from './processing/scratch.js';
import { SharpRenderer } from './processing/sharp-renderer.js';

export interface OpenedCore {
  core: Core;
  store: Store;
  blobs: BlobStore;
  /** What the tus endpoint runs on: tus.io's datastore, a lock shared by every node, a staging dir. */
  tus: {
    datastore: TusBackend['datastore'];
    bodies: TusBackend['bodies'];
    locker: StoreLocker;
    stagingDir: string;
  };
  /** External tools (ffmpeg, poppler) this server lacks, by name and the path that was tried. */
  missingTools: Record<string, string>;
  /**
   * The migrations the start ran on the database (the server logs them: an upgrade's start can
   * take long on a large database), and how long they took; undefined for a command, which
   * never migrates.
   */
  migrated: Migrated | undefined;
  /**
   * `copied`: the S3 store acts on an unsigned `x-amz-copy-source` sent with a URL Wharf signed
   * for an upload (S3BlobStore.checkUnsignedCopy); the server warns at start.
   */
  unsignedCopy: 'copied' | 'refused' | 'unknown' | undefined;
  /**
   * Whether an upload URL's client could make its object public-read: `blocked` when the start
   * set the bucket's public access block to stop that, `public` when it could not.
   */
  publicAcl: 'private' | 'blocked' | 'public' | 'unknown' | undefined;
  /**
   * Ends the calls still waiting on the object store (one that stopped answering): they fail
   * at once, and so does every later one. For a stop, once no request needs storage any more,
   * so that background work (the sweep, jobs) does not hold it up for minutes.
   */
  abandonStorageCalls(): void;
  close(): Promise<void>;
}

/**
 * The database, migrated to the latest schema for a server; for a command, checked to be at
 * it and never migrated (see OpenCoreOptions). SQLite runs on a thread of its own for a server
 * (see db/store-thread.ts); PostgreSQL is reached from the event loop, its work being another
 * process's already.
 */
async function openStore(
  databaseUrl: string,
  clock: Clock,
  ids: IdSource,
  idOrder: SharedArrayBuffer,
  telemetry: Telemetry | undefined,
  server: boolean,
): Promise<OpenedSqlStore> {
  const target = parseDatabaseUrl(databaseUrl);
  if (server && 'dialect' in target && target.dialect === 'sqlite') {
    return openStoreThread(
      databaseUrl,
      clock,
      idOrder,
      telemetry && ((event) => telemetry.databaseThread(event)),
    );
  }
  return openSqlStore(databaseUrl, ids, { migrate: server });
}

/** How much of a server to open. */
export interface OpenCoreOptions {
  /**
   * `server` (the default) runs SQLite on its own thread and finds out which media tools run
   * here. `command` is one CLI command's short life: SQLite on the calling thread (a thread
   * costs a second isolate's start for a few statements) and no tool probes (five child
   * processes, for ffmpeg, ffprobe, pdfinfo, pdftoppm and prlimit, which a command never runs),
   * and no crash recovery of the local store: a server may be writing to it at that moment.
   * Nor does it migrate the database: one whose schema is behind this version's is refused
   * (SchemaBehind), as migrating stops every older node running on it (an upgrade is the
   * operator's step, docs/deployment.md). The database, storage and secret are the same.
   */
  purpose?: 'server' | 'command';
  /** Where the S3 SDK's own lines go (a server's logger, once made); see S3Options.log. */
  log?: S3Options['log'];
}

/**
 * Adapters chosen by configuration, wired to the core. Shared by the server and the CLI,
 * so both always see the same database, storage and secret.
 */
export async function openCore(
  config: Config,
  clock: Clock = systemClock,
  telemetry?: Telemetry,
  options: OpenCoreOptions = {},
): Promise<OpenedCore> {
  const server = (options.purpose ?? 'server') === 'server';
  await checkDataDir(config.dataDir);
  // One order for the ids of this thread and the SQLite thread's: they sort as they were made.
  const idOrder = newIdOrder();
  const ids = createIdSource(clock, idOrder);
  // Temp copies for sharp and the media tools: local disk on every deployment.
  const scratch = new Scratch(join(config.dataDir, 'work'));
  const media = new MediaTools(config.media, scratch, {
    timeoutSeconds: config.media.timeoutSeconds,
    maxInputBytes: config.media.maxInputBytes,
  });
  // Probing the tools is a few child processes' start (ffmpeg's alone takes a tenth of a
  // second); it runs while the database opens rather than after. It never rejects.
  const detecting = server ? media.detect() : Promise.resolve({ missing: {} });
  const { store, migrated } = await openStore(config.databaseUrl, clock, ids, idOrder, telemetry, server);
  let opened: Awaited<ReturnType<typeof openBlobs>>;
  let secret: string;
  let previousSecrets: string[];
  try {
    // One secret per installation, kept in the database so every node shares it.
    secret =
      config.secret ?? (await store.settingOrInit('server_secret', randomBytes(32).toString('base64url')));
    // The secrets used before: WHARF_SECRET_PREVIOUS, and the generated one in the database when
    // WHARF_SECRET has replaced it. What they sealed still opens, and signed ids made under them
    // still verify (see SignedIds). Nothing is sealed again here: a server does that once it
    // listens (Wharf.listen), never a CLI command or a start that fails, since the nodes running
    // may not know this secret.
    const previous = [config.previousSecret, config.secret && (await store.getSetting('server_secret'))];
    previousSecrets = [...new Set(previous.filter((s): s is string => !!s && s !== secret))];
    opened = await openBlobs(config, secret, server, options.log);
  } catch (err) {
    await store.close();
    throw err;
  }
  const { blobs, endpoint, tus, abandon } = opened;

  await scratch.init();
  const { missing } = await detecting;

  const core = createCore({
    store,
    blobs,
    clock,
    ids,
    secret,
    // A short one (taken so that it can be moved away from) verifies no signed id: a signed id is
    // a credential with no lifetime, and one could be forged after guessing the secret offline.
    previousSecrets: previousSecrets.filter((s) => s.length >= MIN_SECRET_LENGTH),
    previousSealSecrets: previousSecrets,
    endpoint,
    endpointChecksums: endpoint && flexibleChecksums,
    analyzer: new ImageAnalyzer(),
    telemetry,
    jobs: { concurrency: config.jobConcurrency },
    images: { renderer: new SharpRenderer(scratch, config.images.maxInputBytes), settings: config.images },
    media,
    locationStripper: new LocationScrubber(),
    sessions: {
      ttlMs: config.console.sessionTtlSeconds * 1000,
      idleMs: config.console.idleTimeoutSeconds * 1000,
    },
    uploads: {
      maxFileSize: config.maxFileSize,
      uploadExpiresInSeconds: config.uploadExpiresSeconds,
      maxFilesPerRequest: config.maxFilesPerRequest,
      completionGraceMs: 3600_000,
      inlineVerifyMaxBytes: config.inlineVerifyMaxBytes,
      maxOpenUploadsPerKey: config.maxOpenUploadsPerKey,
      maxOpenUploadsPerToken: config.maxOpenUploadsPerToken,
      maxUploadStreamsPerAccount: config.maxUploadStreamsPerAccount,
      maxUploadStreamsPerToken: config.maxUploadStreamsPerToken,
      directUploadLeaseMs: config.directUploadLeaseSeconds * 1000,
    },
    resumable: {
      storage: tus.storage,
      settings: {
        expiresInSeconds: config.resumableExpiresSeconds,
        maxAppendSize: config.resumableMaxAppendSize,
      },
    },
    multipart: {
      expiresInSeconds: config.resumableExpiresSeconds,
      partUrlExpiresInSeconds: config.uploadExpiresSeconds,
    },
    webhooks: {
      sender: new HttpWebhookSender(config.webhooks.allowPrivate),
      // The body is the API's own JSON of the event: the HTTP layer renders it.
      renderEvent: (event) => webhookPayload(event, config.publicUrl),
      settings: {
        timeoutMs: config.webhooks.timeoutMs,
        concurrency: config.webhooks.concurrency,
        allowPrivate: config.webhooks.allowPrivate,
        retentionMs: config.eventsRetentionDays * 24 * 3600_000,
      },
    },
  });
  await core.keys.ensureAccount(DEFAULT_ACCOUNT_ID, 'Default');
  return {
    core,
    store,
    blobs,
    tus: {
      datastore: tus.datastore,
      bodies: tus.bodies,
      locker: new StoreLocker(store),
      stagingDir: join(config.dataDir, 'tus', 'staging'),
    },
    missingTools: missing,
    migrated,
    unsignedCopy: opened.unsignedCopy,
    publicAcl: opened.publicAcl,
    abandonStorageCalls: () => abandon.abort(),
    async close() {
      await blobs.close();
      await tus.close?.();
      await scratch.close();
      await store.close();
    },
  };
}

/**
 * Credentials the S3 store refuses outright would let the node start and answer 500 to every
 * upload: the start fails instead, naming the variable to check.
 */
function credentialsProblem({ code, credentials }: S3CredentialsRefused): string {
  const prefix = credentials === 'upload' ? 'WHARF_S3_UPLOAD_' : 'WHARF_S3_';
  if (code === 'InvalidAccessKeyId') {
    return `${prefix}ACCESS_KEY_ID: the S3 store knows no such access key (${code}); check it, and that WHARF_S3_ENDPOINT is the store it belongs to.`;
  }
  return `${prefix}SECRET_ACCESS_KEY: the S3 store refuses what it signs (${code}); check that it is the secret of ${prefix}ACCESS_KEY_ID.`;
}

/**
 * The data directory must be a directory this process can write to: made when missing, then
 * written to (a check of permissions would pass for root on a read-only mount or under a file).
 * Otherwise a ConfigError naming WHARF_DATA_DIR, rather than whichever write fails first.
 * Made, it is closed to other users (0750, less what the umask takes away): it holds the
 * database, and with it the server secret. One that exists keeps its mode.
 */
async function checkDataDir(dataDir: string): Promise<void> {
  const probe = join(dataDir, `.wharf-write-check-${process.pid}`);
  try {
    // A level at a time, so that a parent it cannot write into says why (see makeDirectory).
    await makeDirectory(dataDir, DATA_DIR_MODE);
    await writeFile(probe, '');
    await rm(probe, { force: true });
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError(
      `WHARF_DATA_DIR ${dataDir} is not a writable directory (${describeFsError(reason)}).`,
    );
  }
}

/** Wharf's user reads and writes; its group may read, as it may the stored objects (0640). */
const DATA_DIR_MODE = 0o750;

function describeFsError(code: string): string {
  const known: Record<string, string> = {
    ENOTDIR: 'a part of the path is a file',
    EEXIST: 'a file of that name exists',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on the device',
  };
  return known[code] ? `${code}: ${known[code]}` : code;
}

/**
 * Local storage comes with Wharf's own S3-style endpoint for presigned uploads; with S3
 * storage, presigned URLs are the bucket's own and Wharf serves no endpoint. Each kind's
 * modules are loaded only when configured: the AWS SDK and tus.io's S3 store take about
 * 0.2 s to load, which every embedded server start and every CLI command would pay for nothing.
 */
async function openBlobs(
  config: Config,
  secret: string,
  /** A server owns the local store and settles what a crash left; a CLI command only uses it. */
  owner: boolean,
  log?: S3Options['log'],
): Promise<{
  blobs: BlobStore;
  endpoint: PresignVerifier | undefined;
  tus: TusBackend;
  /** Aborted to end the object store's calls still waiting (see abandonStorageCalls). */
  abandon: AbortController;
  /** S3 only, for a server: what S3BlobStore.checkUnsignedCopy found. */
  unsignedCopy?: 'copied' | 'refused' | 'unknown' | undefined;
  /** S3 only, for a server: what S3BlobStore.checkPublicAcl found (and did). */
  publicAcl?: 'private' | 'blocked' | 'public' | 'unknown' | undefined;
}> {
  const storage = config.storage.kind === 's3' ? { ...config.storage, log } : config.storage;
  // Local disk does not hang as a remote store does: nothing of it listens to this.
  const abandon = new AbortController();
  if (storage.kind === 's3') {
    const [{ S3BlobStore, S3CredentialsRefused }, { s3TusBackend }] = await Promise.all([
      import('./blobs/s3-store.js'),
      import('./blobs/tus-s3.js'),
    ]);
    const blobs = new S3BlobStore({
      ...storage,
      directDownloads: storage.downloads === 'redirect',
      abandon: abandon.signal,
    });
    try {
      await blobs.ensureBucket();
    } catch (err) {
      if (err instanceof S3CredentialsRefused) throw new ConfigError(credentialsProblem(err));
      throw err;
    }
    // A server (not every CLI command) checks what a client can do with the URLs it signs.
    let unsignedCopy: 'copied' | 'refused' | 'unknown' | undefined;
    let publicAcl: 'private' | 'blocked' | 'public' | 'unknown' | undefined;
    if (owner) {
      try {
        unsignedCopy = await blobs.checkUnsignedCopy();
        publicAcl = await blobs.checkPublicAcl();
      } catch (err) {
        if (err instanceof S3CredentialsRefused) throw new ConfigError(credentialsProblem(err));
        throw err;
      }
    }
    const partsDir = await processTempDir(join(config.dataDir, 'tus', 's3-parts'));
    return {
      blobs,
      endpoint: undefined,
      tus: s3TusBackend(storage, config.resumableExpiresSeconds, partsDir, abandon.signal),
      abandon,
      unsignedCopy,
      publicAcl,
    };
  }
  const endpoint = new LocalEndpoint({
    publicUrl: config.publicUrl,
    bucket: 'wharf',
    region: 'us-east-1',
    accessKeyId: 'wharf-local',
    secretAccessKey: deriveKey(secret, 'local-s3').toString('base64url'),
  });
  const blobs = new FsBlobStore(join(config.dataDir, 'blobs'), endpoint);
  await blobs.init({ recover: owner });
  // Beside the blob store, not in it: partial tus files never show as objects; same filesystem,
  // so a finished one moves in by rename.
  const { localTusBackend } = await import('./blobs/tus-local.js');
  const tus = localTusBackend(join(config.dataDir, 'tus', 'uploads'), blobs, config.resumableExpiresSeconds);
  return { blobs, endpoint, tus, abandon };
}
