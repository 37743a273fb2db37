import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import { Server } from '@tus/server';
import { type DataStore, ERRORS, type Locker, Metadata, REQUEST_METHODS } from '@tus/utils';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { readingLocker } from '../../blobs/db-locker.js';
import type { BodyOffer } from '../../blobs/tus-storage.js';
import { parseDigest } from '../../core/digests.js';
import { type ErrorCode, isWharfError, WharfError } from '../../core/errors.js';
import type { Principal, Upload } from '../../core/model.js';
import { isStorageFull, refusedForResources } from '../../core/unavailable.js';
import type { Core } from '../../core/wharf.js';
import { keepIdempotentAnswer } from '../api/idempotency.js';
import { agree, refuseContentEncoding } from '../api/integrity.js';
import { announcedDigestTrailers, digestTrailers, refuseReprDigestTrailer } from '../digest-trailers.js';
import { authenticate, presentedKey } from '../plugins/auth.js';
import { logFailure } from '../plugins/errors.js';
import { settleRefusedBody } from '../refused-body.js';
import { noteErrorCode } from '../request-log.js';
import { takeResumableStream } from '../resumable-busy.js';
import type { RoutingErrorShape } from '../routing-errors.js';
import { declaredReprDigest } from '../rufh/protocol.js';
import { CUT_ERROR, cutReason } from '../server-cuts.js';
import {
  CHECKSUM_ALGORITHMS,
  CHECKSUM_MISMATCH_STATUS,
  contentChecksums,
  type DeclaredChecksum,
  parseUploadChecksum,
  type StagedBody,
  stageBody,
} from './checksum.js';
import { claimCreation, keepCreation } from './idempotency.js';

export const TUS_PATH = '/v1/tus';

export interface TusRouteOptions {
  core: Core;
  publicUrl: string;
  datastore: DataStore;
  locker: Locker;
  /** Where bodies that carry a checksum wait until it is checked (a directory of this node). */
  stagingDir: string;
  /** Lets bodies reach the datastore as Node streams (see BodyHandoff); else they go through tus. */
  bodies?: BodyHandoff | undefined;
}

/**
 * The datastore's side door for request bodies (the local one has it: BodyChannel in
 * src/blobs/tus-storage.ts): `handle` runs with `offer` as the request's body, which only a
 * write made while handling this request can take (it sets `taken`).
 */
export interface BodyHandoff {
  run<T>(offer: BodyOffer, handle: () => Promise<T>): Promise<T>;
}

/** What one request is to the tus server: who sent it and which upload it names. */
interface TusCall {
  principal: Principal | undefined;
  upload: Upload | undefined;
  /** Ends the request's connection while its body is still arriving (it then ends there). */
  cut?: () => void;
  /** The whole file's SHA-256 (hex) the request's Repr-Digest declares. */
  reprSha256?: string | undefined;
  /** The refusal the tus server answered, in Wharf's terms (its body is Wharf's JSON). */
  error?: WharfError;
  /** A failure inside the tus server answered with a 5xx (INTERNAL, STORAGE_FULL): for the log. */
  failure?: unknown;
  /** The body offered to the datastore; a creation's gets its key once the upload exists. */
  offer?: BodyOffer;
  /** The refusal of a body whose bytes went on past the upload's length (not its headers). */
  overrun?: WharfError;
}

// Upload URLs name the storage key without its account (`/v1/tus/<uuid><.ext>`): the caller's
// own account completes it, so another account's key names a different, unknown upload.
const UPLOAD_NAME = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(\.[a-z0-9]{1,10})?$/;
const TUS_VERSION = '1.0.0';
const OFFSET_STREAM = 'application/offset+octet-stream';
/** The methods of tus 1.0, which the routes take and X-HTTP-Method-Override may name. */
const TUS_METHODS: readonly string[] = REQUEST_METHODS;

/**
 * The request's method as tus 1.0 has it: an `X-HTTP-Method-Override` "MUST be interpreted as
 * the request's method" (clients behind proxies that pass only GET and POST send POST with it:
 * tus-js-client's overridePatchMethod). @tus/server 2 no longer reads the header (1.x did), and
 * Fastify routes by the request line, so every tus route answers as the method it names, with
 * that method's checks. An empty one is no override, as tus.io's server and tusd have it.
 */
function tusMethod(request: FastifyRequest, reply: FastifyReply): string {
  const override = request.headers['x-http-method-override'];
  if (override === undefined || override === '') return request.method;
  const method = String(override).trim().toUpperCase();
  if (TUS_METHODS.includes(method)) return method;
  // The method the request is, per tus, and one no tus route takes: 405 (with Allow, as HTTP
  // requires), not the route's 404, which a tus client reads as "the upload is gone".
  reply.header('Allow', TUS_METHODS.join(', '));
  throw new WharfError(
    'METHOD_NOT_ALLOWED',
    `X-HTTP-Method-Override names a method the tus endpoint does not take: ${TUS_METHODS.join(', ')}.`,
    { allowed: TUS_METHODS },
  );
}

