import type { Account, ApiKey } from '../core/model.js';
import type { Delivery, Webhook } from '../core/webhooks.js';

// The CLI's JSON is the API's: one serializer for both.
export { keyJson } from '../http/api/keys.js';
export { deliveryJson, webhookJson } from '../http/api/webhook-json.js';

function scopesOf(key: ApiKey): string {
  const confined = [
    ...(key.namePrefix === null ? [] : [`names ${key.namePrefix}*`]),
    ...(key.namespace === null ? [] : [`namespace ${key.namespace}`]),
  ];
  return key.scopes.join(',') + (confined.length > 0 ? ` (${confined.join(', ')})` : '');
}

export function accountJson(account: Account) {
  return {
    id: account.id,
    name: account.name,
    max_file_size: account.maxFileSize,
    storage_quota: account.storageQuota,
    disabled: account.disabled,
    strip_gps: account.stripGps,
    created_at: iso(account.createdAt),
  };
}

export function keyTable(keys: ApiKey[]): string {
  return table(
    ['ID', 'ACCOUNT', 'SCOPES', 'NAME', 'PREFIX', 'CREATED', 'LAST USED', 'STATUS'],
    keys.map((k) => [
      k.id,
      k.accountId,
      scopesOf(k),
      k.name,
      `${k.prefix}…`,
      iso(k.createdAt),
      k.lastUsedAt === null ? '-' : iso(k.lastUsedAt),
      k.revokedAt === null ? 'active' : `revoked ${iso(k.revokedAt)}`,
    ]),
  );
}

export function webhookTable(hooks: Webhook[]): string {
  return table(
    ['ID', 'URL', 'EVENTS', 'STATUS', 'DESCRIPTION'],
    hooks.map((h) => [
      h.id,
      h.url,
      h.eventTypes.length === 0 ? '*' : h.eventTypes.join(','),
      h.enabled ? 'enabled' : `disabled${h.disabledReason ? `: ${h.disabledReason}` : ''}`,
      h.description,
    ]),
  );
}

export function deliveryTable(deliveries: Delivery[]): string {
  return table(
    ['ID', 'EVENT', 'STATUS', 'ATTEMPTS', 'LAST ANSWER', 'NEXT ATTEMPT', 'CREATED'],
    deliveries.map((d) => [
      d.id,
      d.eventType,
      d.status,
      String(d.attempts),
      d.lastError ?? (d.responseStatus === null ? '-' : `HTTP ${d.responseStatus}`),
      d.nextAttemptAt === null ? '-' : iso(d.nextAttemptAt),
      iso(d.createdAt),
    ]),
  );
}

export function accountTable(accounts: Account[]): string {
  return table(
    ['ID', 'NAME', 'MAX FILE SIZE', 'STORAGE QUOTA', 'DISABLED', 'CREATED'],
    accounts.map((a) => [
      a.id,
      a.name,
      a.maxFileSize === null ? 'server default' : String(a.maxFileSize),
      a.storageQuota === null ? 'unlimited' : String(a.storageQuota),
      a.disabled ? 'yes' : 'no',
      iso(a.createdAt),
    ]),
  );
}

/** Left-aligned columns separated by two spaces; control characters shown escaped. */
export function table(header: string[], rows: string[][]): string {
  const cells = [header, ...rows.map((row) => row.map(printable))];
  const widths = header.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  return cells
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

// Names are free text; a newline or an escape sequence must not rewrite the terminal.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

export function printable(value: string): string {
  return value.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
