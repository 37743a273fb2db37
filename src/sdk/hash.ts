import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

/** An incremental SHA-256: fed the bytes as they are read, never the whole file at once. */
export interface Hasher {
  update(chunk: Uint8Array): void;
  /** The digest, hex. Call once, after the last update. */
  hex(): string;
}

export type HasherFactory = () => Hasher;

/**
 * SHA-256 in plain JavaScript (@noble/hashes, audited), for where node:crypto is absent: Web
 * Crypto's digest() takes the whole input at once, which a file of gigabytes cannot be. Node
 * programs get node:crypto's native one from `sdk/node.js`.
 */
export const portableSha256: HasherFactory = () => {
  const hash = sha256.create();
  return {
    update: (chunk) => {
      hash.update(chunk);
    },
    hex: () => bytesToHex(hash.digest()),
  };
};

/** Hex (64 digits) or base64 (44 characters) SHA-256, as hex; undefined when it is neither. */
export function sha256Hex(value: string): string | undefined {
  if (/^[0-9a-f]{64}$/i.test(value)) return value.toLowerCase();
  if (/^[A-Za-z0-9+/]{43}=$/.test(value)) {
    const binary = atob(value);
    let hex = '';
    for (let i = 0; i < binary.length; i++) hex += binary.charCodeAt(i).toString(16).padStart(2, '0');
    return hex;
  }
  return undefined;
}