/** The method each tus request is answered as (see tusMethod). */
const methods = new WeakMap<FastifyRequest, string>();
const methodOf = (request: FastifyRequest): string => methods.get(request) ?? request.method;

/**
 * tus.io's own refusals (its ERRORS, thrown as these very objects) in Wharf's terms: every
 * error of the native API is JSON with a code to match on, and tus.io answers text. Each keeps
 * the status tus clients know (409 for a wrong offset, 413 for a body past Upload-Length, 501
 * for an extension Wharf lacks), except tus.io's 403s for a missing Upload-Offset (the code's
 * 400) or Content-Type (415, the tus spec's; the handler refuses that one first).
 */
const TUS_REFUSALS = new Map<unknown, { code: ErrorCode; message: string; status?: number }>([
  [
    ERRORS.INVALID_OFFSET,
    {
      code: 'OFFSET_MISMATCH',
      message: "Upload-Offset is not the upload's offset: HEAD it for where to resume.",
    },
  ],
  [
    ERRORS.ERR_SIZE_EXCEEDED,
    { code: 'FILE_TOO_LARGE', message: "The body goes past the upload's Upload-Length." },
  ],
  [
    ERRORS.ERR_MAX_SIZE_EXCEEDED,
    { code: 'FILE_TOO_LARGE', message: 'The upload is larger than the largest file this account takes.' },
  ],
  [ERRORS.FILE_NOT_FOUND, { code: 'NOT_FOUND', message: 'No such upload.' }],
  [
    ERRORS.FILE_NO_LONGER_EXISTS,
    { code: 'UPLOAD_EXPIRED', message: 'This upload was terminated or has expired.' },
  ],
  [
    ERRORS.INVALID_LENGTH,
    { code: 'VALIDATION_FAILED', message: "Upload-Length is required: the file's size." },
  ],
  [
    ERRORS.INVALID_METADATA,
    {
      code: 'VALIDATION_FAILED',
      message: 'Upload-Metadata is comma-separated "key base64(value)" pairs, each key once.',
    },
  ],
  [ERRORS.MISSING_OFFSET, { code: 'VALIDATION_FAILED', message: 'Upload-Offset is required.' }],
  [
    ERRORS.INVALID_CONTENT_TYPE,
    { code: 'UNSUPPORTED_MEDIA_TYPE', message: `A PATCH body is sent as Content-Type: ${OFFSET_STREAM}.` },
  ],
  [
    ERRORS.INVALID_TERMINATION,
    { code: 'UPLOAD_NOT_PENDING', message: 'A finished upload cannot be terminated; delete its asset.' },
  ],
  [
    ERRORS.UNSUPPORTED_CREATION_DEFER_LENGTH_EXTENSION,
    {
      code: 'VALIDATION_FAILED',
      message: 'Upload-Defer-Length is not supported: Wharf needs the size (Upload-Length) up front.',
      status: 501,
    },
  ],
  [
    ERRORS.UNSUPPORTED_CONCATENATION_EXTENSION,
    { code: 'VALIDATION_FAILED', message: 'Upload-Concat (concatenation) is not supported.', status: 501 },
  ],
]);

/** The code of an answer tus.io gives with a status only (a missing Tus-Resumable is its 412). */
const TUS_STATUS_CODES: Partial<Record<number, ErrorCode>> = {
  400: 'VALIDATION_FAILED',
  404: 'NOT_FOUND',
  412: 'PRECONDITION_FAILED',
  413: 'FILE_TOO_LARGE',
};

/** A refusal at the status to answer it with. */
interface TusRefusal {
  error: WharfError;
  status: number;
}

/** What the tus server failed with, as Wharf answers it (see TUS_REFUSALS). */
function tusRefusal(failure: unknown, upload: Upload | undefined): TusRefusal {
  // A full disk under the tus file store is Wharf's STORAGE_FULL, and no descriptor left
  // SERVICE_UNAVAILABLE, not tus's generic 500.
  const err = refusedForResources(failure);
  if (isWharfError(err)) return { error: err, status: err.status };
  const known = TUS_REFUSALS.get(failure);
  if (known) {
    // What a body may fill is the length the upload declared.
    const details =
      failure === ERRORS.ERR_SIZE_EXCEEDED && upload?.size != null ? { limit: upload.size } : undefined;
    const error = new WharfError(known.code, known.message, details);
    return { error, status: known.status ?? error.status };
  }
  // Other refusals of tus.io's carry their status and text (its stream limiter's 413 for a
  // body past what the upload has room for).
  const { status_code: status, body } = (failure ?? {}) as { status_code?: unknown; body?: unknown };
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return statusRefusal(status, typeof body === 'string' ? body : '');
  }
  return { error: new WharfError('INTERNAL', 'Internal server error.'), status: 500 };
}

