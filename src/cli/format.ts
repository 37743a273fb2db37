import type { Account, ApiKey } from '../core/model.js';

// The CLI's JSON is the API's: one serializer for both.
export { keyJson } from '../http/api/keys.js';

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
    ['ID', 'ACCOUNT', 'ROLE', 'NAME', 'PREFIX', 'CREATED', 'LAST USED', 'STATUS'],
    keys.map((k) => [
      k.id,
      k.accountId,
      k.role,
      k.name,
      `${k.prefix}…`,
      iso(k.createdAt),
      k.lastUsedAt === null ? '-' : iso(k.lastUsedAt),
      k.revokedAt === null ? 'active' : `revoked ${iso(k.revokedAt)}`,
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

function printable(value: string): string {
  return value.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
