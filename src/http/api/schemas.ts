import { Type } from 'typebox';
import { WharfError } from '../../core/errors.js';
import type { Asset, AssetAnalysis, UploadKind, UploadStatus } from '../../core/model.js';
import { describedAs, named } from '../openapi/components.js';

export const ErrorSchema = named(
  'Error',
  Type.Object(
    {
      error: Type.Object({
        code: Type.String({ description: 'Stable machine-readable code, e.g. CHECKSUM_MISMATCH.' }),
        message: Type.String(),
        details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
      }),
    },
    { description: 'Every native API error.' },
  ),
);

export const AccessSchema = named(
  'Access',
  Type.Union([Type.Literal('private'), Type.Literal('public')], {
    description: '`public`: anyone may download the content without a key or signed URL.',
  }),
);

const AnalysisSchema = named(
  'AssetAnalysis',
  Type.Object(
    {
      format: Type.Optional(Type.String({ description: 'Sniffed from the bytes, e.g. `jpg`.' })),
      mime: Type.Optional(Type.String()),
      width: Type.Optional(Type.Integer()),
      height: Type.Optional(Type.Integer()),
      location: Type.Optional(
        Type.Object({
          latitude: Type.Number(),
          longitude: Type.Number(),
          altitude: Type.Optional(Type.Number()),
        }),
      ),
      location_name: Type.Optional(Type.String()),
      duration: Type.Optional(Type.Number({ description: 'Video and audio: seconds.' })),
      codec: Type.Optional(Type.String({ description: 'Video: the video codec; audio: the audio codec.' })),
      audio_codec: Type.Optional(Type.String({ description: 'Video: its audio track’s codec.' })),
      pages: Type.Optional(Type.Integer({ description: 'PDF: number of pages.' })),
      preview: Type.Optional(
        Type.Object(
          { width: Type.Integer(), height: Type.Integer(), format: Type.String() },
          { description: 'A video’s poster frame or a PDF’s first page was stored; /image renders from it.' },
        ),
      ),
      placeholder: Type.Optional(
        Type.Object(
          {
            thumbhash: Type.String({
              description:
                'A ThumbHash (base64, ~25 bytes): decodes to a blurred stand-in of the right shape and colours.',
            }),
            color: Type.String({ pattern: '^#[0-9a-f]{6}$', description: 'The dominant colour, #rrggbb.' }),
          },
          {
            description:
              'What to show while the image (or a video’s or PDF’s preview) loads. Images that transforms can decode only.',
          },
        ),
      ),
      placeholder_error: Type.Optional(
        Type.String({
          description:
            'Why an image of a type transforms read has no placeholder: the code a transform of it fails with, e.g. IMAGE_UNDECODABLE (truncated or corrupt) or TRANSFORM_TIMEOUT.',
        }),
      ),
      missing_tools: Type.Optional(
        Type.Array(Type.String(), {
          description: 'Tools this server lacks that this type needed (ffprobe, ffmpeg, pdfinfo, pdftoppm).',
        }),
      ),
      media_error: Type.Optional(
        Type.String({ description: 'Why media facts are missing: TOO_LARGE, TOOL_FAILED, TOOL_TIMEOUT.' }),
      ),
      had_gps: Type.Optional(
        Type.Boolean({ description: 'The account strips locations and the upload had one: it was removed.' }),
      ),
      uploaded: Type.Optional(
        Type.Object(
          { sha256: Type.String(), md5: Type.String(), size: Type.Integer() },
          {
            description:
              'With had_gps: the digests of the bytes as uploaded (sha256/md5 are of what is stored).',
          },
        ),
      ),
    },
    {
      description: 'What processing learned from the content itself (type, size, duration, pages, EXIF GPS).',
    },
  ),
);