/** An answer tus.io wrote itself, with its status and text only, in Wharf's terms. */
function statusRefusal(status: number, text: string): TusRefusal {
  const code = TUS_STATUS_CODES[status] ?? (status < 500 ? 'VALIDATION_FAILED' : 'INTERNAL');
  const message = code === 'INTERNAL' ? 'Internal server error.' : text.trim() || `Refused (${status}).`;
  return { error: new WharfError(code, message), status };
}

/** Failures before routing (a path that does not decode) as the tus routes answer errors. */
export const tusRoutingErrors: RoutingErrorShape = {
  prefixes: [`${TUS_PATH}/`],
  send: (err, _request, reply) => {
    reply.status(err.status).header('Tus-Resumable', TUS_VERSION).send(errorBody(err));
  },
};

/**
 * tus 1.0 at /v1/tus/ through tus.io's server, with Wharf around it: every request is
 * authenticated and resolved to the caller's own upload before tus sees it, Wharf's state
 * (completed, expired) answers first, checksums are checked here, and the last byte completes
 * the upload as every flow does.
 */
export async function tusRoutes(app: FastifyInstance, options: TusRouteOptions): Promise<void> {
  const { core, publicUrl, stagingDir } = options;
  // A node's staged bodies belong to requests of this process: any left are a crash's.
  await rm(stagingDir, { recursive: true, force: true });
  await mkdir(stagingDir, { recursive: true });

  /** An upload's URL: its storage key without the account (see UPLOAD_NAME). */
  const uploadUrl = (storageKey: string) =>
    `${publicUrl}${TUS_PATH}/${storageKey.slice(storageKey.indexOf('/') + 1)}`;

  const calls = new WeakMap<Request, TusCall>();
  const callOf = (req: Request): TusCall => {
    const call = calls.get(req);
    if (!call) throw new Error('tus request without its Wharf call');
    return call;
  };

  const tus = new Server({
    path: TUS_PATH,
    datastore: options.datastore,
    // A request that asks for an upload another request holds makes that one let go (tus.io's
    // cancel): the holder's client may be gone, a dropped network the server has not noticed.
    // tus.io then aborts the body it reads, but bodies reach the datastore without it (see
    // BodyHandoff), so the holder's connection is cut as well: its body ends with every byte
    // that arrived, its write settles and frees the lock (as the RUFH endpoint does). Without
    // this a silent connection held the upload, and HEAD and the resuming PATCH got 500s. A
    // HEAD reads the offset without it when a full disk leaves no room to record the lease.
    locker: (req: Request) =>
      cutOnRelease(req.method === 'HEAD' ? readingLocker(options.locker) : options.locker, calls.get(req)),
    disableTerminationForFinishedUploads: true,
    maxSize: (req) => {
      const principal = callOf(req).principal;
      return principal ? core.resumable.maxFileSize(principal) : 0;
    },
    // The tus id is the upload's storage key: on S3 the finished object is then already at it.
    namingFunction: async (req, metadata) => {
      const call = callOf(req);
      const upload = await core.resumable.create(call.principal!, {
        name: metadata?.filename ?? undefined,
        contentType: metadata?.filetype ?? undefined,
        size: Number(req.headers.get('upload-length')),
        sha256: agree(
          [metadata?.sha256 ? parseDigest('sha256', metadata.sha256, 'sha256') : undefined, call.reprSha256],
          'SHA-256',
        ),
        md5: metadata?.md5 ?? undefined,
        headSha256: metadata?.head_sha256 ?? undefined,
      });
      call.upload = upload;
      if (call.offer) call.offer.key = upload.storageKey;
      return upload.storageKey;
    },
    generateUrl: (_req, { id }) => uploadUrl(id),
    getFileIdFromRequest: (req) => callOf(req).upload?.storageKey,
    onUploadFinish: async (req) => {
      const outcome = await core.resumable.finish(callOf(req).upload!);
      return {
        headers: { 'Wharf-Asset-Id': outcome.asset.id, 'Wharf-Upload-Result': uploadResult(outcome) },
      };
    },
    onResponseError: (req, failure) => {
      const call = calls.get(req);
      const refusal = tusRefusal(failure, call?.upload);
      if (call) {
        call.error = refusal.error;
        // A failure of Wharf's is logged at error as every API's are (a 507 too: someone must
        // free space); a refusal tus answers 501 (an extension Wharf lacks) is the client's.
        if (refusal.error.status >= 500) call.failure = failure;
      }
      return { status_code: refusal.status, body: JSON.stringify(errorBody(refusal.error)) };
    },
  });

  // Bodies are the tus server's to read, unparsed, whatever their type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  app.addHook('onSend', async (request, reply) => {
    if (methodOf(request) !== 'OPTIONS') reply.header('Tus-Resumable', TUS_VERSION);
  });
  // A creation holding its Idempotency-Key keeps its upload under it once answered 201.
  app.addHook('onSend', keepIdempotentAnswer);

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const call: TusCall = {
      principal: undefined,
      upload: undefined,
      // Only a body still arriving needs ending. One that arrived whole ends by itself and its
      // request answers; cut, its client got no answer for bytes that were written (`fetch
      // failed`), or, once answered, lost the next request it sent on the kept-alive connection.
      cut: () => {
        if (!request.raw.complete) request.raw.socket?.destroy();
      },
    };
    const method = tusMethod(request, reply);
    methods.set(request, method);
    // Discovery (OPTIONS) carries no key in browsers (a preflight cannot): it answers without
    // one, with the account's limit when a key is presented. Every other request needs one.
    if (method !== 'OPTIONS' || presentedKey(request) !== undefined) {
      call.principal = await authenticate(core, request);
    }
    // The uuid of the name is case-insensitive (RFC 9562), its key lower case as made.
    const name = ((request.params as { '*'?: string })['*'] ?? '').toLowerCase();
    if (name !== '') {
      // A name that is no upload is 404 however long: the router's 414 for a segment over 500
      // characters is for named parameters, not this wildcard, and tus clients read 404 as
      // "start a new upload" (test/integration/probing.test.ts).
      if (method === 'POST' || method === 'OPTIONS' || !UPLOAD_NAME.test(name)) {
        throw new WharfError('NOT_FOUND', 'No such upload.');
      }
      const upload = await core.resumable.get(call.principal!, `${call.principal!.accountId}/${name}`);
      call.upload = upload;
      // A Fastify reply is thenable: awaited, it would read as undefined (and tus would answer
      // a second time), so the helper says whether it answered.
      if (await answerFromWharf(request, reply, upload)) return reply;
    } else if (method !== 'POST' && method !== 'OPTIONS') {
      throw new WharfError('NOT_FOUND', 'No such upload.');
    }

    if (method === 'POST' || method === 'PATCH') {
      refuseContentEncoding(request);
      // tus.io refuses a PATCH without this type with 403, and one of another type with 400;
      // the tus spec says 415, as Wharf answers any body it does not take.
      if (method === 'PATCH' && request.headers['content-type'] !== OFFSET_STREAM) {
        request.raw.resume();
        throw new WharfError(
          'UNSUPPORTED_MEDIA_TYPE',
          `A PATCH body is sent as Content-Type: ${OFFSET_STREAM}.`,
        );
      }
      // The whole file's SHA-256 (RFC 9530), as the RUFH endpoint takes it: on a creation beside
      // Upload-Metadata's sha256 (they must agree), on a PATCH checked against it or recorded.
      call.reprSha256 = declaredReprDigest(request.headers);
      // Recorded or checked before the body: as a trailer it would come too late (see refuseReprDigestTrailer).
      refuseReprDigestTrailer(request.headers);
      if (call.reprSha256 && call.upload) {
        call.upload = await core.resumable.declareWhole(call.upload, call.reprSha256);
      }
    }
    if (method === 'POST') {
      // Sent again with its Idempotency-Key: the upload the first made, its body not read.
      const made = await claimCreation(core, call.principal!, request);
      if (made) return replayCreation(request, reply, made);
    }

    let staged: StagedBody | undefined;
    let release: (() => void) | undefined;
    let broken: (() => unknown) | undefined;
    let thrown: unknown;
    try {
      let body: Readable | undefined;
      const headers = requestHeaders(request);
      if (hasBody(request, method)) {
        broken = breakOf(request.raw);
        // One of the account's upload streams, before a byte is read (staged or handed to tus),
        // held until the request's work on its body is over (see UploadStreams).
        release = takeResumableStream(core.uploads.streams, call.principal!);
        const uploadChecksum = parseUploadChecksum(request.headers['upload-checksum']);
        // Content-MD5 and Content-Digest say the same of the body as Upload-Checksum does.
        const checksums = [...(uploadChecksum ? [uploadChecksum] : []), ...contentChecksums(request.headers)];
        // Or say it after the body, as trailers the Trailer header announces: staged the same
        // way, and checked once the body has ended, before tus sees a byte of it.
        const trailed = announcedDigestTrailers(request.headers);
        const trailing =
          trailed.length > 0 ? () => contentChecksums(digestTrailers(request.raw, trailed)) : undefined;
        // A body without a Content-Length shows it goes past the upload's length only at its
        // end. The local datastore gives back what it wrote of one (see WharfFileStore.write);
        // tus.io's S3 store cannot (whole parts are uploaded as they fill, and a failing body
        // loses the short tail an earlier PATCH left): staged first, nothing of a refused one
        // reaches the store, as with a checksum. Without a checksum to check, a cut body ends
        // where it was cut, and what arrived is written (what resuming starts from).
        const unbounded = !options.bodies && request.headers['content-length'] === undefined;
        const checked = checksums.length > 0 || trailing !== undefined;
        if (checked || unbounded) {
          const source = checked ? request.raw : endingAtCut(request.raw);
          staged = await stage(request, call, checksums, source, trailing);
          if (staged.mismatched) {
            const field =
              uploadChecksum?.algorithm === staged.mismatched
                ? 'Upload-Checksum'
                : 'Content-MD5 or Content-Digest';
            const mismatch = new WharfError(
              'CHECKSUM_MISMATCH',
              `The body does not match its ${field} (${staged.mismatched}); nothing was written.`,
            );
            core.uploads.transferFailed('tus', mismatch);
            return reply.code(CHECKSUM_MISMATCH_STATUS).send(errorBody(mismatch));
          }
          body = createReadStream(staged.path);
          headers.set('content-length', String(staged.size));
          headers.delete('transfer-encoding');
        } else {
          body = endingAtCut(request.raw);
        }
      }
      const bodies = body && options.bodies;
      if (body && bodies) {
        // Straight to the datastore (see BodyChannel): tus.io's server sees the headers only.
        const limit = bodyLimit(headers, call.upload);
        call.offer = { body, limit, key: call.upload?.storageKey, taken: false };
      }
      const tusRequest = new Request(new URL(request.url, publicUrl), {
        method,
        headers,
        ...(body && !options.bodies && { body: Readable.toWeb(body) as ReadableStream, duplex: 'half' }),
      } as RequestInit);
      calls.set(tusRequest, call);
      let response: Response;
      const { offer } = call;
      try {
        response = await (bodies && offer
          ? bodies.run(offer, () => tus.handleWeb(tusRequest))
          : tus.handleWeb(tusRequest));
      } finally {
        // Refused before anything was written: the body is read and dropped, as tus would.
        if (offer && !offer.taken) offer.body.resume();
        // Its bytes went past what the upload has room for (a body without a Content-Length).
        if (offer?.overflowed) {
          call.overrun =
            call.error ?? new WharfError('FILE_TOO_LARGE', "The body goes past the upload's Upload-Length.");
        }
      }
      if (method === 'DELETE' && response.status === 204 && call.upload) {
        await core.resumable.terminated(call.upload);
      }
      if (method === 'DELETE' && response.status >= 400 && call.upload) {
        // A PATCH finished the upload while this DELETE waited for it: answered as a DELETE of a
        // finished upload is (from Wharf's record), not with tus.io's own refusal.
        const now = await core.resumable.get(call.principal!, call.upload.storageKey).catch(() => undefined);
        if (now && now.status !== 'pending' && (await answerFromWharf(request, reply, now))) return reply;
        // Every byte is in and the completion has not recorded yet (running on another node, or
        // cut by a crash, which the next HEAD or the sweep finishes): as finished as can be.
        if (now?.status === 'pending' && (await core.resumable.allReceived(now))) {
          throw new WharfError(
            'UPLOAD_NOT_PENDING',
            'A finished upload cannot be terminated; delete its asset.',
          );
        }
        // Storage holds nothing of an upload Wharf still reads as pending: a termination that a
        // crash cut short between freeing the bytes and recording the upload as cancelled
        // (tus.io's S3 store aborts the multipart upload, then deletes the `.info`). This DELETE
        // finishes it, as the retry of the one that was cut.
        if (now?.status === 'pending' && response.status === 404) {
          await core.resumable.discard(now);
          await core.resumable.terminated(now);
          return reply.code(204).send();
        }
      }
      if (method === 'POST' && response.status >= 400 && call.upload) {
        // A creation refused after its upload was made (a body longer than Upload-Length):
        // the client got no Location, so nothing can resume it. It ends now, its bytes freed
        // and upload.failed recorded, instead of lying pending until the sweep.
        const why =
          call.error ??
          (response.status === 413
            ? new WharfError('FILE_TOO_LARGE', 'The body was longer than Upload-Length.')
            : new WharfError('INTERNAL', `The creation failed (${response.status}).`));
        await core.resumable.fail(call.upload, why);
      }
      if (method === 'POST' && response.status === 201 && call.upload) keepCreation(request, call.upload);
      return send(reply, response, call);
    } catch (err) {
      thrown = err;
      throw err;
    } finally {
      // A body refused for want of room (a full disk, the S3 store's quota) is a failed transfer,
      // as every flow's is; else one whose bytes went on past the upload's length (staging stops
      // reading it by destroying the request, which would read as a hang-up); else one that
      // broke off, as a presigned PUT's is, whether tus kept what arrived (what resuming starts
      // from) or staging dropped it. Counted once. A Content-Length past the length is refused
      // before a byte is read (its headers, as the RUFH endpoint's), and not counted.
      const broke = broken?.();
      const full = [call.error, thrown].find(isStorageFull);
      if (broken && full) core.uploads.transferFailed('tus', full);
      else if (broken && call.overrun) core.uploads.transferFailed('tus', call.overrun);
      else if (broke !== undefined) core.uploads.transferFailed('tus', broke);
      release?.();
      if (staged) await rm(staged.path, { force: true });
    }
  };

  /**
   * The body of a PATCH (or a creation with upload), staged and hashed: at most what the upload
   * has room for after the offset the PATCH names (tus refuses a wrong one), or for a creation
   * its Upload-Length within the account's limit. The limit holds as the bytes arrive, so a body
   * without a usable length fills no disk.
   */
  async function stage(
    request: FastifyRequest,
    call: TusCall,
    checksums: DeclaredChecksum[],
    source: Readable = request.raw,
    trailing?: () => DeclaredChecksum[],
  ) {
    let limit: number;
    /** What the body would pass: the upload's length (or the account's limit, if smaller). */
    let bound: number;
    if (call.upload) {
      const size = call.upload.size ?? 0;
      const offset = Number(request.headers['upload-offset']);
      limit = Number.isSafeInteger(offset) && offset >= 0 && offset <= size ? size - offset : size;
      bound = size;
    } else {
      const length = Number(request.headers['upload-length']);
      if (!Number.isSafeInteger(length) || length < 0) {
        throw new WharfError('VALIDATION_FAILED', 'Upload-Length must be a whole number of bytes.');
      }
      bound = Math.min(length, core.resumable.maxFileSize(call.principal!));
      limit = bound;
    }
    // As tus's own refusals of a body past Upload-Length or the account's limit say it.
    const tooLarge = () =>
      new WharfError(
        'FILE_TOO_LARGE',
        call.upload || bound === Number(request.headers['upload-length'])
          ? "The body goes past the upload's Upload-Length."
          : 'The upload is larger than the largest file this account takes.',
        { limit: bound },
      );
    // A Content-Length past the limit is refused before a byte is read, as tus.io refuses it
    // unstaged: staging none of it, and its headers' refusal (not its bytes') counts no failed
    // transfer. The body is read and dropped, as tus would.
    if (Number(request.headers['content-length']) > limit) {
      request.raw.resume();
      throw tooLarge();
    }
    try {
      return await stageBody(source, stagingDir, limit, checksums, trailing);
    } catch (err) {
      if (!isWharfError(err, 'FILE_TOO_LARGE')) throw err;
      // The bytes themselves went past the limit: a failed transfer (see the handler).
      call.overrun = tooLarge();
      throw call.overrun;
    }
  }

  /**
   * Requests about an upload Wharf has settled are answered from Wharf's records: a finished
   * upload's bytes are an asset now (tus keeps nothing of it), an expired one is gone. A HEAD
   * also completes an upload whose every byte arrived before a crash stopped its completion.
   */
  async function answerFromWharf(
    request: FastifyRequest,
    reply: FastifyReply,
    upload: Upload,
  ): Promise<boolean> {
    refuseEnded(upload);
    let finished = upload.status === 'completed' ? upload : undefined;
    const method = methodOf(request);
    if (!finished && method === 'HEAD' && (await core.resumable.allReceived(upload))) {
      const lock = options.locker.newLock(upload.storageKey);
      await lock.lock(AbortSignal.timeout(60_000), () => {});
      try {
        const outcome = await core.resumable.recover(upload);
        if (outcome) finished = { ...upload, assetId: outcome.asset.id, deduplicated: outcome.deduplicated };
      } finally {
        await lock.unlock();
      }
    }
    if (!finished) return false;
    const size = String(finished.size ?? 0);
    reply.header('Wharf-Asset-Id', finished.assetId ?? '');
    reply.header(
      'Wharf-Upload-Result',
      uploadResult({ deduplicated: finished.deduplicated && !finished.intent.isolated }),
    );
    switch (method) {
      case 'HEAD':
        reply
          .code(200)
          .headers({
            'Cache-Control': 'no-store',
            'Upload-Offset': size,
            'Upload-Length': size,
            'Upload-Metadata': Metadata.stringify({
              filename: finished.name,
              filetype: finished.contentType,
            }),
          })
          .send();
        return true;
      case 'PATCH':
        // A retry of the request that finished it: nothing more to write.
        request.raw.resume();
        if (request.headers['upload-offset'] === size && !hasBody(request, method, true)) {
          reply.code(204).header('Upload-Offset', size).send();
        } else {
          reply.code(409).send(errorBody(new WharfError('UPLOAD_NOT_PENDING', 'This upload is complete.')));
        }
        return true;
      default:
        throw new WharfError(
          'UPLOAD_NOT_PENDING',
          'A finished upload cannot be terminated; delete its asset.',
        );
    }
  }

  /** An upload that ended without an asset (expired, terminated, failed) is gone: 410. */
  function refuseEnded(upload: Upload): void {
    if (upload.status === 'pending' && !core.resumable.isOpen(upload)) {
      throw new WharfError('UPLOAD_EXPIRED', 'This upload has expired.');
    }
    if (upload.status === 'expired') {
      throw new WharfError('UPLOAD_EXPIRED', 'This upload was terminated or has expired.');
    }
  }

  /**
   * A creation sent again with its Idempotency-Key, answered with the upload the first made as
   * it is now: 201 with its Location and its current Upload-Offset (a client that sent bytes
   * with the creation resumes from it; tus-js-client reads it from the creation's answer), a
   * finished one's offset its length and its asset, as its last PATCH answered. An upload that
   * ended without an asset is answered as its HEAD is (410; 404 with no bytes left to resume).
   * The body the retry carries is read and dropped, never stored.
   */
  async function replayCreation(request: FastifyRequest, reply: FastifyReply, upload: Upload) {
    refuseEnded(upload);
    let offset: number | undefined;
    if (upload.status === 'completed') {
      offset = upload.size ?? 0;
      reply.header('Wharf-Asset-Id', upload.assetId ?? '');
      reply.header(
        'Wharf-Upload-Result',
        uploadResult({ deduplicated: upload.deduplicated && !upload.intent.isolated }),
      );
    } else {
      offset = await core.resumable.received(upload);
      if (offset === undefined) throw new WharfError('NOT_FOUND', 'No such upload.');
      reply.header('Upload-Expires', new Date(upload.expiresAt).toUTCString());
    }
    settleRefusedBody(request, reply);
    return reply
      .code(201)
      .headers({ Location: uploadUrl(upload.storageKey), 'Upload-Offset': String(offset) })
      .header('Idempotent-Replayed', 'true')
      .send();
  }

  const route = {
    method: ['OPTIONS', 'POST', 'HEAD', 'PATCH', 'DELETE'],
    schema: { hide: true },
    // tus refuses a body in a Content-Encoding in its own handling (see file-bodies.ts).
    config: { auth: 'none' as const, protocolEncoding: true },
    handler,
  };
  app.route({ ...route, url: TUS_PATH });
  app.route({ ...route, url: `${TUS_PATH}/` });
  app.route({ ...route, url: `${TUS_PATH}/*` });
}

