import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseContentMd5 } from '../../core/digests.js';
import { WharfError } from '../../core/errors.js';
import { declaredContentDigest } from '../rufh/protocol.js';

/**
 * tus's checksum extension, which tus.io's server does not implement: a PATCH (or a creation
 * with upload) may carry `Upload-Checksum: <algorithm> <base64 digest>` of its body, and a body
 * that does not match must leave the upload untouched. Handing the body to the server while
 * hashing would write the bytes before the digest is known, so Wharf first stages the body
 * in a file (memory stays flat whatever the chunk size), compares, and only then hands the
 * staged bytes over.
 */
export const CHECKSUM_ALGORITHMS = ['sha1', 'md5', 'sha256'] as const;
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];

/** The status tus defines for a body whose checksum does not match (not an HTTP standard one). */
export const CHECKSUM_MISMATCH_STATUS = 460;

export interface DeclaredChecksum {
  algorithm: ChecksumAlgorithm;
  digest: Buffer;
}

const LENGTH: Record<ChecksumAlgorithm, number> = { sha1: 20, md5: 16, sha256: 32 };
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** The `Upload-Checksum` header's checksum; undefined without one; 400 for anything unusable. */
export function parseUploadChecksum(header: string | string[] | undefined): DeclaredChecksum | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header.join(',') : header;
  const match = /^\s*(\S+) +(\S+)\s*$/.exec(value);
  if (!match) {
    throw new WharfError('VALIDATION_FAILED', 'Upload-Checksum must be "<algorithm> <base64 digest>".');
  }
  const algorithm = match[1]!.toLowerCase();
  if (!(CHECKSUM_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw new WharfError(
      'VALIDATION_FAILED',
      `Unsupported checksum algorithm ${JSON.stringify(match[1])}; use one of ${CHECKSUM_ALGORITHMS.join(', ')}.`,
      { supported: [...CHECKSUM_ALGORITHMS] },
    );
  }
  const digest = BASE64.test(match[2]!) ? Buffer.from(match[2]!, 'base64') : Buffer.alloc(0);
  if (digest.length !== LENGTH[algorithm as ChecksumAlgorithm]) {
    throw new WharfError('INVALID_DIGEST', `Upload-Checksum is not a base64 ${algorithm} digest.`);
  }
  return { algorithm: algorithm as ChecksumAlgorithm, digest };
}

export interface StagedBody {
  path: string;
  size: number;
  matches: boolean;
  /** The first declared checksum the body does not match. */
  mismatched?: ChecksumAlgorithm | undefined;
}

/**
 * Writes `body` to a new file in `dir`, hashing it on the way (one hash per checksum: a request
 * may declare its content's SHA-256 and MD5 at once); more than `limit` bytes fail with
 * FILE_TOO_LARGE. `matches` only when every checksum does. `trailing` gives the checksums that
 * arrive after the body (trailer fields, see digest-trailers.ts): read once it has ended, and
 * compared like the others, so every algorithm they may name (SHA-256, MD5) is hashed too; what
 * it throws fails the staging. The caller removes the file (it is removed here only on failure).
 */
export async function stageBody(
  body: Readable,
  dir: string,
  limit: number,
  checksums: DeclaredChecksum | readonly DeclaredChecksum[],
  trailing?: () => DeclaredChecksum[],
): Promise<StagedBody> {
  const declared = Array.isArray(checksums) ? checksums : [checksums as DeclaredChecksum];
  const path = join(dir, `${randomUUID()}.body`);
  const algorithms = new Set(declared.map((c) => c.algorithm));
  if (trailing) for (const algorithm of TRAILER_ALGORITHMS) algorithms.add(algorithm);
  const hashes = new Map([...algorithms].map((algorithm) => [algorithm, createHash(algorithm)]));
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done: TransformCallback) {
      size += chunk.length;
      if (size > limit) {
        done(
          new WharfError('FILE_TOO_LARGE', `The request body is larger than the upload's ${limit} bytes.`),
        );
        return;
      }
      for (const hash of hashes.values()) hash.update(chunk);
      done(null, chunk);
    },
  });
  let all: readonly DeclaredChecksum[];
  try {
    await pipeline(body, tap, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
    all = trailing ? [...declared, ...trailing()] : declared;
  } catch (err) {
    await rm(path, { force: true });
    throw err;
  }
  const digests = new Map([...hashes].map(([algorithm, hash]) => [algorithm, hash.digest()]));
  const mismatched = all.find((c) => !digests.get(c.algorithm)!.equals(c.digest))?.algorithm;
  return { path, size, matches: mismatched === undefined, mismatched };
}

/** What a digest trailer may declare (contentChecksums of Content-Digest, Content-MD5). */
const TRAILER_ALGORITHMS: readonly ChecksumAlgorithm[] = ['sha256', 'md5'];

/**
 * What a request declares of its own content (not the whole file's), as HTTP spells it:
 * Content-Digest's sha-256 (RFC 9530) and Content-MD5 (RFC 1864). Checked like Upload-Checksum.
 */
export function contentChecksums(headers: IncomingHttpHeaders): DeclaredChecksum[] {
  const checksums: DeclaredChecksum[] = [];
  const sha256 = declaredContentDigest(headers);
  if (sha256) checksums.push({ algorithm: 'sha256', digest: Buffer.from(sha256, 'hex') });
  const md5 = headers['content-md5'];
  if (typeof md5 === 'string')
    checksums.push({ algorithm: 'md5', digest: Buffer.from(parseContentMd5(md5), 'hex') });
  return checksums;
}
