/**
 * The operations of the protocol endpoints, written out for the OpenAPI document: tus 1.0
 * (`/v1/tus/`), Resumable Uploads for HTTP (`/v1/resumable/`) and the embedded storage endpoint
 * (`/s3/wharf/{key}`). Their routes serve protocols whose meaning is in headers and query
 * strings, not in JSON bodies a schema could type (see src/http/tus/routes.ts,
 * src/http/rufh/routes.ts and src/http/storage/), so they are hidden from the generated part of
 * the document and described here: each method, its headers, parameters and status codes. Keep
 * these in step with those routes.
 */

import { STORAGE_DENIED_ANSWER } from '../api/schemas.js';

const ERROR_REF = { $ref: '#/components/schemas/Error' };
const BINARY = { type: 'string', format: 'binary' };

type Json = Record<string, unknown>;

function header(name: string, description: string, required = false, schema: Json = { type: 'string' }) {
  return { name, in: 'header', required, description, schema };
}

function query(name: string, description: string, required = false) {
  return { name, in: 'query', required, description, schema: { type: 'string' } };
}

function responseHeaders(entries: Record<string, string>) {
  return Object.fromEntries(
    Object.entries(entries).map(([name, description]) => [name, { description, schema: { type: 'string' } }]),
  );
}

/** A refusal, of Wharf's or of the tus protocol itself: Wharf's JSON error either way. */
function tusError(description: string) {
  return { description, content: { 'application/json': { schema: ERROR_REF } } };
}

const TUS_RESUMABLE = header('Tus-Resumable', 'The protocol version: `1.0.0`.', true, {
  type: 'string',
  enum: ['1.0.0'],
});
const TUS_ID = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'The upload: the last segment of the `Location` its creation answered.',
  schema: { type: 'string' },
};
/** The stream cap's refusal, 503 on tus and RUFH (their clients retry it; not 429). */
const STREAMS_BUSY =
  'The account or token already streams as many bodies as it may (`TOO_MANY_UPLOAD_STREAMS`): retry after `Retry-After`.';
const TUS_COMMON_ERRORS = {
  401: tusError('No key or token, or one that is unknown or revoked (`UNAUTHORIZED`).'),
  403: tusError('The key lacks the `upload` scope, or a limit refuses the file.'),
  404: tusError('No such upload in the caller’s account.'),
  405: tusError('`X-HTTP-Method-Override` names a method that is not tus’s (`METHOD_NOT_ALLOWED`).'),
  410: tusError('The upload was terminated or has expired (`UPLOAD_EXPIRED`).'),
  412: tusError(
    '`Tus-Resumable` is missing or names another version (`PRECONDITION_FAILED`); `Tus-Version` says `1.0.0`.',
  ),
};

const tags = { tus: ['tus'], rufh: ['resumable HTTP'], storage: ['storage endpoint'] };

/** `X-HTTP-Method-Override`: tus's way for clients behind proxies that pass only GET and POST. */
function methodOverride(methods: string[], description: string, required: boolean) {
  return header('X-HTTP-Method-Override', `${description} Case-insensitive.`, required, {
    type: 'string',
    enum: methods,
  });
}