/**
 * `locker`, whose locks also cut `call`'s connection when another request asks for them while
 * they are held. Only then: tus.io's delayed abort fires whether or not the request is done
 * (and a failure after the write aborts it too), and the request that asked (often a client's
 * stale retry, refused with 409) does not need an upload this one has let go of.
 */
function cutOnRelease(locker: Locker, call: TusCall | undefined): Locker {
  return {
    newLock(id) {
      const lock = locker.newLock(id);
      let unlocked = false;
      let disarm: (() => void) | undefined;
      return {
        lock: (signal, release) =>
          lock.lock(signal, () => {
            // The ask may reach a holder that has just let go (the locker polls for it).
            if (unlocked) return;
            // tus.io aborts the holder once its drain time (lockDrainTimeout) has passed, so a
            // request still streaming gets to finish; a body it does not read is cut then.
            release();
            const cut = () => call?.cut?.();
            if (signal.aborted) return cut();
            signal.addEventListener('abort', cut, { once: true });
            disarm = () => signal.removeEventListener('abort', cut);
          }),
        unlock: () => {
          unlocked = true;
          disarm?.();
          return lock.unlock();
        },
      };
    },
  };
}

/**
 * The body as tus.io's server is to read it: the client's bytes, then an end, also when the
 * connection drops before Content-Length was reached. tus keeps what arrived before a cut
 * (that is what resuming means), but only from a body that ends: one that fails makes
 * @tus/s3-store drop the tail it holds short of a whole S3 part (and the file store what is
 * still in its write buffer), so a cut PATCH lost everything after the last 8 MiB boundary.
 * Backpressure holds as with pipe(); what the request still buffers when it is destroyed is
 * taken along, so the body is every byte the server read.
 */
