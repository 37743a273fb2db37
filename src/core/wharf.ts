import { createHmac } from 'node:crypto';
import { ArrivalService } from './arrivals.js';
import { DELETE_OBJECT_JOB, PROCESS_ASSET_JOB, VERIFY_ASSET_JOB } from './asset-recording.js';
import { AssetService, FREE_ASSET_JOB } from './assets.js';
import { UploadCancellation } from './cancellation.js';
import { type Clock, systemClock } from './clock.js';
import { StorageEndpointService } from './endpoint.js';
import { EventService } from './events.js';
import { FileService } from './files.js';
import { HealthService } from './health.js';
import { IdempotencyService } from './idempotency.js';
import type { IdSource } from './ids.js';
import {
  DERIVE_IMAGE_JOB,
  type ImageRenderer,
  ImageService,
  type ImageSettings,
  PresetService,
} from './images.js';
import { IntegrityService } from './integrity.js';
import { JobRunner } from './jobs.js';
import { DEFAULT_ACCOUNT_ID, KeyService } from './keys.js';
import { ListingService } from './listings.js';
import { MultipartService, type MultipartSettings } from './multipart.js';
import { PlaceholderService } from './placeholders.js';
import type { BlobStore, ChecksumAlgorithms, PresignVerifier, Store } from './ports.js';
import { LocationPrivacy, type LocationStripper } from './privacy.js';
import { type Analyzer, type MediaProber, processAssetJob, TRANSFORMABLE_MIMES } from './processing.js';
import { ResumableService, type ResumableSettings, type ResumableStorage } from './resumable.js';
import { RufhService, type RufhSettings } from './resumable-http.js';
import { RECONCILE_UPLOAD_JOB, S3SigningService } from './s3-signing.js';
import { SessionService, type SessionSettings } from './sessions.js';
import { SignedIds } from './signed-ids.js';
import { NO_TELEMETRY, type Telemetry } from './telemetry.js';
import { TokenService } from './tokens.js';
import { FREE_UPLOAD_JOB, type UploadSettings } from './upload-types.js';
import { UploadService } from './uploads.js';
import { type RenderEvent, WebhookDeliverer } from './webhook-delivery.js';
import { WebhookService, type WebhookSettings } from './webhook-service.js';
import { DELIVER_WEBHOOK_JOB, DELIVERY_RETRY_POLICY, type WebhookSender } from './webhooks.js';

export interface CoreDeps {
  store: Store;
  blobs: BlobStore;
  clock: Clock;
  ids: IdSource;
  /** The server secret every signing key is derived from. */
  secret: string;
  /**
   * Server secrets used before `secret` that are still known (WHARF_SECRET_PREVIOUS, the
   * generated one WHARF_SECRET replaced): what they signed that has no lifetime (signed ids)
   * still verifies.
   */
  previousSecrets?: readonly string[] | undefined;
  /**
   * Every server secret used before `secret` that is still known, short ones included: webhook
   * signing secrets sealed under one of them still open, to sign and to be sealed again
   * (WebhookService.resealSecrets).
   */
  previousSealSecrets?: readonly string[] | undefined;
  uploads: UploadSettings;
  multipart: MultipartSettings;
  /** Where tus uploads collect their bytes until the last one arrives. */
  resumable: { storage: ResumableStorage; settings: ResumableSettings & RufhSettings };
  /** Present when Wharf itself is the object store (embedded deployment). */
  endpoint?: PresignVerifier | undefined;
  /** The x-amz-checksum-* algorithms that endpoint verifies besides SHA-256; it refuses the others. */
  endpointChecksums?: ChecksumAlgorithms | undefined;
  analyzer: Analyzer;
  /** Web console sessions: how long they last. */
  sessions: SessionSettings;
  webhooks: {
    /** Sends the signed requests (and refuses private targets unless allowed). */
    sender: WebhookSender;
    /** An event as a webhook body, in the HTTP API's JSON (from the HTTP layer). */
    renderEvent: RenderEvent;
    settings: WebhookSettings;
    /** The real time for `webhook-timestamp` (see WebhookDeliverer); the system clock by default. */
    wallClock?: Clock | undefined;
  };
  /** Where outcomes are reported (metrics, logs); nowhere when absent. */
  telemetry?: Telemetry | undefined;
  /** How many jobs this node runs at once (WHARF_JOB_CONCURRENCY); 1 when absent. */
  jobs?: { concurrency: number } | undefined;
  /** Image transforms (sharp) and their limits. */
  images: { renderer: ImageRenderer; settings: ImageSettings };
  /** Video, audio and PDF facts and previews, when the server has the tools. */
  media?: MediaProber | undefined;
  /** Removes GPS positions from new images of accounts that ask for it. */
  locationStripper: LocationStripper;
}

