import type { FastifyInstance } from 'fastify';
import type { RoutingErrorShape } from '../routing-errors.js';
import { activeStorageCompat, activeStorageRoutingErrors } from './active-storage/index.js';
import type { CompatContext } from './context.js';
import { fileServiceCompat, fileServiceRoutingErrors } from './file-service/index.js';
import { fileSpinRoutingErrors, filespinCompat } from './filespin/index.js';
import { inspectCompat, inspectRoutingErrors } from './inspect/index.js';
import { netiksCompat, netiksRoutingErrors } from './netiks/index.js';

/** Where each seed API's clients are, for failures that happen before any route runs. */
export const compatRoutingErrors: readonly RoutingErrorShape[] = [
  netiksRoutingErrors,
  inspectRoutingErrors,
  activeStorageRoutingErrors,
  fileServiceRoutingErrors,
  fileSpinRoutingErrors,
];

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
