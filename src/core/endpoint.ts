import type { Readable } from 'node:stream';
import type { Clock } from './clock.js';
import { parseContentMd5, parseDigest } from './digests.js';
import { WharfError } from './errors.js';
import { checkingChecksums, declaredChecksums } from './flexible-checksums.js';
import type { Digests, ObjectInfo, Upload } from './model.js';
import type { MultipartService } from './multipart.js';
import type {
  ChecksumAlgorithms,
  PartReference,
  PresignVerifier,
  SignedRequest,
  StoredPart,
  VerifiedRequest,
} from './ports.js';
import { accountOfKey } from './storage-keys.js';
import type { StreamOwner } from './upload-streams.js';
import type { UploadService } from './uploads.js';

/**
 * How many PUTs (or forms) one presigned upload may stream at once. Only one body can be kept,
 * so one would do, but for a retry: a client whose connection broke sends the file again at
 * once, while this process may not have seen the first one end yet (a few milliseconds after a
 * reset; WHARF_BODY_IDLE_TIMEOUT after a connection that went silent), and S3 clients and Uppy
 * give up on SlowDown within seconds. Two let that retry in and still keep one URL to two of its
 * account's streams (a hunt's URL held all 1,000).
 */
const BODIES_PER_URL = 2;

/**
 * The embedded deployment's object-store face: presigned PUTs and S3 multipart requests land
 * here. Everything the URL bound (signature, expiry, type, size, digests, upload id, part
 * number) is checked before a byte is stored, and so is every digest the request declares
 * (Content-MD5, x-amz-checksum-*) before the bytes are kept.
 */
export class StorageEndpointService {
  constructor(
    private readonly verifier: PresignVerifier,
    private readonly uploads: UploadService,
    private readonly multipart: MultipartService,
    private readonly clock: Clock,
    /** The x-amz-checksum-* algorithms verified besides SHA-256; any other is refused. */
    private readonly checksums: ChecksumAlgorithms = new Map(),
  ) {}

  /**
   * PutObject. Its type is always signed; its length too when Wharf knew the size when
   * signing (presignPut), and the core checks the length against the upload's declared size.
   */
  async putObject(request: SignedRequest, body: Readable): Promise<Digests> {
    let checked: Readable | undefined;
    // Expiry is judged when the request arrives, as S3 judges it: a PUT that began in time is
    // taken whole (a hunt's slow PUT was received in full, then refused as expired).
    const startedAt = this.clock.now();
    try {
      // Before the signature, which covers the length: without one the answer is 411 (as
      // documented, and as S3 answers), not a signature mismatch that hides the cause.
      const length = requireLength(request);
      const { key } = await this.verify(request, { headers: ['content-type'] }, startedAt);
      const { md5, sha256, others } = this.declared(request);
      // The key is the one Wharf signed, so its account (and its upload's token) streams the body.
      const owner = await this.ownerOf(key, 'presigned', BODIES_PER_URL);
      return await this.uploads.streams.holding(owner, async () => {
        checked = await checkingChecksums(body, others, this.checksums);
        return await this.uploads.receive({
          key,
          contentType: headerOf(request, 'content-type') ?? '',
          size: length,
          body: checked,
          expected: { md5, sha256 },
          startedAt,
        });
      });
    } catch (err) {
      // Nothing was written; let the client's remaining bytes drain so it reads our answer
      // (through the checksums when they read it: resuming only the request would pile its
      // bytes up before them).
      (checked ?? body).resume();
      throw err;
    }
  }

  /** CreateMultipartUpload (`POST /<key>?uploads`). */
  async createMultipart(request: SignedRequest): Promise<{ key: string; multipartId: string }> {
    const { key } = await this.verify(request, { query: ['uploads'] });
    const { multipartId } = await this.multipart.receiveCreate(key, headerOf(request, 'content-type'));
    return { key, multipartId };
  }

  /** UploadPart (`PUT /<key>?partNumber=N&uploadId=X`): the part streams to storage. */
  async uploadPart(request: SignedRequest, body: Readable): Promise<StoredPart> {
    let checked: Readable | undefined;
    try {
      const size = requireLength(request);
      const { key, query } = await this.verify(request, { query: ['partNumber', 'uploadId'] });
      const partNumber = partNumberOf(query.partNumber!);
      const { md5, sha256, others } = this.declared(request);
      // Parts stream a few at once (S3 clients send 4 to 10 in parallel): as many as a token may.
      const owner = await this.ownerOf(key, 'multipart', this.uploads.streams.perToken);
      return await this.uploads.streams.holding(owner, async () => {
        checked = await checkingChecksums(body, others, this.checksums);
        return await this.multipart.receivePart({
          key,
          multipartId: query.uploadId!,
          partNumber,
          body: checked,
          size,
          md5,
          sha256,
        });
      });
    } catch (err) {
      (checked ?? body).resume();
      throw err;
    }
  }

