import { parseDigest } from '../../../core/digests.js';
import { isWharfError, WharfError } from '../../../core/errors.js';
import { fieldError } from './errors.js';

export type Checksum = { md5: string; sha256?: undefined } | { sha256: string; md5?: undefined };

const LOC = ['body', 'blob', 'checksum'];

/**
 * ActiveStorage clients send the base64 MD5 (24 characters); the document's example is a
 * base64 SHA-256 (44 characters). The length tells them apart. Returns hex.
 */
export function parseChecksum(value: string): Checksum {
  try {
    if (value.length === 24) return { md5: parseDigest('md5', value, 'checksum') };
    if (value.length === 44) return { sha256: parseDigest('sha256', value, 'checksum') };
  } catch (err) {
    // The core's message offers hex too, which no checksum of these lengths can be.
    if (!isWharfError(err)) throw err;
  }
  throw fieldError(
    LOC,
    new WharfError(
      'INVALID_DIGEST',
      'checksum must be the base64 MD5 (24 characters) or base64 SHA-256 (44 characters) of the file.',
    ),
    value,
  );
}
