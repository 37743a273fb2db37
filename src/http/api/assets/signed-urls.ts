import type { DownloadGrant } from '../../../core/assets.js';
import type { UrlExpiry } from '../../../core/authorization.js';
import { WharfError } from '../../../core/errors.js';
import { ImageService, type TransformGrant } from '../../../core/images.js';
import { parseTime } from '../schemas.js';

/**
 * Refuses a signing body, as sent, that gives both `expires_in` and `expires_at`: which one was
 * meant is not for Wharf to guess. Checked before the schema, whose default for `expires_in`
 * would otherwise hide that it was not given.
 */
export function refuseBothExpiries(body: unknown): void {
  if (typeof body === 'object' && body !== null && 'expires_in' in body && 'expires_at' in body) {
    throw new WharfError('VALIDATION_FAILED', 'Give expires_in or expires_at, not both.');
  }
}

/**
 * When a signing body (validated, defaults applied) asks its URL to expire: at the moment
 * `expires_at`, which gives the same URL every time it is signed, else `expires_in` seconds
 * from now.
 */
export function requestedExpiry(body: { expires_in: number; expires_at?: string | undefined }): UrlExpiry {
  return body.expires_at === undefined ? body.expires_in : { at: parseTime(body.expires_at) };
}

/** The URL of a signed download: the grant's fields as query parameters, which its signature covers. */
export function signedDownloadUrl(publicUrl: string, grant: DownloadGrant): string {
  const query = new URLSearchParams({
    expires: String(grant.expires),
    disposition: grant.disposition,
    signature: grant.signature,
  });
  if (grant.view !== undefined) query.set('view', grant.view);
  if (grant.signer !== undefined) query.set('signer', grant.signer);
  return `${publicUrl}/v1/assets/${grant.assetId}/content?${query}`;
}

/** The URL of a signed transform: its canonical parameters, then what the signature covers besides. */
export function signedImageUrl(publicUrl: string, grant: TransformGrant): string {
  const query = new URLSearchParams(ImageService.subject(grant.request));
  query.set('expires', String(grant.expires));
  if (grant.view !== undefined) query.set('view', grant.view);
  if (grant.signer !== undefined) query.set('signer', grant.signer);
  query.set('signature', grant.signature);
  return `${publicUrl}/v1/assets/${grant.assetId}/image?${query}`;
}

/** Query parameters of a signed transform URL besides the signed parameters. */
const SIGNING_PARAMS: ReadonlySet<string> = new Set(['expires', 'signature', 'view', 'signer']);

/**
 * Whether a signed URL is as it was handed out: the asset id as signed (lower case), the signed
 * parameters in their canonical text (`subject`, in order), `expires` as a plain number, and
 * nothing else but the signature, the view and the signer, each written as signedImageUrl
 * writes it. Parsing alone would take `w=47` for a URL signed for `w=48` (rounded alike),
 * `expires=0…` for `expires=…`, a trailing `&`, an escaped letter or an upper-case id: one
 * signature, many URLs, each a cache entry of its own.
 */
export function asSigned(url: string, assetId: string, subject: string, expires: number): boolean {
  const at = url.indexOf('?');
  if (at < 0 || !url.slice(0, at).endsWith(`/${assetId}/image`)) return false;
  if (!plainExpires(url, expires)) return false;
  const signed: string[] = [];
  for (const piece of url.slice(at + 1).split('&')) {
    const [entry] = new URLSearchParams(piece);
    if (entry === undefined) return false;
    const [name, value] = entry;
    if (!SIGNING_PARAMS.has(name)) signed.push(piece);
    else if (new URLSearchParams({ [name]: value }).toString() !== piece) return false;
  }
  return signed.join('&') === subject;
}

/** Whether a signed download's `expires` is written as it was handed out: one plain number. */
export function plainExpires(url: string, expires: number): boolean {
  const at = url.indexOf('?');
  const values = new URLSearchParams(at < 0 ? '' : url.slice(at + 1)).getAll('expires');
  return values.length === 1 && values[0] === String(expires);
}
