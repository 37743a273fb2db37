import { Type } from 'typebox';
import { MAX_PARAM_LENGTH } from '../../routing-errors.js';

/** The document's tag: every route of this folder is listed under it in /openapi.json. */
export const TAG = 'ActiveStorage direct upload (seed 002)';

// Extra fields are ignored as Pydantic ignores them (Rails clients may send `metadata`);
// the documented ones are checked strictly.
export const BlobDetails = Type.Object(
  {
    filename: Type.String({ description: 'The original name of the file being uploaded.' }),
    content_type: Type.String({ description: "The MIME type of the file (e.g. 'image/png')." }),
    byte_size: Type.Integer({ minimum: 0, description: 'The size of the file in bytes.' }),
    checksum: Type.String({
      description:
        'Base64 MD5 of the file (24 characters, what ActiveStorage clients send) or base64 SHA-256 (44 characters).',
    }),
  },
  { additionalProperties: true },
);

export const UploadRequest = Type.Object(
  { blob: BlobDetails },
  { additionalProperties: true, description: 'The blob details of the file to upload.' },
);

export const DirectUploadDetails = Type.Object(
  {
    url: Type.String({ description: 'Pre-signed URL to PUT the bytes to.' }),
    headers: Type.Object(
      {
        'Content-Type': Type.String(),
        'Content-MD5': Type.Optional(
          Type.String({
            description: 'Base64 MD5 of the content; absent when the checksum given was SHA-256.',
          }),
        ),
        'Content-Disposition': Type.String(),
      },
      {
        additionalProperties: Type.String(),
        description:
          'Send every header as given (with a SHA-256 checksum, `x-amz-checksum-sha256` binds the bytes instead of Content-MD5).',
      },
    ),
  },
  { description: 'Where and how to PUT the bytes. Absent when the content was already uploaded.' },
);

export const FileUploadResponse = Type.Object(
  {
    id: Type.Integer({ description: 'The unique number of the file record.' }),
    key: Type.String({ description: 'The storage key.' }),
    filename: Type.String(),
    content_type: Type.String(),
    metadata: Type.Record(Type.String(), Type.Unknown()),
    service_name: Type.String({
      description: '`local` when Wharf stores the bytes itself, `s3` with an S3-compatible object store.',
    }),
    byte_size: Type.Integer(),
    checksum: Type.String({ description: 'The checksum as the client sent it (base64).' }),
    created_at: Type.String({ format: 'date-time' }),
    signed_id: Type.String({ description: 'Unforgeable reference to this record.' }),
    direct_upload: Type.Optional(DirectUploadDetails),
  },
  { description: 'A file record: created (with direct_upload) or found by its checksum (without).' },
);

export const ErrorResponse = Type.Object(
  {
    detail: Type.Union([Type.String(), Type.Null()]),
    error: Type.Union([Type.String(), Type.Null()]),
    error_code: Type.Union([Type.String(), Type.Null()]),
  },
  { description: '`detail`: what went wrong; `error`: the HTTP reason; `error_code`: a stable Wharf code.' },
);

export const HTTPValidationError = Type.Object(
  {
    detail: Type.Array(
      Type.Object({
        loc: Type.Array(Type.Union([Type.String(), Type.Integer()])),
        msg: Type.String(),
        type: Type.String(),
        input: Type.Optional(Type.Unknown()),
        ctx: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
      }),
    ),
  },
  { description: 'Validation Error (FastAPI/Pydantic shape).' },
);

/**
 * A signed id up to the router's limit (longer is 414 before routing): one that is not a
 * valid signed id, whatever its length, is a blob that does not exist (404), as documented,
 * never a 422 of its own. Verifying one costs an HMAC of at most that many bytes.
 */
export const SignedId = Type.String({ maxLength: MAX_PARAM_LENGTH });

export const SignedIdParams = Type.Object({ signed_id: SignedId });

export const errorResponses = {
  400: ErrorResponse,
  401: ErrorResponse,
  403: ErrorResponse,
  404: ErrorResponse,
  409: ErrorResponse,
  410: ErrorResponse,
  413: ErrorResponse,
  422: HTTPValidationError,
  500: ErrorResponse,
};

/**
 * A route that opens an upload: a key or token may hold only so many (TOO_MANY_OPEN_UPLOADS);
 * its JSON body in a Content-Encoding is refused (415, see file-bodies.ts).
 */
export const uploadErrorResponses = { ...errorResponses, 415: ErrorResponse, 429: ErrorResponse };
