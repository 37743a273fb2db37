import multipart, { type Multipart, type MultipartFile } from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { LOCAL_BUCKET } from '../../blobs/local-endpoint.js';
import type { StorageEndpointService } from '../../core/endpoint.js';
import { WharfError } from '../../core/errors.js';
import { formParts, isBrokenForm, isFormLimit } from '../multipart-form.js';
import { escapeXml, objectLocation } from './s3-xml.js';

// S3 caps a POST form's fields (policy included) at 20 KB; the file part is not a field.
const FIELD_BYTES = 20 * 1024;
const MAX_FIELDS = 100;

/**
 * S3 "POST Object": browser forms carrying a signed policy. Fields are read up to the
 * `file` part, the policy is checked, then the file streams to storage under the policy's
 * size range; fields after the file are ignored, as S3 ignores them.
 */
export async function postObjectRoute(
  app: FastifyInstance,
  { endpoint, publicUrl }: { endpoint: StorageEndpointService; publicUrl: string },
) {
  await app.register(multipart, {
    limits: { fieldSize: FIELD_BYTES, fields: MAX_FIELDS, fieldNameSize: 256, headerPairs: 100 },
    // The policy's content-length-range is enforced by the core while the file streams;
    // busboy must neither cut the file short nor apply its own 1 MB default.
    throwFileSizeLimit: false,
  });

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    if (!request.isMultipart()) {
      request.raw.resume();
      throw new WharfError(
        'VALIDATION_FAILED',
        'Bucket POST must be of the enclosure-type multipart/form-data.',
      );
    }
    const parts = formParts(request, { limits: { fileSize: Number.POSITIVE_INFINITY } });
    let fields: Record<string, string>;
    let file: MultipartFile;
    try {
      ({ fields, file } = await readUntilFile(parts));
    } catch (err) {
      throw isParserError(err) ? malformed() : err;
    }
    const fieldOf = (name: string) => {
      const found = Object.keys(fields).find((k) => k.toLowerCase() === name);
      return found === undefined ? undefined : fields[found];
    };

    let digests: Awaited<ReturnType<StorageEndpointService['postObject']>>;
    try {
      digests = await endpoint.postObject(fields, {
        body: file.file,
        // As S3 does: the object's type is the form's Content-Type field, never the file
        // part's header (so both deployments store the same type for the same form).
        contentType: fieldOf('content-type'),
      });
    } catch (err) {
      throw isParserError(err) ? malformed() : err;
    }
    await drain(parts);

    const key = fieldOf('key') ?? '';
    const etag = `"${digests.md5}"`;
    const location = objectLocation(publicUrl, key);
    reply.header('etag', etag).header('location', location);

    const redirect = fieldOf('success_action_redirect');
    if (redirect && /^https?:\/\//i.test(redirect)) {
      const target = new URL(redirect);
      target.searchParams.set('bucket', LOCAL_BUCKET);
      target.searchParams.set('key', key);
      target.searchParams.set('etag', etag);
      return reply.status(303).header('location', target.toString()).send();
    }
    const status = fieldOf('success_action_status');
    if (status === '201') {
      return reply
        .status(201)
        .header('content-type', 'application/xml')
        .send(
          '<?xml version="1.0" encoding="UTF-8"?>\n' +
            `<PostResponse><Location>${escapeXml(location)}</Location><Bucket>${LOCAL_BUCKET}</Bucket>` +
            `<Key>${escapeXml(key)}</Key><ETag>${escapeXml(etag)}</ETag></PostResponse>`,
        );
    }
    return reply.status(status === '200' ? 200 : 204).send();
  };

  for (const url of [`/${LOCAL_BUCKET}`, `/${LOCAL_BUCKET}/`]) {
    app.post(url, { schema: { hide: true }, config: { fileBody: true } }, handler);
  }
}

/** Text fields in order up to the part named `file` (any case), which must be a file. */
async function readUntilFile(
  parts: AsyncIterator<Multipart>,
): Promise<{ fields: Record<string, string>; file: MultipartFile }> {
  const fields: Record<string, string> = {};
  const seen = new Set<string>();
  for (let next = await parts.next(); !next.done; next = await parts.next()) {
    const part = next.value;
    const name = part.fieldname.toLowerCase();
    if (name === 'file') {
      if (part.type !== 'file') break;
      return { fields, file: part };
    }
    if (part.type === 'file') {
      part.file.resume();
      throw new WharfError('VALIDATION_FAILED', `POST requires exactly one file upload per request.`);
    }
    if (part.valueTruncated || part.fieldnameTruncated) {
      throw new WharfError(
        'VALIDATION_FAILED',
        'Your POST request fields preceding the upload file were too large.',
      );
    }
    // A second value could satisfy the policy while another is used: S3 refuses it too.
    if (seen.has(name)) {
      throw new WharfError('VALIDATION_FAILED', `POST requires exactly one ${name} field per request.`);
    }
    seen.add(name);
    fields[part.fieldname] = String(part.value);
  }
  throw new WharfError('VALIDATION_FAILED', 'POST requires exactly one file upload per request.');
}

/** Reads (and drops) whatever follows the file so the connection can carry the answer. */
async function drain(parts: AsyncIterator<Multipart>): Promise<void> {
  try {
    for (let next = await parts.next(); !next.done; next = await parts.next()) {
      if (next.value.type === 'file') next.value.file.resume();
    }
  } catch {
    // Only ignored fields follow the file; a fault among them changes nothing stored.
  }
}

/** A broken or oversized form is the client's fault. */
function isParserError(err: unknown): boolean {
  return isBrokenForm(err) || isFormLimit(err);
}

function malformed(): WharfError {
  return new WharfError(
    'VALIDATION_FAILED',
    'The body of your POST request is not well-formed multipart/form-data.',
  );
}
