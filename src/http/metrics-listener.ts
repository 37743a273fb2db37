import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { clientErrorHandler } from './client-errors.js';
import { bearerMatches, type MetricsSource } from './operations.js';
import { REQUEST_ID_HEADER, requestIdFor } from './plugins/observe.js';

/** How long a stop waits for scrapes under way to answer. */
const SCRAPE_SETTLE_MS = 2_000;

export interface MetricsListener {
  /** http://host:port of the listener. */
  url: string;
  close(): Promise<void>;
}

/**
 * GET /metrics on a port of its own (WHARF_METRICS_PORT), for scrapers on a private network
 * or the same host: where it binds is its protection, plus the token when one is set. Plain
 * node:http: one route, no body parsing, nothing of the API's plugins.
 */
export async function listenForMetrics(
  source: MetricsSource,
  options: {
    host: string;
    port: number;
    token: string | undefined;
    onError: (err: unknown, reqId: string) => void;
    /** Where a request Node's HTTP parser refused is logged (see client-errors.ts). */
    log: Pick<FastifyBaseLogger, 'info'>;
  },
): Promise<MetricsListener> {
  // Scrapes under way: a stop lets them answer (see close).
  const scraping = new Set<Promise<unknown>>();
  const server: Server = createServer((req, res) => {
    // As every response of the main port: a scraper's failure can be named by its id.
    const reqId = requestIdFor(req);
    res.setHeader(REQUEST_ID_HEADER, reqId);
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Only GET /metrics is served here.\n');
      return;
    }
    if (options.token !== undefined && !bearerMatches(req.headers.authorization, options.token)) {
      res
        .writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="wharf-metrics"' })
        .end('Metrics need Authorization: Bearer <WHARF_METRICS_TOKEN>.\n');
      return;
    }
    const scrape = source.scrape().then(
      ({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: unknown) => {
        options.onError(err, reqId);
        res.writeHead(500, { 'content-type': 'text/plain' }).end('Metrics collection failed.\n');
      },
    );
    scraping.add(scrape);
    void scrape.finally(() => scraping.delete(scrape));
  });
  // What the parser refuses is answered as on the main port, with an x-request-id and Wharf's
  // envelope, rather than Node's bare 400. Not counted: the request metrics are the API's.
  const answerClientError = clientErrorHandler();
  server.on('clientError', (err, socket) =>
    answerClientError.call({ log: options.log }, err, socket as Socket),
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    // Closed last in a stop, just before the database (see Wharf.close): a scrape under way
    // gets a few seconds to answer, rather than failing on the closed database.
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(scraping),
        new Promise((resolve) => {
          timer = setTimeout(resolve, SCRAPE_SETTLE_MS);
        }),
      ]);
      clearTimeout(timer);
      // Scrapers keep connections alive; they must not hold the shutdown up.
      server.closeAllConnections();
      await closed;
    },
  };
}