  /**
   * The digests a PutObject or UploadPart declares: Content-MD5 and x-amz-checksum-sha256 (hex),
   * which the core's hashing checks, and the other x-amz-checksum-* the body is checked against
   * as it streams. Malformed or unverifiable declarations are refused here, before any byte.
   */
  private declared(request: SignedRequest) {
    const md5 = headerOf(request, 'content-md5');
    const sha256 = headerOf(request, 'x-amz-checksum-sha256');
    return {
      md5: md5 === undefined ? undefined : parseContentMd5(md5),
      sha256: sha256 === undefined ? undefined : parseDigest('sha256', sha256, 'x-amz-checksum-sha256'),
      others: declaredChecksums(request.headers, this.checksums, ['sha256']),
    };
  }

  /** ListParts (`GET /<key>?uploadId=X`). */
  async listParts(
    request: SignedRequest,
  ): Promise<{ key: string; multipartId: string; parts: StoredPart[] }> {
    const { key, query } = await this.verify(request, { query: ['uploadId'] });
    const multipartId = query.uploadId!;
    return { key, multipartId, parts: await this.multipart.receiveListParts(key, multipartId) };
  }

  /**
   * CompleteMultipartUpload (`POST /<key>?uploadId=X`). `readParts` reads the request's part
   * list; it is called only once the signature holds, so unsigned bodies are never parsed.
   */
  async completeMultipart(
    request: SignedRequest,
    readParts: () => Promise<PartReference[]>,
  ): Promise<{ key: string; object: ObjectInfo & { etag: string } }> {
    const { key, query } = await this.verify(request, { query: ['uploadId'] });
    const parts = await readParts();
    return { key, object: await this.multipart.receiveComplete(key, query.uploadId!, parts) };
  }

  /** AbortMultipartUpload (`DELETE /<key>?uploadId=X`). */
  async abortMultipart(request: SignedRequest): Promise<void> {
    const { key, query } = await this.verify(request, { query: ['uploadId'] });
    await this.multipart.receiveAbort(key, query.uploadId!);
  }

  /**
   * Whose body a signed request streams: the key's account, and the upload it was signed for
   * with its token, so one presigned URL (or one token's URLs) cannot take the account's every
   * stream (see UploadStreams). `most` bodies may stream to the upload at once.
   */
  private async ownerOf(key: string, kind: Upload['kind'], most: number): Promise<StreamOwner> {
    const upload = await this.uploads.uploadByKey(key, kind);
    return { accountId: accountOfKey(key), tokenId: upload.tokenId, upload: { key, most } };
  }

  /**
   * The signature, then what this operation needs it to cover, then that the key's account is
   * not disabled. Query parameters are always covered when present (SigV4 signs the whole
   * query), so only their presence is checked.
   */
  private async verify(
    request: SignedRequest,
    needs: { headers?: string[]; query?: string[] },
    now = this.clock.now(),
  ): Promise<VerifiedRequest> {
    const verified = await this.verifier.verify(request, now);
    for (const name of needs.headers ?? []) {
      if (!verified.signedHeaders.includes(name)) {
        throw new WharfError('INVALID_SIGNATURE', `The signature must cover ${name}.`);
      }
    }
    for (const name of needs.query ?? []) {
      if (verified.query[name] === undefined) {
        throw new WharfError('INVALID_SIGNATURE', `The signature must cover the ${name} parameter.`);
      }
    }
    // After the signature (an unsigned request learns nothing of accounts), before any byte is
    // read: a disabled account's URLs store nothing, start nothing and complete nothing.
    await this.uploads.requireActiveAccount(accountOfKey(verified.key));
    return verified;
  }

  /**
   * A browser form's file (S3 POST Object). `fields` are the form fields that came before
   * the file; the policy they carry is checked before a byte is read, and the size range it
   * sets is enforced while the file streams.
   */
  async postObject(
    fields: Record<string, string>,
    file: { body: Readable; contentType: string | undefined },
  ): Promise<Digests> {
    // As for a PUT, the policy's expiry is judged as the form arrives (its fields come first).
    const startedAt = this.clock.now();
    try {
      const conditions = await this.verifier.verifyPost(fields, startedAt);
      await this.uploads.requireActiveAccount(accountOfKey(conditions.key));
      // The form's fields (20 KB each at most) are read before its policy names the key.
      const owner = await this.ownerOf(conditions.key, 'post', BODIES_PER_URL);
      return await this.uploads.streams.holding(owner, () =>
        this.uploads.receivePost({
          key: conditions.key,
          contentType: file.contentType,
          body: file.body,
          minSize: conditions.minSize,
          maxSize: conditions.maxSize,
          startedAt,
        }),
      );
    } catch (err) {
      file.body.resume();
      throw err;
    }
  }
}

function headerOf(request: SignedRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function requireLength(request: SignedRequest): number {
  const length = headerOf(request, 'content-length');
  if (length === undefined || !/^\d+$/.test(length)) {
    throw new WharfError('LENGTH_REQUIRED', 'You must provide the Content-Length HTTP header.');
  }
  return Number(length);
}

function partNumberOf(value: string): number {
  if (!/^\d{1,5}$/.test(value)) {
    throw new WharfError('VALIDATION_FAILED', 'Part number must be an integer between 1 and 10000.');
  }
  return Number(value);
}
