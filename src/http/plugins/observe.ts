import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CUT_STATUS, cutReason } from '../server-cuts.js';
import { watchForHangUp } from './errors.js';

export const REQUEST_ID_HEADER = 'x-request-id';

/**
 * An id from a proxy or a client is kept only if it is short and plain: it is echoed in a
 * header and written in every log line, so it must not carry line breaks, markup or megabytes.
 */
const ACCEPTED_REQUEST_ID = /^[A-Za-z0-9._:+/=-]{1,128}$/;

/** Fastify's genReqId: the caller's x-request-id when acceptable, a fresh UUID otherwise. */
export function requestIdFor(raw: IncomingMessage): string {
  const given = raw.headers[REQUEST_ID_HEADER];
  return typeof given === 'string' && ACCEPTED_REQUEST_ID.test(given) ? given : randomUUID();
}

/** What the HTTP layer reports about each request (the Prometheus adapter implements it). */
export interface RequestMetrics {
  observeRequest(method: string, route: string, status: number, seconds: number): void;
  /** A request refused before it was read whole (see client-errors.ts): counted, with no duration. */
  observeRefusal(method: string, route: string, status: number): void;
}

/** The label of requests that matched no route (404s, malformed URLs): never the URL itself. */
export const UNMATCHED = 'unmatched';

/**
 * Marks a request's response with its id, and reports the request once its response ends.
 * Set on the raw response, so it survives every way a route answers (Fastify replies, tus's
 * own responses, storage endpoint XML, errors, 404s).
 */
export function observeRequest(request: FastifyRequest, reply: FastifyReply, metrics?: RequestMetrics): void {
  reply.raw.setHeader(REQUEST_ID_HEADER, request.id);
  watchForHangUp(request);
  if (!metrics) return;
  const start = performance.now();
  let reported = false;
  const report = (status: number) => {
    if (reported) return;
    reported = true;
    const route = request.routeOptions.url ?? UNMATCHED;
    metrics.observeRequest(request.method, route, status, (performance.now() - start) / 1000);
  };
  // On 'finish' (the response is handed to the OS), which comes before the client has it:
  // a scrape it sends next already counts it.
  reply.raw.once('finish', () => report(reply.raw.statusCode));
  // A response that closed without finishing was cut off by the client: 499, as nginx logs it;
  // or by Wharf (a silent client, the shutdown deadline), which says so (see server-cuts).
  reply.raw.once('close', () => {
    const cut = cutReason(request.raw.socket);
    report(cut ? CUT_STATUS[cut] : 499);
  });
}

/** Request ids and request metrics for every route registered after this (all of them). */
export function registerObservation(app: FastifyInstance, metrics?: RequestMetrics): void {
  app.addHook('onRequest', (request, reply, done) => {
    observeRequest(request, reply, metrics);
    done();
  });
}