function tusPaths(): Json {
  const collection = {
    options: {
      operationId: 'tusDiscover',
      summary: 'tus discovery: the version, extensions and largest size accepted',
      description:
        'Answers without a key (a browser preflight carries none); with one, `Tus-Max-Size` is that ' +
        'account’s file size limit.',
      tags: tags.tus,
      security: [{ apiKey: [] }, { bearer: [] }, {}],
      responses: {
        204: {
          description: 'What this server supports.',
          headers: responseHeaders({
            'Tus-Version': '`1.0.0`.',
            'Tus-Extension': 'creation, creation-with-upload, termination, expiration, checksum.',
            'Tus-Checksum-Algorithm': 'The algorithms `Upload-Checksum` may name (`sha1`, `sha256`, `md5`).',
            'Tus-Max-Size': 'The largest upload, in bytes.',
          }),
        },
        401: tusError('A key was presented and is unknown or revoked.'),
      },
    },
    post: {
      operationId: 'tusCreateUpload',
      summary: 'tus: create an upload (optionally with its first bytes)',
      description:
        '`Upload-Metadata` carries `filename` (required), `filetype` and an optional `sha256` (hex, verified ' +
        'when the last byte arrives). A body of type `application/offset+octet-stream` is the first bytes ' +
        '(creation-with-upload). `Upload-Defer-Length` is refused (501): Wharf needs the size up front.',
      tags: tags.tus,
      parameters: [
        TUS_RESUMABLE,
        header('Upload-Length', 'The file’s size in bytes.', true),
        header(
          'Upload-Metadata',
          'Comma-separated `key base64(value)` pairs: `filename` (required), `filetype`, `sha256`.',
          true,
        ),
        header('Upload-Checksum', '`<algorithm> <base64 digest>` of this request’s body, if it has one.'),
        header(
          'Idempotency-Key',
          'Makes the creation safe to send again: the same key with the same `Upload-Length`, ' +
            '`Upload-Metadata` and `Repr-Digest` within 24 hours gets the upload the first made (`201` with ' +
            '`Idempotent-Replayed: true` and its current `Upload-Offset`; a replay’s body is not read), not a ' +
            'second one. 1–255 visible ASCII characters other than `"`, optionally in double quotes.',
          false,
          { type: 'string', pattern: '^(?:[!#-~]{1,255}|"[!#-~]{1,255}")$' },
        ),
        methodOverride(
          ['POST', 'OPTIONS'],
          '`OPTIONS`: answered as discovery (`204`), for a client that can send only GET and POST.',
          false,
        ),
      ],
      requestBody: {
        required: false,
        content: { 'application/offset+octet-stream': { schema: BINARY } },
      },
      responses: {
        204: { description: 'With `X-HTTP-Method-Override: OPTIONS`: discovery, as `OPTIONS` answers.' },
        201: {
          description: 'Created; `Location` is the upload’s URL for HEAD, PATCH and DELETE.',
          headers: responseHeaders({
            Location: 'The upload’s URL.',
            'Upload-Offset': 'Bytes received with the creation.',
            'Upload-Expires': 'When an unfinished upload expires.',
            'Wharf-Asset-Id': 'When the creation carried every byte: the asset.',
            'Wharf-Upload-Result':
              '`exists` when the account already held the content, else `created` (with `Wharf-Asset-Id`).',
            'Idempotent-Replayed':
              '`true` when this answers an earlier creation sent with the same `Idempotency-Key`.',
          }),
        },
        400: tusError(
          'A missing or malformed `Upload-Length` or `Upload-Metadata`, a bad file name, or a malformed ' +
            '`Idempotency-Key`.',
        ),
        ...TUS_COMMON_ERRORS,
        409: {
          ...tusError(
            'A creation with this `Idempotency-Key` is still being answered (`IDEMPOTENCY_KEY_IN_USE`): retry ' +
              'after `Retry-After`.',
          ),
          headers: responseHeaders({ 'Retry-After': 'Seconds to wait before sending it again.' }),
        },
        413: tusError('Larger than the account’s limit, or a body past `Upload-Length` (`FILE_TOO_LARGE`).'),
        422: tusError(
          'The account strips EXIF location and this file’s cannot be removed (`LOCATION_NOT_REMOVABLE`), or ' +
            'this `Idempotency-Key` was sent with another creation (`IDEMPOTENCY_KEY_REUSED`).',
        ),
        415: tusError(
          'A body in a `Content-Encoding` (`UNSUPPORTED_MEDIA_TYPE`): send the bytes as they are.',
        ),
        429: tusError('Too many unfinished uploads for the key or token (`TOO_MANY_OPEN_UPLOADS`).'),
        503: tusError(STREAMS_BUSY),
        460: tusError('The body does not match its `Upload-Checksum`; nothing was written.'),
        501: tusError('`Upload-Defer-Length` or `Upload-Concat` is not supported (`VALIDATION_FAILED`).'),
      },
    },
  };
  const upload = {
    head: {
      operationId: 'tusGetOffset',
      summary: 'tus: how many bytes arrived (where to resume)',
      description:
        'Also completes an upload whose every byte arrived before a crash stopped its completion; a finished ' +
        'upload answers with its asset in `Wharf-Asset-Id`.',
      tags: tags.tus,
      parameters: [TUS_ID, TUS_RESUMABLE],
      responses: {
        200: {
          description: 'The offset to resume at.',
          headers: responseHeaders({
            'Upload-Offset': 'Bytes received so far.',
            'Upload-Length': 'The declared size.',
            'Upload-Metadata': 'The metadata given at creation.',
            'Upload-Expires': 'When it expires unfinished.',
            'Wharf-Asset-Id': 'Once finished: the asset.',
            'Wharf-Upload-Result':
              '`exists` when the account already held the content, else `created` (with `Wharf-Asset-Id`).',
          }),
        },
        ...TUS_COMMON_ERRORS,
      },
    },
    patch: {
      operationId: 'tusAppend',
      summary: 'tus: append bytes at Upload-Offset',
      description:
        'The request that delivers the last byte verifies and completes the upload like every flow, and answers ' +
        'with the asset in `Wharf-Asset-Id`. A cut request keeps every byte that arrived: HEAD, then resume. ' +
        'A client that cannot send PATCH (or HEAD, DELETE) sends POST with `X-HTTP-Method-Override: PATCH`, ' +
        'answered as the PATCH.',
      tags: tags.tus,
      parameters: [
        TUS_ID,
        TUS_RESUMABLE,
        header('Upload-Offset', 'Where these bytes go: the offset HEAD answered.', true),
        header('Upload-Checksum', '`<algorithm> <base64 digest>` of this request’s body.'),
      ],
      requestBody: { required: true, content: { 'application/offset+octet-stream': { schema: BINARY } } },
      responses: {
        204: {
          description: 'Appended.',
          headers: responseHeaders({
            'Upload-Offset': 'Bytes received so far.',
            'Upload-Expires': 'When it expires unfinished.',
            'Wharf-Asset-Id': 'When this request finished the upload: the asset.',
            'Wharf-Upload-Result':
              '`exists` when the account already held the content, else `created` (with `Wharf-Asset-Id`).',
          }),
        },
        400: tusError('A malformed header, or bytes that do not match the declared `sha256`.'),
        ...TUS_COMMON_ERRORS,
        409: tusError(
          '`Upload-Offset` is not the upload’s offset (`OFFSET_MISMATCH`), or the upload is already complete ' +
            '(`UPLOAD_NOT_PENDING`).',
        ),
        413: tusError('The body goes past `Upload-Length` (`FILE_TOO_LARGE`, `details.limit`).'),
        415: tusError('The body is not `application/offset+octet-stream` (`UNSUPPORTED_MEDIA_TYPE`).'),
        422: tusError(
          'The account strips EXIF location and this file’s cannot be removed (`LOCATION_NOT_REMOVABLE`).',
        ),
        460: tusError('The body does not match its `Upload-Checksum`; nothing was written.'),
        503: tusError(STREAMS_BUSY),
      },
    },
    delete: {
      operationId: 'tusTerminate',
      summary: 'tus: terminate an unfinished upload and free its bytes',
      tags: tags.tus,
      parameters: [TUS_ID, TUS_RESUMABLE],
      responses: {
        204: { description: 'Terminated.' },
        ...TUS_COMMON_ERRORS,
        409: tusError('The upload is finished (`UPLOAD_NOT_PENDING`): delete its asset instead.'),
      },
    },
  };
  return {
    '/v1/tus/': collection,
    // What tus clients configured without the slash send: the same endpoint, the same answers
    // (src/http/tus/routes.ts routes both).
    '/v1/tus': {
      options: withoutSlash(collection.options),
      post: withoutSlash(collection.post),
    },
    '/v1/tus/{id}': { ...upload, post: overridden(upload) },
  };
}