/** The core: every protocol Wharf speaks ends up calling these services. */
export interface Core {
  keys: KeyService;
  /** Upload tokens for browsers and phones. */
  tokens: TokenService;
  uploads: UploadService;
  /** Uploads without a confirm step whose bytes arrived, found when their content is declared again. */
  arrivals: ArrivalService;
  multipart: MultipartService;
  /** tus uploads (and what every resumable protocol shares). */
  resumable: ResumableService;
  /** Resumable Uploads for HTTP (the IETF draft iPhones speak). */
  rufh: RufhService;
  /** Ends a pending upload of any kind at its client's request, giving back what it held. */
  cancellation: UploadCancellation;
  /** Presigns S3 requests for browser clients that speak S3 themselves (Uppy 6). */
  s3Signing: S3SigningService;
  assets: AssetService;
  endpoint: StorageEndpointService | undefined;
  files: FileService;
  jobs: JobRunner;
  /** The events outbox, for apps that poll. */
  events: EventService;
  /** Webhook endpoints, their delivery log, replays and retention. */
  webhooks: WebhookService;
  /** Derivatives: resized, re-encoded renderings served from storage. */
  images: ImageService;
  /** Image placeholders: made by processing; `queueMissing` backfills older assets. */
  placeholders: PlaceholderService;
  /** Reads stored assets back and checks them against their records (`wharf assets verify`). */
  integrity: IntegrityService;
  presets: PresetService;
  /** Web console sessions (a key exchanged for a cookie). */
  sessions: SessionService;
  /** Answers of creating requests kept under their clients' Idempotency-Key. */
  idempotency: IdempotencyService;
  /** Read-only listings: uploads, account usage, an asset's named files. */
  listings: ListingService;
  /** Where bytes live: the backend's name (`local`, `s3`) and its bucket. */
  storage: { kind: string; bucket: string };
  signedIds: SignedIds;
  clock: Clock;
  /**
   * Reports outcomes to metrics and logs. Services outside the core's own that learn an
   * outcome (webhook deliveries: `telemetry.webhookDelivery(outcome)`) report it here.
   */
  telemetry: Telemetry;
  /** Readiness: whether the database and storage answer (GET /readyz). */
  health: HealthService;
}

/** Distinct keys per purpose, so a signature of one kind can never pass as another. */
export function deriveKey(secret: string, purpose: string): Buffer {
  return createHmac('sha256', secret).update(`wharf:${purpose}`).digest();
}

/** The key webhook signing secrets are sealed under (see resealWebhookSecrets). */
export function webhookSealKey(secret: string): Buffer {
  return deriveKey(secret, 'webhook-secrets');
}

