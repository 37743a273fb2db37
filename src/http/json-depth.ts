import type { FastifyInstance } from 'fastify';
import { WharfError } from '../core/errors.js';

/**
 * How deep a JSON body may nest. Wharf's own bodies nest a few levels (a batch's files, their
 * metadata); 64 leaves room for any metadata a client means. Why a limit at all: V8's JSON.parse
 * takes seconds, on the event loop, for a few MB of `[[[[…` (8 MiB, allowed on POST /v1/uploads,
 * froze every request for about 9 s), and the schema that would refuse it runs only after.
 */
export const MAX_JSON_DEPTH = 64;

const OPEN_OBJECT = 0x7b; // {
const OPEN_ARRAY = 0x5b; // [
const CLOSE_OBJECT = 0x7d; // }
const CLOSE_ARRAY = 0x5d; // ]
const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \

/**
 * Whether `text` opens more than `max` objects and arrays inside one another (brackets in strings
 * do not count). One pass over the characters; no parse. Hand-written: JSON parsers offer no
 * depth limit that acts before the work is done.
 */
export function nestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++depth > max) return true;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth--;
    }
  }
  return false;
}

type JsonParser = ReturnType<FastifyInstance['getDefaultJsonParser']>;

/** Fastify's own JSON parser (prototype-poisoning refusals kept), behind the depth check. */
export function depthCheckedJsonParser(app: FastifyInstance): JsonParser {
  const parse = app.getDefaultJsonParser('error', 'error');
  return (request, body, done) => {
    if (nestsDeeperThan(body as string, MAX_JSON_DEPTH)) {
      done(
        new WharfError('VALIDATION_FAILED', `The JSON body nests deeper than ${MAX_JSON_DEPTH} levels.`, {
          max_depth: MAX_JSON_DEPTH,
        }),
        undefined,
      );
      return;
    }
    parse(request, body, done);
  };
}

/** JSON bodies of every route of `app`, and of the plugins registered after this, are depth-checked. */
export function limitJsonDepth(app: FastifyInstance): void {
  app.addContentTypeParser('application/json', { parseAs: 'string' }, depthCheckedJsonParser(app));
}

/**
 * In `app`'s scope, an application/json request with an empty body has no body, as if it had no
 * Content-Type: many clients' HTTP helpers send the header on every request, body-less POSTs
 * (complete an upload, replay a delivery) included, and Fastify refuses those as "Body cannot be
 * empty". A route that needs a body still refuses it, as it refuses a request without one (its
 * schema finds no body). Anything else is parsed as before: depth, prototype poisoning, size limit.
 * The native API's scopes only: the seed APIs answer an empty JSON body as their originals do.
 */
export function readEmptyJsonAsNoBody(app: FastifyInstance): void {
  const json = depthCheckedJsonParser(app);
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') return done(null, undefined);
    json(request, body as string, done);
  });
}
