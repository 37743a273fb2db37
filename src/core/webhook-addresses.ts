/**
 * Which addresses a webhook may be sent to. Endpoint URLs come from API callers, and a server
 * that POSTs wherever it is told can be turned against its own network (SSRF): cloud metadata
 * at 169.254.169.254, a database's HTTP port on 10.x, an admin page on localhost. Unless the
 * operator allows private targets, only globally routable unicast addresses are accepted.
 */
import ipaddr from 'ipaddr.js';

/**
 * Whether `address` (an IP literal) is publicly routable unicast. ipaddr.js names every special
 * range (private, loopback, linkLocal, uniqueLocal, carrierGradeNat, multicast, unspecified,
 * broadcast, reserved, 6to4, teredo …); only plain `unicast` is public. An IPv4 address mapped
 * into IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it is.
 */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  let parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv6') {
    const v6 = parsed as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) parsed = v6.toIPv4Address();
    // ::/96, the deprecated IPv4-compatible form (::127.0.0.1), which ipaddr.js calls plain
    // unicast: never a public destination, and some stacks route it to the IPv4 address.
    else if (v6.parts.slice(0, 6).every((part) => part === 0)) return false;
  }
  return parsed.range() === 'unicast';
}

/** The host of a URL as an IP literal (brackets of IPv6 removed), or undefined for a name. */
export function ipLiteral(hostname: string): string | undefined {
  const bare = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  return ipaddr.isValid(bare) ? bare : undefined;
}

/**
 * Why a URL's host is refused before any lookup (an IP literal that is not public, or a
 * `localhost` name, which resolves to loopback by definition: RFC 6761), or undefined. Names are
 * checked again, on the addresses they resolve to, at every delivery.
 */
export function refusedHost(hostname: string): string | undefined {
  const literal = ipLiteral(hostname);
  if (literal !== undefined) {
    return isPublicAddress(literal) ? undefined : `${literal} is not a public address`;
  }
  const name = hostname.toLowerCase().replace(/\.$/, '');
  if (name === 'localhost' || name.endsWith('.localhost')) return `${hostname} is a loopback name`;
  return undefined;
}
