import { isWharfError, WharfError } from '../core/errors.js';
import type { Principal, Upload } from '../core/model.js';
import type { UploadStreams } from '../core/upload-streams.js';

/**
 * TOO_MANY_UPLOAD_STREAMS as the resumable protocols (tus, RUFH) answer it: 503, not the native
 * API's 429. tus-js-client, the documented client of both (its `protocol: 'ietf-draft-03'` for
 * RUFH), retries with its retryDelays any status but a 4xx other than 409 and 423: at 429 an
 * upload failed at once, where the refusal only asks it to come back (Retry-After).
 */
class RetryLater extends WharfError {
  override readonly status = 503;
}

/** Takes one of the owner's upload streams (see UploadStreams), refused as a resumable client retries. */
export function takeResumableStream(streams: UploadStreams, owner: Principal | Upload): () => void {
  try {
    return streams.take(owner);
  } catch (err) {
    if (!isWharfError(err, 'TOO_MANY_UPLOAD_STREAMS')) throw err;
    throw new RetryLater(err.code, err.message, err.details);
  }
}