export const AssetSchema = named(
  'Asset',
  Type.Object(
    {
      id: Type.String({ format: 'uuid' }),
      name: Type.String(),
      content_type: Type.String(),
      size: Type.Integer({ minimum: 0 }),
      sha256: Type.String({ description: 'Hex SHA-256 of the bytes, verified by Wharf.' }),
      md5: Type.String({ description: 'Hex MD5 of the bytes.' }),
      status: Type.Union([Type.Literal('ready'), Type.Literal('verifying')], {
        description: '`verifying`: storage could not attest the SHA-256 and Wharf is hashing the bytes.',
      }),
      number: Type.Integer({
        description: 'A small integer id, unique in this account (each account counts its own).',
      }),
      access: AccessSchema,
      processing: Type.Union([Type.Literal('pending'), Type.Literal('done'), Type.Literal('failed')], {
        description: 'Whether `analysis` has been filled yet.',
      }),
      analysis: AnalysisSchema,
      metadata: Type.Record(Type.String(), Type.Unknown()),
      subject: Type.Union([Type.String(), Type.Null()], {
        description:
          'Your user the asset was uploaded for (the `subject` of the upload token that created it).',
      }),
      created_at: Type.String({ format: 'date-time' }),
      updated_at: Type.String({ format: 'date-time' }),
      content_url: Type.String({ description: 'Where the bytes are read (needs a key or a signed URL).' }),
    },
    { description: 'A verified, stored file.' },
  ),
);

export const AssetResultSchema = named(
  'AssetResult',
  Type.Object(
    {
      status: Type.Union([Type.Literal('created'), Type.Literal('exists')], {
        description: '"exists" when the account already held this content: the existing asset is returned.',
      }),
      asset: AssetSchema,
    },
    { description: 'An upload’s outcome: the asset it made, or the one that already held the content.' },
  ),
);

export const PendingUploadSchema = named(
  'PendingUpload',
  Type.Object({
    status: Type.Literal('pending'),
    id: Type.String({ format: 'uuid' }),
    name: Type.String(),
    method: Type.Literal('PUT'),
    url: Type.String(),
    headers: Type.Record(Type.String(), Type.String(), {
      description: 'Send exactly these headers with the PUT.',
    }),
    expires_at: Type.String({ format: 'date-time' }),
  }),
);

export const ExistingUploadSchema = named(
  'ExistingUpload',
  Type.Object({
    status: Type.Literal('exists'),
    name: Type.String(),
    asset: AssetSchema,
  }),
);

export const UploadItemSchema = named(
  'UploadItem',
  Type.Union([PendingUploadSchema, ExistingUploadSchema], {
    description:
      'A presigned PUT to make (`pending`), or the asset that already holds the content (`exists`).',
  }),
);

/**
 * Why an upload ended without an asset, in its event's words: `reason` is the event it ended with
 * (upload.expired, upload.cancelled, upload.failed) and `error` that upload.failed event's.
 */
export const UploadEndedSchema = named(
  'UploadEnded',
  Type.Object(
    {
      reason: Type.Union([Type.Literal('expired'), Type.Literal('cancelled'), Type.Literal('failed')], {
        description:
          '`expired`: not completed in time; `cancelled`: cancelled by a client; `failed`: refused or interrupted (see `error`).',
      }),
      error: Type.Union(
        [
          Type.Object({
            code: Type.String({ description: 'e.g. CHECKSUM_MISMATCH, FILE_TOO_LARGE, UPLOAD_INTERRUPTED.' }),
            message: Type.String(),
          }),
          Type.Null(),
        ],
        { description: '`failed`: the `error` of its `upload.failed` event; null otherwise.' },
      ),
    },
    { description: 'How an upload ended without an asset, as its event says.' },
  ),
);

/**
 * Every status and kind an upload has (model.ts's UploadStatus and UploadKind: a Record, so one
 * added there must be added here), each as the schema's description says it.
 */
const UPLOAD_STATUSES: Record<UploadStatus, string> = {
  pending: 'its bytes may still arrive',
  completed: 'it made (or found) its asset, `asset_id`',
  expired: 'it ended without an asset (`ended` says why)',
};
const UPLOAD_KINDS: Record<UploadKind, string> = {
  direct: 'the request’s own body (`POST /v1/assets`, `PUT /v1/files/…`)',
  presigned: 'a presigned PUT to storage',
  post: 'a form POST to storage (a presigned POST policy)',
  multipart: 'S3-style parts',
  tus: 'tus (`/v1/tus/`)',
  rufh: 'Resumable Uploads for HTTP (`/v1/resumable/`, or `POST /v1/assets` with `Upload-Complete`)',
};

/**
 * A closed set of strings, from a Record of each value's meaning: the union of their literals,
 * described value by value, typed as the Record's keys (a union built from a list is not).
 */
