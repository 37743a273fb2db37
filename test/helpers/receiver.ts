import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { api } from './http.js';

// biome-ignore lint/suspicious/noExplicitAny: JSON bodies are walked dynamically
type Json = any;

/** One request as a webhook receiver got it. */
export interface Delivered {
  id: string;
  timestamp: string;
  headers: IncomingHttpHeaders;
  /** The raw body, exactly as signed. */
  body: string;
  /** The body as the official library returned it after verifying the signature. */
  payload: { type: string; timestamp: string; data: Record<string, Json> } | undefined;
}

/** What the receiver answers: a status (and body, headers), or nothing at all ('hang'). */
export type Answer = { status: number; body?: string; headers?: Record<string, string> } | 'hang';

/**
 * A webhook receiver on a loopback port, as an app would run one. Every request is verified
 * with the `standardwebhooks` library (the specification's own, not Wharf's code) against the
 * secrets it was given; one that verifies under none is recorded in `invalid` and refused.
 */
export class Receiver {
  /** Secrets it accepts signatures of (the endpoint's, and during a rotation both). */
  secrets: string[] = [];
  /** Verified requests it answered with a 2xx. */
  readonly accepted: Delivered[] = [];
  /** Every verified request, whatever it answered. */
  readonly requests: Delivered[] = [];
  /** Requests that failed verification (always a bug in these tests). */
  readonly invalid: string[] = [];
  answer: (d: Delivered) => Answer = () => ({ status: 204 });
  /** Requests answered 'hang', not yet released: what Wharf has in flight to this receiver. */
  private readonly hanging = new Map<ServerResponse, Delivered>();

  private constructor(private readonly server: Server) {}

  static async start(port = 0): Promise<Receiver> {
    const server = createServer();
    const receiver = new Receiver(server);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => receiver.handle(req.headers, Buffer.concat(chunks).toString('utf8'), res));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return receiver;
  }

  /**
   * A receiver subscribed to `eventTypes` by a webhook endpoint of the key's account at
   * `wharf` (its id in `hookId`), accepting that endpoint's signatures.
   */
  static async subscribed(
    wharf: string,
    key: string,
    eventTypes: string[],
  ): Promise<{ receiver: Receiver; hookId: string }> {
    const receiver = await Receiver.start();
    const hook = await api(wharf, key, 'POST', '/v1/webhooks', {
      url: receiver.url,
      event_types: eventTypes,
    });
    if (hook.status !== 201) {
      await receiver.close();
      throw new Error(`POST /v1/webhooks: ${hook.status} ${JSON.stringify(hook.body)}`);
    }
    receiver.secrets = [hook.body.secret];
    return { receiver, hookId: hook.body.webhook.id };
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hooks`;
  }

  /** The webhook-ids it accepted, by event type. */
  idsOf(type: string): string[] {
    return this.accepted.filter((d) => d.payload?.type === type).map((d) => d.id);
  }

  private handle(headers: IncomingHttpHeaders, body: string, res: ServerResponse): void {
    const plain = Object.fromEntries(
      Object.entries(headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : (v ?? '')]),
    );
    let payload: Delivered['payload'];
    let verified = false;
    for (const secret of this.secrets) {
      try {
        payload = new Webhook(secret).verify(body, plain) as Delivered['payload'];
        verified = true;
        break;
      } catch {
        // Try the next secret.
      }
    }
    if (!verified) {
      this.invalid.push(`${plain['webhook-id']}: ${body.slice(0, 200)}`);
      res.writeHead(401).end('bad signature');
      return;
    }
    const delivered: Delivered = {
      id: plain['webhook-id']!,
      timestamp: plain['webhook-timestamp']!,
      headers,
      body,
      payload,
    };
    this.requests.push(delivered);
    const answer = this.answer(delivered);
    if (answer === 'hang') {
      this.hanging.set(res, delivered);
      res.on('close', () => this.hanging.delete(res));
      return;
    }
    if (answer.status >= 200 && answer.status < 300) this.accepted.push(delivered);
    res.writeHead(answer.status, answer.headers).end(answer.body ?? '');
  }

  /** How many requests are open at this moment (held by a 'hang' answer). */
  get open(): number {
    return this.hanging.size;
  }

  /** Answers every request held open with 204 now. */
  release(): void {
    for (const [res, delivered] of this.hanging) {
      this.accepted.push(delivered);
      res.writeHead(204).end();
    }
    this.hanging.clear();
  }

  async close(): Promise<void> {
    for (const res of this.hanging.keys()) res.destroy();
    this.hanging.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