/** An operation of `/v1/tus/` as served at `/v1/tus` too. */
function withoutSlash<T extends { operationId: string; summary: string }>(operation: T): T {
  return {
    ...operation,
    operationId: `${operation.operationId}WithoutSlash`,
    summary: `${operation.summary} (\`/v1/tus\`, without the slash)`,
  };
}

/**
 * POST on an upload with `X-HTTP-Method-Override` naming HEAD, PATCH or DELETE (tus-js-client's
 * `overridePatchMethod`): answered as that method, so with any of their answers.
 */
function overridden(upload: {
  head: { responses: Json & { 200: Json } };
  patch: { parameters: Json[]; responses: Json & { 204: Json } };
  delete: { responses: Json };
}): Json {
  const { head, patch } = upload;
  return {
    operationId: 'tusMethodOverride',
    summary: 'tus: HEAD, PATCH or DELETE sent as POST with X-HTTP-Method-Override',
    description:
      'For a client behind a proxy or firewall that passes only GET and POST (tus-js-client’s ' +
      '`overridePatchMethod`): answered as the method `X-HTTP-Method-Override` names, with its headers, checks ' +
      'and answers (`tusGetOffset`, `tusAppend`, `tusTerminate`). `POST` or `OPTIONS` there is `404` (neither ' +
      'is a request on an upload); a method tus does not have is `405`. Without the header, `404`.',
    tags: tags.tus,
    parameters: [
      ...patch.parameters.map((parameter) =>
        parameter.name === 'Upload-Offset'
          ? { ...parameter, required: false, description: `PATCH: ${parameter.description}` }
          : parameter,
      ),
      methodOverride(['PATCH', 'HEAD', 'DELETE'], 'The method this request stands for.', true),
    ],
    requestBody: { required: false, content: { 'application/offset+octet-stream': { schema: BINARY } } },
    responses: {
      ...upload.delete.responses,
      ...head.responses,
      ...patch.responses,
      200: { ...head.responses[200], description: 'As HEAD: the offset to resume at (no body).' },
      204: { ...patch.responses[204], description: 'As PATCH: appended. As DELETE: terminated.' },
      404: tusError('No such upload in the caller’s account, or no `X-HTTP-Method-Override` (`NOT_FOUND`).'),
      409: tusError(
        'As PATCH: `Upload-Offset` is not the upload’s offset (`OFFSET_MISMATCH`). As PATCH or DELETE: the ' +
          'upload is finished (`UPLOAD_NOT_PENDING`).',
      ),
    },
  };
}

