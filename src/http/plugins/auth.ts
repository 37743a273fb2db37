import type { FastifyRequest } from 'fastify';
import { WharfError } from '../../core/errors.js';
import type { Principal } from '../../core/model.js';
import type { Core } from '../../core/wharf.js';

/** The key from `x-api-key` or `Authorization: Bearer`. */
export function presentedKey(request: FastifyRequest): string | undefined {
  const header = request.headers['x-api-key'];
  if (typeof header === 'string' && header !== '') return header;
  const auth = request.headers.authorization;
  if (auth) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (match) return match[1];
  }
  return undefined;
}

export function authenticate(core: Core, request: FastifyRequest): Promise<Principal> {
  return core.keys.authenticate(presentedKey(request));
}

/**
 * A key taken from the headers a seed API reads (`headers`, as its document names them), then
 * authenticated as any: without one, the 401 names those headers, not the native API's
 * (the core's message says x-api-key or Authorization: Bearer).
 */
export async function authenticateFrom(
  core: Core,
  key: string | undefined,
  headers: string,
): Promise<Principal> {
  if (key === undefined || key === '') {
    throw new WharfError('UNAUTHORIZED', `An API key is required (${headers}).`);
  }
  return core.keys.authenticate(key);
}
