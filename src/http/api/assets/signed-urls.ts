import type { DownloadGrant } from '../../../core/assets.js';
import { ImageService, type TransformGrant } from '../../../core/images.js';

/** The URL of a signed download: the grant's fields as query parameters, which its signature covers. */
export function signedDownloadUrl(publicUrl: string, grant: DownloadGrant): string {
  const query = new URLSearchParams({
    expires: String(grant.expires),
    disposition: grant.disposition,
    signature: grant.signature,
  });
  if (grant.view !== undefined) query.set('view', grant.view);
  return `${publicUrl}/v1/assets/${grant.assetId}/content?${query}`;
}

/** The URL of a signed transform: its canonical parameters, then what the signature covers besides. */
export function signedImageUrl(publicUrl: string, grant: TransformGrant): string {
  const query = new URLSearchParams(ImageService.subject(grant.request));
  query.set('expires', String(grant.expires));
  if (grant.view !== undefined) query.set('view', grant.view);
  query.set('signature', grant.signature);
  return `${publicUrl}/v1/assets/${grant.assetId}/image?${query}`;
}