/** A refusal of Wharf's, in its JSON. */
function rufhError(description: string) {
  return { description, content: { 'application/json': { schema: ERROR_REF } } };
}

/**
 * A status the draft's own refusals share with Wharf's: a wrong offset and lengths that disagree
 * are its problem document (RFC 9457, with Wharf's error inside), anything else Wharf's JSON.
 */
function rufhProblem(description: string) {
  return {
    description,
    content: {
      'application/json': { schema: ERROR_REF },
      'application/problem+json': { schema: { $ref: '#/components/schemas/UploadProblem' } },
    },
  };
}

/**
 * Every operation on an upload's own path: an id longer than any is refused before routing,
 * so in the native API's error shape rather than as a problem document.
 */
function withUriTooLong(pathItem: Record<string, Json & { responses: Json }>): Json {
  const tooLong = {
    description: 'A path segment longer than 500 characters: no upload id is (`URI_TOO_LONG`).',
    content: { 'application/json': { schema: ERROR_REF } },
  };
  return Object.fromEntries(
    Object.entries(pathItem).map(([method, operation]) => [
      method,
      { ...operation, responses: { ...operation.responses, 414: tooLong } },
    ]),
  );
}

const RUFH_VERSION = header(
  'Upload-Draft-Interop-Version',
  'The draft iteration the client speaks (3 to 9). Without one (or another), no `104` is sent.',
);
const RUFH_ID = { ...TUS_ID, description: 'The upload: the last segment of the `Location` its `104` named.' };
const RUFH_STATE = responseHeaders({
  'Upload-Offset': 'Bytes storage holds: resume from there.',
  'Upload-Complete': '`?1` once the file has all arrived.',
  'Upload-Length': 'The declared size.',
  'Upload-Limit': '`max-size`, `max-append-size` and `max-age` (or `expires`, by version).',
  'Wharf-Asset-Id': 'Once complete: the asset.',
  'Repr-Digest': 'Once complete: `sha-256` of the verified file.',
});
const ASSET_RESULT = { 'application/json': { schema: { $ref: '#/components/schemas/AssetResult' } } };
/** A creation's 201: the asset, or the upload resource when the client sends the rest later. */
const CREATED = {
  'application/json': {
    schema: {
      anyOf: [{ $ref: '#/components/schemas/AssetResult' }, { $ref: '#/components/schemas/ResumableUpload' }],
    },
  },
};
const RUFH_ERRORS = {
  401: rufhError('No key or token, or one that is unknown or revoked (`UNAUTHORIZED`).'),
  403: rufhError('The key lacks the `upload` scope, or a limit refuses the file.'),
  404: rufhError('No such upload in the caller’s account.'),
  410: rufhError('The upload was cancelled or has expired (`UPLOAD_EXPIRED`).'),
};

