import { typeFromName } from '../../sdk/media-types.js';

/**
 * Types by file name, for seed APIs whose clients do not say what they send. file-service:
 * the document promises "all file image extensions", and its clients send files raw
 * (`--data-binary`, which curl labels application/x-www-form-urlencoded) or in forms whose
 * part type curl only knows for a handful of extensions: so the type is taken from the
 * name's extension when the request does not really say. Sniffing the bytes would mean
 * buffering them; the processing job records the sniffed type separately (analysis.mime).
 * FileSpin: the document's form carries no type, so its file name's stands in. The table is
 * the SDK's (src/sdk/media-types.ts), which a CLI upload's type comes from too: one table, so a
 * file is typed alike whichever way it arrives (the SDK, packaged alone, cannot import this).
 */

const GENERIC = new Set(['', 'application/octet-stream', 'application/x-www-form-urlencoded']);

/** The declared type when it says something; otherwise the extension's, if known. */
export function contentTypeFor(name: string, declared: string | undefined): string | undefined {
  const base = declared?.split(';')[0]?.trim().toLowerCase() ?? '';
  if (!GENERIC.has(base)) return declared;
  return typeFromName(name) ?? (base === 'application/octet-stream' ? base : undefined);
}
