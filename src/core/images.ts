/**
 * Derivatives: resized and re-encoded renderings of images (and of the poster frame or first
 * page of videos and PDFs), made on first request or by a job, stored once through the
 * BlobStore, recorded in the `derivatives` table and served like originals.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { pipeline, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { type AssetService, signedExtras } from './assets.js';
import { signedUrlExpires, signerOf, type UrlExpiry } from './authorization.js';
import type { Clock } from './clock.js';
import { WharfError } from './errors.js';
import { DigestStream } from './hashing.js';
import type { IdSource } from './ids.js';
import { PermanentJobError } from './jobs.js';
import type { Asset, Derivative, ImagePreset, Job, Placeholder, Principal } from './model.js';
import { type BlobStore, type ByteRange, ObjectMissing, type Store } from './ports.js';
import { RecentMap } from './recent.js';
import { Slots } from './slots.js';
import {
  type CanonicalTransform,
  CONTENT_TYPES,
  canonicalize,
  canonicalQuery,
  EXTENSIONS,
  negotiateFormat,
  type OutputFormat,
  type OutputSpec,
  outputSpec,
  PRESET_NAME,
  specKey,
  TRANSFORMABLE_SOURCES,
  type TransformInput,
  withDpr,
} from './transforms.js';

/** The job that renders an eager preset's derivatives of a new asset. */
export const DERIVE_IMAGE_JOB = 'derive-image';
/** The paramsKey of a video's poster frame or a PDF's first page. */
export const PREVIEW_KEY = 'preview';
const MAX_SIGNED_SECONDS = 365 * 24 * 3600;
/** How much of an original is read to sniff its type when processing has not run yet. */
const SNIFF_BYTES = 4100;
/**
 * The part of an asset's renderings (WHARF_IMAGE_MAX_VARIANTS) that requests without a key,
 * a public asset's visitors, may make: past it, only a key, a signed URL or an eager preset
 * makes new ones. Without it, anyone could ask a public asset for as many sizes as the limit
 * allows and leave its owner none (renderings cannot be deleted, only with their asset).
 */
export const PUBLIC_VARIANTS_SHARE = 0.5;

/** How many renderings of an asset keyless requests may make: the share of the limit, rounded down. */
export function publicVariants(maxVariants: number): number {
  return Math.floor(maxVariants * PUBLIC_VARIANTS_SHARE);
}

export interface ImageSettings {
  /** Largest width × height a transform decodes (checked from the header, before decoding). */
  maxPixels: number;
  /** Largest original (bytes) a transform reads. */
  maxInputBytes: number;
  /** Transforms running at once on this node, and how many more may wait for a slot. */
  concurrency: number;
  queue: number;
  timeoutSeconds: number;
  /**
   * Stored renderings per asset; requests for more new ones are refused (keyless ones past
   * publicVariants of it).
   */
  maxVariants: number;
}

/** Who asks for a rendering, as far as the variants limit is concerned. */
export interface RenderOptions {
  /**
   * No key, no session, no signed URL: a visitor of a public asset, who may make new
   * renderings only while the asset holds fewer than publicVariants(maxVariants).
   */
  keyless?: boolean;
  /**
   * Aborted when the client leaves. While it waits for a transform slot, the request gives
   * up its queue place, unless another request still waits for the same rendering; a
   * rendering already being made is finished and stored (the next request for it is served).
   */
  signal?: AbortSignal | undefined;
}

/** A new rendering being made on this node, shared by the requests that asked for it. */
interface Flight {
  work: Promise<Derivative>;
  /** Its key in `inflight`. */
  key: string;
  /** Requests (and jobs) waiting for it that have not left. */
  waiting: number;
  /** Aborted when the last of them leaves: its wait for a slot ends. */
  abandon: AbortController;
}

export interface RenderRequest {
  spec: OutputSpec;
  maxPixels: number;
  timeoutSeconds: number;
}

