import { lookup } from 'mime-types';

/**
 * A file's media type from its name's extension, as a browser gives a `File` its `type`: so a
 * file read from disk is declared as what it is (an upload token limited to `image/*` takes a
 * PNG, listings by type find it, downloads are served as it) rather than as
 * application/octet-stream. From mime-db (through mime-types), the database Node's HTTP world
 * keeps; an unknown extension stays untyped (the upload then declares
 * application/octet-stream). Node only: a browser's File already carries its type, and the
 * SDK's browser entry does not import this. The server's seed APIs type files by name with it
 * too (src/http/compat/content-types.ts).
 */

/**
 * Where mime-db's choice is not the type browsers give such a File: a `.jfif` is a JPEG
 * (mime-db says image/pjpeg, which only old Internet Explorer sent, and which no image check
 * would take for a JPEG), and FLAC has been registered as audio/flac since 2022 (mime-db keeps
 * audio/x-flac).
 */
const BROWSERS_DIFFER: Record<string, string> = { jfif: 'image/jpeg', flac: 'audio/flac' };

/** The media type the name's extension stands for (`photo.PNG`: image/png), if it is a known one. */
export function typeFromName(name: string): string | undefined {
  // The name must have an extension: mime-types alone would type a file called `txt` as text.
  const extension = /\.([A-Za-z0-9]{1,10})$/.exec(name)?.[1]?.toLowerCase();
  if (extension === undefined) return undefined;
  return BROWSERS_DIFFER[extension] ?? (lookup(extension) || undefined);
}