/** Resumable Uploads for HTTP (the IETF draft): docs/resumable-http.md. */
function rufhPaths(): Json {
  const discovery = {
    summary: 'Resumable HTTP: the limits (`Upload-Limit`), before anything is sent',
    tags: tags.rufh,
    security: [{ apiKey: [] }, { bearer: [] }, {}],
    parameters: [RUFH_VERSION],
    responses: {
      204: {
        description: 'The limits: the server’s, or the account’s or token’s with a key.',
        headers: responseHeaders({ 'Upload-Limit': 'The limits.' }),
      },
      401: rufhError('A key was presented and is unknown or revoked.'),
    },
  };
  const offset = (operationId: string, summary: string) => ({
    operationId,
    summary,
    tags: tags.rufh,
    parameters: [RUFH_ID, RUFH_VERSION],
    responses: { 204: { description: 'Where the upload stands.', headers: RUFH_STATE }, ...RUFH_ERRORS },
  });
  return {
    '/v1/resumable/': {
      options: { operationId: 'rufhDiscover', ...discovery },
      post: {
        operationId: 'rufhCreateUpload',
        summary: 'Resumable HTTP: start an upload, with all of the file or a first part',
        description:
          'Announces the upload resource in a `104 (Upload Resumption Supported)` with `Location` before the body is ' +
          'read (when the client named an interop version). Name the file with `?name=`, `Content-Disposition` or ' +
          '`Upload-Metadata`; `Repr-Digest` (or `?sha256=`) is verified at completion. The same is served on ' +
          '`POST /v1/assets` with `Upload-Complete`.',
        tags: tags.rufh,
        parameters: [
          RUFH_VERSION,
          header(
            'Upload-Complete',
            '`?1`: this request carries the whole file; `?0`: a first part, or none.',
          ),
          header('Upload-Length', 'The file’s size, unless `Content-Length` is the whole file.'),
          header('Repr-Digest', '`sha-256=:<base64>:` of the whole file.'),
          header(
            'Content-Digest',
            '`sha-256=:<base64>:` of this request’s content; also taken as a trailer the `Trailer` header announces.',
          ),
          query('name', 'The file name (or `Content-Disposition` / `Upload-Metadata`).'),
          query('content_type', 'The file’s type (or `Content-Type`).'),
        ],
        requestBody: { required: false, content: { 'application/octet-stream': { schema: BINARY } } },
        responses: {
          104: {
            description: 'The upload resource: `Location` and `Upload-Limit`, before the body is read.',
          },
          200: {
            description: 'The whole file arrived and the account already held it (`"status": "exists"`).',
            content: ASSET_RESULT,
          },
          201: {
            description:
              'The asset (the whole file arrived), or with `Upload-Complete: ?0` the upload resource ' +
              '(`ResumableUpload`: where it is and how much of it arrived).',
            content: CREATED,
            headers: responseHeaders({
              Location: 'The upload resource.',
              'Upload-Offset': 'Bytes received.',
            }),
          },
          400: rufhProblem('Lengths that disagree (`INCONSISTENT_LENGTH`), a digest mismatch, a bad name.'),
          ...RUFH_ERRORS,
          411: rufhError(
            'Neither `Upload-Length` nor the whole file’s `Content-Length` (`LENGTH_REQUIRED`).',
          ),
          413: rufhError('Larger than the limit (`FILE_TOO_LARGE`).'),
          415: rufhError(
            'A body in a `Content-Encoding` (`UNSUPPORTED_MEDIA_TYPE`): send the bytes as they are.',
          ),
          422: rufhError(
            'The account strips EXIF location and this file’s cannot be removed (`LOCATION_NOT_REMOVABLE`).',
          ),
          429: rufhError('Too many unfinished uploads for the key or token (`TOO_MANY_OPEN_UPLOADS`).'),
          503: rufhError(STREAMS_BUSY),
        },
      },
    },
    '/v1/resumable/{id}': withUriTooLong({
      options: { operationId: 'rufhDiscoverUpload', ...discovery, parameters: [RUFH_ID, RUFH_VERSION] },
      head: offset('rufhGetOffset', 'Resumable HTTP: how many bytes arrived (where to resume)'),
      get: offset('rufhGetOffsetWithGet', 'Resumable HTTP: as HEAD (the editor’s copy of the draft)'),
      patch: {
        operationId: 'rufhAppend',
        summary: 'Resumable HTTP: append bytes at Upload-Offset',
        description:
          'The append that ends the file answers as the creation would have: `201` and the asset. An append at ' +
          'another offset is `409` with the draft’s problem document (`expected-offset`, `provided-offset`).',
        tags: tags.rufh,
        parameters: [
          RUFH_ID,
          RUFH_VERSION,
          header('Upload-Offset', 'Where these bytes go: the offset HEAD answered.', true),
          header('Upload-Complete', '`?1` when this append ends the file.', true),
          header(
            'Content-Digest',
            '`sha-256=:<base64>:` of this request’s content; also taken as a trailer the `Trailer` header announces.',
          ),
        ],
        requestBody: { required: true, content: { 'application/partial-upload': { schema: BINARY } } },
        responses: {
          200: {
            description: 'The file is complete, and the account already held it (`"status": "exists"`).',
            headers: RUFH_STATE,
            content: ASSET_RESULT,
          },
          201: {
            description:
              'The file is complete: the asset. Interop 3 (`Upload-Incomplete`) acknowledges an append that ' +
              'does not end the file with `201` too, as that draft says, without a body.',
            headers: RUFH_STATE,
            content: ASSET_RESULT,
          },
          204: { description: 'Appended.', headers: RUFH_STATE },
          400: rufhProblem('Lengths that disagree, or a digest mismatch (`CHECKSUM_MISMATCH`).'),
          ...RUFH_ERRORS,
          409: rufhProblem('`Upload-Offset` is not the upload’s offset, or it is complete already.'),
          413: rufhError('A chunked body past the length: the upload fails (`FILE_TOO_LARGE`).'),
          415: rufhError('The body is not `application/partial-upload` (`UNSUPPORTED_MEDIA_TYPE`).'),
          422: rufhError(
            'The account strips EXIF location and this file’s cannot be removed (`LOCATION_NOT_REMOVABLE`).',
          ),
          503: rufhError(STREAMS_BUSY),
        },
      },
      delete: {
        operationId: 'rufhCancel',
        summary: 'Resumable HTTP: cancel an unfinished upload and free its bytes',
        tags: tags.rufh,
        parameters: [RUFH_ID, RUFH_VERSION],
        responses: {
          204: { description: 'Cancelled.' },
          ...RUFH_ERRORS,
          409: rufhError('The upload is complete (`UPLOAD_NOT_PENDING`): delete its asset instead.'),
        },
      },
    }),
  };
}

