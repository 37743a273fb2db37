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
  /**
   * When these bytes came to be (ms): Last-Modified. Stored bytes never change under their
   * URL (an asset's content is fixed at upload, a rendering when it is made).
   */
  createdAt: number;
  contentType: string;
  /** The whole Content-Disposition header. */
  disposition: string;
  read(range?: ByteRange): Promise<Readable>;
  /**
   * `cross-origin` lets pages of other sites embed the bytes (an <img> or <video> of a signed
   * URL or a public asset); `same-site` keeps them to Wharf's own site (what a key or the
   * console's cookie unlocked). Each route says which, by how the request was authenticated.
   */
  resourcePolicy: 'same-site' | 'cross-origin';
}

const VALIDATORS = {
  ETag: 'The quoted SHA-256 of the bytes (If-None-Match, If-Match, If-Range).',
  'Last-Modified': 'When the bytes came to be: they never change (If-Modified-Since, If-Unmodified-Since).',
};
const SENT = {
  ...VALIDATORS,
  'Accept-Ranges': '`bytes`.',
  'Content-Disposition': '`inline` or `attachment`, with the file name.',
  'Repr-Digest': '`sha-256=:<base64>:` of the whole file.',
};
/** The headers sendStored answers with, by status, for the document (config.documentedHeaders). */
export const storedBytesHeaders: Record<number, Record<string, string>> = {
  200: SENT,
  206: { ...SENT, 'Content-Range': '`bytes <first>-<last>/<size>`: the range sent.' },
  304: VALIDATORS,
  416: { 'Content-Range': '`bytes */<size>`: the file’s size.' },
};

/** A response body of raw bytes (documentation only: streams are never serialised). */
export function binary(description: string) {
  return { description, content: { '*/*': { schema: { type: 'string', format: 'binary' } } } };
}

/**
 * Answers with stored bytes: ETag and Last-Modified with the conditional requests they serve
 * (If-Match, If-Unmodified-Since: 412; If-None-Match, If-Modified-Since: 304; If-Range), a
 * single Range (206; 416 when it cannot be satisfied), the whole body otherwise. Shared by
 * originals and derivatives; HEAD runs the same and answers the same headers.
 */
export async function sendStored(request: FastifyRequest, reply: FastifyReply, bytes: StoredBytes) {
  const etag = `"${bytes.sha256}"`;
  // HTTP dates have whole seconds: every comparison below is made on the value sent.
  const modified = Math.floor(bytes.createdAt / 1000) * 1000;
  const lastModified = new Date(modified).toUTCString();
  const condition = evaluatePreconditions(request.headers, etag, modified);
  if (condition === 'failed') {
    throw new WharfError(
      'PRECONDITION_FAILED',
      'If-Match or If-Unmodified-Since does not hold for these bytes (see their ETag and Last-Modified).',
      { etag, last_modified: lastModified },
    );
  }
  reply
    .header('etag', etag)
    .header('last-modified', lastModified)
    .header('accept-ranges', 'bytes')
    .header('content-type', bytes.contentType)
    .header('content-disposition', bytes.disposition)
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', "default-src 'none'; sandbox")
    .header('cross-origin-resource-policy', bytes.resourcePolicy)
    .header('repr-digest', `sha-256=:${Buffer.from(bytes.sha256, 'hex').toString('base64')}:`);

  if (condition === 'not-modified') {
    // No payload at all: Fastify's HEAD route (exposed from a GET) fails on a null one.
    return reply.status(304).send(undefined as never);
  }

  const size = bytes.size;
  const rangeHeader = request.headers.range;
  if (rangeHeader && rangeStillValid(request.headers['if-range'], etag, modified)) {
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

/*
 * The conditional requests of RFC 9110 §13, by hand. @fastify/send evaluates them only for a
 * file it stats on disk itself (these bytes come as a stream from the disk store or S3), keeps
 * its helpers private, and departs from the RFC where a demanding client notices: If-Match
 * compared weakly, If-Range's entity tag matched as a substring, If-Unmodified-Since evaluated
 * beside If-Match, every condition ignored under `Cache-Control: no-cache`. `fresh` covers the
 * 304 cases only. What follows is §13.2.2's order, nothing more.
 */

/** The entity tags of an If-Match / If-None-Match list (`*` as itself). */
function entityTags(value: string): string[] {
  return value
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
}

// RFC 9110 §5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms a recipient accepts.
const IMF_FIXDATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;
const RFC850_DATE = /^[A-Z][a-z]+, \d{2}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2} GMT$/;
const ASCTIME_DATE = /^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;

/**
 * An HTTP-date in ms, or undefined for anything else: RFC 9110 has the field ignored then
 * (Date.parse alone would read "1" as the year 2001).
 */
function httpDate(value: string | undefined): number | undefined {
  const text = value?.trim();
  if (text === undefined) return undefined;
  let ms = Number.NaN;
  if (IMF_FIXDATE.test(text) || RFC850_DATE.test(text)) ms = Date.parse(text);
  // asctime carries no zone: it is GMT, never the server's local time.
  else if (ASCTIME_DATE.test(text)) ms = Date.parse(`${text} GMT`);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * RFC 9110 §13.2.2 for a GET or HEAD of bytes that exist: If-Match, else If-Unmodified-Since
 * (412 when false); then If-None-Match, else If-Modified-Since (304 when false).
 */
function evaluatePreconditions(
  headers: FastifyRequest['headers'],
  etag: string,
  modified: number,
): 'proceed' | 'failed' | 'not-modified' {
  const ifMatch = headers['if-match'];
  if (ifMatch !== undefined) {
    // Strong comparison (§13.1.1): a weak tag never matches.
    if (!entityTags(ifMatch).some((t) => t === '*' || t === etag)) return 'failed';
  } else {
    const since = httpDate(headers['if-unmodified-since']);
    if (since !== undefined && modified > since) return 'failed';
  }
  const ifNoneMatch = headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    // Weak comparison (§13.1.2): a W/ prefix a proxy added still matches. It takes precedence
    // over If-Modified-Since, which is then ignored (§13.1.3).
    if (entityTags(ifNoneMatch).some((t) => t === '*' || t.replace(/^W\//, '') === etag)) {
      return 'not-modified';
    }
    return 'proceed';
  }
  const since = httpDate(headers['if-modified-since']);
  if (since !== undefined && modified <= since) return 'not-modified';
  return 'proceed';
}

/**
 * If-Range (§13.1.5): the range is served only when the validator is the current one, an
 * entity tag compared strongly or exactly the Last-Modified date; otherwise the whole body.
 */
function rangeStillValid(ifRange: string | string[] | undefined, etag: string, modified: number): boolean {
  if (ifRange === undefined) return true;
  // One validator only: a repeated If-Range cannot be matched, so the whole body goes.
  if (Array.isArray(ifRange)) return false;
  const value = ifRange.trim();
  if (value.startsWith('"') || value.startsWith('W/')) return value === etag;
  return httpDate(value) === modified;
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
