/**
 * How `wharf assets verify` and `wharf data backup` report an asset whose stored bytes are
 * missing or differ from its record: one line as it is found, or one JSON object.
 */
import type { Digests } from '../core/model.js';
import { printable } from './format.js';

export interface StoredBytesProblem {
  kind: 'missing' | 'size_mismatch' | 'checksum_mismatch';
  assetId: string;
  accountId: string;
  name: string | null;
  storageKey: string;
  recorded: { size: number; sha256: string; md5: string | null };
  /** What storage held instead (none when missing). */
  found?: Digests | undefined;
}

const WHAT: Record<StoredBytesProblem['kind'], string> = {
  missing: 'MISSING',
  size_mismatch: 'SIZE MISMATCH',
  checksum_mismatch: 'CHECKSUM MISMATCH',
};

export function problemLine({
  kind,
  assetId,
  accountId,
  name,
  storageKey,
  recorded,
  found,
}: StoredBytesProblem): string {
  const detail =
    kind === 'missing' || !found
      ? `storage holds no object under ${storageKey}`
      : kind === 'size_mismatch'
        ? `stored ${found.size} bytes, recorded ${recorded.size}`
        : `stored SHA-256 ${found.sha256}, recorded ${recorded.sha256}`;
  return printable(`${WHAT[kind]}  ${assetId}  ${accountId}  ${name ?? ''}: ${detail}`);
}

export function problemJson(problem: StoredBytesProblem) {
  const { found } = problem;
  return {
    problem: problem.kind,
    asset_id: problem.assetId,
    account_id: problem.accountId,
    name: problem.name,
    storage_key: problem.storageKey,
    recorded: problem.recorded,
    stored: found ? { size: found.size, sha256: found.sha256, md5: found.md5 } : null,
  };
}