const S3_KEY = {
  name: 'key',
  in: 'path',
  required: true,
  description: 'The object key the presigned URL names (it may contain `/`).',
  schema: { type: 'string' },
};
const SIGV4_QUERY = [
  query('X-Amz-Algorithm', 'SigV4 query authentication: `AWS4-HMAC-SHA256`.'),
  query('X-Amz-Credential', 'The access key id and scope the URL was signed for.'),
  query('X-Amz-Date', 'When it was signed.'),
  query('X-Amz-Expires', 'Seconds the URL stays valid.'),
  query('X-Amz-SignedHeaders', 'The headers the signature binds: send exactly the ones you were given.'),
  query('X-Amz-Signature', 'The signature.'),
];
const S3_UPLOAD_ID = query('uploadId', 'The multipart upload (S3’s UploadId).');
const XML = { 'application/xml': { schema: { type: 'string' } } };

/** An S3-style XML error: `<Error><Code>…</Code><Message>…</Message></Error>`. */
function s3Error(description: string) {
  return { description, content: XML };
}

const S3_COMMON_ERRORS = {
  400: s3Error(
    '`AuthorizationQueryParametersError`, `BadDigest`, `InvalidDigest`, `InvalidRequest`, `IncompleteBody`, …',
  ),
  403: s3Error('`SignatureDoesNotMatch`, `InvalidAccessKeyId`, or `AccessDenied` (expired URL or upload).'),
  404: s3Error('`NoSuchUpload`, or a request that is not a presigned upload.'),
  // STORAGE_DENIED (and BYTES_MISSING) read as S3's InternalError: S3 has no code of its own for them.
  500: s3Error(
    '`InternalError`: a failure of Wharf’s own, or storage the system no longer lets it use (`STORAGE_DENIED` ' +
      'in the message: EACCES, EPERM, EROFS); an operator must mend it.',
  ),
};

/**
 * A dependency away or too busy (every operation: the signature's key and the upload are read
 * from the database), as S3's answers that SDKs retry. Every 503 Wharf sends has Retry-After
 * (src/http/plugins/errors.ts).
 */
const S3_UNAVAILABLE = {
  503: {
    ...s3Error(
      '`ServiceUnavailable`: the database or storage cannot be reached, or the server is stopping; or `SlowDown`: ' +
        'the account or token already streams as many bodies as it may (`TOO_MANY_UPLOAD_STREAMS`). Retry after ' +
        '`Retry-After`.',
    ),
    headers: responseHeaders({ 'Retry-After': 'Seconds to wait before trying again.' }),
  },
};

/**
 * What an operation that writes (stores bytes, records or ends an upload) may meet besides, and
 * one that may carry a body: a full disk (the database's too), and a `Content-Type` that is not
 * a media type (Fastify cannot read it; S3 takes any, so has no status of its own for it).
 */
const S3_WRITE_ERRORS = {
  415: s3Error('`InvalidArgument`: the `Content-Type` header is not a valid media type.'),
  507: s3Error(
    '`InsufficientStorage`: no room left on the disk (or the database’s) for the bytes or the record; nothing ' +
      'of the request is kept, and the upload stays open.',
  ),
};

/**
 * S3's POST Object, as src/http/storage/post-object.ts serves it at the bucket's root: a browser
 * form whose signed policy names the key and the size range (FileSpin's flow hands them out).
 */
