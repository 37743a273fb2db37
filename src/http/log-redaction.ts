/**
 * What request logs may show of a URL. Presigned and signed URLs are bearer credentials until
 * they expire, and an ActiveStorage signed id in a path downloads its blob forever: logs keep
 * the parameters' names and the path's shape, never those values. Matched on the decoded
 * spelling, as routing and the query parser read it: `%73ignature=` is a signature too.
 */
const SECRET_PARAMS = new Set(['x-amz-signature', 'x-amz-credential', 'x-amz-security-token', 'signature']);
// Wharf takes no key, token or password in a query, but a client that puts one there (say
// `?api_key=`) has still sent it: its value is not logged under such a name, nor any value
// that holds a Wharf key or upload token (`wharf_` and at least 16 more key characters; Wharf's
// own have 43), whatever the parameter is called and wherever in the value it sits
// (`?auth=Bearer wharf_…`, `?q=key:wharf_…`), nor a parameter named by one (`?wharf_…`, a URL
// built as `url + '?' + key`). Looked for in the text as decoded and as sent, where an escape
// may sit before it (`%20wharf_…` in a value whose other escapes do not decode, `%2520wharf_…`
// encoded twice); a name like `project-wharf_notes.txt` is no key.
const CREDENTIAL_PARAM =
  /^(?:x-)?(?:api[-_]?key|key|access[-_]?token|token|auth|authorization|secret|password|session)$/;
const WHARF_CREDENTIAL = /(?:^|[^A-Za-z0-9]|%[0-9A-Fa-f]{2})wharf_[A-Za-z0-9_-]{16}/;

function holdsCredential(raw: string, decodedText: string): boolean {
  return WHARF_CREDENTIAL.test(decodedText) || WHARF_CREDENTIAL.test(raw);
}
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
      const rawValue = eq === -1 ? '' : pair.slice(eq + 1);
      const decodedName = decoded(name.replace(/\+/g, ' '));
      if (holdsCredential(name, decodedName)) return 'REDACTED';
      const spelled = decodedName.toLowerCase();
      const value = decoded(rawValue.replace(/\+/g, ' ')).trim();
      const secret =
        SECRET_PARAMS.has(spelled) || CREDENTIAL_PARAM.test(spelled) || holdsCredential(rawValue, value);
      return secret ? `${name}=REDACTED` : pair;
    })
    .join('&');
  return `${logPath}?${query}`;
}

/**
 * Request headers carry credentials: API keys (`x-api-key`, a seed API's own key header),
 * `Authorization` (keys, upload tokens, the metrics token), the console's session cookie and
 * CSRF token. Wharf's own request log shows no headers, but libraries log what they are given
 * at their levels: @fastify/multipart logs the options it hands busboy, raw request headers
 * included, at `trace`. So the logger itself censors every object logged under `headers` (and
 * an IncomingMessage's `rawHeaders`), whoever logs it and at any level: the names stay, the
 * values of these go.
 */
const CREDENTIAL_HEADER =
  /^(?:authorization|proxy-authorization|cookie|set-cookie)$|key|token|secret|signature|credential|password|session/i;

function isCredential(name: unknown): boolean {
  return typeof name === 'string' && CREDENTIAL_HEADER.test(name);
}

function censoredHeaders(value: unknown): unknown {
  if (Array.isArray(value)) {
    // [name, value] pairs, or Node's flat `rawHeaders` (name, value, name, value…).
    return value.map((item, i) => {
      if (Array.isArray(item)) return isCredential(item[0]) ? [item[0], 'REDACTED'] : item;
      return i % 2 === 1 && isCredential(value[i - 1]) ? 'REDACTED' : item;
    });
  }
  if (value === null || typeof value !== 'object') return value;
  const shown: Record<string, unknown> = {};
  for (const [name, header] of Object.entries(value)) shown[name] = isCredential(name) ? 'REDACTED' : header;
  return shown;
}

// pino's paths take no "any depth" wildcard: each depth is spelled out, and wildcards cost
// every line logged, whatever it holds. Measured (pino 10, a request line, beside 2 µs without
// redaction): `headers` alone adds nothing, one wildcard level 3 µs, four levels about 20 µs —
// on the two lines Fastify logs per request at `info`, four levels were a tenth of a presigned
// URL's whole cost. The lines that carry headers are libraries' at `debug` and `trace` (busboy's
// options, one level down, at `trace`; an error's response or request two or three down): there
// four levels. At `info` and above no line carries headers below its top (Wharf's own lines log
// none), and a top-level `headers` is still censored.
function headerPaths(levels: number): string[] {
  return Array.from({ length: levels + 1 }, (_, depth) => '*.'.repeat(depth)).flatMap((above) => [
    `${above}headers`,
    `${above}rawHeaders`,
  ]);
}

/** pino's `redact` option for a logger at `level`. */
export function logRedaction(level: string | undefined) {
  return {
    paths: headerPaths(level === 'debug' || level === 'trace' ? 4 : 0),
    censor: (value: unknown) => censoredHeaders(value),
  };
}
