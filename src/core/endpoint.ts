import type { Readable } from 'node:stream';
import type { Clock } from './clock.js';
import { parseContentMd5, parseDigest } from './digests.js';
import { WharfError } from './errors.js';
import type { Digests } from './model.js';
import type { PresignVerifier, SignedRequest } from './ports.js';
import type { MultipartService } from './multipart.js';
import type { UploadService } from './uploads.js';

/**
 * The embedded deployment's object-store face: presigned PUTs land here. Everything the
 * URL bound (signature, expiry, type, size, digests) is checked before the object exists.
 */
export class StorageEndpointService {
  constructor(
    private readonly verifier: PresignVerifier,
    private readonly uploads: UploadService,
    private readonly multipart: MultipartService,
    private readonly clock: Clock,
  ) {}

  async putObject(request: SignedRequest, body: Readable): Promise<Digests> {
    try {
      const { key } = await this.verifier.verify(request, this.clock.now());
      const header = (name: string): string | undefined => {
        const value = request.headers[name];
        return Array.isArray(value) ? value.join(',') : value;
      };
      const length = header('content-length');
      if (length === undefined || !/^\d+$/.test(length)) {
        throw new WharfError('LENGTH_REQUIRED', 'You must provide the Content-Length HTTP header.');
      }
      const md5 = header('content-md5');
      const sha256 = header('x-amz-checksum-sha256');
      return await this.uploads.receive({
        key,
        contentType: header('content-type') ?? '',
        size: Number(length),
        body,
        expected: {
          md5: md5 === undefined ? undefined : parseContentMd5(md5),
          sha256: sha256 === undefined ? undefined : parseDigest('sha256', sha256, 'x-amz-checksum-sha256'),
        },
      });
    } catch (err) {
      // Nothing was written; let the client's remaining bytes drain so it reads our answer.
      body.resume();
      throw err;
    }
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
    try {
      const conditions = await this.verifier.verifyPost(fields, this.clock.now());
      return await this.uploads.receivePost({
        key: conditions.key,
        contentType: file.contentType,
        body: file.body,
        minSize: conditions.minSize,
        maxSize: conditions.maxSize,
      });
    } catch (err) {
      file.body.resume();
      throw err;
    }
  }
}