export function endingAtCut(raw: IncomingMessage): Readable {
  const body = new PassThrough();
  raw.pipe(body);
  const cut = () => {
    raw.unpipe(body);
    for (let chunk = raw.read(); chunk !== null; chunk = raw.read()) body.write(chunk);
    body.end();
  };
  raw.once('aborted', cut);
  raw.once('error', () => {
    if (!body.writableEnded) cut();
  });
  return body;
}

/**
 * Watches a request's body for breaking off before its end: the client hung up (Node's
 * ECONNRESET "aborted"), or Wharf cut it (counted under the cut's own code, as the log and the
 * request's status have it: see server-cuts.ts). The returned function stops watching and gives
 * what broke it, else undefined. The RUFH endpoint's appends are watched the same way.
 */
export function breakOf(raw: IncomingMessage): () => unknown {
  const aborted = () => Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
  // Broken off already while the request was being authenticated and looked up.
  let broke: unknown = raw.destroyed && !raw.complete ? (raw.errored ?? aborted()) : undefined;
  const onError = (err: unknown) => {
    broke ??= err;
  };
  const onAborted = () => {
    broke ??= aborted();
  };
  raw.once('error', onError);
  raw.once('aborted', onAborted);
  return () => {
    raw.off('error', onError);
    raw.off('aborted', onAborted);
    if (broke === undefined) return undefined;
    const reason = cutReason(raw.socket);
    return reason ? CUT_ERROR[reason]() : broke;
  };
}

