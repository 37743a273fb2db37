import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { CUT_ERROR, markCut } from './server-cuts.js';

/**
 * Cuts a connection on which no byte of a body moves for `seconds` (0: never), either way: a
 * request body that stops arriving, as nginx's client_body_timeout, and a response the client
 * stops reading, as nginx's send_timeout. Why: a client gone without a word (a phone that
 * changed networks, a NAT that forgot the flow), or one that simply stops reading, otherwise
 * holds its connection and its file descriptor for as long as the kernel keeps the socket:
 * an upload its temp file and upload lock, a download the file it reads (and the disk space
 * of an asset deleted meanwhile). Enough of them use up the server's descriptors.
 *
 * Only the client's silence counts: while Wharf works on a request it has read whole
 * (completing a large upload, rendering an image) or waits on storage for the next bytes to
 * send, nothing is cut. Nor while it holds a body unread: waiting before it reads (an upload's
 * lock, up to 30 s) or for storage to take what it read (an S3 store that stalled, which the
 * store's own timeouts bound), node:http stops reading the socket once the request buffers
 * what it holds, and the client's bytes wait in the socket however it sends (see unread). The
 * time starts again once Wharf reads; until the request's buffer is full, what the client
 * does not send Wharf would have read, so its silence counts.
 * A slow client is never cut: any byte read or written starts the time again, a write the
 * kernel is still taking in part included. What Wharf sees of a download's reader is its
 * kernel taking more, which it does once the client has read a good part of the socket
 * buffers (up to a few MB), not byte by byte: a reader slower than that per timeout is silent.
 * The body of a request cut so ends where it stopped, as any cut body does (resumable uploads
 * keep what arrived).
 *
 * Timed here, by looking at what moved on each exchange's socket every tick, rather than by
 * the socket's own timeout: node:net holds that timeout back once when the kernel took part
 * of the write under way before it filled up (it takes that for progress since the write
 * began) and arms it again for the whole time, so a download the client stopped reading was
 * cut after about twice the setting (75 s for 40).
 */
export function cutIdleBodies(app: FastifyInstance, seconds: number): void {
  if (seconds <= 0) return;
  // A quarter of the time, at most a second: a cut comes at most that late.
  const tickMs = Math.min(1000, seconds * 250);
  const ticks = Math.ceil((seconds * 1000) / tickMs);
  const watched = new Set<Exchange>();
  let timer: NodeJS.Timeout | undefined;

  const tick = () => {
    for (const exchange of watched) {
      // While Wharf holds the body unread, the time starts again: it runs only while the client
      // could send (moved first: it remembers what has moved for the next tick).
      if (moved(exchange) || unread(exchange)) exchange.silentTicks = 0;
      else if (++exchange.silentTicks >= ticks && onSilence(exchange)) watched.delete(exchange);
    }
    if (watched.size === 0) stop();
  };
  const stop = () => {
    clearInterval(timer);
    timer = undefined;
  };
  // One listener for every response (what it ends is found on it), not a closure per request.
  const unwatch = function (this: ServerResponse) {
    const exchange = (this as Watched)[EXCHANGE];
    if (exchange) watched.delete(exchange);
  };

  app.addHook('onRequest', (request, reply, done) => {
    const socket = request.raw.socket;
    if (!socket) return done();
    // Nothing is read of the socket here (this runs for every request, most of which end well
    // within a tick): the first tick takes what has moved so far as movement and remembers it.
    const exchange: Exchange = {
      request: request.raw,
      response: reply.raw,
      socket,
      read: -1,
      written: -1,
      queued: -1,
      silentTicks: 0,
    };
    (reply.raw as Watched)[EXCHANGE] = exchange;
    watched.add(exchange);
    // Until the response ends (or its connection closes): between requests, node:http's
    // keep-alive timeout is what closes an idle connection. On the response, not the socket:
    // a kept-alive connection's requests add nothing to it that stays.
    reply.raw.on('close', unwatch);
    // Not kept alive by its own timer: a process with nothing else to do may exit.
    timer ??= setInterval(tick, tickMs).unref();
    done();
  });
  app.addHook('onClose', (_app, done) => {
    stop();
    done();
  });
}

const EXCHANGE = Symbol('body-idle exchange');
type Watched = ServerResponse & { [EXCHANGE]?: Exchange };

interface Exchange {
  request: IncomingMessage;
  response: ServerResponse;
  socket: Socket;
  /** What had moved on the socket when last looked at (see progress); -1 before the first tick. */
  read: number;
  written: number;
  queued: number;
  /** Ticks since something last moved. */
  silentTicks: number;
}

/**
 * Bytes read from the kernel, bytes handed to the socket, and what the kernel has yet to take
 * of the write under way: the last is how a slow reader's progress through one large write
 * shows (node:net's own timeout looks at it too; the handle's field is not documented).
 */
function progress(socket: Socket): { read: number; written: number; queued: number } {
  const handle = (socket as unknown as { _handle?: { writeQueueSize?: number } | null })._handle;
  return { read: socket.bytesRead, written: socket.bytesWritten ?? 0, queued: handle?.writeQueueSize ?? 0 };
}

/** Whether anything moved since last looked at; remembers what has now. */
function moved(exchange: Exchange): boolean {
  const now = progress(exchange.socket);
  const changed =
    now.read !== exchange.read || now.written !== exchange.written || now.queued !== exchange.queued;
  exchange.read = now.read;
  exchange.written = now.written;
  exchange.queued = now.queued;
  return changed;
}

/**
 * The connection moved nothing for the whole timeout: cut it if the client is the one silent
 * (and say so: true). Otherwise Wharf is the one at work, and the time goes on running.
 */
function onSilence({ request, response, socket }: Exchange): boolean {
  const receiving = receivingBody(request);
  const sending = sendingAnswer(response);
  if (!receiving && !sending) return false;
  markCut(socket, 'idle');
  socket.destroy();
  // A body still arriving fails with the cut's own error, which an upload's failure is then
  // counted under (wharf_uploads_total), rather than the hang-up Node would report. After the
  // socket's destroy, so that the request is still seen as cut (see watchForHangUp).
  if (receiving) request.destroy(CUT_ERROR.idle());
  return true;
}

/**
 * Whether Wharf is the one not reading: a body still arriving on a socket node:http has paused
 * (readStop) because the request holds as much of it unread as it buffers, Wharf waiting before
 * it reads (an upload's lock) or for a write of what it read to drain (a storage write, an S3
 * store that stalled). The client's bytes then wait in the socket, whether it sends or not,
 * until Wharf reads again. node:http also pauses a socket whose answers the client does not
 * take (pipelined requests piling up): that earlier exchange is sending, and counts as silent.
 */
function unread({ request, response, socket }: Exchange): boolean {
  return receivingBody(request) && socket.isPaused() && !sendingAnswer(response);
}

/** A request body that has not arrived whole. */
function receivingBody(request: IncomingMessage): boolean {
  return !request.complete && carriesBody(request.headers);
}

/** Bytes of the answer the client has not taken (in the response or the socket's buffer). */
function sendingAnswer(response: ServerResponse): boolean {
  return response.writableLength > 0;
}

function carriesBody(headers: Record<string, string | string[] | undefined>): boolean {
  const length = headers['content-length'];
  if (typeof length === 'string') return length !== '0';
  return headers['transfer-encoding'] !== undefined;
}