export function createCore(deps: CoreDeps): Core {
  const telemetry = deps.telemetry ?? NO_TELEMETRY;
  const uploads = new UploadService(deps.store, deps.blobs, deps.clock, deps.ids, deps.uploads, telemetry);
  const privacy = new LocationPrivacy(deps.store, deps.blobs, deps.locationStripper);
  uploads.recorder.setReplacementStep((...args) => privacy.replacementFor(...args));
  const tokens = new TokenService(
    deps.store,
    deps.clock,
    deps.ids,
    { maxOpenUploadsPerToken: deps.uploads.maxOpenUploadsPerToken },
    uploads,
  );
  const resumable = new ResumableService(
    deps.store,
    uploads,
    deps.resumable.storage,
    deps.clock,
    deps.resumable.settings,
  );
  const multipart = new MultipartService(deps.store, deps.blobs, uploads, deps.clock, deps.multipart);
  const assets = new AssetService(
    deps.store,
    deps.blobs,
    deps.clock,
    deps.ids,
    deriveKey(deps.secret, 'download'),
    telemetry,
  );
  const images = new ImageService(
    deps.store,
    deps.blobs,
    assets,
    deps.images.renderer,
    deps.clock,
    deps.ids,
    deriveKey(deps.secret, 'transforms'),
    deps.images.settings,
  );
  // An asset's derivatives go with it.
  assets.onDelete((asset) => images.purge(asset));
  const placeholders = new PlaceholderService(
    deps.store,
    deps.blobs,
    deps.images.renderer,
    images.slots,
    deps.images.settings,
    deps.clock,
    deps.ids,
  );
  const jobs = new JobRunner(
    deps.store,
    deps.clock,
    deps.ids,
    {
      // Renewed while a job runs (JobRunner.keepLease): how long a job whose node died waits.
      // Longer than any webhook attempt may take (WHARF_WEBHOOK_TIMEOUT_MS: at most 60 s).
      leaseMs: 90_000,
      maxAttempts: 5,
      concurrency: deps.jobs?.concurrency,
      // Deliveries are the only jobs with lanes (one per endpoint).
      laneLimit: deps.webhooks.settings.concurrency,
    },
    telemetry,
  );
  jobs.register(
    PROCESS_ASSET_JOB,
    processAssetJob(deps.store, deps.blobs, deps.analyzer, deps.clock, {
      media: deps.media,
      previews: {
        store: (asset, image, format) => images.storePreview(asset, image, format),
        exists: (assetId) => images.hasPreview(assetId),
      },
      placeholder: (asset, analysis) => placeholders.make(asset, analysis),
      // Eager presets are rendered as soon as there is something to render them from.
      afterProcessed: async (asset, analysis) => {
        if (analysis.preview || TRANSFORMABLE_MIMES.has(analysis.mime ?? '')) await images.queueEager(asset);
      },
    }),
  );
  jobs.register(DERIVE_IMAGE_JOB, (job) => images.deriveJob(job));
  jobs.register(DELETE_OBJECT_JOB, (job) => uploads.recorder.deleteIfUnused(String(job.payload.key)));
  jobs.register(FREE_UPLOAD_JOB, (job) => uploads.freeEnded(String(job.payload.uploadId)));
  const s3Signing = new S3SigningService(
    deps.store,
    deps.blobs,
    uploads,
    multipart,
    deps.clock,
    deps.ids,
    deps.uploads,
  );
  jobs.register(RECONCILE_UPLOAD_JOB, (job) =>
    s3Signing.reconcileJob(String(job.payload.uploadId), Number(job.payload.attempt ?? 0)),
  );
  jobs.register(VERIFY_ASSET_JOB, async (job) => {
    const md5 = job.payload.md5;
    const asset = await deps.store.getAssetById(String(job.payload.assetId));
    const outcome = await uploads.recorder.verifyAsset(
      String(job.payload.assetId),
      typeof md5 === 'string' ? md5 : null,
    );
    // A rejected asset goes like a deleted one, with whatever was kept for it.
    if (outcome === 'rejected' && asset) await assets.free(asset);
  });
  jobs.register(FREE_ASSET_JOB, (job) =>
    assets.free({
      id: String(job.payload.id),
      accountId: String(job.payload.accountId),
      storageKey: String(job.payload.storageKey),
    }),
  );
  const webhookKey = webhookSealKey(deps.secret);
  const previousWebhookKeys = (deps.previousSealSecrets ?? []).map(webhookSealKey);
  if (deps.webhooks.settings.timeoutMs >= jobs.leaseMs) {
    // Another node would take the delivery over while this one still waits for the answer.
    throw new Error('The webhook timeout must be shorter than a job lease.');
  }
  const deliverer = new WebhookDeliverer({
    store: deps.store,
    clock: deps.clock,
    wallClock: deps.webhooks.wallClock ?? systemClock,
    ids: deps.ids,
    sealKeys: [webhookKey, ...previousWebhookKeys],
    sender: deps.webhooks.sender,
    render: deps.webhooks.renderEvent,
    timeoutMs: deps.webhooks.settings.timeoutMs,
    telemetry,
  });
  // A delivery waits on someone else's endpoint: deliveries leave processing a worker.
  jobs.register(DELIVER_WEBHOOK_JOB, (job) => deliverer.run(job), DELIVERY_RETRY_POLICY, {
    spareOneWorker: true,
  });
  const keys = new KeyService(deps.store, deps.clock, deps.ids, tokens);
  const rufh = new RufhService(
    deps.store,
    resumable,
    deps.resumable.storage,
    deps.clock,
    deps.resumable.settings,
  );
  return {
    keys,
    tokens,
    uploads,
    arrivals: new ArrivalService(deps.store, uploads),
    multipart,
    resumable,
    rufh,
    cancellation: new UploadCancellation(deps.store, deps.clock, deps.ids, uploads, multipart, rufh),
    s3Signing,
    assets,
    endpoint:
      deps.endpoint &&
      new StorageEndpointService(deps.endpoint, uploads, multipart, deps.clock, deps.endpointChecksums),
    files: new FileService(deps.store, uploads, assets),
    storage: { kind: deps.blobs.name, bucket: deps.blobs.bucket },
    jobs,
    events: new EventService(deps.store),
    webhooks: new WebhookService(
      deps.store,
      deps.clock,
      deps.ids,
      webhookKey,
      previousWebhookKeys,
      deps.webhooks.settings,
    ),
    images,
    placeholders,
    integrity: new IntegrityService(deps.store, deps.blobs),
    presets: new PresetService(deps.store, deps.clock),
    signedIds: new SignedIds(
      deriveKey(deps.secret, 'signed-id'),
      (deps.previousSecrets ?? []).map((s) => deriveKey(s, 'signed-id')),
    ),
    sessions: new SessionService(
      deps.store,
      deps.clock,
      deps.ids,
      keys,
      deriveKey(deps.secret, 'console-csrf'),
      deps.sessions,
    ),
    idempotency: new IdempotencyService(deps.store, deps.clock, undefined, telemetry),
    listings: new ListingService(deps.store, assets, deps.clock, deps.uploads.completionGraceMs),
    clock: deps.clock,
    telemetry,
    health: new HealthService(deps.store, deps.blobs, deps.clock, deps.ids),
  };
}

export { DEFAULT_ACCOUNT_ID };