/**
 * The most bytes a body may bring, as tus.io's limiter has it: its Content-Length (checked
 * against the upload's length before any is written), else what remains of the upload.
 */
function bodyLimit(headers: Headers, upload: Upload | undefined): number {
  const length = headers.get('content-length');
  if (length !== null) return Number(length);
  const size = upload ? (upload.size ?? 0) : Number(headers.get('upload-length'));
  return Math.max(0, size - Number(headers.get('upload-offset') ?? 0));
}

/** A request with a body to hand on as `method`; with `nonEmpty`, only one that has bytes. */
function hasBody(request: FastifyRequest, method: string, nonEmpty = false): boolean {
  if (method !== 'PATCH' && method !== 'POST') return false;
  const length = request.headers['content-length'];
  if (length !== undefined) return Number(length) > 0 || (!nonEmpty && method === 'PATCH');
  return request.headers['transfer-encoding'] !== undefined;
}

function requestHeaders(request: FastifyRequest): Headers {
  const headers = new Headers();
  const raw = request.raw.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  return headers;
}

function errorBody(err: WharfError) {
  return { error: { code: err.code, message: err.message, ...(err.details && { details: err.details }) } };
}

/**
 * The tus server's answer through Fastify (so the app's hooks, CORS among them, still apply).
 * Its own CORS headers are dropped: which origins may call Wharf is the app's setting.
 */
