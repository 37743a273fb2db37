import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { ChecksumAlgorithms, RunningChecksum } from '../core/ports.js';

/**
 * The S3 flexible checksums the embedded endpoint verifies besides SHA-256 (which the core's
 * hashing checks): CRC32 (the AWS SDK's default since 2025) and SHA-1 from Node itself, CRC32C
 * and CRC64NVME from the AWS SDK's own implementation (`@aws-sdk/checksums`, the package the S3
 * client computes them with; a declared dependency, since it is imported here, though AWS keeps it
 * among its internal packages: an SDK upgrade that moves it shows in the storage endpoint tests),
 * loaded only when a request first declares one, so an embedded server that never sees one does
 * not load it.
 */
export const flexibleChecksums: ChecksumAlgorithms = new Map([
  ['crc32', { bytes: 4, create: async () => new Crc32() }],
  ['crc32c', { bytes: 4, create: async () => new (await awsCrc()).Crc32c() }],
  ['crc64nvme', { bytes: 8, create: async () => new (await awsCrc()).Crc64Nvme() }],
  ['sha1', { bytes: 20, create: async () => hashing('sha1') }],
]);

function awsCrc() {
  return import('@aws-sdk/checksums/crc');
}

/** zlib's CRC-32 (the one S3 uses), carried from chunk to chunk. */
class Crc32 implements RunningChecksum {
  private value = 0;

  update(chunk: Uint8Array): void {
    this.value = crc32(chunk, this.value);
  }

  async digest(): Promise<Uint8Array> {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(this.value >>> 0);
    return out;
  }
}

function hashing(algorithm: string): RunningChecksum {
  const hash = createHash(algorithm);
  return {
    update: (chunk) => {
      hash.update(chunk);
    },
    digest: async () => hash.digest(),
  };
}
