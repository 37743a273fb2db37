import type { FastifyInstance } from 'fastify';
import { activeStorageCompat } from './active-storage/index.js';
import type { CompatContext } from './context.js';
import { fileServiceCompat } from './file-service/index.js';
import { filespinCompat } from './filespin/index.js';
import { inspectCompat } from './inspect/index.js';
import { netiksCompat } from './netiks/index.js';

/**
 * The seed APIs, one folder each: every folder maps its document's wire format onto the
 * core and nothing else, in its own encapsulated scope (own auth headers, error shapes).
 */
export async function compatRoutes(app: FastifyInstance, context: CompatContext): Promise<void> {
  await app.register(netiksCompat, context);
  await app.register(inspectCompat, context);
  await app.register(activeStorageCompat, context);
  await app.register(fileServiceCompat, context);
  await app.register(filespinCompat, context);
}