function postObjectOperation(operationId: string, description: string): Json {
  const field = (text: string) => ({ type: 'string', description: text });
  return {
    operationId,
    summary: 'Storage: POST Object (a browser form with a signed policy)',
    description:
      'The fields before the `file` part are read and the policy is checked (signature, expiry, `key`, ' +
      '`content-length-range` while the file streams); fields after the file are ignored, as S3 ignores them. ' +
      `The object's type is the form's \`Content-Type\` field. ${description}`,
    tags: tags.storage,
    security: [],
    requestBody: {
      required: true,
      content: {
        'multipart/form-data': {
          schema: {
            type: 'object',
            required: [
              'key',
              'policy',
              'x-amz-algorithm',
              'x-amz-credential',
              'x-amz-date',
              'x-amz-signature',
              'file',
            ],
            properties: {
              key: field('The object key the policy allows.'),
              policy: field('The base64 policy document the upload was handed.'),
              'x-amz-algorithm': field('`AWS4-HMAC-SHA256`.'),
              'x-amz-credential': field('As handed out.'),
              'x-amz-date': field('As handed out.'),
              'x-amz-signature': field('The policy’s signature (hex).'),
              'Content-Type': field('The object’s type, if the policy names one.'),
              success_action_status: field('`200`, `201` (an XML `PostResponse`) or `204` (the default).'),
              success_action_redirect: field(
                'An http(s) URL to answer `303` to, with `bucket`, `key` and `etag`.',
              ),
              file: { ...BINARY, description: 'The bytes: the last field that counts.' },
            },
          },
        },
      },
    },
    responses: {
      200: { description: 'Stored (`success_action_status=200`).', headers: POSTED },
      201: { description: 'Stored: S3’s `PostResponse`.', content: XML, headers: POSTED },
      204: { description: 'Stored (the default).', headers: POSTED },
      303: {
        description: 'Stored; sent on to `success_action_redirect`.',
        headers: responseHeaders({ Location: 'The redirect, with `bucket`, `key` and `etag` added.' }),
      },
      ...S3_COMMON_ERRORS,
      ...S3_WRITE_ERRORS,
      ...S3_UNAVAILABLE,
    },
  };
}

const POSTED = responseHeaders({
  ETag: 'The quoted MD5 of the bytes.',
  Location: 'The object’s URL.',
});

function storagePaths(): Json {
  const description =
    'Only requests presigned by Wharf (SigV4 query authentication, no API key) are accepted, and answered as ' +
    'S3 answers them (ETag, XML bodies, XML errors). Embedded deployment only: with S3 storage, presigned URLs ' +
    'point at the bucket.';
  return {
    '/s3/wharf/': { post: postObjectOperation('storagePostObject', description) },
    '/s3/wharf': { post: postObjectOperation('storagePostObjectWithoutSlash', description) },
    '/s3/wharf/{key}': {
      put: {
        operationId: 'storagePutObject',
        summary: 'Storage: PutObject, or UploadPart with `partNumber` and `uploadId`',
        description: `The bytes of a presigned upload, or one part of a multipart upload. ${description}`,
        tags: tags.storage,
        security: [],
        parameters: [
          S3_KEY,
          ...SIGV4_QUERY,
          query('partNumber', 'UploadPart: the part’s number (1 to 10,000).'),
          S3_UPLOAD_ID,
          header('Content-Length', 'Required: the exact size that was declared.', true),
          header('Content-Type', 'The type that was signed, if any.'),
          header(
            'x-amz-checksum-sha256',
            'Base64 SHA-256, when the URL binds one (or the client declares it).',
          ),
          header(
            'x-amz-checksum-crc32',
            'Base64 CRC32, optional; so are `x-amz-checksum-crc32c`, `-crc64nvme` and `-sha1`. A body that ' +
              'does not match is `BadDigest`; an `x-amz-checksum-*` of another algorithm is `InvalidRequest`.',
          ),
          header('Content-MD5', 'Base64 MD5, when the URL binds one (or the client declares it).'),
        ],
        requestBody: { required: true, content: { 'application/octet-stream': { schema: BINARY } } },
        responses: {
          200: {
            description: 'Stored; the ETag is the MD5 of the bytes (name the part by it at completion).',
            headers: responseHeaders({ ETag: 'The quoted MD5 of the bytes.' }),
          },
          ...S3_COMMON_ERRORS,
          411: s3Error('`MissingContentLength`.'),
          ...S3_WRITE_ERRORS,
          ...S3_UNAVAILABLE,
        },
      },
      post: {
        operationId: 'storagePost',
        summary: 'Storage: CreateMultipartUpload (`?uploads`) or CompleteMultipartUpload (`?uploadId`)',
        description:
          'CreateMultipartUpload answers `InitiateMultipartUploadResult`; CompleteMultipartUpload takes S3’s ' +
          `\`CompleteMultipartUpload\` XML and answers \`CompleteMultipartUploadResult\`. POST Object forms go to ` +
          `\`/s3/wharf/\` itself. ${description}`,
        tags: tags.storage,
        security: [],
        parameters: [
          S3_KEY,
          ...SIGV4_QUERY,
          query('uploads', 'CreateMultipartUpload (empty value).'),
          S3_UPLOAD_ID,
        ],
        requestBody: { required: false, content: XML },
        responses: {
          200: { description: 'The S3 XML result.', content: XML },
          ...S3_COMMON_ERRORS,
          ...S3_WRITE_ERRORS,
          ...S3_UNAVAILABLE,
        },
      },
      get: {
        operationId: 'storageListParts',
        summary: 'Storage: ListParts of a multipart upload (`?uploadId`)',
        description,
        tags: tags.storage,
        security: [],
        parameters: [S3_KEY, ...SIGV4_QUERY, { ...S3_UPLOAD_ID, required: true }],
        responses: {
          200: { description: 'S3’s `ListPartsResult`.', content: XML },
          ...S3_COMMON_ERRORS,
          ...S3_UNAVAILABLE,
        },
      },
      delete: {
        operationId: 'storageAbortMultipartUpload',
        summary: 'Storage: AbortMultipartUpload (`?uploadId`)',
        description,
        tags: tags.storage,
        security: [],
        parameters: [S3_KEY, ...SIGV4_QUERY, { ...S3_UPLOAD_ID, required: true }],
        responses: {
          204: { description: 'Aborted; the parts are freed.' },
          ...S3_COMMON_ERRORS,
          ...S3_WRITE_ERRORS,
          ...S3_UNAVAILABLE,
        },
      },
    },
  };
}

