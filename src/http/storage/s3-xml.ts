import type { Readable } from 'node:stream';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { encodeS3Key, LOCAL_BUCKET, LOCAL_ENDPOINT_PATH } from '../../blobs/local-endpoint.js';
import { WharfError } from '../../core/errors.js';
import type { PartReference, StoredPart } from '../../core/ports.js';

/** The S3 API's documents: what its multipart requests answer and what Complete sends. */

const NS = 'http://s3.amazonaws.com/doc/2006-03-01/';
// 10,000 parts of `<Part><PartNumber>…</PartNumber><ETag>"…"</ETag></Part>` are about
// 750 KB; 2 MiB leaves room for indentation and the checksum fields some clients add.
export const MAX_COMPLETE_BODY = 2 * 1024 * 1024;

/**
 * The URL of an object of the embedded endpoint, as S3 reports it in `Location`: under
 * WHARF_PUBLIC_URL, as every URL Wharf hands out (the presigned ones too). Never from the
 * request: behind a proxy that ends TLS it arrived over plain HTTP, and a client (Uppy keeps it
 * as the file's `uploadURL`) would be handed an `http:` URL of an `https:` site.
 */
export function objectLocation(publicUrl: string, key: string): string {
  return `${publicUrl}${LOCAL_ENDPOINT_PATH}/${LOCAL_BUCKET}/${encodeS3Key(key)}`;
}

export function escapeXml(value: string): string {
  return value.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function element(name: string, value: string | number): string {
  return `<${name}>${escapeXml(String(value))}</${name}>`;
}

function document(root: string, body: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${NS}">${body}</${root}>`;
}

export function initiateMultipartUploadResult(bucket: string, key: string, uploadId: string): string {
  return document(
    'InitiateMultipartUploadResult',
    element('Bucket', bucket) + element('Key', key) + element('UploadId', uploadId),
  );
}

/** Every part in one page: a presigned URL cannot ask for the next one. */
export function listPartsResult(bucket: string, key: string, uploadId: string, parts: StoredPart[]): string {
  const items = parts
    .map(
      (part) =>
        `<Part>${element('PartNumber', part.partNumber)}${
          part.lastModified === undefined
            ? ''
            : element('LastModified', new Date(part.lastModified).toISOString())
        }${element('ETag', part.etag)}${element('Size', part.size)}</Part>`,
    )
    .join('');
  return document(
    'ListPartsResult',
    element('Bucket', bucket) +
      element('Key', key) +
      element('UploadId', uploadId) +
      element('PartNumberMarker', 0) +
      element('NextPartNumberMarker', parts.at(-1)?.partNumber ?? 0) +
      element('MaxParts', 10_000) +
      element('IsTruncated', 'false') +
      element('StorageClass', 'STANDARD') +
      items,
  );
}

export function completeMultipartUploadResult(
  location: string,
  bucket: string,
  key: string,
  etag: string,
): string {
  return document(
    'CompleteMultipartUploadResult',
    element('Location', location) + element('Bucket', bucket) + element('Key', key) + element('ETag', etag),
  );
}

const parser = new XMLParser({
  ignoreAttributes: true,
  removeNSPrefix: true,
  parseTagValue: false,
  ignoreDeclaration: true,
  isArray: (_name, path) => String(path) === 'CompleteMultipartUpload.Part',
});

function malformed(): WharfError {
  return new WharfError(
    'VALIDATION_FAILED',
    'The XML you provided was not well-formed or did not validate against our published schema.',
    { s3Code: 'MalformedXML' },
  );
}

/** Reads a CompleteMultipartUpload body, at most MAX_COMPLETE_BODY bytes. */
export async function readCompleteBody(body: Readable): Promise<PartReference[]> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > MAX_COMPLETE_BODY) throw malformed();
    chunks.push(chunk as Buffer);
  }
  return parseCompleteMultipartUpload(Buffer.concat(chunks).toString('utf8'));
}

/** `<CompleteMultipartUpload><Part><PartNumber/><ETag/></Part>…`; other part fields are ignored. */
export function parseCompleteMultipartUpload(xml: string): PartReference[] {
  // Entities of a document type could expand without bound; S3's schema has none.
  if (/<!DOCTYPE|<!ENTITY/i.test(xml) || XMLValidator.validate(xml) !== true) throw malformed();
  let document: Record<string, unknown>;
  try {
    document = parser.parse(xml) as Record<string, unknown>;
  } catch {
    // Well-formed but refused by the parser: nested past its limit, or an element named
    // `__proto__`, `constructor` or `prototype` (it will not build such an object).
    throw malformed();
  }
  const root = document.CompleteMultipartUpload;
  if (typeof root !== 'object' || root === null) throw malformed();
  const parts = (root as { Part?: unknown }).Part;
  if (!Array.isArray(parts) || parts.length === 0) throw malformed();
  return parts.map((part: unknown) => {
    const { PartNumber: number, ETag: etag } = (part ?? {}) as Record<string, unknown>;
    if (typeof number !== 'string' || !/^\d{1,5}$/.test(number.trim()) || typeof etag !== 'string') {
      throw malformed();
    }
    return { partNumber: Number(number.trim()), etag: etag.trim() };
  });
}
