import { createHash } from 'node:crypto';
import { WharfError } from './errors.js';
import type { Asset } from './model.js';

/**
 * Clients declare digests in several spellings (hex, base64, RFC 9530 fields). The core
 * keeps one: lower-case hex.
 */
const HEX = /^[0-9a-fA-F]+$/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

export type DigestAlgorithm = 'sha256' | 'md5';
const LENGTH: Record<DigestAlgorithm, number> = { sha256: 32, md5: 16 };

/** Accepts hex or base64 (standard or URL-safe); returns lower-case hex. */
export function parseDigest(algorithm: DigestAlgorithm, value: string, field: string): string {
  const bytes = LENGTH[algorithm];
  const trimmed = value.trim();
  if (trimmed.length === bytes * 2 && HEX.test(trimmed)) return trimmed.toLowerCase();
  if (BASE64.test(trimmed)) {
    const decoded = Buffer.from(
      trimmed,
      trimmed.includes('-') || trimmed.includes('_') ? 'base64url' : 'base64',
    );
    if (decoded.length === bytes) return decoded.toString('hex');
  }
  throw new WharfError(
    'INVALID_DIGEST',
    `${field} must be a ${algorithm.toUpperCase()} digest in hex or base64 (${bytes} bytes).`,
  );
}

/** Content-MD5 is base64 only (RFC 1864). */
export function parseContentMd5(value: string): string {
  const decoded = BASE64.test(value.trim()) ? Buffer.from(value.trim(), 'base64') : Buffer.alloc(0);
  if (decoded.length !== 16)
    throw new WharfError('INVALID_DIGEST', 'Content-MD5 must be the base64 of 16 bytes.');
  return decoded.toString('hex');
}

export function hexToBase64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

/**
 * S3's ETag of an object composed from parts: the MD5 of the parts' binary MD5s, a dash, the
 * part count. Worked out from the parts a Complete names, so a retried Complete answers the
 * ETag the first one did.
 */
export function compositeEtag(parts: ReadonlyArray<{ etag: string }>): string {
  const md5s = Buffer.concat(parts.map((p) => Buffer.from(p.etag.trim().replace(/^"|"$/g, ''), 'hex')));
  return `"${createHash('md5').update(md5s).digest('hex')}-${parts.length}"`;
}

/**
 * A declaration whose SHA-256 names content the account holds must agree with that content,
 * whose size and MD5 are known: a size or an MD5 that differ contradict the SHA-256.
 */
export function checkAgainstHeld(declared: { size: number; md5?: string | null }, held: Asset): void {
  if (declared.size !== held.size) {
    throw new WharfError(
      'INVALID_DIGEST',
      `The declared sha256 names a file of ${held.size} bytes, not the ${declared.size} declared.`,
    );
  }
  // An asset still being verified has no MD5 yet.
  if (declared.md5 && held.md5 !== '' && declared.md5 !== held.md5) {
    throw new WharfError('INVALID_DIGEST', 'The declared sha256 and md5 name different files.');
  }
}

/** Refuses bytes whose digests differ from those expected (each only if given). */
export function checkDigests(
  actual: { sha256: string; md5: string },
  expected: { sha256?: string | null; md5?: string | null },
): void {
  if (expected.sha256 && expected.sha256 !== actual.sha256) {
    throw new WharfError(
      'CHECKSUM_MISMATCH',
      'The SHA-256 of the received bytes does not match the declared one.',
      {
        algorithm: 'sha256',
      },
    );
  }
  if (expected.md5 && expected.md5 !== actual.md5) {
    throw new WharfError(
      'CHECKSUM_MISMATCH',
      'The MD5 of the received bytes does not match the declared one.',
      {
        algorithm: 'md5',
      },
    );
  }
}
