import { WharfError } from './errors.js';

/**
 * File names are display metadata only: storage keys never derive from them, so a name
 * cannot reach the filesystem. They still end up in Content-Disposition headers, logs and
 * other people's download dialogs, so names that could mislead or break those are refused
 * outright rather than silently rewritten (a rewritten name would lose what the user sent).
 */
const MAX_NAME_BYTES = 255;

// C0 controls (NUL, CR, LF, TAB…), DEL and C1 controls.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;
// Characters a name shows nothing of, which make two different names look identical or a
// name look empty: Unicode's default-ignorable code points (bidirectional overrides and
// isolates, "invoice\u202Efdp.exe" showing as "invoiceexe.pdf"; zero-width characters; the
// BOM; the soft hyphen; Hangul fillers, which look blank; tag characters), and the line and
// paragraph separators. By property rather than by list: the list missed some (fuzzing).
// Variation selectors are kept: they pick an emoji's presentation ("❤️") and hide nothing.
const INVISIBLE = /(?![\uFE00-\uFE0F\u{E0100}-\u{E01EF}])[\p{Default_Ignorable_Code_Point}\p{Zl}\p{Zp}]/u;
const SEPARATOR = /[/\\]/u;
// A high surrogate not followed by a low one, or a low one not after a high one (no `u` flag:
// it matches UTF-16 code units). String.prototype.isWellFormed says the same, from ES2024 on.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function validateFileName(raw: string): string {
  // A lone UTF-16 surrogate (JSON's "\ud800" escape) is no character at all: it would be
  // stored as U+FFFD, a name the client never sent. Checked before normalize(), which keeps it.
  if (LONE_SURROGATE.test(raw)) {
    throw new WharfError(
      'INVALID_NAME',
      'The file name is not valid Unicode (it contains a lone surrogate).',
    );
  }
  const name = raw.normalize('NFC');
  if (name.length === 0) throw new WharfError('INVALID_NAME', 'The file name is empty.');
  if (CONTROL.test(name)) {
    throw new WharfError('INVALID_NAME', 'The file name contains control characters (NUL, CR, LF, …).');
  }
  // U+FFFD is what a decoder puts for bytes that are not UTF-8 (a query or multipart filename
  // in another encoding, damaged base64): the name the client meant is not there to store.
  if (name.includes('\uFFFD')) {
    throw new WharfError('INVALID_NAME', 'The file name is not valid UTF-8 (it contains U+FFFD).');
  }
  if (INVISIBLE.test(name)) {
    throw new WharfError(
      'INVALID_NAME',
      'The file name contains invisible or bidirectional-override characters.',
    );
  }
  if (SEPARATOR.test(name)) {
    throw new WharfError('INVALID_NAME', 'The file name must not contain "/" or "\\".');
  }
  if (name === '.' || name === '..')
    throw new WharfError('INVALID_NAME', 'The file name must not be "." or "..".');
  if (name.trim().length === 0) throw new WharfError('INVALID_NAME', 'The file name is blank.');
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) {
    throw new WharfError('INVALID_NAME', `The file name is longer than ${MAX_NAME_BYTES} bytes.`);
  }
  return name;
}

// RFC 9110 media type: type "/" subtype, both tokens; parameters allowed after ";", with
// optional whitespace (OWS: spaces and tabs only) around it. Not \s, which also takes CR, LF
// and Unicode spaces: a stored type must be a header value as it is, and the listing filter
// finds a type's parameters after the blanks OWS allows (see listAssets).
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const MEDIA_TYPE = new RegExp(`^${TOKEN}/${TOKEN}([ \\t]*;[ \\t]*${TOKEN}=(${TOKEN}|"[^"\\\\\\r\\n]*"))*$`);

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

export function validateContentType(raw: string | undefined | null): string {
  if (raw === undefined || raw === null || raw === '') return DEFAULT_CONTENT_TYPE;
  const value = raw.trim();
  if (value.length > 255 || !MEDIA_TYPE.test(value)) {
    throw new WharfError(
      'INVALID_CONTENT_TYPE',
      'The content type is not a valid media type (type/subtype).',
    );
  }
  return value.toLowerCase();
}

const TYPE_FAMILY = new RegExp(`^${TOKEN}/\\*$`);

/**
 * A listing filter: a media type, a whole family such as `image/*`, or the wildcard of all
 * types (no filter). Returned as the type alone, lower case: parameters say nothing about what
 * a file is, so `text/csv` finds `text/csv; charset=utf-8` and a filter's own parameters are
 * ignored (as an upload token's content_types match, see typeAllowed).
 */
export function validateTypeFilter(raw: string): string | undefined {
  const value = raw.trim().toLowerCase();
  const type = value.split(';', 1)[0]!.trim();
  if (type === '*/*') return undefined;
  if (TYPE_FAMILY.test(type)) return type;
  // `*` is a token character, so `*/csv` reads as a media type; as a filter it means "any
  // type of subtype csv", which is not offered, and it found only a file sent as literally
  // `*/csv`: nothing the user meant. Refused, as a wildcard stands for a whole subtype only.
  if (type.startsWith('*/')) {
    throw new WharfError(
      'INVALID_CONTENT_TYPE',
      'A content type filter is a media type, a family such as image/*, or */*; */subtype is not one.',
    );
  }
  validateContentType(value);
  return type;
}
