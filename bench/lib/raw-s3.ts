import { randomBytes } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';

/**
 * The scaled deployment's reference: the S3 store itself, reached with the AWS SDK at the
 * endpoint the tests use (WHARF_TEST_S3_*, from /work/services/scaled.env or scripts/services).
 * A fresh bucket per use, emptied and dropped afterwards.
 */
export interface RawBucket {
  s3: S3Client;
  bucket: string;
  drop(): Promise<void>;
}

export async function rawBucket(): Promise<RawBucket> {
  const endpoint = process.env.WHARF_TEST_S3_ENDPOINT;
  if (!endpoint)
    throw new Error('the raw S3 reference needs WHARF_TEST_S3_ENDPOINT (source /work/services/scaled.env)');
  const { S3Client, CreateBucketCommand, DeleteBucketCommand, DeleteObjectsCommand, ListObjectsV2Command } =
    await import('@aws-sdk/client-s3');
  const s3 = new S3Client({
    endpoint,
    region: process.env.WHARF_TEST_S3_REGION ?? 'us-east-1',
    forcePathStyle: true,
    credentials: {
      accessKeyId: process.env.WHARF_TEST_S3_ACCESS_KEY_ID ?? '',
      secretAccessKey: process.env.WHARF_TEST_S3_SECRET_ACCESS_KEY ?? '',
    },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const bucket = `wharf-bench-${randomBytes(6).toString('hex')}`;
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    s3,
    bucket,
    async drop() {
      try {
        for (;;) {
          const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
          const keys = (listed.Contents ?? []).map((o) => ({ Key: o.Key! }));
          if (keys.length === 0) break;
          await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
        }
        await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
      } finally {
        s3.destroy();
      }
    },
  };
}