function oneOf<T extends string>(values: Record<T, string>, what: string) {
  const meanings = Object.entries<string>(values).map(([value, meaning]) => `\`${value}\`, ${meaning}`);
  return Type.Unsafe<T>(
    Type.Union(
      Object.keys(values).map((value) => Type.Literal(value)),
      { description: `${what}: ${meanings.join('; ')}.` },
    ),
  );
}

/** An upload as `GET /v1/uploads/{id}` shows it, and as the listing shows each (which may add `offset`). */
export const UploadStateSchema = named(
  'Upload',
  Type.Object({
    id: Type.String(),
    status: oneOf(UPLOAD_STATUSES, 'Where it stands'),
    name: Type.String(),
    content_type: Type.String(),
    size: Type.Union([Type.Integer(), Type.Null()]),
    expires_at: Type.String({ format: 'date-time' }),
    asset_id: Type.Union([Type.String(), Type.Null()]),
    token_id: Type.Union([Type.String(), Type.Null()], {
      description: 'The upload token it was made with, if any.',
    }),
    subject: Type.Union([Type.String(), Type.Null()], {
      description: 'That token’s subject (kept here even when the content was already an asset).',
    }),
    kind: oneOf(UPLOAD_KINDS, 'How its bytes arrive'),
    created_at: Type.String({ format: 'date-time' }),
    completed_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    resume_url: Type.Union([Type.String(), Type.Null()], {
      description:
        'A pending tus or Resumable-Uploads-for-HTTP upload: where to resume it (the tus upload URL, or the upload resource to HEAD then PATCH).',
    }),
    ended: Type.Union([UploadEndedSchema, Type.Null()], {
      description:
        'Why an `expired` upload ended without an asset; null while pending, once completed, and for uploads that ended before Wharf recorded it.',
    }),
  }),
);

/**
 * A Resumable-Uploads-for-HTTP upload that is not complete yet: what its creation answers (`201`)
 * when the client sends the rest later (`Upload-Complete: ?0`).
 */
export const ResumableUploadSchema = named(
  'ResumableUpload',
  Type.Object(
    {
      id: Type.String({ format: 'uuid' }),
      url: Type.String({
        description: 'The upload resource (as `Location`): HEAD it, PATCH the rest to it.',
      }),
      name: Type.String(),
      size: Type.Integer({ minimum: 0, description: 'The declared length of the whole file.' }),
      offset: Type.Integer({ minimum: 0, description: 'Bytes received so far: append from there.' }),
      expires_at: Type.String({ format: 'date-time', description: 'When it expires unfinished.' }),
    },
    { description: 'A resumable upload waiting for the rest of its file.' },
  ),
);

/**
 * The problem document (RFC 9457) the Resumable Uploads draft defines for a wrong offset and for
 * lengths that disagree, around Wharf's own error (so a client reading `error.code` reads it too).
 */
export const UploadProblemSchema = named(
  'UploadProblem',
  Type.Object(
    {
      type: Type.String({
        description:
          'The draft’s problem type: `https://iana.org/assignments/http-problem-types#mismatching-upload-offset` or `…#inconsistent-upload-length`.',
      }),
      title: Type.String(),
      'expected-offset': Type.Optional(
        Type.Integer({ minimum: 0, description: 'A wrong offset: the upload’s offset (resume from there).' }),
      ),
      'provided-offset': Type.Optional(
        Type.Integer({ minimum: 0, description: 'A wrong offset: the one the request named.' }),
      ),
      error: ErrorSchema.properties.error,
    },
    { description: 'A Resumable-Uploads-for-HTTP refusal as the draft words it, with the native error.' },
  ),
);

/**
 * An id taken from a request (a path segment, a cursor): a UUID, accepted in any case (RFC 9562)
 * and handed on in lower case, the form Wharf stores and answers with (see validation.ts).
 */
export function Id(options: { description?: string; format?: 'uuid'; maxLength?: number } = {}) {
  return Type.String({ maxLength: 64, ...options, 'x-lower-case': true });
}

export const IdParams = Type.Object({ id: Id() });

