import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { TSchema } from 'typebox';
import { WharfError } from '../core/errors.js';

/** Fastify's router refuses path parameters longer than this (find-my-way's maxParamLength). */
export const MAX_PARAM_LENGTH = 500;

/** Sends a failure that happened before routing in the error shape of one path's clients. */
export type RoutingErrorSender = (err: WharfError, request: FastifyRequest, reply: FastifyReply) => void;

/** The paths (prefixes ending in `/`) whose clients read one error shape, and that shape. */
export interface RoutingErrorShape {
  prefixes: readonly string[];
  send: RoutingErrorSender;
  /**
   * What `send` answers, for the OpenAPI document: every route under these prefixes with a path
   * parameter then declares the 414 its over-long segment gets (`status` maps a status to the
   * one this API answers with, as Inspect answers 414 as 400). Without it (the protocols, which
   * their hand-written operations describe), the routes' schemas are left as they are.
   */
  documented?: { schema: TSchema; status?: (status: number) => number };
}

/**
 * A failure of Fastify's router as a Wharf refusal. Its own messages quote the whole path,
 * which a client already has and a log line should not carry twice: these say what is wrong.
 */
export function routingError(err: FastifyError): WharfError {
  switch (err.code) {
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new WharfError(
        'URI_TOO_LONG',
        `A segment of the path is longer than ${MAX_PARAM_LENGTH} characters; no id or name is that long.`,
      );
    case 'FST_ERR_BAD_URL':
      return new WharfError('VALIDATION_FAILED', 'The path is not a valid percent-encoded URL.');
    default:
      // FST_ERR_ASYNC_CONSTRAINT: Wharf's routes have no constraints, so this is a fault.
      return new WharfError('INTERNAL', 'Internal server error.');
  }
}

/** The refusals routeMiss made, told apart from the NOT_FOUND of a thing a route looked up. */
const routeMisses = new WeakSet<WharfError>();

/**
 * The 404 of a request no route takes (no such path, or not with this method): NOT_FOUND, as
 * the native API answers it. An API whose own 404 names one kind of thing (FileSpin's
 * ASSET_NOT_FOUND) tells it apart with isRouteMiss, so a path typo is not read as that thing.
 */
export function routeMiss(request: FastifyRequest): WharfError {
  const err = new WharfError('NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}`);
  routeMisses.add(err);
  return err;
}

/** Whether `err` is routeMiss's: no route took the request. */
export function isRouteMiss(err: unknown): boolean {
  return err instanceof WharfError && routeMisses.has(err);
}

/**
 * The error shape for `url`: the longest matching prefix wins (FileSpin's
 * `/api/v1/assets/new/` inside netiks's `/api/v1/assets/`); undefined for the native API's.
 */
export function shapeFor(shapes: readonly RoutingErrorShape[], url: string): RoutingErrorSender | undefined {
  return routingShapeFor(shapes, url)?.send;
}

/** The shape whose prefix is the longest to match `url` (a request's, or a route's pattern). */
export function routingShapeFor(
  shapes: readonly RoutingErrorShape[],
  url: string,
): RoutingErrorShape | undefined {
  let best: { length: number; shape: RoutingErrorShape } | undefined;
  for (const shape of shapes) {
    for (const prefix of shape.prefixes) {
      if (url.startsWith(prefix) && prefix.length > (best?.length ?? -1)) {
        best = { length: prefix.length, shape };
      }
    }
  }
  return best?.shape;
}