/** The bytes a transform starts from. */
export interface RenderSource {
  /**
   * The file holding them on this machine, when storage keeps one (BlobStore.localFile): read
   * in place, never written to. Absent for remote storage.
   */
  file?: string | undefined;
  /** Streams them from storage (when there is no file, or it cannot be used). */
  open(): Promise<Readable>;
}

/** Where pixels are decoded and encoded (sharp, in src/processing/sharp-renderer.ts). */
export interface ImageRenderer {
  /**
   * Decodes `source`, applies `request.spec` and hands the encoded result to `sink` as a
   * stream; resolves when the sink has consumed it. Refuses with UNSUPPORTED_IMAGE,
   * IMAGE_UNDECODABLE, IMAGE_TOO_LARGE or TRANSFORM_TIMEOUT, never anything else for bad input.
   * TRANSFORM_TIMEOUT comes at the deadline even when the work cannot be stopped there (AVIF's
   * encoder): then `outlived` is called first with a promise that settles once that work has
   * ended and its temp files are gone. Its result is never handed to `sink`.
   */
  render(
    source: RenderSource,
    request: RenderRequest,
    sink: (output: Readable) => Promise<void>,
    outlived?: (finishing: Promise<void>) => void,
  ): Promise<void>;
  /** The type of a file from its first bytes (file-type's extension and MIME type). */
  sniff(head: Buffer): Promise<{ ext: string; mime: string } | undefined>;
  /**
   * Decodes `source` (as `render` does, with its limits) into its placeholder. Refuses bad
   * input with the same codes as `render`.
   */
  placeholder(source: RenderSource, request: Omit<RenderRequest, 'spec'>): Promise<Placeholder>;
}

/**
 * Makes a rendering's bytes and hands them to `sink`. Work that goes on after it gave up (see
 * ImageRenderer.render) is passed to `outlived`, to hold its transform slot until it ends.
 */
type MakeRendering = (
  sink: (output: Readable) => Promise<void>,
  outlived: (finishing: Promise<void>) => void,
) => Promise<void>;

/** What a request for a rendering names: parameters, or a preset (optionally with a dpr). */
export type TransformRequest =
  | { kind: 'params'; input: TransformInput }
  | { kind: 'preset'; name: string; dpr?: number | undefined };

/** Refusals that are the image's own: an eager rendering of it is given up quietly. */
const UNRENDERABLE: ReadonlySet<string> = new Set([
  'IMAGE_UNDECODABLE',
  'IMAGE_TOO_LARGE',
  'TOO_MANY_VARIANTS',
  'PREVIEW_UNAVAILABLE',
  'UNSUPPORTED_IMAGE',
]);
/** Refusals that pass: the job is tried again later. */
const TRANSIENT: ReadonlySet<string> = new Set([
  'TRANSFORMS_BUSY',
  'TRANSFORM_TIMEOUT',
  'PREVIEW_PENDING',
  'ASSET_VERIFYING',
]);

/** Proof carried by a signed transform URL. */
export interface TransformGrant {
  assetId: string;
  request: TransformRequest;
  /** Unix seconds. */
  expires: number;
  /** The upload through which the signer saw the asset (see AssetService.view). */
  view?: string | undefined;
  /** The key (and token) that signed it, which must still be active (see signerOf). */
  signer?: string | undefined;
  signature: string;
}

/** A derivative ready to serve, and whether its format depended on Accept. */
export interface Rendered {
  derivative: Derivative;
  /** `format=auto`: the response varies with Accept. */
  negotiated: boolean;
}

interface Source {
  key: string;
  /** file-type's extension of the source (`jpg`, `png`…): decides `auto`'s fallback family. */
  format: string;
}

