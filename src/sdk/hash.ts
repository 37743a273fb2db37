import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

/** An incremental SHA-256: fed the bytes as they are read, never the whole file at once. */
export interface Hasher {
  update(chunk: Uint8Array): void;
  /** The digest, hex. Call once, after the last update. */
  hex(): string;
}

export type HasherFactory = () => Hasher;

/**
 * SHA-256 in plain JavaScript (@noble/hashes, audited), for where node:crypto is absent: Web
 * Crypto's digest() takes the whole input at once, which a file of gigabytes cannot be. Node
 * programs get node:crypto's native one from `sdk/node.js`.
 */
export const portableSha256: HasherFactory = () => {
  const hash = sha256.create();
  return {
    update: (chunk) => {
      hash.update(chunk);
    },
    hex: () => bytesToHex(hash.digest()),
  };
};

/** Hashing time after which the event loop gets a turn: under a frame (16 ms). */
const BUSY_MS = 10;
/** Bytes hashed between looks at the clock: a few milliseconds of portable hashing. */
const SLICE = 64 * 1024;

/**
 * `hasher`'s update, giving the event loop a turn (nextTask) after every BUSY_MS of hashing.
 * Portable SHA-256 runs on the page's only thread at some 20 MB/s, and a Blob's chunks come as
 * promises already settled: hashed in one go, a file of 300 MiB froze the page for 15 s (no
 * timer, no frame, no click on Cancel, no abort). Paced by the clock, not per chunk, so native
 * hashing (node:crypto, a gigabyte a second) yields only every 10 ms, at no measurable cost. A
 * chunk is hashed in slices, so one of any size (bytes handed over whole; Node gives a Blob's
 * as one) is paced too, and `onHashed` is told each slice's bytes (progress moves within it).
 * Resolves `false`, the rest of the chunk unhashed, once `signal` has fired.
 */
export function paced(
  hasher: Hasher,
  onHashed?: (bytes: number) => void,
): (chunk: Uint8Array, signal?: AbortSignal) => Promise<boolean> {
  let since = now();
  return async (chunk, signal) => {
    for (let at = 0; at < chunk.byteLength; at += SLICE) {
      const slice = chunk.byteLength <= SLICE ? chunk : chunk.subarray(at, at + SLICE);
      hasher.update(slice);
      onHashed?.(slice.byteLength);
      if (now() - since < BUSY_MS) continue;
      await nextTask();
      since = now();
      if (signal?.aborted) return false;
    }
    return !signal?.aborted;
  };
}

function now(): number {
  return typeof performance === 'undefined' ? Date.now() : performance.now();
}

/**
 * Resolves in a task of its own, after the event loop has run what waits (timers, rendering,
 * input, an abort): scheduler.yield() (Chromium), setImmediate (Node, Bun), a MessageChannel
 * (browsers: not clamped to 4 ms as a nested setTimeout(0) is), else setTimeout.
 */
export function nextTask(): Promise<void> {
  const scheduler = (globalThis as { scheduler?: { yield?: () => Promise<void> } }).scheduler;
  if (typeof scheduler?.yield === 'function') return scheduler.yield();
  if (typeof setImmediate === 'function') return new Promise((resolve) => setImmediate(resolve));
  if (typeof MessageChannel === 'function') {
    return new Promise((resolve) => {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => {
        channel.port1.close();
        resolve();
      };
      channel.port2.postMessage(null);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Hex (64 digits) or base64 (44 characters) SHA-256, as hex; undefined when it is neither. */
export function sha256Hex(value: string): string | undefined {
  if (/^[0-9a-f]{64}$/i.test(value)) return value.toLowerCase();
  if (/^[A-Za-z0-9+/]{43}=$/.test(value)) {
    const binary = atob(value);
    let hex = '';
    for (let i = 0; i < binary.length; i++) hex += binary.charCodeAt(i).toString(16).padStart(2, '0');
    return hex;
  }
  return undefined;
}
