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
   * What resumable uploads share with tus: the lease lock across nodes, and the directory
   * where a body with a digest of its own waits until it is checked. Without it no route
   * offers Resumable Uploads for HTTP. `interimResponse`: whether creations send their 104
   * (WHARF_RESUMABLE_INTERIM_RESPONSE).
   */
  resumable?: { locker: Locker; stagingDir: string; interimResponse: boolean } | undefined;
}

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;
