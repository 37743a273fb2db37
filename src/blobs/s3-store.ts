import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  type BucketLocationConstraint,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  GetPublicAccessBlockCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  NoSuchKey,
  PutObjectCommand,
  PutPublicAccessBlockCommand,
  type S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createPresignedPost } from '@aws-sdk/s3-presigned-post';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { hexToBase64 } from '../core/digests.js';
import { type ErrorCode, isWharfError, WharfError } from '../core/errors.js';
import type { ObjectInfo } from '../core/model.js';
import {
  type BlobStore,
  type ByteRange,
  ObjectMissing,
  type PartReference,
  type PresignedPost,
  type PresignedRequest,
  type PresignGetRequest,
  type PresignOperationRequest,
  type PresignPostRequest,
  type PresignPutRequest,
  type SealHook,
  type StoredPart,
} from '../core/ports.js';
import { createS3Client, type S3Options } from './s3-client.js';
import { encodeS3Key, QuerySigner } from './sigv4-query.js';

export interface S3BlobStoreOptions extends S3Options {
  /** Offer presigned GET URLs so downloads bypass Wharf (`presignGet`). */
  directDownloads?: boolean | undefined;
  /** Bytes per multipart part; memory held per write is about `partSize × queueSize`. */
  partSize?: number | undefined;
  queueSize?: number | undefined;
  /** Once aborted, calls still waiting on the store end, and later ones fail (see s3ClientConfig). */
  abandon?: AbortSignal | undefined;
  /**
   * Write-only credentials for the URLs clients upload with (see `signing`); without them,
   * those are signed with the main ones.
   */
  upload?: S3Credentials | undefined;
}

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

const MiB = 1024 * 1024;
// S3 allows 10,000 parts: 8 MiB parts reach 78 GiB, above any sensible file limit.
const DEFAULT_PART_SIZE = 8 * MiB;
const DEFAULT_QUEUE_SIZE = 4;

/** Where presigned PutObject URLs of a bucket point, and the query the SDK adds to them. */
interface PutTarget {
  signer: QuerySigner;
  origin: string;
  host: string;
  /** The path up to the key: `/` (virtual-hosted) or `/bucket/` (path-style). */
  pathPrefix: string;
  query: Record<string, string>;
}

/** A key with nothing to encode, presigned once to learn the URL's shape. */
const PROBE_KEY = 'wharf-probe';

/**
 * Bytes in an S3-compatible bucket (the scaled-out deployment). Uploads stream as multipart
 * uploads with a bounded number of parts in flight; presigned URLs and POST policies are the
 * object store's own, so storage itself enforces what they bind.
 */
export class S3BlobStore implements BlobStore {
  readonly name = 's3';
  readonly presignGet: ((key: string, request: PresignGetRequest) => Promise<string>) | undefined;
  private readonly client: S3Client;
  /**
   * What signs the URLs a client writes with (PutObject, POST forms, multipart writes). A URL
   * binds only the headers it signs, and some stores (Ceph RGW among them; AWS S3 refuses)
   * act on unsigned `x-amz-*` headers too: `x-amz-copy-source` turns a presigned PUT into a
   * server-side copy of any object its signer may read (another tenant's, another bucket's).
   * Write-only credentials (WHARF_S3_UPLOAD_*) make such a copy a refusal; see
   * checkUnsignedCopy and docs/security.md.
   */
  private readonly signing: { client: S3Client; credentials: S3Credentials; separate: boolean };
  readonly bucket: string;
  private readonly abandonSignal: AbortSignal | undefined;
  private readonly region: string;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(options: S3BlobStoreOptions) {
    this.client = createS3Client(options, options.abandon);
    this.signing = options.upload
      ? {
          client: createS3Client({ ...options, ...options.upload }, options.abandon),
          credentials: { ...options.upload },
          separate: true,
        }
      : {
          client: this.client,
          credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
          separate: false,
        };
    this.bucket = options.bucket;
    this.abandonSignal = options.abandon;
    this.region = options.region;
    this.partSize = options.partSize ?? DEFAULT_PART_SIZE;
    this.queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
    this.presignGet = options.directDownloads ? (key, request) => this.signGet(key, request) : undefined;
  }

