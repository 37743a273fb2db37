import type { FastifyRequest } from 'fastify';
import { WharfError } from '../../../core/errors.js';
import type { Principal } from '../../../core/model.js';
import type { Core } from '../../../core/wharf.js';
import { presentedKey } from '../../plugins/auth.js';

function unauthorized(message: string): WharfError {
  return new WharfError('UNAUTHORIZED', message);
}

/**
 * The document's clients use Basic (`curl -u user:password`) or OAuth bearer tokens. With
 * Basic, the user is the key's id and the password its secret: both must match, so a
 * secret sent under another key's id is refused rather than quietly accepted. A bearer
 * token (or x-api-key) is the key's secret itself.
 */
export async function authenticateFileService(core: Core, request: FastifyRequest): Promise<Principal> {
  const header = request.headers.authorization;
  const basic = header === undefined ? null : /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (basic) {
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 1) throw unauthorized('Basic credentials must be "<key id>:<key secret>".');
    const principal = await core.keys.authenticate(decoded.slice(colon + 1));
    if (principal.keyId !== decoded.slice(0, colon)) {
      throw unauthorized('The Basic user must be the id of the key whose secret is the password.');
    }
    return principal;
  }
  const key = presentedKey(request);
  if (key === undefined) {
    throw unauthorized(
      'Credentials are required: Basic <key id>:<key secret>, or Authorization: Bearer <key>.',
    );
  }
  return core.keys.authenticate(key);
}
