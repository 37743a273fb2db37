/**
 * What a failed tus request says, from tus-js-client's DetailedError. Its message is built for
 * developers ("tus: unexpected response while creating upload, originated from request (…,
 * response text: {json} …)"); the server's own JSON error in the response is what a person
 * should read. Plain logic, no DOM: unit-tested in test/unit/console-logic.test.ts.
 */

/** tus-js-client's response, as a DetailedError holds it (`originalResponse`). */
interface TusResponse {
  getStatus(): number;
  getBody(): string;
}

export interface Refusal {
  /** The HTTP status, or 0 when no answer came (the network, or the server, was away). */
  status: number;
  code: string | null;
  message: string;
}

function responseOf(err: unknown): TusResponse | null {
  const res = (err as { originalResponse?: unknown } | null)?.originalResponse;
  if (!res || typeof res !== 'object') return null;
  const candidate = res as Partial<TusResponse>;
  return typeof candidate.getStatus === 'function' && typeof candidate.getBody === 'function'
    ? (candidate as TusResponse)
    : null;
}

/** The server's answer to a failed upload request, when it gave one. */
export function uploadRefusal(err: unknown): Refusal | null {
  const res = responseOf(err);
  if (!res) return null;
  const status = res.getStatus();
  let body: unknown;
  try {
    body = JSON.parse(res.getBody());
  } catch {
    body = undefined;
  }
  const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  if (error && typeof error.message === 'string') {
    return { status, code: typeof error.code === 'string' ? error.code : null, message: error.message };
  }
  // Not Wharf's JSON (a proxy's page, say): the status says at least that much.
  return { status, code: null, message: `The server answered ${status}.` };
}

/** The text to show for a failed upload: the server's message and code, else the error's own. */
export function uploadErrorText(err: unknown): string {
  const refusal = uploadRefusal(err);
  if (refusal && refusal.status !== 0) {
    return refusal.code ? `${refusal.message} (${refusal.code})` : refusal.message;
  }
  return err instanceof Error ? err.message : String(err);
}
