import { createHash } from 'node:crypto';
import { type Agent, type ClientRequest, request as httpRequest } from 'node:http';

/** Small conveniences over fetch for JSON APIs; every call is real HTTP. */
export interface JsonResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export async function api<T = any>(
  base: string,
  key: string | undefined,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<JsonResponse<T>> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (key) (init.headers as Record<string, string>)['x-api-key'] = key;
  if (body !== undefined) {
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // Non-JSON (S3 XML errors, downloads): keep the text.
  }
  return { status: res.status, headers: res.headers, body: parsed as T };
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function md5Hex(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

export function b64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

/**
 * A request that sends all of its body but the last byte and waits: `finish()` sends that byte.
 * For races with what a server does while a body is still arriving. `status` is the answer's.
 */
export function heldLastByte(
  url: string,
  method: string,
  headers: Record<string, string>,
  body: Buffer,
  /** The connections to send it on (say a kept-alive one an earlier request used). */
  agent?: Agent,
): { status: Promise<number>; finish: () => void } {
  let finish!: () => void;
  const finishing = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const status = new Promise<number>((resolve, reject) => {
    const req = httpRequest(url, {
      method,
      headers: { ...headers, 'content-length': String(body.length) },
      ...(agent && { agent }),
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.write(body.subarray(0, body.length - 1));
    finishing.then(() => req.end(body.subarray(body.length - 1)), reject);
  });
  return { status, finish };
}

/**
 * The answer to a request written by hand (node:http, for bodies a test sends piecemeal or cuts):
 * its status and its body as text. Never an unhandled rejection: a test that fails before it
 * awaits the answer reports that failure, not the connection it cut.
 */
export function answerOf(req: ClientRequest): Promise<{ status: number; body: string }> {
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.once('error', reject);
    req.once('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.once('error', reject);
    });
  });
  answer.catch(() => {});
  return answer;
}
