import { WharfError } from './errors.js';

/**
 * What an upload reads from. A re-readable source (a Blob, bytes, a file on disk) can be read
 * again from any offset: hashed first so the SHA-256 is declared before the bytes go (Wharf
 * verifies it end to end, and skips content the account holds), sent in parts, resumed. A
 * one-shot stream is read once: it can only go directly, hashed on the way.
 */
export interface UploadSource {
  /** The file name to give the asset unless the upload names it. */
  name: string;
  /** Bytes in all, when known (a one-shot stream may not know). */
  size: number | undefined;
  /** The media type, when known. */
  type?: string | undefined;
  /** Whether open() may be called more than once, and from any offset. */
  reopenable: boolean;
  /**
   * Finds this source again across runs (a path with its size and modification time; a File's
   * name, size and lastModified): what resumable state is kept under. None: no resume. It does
   * not vouch for the bytes (a rewrite can keep all three): a resume also checks the SHA-256.
   */
  fingerprint?: string | undefined;
  /**
   * What the source is for its user whatever it now holds (a file's resolved path): with it,
   * resumable state is kept under this instead of the fingerprint (which is kept in the record),
   * so an upload begun before the file changed is found again, and given up rather than left
   * holding its quota until it expires. None (a `File`: a name is not unique): the fingerprint.
   * Used only with a fingerprint.
   */
  identity?: string | undefined;
  /** The bytes from `start` (inclusive) to `end` (exclusive; default: the end). */
  open(start?: number, end?: number): ReadableStream<Uint8Array>;
  /**
   * The same bytes as a Blob, for a source that can be one (a Blob, a File, bytes): what a
   * browser sends (see canStreamRequestBodies).
   */
  slice?(start?: number, end?: number): Blob;
}

/**
 * Whether this runtime sends a ReadableStream as a request body over HTTP/1.1. Node does (the
 * suite's runtime); Bun, which reports a Node version, and Deno are taken to do so too, untested
 * here. Browsers do not: Chromium sends one only over HTTP/2 or HTTP/3 (over HTTP/1.1 the
 * request fails with "Failed to fetch"), Firefox and Safari not at all. There, a source that can
 * be a Blob is sent as one, and a one-shot stream cannot be uploaded.
 */
export const canStreamRequestBodies: boolean =
  typeof (globalThis as { process?: { versions?: { node?: unknown } } }).process?.versions?.node ===
    'string' || 'Deno' in globalThis;

/** A Blob or a File (browsers; Node has both too). */
export function blobSource(blob: Blob, name?: string): UploadSource {
  const file = blob as Blob & { name?: string; lastModified?: number };
  const fileName = name ?? file.name ?? 'blob';
  return {
    name: fileName,
    size: blob.size,
    type: blob.type || undefined,
    reopenable: true,
    fingerprint:
      file.lastModified !== undefined ? `file:${fileName}:${blob.size}:${file.lastModified}` : undefined,
    open: (start = 0, end = blob.size) => blob.slice(start, end).stream(),
    slice: (start = 0, end = blob.size) => blob.slice(start, end),
  };
}

/** Bytes in memory. */
export function bytesSource(bytes: Uint8Array, name: string, type?: string): UploadSource {
  return {
    name,
    size: bytes.byteLength,
    type,
    reopenable: true,
    open: (start = 0, end = bytes.byteLength) =>
      new ReadableStream({
        start(controller) {
          if (end > start) controller.enqueue(bytes.subarray(start, end));
          controller.close();
        },
      }),
    // A copy of the range: only a browser asks for it (see canStreamRequestBodies).
    slice: (start = 0, end = bytes.byteLength) => new Blob([bytes.slice(start, end)]),
  };
}

/** A stream that can be read once (stdin, a response body, a generated file). */
export function streamSource(
  stream: ReadableStream<Uint8Array>,
  options: { name: string; size?: number; type?: string },
): UploadSource {
  let opened = false;
  return {
    name: options.name,
    size: options.size,
    type: options.type,
    reopenable: false,
    open: (start = 0) => {
      if (opened || start !== 0) throw new Error('A one-shot stream can be read only once, from its start.');
      opened = true;
      return stream;
    },
  };
}

export type UploadInput = UploadSource | Blob | Uint8Array | ReadableStream<Uint8Array>;

