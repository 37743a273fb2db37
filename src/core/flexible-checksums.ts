import { pipeline, type Readable, Transform, type TransformCallback } from 'node:stream';
import { WharfError } from './errors.js';
import type { ChecksumAlgorithms, RunningChecksum } from './ports.js';

/**
 * S3's flexible checksums on the embedded endpoint: a PutObject or UploadPart may declare its
 * body's checksum in `x-amz-checksum-<algorithm>` (base64). S3 refuses a body that does not
 * match (400 BadDigest) and an algorithm it does not know (400 InvalidRequest); the endpoint
 * does the same, so bytes a client said were different are never stored, and a checksum it
 * cannot compute is refused rather than ignored.
 */

const PREFIX = 'x-amz-checksum-';
/** Headers under the prefix that are settings, not a checksum of the body (CreateMultipartUpload's, GetObject's). */
const SETTINGS = new Set(['algorithm', 'type', 'mode']);
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export interface DeclaredChecksum {
  /** S3's name for it, lower case (`crc32`, `crc32c`, `crc64nvme`, `sha1`). */
  algorithm: string;
  expected: Buffer;
}

/**
 * The flexible checksums a request declares, but those the caller verifies itself (`handled`:
 * SHA-256, which the core hashes anyway). A value that is not the base64 of a digest of its
 * algorithm is INVALID_DIGEST (InvalidDigest, as for x-amz-checksum-sha256); an algorithm
 * `algorithms` does not list is refused as S3 refuses one it does not know.
 */
export function declaredChecksums(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  algorithms: ChecksumAlgorithms,
  handled: readonly string[],
): DeclaredChecksum[] {
  const declared: DeclaredChecksum[] = [];
  for (const [name, raw] of Object.entries(headers)) {
    if (!name.startsWith(PREFIX) || raw === undefined) continue;
    const algorithm = name.slice(PREFIX.length);
    if (SETTINGS.has(algorithm) || handled.includes(algorithm)) continue;
    const known = algorithms.get(algorithm);
    if (!known) {
      throw new WharfError(
        'INVALID_DIGEST',
        `Wharf does not verify the checksum algorithm of ${name}; send none, or one of ` +
          `x-amz-checksum-${['sha256', ...algorithms.keys()].join(', x-amz-checksum-')}.`,
        { s3Code: 'InvalidRequest' },
      );
    }
    const value = (Array.isArray(raw) ? raw.join(',') : raw).trim();
    const expected = BASE64.test(value) ? Buffer.from(value, 'base64') : Buffer.alloc(0);
    if (expected.length !== known.bytes) {
      throw new WharfError('INVALID_DIGEST', `Value for ${name} header is invalid.`);
    }
    declared.push({ algorithm, expected });
  }
  return declared;
}

/**
 * `body` as it is, computing the declared checksums on the way: a mismatch ends the stream with
 * CHECKSUM_MISMATCH once the last byte has passed, before whatever reads it can take the bytes
 * as whole (a store keeps nothing of a source that failed). With nothing declared, `body` itself.
 * The checksums run on the event loop, one update per chunk; SHA-256 and MD5, which every
 * upload needs, stay on the hashing workers.
 */
export async function checkingChecksums(
  body: Readable,
  declared: readonly DeclaredChecksum[],
  algorithms: ChecksumAlgorithms,
): Promise<Readable> {
  if (declared.length === 0) return body;
  const running = await Promise.all(
    declared.map(async (d) => ({ ...d, checksum: await algorithms.get(d.algorithm)!.create() })),
  );
  const checked = new ChecksumStream(running);
  // A client abort on `body` reaches `checked`, and what reads `checked` fails with it.
  pipeline(body, checked, () => {});
  return checked;
}

class ChecksumStream extends Transform {
  constructor(private readonly running: (DeclaredChecksum & { checksum: RunningChecksum })[]) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    for (const { checksum } of this.running) checksum.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    Promise.all(
      this.running.map(async (r) => ({ ...r, actual: Buffer.from(await r.checksum.digest()) })),
    ).then(
      (results) => {
        const wrong = results.find((r) => !r.actual.equals(r.expected));
        callback(
          wrong &&
            new WharfError(
              'CHECKSUM_MISMATCH',
              `The ${wrong.algorithm.toUpperCase()} you specified did not match the calculated checksum.`,
              { algorithm: wrong.algorithm },
            ),
        );
      },
      (err: Error) => callback(err),
    );
  }
}
