import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import contentDisposition from 'content-disposition';
import type { FastifyReply, FastifyRequest } from 'fastify';
import rangeParser from 'range-parser';
import { WharfError } from '../../../core/errors.js';
import type { ByteRange } from '../../../core/ports.js';
import { downloadBuffers, type ReadBuffers } from '../../../core/read-buffers.js';

/** Stored bytes to answer with: an asset's content or one of its derivatives. */
export interface StoredBytes {
  size: number;
  /** Hex SHA-256: the strong ETag and Repr-Digest. */
  sha256: string;
  contentType: string;
  /** The whole Content-Disposition header. */
  disposition: string;
  read(range?: ByteRange): Promise<Readable>;
  /**
   * `cross-origin` lets pages of other sites embed the bytes (<img> of a signed or public
   * image); the default `same-site` keeps them to Wharf's own site.
   */
  resourcePolicy?: 'same-site' | 'cross-origin';
}

/** A response body of raw bytes (documentation only: streams are never serialised). */
export function binary(description: string) {
  return { description, content: { '*/*': { schema: { type: 'string', format: 'binary' } } } };
}

/**
 * Answers with stored bytes: ETag and If-None-Match (304), a single Range (206; 416 when it
 * cannot be satisfied), the whole body otherwise. Shared by originals and derivatives.
 */
export async function sendStored(request: FastifyRequest, reply: FastifyReply, bytes: StoredBytes) {
  const etag = `"${bytes.sha256}"`;
  reply
    .header('etag', etag)
    .header('accept-ranges', 'bytes')
    .header('content-type', bytes.contentType)
    .header('content-disposition', bytes.disposition)
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', "default-src 'none'; sandbox")
    .header('cross-origin-resource-policy', bytes.resourcePolicy ?? 'same-site')
    .header('repr-digest', `sha-256=:${Buffer.from(bytes.sha256, 'hex').toString('base64')}:`);

  // If-None-Match compares weakly (RFC 9110 §13.1.2): a W/ prefix a proxy added still matches.
  // If-Range below compares strongly, as it must.
  const ifNoneMatch = request.headers['if-none-match'];
  if (ifNoneMatch?.split(',').some((t) => t.trim().replace(/^W\//, '') === etag || t.trim() === '*')) {
    // No payload at all: Fastify's HEAD route (exposed from a GET) fails on a null one.
    return reply.status(304).send(undefined as never);
  }

  const size = bytes.size;
  const rangeHeader = request.headers.range;
  const ifRange = request.headers['if-range'];
  if (rangeHeader && (ifRange === undefined || ifRange === etag)) {
    // RFC 9110 §14.1.3: a suffix longer than the file selects all of it (range-parser
    // drops such a range, which would make "bytes=-1000" of a small file a 416).
    const header = rangeHeader.replace(/(=|,)\s*-(\d+)\s*(?=,|$)/g, (spec, lead: string, suffix: string) =>
      size > 0 && Number(suffix) > size ? `${lead}0-` : spec,
    );
    const ranges = rangeParser(size, header, { combine: true });
    // A unit other than bytes ("items=0-4") is not ours to interpret: the header is ignored.
    const bytesUnit = /^bytes=/i.test(rangeHeader);
    if (bytesUnit && ranges === -1) {
      reply.header('content-range', `bytes */${size}`);
      throw new WharfError('RANGE_NOT_SATISFIABLE', `The file has ${size} bytes.`);
    }
    // A malformed header or several ranges: answer with the whole file (RFC 9110 allows it).
    if (bytesUnit && ranges !== -1 && ranges !== -2 && ranges.length === 1) {
      const range = ranges[0]!;
      const stream = await bytes.read(range);
      giveBackAfterWrite(reply.raw, downloadBuffers);
      return reply
        .status(206)
        .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
        .header('content-length', range.end - range.start + 1)
        .send(stream);
    }
  }
  if (size === 0) return reply.header('content-length', 0).send('');
  const stream = await bytes.read();
  giveBackAfterWrite(reply.raw, downloadBuffers);
  return reply.header('content-length', size).send(stream);
}

type WriteCallback = (error?: Error | null) => void;

/**
 * Gives each lent chunk this response writes back to `buffers` once the socket has taken its
 * bytes (the write's callback), so a download reuses a few buffers instead of allocating one
 * per chunk (see ReadBuffers). The response is the chunk's only holder by then: the stream
 * from storage hands each chunk on unchanged and keeps no reference.
 */
function giveBackAfterWrite(response: ServerResponse, buffers: ReadBuffers): void {
  const write = response.write.bind(response) as (
    chunk: unknown,
    encoding?: BufferEncoding,
    callback?: WriteCallback,
  ) => boolean;
  response.write = ((chunk: unknown, encoding?: BufferEncoding | WriteCallback, callback?: WriteCallback) => {
    if (typeof encoding === 'function') {
      callback = encoding;
      encoding = undefined;
    }
    if (!(chunk instanceof Uint8Array) || !buffers.owns(chunk)) return write(chunk, encoding, callback);
    return write(chunk, encoding, (error) => {
      buffers.giveBack(chunk);
      callback?.(error);
    });
  }) as ServerResponse['write'];
}

/**
 * Content-Disposition for a stored name: plain ASCII in `filename` (accents dropped, anything
 * else `_`), the name itself in `filename*` (RFC 8187). ASCII only, so the header is the same
 * byte for byte whether Wharf streams the bytes or storage does after a redirect (S3 sends a
 * Latin-1 byte of a quoted name back as UTF-8).
 */
export function dispositionHeader(name: string, type: 'inline' | 'attachment'): string {
  const ascii = name
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .replace(/[^\x20-\x7e]/gu, '_');
  return contentDisposition(name, { type, fallback: ascii });
}
