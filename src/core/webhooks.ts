/**
 * Webhooks: per-account endpoints that receive events, signed as the Standard Webhooks
 * specification says. A delivery row is made for every matching endpoint in the transaction
 * that records the event (see the store's event append), and one job per delivery sends it.
 */

/** The job that sends one delivery (payload: `{ deliveryId }`). */
export const DELIVER_WEBHOOK_JOB = 'deliver-webhook';