async function send(reply: FastifyReply, response: Response, call: TusCall) {
  reply.code(response.status);
  for (const [name, value] of response.headers) {
    const lower = name.toLowerCase();
    if (lower.startsWith('access-control-') || lower === 'content-length') continue;
    reply.header(name, value);
  }
  let text = await response.text();
  let status = response.status;
  // A Tus-Resumable of another version is tus 1.0's 412, not the 400 tus.io gives it among
  // malformed headers ("Invalid tus-resumable …"); a 412 says the version spoken (Tus-Version).
  if (status === 400 && !call.error && /^Invalid\b.*\btus-resumable\b/i.test(text)) {
    status = 412;
    text = `Tus-Resumable ${reply.request.headers['tus-resumable'] ?? ''} is not a version this server speaks: send Tus-Resumable: ${TUS_VERSION}.`;
    reply.code(status);
  }
  if (status === 412) reply.header('Tus-Version', TUS_VERSION);
  if (status >= 400 && !call.error) {
    // Answered by tus.io without an error to map (a missing Tus-Resumable, a malformed
    // header): its status and words, in Wharf's shape.
    const refusal = statusRefusal(status, text);
    call.error = refusal.error;
    text = JSON.stringify(errorBody(refusal.error));
  }
  if (call.error) reply.header('content-type', 'application/json; charset=utf-8');
  if (call.error) noteErrorCode(reply.request, call.error.code);
  if (call.failure !== undefined) logFailure(reply.request, call.failure, status);
  // tus.io's server dates the expiry from the creation with the server-wide period; Wharf's
  // record may end sooner (an upload token's uploads end with the token), and is what holds.
  if (call.upload && response.headers.has('upload-expires')) {
    reply.header('Upload-Expires', new Date(call.upload.expiresAt).toUTCString());
  }
  if (methodOf(reply.request) === 'OPTIONS') {
    reply.header('Tus-Checksum-Algorithm', CHECKSUM_ALGORITHMS.join(','));
  }
  return reply.send(text === '' ? undefined : text);
}

/**
 * What the other flows answer as the JSON `status`: `exists` when the account already held the
 * content (never to an isolated caller, whose outcome reads as created, see isolatedOutcome).
 */
function uploadResult(outcome: { deduplicated: boolean }): 'created' | 'exists' {
  return outcome.deduplicated ? 'exists' : 'created';
}
