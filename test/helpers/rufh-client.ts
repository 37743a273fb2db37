import { connect, type Socket } from 'node:net';

/**
 * A Resumable Uploads for HTTP client written on a raw socket: it sends exactly the bytes of the
 * draft's examples, reads every informational (1xx) response before the final one (fetch and
 * node:http hide them, or 104 in particular), and can cut its connection at any point of an
 * exchange: before a byte of the body, after so many bytes, as soon as the 104 arrives, or by
 * half-closing after the last byte before the answer comes.
 */
export interface Message {
  status: number;
  /** Lower-case names; repeated fields joined with ", ". */
  headers: Record<string, string>;
  /** The status line and fields exactly as received. */
  head: string;
}

export interface Exchange {
  /** The 1xx responses, in the order they came. */
  informational: Message[];
  /** The final response, when one arrived whole. */
  final?: (Message & { body: Buffer }) | undefined;
  /** Body bytes the client handed to its socket before it stopped. */
  sent: number;
}

export interface RufhRequest {
  method: string;
  target: string;
  headers?: Array<[string, string]>;
  body?: Buffer | undefined;
  /** Adds Content-Length for the whole body (default); false for requests that declare it themselves. */
  contentLength?: boolean;
  /** Send the body only once a 104 came (or the final response, or 5 s passed). */
  bodyAfter104?: boolean;
  /** Send only this many body bytes, then cut as `cut` says. */
  stopAfter?: number;
  /**
   * What happens after `stopAfter` bytes: the connection is destroyed (default), half-closed,
   * or held open sending nothing more (then the answer is awaited).
   */
  cut?: 'destroy' | 'half-close' | 'hold';
  /** Destroy the connection as soon as the first 104 arrives (before any body byte). */
  cutOn104?: boolean;
  timeoutMs?: number;
  /** The request line's version (default 1.1). */
  httpVersion?: '1.0' | '1.1';
}

export function rufh(port: number, request: RufhRequest): Promise<Exchange> {
  const body = request.body ?? Buffer.alloc(0);
  const lines = [
    `${request.method} ${request.target} HTTP/${request.httpVersion ?? '1.1'}`,
    `Host: 127.0.0.1:${port}`,
  ];
  for (const [name, value] of request.headers ?? []) lines.push(`${name}: ${value}`);
  if (request.body !== undefined && request.contentLength !== false)
    lines.push(`Content-Length: ${body.length}`);
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');

  return new Promise((resolve, reject) => {
    const exchange: Exchange = { informational: [], sent: 0 };
    let received = Buffer.alloc(0);
    let settled = false;
    let waiting104: (() => void) | undefined;
    const socket: Socket = connect({ port, host: '127.0.0.1' });
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(exchange);
    };
    const timer = setTimeout(() => {
      if (!settled) {
        settled = true;
        socket.destroy();
        reject(
          new Error(
            `no final response within ${request.timeoutMs ?? 60_000} ms: ${JSON.stringify(exchange)}`,
          ),
        );
      }
    }, request.timeoutMs ?? 60_000);

    const parse = () => {
      for (;;) {
        const end = received.indexOf('\r\n\r\n');
        if (end === -1) return;
        const text = received.subarray(0, end).toString('latin1');
        const message = parseHead(text);
        if (message.status < 200) {
          exchange.informational.push(message);
          received = received.subarray(end + 4);
          if (message.status === 104) {
            waiting104?.();
            if (request.cutOn104) {
              finish();
              return;
            }
          }
          continue;
        }
        const rest = received.subarray(end + 4);
        const length = message.headers['content-length'];
        const bodyless = request.method === 'HEAD' || message.status === 204 || message.status === 304;
        if (bodyless || length === '0') {
          exchange.final = { ...message, body: Buffer.alloc(0) };
          finish();
          return;
        }
        if (length !== undefined) {
          if (rest.length < Number(length)) return;
          exchange.final = { ...message, body: rest.subarray(0, Number(length)) };
          finish();
          return;
        }
        if (message.headers['transfer-encoding']?.includes('chunked')) {
          const decoded = dechunk(rest);
          if (!decoded) return;
          exchange.final = { ...message, body: decoded };
          finish();
          return;
        }
        return; // Read to the connection's end.
      }
    };

    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      parse();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      if (!exchange.final && received.length > 0) {
        const end = received.indexOf('\r\n\r\n');
        if (end !== -1) {
          const message = parseHead(received.subarray(0, end).toString('latin1'));
          if (message.status >= 200) exchange.final = { ...message, body: received.subarray(end + 4) };
        }
      }
      finish();
    });

    const write = (bytes: Buffer) =>
      new Promise<void>((done) => {
        if (bytes.length === 0 || socket.destroyed) {
          done();
          return;
        }
        socket.write(bytes, () => done());
      });

    socket.on('connect', async () => {
      await write(head);
      if (request.bodyAfter104) {
        await new Promise<void>((go) => {
          if (exchange.informational.some((m) => m.status === 104) || exchange.final) go();
          else {
            waiting104 = go;
            setTimeout(go, 5_000).unref();
          }
        });
      }
      if (settled) return;
      const part = request.stopAfter === undefined ? body : body.subarray(0, request.stopAfter);
      // In pieces, so that a cut mid-body leaves the server something to keep.
      for (let at = 0; at < part.length && !settled; at += 64 * 1024) {
        const piece = part.subarray(at, Math.min(at + 64 * 1024, part.length));
        await write(piece);
        exchange.sent += piece.length;
      }
      if (request.stopAfter === undefined || settled) return;
      if (request.cut === 'half-close') socket.end();
      else if (request.cut !== 'hold') finish();
    });
  });
}

function parseHead(text: string): Message {
  const [statusLine = '', ...fields] = text.split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!match) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`);
  const headers: Record<string, string> = {};
  for (const field of fields) {
    const colon = field.indexOf(':');
    const name = field.slice(0, colon).trim().toLowerCase();
    const value = field.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status: Number(match[1]), headers, head: text };
}

function dechunk(data: Buffer): Buffer | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at);
    if (lineEnd === -1) return undefined;
    const size = Number.parseInt(data.subarray(at, lineEnd).toString('latin1'), 16);
    if (size === 0) return Buffer.concat(parts);
    if (data.length < lineEnd + 2 + size + 2) return undefined;
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}
