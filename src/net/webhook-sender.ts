import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ipLiteral, isPublicAddress } from '../core/webhook-addresses.js';
import {
  RESPONSE_BODY_LIMIT,
  type WebhookRequest,
  type WebhookResponse,
  type WebhookSender,
} from '../core/webhooks.js';

/** How a name is resolved: node's dns.lookup, or a stand-in in tests of rebinding. */
export type Resolve = (
  hostname: string,
  callback: (err: Error | null, addresses: LookupAddress[]) => void,
) => void;

const systemResolve: Resolve = (hostname, callback) =>
  dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses) => callback(err, addresses ?? []));

class RefusedAddress extends Error {}

/**
 * Sends webhooks over node:http(s), one fresh connection per attempt. Unless private targets
 * are allowed, the host is vetted where the connection is made: an IP literal before
 * connecting, a name inside the socket's own `lookup`, whose vetted answer is the address the
 * socket then connects to. A name cannot resolve to a public address for a check and to
 * 127.0.0.1 for the connection (DNS rebinding): there is only the one resolution.
 * Redirects are never followed (node:http does not), and at most RESPONSE_BODY_LIMIT bytes of
 * the answer are read.
 */
export class HttpWebhookSender implements WebhookSender {
  private readonly lookup: LookupFunction;

  constructor(
    private readonly allowPrivate: boolean,
    resolve: Resolve = systemResolve,
  ) {
    this.lookup = guardedLookup(allowPrivate, resolve);
  }

  send(request: WebhookRequest): Promise<WebhookResponse> {
    const started = performance.now();
    const elapsed = () => performance.now() - started;
    const url = new URL(request.url);
    const literal = ipLiteral(url.hostname);
    if (!this.allowPrivate && literal !== undefined && !isPublicAddress(literal)) {
      return Promise.resolve({ ok: false, error: refusal(url.hostname, false), latencyMs: 0 });
    }
    const client = url.protocol === 'https:' ? https : http;
    return new Promise((resolve) => {
      let settled = false;
      let response: IncomingMessage | undefined;
      const chunks: Buffer[] = [];
      let received = 0;
      const answer = () => {
        if (settled || !response) return;
        settled = true;
        clearTimeout(timer);
        const header = (name: string) => {
          const value = response!.headers[name];
          return Array.isArray(value) ? value[0] : value;
        };
        resolve({
          ok: true,
          status: response.statusCode ?? 0,
          body: Buffer.concat(chunks).subarray(0, RESPONSE_BODY_LIMIT).toString('utf8'),
          location: header('location'),
          retryAfter: header('retry-after'),
          latencyMs: elapsed(),
        });
        response.destroy();
      };
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        resolve({ ok: false, error: describe(err, url, request.timeoutMs), latencyMs: elapsed() });
      };
      const req = client.request(url, {
        method: 'POST',
        headers: { ...request.headers, 'content-length': String(Buffer.byteLength(request.body)) },
        // A connection of its own each time: every attempt resolves and vets the host anew.
        agent: false,
        lookup: this.lookup,
      });
      // One deadline for the whole exchange (connecting, sending, the answer's head).
      const timer = setTimeout(() => {
        if (response) answer();
        else fail(new TimedOut());
      }, request.timeoutMs);
      req.on('response', (res) => {
        response = res;
        res.on('data', (chunk: Buffer) => {
          if (received < RESPONSE_BODY_LIMIT) chunks.push(chunk);
          received += chunk.length;
          if (received >= RESPONSE_BODY_LIMIT) answer();
        });
        res.on('end', answer);
        res.on('error', answer);
        res.on('close', answer);
      });
      req.on('error', fail);
      req.end(request.body);
    });
  }
}

class TimedOut extends Error {}

const ALLOW_PRIVATE_HINT = '(set WHARF_WEBHOOK_ALLOW_PRIVATE=true to allow private targets).';

/**
 * Why a host was refused, as the delivery log (read by the account's admins) says it. A name's
 * resolved addresses are left out: quoting them would let any tenant resolve internal names with
 * the server's resolver (split-horizon zones, hosts-file entries) and read the private answers.
 * For the same reason a name that resolves to a private address and one that does not resolve
 * at all get the same words: telling them apart would say which internal names exist.
 */
function refusal(host: string, resolved: boolean): string {
  return resolved
    ? `Refused: ${host} has no public address (it resolves to none, or to one that is not public) ${ALLOW_PRIVATE_HINT}`
    : `Refused: ${host} is not a public address ${ALLOW_PRIVATE_HINT}`;
}

function describe(err: Error, url: URL, timeoutMs: number): string {
  if (err instanceof TimedOut) return `Timed out: no answer within ${timeoutMs} ms.`;
  if (err instanceof RefusedAddress) return err.message;
  const code = (err as NodeJS.ErrnoException).code;
  return `Could not reach ${url.host}: ${code ? `${code} ` : ''}${err.message}`.trim();
}

/**
 * A socket `lookup` that resolves once and refuses the answer if any address is not public,
 * so the connection can only go to an address that was checked. Handles `all` (node's
 * happy-eyeballs connect asks for every address).
 */
function guardedLookup(allowPrivate: boolean, resolve: Resolve): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, (err, found) => {
      const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family;
      const addresses = err ? [] : family ? found.filter((a) => a.family === family) : found;
      // Private targets refused: no answer (ENOTFOUND, a failing resolver) is refused in the
      // same words as a private one, so the log is no way to test which internal names exist.
      if (!allowPrivate && (addresses.length === 0 || addresses.some((a) => !isPublicAddress(a.address)))) {
        return callback(new RefusedAddress(refusal(hostname, true)), '', 0);
      }
      if (err) return callback(err as NodeJS.ErrnoException, '', 0);
      if (addresses.length === 0) {
        const none = Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' });
        return callback(none, '', 0);
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      return callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}
