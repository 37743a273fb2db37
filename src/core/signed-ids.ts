import { createHmac, timingSafeEqual } from 'node:crypto';
import { WharfError } from './errors.js';

/**
 * Opaque, unforgeable references to records (ActiveStorage's `signed_id` idea): the id and
 * its purpose, base64url JSON, then an HMAC. A token made for one purpose never passes
 * for another, and a changed byte fails the constant-time comparison.
 *
 * A signed id has no lifetime and is often the only handle a client keeps for a blob, so one
 * made under a previous server secret still verifies while that secret is known (as Rails'
 * `rotate` keeps old signed ids): `previous` keys verify, only `key` signs. Without them, a
 * change of WHARF_SECRET orphaned every stored signed id although the assets were intact.
 */
export class SignedIds {
  constructor(
    private readonly key: Buffer,
    private readonly previous: readonly Buffer[] = [],
  ) {}

  sign(purpose: string, id: string): string {
    const body = Buffer.from(JSON.stringify({ _wharf: { id, pur: purpose } })).toString('base64url');
    return `${body}--${this.mac(body)}`;
  }

  /** The id inside a token made by `sign` for this purpose; INVALID_SIGNATURE otherwise. */
  verify(purpose: string, token: string): string {
    const at = token.lastIndexOf('--');
    const body = at > 0 ? token.slice(0, at) : '';
    const given = Buffer.from(at > 0 ? token.slice(at + 2) : '');
    const signedBy = (key: Buffer) => {
      const expected = Buffer.from(this.mac(body, key));
      return given.length === expected.length && timingSafeEqual(given, expected);
    };
    if (body === '' || ![this.key, ...this.previous].some(signedBy)) {
      throw new WharfError('INVALID_SIGNATURE', 'The signed id is not valid.');
    }
    const parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as {
      _wharf?: { id?: unknown; pur?: unknown };
    };
    if (parsed._wharf?.pur !== purpose || typeof parsed._wharf.id !== 'string') {
      throw new WharfError('INVALID_SIGNATURE', 'The signed id is not valid.');
    }
    return parsed._wharf.id;
  }

  private mac(body: string, key = this.key): string {
    return createHmac('sha256', key).update(body).digest('hex');
  }
}
