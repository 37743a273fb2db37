import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import type { Lock, Locker } from '@tus/utils';
import { Metadata } from '@tus/utils';
import contentDisposition from 'content-disposition';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import { readingLocker } from '../../blobs/db-locker.js';
import { parseDigest } from '../../core/digests.js';
import { isWharfError, WharfError } from '../../core/errors.js';
import type { Principal, Upload } from '../../core/model.js';
import type { ResumableDeclaration } from '../../core/resumable.js';
import type { AppendResult, RufhState } from '../../core/resumable-http.js';
import { isStorageFull } from '../../core/unavailable.js';
import type { UploadOutcome } from '../../core/upload-types.js';
import type { Core } from '../../core/wharf.js';
import type { App } from '../api/context.js';
import { agree, refuseContentEncoding } from '../api/integrity.js';
import { assetJson, iso, type ResumableUploadSchema } from '../api/schemas.js';
import { announcedDigestTrailers, digestTrailers, refuseReprDigestTrailer } from '../digest-trailers.js';
import { authenticate, presentedKey } from '../plugins/auth.js';
import { takeResumableStream } from '../resumable-busy.js';
import { contentChecksums, type StagedBody, stageBody } from '../tus/checksum.js';
import { breakOf, endingAtCut } from '../tus/routes.js';
import {
  completeHeader,
  contentLength,
  type Dialect,
  declaredContentDigest,
  declaredLength,
  declaredReprDigest,
  dialectOf,
  hasBody,
  isProblem,
  PARTIAL_UPLOAD_TYPE,
  refuseUnreadableLength,
  reprDigest,
  requestedComplete,
  requestedLength,
  requestedOffset,
  sendProblem,
  sendUploadResumptionSupported,
  uploadLimit,
  wantsSha256ReprDigest,
} from './protocol.js';

/** Where upload resources live: `/v1/resumable/{upload id}`. */
export const RUFH_PATH = '/v1/resumable';

export interface RufhContext {
  core: Core;
  publicUrl: string;
  /** The lease lock every node shares (the tus endpoint's): one writer per upload at a time. */
  locker: Locker;
  /** Where a body with a Content-Digest waits until it is checked (the tus endpoint's, of this node). */
  stagingDir: string;
  /**
   * WHARF_RESUMABLE_INTERIM_RESPONSE: a creation announces its resource in a 104 before the
   * body is read. Off, the Location comes with the answer only: nginx relays no 1xx but 100 and
   * takes a 104 for the final response (a broken answer, then a hung connection, for every
   * URLSession upload), so behind it the 104 must not be sent.
   */
  interimResponse: boolean;
}

/** What a creating request says about the file beyond its bytes (query of the route it reached). */
export interface CreationQuery {
  name?: string | undefined;
  content_type?: string | undefined;
  sha256?: string | undefined;
  md5?: string | undefined;
  head_sha256?: string | undefined;
}

/**
 * The body of a request that carries bytes, taken as soon as its handler starts: a body whose
 * connection drops ends (keeping every byte read) instead of failing, so storage keeps them.
 * A connection that dropped before the handler ran gives what was left of it.
 */
const bodies = new WeakMap<FastifyRequest, Readable>();

function bodyOf(request: FastifyRequest): Readable | undefined {
  if (!hasBody(request.headers)) return undefined;
  const raw = request.raw;
  let body: Readable;
  if (raw.destroyed && !raw.complete) {
    const rest = new PassThrough();
    for (let chunk = raw.read(); chunk !== null; chunk = raw.read()) rest.write(chunk);
    rest.end();
    body = rest;
  } else {
    body = endingAtCut(raw);
  }
  bodies.set(request, body);
  return body;
}

const CreationQuerySchema = Type.Object(
  {
    name: Type.Optional(
      Type.String({ description: 'File name (else Content-Disposition or Upload-Metadata).' }),
    ),
    content_type: Type.Optional(Type.String({ maxLength: 255 })),
    sha256: Type.Optional(
      Type.String({ maxLength: 128, description: 'SHA-256 of the whole file, hex or base64.' }),
    ),
    md5: Type.Optional(Type.String({ maxLength: 64, description: 'MD5 of the whole file, hex or base64.' })),
    head_sha256: Type.Optional(
      Type.String({ maxLength: 128, description: 'SHA-256 of the first min(size, 4 MiB) bytes.' }),
    ),
  },
  { additionalProperties: false },
);

