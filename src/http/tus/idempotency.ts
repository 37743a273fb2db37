import type { FastifyRequest } from 'fastify';
import type { Principal, Upload } from '../../core/model.js';
import type { Core } from '../../core/wharf.js';
import { idempotencyKeyOf } from '../api/idempotency.js';

/**
 * Idempotency keys on the tus creation (`POST /v1/tus/`), as the native creating routes take
 * them (api/idempotency.ts): a creation whose answer was lost and is sent again with its key is
 * answered with the upload the first made, not a second one that holds quota, an open-upload
 * slot and an upload token's `max_files` until it expires (a one-file token refused the retry
 * 403 TOKEN_FILES_EXHAUSTED). The tus routes authenticate in their handler, so the handler
 * claims the key itself; the answer is kept by the same onSend hook (keepIdempotentAnswer).
 */

/** `/v1/tus` and `/v1/tus/` are one endpoint: a key sent to either is the same request's. */
const OPERATION = 'POST /v1/tus/';

/**
 * What a creation asks for, as a retry sends it again. Not its body: a creation with upload
 * may carry a different first chunk on its retry (what the client now knows arrived), and the
 * body of a replay is not read.
 */
const DESCRIBING = [
  'upload-length',
  'upload-metadata',
  'upload-defer-length',
  'upload-concat',
  'repr-digest',
];

/** What is kept under the key: the upload's storage key (its URL's name), never the answer. */
interface KeptCreation {
  tus: string;
}

/**
 * Claims the creation's Idempotency-Key, if it has one: the request then runs holding it
 * (`request.idempotencyHold`), or, sent before, gets the upload the first made (the caller
 * answers with it as it is now). A key sent before with another request is refused 422
 * IDEMPOTENCY_KEY_REUSED, one whose first request is still running 409 IDEMPOTENCY_KEY_IN_USE;
 * the upload gone from the records since is 404 NOT_FOUND.
 */
export async function claimCreation(
  core: Core,
  principal: Principal,
  request: FastifyRequest,
): Promise<Upload | undefined> {
  const header = request.headers['idempotency-key'];
  if (header === undefined) return undefined;
  const described: Record<string, unknown> = {};
  for (const name of DESCRIBING) {
    const value = request.headers[name];
    if (value !== undefined) described[name] = value;
  }
  const outcome = await core.idempotency.begin(principal, idempotencyKeyOf(header), OPERATION, described);
  if (outcome.kind === 'run') {
    request.idempotencyHold = outcome.hold;
    return undefined;
  }
  const kept = JSON.parse(outcome.response) as KeptCreation;
  return core.resumable.get(principal, kept.tus);
}

/** A creation answered 201: its upload is what a retry under its key is answered with. */
export function keepCreation(request: FastifyRequest, upload: Upload): void {
  if (request.idempotencyHold) request.idempotentRecord = JSON.stringify({ tus: upload.storageKey });
}
