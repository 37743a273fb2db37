import type { WebhookStore } from './ports.js';
import { sealSecret, tryOpenSecret } from './webhooks.js';

/** What sealing the endpoints' secrets again found. */
export interface ResealReport {
  /** Endpoints whose secrets were sealed again under the current key. */
  resealed: number;
  /** Endpoints whose current secret opens under no key given: they cannot be signed for. */
  unreadable: string[];
}

/**
 * Seals again, under `key`, the webhook signing secrets that were sealed under one of
 * `previousKeys` (keys of server secrets this installation used before).
 *
 * Why: the secrets are sealed with a key derived from the server secret (they must be read to
 * sign, so they cannot be hashed), and a sealed secret opens only under its own key. Without
 * this, changing WHARF_SECRET left every endpoint unsigned: each delivery failed until the
 * endpoint was disabled as failing. Run at start; safe on several nodes at once (each row is
 * replaced only if it is still what was read) and a no-op once every secret is current.
 * A previous (rotated-out) secret that opens under no key is dropped: it only ever added a
 * second signature.
 */
export async function resealWebhookSecrets(
  store: WebhookStore,
  key: Buffer,
  previousKeys: Buffer[],
): Promise<ResealReport> {
  const report: ResealReport = { resealed: 0, unreadable: [] };
  for (const row of await store.listAllWebhookSecrets()) {
    const current = underKey(row.id, row.current, key, previousKeys);
    if (current === undefined) {
      report.unreadable.push(row.id);
      continue;
    }
    const previous =
      row.previous === null ? null : (underKey(row.id, row.previous, key, previousKeys) ?? null);
    if (current === row.current && previous === row.previous) continue;
    if (await store.resealWebhookSecrets(row.id, row, { current, previous })) report.resealed += 1;
  }
  return report;
}

/** `sealed` as sealed under `key`: itself when it is, sealed again when a previous key opens it. */
function underKey(id: string, sealed: string, key: Buffer, previousKeys: Buffer[]): string | undefined {
  if (tryOpenSecret(key, id, sealed) !== undefined) return sealed;
  for (const previous of previousKeys) {
    const secret = tryOpenSecret(previous, id, sealed);
    if (secret !== undefined) return sealSecret(key, id, secret);
  }
  return undefined;
}