export class ImageService {
  /** Transform slots of this node (tests hold them to see a full queue refuse). */
  readonly slots: Slots;
  private readonly inflight = new Map<string, Flight>();
  /** Renderings of each asset being made in this process, counted against the variants limit. */
  private readonly making = new Map<string, number>();
  /**
   * Derivatives this node has found or made, by asset and parameters. A recorded row never
   * changes and goes only with its asset, which every request looks up (and finds live)
   * before asking for a rendering, so a remembered row is never served for a deleted asset:
   * the cached path then costs what a download costs, without a second query.
   */
  private readonly known = new RecentMap<string, Derivative>(10_000);
  /** Renders this node has run (tests check that two nodes render a new derivative once). */
  rendered = 0;

  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly assets: AssetService,
    private readonly renderer: ImageRenderer,
    private readonly clock: Clock,
    private readonly ids: IdSource,
    private readonly signingKey: Buffer,
    readonly settings: ImageSettings,
  ) {
    this.slots = new Slots(settings.concurrency, settings.queue);
  }

  /** The canonical transform a request names, presets resolved in the asset's account. */
  async resolve(accountId: string, request: TransformRequest): Promise<CanonicalTransform> {
    if (request.kind === 'params') return canonicalize(request.input);
    const preset = await this.store.getPreset(accountId, request.name);
    if (!preset) throw new WharfError('NOT_FOUND', `No image preset "${request.name}".`);
    return withDpr(preset.params, request.dpr);
  }

  /** The stored rendering of `asset` for this request, made now if it is new. */
  async render(
    asset: Asset,
    request: TransformRequest,
    accept: string | undefined,
    options: RenderOptions = {},
  ): Promise<Rendered> {
    const transform = await this.resolve(asset.accountId, request);
    try {
      const source = await this.sourceOf(asset);
      const format = negotiateFormat(transform.format, accept, source.format);
      const spec = outputSpec(transform, format);
      const negotiated = transform.format === 'auto';
      // A stored rendering is served whatever the limits on making one now (docs/images.md:
      // lowering WHARF_IMAGE_MAX_INPUT or _MAX_PIXELS refused every rendering a page already used).
      const stored = await this.stored(asset, specKey(spec));
      if (stored) return { derivative: stored, negotiated };
      this.assertWithinLimits(asset, source);
      const derivative = await this.ensure(
        asset,
        specKey(spec),
        format,
        (sink, outlived) => this.renderFrom(source, spec, sink, outlived),
        { keyless: options.keyless ?? false, signal: options.signal },
      );
      return { derivative, negotiated };
    } catch (err) {
      if (!(err instanceof ObjectMissing)) throw err;
      // Deleted while it was being rendered (its bytes go right after its record): 404, as
      // the next request would answer. Still recorded, its bytes were lost behind Wharf's back.
      throw await this.assets.missingBytes(asset.id);
    }
  }

  /**
   * The rendering's bytes. When storage no longer holds them (removed behind Wharf's back),
   * the rendering is forgotten, with any identical one sharing its object, and BYTES_MISSING
   * thrown: rendering it again makes new bytes.
   */
  async read(derivative: Derivative, range?: ByteRange): Promise<Readable> {
    try {
      return await this.blobs.read(derivative.storageKey, range);
    } catch (err) {
      if (!(err instanceof ObjectMissing)) throw err;
      // The asset deleted (on any node) since the rendering was looked up: its renderings went
      // with it, and the answer is the next request's, 404.
      if (!(await this.store.getAssetById(derivative.assetId))) {
        throw new WharfError('NOT_FOUND', 'No such asset.');
      }
      this.known.deleteWhere((memo) => memo.startsWith(`${derivative.assetId}:`));
      await this.store.deleteDerivativesStoredAt(derivative.assetId, derivative.storageKey);
      throw new WharfError(
        'BYTES_MISSING',
        'The stored bytes of this rendering were missing from storage; it is made again on the next request.',
        { asset_id: derivative.assetId },
      );
    }
  }

  /** What a transform starts from: the original image, or the preview of a video or PDF. */
  private async sourceOf(asset: Asset): Promise<Source> {
    this.assets.assertReadable(asset);
    let mime = asset.analysis.mime;
    let ext = asset.analysis.format;
    if (mime === undefined && asset.processing === 'pending' && asset.size > 0) {
      // Processing has not run yet: sniff the type the same way it will.
      const head = await this.readHead(asset.storageKey, Math.min(asset.size, SNIFF_BYTES));
      const sniffed = await this.renderer.sniff(head);
      mime = sniffed?.mime;
      ext = sniffed?.ext;
    }
    if (mime?.startsWith('video/') || mime === 'application/pdf') {
      const preview = await this.store.getDerivative(asset.id, PREVIEW_KEY);
      if (preview)
        return { key: preview.storageKey, format: preview.contentType === 'image/png' ? 'png' : 'jpg' };
      if (asset.processing === 'pending') {
        throw new WharfError(
          'PREVIEW_PENDING',
          'The preview of this file is still being made; try again shortly.',
          {
            retry_after: 5,
          },
        );
      }
      throw new WharfError('PREVIEW_UNAVAILABLE', 'There is no preview of this file.', {
        ...(asset.analysis.missingTools && { missing_tools: asset.analysis.missingTools }),
        ...(asset.analysis.mediaError && { reason: asset.analysis.mediaError }),
      });
    }
    if (ext === undefined || !(TRANSFORMABLE_SOURCES as readonly string[]).includes(ext)) {
      const heic = ext === 'heic' || mime === 'image/heic' || mime === 'image/heif';
      throw new WharfError(
        'UNSUPPORTED_IMAGE',
        heic
          ? 'HEIC images cannot be decoded here (no HEVC decoder): convert to JPEG, PNG, WebP or AVIF.'
          : `Only JPEG, PNG, WebP, GIF and AVIF images can be transformed${mime ? `, not ${mime}` : ''}.`,
        { ...(mime && { detected: mime }) },
      );
    }
    return { key: asset.storageKey, format: ext };
  }

  /**
   * What limits a new rendering made from the original: its size in bytes and in pixels. A video's
   * or PDF's renderings are made from its preview, which processing made within them.
   */
  private assertWithinLimits(asset: Asset, source: Source): void {
    if (source.key !== asset.storageKey) return;
    if (asset.size > this.settings.maxInputBytes) {
      throw new WharfError(
        'IMAGE_TOO_LARGE',
        `Images over ${this.settings.maxInputBytes} bytes are not transformed.`,
        {
          limit_bytes: this.settings.maxInputBytes,
        },
      );
    }
    const { width, height } = asset.analysis;
    if (width !== undefined && height !== undefined && width * height > this.settings.maxPixels) {
      throw new WharfError(
        'IMAGE_TOO_LARGE',
        `Images over ${this.settings.maxPixels} pixels are not transformed.`,
        {
          limit_pixels: this.settings.maxPixels,
        },
      );
    }
  }

  private async renderFrom(
    source: Source,
    spec: OutputSpec,
    sink: (output: Readable) => Promise<void>,
    outlived: (finishing: Promise<void>) => void,
  ) {
    await this.renderer.render(
      { file: this.blobs.localFile?.(source.key), open: () => this.blobs.read(source.key) },
      { spec, maxPixels: this.settings.maxPixels, timeoutSeconds: this.settings.timeoutSeconds },
      sink,
      outlived,
    );
  }

  private async readHead(key: string, bytes: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.blobs.read(key, { start: 0, end: bytes - 1 })) {
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  }

  /**
   * The derivative `paramsKey` of `asset`: the stored one, or made by `make` exactly once
   * across nodes. Requests on this node for the same new derivative share one rendering; on
   * other nodes they find the lease (the `locks` table) taken and wait for the row. A
   * holder that crashed blocks others for one lease at most.
   */
  private async ensure(
    asset: Asset,
    paramsKey: string,
    format: OutputFormat,
    make: MakeRendering,
    options: { background?: boolean; keyless?: boolean; signal?: AbortSignal | undefined } = {},
  ): Promise<Derivative> {
    const existing = await this.stored(asset, paramsKey);
    if (existing) return existing;
    const memo = `${asset.id}:${paramsKey}`;
    const name = `derive:${asset.id}:${paramsKey}`;
    const keyless = options.keyless ?? false;
    // A keyless request joins a rendering a keyed one is making, never the reverse: the
    // keyless one may be refused (the public share used up), which is no answer to a key.
    // Both render under the same lock, so the second finds the first's rendering made.
    const key = keyless ? `public:${name}` : name;
    let flight = this.inflight.get(name) ?? this.inflight.get(key);
    if (!flight) {
      const abandon = new AbortController();
      const work = this.claimAndMake(asset, paramsKey, format, name, make, {
        background: options.background ?? false,
        keyless,
        signal: abandon.signal,
      });
      const started: Flight = { work, key, waiting: 0, abandon };
      flight = started;
      this.inflight.set(key, started);
      void work.then(
        (made) => this.known.set(memo, made),
        () => {},
      );
      const forget = () => {
        if (this.inflight.get(key) === started) this.inflight.delete(key);
      };
      void work.then(forget, forget);
    }
    return this.join(flight, options.signal);
  }

  /**
   * Waits for a flight's rendering. One request leaving does not stop it while another still
   * waits (or a job, which never leaves); the last one leaving ends its wait for a slot, and
   * takes it out of `inflight` at once, so a request arriving next starts a rendering of its
   * own rather than sharing one that is being given up.
   */
  private async join(flight: Flight, signal: AbortSignal | undefined): Promise<Derivative> {
    flight.waiting += 1;
    const leave = () => {
      flight.waiting -= 1;
      if (flight.waiting > 0) return;
      if (this.inflight.get(flight.key) === flight) this.inflight.delete(flight.key);
      flight.abandon.abort(signal?.reason);
    };
    if (signal?.aborted) leave();
    else signal?.addEventListener('abort', leave, { once: true });
    try {
      return await flight.work;
    } finally {
      signal?.removeEventListener('abort', leave);
    }
  }

  /** The stored rendering of `asset` by these parameters, if there is one. */
  private async stored(asset: Asset, paramsKey: string): Promise<Derivative | undefined> {
    const memo = `${asset.id}:${paramsKey}`;
    const known = this.known.get(memo);
    if (known) return known;
    const existing = await this.store.getDerivative(asset.id, paramsKey);
    if (existing) this.known.set(memo, existing);
    return existing;
  }

  private async claimAndMake(
    asset: Asset,
    paramsKey: string,
    format: OutputFormat,
    name: string,
    make: MakeRendering,
    { background, keyless, signal }: { background: boolean; keyless: boolean; signal: AbortSignal },
  ): Promise<Derivative> {
    // The preview is what renderings of a video or PDF are made from, never one of them.
    if (paramsKey === PREVIEW_KEY)
      return this.claimed(asset, paramsKey, format, name, make, background, signal);
    // Eager presets' renderings count as any other (and are refused past the limit, which
    // their job takes as done): exempt, forty eager presets stored 120 renderings of every
    // new image for a limit of 100. Renderings of the asset being made here count too:
    // checked alone, the stored count let thirty-five new sizes asked at once all pass a
    // limit of 100 that 90 had nearly reached.
    const count = (await this.store.countDerivatives(asset.id)) + (this.making.get(asset.id) ?? 0);
    // Keyless requests stop at the public share of the limit, so a public asset's visitors
    // cannot take the renderings its owner (with a key, a signed URL or eager presets) needs.
    const share = publicVariants(this.settings.maxVariants);
    if (keyless && count >= share) {
      throw new WharfError(
        'TOO_MANY_VARIANTS',
        `Requests without a key may make ${share} of this asset's renderings, and it has ${count}: ` +
          'use one of the sizes already made, or ask with a key or a signed URL.',
        { limit: share, scope: 'public' },
      );
    }
    if (count >= this.settings.maxVariants) {
      throw new WharfError(
        'TOO_MANY_VARIANTS',
        `This asset already has ${count} stored renderings; use one of the sizes already made (e.g. a preset).`,
        { limit: this.settings.maxVariants },
      );
    }
    // Counted from the check on, with no await between: the next request's check sees it.
    this.making.set(asset.id, (this.making.get(asset.id) ?? 0) + 1);
    try {
      return await this.claimed(asset, paramsKey, format, name, make, background, signal);
    } finally {
      const left = (this.making.get(asset.id) ?? 1) - 1;
      if (left > 0) this.making.set(asset.id, left);
      else this.making.delete(asset.id);
    }
  }

  /** The rendering made under its lock (one process of all renders it), or found made meanwhile. */
  private async claimed(
    asset: Asset,
    paramsKey: string,
    format: OutputFormat,
    name: string,
    make: MakeRendering,
    background: boolean,
    /** Aborted when nobody waits for the rendering any more. */
    signal: AbortSignal,
  ): Promise<Derivative> {
    const owner = this.ids.token(12);
    // Leases measure real time between processes, never a test's manual clock.
    const leaseMs = 15_000;
    const deadline = Date.now() + this.settings.timeoutSeconds * 1000 + leaseMs;
    let delay = 20;
    while (!(await this.store.acquireLock(name, owner, Date.now() + leaseMs, Date.now()))) {
      const done = await this.store.getDerivative(asset.id, paramsKey);
      if (done) return done;
      signal.throwIfAborted();
      if (Date.now() > deadline) {
        throw new WharfError(
          'TRANSFORMS_BUSY',
          'This rendering is taking long on another node; try again shortly.',
          {
            retry_after: 2,
          },
        );
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 250);
    }
    // Renewed while queued and rendering, so a slow render keeps its claim and a crash frees it soon.
    const renew = setInterval(() => {
      void this.store.acquireLock(name, owner, Date.now() + leaseMs, Date.now()).catch(() => {});
    }, leaseMs / 3);
    renew.unref();
    try {
      // Someone may have finished between our first look and the claim.
      const done = await this.store.getDerivative(asset.id, paramsKey);
      if (done) return done;
      // A request waits for a slot no longer than a transform may run (then TRANSFORMS_BUSY):
      // an answer comes within twice WHARF_IMAGE_TIMEOUT, however long the queue.
      const release = await this.slots.acquire(asset.accountId, background, {
        signal,
        maxWaitMs: background ? undefined : this.settings.timeoutSeconds * 1000,
      });
      // A rendering answered TRANSFORM_TIMEOUT while its encoder goes on (AVIF's cannot be
      // interrupted) still keeps a core busy: its slot is freed when that work really ends, or
      // answering at the deadline would let more encodes run at once than the slots allow.
      let freeSlot = release;
      try {
        return await this.make(asset, paramsKey, format, make, release, (finishing) => {
          freeSlot = () => {};
          void finishing.then(release, release);
        });
      } finally {
        freeSlot();
      }
    } finally {
      clearInterval(renew);
      await this.store.releaseLock(name, owner);
    }
  }

  private async make(
    asset: Asset,
    paramsKey: string,
    format: OutputFormat,
    make: MakeRendering,
    pixelsDone: () => void,
    outlived: (finishing: Promise<void>) => void,
  ): Promise<Derivative> {
    const contentType = CONTENT_TYPES[format];
    const ownKey = `${derivativesPrefix(asset)}${paramsKey}.${EXTENSIONS[format]}`;
    const digest = new DigestStream();
    await make(async (output) => {
      // The encoder has finished and freed its pixels: the slot goes to the next transform
      // while this rendering is flushed to storage (fsync, rename or upload) and recorded.
      output.once('end', pixelsDone);
      // pipeline() carries a renderer failure into the stream storage reads.
      const source = pipeline(output, digest, () => {});
      await this.blobs.write(ownKey, source, () => ({ ...digest.digests(), contentType }));
    }, outlived);
    this.rendered += 1;
    const { size, sha256 } = digest.digests();
    // Identical renderings (a size beyond the original's, so both are the original size) share one object.
    const twin = await this.store.findDerivativeBySha256(asset.id, sha256);
    const storageKey = twin && twin.storageKey !== ownKey ? twin.storageKey : ownKey;
    if (storageKey !== ownKey) await this.blobs.delete(ownKey);
    const row = await this.store.insertDerivative({
      assetId: asset.id,
      accountId: asset.accountId,
      paramsKey,
      storageKey,
      size,
      contentType,
      sha256,
      createdAt: this.clock.now(),
    });
    if (!row) {
      // The asset was deleted meanwhile: nothing may keep its bytes, nor the directories a
      // local store made again for this one after the deletion had removed them.
      await this.blobs.deletePrefix(derivativesPrefix(asset));
      throw new WharfError('NOT_FOUND', 'No such asset.');
    }
    return row;
  }

  /** Records a video's poster frame or a PDF's first page (from processing) as the asset's preview. */
  async storePreview(asset: Asset, output: Readable, format: 'jpeg' | 'png'): Promise<Derivative> {
    return this.ensure(asset, PREVIEW_KEY, format, async (sink) => sink(output), { background: true });
  }

  async hasPreview(assetId: string): Promise<boolean> {
    return (await this.store.getDerivative(assetId, PREVIEW_KEY)) !== undefined;
  }

  /**
   * Frees every derivative of an asset that was deleted: objects first, then the rows. Every
   * object under the asset's prefix goes, also one a process wrote and died before recording.
   */
  async purge(asset: { id: string; accountId: string }): Promise<void> {
    this.known.deleteWhere((memo) => memo.startsWith(`${asset.id}:`));
    const derivatives = await this.store.listDerivatives(asset.id);
    for (const key of new Set(derivatives.map((d) => d.storageKey))) await this.blobs.delete(key);
    await this.blobs.deletePrefix(derivativesPrefix(asset));
    await this.store.deleteDerivatives(asset.id);
  }

  /** The derivatives stored for an asset of the caller's. */
  async list(principal: Principal, assetId: string): Promise<Derivative[]> {
    const asset = await this.assets.get(principal, assetId);
    return this.store.listDerivatives(asset.id);
  }

  // Signed URLs: for <img> tags and CDNs, which carry no key.

  async grant(
    principal: Principal,
    assetId: string,
    request: TransformRequest,
    expiry: UrlExpiry,
    /** Show the asset as this upload of it does (see AssetService.view). */
    uploadId?: string,
  ): Promise<{ grant: TransformGrant; transform: CanonicalTransform }> {
    const { asset, through } = await this.assets.view(principal, assetId, uploadId);
    const expires = signedUrlExpires(principal, expiry, this.clock.now(), MAX_SIGNED_SECONDS);
    // Resolving checks the parameters and the preset before a URL is handed out.
    const transform = await this.resolve(asset.accountId, request);
    // A preset is signed as the parameters it names now, never as its name: replaced, it
    // would change the bytes under a URL served `immutable`, which caches keep for its life.
    const canonical: TransformRequest = { kind: 'params', input: transform };
    const signer = signerOf(principal);
    return {
      grant: {
        assetId: asset.id,
        request: canonical,
        expires,
        view: through?.id,
        signer,
        signature: this.sign(asset.id, canonical, expires, through?.id, signer),
      },
      transform,
    };
  }

  /** The asset a signed transform URL names, whichever account owns it. */
  async redeem(grant: TransformGrant): Promise<Asset> {
    const expected = Buffer.from(
      this.sign(grant.assetId, grant.request, grant.expires, grant.view, grant.signer),
    );
    const given = Buffer.from(grant.signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw new WharfError('INVALID_SIGNATURE', 'The URL signature is not valid.');
    }
    if (Math.floor(this.clock.now() / 1000) > grant.expires) {
      throw new WharfError('URL_EXPIRED', 'This URL has expired.');
    }
    await this.assets.requireActiveSigner(grant.signer);
    return this.assets.seenThrough(await this.assets.getKeyless(grant.assetId), grant.view);
  }

  /**
   * The query string a signed URL carries for this request (what the signature covers). URLs
   * are signed with parameters; one naming a preset was handed out before (see `grant`).
   */
  static subject(request: TransformRequest): string {
    if (request.kind === 'preset') {
      return request.dpr === undefined
        ? `preset=${request.name}`
        : `preset=${request.name}&dpr=${request.dpr}`;
    }
    return canonicalQuery(canonicalize(request.input));
  }

  private sign(
    assetId: string,
    request: TransformRequest,
    expires: number,
    view: string | undefined,
    signer: string | undefined,
  ): string {
    // Without a view or a signer, the text signed before they existed (see signedExtras).
    return createHmac('sha256', this.signingKey)
      .update(`image\n${assetId}\n${ImageService.subject(request)}\n${expires}${signedExtras(view, signer)}`)
      .digest('base64url');
  }

  // Eager presets: rendered by a job when an image (or a preview) arrives.

  /** Queues the eager presets of the asset's account. */
  async queueEager(asset: Asset): Promise<number> {
    const presets = (await this.store.listPresets(asset.accountId)).filter((p) => p.eager);
    const now = this.clock.now();
    await this.store.enqueueJobs(
      presets.map((p) => ({
        id: this.ids.id(),
        kind: DERIVE_IMAGE_JOB,
        payload: { assetId: asset.id, preset: p.name },
        runAt: now,
      })),
    );
    return presets.length;
  }

  /** The `derive-image` job: every format a request for the preset may negotiate. */
  async deriveJob(job: Job): Promise<void> {
    const asset = await this.store.getAssetById(String(job.payload.assetId));
    // Deleted meanwhile: nothing to render (and not a failure; see the process-asset job).
    if (!asset) return;
    const preset = await this.store.getPreset(asset.accountId, String(job.payload.preset));
    if (!preset) return;
    try {
      const source = await this.sourceOf(asset);
      this.assertWithinLimits(asset, source);
      const formats: OutputFormat[] =
        preset.params.format === 'auto'
          ? ['avif', 'webp', negotiateFormat('auto', undefined, source.format)]
          : [preset.params.format];
      for (const format of formats) {
        const spec = outputSpec(preset.params, format);
        await this.ensure(
          asset,
          specKey(spec),
          format,
          (sink, outlived) => this.renderFrom(source, spec, sink, outlived),
          { background: true },
        );
      }
    } catch (err) {
      // An image that cannot be rendered (broken, too large, no preview, the rendering limit
      // reached) is the file's answer, which a retry would only repeat and which a request
      // for the rendering answers the same: done, not a failure an operator is paged for.
      if (err instanceof WharfError && UNRENDERABLE.has(err.code)) return;
      // Anything else of Wharf's own (a missing original): given up at once, not retried.
      if (err instanceof WharfError && !TRANSIENT.has(err.code)) {
        throw new PermanentJobError(`${err.code}: ${err.message}`);
      }
      throw err;
    }
  }
}

