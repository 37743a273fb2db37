import { randomUUID } from 'node:crypto';
import { type IncomingMessage, METHODS, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { ERROR_STATUS, type ErrorCode } from '../core/errors.js';
import type { ClientAddress } from './client-address.js';
import { isLingering } from './lingering-close.js';
import { REQUEST_ID_HEADER, type RequestMetrics, UNMATCHED } from './plugins/observe.js';

type ClientErrorCode = Extract<ErrorCode, 'REQUEST_TIMEOUT' | 'HEADERS_TOO_LARGE' | 'MALFORMED_REQUEST'>;

/** What Node's HTTP parser reports for a request it cannot read (its `err.code`), as Wharf's refusal. */
function clientErrorCode(nodeCode: string | undefined): ClientErrorCode {
  if (nodeCode === 'ERR_HTTP_REQUEST_TIMEOUT') return 'REQUEST_TIMEOUT';
  if (nodeCode === 'HPE_HEADER_OVERFLOW') return 'HEADERS_TOO_LARGE';
  return 'MALFORMED_REQUEST';
}

const MESSAGES: Record<ClientErrorCode, string> = {
  REQUEST_TIMEOUT: 'The request headers did not arrive in time.',
  HEADERS_TOO_LARGE: 'The request headers are larger than this server accepts.',
  MALFORMED_REQUEST: 'The request is not valid HTTP/1.1',
};

const KNOWN_METHODS: ReadonlySet<string> = new Set(METHODS);

/**
 * The method of a request the parser refused, read from the bytes it refused when they begin
 * with a request line naming a method Node knows (a request that arrived in one piece); else
 * `unknown` (headers cut off mid-way, a timeout). Never other text: it becomes a metric label.
 */
function refusedMethod(rawPacket: unknown): string {
  if (!Buffer.isBuffer(rawPacket)) return 'unknown';
  const space = rawPacket.subarray(0, 32).indexOf(0x20);
  const method = space > 0 ? rawPacket.toString('latin1', 0, space) : '';
  return KNOWN_METHODS.has(method) ? method : 'unknown';
}

/**
 * Node's `clientError`: a request its parser refused (a non-numeric or doubled Content-Length,
 * a header line without a colon, a broken chunked body, headers too large or too slow) never
 * reaches a route, so no error handler of Wharf's sees it. Fastify's default answers
 * `{"error":"Bad Request","message":"Client Error"}`, a shape no Wharf client reads; this
 * answers Wharf's own envelope with a stable code and the parser's reason, and closes the
 * connection (the parser cannot find where the next request would start). Written by hand:
 * there is no route, request or reply here, only the socket.
 *
 * No hook sees these requests either, so they are counted (route `unmatched`) and logged
 * here: a flood of slow or oversized headers shows in the metrics and the log like any other
 * refusal. A request whose body broke after it reached its route is counted and logged there.
 *
 * `remoteAddress` is the client's (`addressOf`, X-Forwarded-For's from a trusted proxy) when
 * the request's headers were read: a body that broke. A request the parser refused has none
 * to read, so its line names the connection's address: behind a proxy, the proxy's.
 */
export function clientErrorHandler(metrics?: RequestMetrics, addressOf?: ClientAddress) {
  // `this` is the Fastify instance on the main port, its logger's holder on the metrics port
  // (metrics-listener.ts): only the logger is used.
  return function answerClientError(
    this: { log: Pick<FastifyBaseLogger, 'info'> },
    err: Error & { code?: string; reason?: string; rawPacket?: unknown },
    socket: Socket,
  ): void {
    // A reset connection has no one to answer; a lingering one was answered (the parser
    // finds the body it drops cut short when the client closes: see lingering-close.ts).
    if (err.code === 'ECONNRESET' || socket.destroyed || isLingering(socket)) return;
    const code = clientErrorCode(err.code);
    const status = ERROR_STATUS[code];
    // Node's own rule: answer only if no response to this connection's request has begun.
    // A response object means the request reached its route (its body broke): counted there.
    const current = (
      socket as Socket & {
        _httpMessage?: {
          headersSent?: boolean;
          req?: IncomingMessage;
          getHeader?: (name: string) => unknown;
        } | null;
      }
    )._httpMessage;
    const method = current?.req?.method ?? refusedMethod(err.rawPacket);
    // The request the parser refused never became one with an id (Fastify gives it one as it
    // routes): a fresh one, for the answer and the line, so a client's report finds the line.
    // One that reached its route keeps the id it was answered with so far.
    const given = current?.getHeader?.(REQUEST_ID_HEADER);
    const reqId = typeof given === 'string' ? given : randomUUID();
    // Counted, not timed: when a request the parser could not read began is not known.
    if (!current) metrics?.observeRefusal(method, UNMATCHED, status);
    this.log.info(
      {
        reqId,
        res: { statusCode: status },
        method,
        remoteAddress: current?.req && addressOf ? addressOf(current.req) : socket.remoteAddress,
        code,
        parserCode: err.code,
        reason: err.reason,
      },
      'refused a request the HTTP parser could not read',
    );
    if (socket.writable && !current?.headersSent) {
      const reason = typeof err.reason === 'string' && err.reason !== '' ? ` (${err.reason})` : '';
      const body = JSON.stringify({
        error: { code, message: `${MESSAGES[code]}${code === 'MALFORMED_REQUEST' ? `${reason}.` : ''}` },
      });
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n${REQUEST_ID_HEADER}: ${reqId}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroySoon();
  };
}
