import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

export interface S3Options {
  /** Omit for AWS S3 itself; set for any other S3-compatible server. */
  endpoint?: string | undefined;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** `host/bucket/key` URLs instead of `bucket.host/key` (most self-hosted servers need this). */
  forcePathStyle: boolean;
}

/**
 * An S3 client that only sends checksums when an operation requires one. The SDK's default
 * sends stream uploads aws-chunked with CRC trailers, which older servers (Ceph 16) reject,
 * and puts `x-amz-checksum-crc32` of an empty body into presigned PUT URLs, which AWS S3,
 * R2 and MinIO then hold against the real body.
 */
export function createS3Client(options: S3Options): S3Client {
  return new S3Client(s3ClientConfig(options));
}

/** The settings of createS3Client, for libraries that build their own client (@tus/s3-store). */
export function s3ClientConfig(options: S3Options): S3ClientConfig {
  return {
    endpoint: options.endpoint,
    region: options.region,
    forcePathStyle: options.forcePathStyle,
    credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}
