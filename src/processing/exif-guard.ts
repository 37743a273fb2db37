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

const PNG_SIGNATURE = Buffer.from('89504e470d0a1a0a', 'hex');

/**
 * exifr's PNG parser inflates the colour profile of an iCCP chunk whole, with no limit, on
 * the main thread, whatever the options say (`icc: false` does not stop it): a 1 MB chunk
 * that inflates to 1 GiB took the process from 400 MB to 1.5 GB and stalled every request
 * for seconds. No caller here wants the profile (sharp reads its own, within libspng's
 * limits), so a PNG reaches exifr without its iCCP chunks. That is the only chunk exifr
 * inflates: it reads tEXt, iTXt (XMP) and eXIf as stored and ignores zTXt; in JPEG, HEIF and
 * TIFF an ICC profile is stored uncompressed. The chunks are walked as exifr walks them (the
 * length plus 12 bytes on, the type in any case), so every chunk it would find is seen; a
 * chunk that runs past the end it cannot read anyway (it gives up on the whole file).
 */
function withoutIccp(bytes: Buffer): Buffer {
  const kept: Buffer[] = [];
  let from = 0;
  for (let at = PNG_SIGNATURE.length; at + 8 <= bytes.length; ) {
    const end = at + 12 + bytes.readUInt32BE(at);
    if (bytes.toString('latin1', at + 4, at + 8).toLowerCase() === 'iccp') {
      kept.push(bytes.subarray(from, at));
      from = end;
    }
    at = end;
  }
  if (from === 0) return bytes;
  kept.push(bytes.subarray(Math.min(from, bytes.length)));
  return Buffer.concat(kept);
}

function isPng(bytes: Buffer): boolean {
  return (
    bytes.length >= PNG_SIGNATURE.length && PNG_SIGNATURE.equals(bytes.subarray(0, PNG_SIGNATURE.length))
  );
}

/**
 * exifr.parse, except on the inputs known to hang it (see above), where nothing is found,
 * and on a PNG's colour profile, which it is not given (see withoutIccp).
 */
export async function parseMetadata(bytes: Buffer, options: Record<string, unknown>): Promise<unknown> {
  if (isIsoBmff(bytes) && !isoBoxesReachMeta(bytes)) return undefined;
  return exifr.parse(isPng(bytes) ? withoutIccp(bytes) : bytes, options);
}
