import { isWharfError, WharfError } from '../../sdk/errors.js';
import { sleep } from '../../sdk/http.js';
import { DEFAULT_THRESHOLDS, type FileResumeStore, fileSource, type Wharf } from '../../sdk/node.js';
import type { Asset } from '../../sdk/types.js';
import type { Display, FileOutcome } from './display.js';
import { errnoMessage, hashFile, type LocalFile, type RateLimit } from './files.js';

export interface TransferOptions {
  /** Files at once. */
  concurrency: number;
  partSize?: number | undefined;
  /** Every file's media type (--content-type); by default each file's from its extension. */
  contentType?: string | undefined;
  /** From this size on, multipart (resumable); below it, presigned (the SDK's default threshold). */
  multipartFrom?: number | undefined;
  limit?: RateLimit | undefined;
  resume: FileResumeStore;
  /**
   * Wait for an asset Wharf is still verifying (see verified()) before reporting it; false
   * (--no-wait): report it `verifying` at once.
   */
  wait: boolean;
  signal: AbortSignal;
}

/**
 * Uploads `files`, `concurrency` at a time. Each file is hashed first (node:crypto): the SHA-256
 * is declared, so Wharf answers "exists" without a byte sent when the account holds the content,
 * and verifies the bytes when it does not. Large files go multipart with their state in
 * `resume`, so a run cut off (Ctrl-C, a lost connection, a killed process) continues where it
 * stopped when run again.
 */
export async function transfer(
  wharf: Wharf,
  files: LocalFile[],
  display: Display,
  options: TransferOptions,
): Promise<FileOutcome[]> {
  display.begin(files);
  const outcomes: FileOutcome[] = new Array(files.length);
  let next = 0;
  // The failure that stops the run from starting more files (see RUN_STOPPERS).
  let halted: { code: string; message: string } | undefined;
  const worker = async () => {
    for (let i = next++; i < files.length; i = next++) {
      const file = files[i]!;
      outcomes[i] = halted ? notTried(file, halted) : await one(wharf, file, display, options);
      const { error } = outcomes[i]!;
      if (!halted && outcomes[i]!.status === 'failed' && error && RUN_STOPPERS.has(error.code))
        halted = error;
      display.finish(outcomes[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, files.length) }, worker));
  display.end();
  return outcomes;
}

/**
 * Failures every later file of the run would meet too: the server could not be reached (after
 * the SDK's retries, and its 30 s of waiting out a restart when the server had answered), or
 * it refused the credential itself: a key or token it does not know (or revoked), an upload
 * token past its expiry, an account that is disabled. Once one file fails so, the others are
 * not tried: a wrong URL or key with 600 files took two minutes and printed 600 lines of the
 * same error (a hunt). Refusals of one file's size or type, or of what a token has left
 * (TOKEN_BYTES_EXHAUSTED: a smaller file may fit; TOKEN_FILES_EXHAUSTED: a file of this run
 * that fails frees its slot) do not stop the run.
 */
const RUN_STOPPERS = new Set(['NETWORK_ERROR', 'UNAUTHORIZED', 'TOKEN_EXPIRED', 'ACCOUNT_DISABLED']);

/** A file the run did not try, after `halted` stopped it. */
function notTried(file: LocalFile, halted: { code: string; message: string }): FileOutcome {
  return {
    path: file.path,
    name: file.name,
    size: file.size,
    status: 'failed',
    error: { code: halted.code, message: `Not tried: an earlier file failed with ${halted.code}.` },
  };
}

