/**
 * Query strings decoded as browsers and the WHATWG URL standard decode them: `+` is a space, and
 * a percent-escape of bytes that are not UTF-8 becomes U+FFFD. Fastify's parser left such an
 * escape as its own text, so `?name=%FF%FE.txt` stored a file named "%FF%FE.txt", the name the
 * client sent lost and another one, equally valid, put in its place. Decoded as U+FFFD, what
 * was lost shows, and the name rules refuse it (INVALID_NAME) as every other way a name arrives
 * refuses it. A repeated parameter is an array, as before.
 */
export function parseQueryString(query: string): Record<string, string | string[]> {
  const result: Record<string, string | string[]> = Object.create(null);
  if (query.length === 0) return result;
  for (const [key, value] of new URLSearchParams(query)) {
    const prior = result[key];
    if (prior === undefined) result[key] = value;
    else if (Array.isArray(prior)) prior.push(value);
    else result[key] = [prior, value];
  }
  return result;
}
