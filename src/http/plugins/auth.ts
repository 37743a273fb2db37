import type { FastifyRequest } from 'fastify';
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