/** Preset names and parameters, checked once here for the API and the store. */
export class PresetService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  async list(accountId: string): Promise<ImagePreset[]> {
    return this.store.listPresets(accountId);
  }

  async get(accountId: string, name: string): Promise<ImagePreset> {
    const preset = await this.store.getPreset(accountId, name);
    if (!preset) throw new WharfError('NOT_FOUND', `No image preset "${name}".`);
    return preset;
  }

  /** Creates or replaces a preset; its parameters are stored canonical. */
  async put(accountId: string, name: string, input: TransformInput, eager: boolean): Promise<ImagePreset> {
    if (!PRESET_NAME.test(name)) {
      throw new WharfError(
        'VALIDATION_FAILED',
        'A preset name is 1 to 64 lower-case letters, digits, _ or -, starting with a letter or digit.',
      );
    }
    const now = this.clock.now();
    return this.store.putPreset({
      accountId,
      name,
      params: canonicalize(input),
      eager,
      createdAt: now,
      updatedAt: now,
    });
  }

  async delete(accountId: string, name: string): Promise<void> {
    if (!(await this.store.deletePreset(accountId, name))) {
      throw new WharfError('NOT_FOUND', `No image preset "${name}".`);
    }
  }
}

/** Where an asset's renderings are stored: under a prefix of their own, freed whole with it. */
function derivativesPrefix(asset: { id: string; accountId: string }): string {
  return `${asset.accountId}/derivatives/${asset.id}/`;
}
