import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Locker } from '@tus/utils';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { Core } from '../../core/wharf.js';

/** What every route plugin is given: the core and where Wharf is reachable. */
export interface ApiContext {
  core: Core;
  publicUrl: string;
  /**
   * The lease lock resumable uploads share across nodes (tus's); without it no route offers
   * resumable uploads (Resumable Uploads for HTTP).
   */
  locker?: Locker | undefined;
}

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;
