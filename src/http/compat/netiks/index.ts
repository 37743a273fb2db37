import type { FastifyInstance } from 'fastify';
import type { CompatContext } from '../context.js';

/** Seed API routes (filled in by its own folder's modules). */
export async function netiksCompat(_app: FastifyInstance, _context: CompatContext): Promise<void> {}
