import type { IncomingMessage } from 'node:http';
import proxyAddr from '@fastify/proxy-addr';

/** The address of the client that made `req`: the one request log lines show as `remoteAddress`. */
export type ClientAddress = (req: IncomingMessage) => string | undefined;

/**
 * The client's address as Fastify's `request.ip` reads it, with WHARF_TRUST_PROXY's proxies
 * (the same proxy-addr, given the same list): the connection's address, or from one of the
 * proxies the nearest address in X-Forwarded-For that is not one of them.
 *
 * `request.ip` is that on every request that reaches routing, but not on a request refused
 * before it (Fastify's `frameworkErrors`: a malformed percent-encoding, an over-long id):
 * Fastify builds those with its plain Request, whose `ip` is the connection's, so behind a
 * proxy their lines named the proxy. Their headers have been read, so the client is known.
 */
export function clientAddress(trustProxy: readonly string[]): ClientAddress {
  if (trustProxy.length === 0) return (req) => req.socket.remoteAddress;
  const trusted = proxyAddr.compile([...trustProxy]);
  return (req) => proxyAddr(req, trusted);
}