/**
 * The request's dialect; every answer names the interop version it is in (as the 104 must),
 * so a client can tell a draft server's answers from the final RFC's.
 */
function dialectOn(request: FastifyRequest, reply: FastifyReply): Dialect {
  const dialect = dialectOf(request.headers);
  if (dialect.version !== undefined) reply.header('Upload-Draft-Interop-Version', String(dialect.version));
  return dialect;
}

/** How long a request waits for another one (on any node) to let go of an upload. */
const LOCK_WAIT_MS = 30_000;

// Upload resources are named by the upload's id (a UUID); anything else is no upload.
const UPLOAD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Whether a request to a route that takes a file asks for a resumable upload: it carries
 * Upload-Complete (or interop 3's Upload-Incomplete). The whole file in a body of unknown
 * length (chunked, no Upload-Length) is not offered resumption, which the draft leaves to the
 * server: its size cannot be held against the limits up front, so it is an ordinary upload.
 */
export function asksForResumableUpload(request: FastifyRequest): boolean {
  const complete = requestedComplete(request.headers);
  if (complete === undefined) return false;
  return !(
    complete &&
    requestedLength(request.headers) === undefined &&
    contentLength(request.headers) === undefined
  );
}

/**
 * The creation of a RUFH upload from any route that takes a file's bytes (`POST /v1/assets`,
 * `POST /v1/resumable/`): records the upload, announces its resource in a 104 while the body
 * is still arriving, writes what arrives, and answers as the route itself would once the last
 * byte is in (201 and the asset), or 201 with the resource when the client sends the rest later.
 */
export async function createResumableUpload(
  ctx: RufhContext,
  request: FastifyRequest,
  reply: FastifyReply,
  query: CreationQuery,
) {
  const body = bodyOf(request);
  const dialect = dialectOn(request, reply);
  const complete = requestedComplete(request.headers);
  let upload: Upload;
  try {
    if (complete === undefined) {
      throw new WharfError(
        'VALIDATION_FAILED',
        'A resumable upload starts with Upload-Complete: ?1 (the whole file) or ?0 (a first part).',
      );
    }
    contentChecksums(request.headers); // A malformed one is refused before anything is made.
    refuseReprDigestTrailer(request.headers);
    refuseContentEncoding(request);
    const size = declaredLength(request.headers, complete);
    if (size === undefined) {
      throw new WharfError(
        'LENGTH_REQUIRED',
        "Say the file's length: Upload-Length, or Content-Length with Upload-Complete: ?1.",
      );
    }
    upload = await ctx.core.rufh.create(request.principal!, { ...declaration(request, query), size });
  } catch (err) {
    return refuse(ctx, request, reply, dialect, err, false);
  }
  const location = resourceUrl(ctx, upload);
  const limit = uploadLimit(dialect, {
    ...ctx.core.rufh.limits(request.principal!),
    maxAge: ctx.core.rufh.maxAge(upload),
  });
  // Before a byte is read: a client cut from here on knows where to resume.
  if (ctx.interimResponse) {
    sendUploadResumptionSupported(request.raw, reply.raw, dialect, {
      Location: location,
      'Upload-Limit': limit,
    });
  }
  reply.header('Location', location).header('Upload-Limit', limit);
  const result = await appendUnderLock(ctx, request, reply, dialect, upload, 0, body, complete === true);
  if (!result) return reply;
  if (result.outcome) return completed(ctx, reply, dialect, result.outcome, request);
  const [name, value] = completeHeader(dialect, false);
  return (
    reply
      .code(201)
      .header(name, value)
      .header('Upload-Offset', String(result.offset))
      .header('Upload-Length', String(upload.size))
      // POST /v1/assets's 201 is an asset or this (its schema's ResumableUpload).
      .send(resourceJson(ctx, upload, result.offset))
  );
}

/**
 * Resumable Uploads for HTTP at /v1/resumable/: a creation endpoint (POST), and the upload
 * resources it makes (HEAD or GET for the offset, PATCH to append, DELETE to cancel, OPTIONS
 * for the limits). Registered inside the native API, so keys and upload tokens work exactly as
 * on every other route; errors keep the API's JSON, plus the protocol's headers.
 */
export async function rufhRoutes(app: App, ctx: RufhContext): Promise<void> {
  // Bodies are the upload's bytes, unparsed, whatever their type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));

  // Hidden from the OpenAPI document, as tus is: a protocol of headers and a 104 it cannot say.
  const hidden = { hide: true };
  app.options(`${RUFH_PATH}/`, { schema: hidden, config: { auth: 'none' } }, (request, reply) =>
    discovery(ctx, request, reply),
  );
  // Bodies in a Content-Encoding are refused in the protocol's handling (see file-bodies.ts).
  const protocolEncoding = true;
  app.post(
    `${RUFH_PATH}/`,
    { schema: { ...hidden, querystring: CreationQuerySchema }, config: { protocolEncoding } },
    (request, reply) => createResumableUpload(ctx, request, reply, request.query),
  );

  const resource = `${RUFH_PATH}/:id`;
  const offsetHandler = async (request: FastifyRequest, reply: FastifyReply) => {
    const dialect = dialectOn(request, reply);
    let state: RufhState;
    try {
      const upload = await uploadOf(ctx, request);
      // On a full disk, where its lease cannot be recorded, it reads without the lock (see
      // readingLocker); an upload whose bytes all arrived is then not completed here.
      const read = (held: boolean) => ctx.core.rufh.state(upload, { complete: held });
      state = await withLock(ctx, request, upload, read, { reading: true });
    } catch (err) {
      return refuse(ctx, request, reply, dialect, err, false);
    }
    const { upload, offset, outcome, refusal } = state;
    const done = upload.status === 'completed' || outcome !== undefined || refusal !== undefined;
    const [name, value] = completeHeader(dialect, done);
    reply
      .header(name, value)
      .header('Upload-Offset', String(offset))
      .header('Upload-Length', String(upload.size ?? 0))
      .header('Cache-Control', 'no-store');
    if (refusal) return refuse(ctx, request, reply, dialect, refusal, true);
    if (!done) {
      reply.header(
        'Upload-Limit',
        uploadLimit(dialect, {
          ...ctx.core.rufh.limits(request.principal!),
          maxAge: ctx.core.rufh.maxAge(upload),
        }),
      );
    }
    if (outcome) assetHeaders(request, reply, outcome);
    return reply.code(204).send();
  };
  app.head(resource, { schema: hidden }, offsetHandler);
  // The editor's copy reads the offset with GET too; it answers as HEAD does, without content.
  app.get(resource, { schema: hidden, exposeHeadRoute: false }, offsetHandler);

  app.patch(resource, { schema: hidden, config: { protocolEncoding } }, async (request, reply) => {
    const body = bodyOf(request);
    const dialect = dialectOn(request, reply);
    let upload: Upload;
    let offset: number;
    let complete: boolean;
    try {
      upload = await uploadOf(ctx, request);
      offset = requestedOffset(request.headers);
      // Interop 3 marked only the parts that do not end the file (Upload-Incomplete: ?1); an
      // append without the field ends it (as Apple's own server, swift-nio-extras, reads it).
      const said = requestedComplete(request.headers) ?? (dialect.incomplete ? true : undefined);
      if (said === undefined) {
        throw new WharfError(
          'VALIDATION_FAILED',
          'An append says whether it ends the file: Upload-Complete: ?1 or ?0.',
        );
      }
      complete = said;
      checkAppendType(request, dialect);
      declaredContentDigest(request.headers);
      refuseReprDigestTrailer(request.headers);
      checkAppendLength(request, upload, offset, complete);
    } catch (err) {
      return refuse(ctx, request, reply, dialect, err, false);
    }
    const result = await appendUnderLock(ctx, request, reply, dialect, upload, offset, body, complete);
    if (!result) return reply;
    if (result.outcome) return completed(ctx, reply, dialect, result.outcome, request);
    const [name, value] = completeHeader(dialect, false);
    return (
      reply
        // Interop 3 acknowledged an incomplete append with 201; later versions with any 2xx.
        .code(dialect.incomplete ? 201 : 204)
        .header(name, value)
        .header('Upload-Offset', String(result.offset))
        .send()
    );
  });

  app.delete(resource, { schema: hidden }, async (request, reply) => {
    const dialect = dialectOn(request, reply);
    try {
      const upload = await uploadOf(ctx, request);
      await withLock(ctx, request, upload, () => ctx.core.rufh.cancel(upload));
    } catch (err) {
      return refuse(ctx, request, reply, dialect, err, false);
    }
    return reply.code(204).send();
  });

  app.options(resource, { schema: hidden, config: { auth: 'none' } }, (request, reply) =>
    discovery(ctx, request, reply),
  );
}

/**
 * OPTIONS: the limits a new upload would get (the account's with a key, the server's
 * without: a browser's preflight carries none).
 */
export async function discovery(ctx: RufhContext, request: FastifyRequest, reply: FastifyReply) {
  const dialect = dialectOn(request, reply);
  const principal: Principal | undefined =
    presentedKey(request) === undefined ? undefined : await authenticate(ctx.core, request);
  return reply
    .code(204)
    .header('Upload-Limit', uploadLimit(dialect, ctx.core.rufh.limits(principal)))
    .header('Accept-Patch', PARTIAL_UPLOAD_TYPE)
    .send();
}

/**
 * Appends the request's body under the upload's lock. A request that comes for the upload
 * while this one still holds it (the client gave this one up; the server had not noticed)
 * cuts this one: what arrived is kept, and the newcomer goes on from there (the draft's
 * recommended way). Undefined when the refusal has been sent.
 */
async function appendUnderLock(
  ctx: RufhContext,
  request: FastifyRequest,
  reply: FastifyReply,
  dialect: Dialect,
  upload: Upload,
  offset: number,
  // None (a creation that only opens the upload, an empty append that only says "done"):
  // storage is not written at all.
  body: Readable | undefined,
  complete: boolean,
): Promise<AppendResult | undefined> {
  const raw = request.raw;
  let result: AppendResult;
  let staged: StagedBody | undefined;
  let release: (() => void) | undefined;
  // Whether the body breaks off (the client hangs up, Wharf cuts it), as a tus PATCH's is watched.
  const broken = body ? breakOf(raw) : undefined;
  let failure: unknown;
  try {
    refuseContentEncoding(request);
    // One of the account's upload streams, before a byte is read (staged or appended), held
    // until the append is over (see UploadStreams).
    if (body) release = takeResumableStream(ctx.core.uploads.streams, upload);
    let bytes = body;
    const checksums = body ? contentChecksums(request.headers) : [];
    // The same digests sent after the body, as trailers the Trailer header announces.
    const trailed = body ? announcedDigestTrailers(request.headers) : [];
    const trailing = trailed.length > 0 ? () => contentChecksums(digestTrailers(raw, trailed)) : undefined;
    // The whole file's SHA-256, which an append may declare too (checked at completion).
    const reprSha256 = declaredReprDigest(request.headers);
    if (body && (checksums.length > 0 || trailing)) {
      // RFC 9530's Content-Digest and RFC 1864's Content-MD5 cover this request's content: it is
      // staged and checked before a byte is appended (as tus's Upload-Checksum is), so a mismatch
      // changes nothing. A cut such request keeps nothing either: its digest could not be checked
      // (a trailer never arrives: INVALID_DIGEST).
      staged = await stageBody(body, ctx.stagingDir, (upload.size ?? 0) - offset, checksums, trailing);
      if (staged.mismatched) {
        const field = staged.mismatched === 'md5' ? 'Content-MD5' : 'Content-Digest (sha-256)';
        throw new WharfError(
          'CHECKSUM_MISMATCH',
          `The content does not match its ${field}; nothing was appended.`,
          {
            algorithm: staged.mismatched,
          },
        );
      }
      bytes = createReadStream(staged.path);
    }
    result = await withLock(ctx, request, upload, () =>
      ctx.core.rufh.append(upload, offset, bytes, {
        complete,
        wasCut: () => staged === undefined && !raw.complete,
        ...(reprSha256 && { reprSha256 }),
      }),
    );
  } catch (err) {
    failure = err;
    body?.resume();
    await refuse(ctx, request, reply, dialect, err, false);
    return undefined;
  } finally {
    // Bytes refused or broken off on their way in are a failed transfer, counted once as a tus
    // PATCH's are: refused for want of room (a full disk, the S3 store's quota) under
    // STORAGE_FULL; else a body that broke off (ABORTED, or the code of Wharf's own cut), though
    // what arrived is kept and the upload resumes; else a wrong Content-Digest or Content-MD5, or
    // a body past the upload's length.
    const broke = broken?.();
    if (broken) {
      const counted = isStorageFull(failure)
        ? failure
        : (broke ?? (refusesBytes(failure) ? failure : undefined));
      if (counted !== undefined) ctx.core.uploads.transferFailed('rufh', counted);
    }
    release?.();
    if (staged) await rm(staged.path, { force: true });
  }
  if (result.refusal) {
    // The file arrived whole and was refused (its digest, the quota): the representation was
    // processed, so the answer says complete, and resuming would not help.
    reply.header('Upload-Offset', String(result.offset));
    await refuse(ctx, request, reply, dialect, result.refusal, true);
    return undefined;
  }
  return result;
}

/** A refusal of the bytes an append carried (not of its headers, before any was read). */
function refusesBytes(err: unknown): boolean {
  return isWharfError(err, 'CHECKSUM_MISMATCH') || isWharfError(err, 'FILE_TOO_LARGE');
}

/**
 * Runs `work` holding the upload's lock across nodes (the one tus requests take too); also what
 * `DELETE /v1/uploads/{id}` holds to cancel a tus or RUFH upload. With `reading` (a HEAD),
 * `work` runs without the lock when a full disk refuses its lease (see readingLocker), and is
 * told whether it holds it.
 */
export async function withLock<T>(
  ctx: Pick<RufhContext, 'locker'>,
  request: FastifyRequest,
  upload: Upload,
  work: (held: boolean) => Promise<T>,
  { reading = false } = {},
) {
  const lock: Lock & { readonly held?: boolean } = (reading ? readingLocker(ctx.locker) : ctx.locker).newLock(
    upload.storageKey,
  );
  // A request whose client went away while it waited must not take the upload from the
  // request that client (or another node) makes now: waiting, it would ask that one to let go.
  const gone = new AbortController();
  const socket = request.raw.socket;
  const leave = () => gone.abort();
  if (!socket || socket.destroyed) gone.abort();
  else socket.once('close', leave);
  let unlocked = false;
  try {
    await lock.lock(AbortSignal.any([gone.signal, AbortSignal.timeout(LOCK_WAIT_MS)]), async () => {
      // Another request asks for the upload: this one's client may have gone silent mid-body.
      // Its connection is closed, so its body ends where it is and its bytes are kept. Only
      // then: a body that arrived whole ends by itself and its request answers once its work
      // (writing, completing) is done; cut, its client got no answer for bytes that were
      // stored, or, once answered, lost the next request it sent on the kept-alive connection.
      // The ask may also reach a request that has just let go (the locker polls for it).
      if (!unlocked && !request.raw.complete) request.raw.socket?.destroy();
    });
  } catch (err) {
    // The lease could not be recorded (the database is away, or its disk full): that, as the
    // tus endpoint answers it, not a busy upload (a full disk answered 503 and "retry shortly").
    if (isWharfError(err)) throw err;
    throw new WharfError(
      'SERVICE_UNAVAILABLE',
      'Another request is still writing this upload; retry shortly.',
    );
  } finally {
    socket?.off('close', leave);
  }
  try {
    return await work(lock.held ?? true);
  } finally {
    unlocked = true;
    await lock.unlock();
  }
}

/** The final answer of a completed upload: what `POST /v1/assets` answers, and the protocol's headers. */
function completed(
  ctx: RufhContext,
  reply: FastifyReply,
  dialect: Dialect,
  outcome: UploadOutcome,
  request: FastifyRequest,
) {
  const [name, value] = completeHeader(dialect, true);
  reply.header(name, value).header('Upload-Offset', String(outcome.asset.size));
  assetHeaders(request, reply, outcome);
  if (request.method === 'HEAD') return reply.code(204).send();
  return reply.code(outcome.deduplicated ? 200 : 201).send({
    status: outcome.deduplicated ? ('exists' as const) : ('created' as const),
    asset: assetJson(outcome.asset, ctx.publicUrl),
  });
}

/**
 * Headers a client that lost the final answer also gets from HEAD: which asset the upload
 * became, and its verified SHA-256 (RFC 9530's Repr-Digest; the draft's Want-Repr-Digest is
 * answered with SHA-256, the digest Wharf verifies every file by, unless it rules SHA-256 out).
 */
function assetHeaders(request: FastifyRequest, reply: FastifyReply, outcome: UploadOutcome): void {
  reply.header('Wharf-Asset-Id', outcome.asset.id);
  if (outcome.asset.status === 'ready' && wantsSha256ReprDigest(request.headers)) {
    reply.header('Repr-Digest', reprDigest(outcome.asset.sha256));
  }
}

/**
 * A refusal in the API's JSON (or the draft's problem document for the two it defines), with
 * the protocol's completeness header: `complete` when the file arrived and processing it
 * failed (resuming would not help), otherwise incomplete.
 */
function refuse(
  ctx: RufhContext,
  request: FastifyRequest,
  reply: FastifyReply,
  dialect: Dialect,
  err: unknown,
  complete: boolean,
) {
  bodies.get(request)?.resume();
  if (!request.raw.complete && !request.raw.destroyed) request.raw.resume();
  if (isProblem(err) && !complete) return sendProblem(reply, dialect, err);
  const [name, value] = completeHeader(dialect, complete);
  reply.header(name, value);
  // The draft: a 413 of the server's limits says them, so the client can try within them.
  if (isWharfError(err, 'FILE_TOO_LARGE') && request.principal) {
    reply.header('Upload-Limit', uploadLimit(dialect, ctx.core.rufh.limits(request.principal)));
  }
  // Where the upload stands: complete, or (a 507 after its last bytes were kept) all received.
  const standing = isWharfError(err, 'UPLOAD_NOT_PENDING') || isWharfError(err, 'STORAGE_FULL');
  if (standing && typeof err.details?.offset === 'number') {
    reply.header('Upload-Offset', String(err.details.offset));
  }
  throw err;
}

async function uploadOf(ctx: RufhContext, request: FastifyRequest): Promise<Upload> {
  // A UUID, case-insensitive (RFC 9562): stored and answered in lower case.
  const id = (request.params as { id: string }).id.toLowerCase();
  if (!UPLOAD_ID.test(id)) throw new WharfError('NOT_FOUND', 'No such upload.');
  return ctx.core.rufh.get(request.principal!, id);
}

function resourceUrl(ctx: RufhContext, upload: Upload): string {
  return `${ctx.publicUrl}${RUFH_PATH}/${upload.id}`;
}

function resourceJson(
  ctx: RufhContext,
  upload: Upload,
  offset: number,
): Static<typeof ResumableUploadSchema> {
  return {
    id: upload.id,
    url: resourceUrl(ctx, upload),
    name: upload.name,
    size: upload.size ?? 0,
    offset,
    expires_at: iso(upload.expiresAt),
  };
}

/** Appends carry `application/partial-upload` from interop 6 on; an unlabelled body is taken too. */
function checkAppendType(request: FastifyRequest, dialect: Dialect): void {
  const type = request.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
  if (dialect.partialUploadType && type !== undefined && type !== '' && type !== PARTIAL_UPLOAD_TYPE) {
    throw new WharfError(
      'UNSUPPORTED_MEDIA_TYPE',
      `An append's body is ${PARTIAL_UPLOAD_TYPE}, not ${type}.`,
    );
  }
}

/**
 * Refuses, before a byte is written, an append whose length indications contradict the
 * upload's: another Upload-Length, a body past the end, or a "last" body that falls short.
 */
function checkAppendLength(request: FastifyRequest, upload: Upload, offset: number, complete: boolean): void {
  const size = upload.size ?? 0;
  refuseUnreadableLength(request.headers);
  const length = requestedLength(request.headers);
  if (length !== undefined && length !== size) {
    throw new WharfError('INCONSISTENT_LENGTH', `The upload's length is ${size} bytes, not ${length}.`, {
      length: size,
      other: length,
    });
  }
  const body = contentLength(request.headers);
  if (body === undefined || upload.status !== 'pending') return;
  if (offset + body > size || (complete && offset + body !== size)) {
    throw new WharfError(
      'INCONSISTENT_LENGTH',
      `${body} bytes at offset ${offset} ${complete ? 'do not end' : 'go past the end of'} a file of ${size} bytes.`,
      { length: size, other: offset + body },
    );
  }
}

/**
 * The file as the creating request describes it: the route's query (`name`, `content_type`,
 * `sha256`, `head_sha256`), else the draft's recommended Content-Disposition filename and the
 * request's Content-Type, else tus-style Upload-Metadata (what tus-js-client's IETF mode sends);
 * the SHA-256 also from Repr-Digest.
 */
function declaration(request: FastifyRequest, query: CreationQuery): Omit<ResumableDeclaration, 'size'> {
  const metadata = uploadMetadata(request);
  return {
    name: query.name ?? dispositionName(request) ?? metadata.filename ?? undefined,
    contentType: query.content_type ?? bodyType(request) ?? metadata.filetype ?? undefined,
    // Every declaration of the file's digest counts, and they must agree (as on `POST /v1/assets`).
    sha256: agree(
      [
        query.sha256 && parseDigest('sha256', query.sha256, 'sha256'),
        declaredReprDigest(request.headers),
        metadata.sha256 && parseDigest('sha256', metadata.sha256, 'sha256'),
      ],
      'SHA-256',
    ),
    md5: agree(
      [
        query.md5 && parseDigest('md5', query.md5, 'md5'),
        metadata.md5 && parseDigest('md5', metadata.md5, 'md5'),
      ],
      'MD5',
    ),
    headSha256: query.head_sha256 ?? metadata.head_sha256 ?? undefined,
  };
}

function uploadMetadata(request: FastifyRequest): Record<string, string | null> {
  const header = request.headers['upload-metadata'];
  if (typeof header !== 'string') return {};
  try {
    return Metadata.parse(header);
  } catch {
    throw new WharfError('VALIDATION_FAILED', 'Upload-Metadata is not a list of "key base64-value" pairs.');
  }
}

function dispositionName(request: FastifyRequest): string | undefined {
  const header = request.headers['content-disposition'];
  if (typeof header !== 'string') return undefined;
  try {
    return contentDisposition.parse(header).parameters.filename;
  } catch {
    throw new WharfError('VALIDATION_FAILED', 'Content-Disposition is malformed.');
  }
}

/**
 * The creating request's Content-Type is the file's, unless it only labels the transfer
 * (partial uploads, tus's offset stream, curl's default form type).
 */
function bodyType(request: FastifyRequest): string | undefined {
  const header = request.headers['content-type'];
  const essence = header?.split(';')[0]?.trim().toLowerCase();
  if (
    essence === undefined ||
    essence === '' ||
    essence === PARTIAL_UPLOAD_TYPE ||
    essence === 'application/offset+octet-stream' ||
    essence === 'application/x-www-form-urlencoded'
  ) {
    return undefined;
  }
  return header;
}
