import { createCipheriv, randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { MiB } from './config.js';
import type { FileBody } from './http-client.js';

/**
 * Writes `bytes` of incompressible pseudo-random data. AES-CTR over zeros is a keystream
 * several times faster than crypto.randomFill, so a 1 GiB file takes about a second; the
 * file is left in the page cache (no fsync), where client reads cost almost nothing.
 */
export async function writeRandomFile(path: string, bytes: number): Promise<void> {
  const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
  const zeros = Buffer.alloc(4 * MiB);
  const handle = await open(path, 'wx', 0o600);
  try {
    for (let written = 0; written < bytes; ) {
      const n = Math.min(zeros.length, bytes - written);
      const chunk = cipher.update(n === zeros.length ? zeros : zeros.subarray(0, n));
      await handle.write(chunk);
      written += n;
    }
  } finally {
    await handle.close();
  }
}

/**
 * Streamed before the file's bytes, so every upload has distinct content even when it
 * reuses the same source: Wharf deduplicates identical content per account.
 */
export function uniquePrefix(): Buffer {
  return randomBytes(16);
}

/** A body of `length` bytes (prefix included) read from `offset` of the source file. */
export function fileBody(
  source: { dataFile: string; dataFileBytes: number },
  offset: number,
  length: number,
): FileBody {
  return { prefix: uniquePrefix(), file: source.dataFile, fileSize: source.dataFileBytes, offset, length };
}
