import exifr from 'exifr';

/**
 * exifr's HEIF parser walks the top-level boxes until it meets `meta`, adding each box's
 * length to its offset: a box of length 0, or a chain that runs off the end, makes it loop
 * forever without ever yielding (a buffer's chunks resolve at once), which froze the whole
 * process on a 50-byte upload. So an ISO-BMFF file (HEIC, AVIF) reaches exifr only when
 * its box chain reaches `meta` inside the bytes given, every length in bounds.
 */
function isoBoxesReachMeta(bytes: Buffer): boolean {
  let at = 0;
  while (at + 8 <= bytes.length) {
    let length = bytes.readUInt32BE(at);
    if (bytes.toString('latin1', at + 4, at + 8) === 'meta') return true;
    if (length === 1) {
      if (at + 16 > bytes.length) return false;
      const big = bytes.readBigUInt64BE(at + 8);
      if (big > BigInt(bytes.length)) return false;
      length = Number(big);
      if (length < 16) return false;
    } else if (length < 8) {
      return false;
    }
    at += length;
  }
  return false;
}

function isIsoBmff(bytes: Buffer): boolean {
  return bytes.length >= 12 && bytes.toString('latin1', 4, 8) === 'ftyp';
}

/** exifr.parse, except on the inputs known to hang it (see above): then nothing is found. */
export async function parseMetadata(bytes: Buffer, options: Record<string, unknown>): Promise<unknown> {
  if (isIsoBmff(bytes) && !isoBoxesReachMeta(bytes)) return undefined;
  return exifr.parse(bytes, options);
}