const UNAVAILABLE =
  'The database or storage cannot be reached, or the server is stopping (`SERVICE_UNAVAILABLE`): retry after `Retry-After`.';

/**
 * The refusals of Wharf's dependencies on tus's and Resumable HTTP's operations, as the native
 * API's generic ones (see withGenericRefusals): `503` on every one (a key is looked up in the
 * database), beside the stream cap's where there is one; `507` on every one but discovery,
 * since HEAD and GET complete an upload whose every byte arrived too (its asset is written);
 * and on those, `500 STORAGE_DENIED` (each reads or writes the upload's stored bytes).
 */
function withDependencyRefusals(paths: Json): Json {
  return Object.fromEntries(
    Object.entries(paths).map(([path, pathItem]) => [
      path,
      Object.fromEntries(
        Object.entries(pathItem as Record<string, Json & { responses: Record<string, Json> }>).map(
          ([method, operation]) => {
            const responses = { ...operation.responses };
            // A HEAD's answers have no body.
            const answer = (description: string) =>
              method === 'head' ? { description } : rufhError(description);
            const busy = responses[503] as { description: string } | undefined;
            // Every 503 Wharf sends says when to try again, the stream cap's and the dependencies' alike.
            responses[503] = {
              ...answer(busy ? `${busy.description} ${UNAVAILABLE}` : UNAVAILABLE),
              headers: responseHeaders({ 'Retry-After': 'Seconds to wait before trying again.' }),
            };
            if (method !== 'options') {
              responses[507] = answer(
                'No room left to store the bytes or complete the upload (`STORAGE_FULL`); nothing of the refused ' +
                  'request is kept, except a completion’s bytes (`details.offset`): HEAD once there is room.',
              );
              responses[500] = answer(STORAGE_DENIED_ANSWER);
            }
            return [method, { ...operation, responses }];
          },
        ),
      ),
    ]),
  );
}

/** The protocol endpoints' path items: tus always, the storage endpoint when this node serves it. */
export function protocolPaths(options: { tus: boolean; storageEndpoint: boolean }): Json {
  return {
    ...(options.tus ? withDependencyRefusals({ ...tusPaths(), ...rufhPaths() }) : {}),
    ...(options.storageEndpoint ? storagePaths() : {}),
  };
}

export const protocolTags = [
  {
    name: 'tus',
    description:
      'tus 1.0 resumable uploads (creation, creation-with-upload, termination, expiration, checksum). Any tus ' +
      'client works; see https://tus.io/protocols/resumable-upload.',
  },
  {
    name: 'resumable HTTP',
    description:
      'Resumable Uploads for HTTP (the IETF httpbis draft, interop versions 3 to 9), as Apple’s URLSession ' +
      'speaks it by itself; see docs/resumable-http.md.',
  },
  {
    name: 'storage endpoint',
    description:
      'Where presigned URLs point on the embedded deployment: an S3-compatible subset (PutObject, POST Object, ' +
      'multipart). Use the URLs Wharf hands out; never build them yourself.',
  },
];