/** Any accepted input as an UploadSource. */
export function toSource(input: UploadInput, name?: string): UploadSource {
  if (isSource(input)) return name === undefined ? input : { ...input, name };
  if (typeof Blob !== 'undefined' && input instanceof Blob) return blobSource(input, name);
  if (input instanceof Uint8Array) return bytesSource(input, name ?? 'upload.bin');
  if (typeof ReadableStream !== 'undefined' && input instanceof ReadableStream) {
    return streamSource(input, { name: name ?? 'upload.bin' });
  }
  throw new TypeError('Upload a Blob/File, a Uint8Array, a ReadableStream or an UploadSource.');
}

function isSource(input: unknown): input is UploadSource {
  return typeof input === 'object' && input !== null && typeof (input as UploadSource).open === 'function';
}

/**
 * `stream` passing every chunk to `onChunk` as it is read (by the request that sends it), so
 * progress is the bytes handed to the connection, and hashing happens as the bytes go; `onEnd`
 * once it has ended whole.
 */
export function tap(
  stream: ReadableStream<Uint8Array>,
  onChunk: (chunk: Uint8Array) => void,
  onEnd?: () => void,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) {
          onEnd?.();
          controller.close();
          return;
        }
        onChunk(value);
        controller.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    // Read only when the consumer asks: a chunk counts when it is sent, not when it is queued.
    { highWaterMark: 0 },
  );
}

/**
 * `stream`, which is to deliver `length` bytes (when known): a read that fails, or an end short
 * of that, fails it with SOURCE_CHANGED. A file deleted, truncated or made unreadable since the
 * upload began (it was read whole to hash it) otherwise failed its request as a network error
 * (fetch reports a failing body as "fetch failed"; a short one as a Content-Length mismatch):
 * retried for nothing, and reported as a server that could not be reached.
 *
 * When `signal` fires, `stream` is cancelled (a file closed) and this fails with ABORTED: fetch,
 * aborted, rejects at once but did not cancel a stream body, which it went on reading to its
 * end (a whole file, counted into progress after the upload had failed).
 */
export function exactly(
  stream: ReadableStream<Uint8Array>,
  length: number | undefined,
  where: { name: string; start: number },
  signal?: AbortSignal,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  let read = 0;
  const changed = (why: string, cause?: unknown) =>
    new WharfError(
      'SOURCE_CHANGED',
      `${where.name}: ${why} while it was being sent (from byte ${where.start}): deleted or changed during the upload.`,
      { cause },
    );
  // The listener goes when the stream ends, whichever way: a multipart upload makes one per part.
  const stop = (reason?: unknown) => {
    signal?.removeEventListener('abort', onAbort);
    return reader.cancel(reason);
  };
  const onAbort = () => {
    stop(signal!.reason).catch(() => undefined);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  const ifAborted = async () => {
    if (!signal?.aborted) return;
    await stop(signal.reason).catch(() => undefined);
    throw new WharfError('ABORTED', 'The operation was aborted.', { cause: signal.reason });
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        await ifAborted();
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await reader.read();
        } catch (err) {
          await ifAborted();
          signal?.removeEventListener('abort', onAbort);
          const code = (err as { code?: unknown })?.code;
          throw changed(`reading failed (${typeof code === 'string' ? code : String(err)})`, err);
        }
        // A read the abort cut short (it ends as if done), or one that came in after it.
        await ifAborted();
        if (next.done) {
          signal?.removeEventListener('abort', onAbort);
          if (length !== undefined && read < length)
            throw changed(`it ended after ${read} of ${length} bytes`);
          controller.close();
          return;
        }
        read += next.value.byteLength;
        controller.enqueue(next.value);
      },
      cancel(reason) {
        return stop(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * Reads a stream to its end, handing each chunk to `onChunk` (hashing a file, say), awaited
 * before the next read; stops, the stream cancelled, once `signal` has fired.
 */
export async function drain(
  stream: ReadableStream<Uint8Array>,
  onChunk: (chunk: Uint8Array) => void | Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const reader = stream.getReader();
  try {
    for (;;) {
      if (signal?.aborted) {
        await reader.cancel();
        return;
      }
      const { done, value } = await reader.read();
      if (done) return;
      await onChunk(value);
    }
  } finally {
    reader.releaseLock();
  }
}
