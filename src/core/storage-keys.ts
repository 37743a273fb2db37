/**
 * Where an upload's bytes are stored. Storage keys carry the account, the upload id and a short
 * extension (handy when browsing a bucket); never anything else from the client, so no name a
 * client sends can reach another key.
 */
const SAFE_EXTENSION = /\.[a-z0-9]{1,10}$/;
const KEY_PATTERN =
  /^([A-Za-z0-9_-]{1,64})\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(\.[a-z0-9]{1,10})?$/;

/** The key a rewritable upload's bytes are sealed under: outside every presigned URL's reach. */
export function sealedKeyFor(key: string): string {
  const at = key.indexOf('/');
  return `${key.slice(0, at)}/sealed${key.slice(at)}`;
}

export function storageKeyFor(accountId: string, uploadId: string, name: string): string {
  const ext = SAFE_EXTENSION.exec(name.toLowerCase())?.[0] ?? '';
  return `${accountId}/${uploadId}${ext}`;
}

/** The account a storage key (an upload's, sealed or not) belongs to: its first segment. */
export function accountOfKey(key: string): string {
  const at = key.indexOf('/');
  return at === -1 ? key : key.slice(0, at);
}

/** The upload a storage key was made for, if it is an upload's key. */
export function uploadIdFromKey(key: string): string | undefined {
  return KEY_PATTERN.exec(key)?.[2];
}
