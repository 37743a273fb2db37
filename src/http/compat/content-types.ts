/**
 * Types by file name, for seed APIs whose clients do not say what they send. file-service:
 * the document promises "all file image extensions", and its clients send files raw
 * (`--data-binary`, which curl labels application/x-www-form-urlencoded) or in forms whose
 * part type curl only knows for a handful of extensions: so the type is taken from the
 * name's extension when the request does not really say. Sniffing the bytes would mean
 * buffering them; the processing job records the sniffed type separately (analysis.mime).
 * FileSpin: the document's form carries no type, so its file name's stands in.
 */
const BY_EXTENSION: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  jpe: 'image/jpeg',
  jfif: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  heic: 'image/heic',
  heif: 'image/heif',
  bmp: 'image/bmp',
  tif: 'image/tiff',
  tiff: 'image/tiff',
  ico: 'image/vnd.microsoft.icon',
  svg: 'image/svg+xml',
  pdf: 'application/pdf',
  txt: 'text/plain',
  csv: 'text/csv',
  json: 'application/json',
  xml: 'application/xml',
  html: 'text/html',
  htm: 'text/html',
  zip: 'application/zip',
  mp4: 'video/mp4',
  mov: 'video/quicktime',
  webm: 'video/webm',
  mp3: 'audio/mpeg',
  wav: 'audio/wav',
};

const GENERIC = new Set(['', 'application/octet-stream', 'application/x-www-form-urlencoded']);

/** The declared type when it says something; otherwise the extension's, if known. */
export function contentTypeFor(name: string, declared: string | undefined): string | undefined {
  const base = declared?.split(';')[0]?.trim().toLowerCase() ?? '';
  if (!GENERIC.has(base)) return declared;
  const extension = /\.([A-Za-z0-9]{1,10})$/.exec(name)?.[1]?.toLowerCase();
  return (extension && BY_EXTENSION[extension]) ?? (base === 'application/octet-stream' ? base : undefined);
}