  /**
   * Creates the bucket when it is missing. Credentials that may not create buckets (403)
   * are fine if the bucket is there; if it is not, the first write fails with S3's error.
   * Credentials the store does not accept at all (a wrong secret, an unknown key id) also
   * answer 403, and then nothing would ever work: those end the start (S3CredentialsRefused).
   */
  async ensureBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (err) {
      if (statusOf(err) === 403) {
        if (!(await this.bucketMissing())) return;
      } else if (statusOf(err) !== 404) {
        throw err;
      }
    }
    try {
      // us-east-1 is the one region S3 refuses to be named in a location constraint.
      await this.client.send(
        new CreateBucketCommand({
          Bucket: this.bucket,
          CreateBucketConfiguration:
            this.region === 'us-east-1'
              ? undefined
              : { LocationConstraint: this.region as BucketLocationConstraint },
        }),
      );
    } catch (err) {
      refuseCredentials(err);
      const code = (err as { name?: string }).name;
      if (statusOf(err) === 403 || code === 'BucketAlreadyOwnedByYou') return;
      throw err;
    }
  }

  /**
   * After a HEAD of the bucket answered 403, which carries no body and so no error code: lists
   * one key, whose error names why (the same permission on AWS, s3:ListBucket). Refused
   * credentials throw; a missing bucket answers true; a policy's refusal answers false.
   */
  private async bucketMissing(): Promise<boolean> {
    try {
      await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, MaxKeys: 1 }));
      return false;
    } catch (err) {
      refuseCredentials(err);
      if (statusOf(err) === 404) return true;
      if (statusOf(err) === 403) return false;
      throw err;
    }
  }

  /**
   * S3 has no rename, so bytes go to the final key and are deleted again if `seal` refuses
   * them. Keys are per upload and no record points at one before `seal` accepted it, so
   * nobody can reach the object in between. A failed stream aborts its multipart upload.
   */
  async write(key: string, source: Readable, seal: SealHook): Promise<void> {
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: source },
      partSize: this.partSize,
      queueSize: this.queueSize,
    });
    try {
      await upload.done();
    } catch (err) {
      source.destroy();
      // A store that stopped answering would hold the refusal for another request timeout:
      // asked in the background (sweepIncomplete() catches what is left), the client has its
      // 503 at once (a hunt waited 240 s for it). Otherwise the parts go before the error.
      if (isWharfError(err, 'SERVICE_UNAVAILABLE')) void this.abortWrites(key);
      else await this.abortWrites(key);
      throw err;
    }
    try {
      await seal();
    } catch (err) {
      await this.delete(key);
      throw err;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    let out: HeadObjectCommandOutput;
    try {
      out = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: key, ChecksumMode: 'ENABLED' }),
      );
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
    return {
      size: out.ContentLength ?? 0,
      md5: md5FromETag(out),
      sha256: sha256FromChecksum(out),
      contentType: out.ContentType,
      contentEncoding: out.ContentEncoding,
    };
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    const out = await this.client
      .send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      )
      .catch((err: unknown) => {
        throw err instanceof NoSuchKey ? new ObjectMissing(key) : err;
      });
    // In Node the SDK's body is the HTTP response stream itself: bytes flow as they arrive.
    return out.Body as Readable;
  }

  async delete(key: string): Promise<void> {
    // S3 answers 204 for a missing key too.
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async deletePrefix(prefix: string): Promise<void> {
    if (!prefix.endsWith('/')) throw new Error(`A prefix ends with a slash: ${JSON.stringify(prefix)}`);
    // A page of up to 1000 keys, deleted in one request; the next listing starts over, so keys
    // written meanwhile are found too.
    for (;;) {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, MaxKeys: 1000 }),
      );
      const keys = (page.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
      if (keys.length === 0) return;
      await this.client.send(
        new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys, Quiet: true } }),
      );
      if (!page.IsTruncated) return;
    }
  }

  async presignPut(request: PresignPutRequest): Promise<PresignedRequest> {
    const headers: Record<string, string> = {
      'content-type': request.contentType,
      'content-length': String(request.size),
    };
    if (request.md5) headers['content-md5'] = hexToBase64(request.md5);
    // Write-once: Wharf's own endpoint refuses a PUT once the upload is completed, but the
    // store knows nothing of completion. Without this, the URL could replace an asset's
    // verified bytes with others of the same size and type until it expires.
    if (!request.contentTypeOnly) headers['if-none-match'] = '*';
    if (request.sha256) headers['x-amz-checksum-sha256'] = hexToBase64(request.sha256);
    // Every header about the body is a signed header, never hoisted into the query where it
    // would bind nothing, so storage refuses a body that does not match.
    const url = await this.signPut(request, headers);
    // Content-Length is bound too, but clients set it themselves (browsers must).
    const clientHeaders: Record<string, string> = { 'Content-Type': request.contentType };
    if (!request.contentTypeOnly) clientHeaders['If-None-Match'] = '*';
    if (request.md5) clientHeaders['Content-MD5'] = headers['content-md5']!;
    if (request.sha256) clientHeaders['x-amz-checksum-sha256'] = headers['x-amz-checksum-sha256']!;
    return { method: 'PUT', url, headers: clientHeaders, rewritable: Boolean(request.contentTypeOnly) };
  }

  /**
   * The presigned PutObject URL, as the AWS SDK's getSignedUrl makes it
   * (test/unit/sigv4-query.test.ts compares the two on randomised input). getSignedUrl runs the
   * client's whole middleware stack and endpoint resolution for every URL: 0.3–0.8 ms of CPU
   * each, so a batch of 100 presigned uploads cost 60–80 ms. The SDK resolves where the
   * bucket's objects live once (a probe URL: scheme, host, path prefix and the query it
   * adds), and each URL is then signed by QuerySigner, the SigV4 query signer Wharf's own
   * endpoint uses (≈ 6 µs).
   */
  private async signPut(
    request: Pick<PresignPutRequest, 'key' | 'now' | 'expiresInSeconds'>,
    headers: Record<string, string>,
  ): Promise<string> {
    const target = await this.putTarget();
    const path = target.pathPrefix + encodeS3Key(request.key);
    const query = target.signer.presignQuery({
      method: 'PUT',
      host: target.host,
      path,
      query: target.query,
      headers,
      now: request.now,
      expiresInSeconds: request.expiresInSeconds,
    });
    return `${target.origin}${path}?${query}`;
  }

  private putTargetOnce: Promise<PutTarget> | undefined;

  private putTarget(): Promise<PutTarget> {
    this.putTargetOnce ??= getSignedUrl(
      this.client,
      new PutObjectCommand({ Bucket: this.bucket, Key: PROBE_KEY }),
      { expiresIn: 60 },
    ).then((probe) => {
      const url = new URL(probe);
      if (!url.pathname.endsWith(`/${PROBE_KEY}`)) {
        throw new Error(`cannot find the key in the store's presigned URL ${url.origin}${url.pathname}`);
      }
      const query: Record<string, string> = {};
      for (const [name, value] of url.searchParams) if (!name.startsWith('X-Amz-')) query[name] = value;
      // Signed for the region and service the SDK resolved: `key/date/region/service/aws4_request`.
      const [, , region, service] = (url.searchParams.get('X-Amz-Credential') ?? '').split('/');
      if (!region || !service) throw new Error("the store's presigned URL names no signing scope");
      return {
        signer: new QuerySigner({ ...this.signing.credentials, region, service }),
        origin: url.origin,
        host: url.host,
        pathPrefix: url.pathname.slice(0, -PROBE_KEY.length),
        query,
      };
    });
    // A failure is not kept: the next URL tries again.
    this.putTargetOnce.catch(() => {
      this.putTargetOnce = undefined;
    });
    return this.putTargetOnce;
  }

  async copy(from: string, to: string): Promise<void> {
    // Objects from one presigned PUT or POST are at most 5 GiB: one CopyObject suffices.
    await this.client
      .send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: to,
          CopySource: `${this.bucket}/${from.split('/').map(encodeURIComponent).join('/')}`,
        }),
      )
      .catch((err: unknown) => {
        throw err instanceof NoSuchKey || (err as { name?: string })?.name === 'NoSuchKey'
          ? new ObjectMissing(from)
          : err;
      });
  }

  async presignPost(request: PresignPostRequest): Promise<PresignedPost> {
    const conditions: Parameters<typeof createPresignedPost>[1]['Conditions'] = [
      ['content-length-range', request.minSize, request.maxSize],
    ];
    const fields: Record<string, string> = {};
    if (request.contentType !== undefined) {
      conditions.push(['eq', '$Content-Type', request.contentType]);
      fields['Content-Type'] = request.contentType;
    }
    // createPresignedPost dates the policy by the wall clock plus the client's clock offset,
    // read before its first await: an offset on a view of the client dates it `now`.
    const client = {
      config: { ...this.signing.client.config, systemClockOffset: request.now - Date.now() },
    } as unknown as S3Client;
    const post = await createPresignedPost(client, {
      Bucket: this.bucket,
      Key: request.key,
      Conditions: conditions,
      Fields: fields,
      Expires: request.expiresInSeconds,
    });
    // S3 has no write-once condition for POST forms: a form can overwrite until it expires.
    return { url: post.url, fields: post.fields, rewritable: true };
  }

  /**
   * The bucket's own URL for one S3 request, so the client talks to the bucket directly.
   * Only what the operation needs is signed: no checksum the SDK would add of its own (the
   * client's (Uppy's) body is not known here) and no length for PutObject (nor is its size).
   */
  async presignOperation(request: PresignOperationRequest): Promise<PresignedRequest> {
    const target = { Bucket: this.bucket, Key: request.key };
    const uploadId = (): string => {
      if (!request.multipartId) throw new Error(`${request.operation} needs a multipart id`);
      return request.multipartId;
    };
    const headers: Record<string, string> = {};
    if (request.operation === 'PutObject') {
      if (request.contentType === undefined) throw new Error('PutObject is signed with its Content-Type');
      headers['Content-Type'] = request.contentType;
      // Write-once, as presignPut's URLs: the bucket knows nothing of Wharf's completion.
      headers['If-None-Match'] = '*';
    }
    if (request.operation === 'CreateMultipartUpload' && request.contentType !== undefined) {
      headers['Content-Type'] = request.contentType;
    }
    const options = {
      expiresIn: request.expiresInSeconds,
      signingDate: new Date(request.now),
      // The presigner leaves Content-Type unsigned by default.
      signableHeaders: new Set(Object.keys(headers).map((h) => h.toLowerCase())),
    };
    let method: PresignedRequest['method'];
    let url: string;
    switch (request.operation) {
      case 'PutObject':
        method = 'PUT';
        url = await getSignedUrl(
          this.signing.client,
          new PutObjectCommand({ ...target, ContentType: request.contentType, IfNoneMatch: '*' }),
          options,
        );
        break;
      case 'CreateMultipartUpload':
        method = 'POST';
        url = await getSignedUrl(
          this.signing.client,
          new CreateMultipartUploadCommand({ ...target, ContentType: request.contentType }),
          options,
        );
        break;
      case 'UploadPart':
        method = 'PUT';
        url = await getSignedUrl(
          this.signing.client,
          new UploadPartCommand({ ...target, UploadId: uploadId(), PartNumber: request.partNumber }),
          options,
        );
        break;
      case 'ListParts':
        method = 'GET';
        // A read, which write-only credentials may not do; a GET carries no copy to smuggle.
        url = await getSignedUrl(
          this.client,
          new ListPartsCommand({ ...target, UploadId: uploadId() }),
          options,
        );
        break;
      case 'CompleteMultipartUpload':
        method = 'POST';
        url = await getSignedUrl(
          this.signing.client,
          new CompleteMultipartUploadCommand({ ...target, UploadId: uploadId() }),
          options,
        );
        break;
      case 'AbortMultipartUpload':
        method = 'DELETE';
        url = await getSignedUrl(
          this.signing.client,
          new AbortMultipartUploadCommand({ ...target, UploadId: uploadId() }),
          options,
        );
        break;
    }
    return { method, url, headers };
  }

  async createMultipart(key: string, contentType: string): Promise<string> {
    const out = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: contentType }),
    );
    if (!out.UploadId) throw new Error('CreateMultipartUpload answered without an UploadId');
    return out.UploadId;
  }

  async listParts(key: string, multipartId: string): Promise<StoredPart[]> {
    const parts: StoredPart[] = [];
    let marker: string | undefined;
    try {
      for (;;) {
        const page = await this.client.send(
          new ListPartsCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: multipartId,
            PartNumberMarker: marker,
          }),
        );
        for (const part of page.Parts ?? []) {
          if (part.PartNumber === undefined || part.ETag === undefined) continue;
          parts.push({
            partNumber: part.PartNumber,
            size: part.Size ?? 0,
            etag: part.ETag,
            lastModified: part.LastModified?.getTime(),
          });
        }
        if (!page.IsTruncated || page.NextPartNumberMarker === undefined) break;
        marker = page.NextPartNumberMarker;
      }
    } catch (err) {
      throw asWharfError(err);
    }
    return parts.sort((a, b) => a.partNumber - b.partNumber);
  }

  async completeMultipart(
    key: string,
    multipartId: string,
    parts: PartReference[],
  ): Promise<ObjectInfo & { etag: string }> {
    // Ceph (16) composes parts listed out of order instead of refusing them as S3 does.
    for (let i = 1; i < parts.length; i++) {
      if (parts[i]!.partNumber <= parts[i - 1]!.partNumber) {
        throw new WharfError('INVALID_PART_ORDER', 'The list of parts was not in ascending order.');
      }
    }
    let etag: string | undefined;
    try {
      const out = await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: multipartId,
          MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
        }),
      );
      etag = out.ETag;
    } catch (err) {
      const mapped = asWharfError(err);
      if (mapped instanceof WharfError) throw mapped;
      // Ceph answers a completion of an unknown or completed upload with an InternalError
      // ("already in progress"); when the upload is gone, that is S3's NoSuchUpload.
      if (!(await this.multipartExists(key, multipartId))) {
        throw new WharfError('MULTIPART_NOT_FOUND', 'The specified upload does not exist.');
      }
      throw err;
    }
    const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
    // Ceph (16) answers Complete with an empty ETag; the object's own is the same value.
    return { size: out.ContentLength ?? 0, contentType: out.ContentType, etag: etag || (out.ETag ?? '') };
  }

  private async multipartExists(key: string, multipartId: string): Promise<boolean> {
    try {
      await this.client.send(
        new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: multipartId, MaxParts: 1 }),
      );
      return true;
    } catch (err) {
      if (isWharfError(asWharfError(err), 'MULTIPART_NOT_FOUND')) return false;
      throw err;
    }
  }

  async abortMultipart(key: string, multipartId: string): Promise<void> {
    await this.abortUpload(key, multipartId);
  }

  /**
   * Multipart uploads begun before `olderThan`, whoever began them (lib-storage or a client),
   * that `inUse` does not claim; and the start checks' probe objects written before it.
   */
  async sweepIncomplete(
    olderThan: number,
    inUse?: (key: string, multipartId: string) => Promise<boolean>,
  ): Promise<number> {
    return (await this.sweepMultipart(olderThan, inUse)) + (await this.sweepProbes(olderThan));
  }

  private async sweepMultipart(
    olderThan: number,
    inUse?: (key: string, multipartId: string) => Promise<boolean>,
  ): Promise<number> {
    let aborted = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({
          Bucket: this.bucket,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      );
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId) continue;
        if ((upload.Initiated?.getTime() ?? Number.POSITIVE_INFINITY) >= olderThan) continue;
        if (await inUse?.(upload.Key, upload.UploadId)) continue;
        await this.abortUpload(upload.Key, upload.UploadId);
        aborted += 1;
      }
      if (!page.IsTruncated) return aborted;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  /**
   * The probe objects of checkUnsignedCopy and checkPublicAcl written before `olderThan`. Each
   * check deletes its own, but not when the store stops answering (the delete is not waited
   * out) or the start is stopped midway; a check lasts seconds, so an older probe is no
   * check's any more. Listed under the probes' prefix only, a page at a time.
   */
  private async sweepProbes(olderThan: number): Promise<number> {
    let removed = 0;
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: `${PROBE_KEY}/`,
          MaxKeys: 1000,
          ContinuationToken: token,
        }),
      );
      const old = (page.Contents ?? []).flatMap((o) =>
        o.Key && (o.LastModified?.getTime() ?? Number.POSITIVE_INFINITY) < olderThan ? [{ Key: o.Key }] : [],
      );
      if (old.length > 0) {
        await this.client.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: old, Quiet: true } }),
        );
        removed += old.length;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return removed;
  }

  async close(): Promise<void> {
    this.client.destroy();
    if (this.signing.separate) this.signing.client.destroy();
  }

  /** For a check at start: ends at `timeoutMs`, or with the stop (abandon). */
  private probeSignal(timeoutMs: number): AbortSignal {
    return AbortSignal.any([
      AbortSignal.timeout(timeoutMs),
      ...(this.abandonSignal ? [this.abandonSignal] : []),
    ]);
  }

  /**
   * Whether the store lets a client turn the URLs Wharf signs for uploads into a copy of an
   * object those credentials can read, as a store that acts on unsigned `x-amz-*` headers
   * does: a presigned PUT is sent with an unsigned `x-amz-copy-source` naming a probe object
   * Wharf just wrote. `copied`: it did (the start warns, see docs/security.md); `refused`: the
   * store refused it (AWS S3 refuses unsigned `x-amz-*` headers, write-only credentials may not
   * read the source); `unknown`: the probe object could not be written, or the store did not
   * answer in time. Credentials the store does not
   * know throw S3CredentialsRefused naming the upload credentials when they are the ones refused.
   * Both probe objects are deleted again.
   */
  async checkUnsignedCopy(timeoutMs = 15_000): Promise<'copied' | 'refused' | 'unknown'> {
    const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    const source = `${PROBE_KEY}/copy-source-${id}`;
    const target = `${PROBE_KEY}/copy-target-${id}`;
    // A store that stops answering must not hold the start for the SDK's minutes of retries:
    // past the limit the check says `unknown` and the start goes on.
    const signal = this.probeSignal(timeoutMs);
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: source, Body: 'wharf', ContentType: 'text/plain' }),
        { abortSignal: signal },
      );
    } catch (err) {
      refuseCredentials(err);
      // Not this check's to fail the start over: the uploads will say what is wrong.
      return 'unknown';
    }
    try {
      const url = await this.signPut(
        { key: target, now: Date.now(), expiresInSeconds: 60 },
        { 'content-type': 'text/plain' },
      );
      const res = await fetch(url, {
        method: 'PUT',
        headers: { 'content-type': 'text/plain', 'x-amz-copy-source': `${this.bucket}/${source}` },
        body: '',
        signal,
      }).catch((err: unknown) => {
        if (signal.aborted) return undefined;
        throw err;
      });
      if (!res) return 'unknown';
      const text = await res.text();
      if (res.ok) return 'copied';
      const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1];
      if (code && CREDENTIAL_ERRORS.has(code)) {
        throw new S3CredentialsRefused(code, this.signing.separate ? 'upload' : 'main');
      }
      return 'refused';
    } finally {
      // Not waited out either: a probe left behind is two bytes under wharf-probe/, which the
      // sweep removes once it is an hour old (sweepProbes).
      await this.client
        .send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: [{ Key: source }, { Key: target }], Quiet: true },
          }),
          {
            abortSignal: this.probeSignal(timeoutMs),
          },
        )
        .catch(() => {});
    }
  }

  /**
   * Whether a client can make the object of its upload readable by anyone, straight from the
   * bucket, by adding an unsigned `x-amz-acl: public-read` to an upload URL (a store that acts
   * on unsigned headers honours it even from write-only credentials). A probe object is PUT
   * that way, then fetched without any signature. Readable: the bucket's public access block
   * is set to ignore public ACLs (Wharf uses none; bucket policies and the block's other
   * settings are left as they are) and the probe fetched again. `private`: the store refused the header or serves no
   * public object; `blocked`: it did until now; `public`: it still does (the start warns);
   * `unknown`: the store did not answer in time.
   */
  async checkPublicAcl(timeoutMs = 15_000): Promise<'private' | 'blocked' | 'public' | 'unknown'> {
    const key = `${PROBE_KEY}/public-acl-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    const signal = this.probeSignal(timeoutMs);
    const target = await this.putTarget();
    const anonymous = async (): Promise<boolean> => {
      const res = await fetch(`${target.origin}${target.pathPrefix}${encodeS3Key(key)}`, { signal });
      await res.arrayBuffer();
      return res.ok;
    };
    try {
      const url = await this.signPut(
        { key, now: Date.now(), expiresInSeconds: 60 },
        { 'content-type': 'text/plain' },
      );
      const put = await fetch(url, {
        method: 'PUT',
        headers: { 'content-type': 'text/plain', 'x-amz-acl': 'public-read' },
        body: 'wharf',
        signal,
      });
      await put.arrayBuffer();
      if (!put.ok || !(await anonymous())) return 'private';
      const current = await this.client
        .send(new GetPublicAccessBlockCommand({ Bucket: this.bucket }), { abortSignal: signal })
        .then((out) => out.PublicAccessBlockConfiguration ?? {})
        // NoSuchPublicAccessBlockConfiguration: none set yet.
        .catch((err: unknown) => (statusOf(err) === 404 ? {} : undefined));
      if (current === undefined) return 'public';
      const blocked = await this.client
        .send(
          new PutPublicAccessBlockCommand({
            Bucket: this.bucket,
            // Ignore, not block: Ceph RGW's BlockPublicAcls refuses every plain PutObject too.
            PublicAccessBlockConfiguration: { ...current, IgnorePublicAcls: true },
          }),
          { abortSignal: signal },
        )
        .then(
          () => true,
          () => false,
        );
      return blocked && !(await anonymous()) ? 'blocked' : 'public';
    } catch (err) {
      if (signal.aborted) return 'unknown';
      throw err;
    } finally {
      await this.client
        .send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), {
          abortSignal: this.probeSignal(timeoutMs),
        })
        .catch(() => {});
    }
  }

  private async signGet(key: string, request: PresignGetRequest): Promise<string> {
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: key,
      ResponseContentType: request.contentType,
      ResponseContentDisposition: request.disposition,
    });
    return getSignedUrl(this.client, command, {
      expiresIn: request.expiresInSeconds,
      signingDate: new Date(request.now),
    });
  }

  /**
   * lib-storage aborts its multipart upload when the body fails, but not when the failure
   * races the upload's creation (nor when its process dies); a key belongs to one write, so
   * whatever is open under it is that write's debris.
   */
  async abortWrites(key: string): Promise<void> {
    try {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: key }),
      );
      for (const upload of page.Uploads ?? []) {
        if (upload.Key === key && upload.UploadId) await this.abortUpload(key, upload.UploadId);
      }
    } catch {
      // The write's own error (or the sweep's work) matters more; sweepIncomplete() catches what is left.
    }
  }

  private async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
      );
    } catch (err) {
      // Finished or aborted meanwhile.
      if (statusOf(err) !== 404) throw err;
    }
  }
}

/** S3's refusals of multipart requests, as the core's codes. */
const MULTIPART_ERRORS: Record<string, ErrorCode> = {
  NoSuchUpload: 'MULTIPART_NOT_FOUND',
  // Ceph's answer for an upload id it does not know (or one completed already).
  NoSuchKey: 'MULTIPART_NOT_FOUND',
  InvalidPart: 'INVALID_PART',
  InvalidPartOrder: 'INVALID_PART_ORDER',
  EntityTooSmall: 'PART_TOO_SMALL',
};

function asWharfError(err: unknown): unknown {
  if (!(err instanceof S3ServiceException)) return err;
  const code = MULTIPART_ERRORS[err.name];
  return code ? new WharfError(code, err.message) : err;
}

/**
 * S3's codes for credentials the store does not accept, whatever the bucket's policy: every
 * call would fail the same way (AccessDenied, by contrast, may be one call's policy).
 */
const CREDENTIAL_ERRORS = new Set(['SignatureDoesNotMatch', 'InvalidAccessKeyId']);

/** The store refuses the credentials themselves (CREDENTIAL_ERRORS): nothing can work with them. */
export class S3CredentialsRefused extends Error {
  constructor(
    readonly code: string,
    /** Which: WHARF_S3_ACCESS_KEY_ID's, or WHARF_S3_UPLOAD_ACCESS_KEY_ID's. */
    readonly credentials: 'main' | 'upload' = 'main',
  ) {
    super(`The S3 store refuses these credentials (${code}).`);
    this.name = 'S3CredentialsRefused';
  }
}

function refuseCredentials(err: unknown): void {
  if (err instanceof S3ServiceException && CREDENTIAL_ERRORS.has(err.name)) {
    throw new S3CredentialsRefused(err.name);
  }
}

function statusOf(err: unknown): number | undefined {
  return err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
}

/**
 * A single-part upload's ETag is the MD5 of its bytes, unless S3 encrypted them with a key
 * of KMS or of the client's (then it is not). Multipart ETags carry a `-N` suffix.
 */
function md5FromETag(out: HeadObjectCommandOutput): string | undefined {
  if (out.SSECustomerAlgorithm || (out.ServerSideEncryption && out.ServerSideEncryption !== 'AES256')) {
    return undefined;
  }
  const etag = out.ETag?.replace(/^"|"$/g, '').toLowerCase();
  return etag && /^[0-9a-f]{32}$/.test(etag) ? etag : undefined;
}

/** A whole-object SHA-256 (a multipart object's composite checksum is not one). */
function sha256FromChecksum(out: HeadObjectCommandOutput): string | undefined {
  const value = out.ChecksumSHA256;
  if (!value || out.ChecksumType === 'COMPOSITE') return undefined;
  if (!/^[A-Za-z0-9+/]{43}=$/.test(value)) return undefined;
  return Buffer.from(value, 'base64').toString('hex');
}