/**
 * `upload_id` in a signing body: the URL shows the asset as that upload of it does (its name in
 * Content-Disposition, its type), for a back end signing on behalf of the user whose upload it
 * is. Content two users sent is one asset, named as its first upload; without it, a key that
 * reads the whole account signs that first name into the other user's links.
 */
export const UploadIdField = Type.Optional(
  Id({
    description:
      'Show the asset as this completed upload of it does (its file name and type), e.g. the upload of the ' +
      'user the URL is for, when the same content was also uploaded by others. One the caller may see ' +
      '(as `GET /v1/uploads/{id}`); any other is `404 NOT_FOUND`.',
  }),
);

/** A list that takes no parameters: one it does not know is refused, as every other route's are. */
export const NoQuery = Type.Object({}, { additionalProperties: false });

/**
 * `?cursor=`: the `next_cursor` of the previous page, which is the id (a UUID) of that page's
 * last item. Anything else is refused: compared as text, it read as "from the start" or as
 * "nothing left", and a client holding a damaged cursor looped on the first page.
 */
export const PageCursor = Type.Optional(
  Id({ format: 'uuid', maxLength: 36, description: '`next_cursor` of the previous page.' }),
);

// A batch of uploads shares one expiry, and an asset listing often one second: the last
// formatted time is kept.
let lastIsoMs = Number.NaN;
let lastIso = '';

export function iso(ms: number): string {
  if (ms !== lastIsoMs) {
    lastIso = new Date(ms).toISOString();
    lastIsoMs = ms;
  }
  return lastIso;
}

/**
 * Milliseconds of an RFC 3339 `date-time` the schema accepted. A leap second (`23:59:60`) is
 * valid there but not to Date.parse; it is read as the next second, as Unix time counts it.
 */
export function parseTime(value: string): number {
  const ms = Date.parse(value);
  if (!Number.isNaN(ms)) return ms;
  const leap = Date.parse(value.replace(/(T\d{2}:\d{2}:)60/i, '$159'));
  if (Number.isNaN(leap)) throw new WharfError('VALIDATION_FAILED', `Not a time: ${JSON.stringify(value)}.`);
  return leap + 1000;
}

export function assetJson(asset: Asset, publicUrl: string) {
  return {
    id: asset.id,
    name: asset.name,
    content_type: asset.contentType,
    size: asset.size,
    sha256: asset.sha256,
    md5: asset.md5,
    status: asset.status,
    number: asset.seq,
    access: asset.access,
    processing: asset.processing,
    analysis: analysisJson(asset.analysis),
    metadata: asset.metadata,
    subject: asset.subject,
    created_at: iso(asset.createdAt),
    updated_at: iso(asset.updatedAt),
    content_url: `${publicUrl}/v1/assets/${asset.id}/content`,
  };
}

/** The analysis in the API's snake_case (its fields are camelCase in the core). */
function analysisJson(analysis: AssetAnalysis) {
  const { locationName, audioCodec, missingTools, mediaError, hadGps, placeholderError, ...rest } = analysis;
  return {
    ...rest,
    ...(locationName !== undefined && { location_name: locationName }),
    ...(audioCodec !== undefined && { audio_codec: audioCodec }),
    ...(missingTools !== undefined && { missing_tools: missingTools }),
    ...(mediaError !== undefined && { media_error: mediaError }),
    ...(placeholderError !== undefined && { placeholder_error: placeholderError }),
    ...(hadGps !== undefined && { had_gps: hadGps }),
  };
}

export const errorResponses = {
  400: ErrorSchema,
  401: ErrorSchema,
  403: ErrorSchema,
  404: ErrorSchema,
  429: ErrorSchema,
};

/** What a 500 STORAGE_DENIED says, for a route's own 500 that covers another refusal too. */
export const STORAGE_DENIED_ANSWER =
  'STORAGE_DENIED: the system refused a file system call of the node’s storage (EACCES, EPERM, EROFS: the data ' +
  'directory lost its permissions or went read-only); an operator must mend it, no `Retry-After`.';

/**
 * The refusal of a route that reads or writes the node's stored bytes (an upload, a completion,
 * a deletion, a multipart step): its storage may no longer be usable (docs/reliability.md).
 * Spread beside errorResponses; a route with a 500 of its own says both in one description.
 */
export const storageRefusals = {
  500: describedAs(ErrorSchema, STORAGE_DENIED_ANSWER),
};
