import { connect } from 'node:net';

/**
 * HTTP/1.1 written byte by byte on a socket of its own. fetch and node:http refuse what hostile
 * clients send (unknown methods, raw bytes in the target, odd header values), and pool their
 * connections, which would hide a connection the server dropped; this sends exactly what it is
 * given and says whether an answer came back.
 */
export interface RawRequest {
  method: string;
  /** The request target as sent: path and query, already encoded (or deliberately not). */
  target: string;
  headers: Array<[string, string]>;
  body?: Uint8Array | undefined;
}

export type RawOutcome =
  | { kind: 'response'; status: number; head: string; body: Buffer }
  /** The connection ended (or failed) before a status line arrived. */
  | { kind: 'dropped'; error: string; bodyWritten: boolean }
  /** No answer within the time allowed. */
  | { kind: 'timeout' };

export function sendRaw(port: number, request: RawRequest, timeoutMs = 30_000): Promise<RawOutcome> {
  const lines = [
    `${request.method} ${request.target} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    'Connection: close',
  ];
  for (const [name, value] of request.headers) lines.push(`${name}: ${value}`);
  if (request.body !== undefined) lines.push(`Content-Length: ${request.body.byteLength}`);
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8');

  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    let bodyWritten = request.body === undefined;
    let failure = '';
    const socket = connect({ port, host: '127.0.0.1' });
    const finish = (outcome: RawOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      failure = err.code ?? err.message;
    });
    socket.on('close', () => {
      const received = Buffer.concat(chunks);
      const parsed = parseResponse(received);
      finish(parsed ?? { kind: 'dropped', error: failure || 'closed without a status line', bodyWritten });
    });
    socket.on('connect', () => {
      socket.write(head);
      if (request.body === undefined) return;
      socket.write(request.body, (err) => {
        if (!err) bodyWritten = true;
      });
    });
  });
}

/** The final (non-1xx) status of a response, if one arrived whole enough to read its status line. */
function parseResponse(received: Buffer): RawOutcome | undefined {
  let at = 0;
  for (;;) {
    const end = received.indexOf('\r\n\r\n', at);
    const line = received.subarray(at, end === -1 ? received.length : end).toString('latin1');
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(line);
    if (!match) return undefined;
    const status = Number(match[1]);
    // 100 Continue (a client sent Expect) precedes the real answer.
    if (status >= 100 && status < 200 && end !== -1) {
      at = end + 4;
      continue;
    }
    return {
      kind: 'response',
      status,
      head: line,
      body: end === -1 ? Buffer.alloc(0) : received.subarray(end + 4),
    };
  }
}
