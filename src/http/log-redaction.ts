/**
 * What request logs may show of a URL. Presigned and signed URLs are bearer credentials until
 * they expire, and an ActiveStorage signed id in a path downloads its blob forever: logs keep
 * the parameters' names and the path's shape, never those values. Matched on the decoded
 * spelling, as routing and the query parser read it: `%73ignature=` is a signature too.
 */
const SECRET_PARAMS = new Set(['x-amz-signature', 'x-amz-credential', 'x-amz-security-token', 'signature']);
// The segment after these is a signed id (ActiveStorage's redirect and record routes).
const SECRET_SEGMENTS = /(\/(?:rails\/active_storage\/blobs\/redirect|api\/v1\/upload\/blobs)\/)[^/?]+/g;

function decoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    // Not valid percent-encoding: the router refuses such a URL, so its raw text is what it is.
    return text;
  }
}

export function redactedUrl(url: string): string {
  const at = url.indexOf('?');
  const rawPath = at === -1 ? url : url.slice(0, at);
  const path = decoded(rawPath);
  // A path that spells a secret route in escapes is logged decoded, so its signed id is found.
  const shown = path.replace(SECRET_SEGMENTS, '$1REDACTED');
  const logPath = shown === path ? rawPath : shown;
  if (at === -1) return logPath;
  const query = url
    .slice(at + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq === -1 ? pair : pair.slice(0, eq);
      return SECRET_PARAMS.has(decoded(name.replace(/\+/g, ' ')).toLowerCase()) ? `${name}=REDACTED` : pair;
    })
    .join('&');
  return `${logPath}?${query}`;
}
