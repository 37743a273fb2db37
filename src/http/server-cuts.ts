import type { Socket } from 'node:net';
import { StreamCut } from '../core/telemetry.js';

/**
 * Why Wharf itself cut a connection: its client sent or read nothing for
 * WHARF_BODY_IDLE_TIMEOUT (`idle`), or its request still ran at the shutdown deadline
 * (`shutdown`). Node reports such a cut to the request as it reports a client that hung up, so
 * the log and the metrics ask here first: an operator must be able to tell the two apart.
 */
export type CutReason = 'idle' | 'shutdown';

const cuts = new WeakMap<Socket, CutReason>();

/** Records that Wharf is about to cut `socket`, and why. */
export function markCut(socket: Socket, reason: CutReason): void {
  cuts.set(socket, reason);
}

/** Why Wharf cut this connection; undefined when it did not (the client left, or it lives). */
export function cutReason(socket: Socket | null | undefined): CutReason | undefined {
  return socket ? cuts.get(socket) : undefined;
}

/** What a request Wharf cut counts as: 408 for a silent client (as nginx logs its timeouts), 503 at a stop. */
export const CUT_STATUS: Record<CutReason, number> = { idle: 408, shutdown: 503 };

/** The log line of a request Wharf cut. */
export const CUT_MESSAGE: Record<CutReason, string> = {
  idle: 'connection cut: nothing moved on it for WHARF_BODY_IDLE_TIMEOUT',
  shutdown: 'connection cut: the request still ran at the shutdown deadline (WHARF_SHUTDOWN_TIMEOUT)',
};

/**
 * What the body of a request Wharf cut fails with, so that what was uploading is counted
 * under the code of the status the request is counted under, not as a client's hang-up.
 */
export const CUT_ERROR: Record<CutReason, () => StreamCut> = {
  idle: () =>
    new StreamCut('REQUEST_TIMEOUT', 'Nothing moved on the connection for WHARF_BODY_IDLE_TIMEOUT.'),
  shutdown: () => new StreamCut('SERVICE_UNAVAILABLE', 'The server stopped while the request still ran.'),
};
