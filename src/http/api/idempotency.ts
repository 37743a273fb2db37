import type { FastifyRequest, onSendHookHandler, preHandlerAsyncHookHandler } from 'fastify';
import { Type } from 'typebox';
import { WharfError } from '../../core/errors.js';
import type { IdempotencyHold } from '../../core/idempotency.js';
import type { Core } from '../../core/wharf.js';
import { describedAs } from '../openapi/components.js';
import { settleRefusedBody } from '../refused-body.js';
import type { App } from './context.js';
import { ErrorSchema } from './schemas.js';

/**
 * A route whose answer is not kept as sent: it records what it needs to answer again
 * (`request.idempotentRecord`, set by its handler) and rebuilds the answer from that on a replay.
 */
export interface IdempotentAnswers {
  replay(record: string, request: FastifyRequest): Promise<string>;
  /**
   * What makes two requests the same, for a route whose body is not parsed (a file it streams
   * itself): its query and headers, which the first and a retry send alike. Undefined: this
   * request takes no key (one the route answers by another protocol's rules). The default is the
   * parsed body.
   */
  request?(request: FastifyRequest): unknown;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The route creates something: a request with an Idempotency-Key is answered once (see
     * below), its answer kept as sent (`true`) or rebuilt from a record of its own.
     */
    idempotent?: true | IdempotentAnswers;
  }
  interface FastifyRequest {
    /** The idempotency key this request holds while it is answered. */
    idempotencyHold?: IdempotencyHold | undefined;
    /** What to keep under the key instead of the answer as sent (see IdempotentAnswers). */
    idempotentRecord?: string | undefined;
  }
}

/** What the routes that take the header may answer for it, for the document. */
export const idempotencyRefusals = {
  409: describedAs(
    ErrorSchema,
    'IDEMPOTENCY_KEY_IN_USE: a request with this Idempotency-Key is still being answered; retry after ' +
      '`Retry-After` seconds for its answer.',
  ),
  422: describedAs(
    ErrorSchema,
    'IDEMPOTENCY_KEY_REUSED: this Idempotency-Key was sent with another request (another body or route).',
  ),
};

/**
 * The header, on the routes that take it: their schema validates it (400 VALIDATION_FAILED) and
 * puts it in the OpenAPI document. The draft's form is a quoted string, Stripe's a bare token:
 * both are taken, and the key is what is inside the quotes.
 */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      pattern: '^(?:[!#-~]{1,255}|"[!#-~]{1,255}")$',
      description:
        'Makes the request safe to send again: the same key with the same request within 24 hours gets the ' +
        'first answer (with `Idempotent-Replayed: true`), not a second set of uploads. 1–255 visible ASCII ' +
        'characters other than `"` (a UUID), optionally in double quotes.',
    }),
  ),
});

const KEY = /^[!-~]{1,255}$/;

/**
 * The key an Idempotency-Key header names (what is inside the draft's quotes); a malformed one
 * is refused 400 VALIDATION_FAILED. For a route that claims its key itself (tus's creation).
 */
export function idempotencyKeyOf(header: string | string[]): string {
  return keyOf(Array.isArray(header) ? header.join(', ') : header);
}

function keyOf(value: string): string {
  const key = value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
  if (!KEY.test(key) || key.includes('"')) {
    throw new WharfError(
      'VALIDATION_FAILED',
      'Idempotency-Key must be 1 to 255 visible ASCII characters (optionally in double quotes).',
      { header: 'idempotency-key' },
    );
  }
  return key;
}

/**
 * Idempotency keys on the routes marked `idempotent` (see core/idempotency.ts): after the
 * request is authenticated and validated, the key is claimed, or the answer kept under it is
 * sent as it was; once the handler has answered, a success is kept under the key and a refusal
 * lets go of it (a retry then runs afresh). A request without the header is untouched. The
 * hooks are the marked routes' own (added as each is declared): every other route, and the
 * presigning route's hot path, pays nothing for them.
 */
export function registerIdempotency(app: App, core: Core): void {
  const claim: preHandlerAsyncHookHandler = async (request, reply) => {
    const header = request.headers['idempotency-key'];
    if (header === undefined || request.principal === null) return;
    const answers = request.routeOptions.config.idempotent;
    const described =
      typeof answers === 'object' && answers.request ? answers.request(request) : request.body;
    if (described === undefined && typeof answers === 'object' && answers.request) return;
    const key = idempotencyKeyOf(header);
    const outcome = await core.idempotency.begin(
      request.principal,
      key,
      `${request.method} ${request.routeOptions.url}`,
      described,
    );
    if (outcome.kind === 'run') {
      request.idempotencyHold = outcome.hold;
      return;
    }
    const body =
      typeof answers === 'object' ? await answers.replay(outcome.response, request) : outcome.response;
    // A file route's body is sent again with its retry, and not stored again: read and dropped
    // (or the connection closed after the answer), as a refused body is.
    settleRefusedBody(request, reply);
    reply.code(outcome.status).header('idempotent-replayed', 'true').type('application/json; charset=utf-8');
    return reply.send(body);
  };

  app.addHook('onRoute', (route) => {
    if (route.config?.idempotent === undefined) return;
    route.preHandler = [...hooks(route.preHandler), claim];
    route.onSend = [...hooks(route.onSend), keepIdempotentAnswer];
  });
}

/**
 * Once a request holding a key has answered: a success is kept under the key (its answer as
 * sent, or the record its handler set), and a refusal lets go of the key. The marked routes'
 * own onSend hook, and tus's, whose creation claims its key in its handler.
 */
export const keepIdempotentAnswer: onSendHookHandler<unknown> = (request, reply, payload, done) => {
  const hold = request.idempotencyHold;
  if (hold === undefined) {
    done(null, payload);
    return;
  }
  request.idempotencyHold = undefined;
  const answer = request.idempotentRecord ?? payload;
  const kept =
    reply.statusCode >= 200 && reply.statusCode < 300 && typeof answer === 'string'
      ? hold.finish(reply.statusCode, answer)
      : hold.release();
  kept.then(
    () => done(null, payload),
    (err: unknown) => {
      // The answer still goes out. The key stays held until its lease lapses; a retry after
      // that runs the request again, as it would have without a key.
      request.log.warn({ err }, 'could not keep the answer under its idempotency key');
      done(null, payload);
    },
  );
};

function hooks<T>(given: T | T[] | undefined): T[] {
  return given === undefined ? [] : Array.isArray(given) ? given : [given];
}