async function one(
  wharf: Wharf,
  file: LocalFile,
  display: Display,
  options: TransferOptions,
): Promise<FileOutcome> {
  const base = { path: file.path, name: file.name, size: file.size };
  if (file.error) return { ...base, status: 'failed', error: file.error };
  // What this run sent, counted as the SDK's requests read the file, and what an earlier run had
  // stored that this one did not send again: the SDK's bytesSent counts both as sent (a resumed
  // upload's count starts at what storage holds), and a run cut off has no result at all, so an
  // interrupted run reported 0 B sent and its rerun the whole file (a hunt).
  const bytes = { sent: 0, resumed: 0 };
  let uploading = false;
  try {
    // Typed by its extension unless --content-type says: an upload token may accept only some
    // types (image/*), and listings by type and downloads go by the declared one. Its one stat
    // gives the size that is hashed, declared, sent and reported: a file that grows meanwhile
    // is uploaded as it was then. Hashed to its end and stat'ed again to send, a growing file
    // failed CHECKSUM_MISMATCH, and was reported at its size when listed (a hunt).
    const source = await fileSource(file.path, { name: file.name, type: options.contentType });
    const size = source.size!;
    base.size = size;
    let hashed = 0;
    const sha256 = await hashFile(
      file.path,
      size,
      (n) => {
        hashed += n;
        display.progress(file.path, 'hashing', hashed, size);
      },
      options.signal,
    );
    const limit = options.limit;
    const open = source.open;
    source.open = (start, end) => {
      const stream = open(start, end);
      return counted(limit ? limit.throttle(stream, options.signal) : stream, options.signal, (n) => {
        bytes.sent += n;
      });
    };
    // Never direct: presigned and multipart declare the SHA-256 before any byte, so content the
    // account holds is answered "exists" with nothing sent (a direct POST sends the body first).
    const multipartFrom = options.multipartFrom ?? DEFAULT_THRESHOLDS.multipart;
    const result = await wharf.upload(source, {
      sha256,
      strategy: size >= multipartFrom ? 'multipart' : 'presigned',
      partSize: options.partSize,
      resume: options.resume,
      signal: options.signal,
      onProgress: (p) => {
        if (p.phase !== 'uploading') return;
        // The phase's first report starts at what storage already holds (a multipart upload
        // resumed: its parts stored before); a presigned upload declared again starts at 0 again.
        if (!uploading) bytes.resumed = p.bytes;
        uploading = true;
        display.progress(file.path, 'uploading', p.bytes, size);
      },
    });
    let asset = result.asset;
    if (asset.status === 'verifying' && options.wait) {
      try {
        asset = await verified(wharf, asset, options.signal);
      } catch (err) {
        // Interrupted while waiting: the bytes are in, the answer not yet; said as it is.
        if (!options.signal.aborted) throw err;
      }
    }
    return {
      ...base,
      // Not `created` before Wharf has checked the bytes: a mismatch found later deletes it.
      status: asset.status === 'verifying' ? 'verifying' : result.status,
      asset_id: asset.id,
      asset_name: asset.name,
      sha256: asset.sha256,
      strategy: result.strategy,
      resumed: result.resumed,
      bytes_sent: bytes.sent,
      bytes_resumed: bytes.resumed,
    };
  } catch (err) {
    const aborted = options.signal.aborted;
    const code = aborted
      ? 'ABORTED'
      : isWharfError(err)
        ? err.code
        : ((err as NodeJS.ErrnoException).code ?? 'ERROR');
    return {
      ...base,
      status: aborted ? 'interrupted' : 'failed',
      bytes_sent: bytes.sent,
      bytes_resumed: bytes.resumed,
      error: {
        code,
        message: aborted ? 'Interrupted: run the same command again to resume.' : errnoMessage(err as Error),
      },
    };
  }
}

/**
 * `asset` once Wharf has verified it. On storage that cannot attest a SHA-256 (Ceph, many S3
 * servers), a file over WHARF_INLINE_VERIFY_MAX completes as a `verifying` asset, and a job
 * hashes it later: bytes that are not the declared SHA-256 (the file edited while it was sent)
 * are then deleted (asset.rejected), and the asset answers 404. Reported `created` at
 * completion, such a file exited 0 with an asset id that vanished seconds later (a hunt). So
 * the asset is asked for again, from a quarter second up to every five, until it is ready; gone
 * meanwhile, the file fails with CHECKSUM_MISMATCH, as a mismatch found at completion does.
 */
async function verified(wharf: Wharf, asset: Asset, signal: AbortSignal): Promise<Asset> {
  let current = asset;
  for (let delay = 250; current.status === 'verifying'; delay = Math.min(delay * 2, 5000)) {
    await sleep(delay, signal);
    try {
      current = await wharf.assets.get(asset.id, signal);
    } catch (err) {
      if (!isWharfError(err, 'NOT_FOUND')) throw err;
      throw new WharfError(
        'CHECKSUM_MISMATCH',
        `Wharf read the stored bytes back and they are not the file's SHA-256 ${asset.sha256} (was the file changed while it was sent?): it deleted asset ${asset.id}. Upload the file again.`,
      );
    }
  }
  return current;
}

/**
 * `stream`, with each chunk counted by `onBytes` as it is read. Read only when the request asks
 * (as the SDK's own streams are), so a chunk counts when it is sent, not when it is queued; one
 * that comes in after an abort is dropped by the SDK unsent, and does not count.
 */
function counted(
  stream: ReadableStream<Uint8Array>,
  signal: AbortSignal,
  onBytes: (n: number) => void,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) return controller.close();
        if (!signal.aborted) onBytes(value.byteLength);
        controller.enqueue(value);
      },
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}
